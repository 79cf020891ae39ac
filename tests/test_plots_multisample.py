"""Equal-cost figures of multi-sample estimators, the generic variance-basket table and layered model
names (plots/figures.py, plots/tables.py, plots/style.py), on tiny real sweeps (tests/sweeps.py)."""

import os

import numpy as np
import pandas as pd
import pytest

from contracts import results
from plots import figures, loading, style, tables
from tests import sweeps as testing

MULTI = ("vimco_2", "local_disarm_1", "vimco_4", "local_disarm_2")


@pytest.fixture(scope="module")
def data(multisample_sweep):
  return loading.load_sweep(multisample_sweep)


def _raw_seed_mean(sweep, estimator, column):
  frames = [
    pd.read_csv(os.path.join(sweep, results.RUNS_DIR, r, results.METRICS_CSV))
    for r in testing.run_ids(sweep, estimator)
  ]
  d = pd.concat(frames).dropna(subset=[column])
  d = d[d[column] > 0] if column.startswith(("grad_", "basket_")) else d
  return d.groupby("step")[column].mean()


def _legend_texts(fig):
  return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def test_catalogue_orders_by_cost_and_labels_sizes(data):
  cat = data.catalogue
  assert cat.order(MULTI) == ["vimco_2", "local_disarm_1", "vimco_4", "local_disarm_2"]
  assert [cat.num_f_evals(e) for e in MULTI] == [2, 2, 4, 4]
  assert cat.labels(MULTI) == {
    "vimco_2": "VIMCO (K=2)",
    "local_disarm_1": "Local DisARM (K=2)",
    "vimco_4": "VIMCO (K=4)",
    "local_disarm_2": "Local DisARM (K=4)",
  }
  assert cat.labels(["vimco_2", "local_disarm_1"]) == {"vimco_2": "VIMCO", "local_disarm_1": "Local DisARM"}
  colours = [cat.colour(e) for e in MULTI]
  assert len(set(colours)) == 4 and colours[0] == style.FAMILY_COLOURS["vimco"]


@pytest.mark.parametrize(
  "kind,column,log", [("multisample_bound", "test_bound_k", False), ("grad_variance", "grad_variance", True)]
)
def test_equal_cost_figures_plot_the_seed_means(multisample_sweep, data, kind, column, log):
  spec = next(s for s in figures.plan_figures(data) if s.kind == kind)
  fig = spec.build()
  panels = [ax for ax in fig.axes if ax.get_title()]
  assert [ax.get_title() for ax in panels] == [
    "MNIST, linear model\nequal cost: K = 2 evaluations of f",
    "MNIST, linear model\nequal cost: K = 4 evaluations of f",
  ]
  labels = data.catalogue.labels(MULTI)
  for ax, ests in zip(panels, (("vimco_2", "local_disarm_1"), ("vimco_4", "local_disarm_2"))):
    lines = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    assert set(lines) == {labels[e] for e in ests}
    assert ax.get_yscale() == ("log" if log else "linear")
    for est in ests:
      want = _raw_seed_mean(multisample_sweep, est, column)
      np.testing.assert_allclose(lines[labels[est]].get_xdata(), want.index.to_numpy(dtype=float))
      np.testing.assert_allclose(lines[labels[est]].get_ydata(), want.to_numpy(), rtol=1e-12)
      assert lines[labels[est]].get_color() == data.catalogue.colour(est)
  assert "Local DisARM (K=4), 2 seeds" in _legend_texts(fig)


def test_multisample_bound_falls_back_to_the_validation_split(data):
  ms = figures.multisample_metrics(data.metrics)
  assert set(ms["estimator"]) == set(MULTI)
  assert figures.multisample_bound_column(ms) == "test_bound_k"
  assert figures.multisample_bound_column(ms.assign(test_bound_k=np.nan)) == "valid_bound_k"
  assert figures.multisample_metrics(data.metrics.assign(test_bound_k=np.nan, valid_bound_k=np.nan)).empty


def test_no_basket_no_basket_sections(data):
  kinds = [s.kind for s in figures.plan_figures(data)]
  assert "basket" not in kinds and "toy_variance" not in kinds
  assert tables.basket_markdown(data.metrics, data.catalogue) == ""


def test_basket_table_takes_any_basket_column(main_sweep, tmp_path):
  """A new estimator's basket_var_<name> column (here written by the suite's writer) joins table and figure."""
  sweep = testing.copy_sweep(main_sweep, str(tmp_path / "main"))
  new = results.basket_column("rodeo_2")
  from training import results_io

  for est in ("reinforce_loo", "arm", "disarm", "relax"):
    for run_id in testing.run_ids(sweep, est):
      path = os.path.join(sweep, results.RUNS_DIR, run_id, results.METRICS_CSV)
      frame = results_io.read_metrics(path)
      frame[new] = 0.25 * frame[results.basket_column("arm")]
      results_io.write_metrics(path, frame)
  data = loading.load_sweep(sweep)
  t = tables.basket_ratios(data.metrics, catalogue=data.catalogue)
  assert set(t["measured"]) == {"reinforce_loo", "disarm", "rodeo_2"}
  assert np.allclose(t.loc[t["measured"] == "rodeo_2", "mean"], 0.25)
  # Per run the median over evaluations of basket_var_disarm / basket_var_arm, then mean +- s.e. over seeds.
  relax = [
    pd.read_csv(os.path.join(sweep, results.RUNS_DIR, r, results.METRICS_CSV)) for r in testing.run_ids(sweep, "relax")
  ]
  medians = [np.median(m[results.basket_column("disarm")] / m[results.basket_column("arm")]) for m in relax]
  row = t[(t["trained_by"] == "relax") & (t["measured"] == "disarm")].iloc[0]
  assert row["mean"] == pytest.approx(np.mean(medians)) and row["n"] == 2
  assert row["se"] == pytest.approx(np.std(medians, ddof=1) / np.sqrt(2))
  md = tables.basket_markdown(data.metrics, data.catalogue)
  assert "| Dataset | Model | Trained by | REINFORCE LOO / ARM | DisARM / ARM | rodeo_2 / ARM | seeds |" in md
  relax_line = next(line for line in md.splitlines() if line.startswith("| Omniglot-28\\* | nonlinear | RELAX |"))
  assert relax_line.endswith(f" | {tables._ratio_cell(row['mean'], row['se'])} | 0.250 ± 0.000 | 2 |")
  spec = next(s for s in figures.plan_figures(data) if s.kind == "basket")
  labels = {t.get_text() for ax in spec.build().axes if ax.get_legend() for t in ax.get_legend().get_texts()}
  assert "measured: rodeo_2" in labels


def test_basket_reference_without_arm(main_sweep, tmp_path):
  sweep = testing.copy_sweep(main_sweep, str(tmp_path / "main"))
  from training import results_io

  for est in ("reinforce_loo", "arm", "disarm", "relax"):
    for run_id in testing.run_ids(sweep, est):
      path = os.path.join(sweep, results.RUNS_DIR, run_id, results.METRICS_CSV)
      results_io.write_metrics(path, results_io.read_metrics(path).drop(columns=[results.basket_column("arm")]))
  data = loading.load_sweep(sweep)
  assert tables.basket_reference(data.metrics, data.catalogue) == "reinforce_loo"
  assert "DisARM / REINFORCE LOO" in tables.basket_markdown(data.metrics, data.catalogue)


def test_layered_model_names_and_order():
  assert style.order_models(
    ["linear_4layer", "foo", "linear_10layer", "nonlinear", "linear_2layer", "linear", "linear_3layer"]
  ) == ["linear", "nonlinear", "linear_2layer", "linear_3layer", "linear_4layer", "linear_10layer", "foo"]
  assert style.cell_title("mnist", "linear_3layer") == "MNIST, 3-layer linear model"
