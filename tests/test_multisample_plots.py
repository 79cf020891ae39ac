"""Multi-sample figures, the variance basket (figures + ratio table) and layered model
names in plots/ (figures.py, tables.py, report.py, style.py)."""

import os
import sys

import numpy as np
import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*deprecated - use .*:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:'parseAll' argument is deprecated:DeprecationWarning"),
]

import plots  # noqa: E402
from plots import figures, loading, style, tables  # noqa: E402
from plots.testing import write_synthetic_sweep  # noqa: E402

MULTI = ("vimco_2", "local_disarm_1", "vimco_10", "local_disarm_5", "local_disarm_sym_5")
SINGLE = ("arm", "disarm")
BASKET = ("arm", "disarm", "reinforce_loo")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ms") / "multi")
    write_synthetic_sweep(root, datasets=("omniglot",), models=("linear_2layer", "linear"),
                          estimators=SINGLE + MULTI, seeds=(0, 1), num_steps=4000,
                          eval_every=1000, bound_every=2000, with_toy=False,
                          basket=BASKET, basket_trainers=SINGLE)
    return root


@pytest.fixture(scope="module")
def metrics(sweep):
    return loading.load_metrics(sweep, loading.load_summary(sweep))


def _raw_mean(root, dataset, model, estimator, column):
    """Seed mean per step straight from the metrics.csv files (NaN dropped)."""
    frames = []
    runs = os.path.join(root, "runs")
    for run_id in sorted(os.listdir(runs)):
        if run_id.startswith(f"{dataset}-{model}-{estimator}-s"):
            frames.append(pd.read_csv(os.path.join(runs, run_id, "metrics.csv")))
    d = pd.concat(frames).dropna(subset=[column])
    d = d[d[column] > 0] if column.startswith(("grad_", "basket_")) else d
    return d.groupby("step")[column].mean()


def _lines(ax):
    return {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}


def _label_to_estimator(label, names):
    for n in names:
        if label in (style.estimator_label(n), "measured: " + style.estimator_label(n)):
            return n
    raise AssertionError(f"unexpected line label {label!r}")


def test_style_orders_and_labels_layered_models_and_estimator_families():
    assert style.order_models(
        ["linear_4layer", "foo", "linear_10layer", "nonlinear", "linear_2layer", "linear",
         "linear_3layer"]) == ["linear", "nonlinear", "linear_2layer", "linear_3layer",
                               "linear_4layer", "linear_10layer", "foo"]
    assert style.cell_title("mnist", "linear_3layer") == "MNIST, 3-layer linear model"
    assert style.order_estimators(
        ["vimco_20", "local_disarm_10", "zeta", "vimco_2", "local_disarm_sym_5", "disarm",
         "local_disarm_5", "vimco_10", "local_disarm_1"]) == [
        "disarm", "vimco_2", "local_disarm_1", "vimco_10", "local_disarm_5",
        "local_disarm_sym_5", "vimco_20", "local_disarm_10", "zeta"]
    assert [style.multisample_evaluations(n) for n in
            ("vimco_10", "local_disarm_5", "local_disarm_sym_5", "disarm", "reinforce_loo_4",
             "new_estimator")] == [10, 10, 10, None, None, None]
    assert style.estimator_label("local_disarm_sym_5") == "Local DisARM (sym., m=5)"
    assert style.estimator_label("vimco_10") == "VIMCO (K=10)"
    # Family members: their own, stable colours, distinct from one another and from
    # the fixed ones; equal-cost members of different families differ.
    names = ["vimco_2", "vimco_10", "vimco_20", "local_disarm_1", "local_disarm_5",
             "local_disarm_10", "local_disarm_sym_5"]
    colours = [style.estimator_colour(n) for n in names]
    assert len(set(colours)) == len(names)
    assert not set(colours) & set(style.ESTIMATOR_COLOURS.values())
    assert style.estimator_colour("vimco_10") == style.estimator_colour("vimco_10")


def test_multisample_metrics_selects_runs_with_bound_k(metrics):
    ms = figures.multisample_metrics(metrics)
    assert set(ms["estimator"]) == set(MULTI)
    assert set(ms["evals"]) == {2, 10}
    assert (ms.loc[ms["estimator"] == "local_disarm_sym_5", "evals"] == 10).all()
    # Without any finite bound_k nothing is selected.
    none = metrics.assign(test_bound_k=np.nan, valid_bound_k=np.nan)
    assert figures.multisample_metrics(none).empty


@pytest.mark.parametrize("column,log", [("test_bound_k", False), ("grad_variance", True)])
def test_multisample_figure_plots_the_seed_means(sweep, metrics, column, log):
    ms = figures.multisample_metrics(metrics)
    fig = figures.build_multisample_figure(ms, column, "y", log, "title")
    panels = [ax for ax in fig.axes if ax.get_title()]
    # Rows: linear before linear_2layer; columns: K = 2, then K = 10.
    assert [ax.get_title() for ax in panels] == [
        "Omniglot-28*, linear model\nK = 2 (VIMCO K=2, m=1)",
        "Omniglot-28*, linear model\nK = 10 (VIMCO K=10, m=5)",
        "Omniglot-28*, 2-layer linear model\nK = 2 (VIMCO K=2, m=1)",
        "Omniglot-28*, 2-layer linear model\nK = 10 (VIMCO K=10, m=5)",
    ]
    expected_ests = {"2": {"vimco_2", "local_disarm_1"},
                     "10": {"vimco_10", "local_disarm_5", "local_disarm_sym_5"}}
    for ax in panels:
        model = "linear_2layer" if "2-layer" in ax.get_title() else "linear"
        k = ax.get_title().split("K = ")[1].split(" ")[0]
        lines = _lines(ax)
        ests = {_label_to_estimator(lb, MULTI) for lb in lines}
        assert ests == expected_ests[k]
        assert ax.get_yscale() == ("log" if log else "linear")
        for label, line in lines.items():
            est = _label_to_estimator(label, MULTI)
            want = _raw_mean(sweep, "omniglot", model, est, column)
            assert line.get_color() == style.estimator_colour(est)
            np.testing.assert_allclose(line.get_xdata(), want.index.to_numpy(dtype=float))
            np.testing.assert_allclose(line.get_ydata(), want.to_numpy(), rtol=1e-12)
    # The legends (one per column, below the grid) name each estimator with its seeds.
    legend_texts = [t.get_text() for ax in fig.axes if ax.get_legend()
                    for t in ax.get_legend().get_texts()]
    assert "Local DisARM (sym., m=5), 2 seeds" in legend_texts
    assert "VIMCO (K=2), 2 seeds" in legend_texts


def test_multisample_bound_falls_back_to_valid_split(metrics):
    ms = figures.multisample_metrics(metrics)
    assert figures.multisample_bound_column(ms) == "test_bound_k"
    ms_valid = figures.multisample_metrics(metrics.assign(test_bound_k=np.nan))
    assert set(ms_valid["estimator"]) == set(MULTI)
    assert figures.multisample_bound_column(ms_valid) == "valid_bound_k"


def test_basket_figure_plots_each_measured_estimator(sweep, metrics):
    cols = loading.basket_columns(metrics)
    assert sorted(cols) == sorted(loading.BASKET_PREFIX + b for b in BASKET)
    fig = figures.build_basket_figure(metrics, cols, "omniglot", "linear_2layer")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["trained by ARM (2 seeds)",
                                                 "trained by DisARM (2 seeds)"]
    assert "2-layer linear" in fig._suptitle.get_text()
    for ax, trainer in zip(panels, SINGLE):
        assert ax.get_yscale() == "log"
        lines = _lines(ax)
        assert {_label_to_estimator(lb, BASKET) for lb in lines} == set(BASKET)
        for label, line in lines.items():
            est = _label_to_estimator(label, BASKET)
            want = _raw_mean(sweep, "omniglot", "linear_2layer", trainer,
                             loading.BASKET_PREFIX + est)
            np.testing.assert_allclose(line.get_xdata(), want.index.to_numpy(dtype=float))
            np.testing.assert_allclose(line.get_ydata(), want.to_numpy(), rtol=1e-12)


def test_basket_ratios_median_per_run_then_mean_over_seeds():
    rows = []
    # seed 0: disarm/arm ratios 0.2, 0.5, 0.4 -> median 0.4; seed 1: 0.6, 0.8 -> 0.7.
    for seed, arm, disarm in ((0, [1.0, 2.0, 5.0], [0.2, 1.0, 2.0]),
                              (1, [1.0, 1.0, np.nan], [0.6, 0.8, 3.0])):
        for step, (a, d) in enumerate(zip(arm, disarm)):
            rows.append({"run_id": f"r{seed}", "dataset": "mnist", "model": "linear",
                         "estimator": "disarm", "seed": seed, "step": step,
                         "basket_var_arm": a, "basket_var_disarm": d,
                         "basket_var_relax": np.nan})
    t = tables.basket_ratios(pd.DataFrame(rows))
    assert len(t) == 1  # relax has no values: no row
    r = t.iloc[0]
    assert (r["trained_by"], r["measured"], r["n"], r["evaluations"]) == (
        "disarm", "disarm", 2, 5)
    assert r["mean"] == pytest.approx(0.55)
    assert r["se"] == pytest.approx(np.std([0.4, 0.7], ddof=1) / np.sqrt(2))
    md = tables.basket_markdown(pd.DataFrame(rows))
    assert "| MNIST | linear | DisARM | 0.550 ± 0.150 | 2 |" in md
    # Without the reference column there is no table.
    no_ref = pd.DataFrame(rows).drop(columns="basket_var_arm")
    assert tables.basket_ratios(no_ref).empty and tables.basket_markdown(no_ref) == ""


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """Fewer runs than `sweep`: make_report draws every figure twice (PNG and PDF)."""
    root = str(tmp_path_factory.mktemp("ms_small") / "small")
    write_synthetic_sweep(root, datasets=("omniglot",), models=("linear_2layer",),
                          estimators=("arm", "vimco_2", "local_disarm_1"), seeds=(0, 1),
                          num_steps=2000, eval_every=1000, bound_every=1000, with_toy=False,
                          basket=("arm", "disarm"), basket_trainers=("arm",))
    return root


def test_make_report_includes_the_new_sections_when_columns_exist(small_sweep):
    sweep = small_sweep
    report = open(plots.make_report(sweep)).read()
    fig_dir = os.path.join(sweep, "figures")
    for stem in ("multisample_bound", "multisample_grad_variance",
                 "variance_basket_omniglot_linear_2layer",
                 "curves_omniglot_linear_2layer"):  # PNG and PDF, each linked
        for ext in ("png", "pdf"):
            assert os.path.isfile(os.path.join(fig_dir, f"{stem}.{ext}")), stem
            assert f"figures/{stem}.{ext}" in report
    assert "### Multi-sample bound with the training K" in report
    assert "## Variance basket: the fair variance comparison" in report
    r = tables.basket_ratios(loading.load_metrics(sweep, loading.load_summary(sweep))).iloc[0]
    assert f"| Omniglot-28\\* | 2-layer linear | ARM | {r['mean']:.3f} ± {r['se']:.3f} | 2 |" \
        in report
    assert "### Omniglot-28\\*, 2-layer linear model" in report


def test_make_report_omits_the_new_sections_without_the_columns(tmp_path):
    root = str(tmp_path / "plain")
    write_synthetic_sweep(root, datasets=("mnist",), models=("linear",),
                          estimators=("arm", "disarm"), seeds=(0, 1), num_steps=2000,
                          with_toy=False, basket=("disarm",))  # no basket_var_arm
    # metrics.csv files of the first release lack the bound_k columns altogether.
    run = os.path.join(root, "runs", "mnist-linear-arm-s0", "metrics.csv")
    pd.read_csv(run).drop(columns=["valid_bound_k", "test_bound_k"]).to_csv(run, index=False)
    report = open(plots.make_report(root)).read()
    assert "Multi-sample" not in report
    assert "## Variance basket: the fair variance comparison" not in report  # no ratio
    figs = os.listdir(os.path.join(root, "figures"))
    assert not any(f.startswith("multisample") for f in figs)
    # A basket column without the ARM reference still gets its figure.
    assert "variance_basket_mnist_linear.png" in figs
    assert "### Variance basket: MNIST, linear model" in report
    assert "### MNIST, linear model" in report


def test_claim4_pairs_local_disarm_with_vimco_at_equal_cost():
    from plots import compare

    ests = ["vimco_2", "vimco_10", "vimco_20", "local_disarm_1", "local_disarm_5",
            "local_disarm_10", "local_disarm_sym_5", "local_disarm_sym_3"]
    assert compare.claim4_pairs(ests) == [
        ("local_disarm_1", "vimco_2"), ("local_disarm_10", "vimco_20"),
        ("local_disarm_5", "vimco_10"), ("local_disarm_sym_5", "vimco_10")]
    # A same-named VIMCO of the wrong cost is not a twin.
    assert compare.claim4_pairs(["vimco_5", "local_disarm_5"]) == []
    assert compare.claim4_pairs(["vimco", "local_disarm_5"]) == [("local_disarm_5", "vimco")]
