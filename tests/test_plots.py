"""Figures, the report and the CLI (plots/figures.py, plots/report.py, plots/make_report.py)."""

import math
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# matplotlib 3.9's mathtext still calls pyparsing's camelCase API, which pyparsing 3.3
# deprecates; that noise is not ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*deprecated - use .*:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:'parseAll' argument is deprecated:DeprecationWarning"),
]

import plots  # noqa: E402
from plots import figures, loading, stats, style  # noqa: E402
from plots.testing import write_synthetic_sweep  # noqa: E402


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def _is_pdf(path):
    with open(path, "rb") as f:
        return f.read(5) == b"%PDF-"


def test_aggregate_over_seeds_drops_nan_and_aligns_on_step():
    df = pd.DataFrame({
        "seed": [0, 0, 0, 1, 1, 1],
        "step": [0, 1000, 2000, 0, 1000, 2000],
        "v": [1.0, np.nan, 3.0, 3.0, 5.0, 5.0],
    })
    agg = stats.aggregate_over_seeds(df.sample(frac=1.0, random_state=0), "v")
    assert agg["step"].tolist() == [0, 1000, 2000]
    assert agg["mean"].tolist() == pytest.approx([2.0, 5.0, 4.0])
    assert agg["n"].tolist() == [2, 1, 2]
    # std([1, 3], ddof=1) = sqrt(2); / sqrt(2) = 1
    assert agg["se"].iloc[0] == pytest.approx(1.0)
    assert math.isnan(agg["se"].iloc[1])


def test_estimator_colours_fixed_and_fallback_stable():
    assert style.estimator_colour("disarm") == style.ESTIMATOR_COLOURS["disarm"]
    assert len(set(style.ESTIMATOR_COLOURS.values())) == len(style.ESTIMATOR_COLOURS)
    c = style.estimator_colour("some_new_estimator")
    assert c == style.estimator_colour("some_new_estimator")
    assert c in style.FALLBACK_COLOURS
    assert c not in style.ESTIMATOR_COLOURS.values()
    assert style.order_estimators(["zeta", "disarm", "arm", "alpha"]) == [
        "arm", "disarm", "alpha", "zeta"]
    assert style.format_steps(250000) == "250k" and style.format_steps(1e6) == "1M"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sweep") / "tiny")
    write_synthetic_sweep(root, datasets=("omniglot",), models=("linear",),
                          estimators=("arm", "disarm", "new_estimator"), seeds=(0, 1),
                          num_steps=4000, eval_every=1000, bound_every=2000)
    return root


def test_make_report_writes_report_tables_and_figures(sweep):
    path = plots.make_report(sweep)
    assert path == os.path.join(sweep, "report.md")
    report = open(path).read()
    fig_dir = os.path.join(sweep, "figures")
    for stem in ("curves_omniglot_linear", "toy_variance", "toy_training"):
        assert _is_png(os.path.join(fig_dir, stem + ".png")), stem
        assert _is_pdf(os.path.join(fig_dir, stem + ".pdf")), stem
    for name in ("tables.md", "tables.tex"):
        assert os.path.isfile(os.path.join(sweep, name))
    # Every relative link in the report points at a file that exists.
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert "figures/curves_omniglot_linear.png" in links
    assert "figures/curves_omniglot_linear.pdf" in links
    for link in links:
        assert not os.path.isabs(link)
        assert os.path.isfile(os.path.join(sweep, link)), link
    # Grid, tables, claims are all there.
    assert "- seeds: 0, 1" in report
    assert "- num_steps: `4000`" in report and "- eval_every: `1000`" in report
    assert "- bound_every: `2000`" in report and "- batch_size: `50`" in report
    assert "Omniglot-28\\*" in report and "not directly comparable" in report
    assert "### Claim 2a: **holds**" in report
    assert "### Claim 4: **not enough runs to tell**" in report
    assert "Comparison with published numbers" not in report


def test_make_report_with_published_csv(sweep, tmp_path):
    pub = tmp_path / "pub.csv"
    pub.write_text("dataset,model,estimator,metric,value,stderr,source\n"
                   "omniglot,linear,disarm,final_train_elbo,-150.0,0.1,x\n")
    report = open(plots.make_report(sweep, published_csv=str(pub))).read()
    assert "## Comparison with published numbers" in report
    comp = pd.read_csv(os.path.join(sweep, "paper_comparison.csv"))
    assert comp["note"].iloc[0].startswith("not directly comparable")


def test_curves_tolerate_all_nan_bound_and_failed_runs(tmp_path):
    root = str(tmp_path / "s")
    write_synthetic_sweep(root, datasets=("mnist",), models=("nonlinear",),
                          estimators=("relax",), seeds=(0,), num_steps=2000, with_toy=False)
    run_dir = os.path.join(root, "runs", "mnist-nonlinear-relax-s0")
    m = pd.read_csv(os.path.join(run_dir, "metrics.csv"))
    m["test_bound_100"] = np.nan
    m.to_csv(os.path.join(run_dir, "metrics.csv"), index=False)
    summ = loading.load_summary(root)
    summ.loc[len(summ)] = summ.iloc[0]
    summ.loc[len(summ) - 1, ["run_id", "status", "seed"]] = ["missing-run", "failed", 7]
    summ.to_csv(os.path.join(root, "summary.csv"), index=False)
    out = figures.write_all_figures(root)
    assert list(out["curves"]) == [("mnist", "nonlinear")]
    assert out["toy"] == {}
    assert all(os.path.isfile(p) for p in out["curves"][("mnist", "nonlinear")])


def test_make_report_without_summary_raises(tmp_path):
    with pytest.raises(loading.ResultsDirError, match="no summary.csv"):
        plots.make_report(str(tmp_path))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "plots.make_report", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_errors_clearly_without_summary(tmp_path):
    r = _cli(f"--results_dir={tmp_path}")
    assert r.returncode == 1
    assert "no summary.csv" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_help_mentions_flags():
    r = _cli("--help")  # absl exits with status 1 after printing the help
    assert "--results_dir" in r.stdout and "--published" in r.stdout
    assert "python -m plots.make_report --results_dir=results/<sweep>" in r.stdout


def test_make_report_is_callable_after_importing_the_cli_module(sweep):
    import plots.make_report  # noqa: F401  (rebinds plots.make_report to the module)

    assert callable(plots.make_report)
    from plots.make_report import make_report

    assert make_report is plots.report.make_report
