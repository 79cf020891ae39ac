"""Figures, the estimator catalogue and the CLI (plots/figures.py, plots/style.py, plots/make_report.py).

Every sweep is a tiny real one, trained by the suite's own driver code
(tests/sweeps.py); a test that needs other values or other estimator records changes
them in a copy through the suite's writer or in config.json, never by writing a format
by hand.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import plots
from contracts import results
from plots import figures, loading, published, style
from tests import sweeps as testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def main_data(main_sweep):
  return loading.load_sweep(main_sweep)


@pytest.fixture(scope="module")
def drawn_report(main_sweep, tmp_path_factory):
  """A copy of the main sweep with its full report (figures drawn, default published CSV)."""
  sweep = testing.copy_sweep(main_sweep, str(tmp_path_factory.mktemp("drawn") / "main"))
  path = plots.make_report(sweep)
  return sweep, open(path).read()


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == b"\x89PNG\r\n\x1a\n"


def _is_pdf(path):
  with open(path, "rb") as f:
    return f.read(5) == b"%PDF-"


def _raw_seed_mean(sweep, estimator, column):
  """Seed mean per step straight from the runs' metrics.csv files (NaN dropped)."""
  frames = [
    pd.read_csv(os.path.join(sweep, results.RUNS_DIR, r, results.METRICS_CSV))
    for r in testing.run_ids(sweep, estimator)
  ]
  d = pd.concat(frames).dropna(subset=[column])
  return d.groupby("step")[column].mean()


def _lines(ax):
  return {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}


def test_catalogue_reads_estimator_info_not_names(main_data):
  cat = main_data.catalogue
  assert cat.order(["relax", "disarm", "arm", "reinforce_loo"]) == ["reinforce_loo", "arm", "disarm", "relax"]
  assert [cat.num_f_evals(e) for e in ("reinforce_loo", "arm", "disarm", "relax")] == [2, 2, 2, 3]
  assert cat.labels(["arm", "disarm", "relax"]) == {"arm": "ARM", "disarm": "DisARM", "relax": "RELAX"}
  assert cat.colour("disarm") == style.FAMILY_COLOURS["disarm"]
  # A name no run recorded: its own name, a stable fallback colour, after the known ones.
  assert cat.label("my_estimator") == "my_estimator"
  assert cat.colour("my_estimator") == cat.colour("my_estimator") in style.FALLBACK_COLOURS
  assert cat.order(["my_estimator", "relax", "arm"]) == ["arm", "relax", "my_estimator"]
  assert style.format_steps(250000) == "250k" and style.format_steps(1e6) == "1M"


def test_costs_labels_and_families_come_from_config_json(main_sweep, tmp_path):
  """Rewriting what config.json recorded about REINFORCE LOO moves it in every figure and table."""
  sweep = testing.copy_sweep(main_sweep, str(tmp_path / "main"))
  for run_id in testing.run_ids(sweep, "reinforce_loo"):
    path = os.path.join(sweep, results.RUNS_DIR, run_id, results.CONFIG_JSON)
    config = json.load(open(path))
    config[results.ESTIMATOR_INFO_KEY].update(label="LOO renamed", family="relax", num_f_evals=3)
    json.dump(config, open(path, "w"))
  data = loading.load_sweep(sweep)
  assert data.catalogue.order(data.summary["estimator"].unique()) == ["arm", "disarm", "relax", "reinforce_loo"]
  # Two members of the "relax" family at one cost: same base label, told apart by name.
  assert data.catalogue.labels(["reinforce_loo", "relax"]) == {"reinforce_loo": "LOO renamed", "relax": "RELAX"}
  spec = next(s for s in figures.plan_figures(data) if s.kind == "grad_variance")
  fig = spec.build()
  panels = {ax.get_title().split("\n")[1]: ax for ax in fig.axes if ax.get_title()}
  legend = {
    ax.get_title().split("\n")[1]: [t.get_text().split(",")[0] for t in leg.get_texts()]
    for ax, leg in zip(panels.values(), [a.get_legend() for a in fig.axes if a.get_legend()])
  }
  assert legend == {
    "equal cost: K = 2 evaluations of f": ["ARM", "DisARM"],
    "equal cost: K = 3 evaluations of f": ["RELAX", "LOO renamed"],
  }


def test_report_links_every_planned_figure(drawn_report):
  sweep, report = drawn_report
  fig_dir = os.path.join(sweep, figures.FIGURES_SUBDIR)
  stems = (
    "curves_omniglot_nonlinear",
    "cost_curves_omniglot_nonlinear",
    "grad_variance_omniglot_nonlinear",
    "multisample_bound",
    "variance_basket_omniglot_nonlinear",
    "toy_variance",
    "toy_training",
  )
  assert sorted(os.listdir(fig_dir)) == sorted(f"{s}.{ext}" for s in stems for ext in ("png", "pdf"))
  for stem in stems:
    assert _is_png(os.path.join(fig_dir, stem + ".png")) and _is_pdf(os.path.join(fig_dir, stem + ".pdf"))
  links = re.findall(r"\]\(([^)]+)\)", report)
  for stem in stems:
    assert f"figures/{stem}.png" in links and f"figures/{stem}.pdf" in links
  for link in links:
    assert not os.path.isabs(link) and os.path.isfile(os.path.join(sweep, link)), link
  for name in ("tables.md", "tables.tex", "paper_comparison.csv"):
    assert os.path.isfile(os.path.join(sweep, name))
  assert "### Omniglot-28\\*, nonlinear model" in report


def test_training_curves_plot_seed_means_and_published_reference_lines(main_sweep, main_data):
  table = published.load_published(published.DEFAULT_PUBLISHED_CSV)
  comp = published.compare_published(main_data, table)
  refs = published.reference_lines(comp)[("omniglot", "nonlinear")]
  fig = figures.build_training_curves(main_data.metrics, main_data.catalogue, "omniglot", "nonlinear", refs)
  axes = {ax.get_ylabel(): ax for ax in fig.axes if ax.get_ylabel()}
  assert list(axes) == [
    "train ELBO (nats)",
    f"{testing.TINY['num_bound_samples']}-sample test bound (nats)",  # the runs' N, not a fixed 100
    "K-sample test bound (nats)",
    "encoder gradient variance\n(log scale)",
  ]
  for ylabel, column in (("train ELBO (nats)", "train_elbo"), ("K-sample test bound (nats)", "test_bound_k")):
    lines = _lines(axes[ylabel])
    for est in ("reinforce_loo", "arm", "disarm", "relax"):
      label = main_data.catalogue.label(est)  # every estimator has 2 seeds: said once, in the legend title
      want = _raw_seed_mean(main_sweep, est, column)
      np.testing.assert_allclose(lines[label].get_xdata(), want.index.to_numpy(dtype=float))
      np.testing.assert_allclose(lines[label].get_ydata(), want.to_numpy(), rtol=1e-12)
      assert lines[label].get_color() == main_data.catalogue.colour(est)
  # The RODEO paper's Omniglot rows: DisARM and RELAX, train ELBO (Table 1) and test bound (Table 2),
  # each a grey dashed line at the published value on the panel of the quantity it is compared with,
  # named at its right end in its estimator's colour.
  pub = pd.read_csv(published.DEFAULT_PUBLISHED_CSV)
  pub = pub[(pub["dataset"] == "omniglot") & (pub["model"] == "nonlinear")]
  for ylabel, metric in (
    ("train ELBO (nats)", "final_train_elbo"),
    ("K-sample test bound (nats)", "final_test_bound_100"),
  ):
    ax = axes[ylabel]
    refs = [ln for ln in ax.get_lines() if ln.get_label() == "published"]
    assert all(ln.get_linestyle() == "--" and ln.get_color() == figures.REFERENCE_COLOUR for ln in refs)
    values = [pub[(pub["estimator"] == est) & (pub["metric"] == metric)]["value"].item() for est in ("disarm", "relax")]
    assert sorted(ln.get_ydata()[0] for ln in refs) == sorted(values)
    names = {t.get_text(): t.get_color() for t in ax.texts}
    assert names == {"DisARM": main_data.catalogue.colour("disarm"), "RELAX": main_data.catalogue.colour("relax")}
    lo, hi = ax.get_ylim()
    assert all(lo < v < hi for v in values)  # drawn inside the panel, however far from our short runs
  legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
  assert legend.count("published") == 1  # one entry for every reference line
  assert axes["encoder gradient variance\n(log scale)"].get_yscale() == "log"
  assert "Omniglot-28" in fig._supxlabel.get_text()


def test_grad_variance_figure_has_a_panel_per_cost(main_sweep, main_data):
  spec = next(s for s in figures.plan_figures(main_data) if s.kind == "grad_variance")
  fig = spec.build()
  panels = [ax for ax in fig.axes if ax.get_title()]
  assert [ax.get_title() for ax in panels] == [
    "Omniglot-28*, nonlinear model\nequal cost: K = 2 evaluations of f",
    "Omniglot-28*, nonlinear model\nequal cost: K = 3 evaluations of f",
  ]
  by_panel = [{ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")} for ax in panels]
  assert set(by_panel[0]) == {"REINFORCE LOO", "ARM", "DisARM"} and set(by_panel[1]) == {"RELAX"}
  for ax in panels:
    assert ax.get_yscale() == "log"
  want = _raw_seed_mean(main_sweep, "relax", "grad_variance")
  want = want[want > 0]
  np.testing.assert_allclose(by_panel[1]["RELAX"].get_ydata(), want.to_numpy(), rtol=1e-12)


def test_basket_figure_plots_every_basket_column(main_sweep, main_data):
  columns = loading.basket_columns(main_data.metrics)
  assert columns == [results.basket_column(e) for e in ("reinforce_loo", "arm", "disarm")]
  fig = figures.build_basket_figure(main_data.metrics, main_data.catalogue, columns, "omniglot", "nonlinear")
  panels = [ax for ax in fig.axes if ax.get_title()]
  assert [ax.get_title() for ax in panels] == [
    f"trained by {e} (2 seeds)" for e in ("REINFORCE LOO", "ARM", "DisARM", "RELAX")
  ]
  ax = panels[3]
  lines = _lines(ax)
  assert set(lines) == {"measured: REINFORCE LOO", "measured: ARM", "measured: DisARM"}
  want = _raw_seed_mean(main_sweep, "relax", results.basket_column("disarm"))
  np.testing.assert_allclose(lines["measured: DisARM"].get_ydata(), want.to_numpy(), rtol=1e-12)


def test_toy_figures_from_the_toy_csvs(main_data):
  specs = {s.kind: s for s in figures.plan_figures(main_data)}
  fig = specs["toy_variance"].build()
  panels = [ax for ax in fig.axes if ax.get_title()]
  assert [ax.get_title() for ax in panels] == ["$p_0$ = 0.49", "$p_0$ = 0.499"]
  assert all(ax.get_yscale() == "log" for ax in panels)
  fig = specs["toy_training"].build()
  assert len([ax for ax in fig.axes if ax.get_title()]) == 2


def test_make_report_without_summary_raises(tmp_path):
  with pytest.raises(loading.ResultsDirError, match="no summary.csv"):
    plots.make_report(str(tmp_path))


def _cli(*args):
  return subprocess.run(
    [sys.executable, "-m", "plots.make_report", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
  )


def test_cli_errors_clearly_without_summary(tmp_path):
  r = _cli(f"--results_dir={tmp_path}")
  assert r.returncode == 1
  assert "no summary.csv" in r.stderr and "Traceback" not in r.stderr


def test_cli_help_names_the_flags_and_the_default_published_csv():
  r = _cli("--help")  # absl exits with status 1 after printing the help
  assert "--results_dir" in r.stdout and "--published" in r.stdout
  assert "results/published/rodeo_2022.csv" in r.stdout and "'none'" in r.stdout


def test_cli_published_none_leaves_the_comparison_out(multisample_sweep, tmp_path):
  sweep = testing.copy_sweep(multisample_sweep, str(tmp_path / "multisample"))
  r = _cli(f"--results_dir={sweep}", "--published=none")
  assert r.returncode == 0, r.stderr
  report = open(r.stdout.strip()).read()
  assert "Comparison with published numbers" not in report
  assert not os.path.exists(os.path.join(sweep, "paper_comparison.csv"))
  assert "--published=none" in report
  r = _cli(f"--results_dir={sweep}", f"--published={tmp_path / 'missing.csv'}")
  assert r.returncode == 1 and "does not exist" in r.stderr


def test_make_report_is_callable_after_importing_the_cli_module():
  import plots.make_report  # noqa: F401  (rebinds plots.make_report to the module)

  assert callable(plots.make_report)
  from plots.make_report import make_report

  assert make_report is plots.report.make_report
