"""Claim statistics and the published comparison (plots/compare.py) on small synthetic
sweeps whose answers are known."""

import io
import math
import os
import sys

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# matplotlib 3.9's mathtext still calls pyparsing's camelCase API, which pyparsing 3.3
# deprecates; that noise is not ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*deprecated - use .*:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:'parseAll' argument is deprecated:DeprecationWarning"),
]

from plots import compare  # noqa: E402
from plots.testing import write_summary  # noqa: E402

HOLDS, FAILS, NOT_ENOUGH = compare.HOLDS, compare.FAILS, compare.NOT_ENOUGH


def _summary(per_est, ds="mnist", model="linear", metric="final_train_elbo", sps=None):
    """per_est: {estimator: {seed: value}} -> summary DataFrame of done runs."""
    rows = []
    for est, by_seed in per_est.items():
        for seed, v in by_seed.items():
            rows.append({"run_id": f"{ds}-{model}-{est}-{seed}", "dataset": ds, "model": model,
                         "estimator": est, "seed": seed, "status": "done", metric: v,
                         "steps_per_sec": (sps or {}).get(est, 10.0)})
    return pd.DataFrame(rows)


def _claim(claims, name):
    return next(c for c in claims if c.claim == name)


ARM = {0: -100.0, 1: -101.0, 2: -99.0}


def test_claim2a_holds_with_hand_computed_t():
    disarm = {s: v + d for (s, v), d in zip(ARM.items(), [2.0, 2.2, 1.8])}
    c = compare.check_claim2(_summary({"arm": ARM, "disarm": disarm}))[0]
    assert c.claim == "2a" and c.verdict == HOLDS
    row = c.details.iloc[0]
    assert row["n_pairs"] == 3
    assert row["mean_diff"] == pytest.approx(2.0)
    assert row["se_diff"] == pytest.approx(0.2 / math.sqrt(3))
    assert row["t"] == pytest.approx(2.0 / (0.2 / math.sqrt(3)))  # 17.32
    assert row["t"] == pytest.approx(17.320508, rel=1e-6)


def test_claim2a_fails_when_disarm_clearly_worse():
    disarm = {s: v - d for (s, v), d in zip(ARM.items(), [2.0, 2.2, 1.8])}
    c = compare.check_claim2(_summary({"arm": ARM, "disarm": disarm}))[0]
    assert c.verdict == FAILS
    assert c.details.iloc[0]["t"] == pytest.approx(-17.320508, rel=1e-6)


def test_claim2a_one_seed_is_not_enough():
    c = compare.check_claim2(_summary({"arm": {0: -100.0}, "disarm": {0: -90.0}}))[0]
    assert c.verdict == NOT_ENOUGH
    assert c.details.iloc[0]["n_pairs"] == 1


def test_claim2a_within_noise_is_not_enough():
    disarm = {s: v + d for (s, v), d in zip(ARM.items(), [1.0, -1.0, 0.5])}
    c = compare.check_claim2(_summary({"arm": ARM, "disarm": disarm}))[0]
    assert c.verdict == NOT_ENOUGH
    assert abs(c.details.iloc[0]["t"]) < 2


def test_pairs_only_common_seeds():
    arm = {1: -100.0, 2: -101.0, 3: -50.0}
    disarm = {0: -10.0, 1: -98.0, 2: -98.0}
    c = compare.check_claim2(_summary({"arm": arm, "disarm": disarm}))[0]
    row = c.details.iloc[0]
    assert row["n_pairs"] == 2
    assert row["mean_diff"] == pytest.approx(2.5)        # diffs 2 and 3
    assert row["se_diff"] == pytest.approx(0.5)          # std([2,3], ddof=1)=0.7071 / sqrt 2
    assert row["t"] == pytest.approx(5.0)


def test_one_failing_cell_fails_the_claim():
    good = _summary({"arm": ARM, "disarm": {s: v + 3 for s, v in ARM.items()}})
    bad = _summary({"arm": ARM, "disarm": {0: -103.0, 1: -103.5, 2: -102.2}}, ds="omniglot")
    c = compare.check_claim2(pd.concat([good, bad]))[0]
    assert list(c.details["verdict"]) == [HOLDS, FAILS]
    assert c.verdict == FAILS
    assert any("fashion_mnist/linear" in n for n in c.notes)


def test_claim2b_matches_within_noise_holds_and_clear_loss_fails():
    # diffs -0.1, 0.1, -0.3: mean -0.1, se 0.2/sqrt(3) -> t = -0.866 > -2
    loo = {0: -100.0, 1: -100.0, 2: -100.0}
    near = {0: -100.1, 1: -99.9, 2: -100.3}
    c = compare.check_claim2(_summary({"reinforce_loo": loo, "disarm": near}))[1]
    assert c.claim == "2b" and c.verdict == HOLDS
    assert c.details.iloc[0]["t"] == pytest.approx(-0.1 / (0.2 / math.sqrt(3)))
    worse = {0: -103.0, 1: -103.2, 2: -102.8}
    c = compare.check_claim2(_summary({"reinforce_loo": loo, "disarm": worse}))[1]
    assert c.verdict == FAILS


def test_claim2c_relax_cost():
    s = _summary({"relax": ARM, "disarm": ARM}, sps={"relax": 4.0, "disarm": 10.0})
    c = compare.check_claim2(s)[2]
    assert c.verdict == HOLDS
    assert c.details.iloc[0]["speed_ratio"] == pytest.approx(0.4)
    s = _summary({"relax": ARM, "disarm": ARM}, sps={"relax": 12.0, "disarm": 10.0})
    assert compare.check_claim2(s)[2].verdict == FAILS


def _metrics(var_by_est, seeds=(0, 1), steps=(0, 1000, 2000, 3000), ds="mnist", model="linear"):
    """var_by_est: {estimator: function(step, seed) -> grad variance}."""
    rows = []
    for est, f in var_by_est.items():
        for seed in seeds:
            for step in steps:
                rows.append({"run_id": f"{est}-{seed}", "dataset": ds, "model": model,
                             "estimator": est, "seed": seed, "step": step,
                             "grad_variance": f(step, seed)})
    return pd.DataFrame(rows)


def test_claim3_holds_with_half_the_variance():
    arm = lambda step, seed: 10.0 + seed + step / 1000  # noqa: E731
    m = _metrics({"arm": arm, "disarm": lambda st, se: 0.5 * arm(st, se)})
    c = compare.check_claim3(m)
    assert c.verdict == HOLDS
    row = c.details.iloc[0]
    assert row["median_ratio"] == pytest.approx(0.5)
    assert row["frac_steps_ratio_below_1"] == 1.0
    assert row["common_steps"] == 4


def test_claim3_fails_when_disarm_variance_higher_and_nan_rows_dropped():
    arm = lambda step, seed: 10.0  # noqa: E731
    m = _metrics({"arm": arm, "disarm": lambda st, se: 12.0})
    m.loc[(m["estimator"] == "arm") & (m["step"] == 0), "grad_variance"] = np.nan
    c = compare.check_claim3(m)
    assert c.verdict == FAILS
    assert c.details.iloc[0]["median_ratio"] == pytest.approx(1.2)
    assert c.details.iloc[0]["common_steps"] == 3


def test_claim3_one_seed_not_enough():
    m = _metrics({"arm": lambda st, se: 10.0, "disarm": lambda st, se: 1.0}, seeds=(0,))
    assert compare.check_claim3(m).verdict == NOT_ENOUGH


def test_claim3_marginal_reduction_is_not_well_below():
    m = _metrics({"arm": lambda st, se: 10.0, "disarm": lambda st, se: 9.0})
    c = compare.check_claim3(m)
    assert c.details.iloc[0]["median_ratio"] == pytest.approx(0.9)
    assert c.verdict == FAILS


def _toy(points):
    """points: list of (p0, estimator, sigma, variance, exact)."""
    return pd.DataFrame(points, columns=["p0", "estimator", "sigma_phi", "variance",
                                         "variance_exact"])


def test_claim1_exact_holds_and_fails():
    pts = []
    for s in (0.1, 0.5, 0.9):
        pts += [(0.49, "arm", s, 1.0, 1.0), (0.49, "disarm", s, 0.4, 4 * s * (1 - s))]
    c = compare.check_claim1(_toy(pts))
    assert c.verdict == HOLDS
    assert int(c.details["points"].sum()) == 3 and c.details.iloc[0]["basis"] == "exact"
    pts.append((0.499, "arm", 0.5, 1.0, 1.0))
    pts.append((0.499, "disarm", 0.5, 0.9, 1.01))
    c = compare.check_claim1(_toy(pts))
    assert c.verdict == FAILS
    assert "(0.499, 0.5)" in " ".join(c.notes)


def test_claim1_estimated_uses_num_samples():
    # No exact values. With 10001 samples, se of a variance v is v * sqrt(2/10000) =
    # 0.01414 v. arm 1.0, disarm 1.02: tolerance 2 * hypot(0.01414, 0.01442) = 0.0404 -> ok.
    df = _toy([(0.49, "arm", 0.5, 1.0, np.nan), (0.49, "disarm", 0.5, 1.02, np.nan)])
    df["num_samples"] = 10001
    assert compare.check_claim1(df).verdict == HOLDS
    df.loc[df["estimator"] == "disarm", "variance"] = 1.1
    assert compare.check_claim1(df).verdict == FAILS
    # Without num_samples: 5% relative tolerance.
    df2 = _toy([(0.49, "arm", 0.5, 1.0, np.nan), (0.49, "disarm", 0.5, 1.04, np.nan)])
    assert compare.check_claim1(df2).verdict == HOLDS


def test_claim1_without_toy_results():
    assert compare.check_claim1(None).verdict == NOT_ENOUGH
    only_arm = _toy([(0.49, "arm", 0.5, 1.0, 1.0)])
    assert compare.check_claim1(only_arm).verdict == NOT_ENOUGH


def test_claim4():
    assert compare.check_claim4(_summary({"arm": ARM})).verdict == NOT_ENOUGH
    vimco = {0: -95.0, 1: -96.0, 2: -95.5}
    local = {s: v + d for (s, v), d in zip(vimco.items(), [1.0, 1.2, 0.8])}
    c = compare.check_claim4(_summary({"vimco": vimco, "local_disarm": local}, metric="final_test_bound_k"))
    assert c.verdict == HOLDS
    # Judged on the K-sample test bound, not on the single-sample train ELBO.
    swapped = _summary({"vimco": local, "local_disarm": vimco}, metric="final_test_bound_k")
    assert compare.check_claim4(swapped).verdict == FAILS
    assert c.details.iloc[0]["comparison"] == "local_disarm vs vimco"
    assert compare.claim4_pairs(["vimco", "vimco_k4", "local_disarm_k4", "local_disarm"]) == [
        ("local_disarm", "vimco"), ("local_disarm_k4", "vimco_k4")]


def test_published_comparison_in_standard_errors(tmp_path):
    s = pd.concat([
        _summary({"arm": {0: -100.0, 1: -102.0, 2: -101.0}}),
        _summary({"arm": {0: -130.0, 1: -131.0}}, ds="omniglot"),
        _summary({"disarm": {0: -90.0}}),
    ])
    pub_path = tmp_path / "pub.csv"
    pub_path.write_text(
        "dataset,model,estimator,metric,value,stderr,source\n"
        "MNIST,linear,arm,final_train_elbo,-100.0,0.4,test\n"
        "mnist,linear,arm,train_elbo,-100.0,,test\n"
        "omniglot,linear,arm,final_train_elbo,-129.0,0.0,test\n"
        "mnist,linear,disarm,final_train_elbo,-91.0,0.1,test\n"
        "mnist,nonlinear,arm,final_train_elbo,-91.0,0.1,test\n")
    comp = compare.compare_published(s, compare.load_published(str(pub_path)))
    r0, r1, r2, r3, r4 = (comp.iloc[i] for i in range(5))
    # ours: mean -101, se 1/sqrt(3); diff -1; combined sqrt(1/3 + 0.16)
    assert r0["ours"] == pytest.approx(-101.0) and r0["n"] == 3
    assert r0["diff"] == pytest.approx(-1.0)
    assert r0["se_combined"] == pytest.approx(math.sqrt(1 / 3 + 0.16))
    assert r0["diff_in_se"] == pytest.approx(-1.4237, abs=1e-4)
    # missing published stderr counts as 0 (alias train_elbo -> final_train_elbo)
    assert r1["metric"] == "final_train_elbo"
    assert r1["diff_in_se"] == pytest.approx(-math.sqrt(3))
    assert "taken as 0" in r1["note"]
    # omniglot flagged: ours -130.5 +- 0.5 -> diff -1.5 / 0.5 = -3
    assert r2["diff_in_se"] == pytest.approx(-3.0)
    assert "not directly comparable" in r2["note"]
    # one seed: s.e. undefined -> n/a
    assert math.isnan(r3["diff_in_se"]) and "one seed" in r3["note"]
    assert r4["n"] == 0 and "no finished runs" in r4["note"]


def test_shipped_published_example_is_marked_as_not_published():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "results", "published_example.csv")
    df = compare.load_published(path)
    assert set(compare.PUBLISHED_COLUMNS) <= set(df.columns)
    assert df["source"].str.contains("format example, not published values").all()


def test_run_prints_verdicts_from_a_directory(tmp_path):
    disarm = {s: v + 2 for s, v in ARM.items()}
    write_summary(str(tmp_path), _summary({"arm": ARM, "disarm": disarm}).to_dict("records"))
    out = io.StringIO()
    claims, comp = compare.run(str(tmp_path), out=out)
    text = out.getvalue()
    assert [c.claim for c in claims] == ["1", "2a", "2b", "2c", "3", "4"]
    assert "| 2a | holds |" in text
    assert "| 4 | not enough runs to tell |" in text
    assert comp is None


def test_cells_with_too_few_runs_are_left_out_of_the_overall_verdict():
    good = _summary({"arm": ARM, "disarm": {s: v + 3 for s, v in ARM.items()}})
    thin = _summary({"arm": {0: -100.0}, "disarm": {0: -90.0}}, ds="fashion_mnist")
    c = compare.check_claim2(pd.concat([good, thin]))[0]
    assert list(c.details["verdict"]) == [HOLDS, NOT_ENOUGH]
    assert c.verdict == HOLDS
    assert any("too few runs: fashion_mnist/linear" in n for n in c.notes)
    # A judged cell within noise keeps the claim undecided.
    noisy = _summary({"arm": ARM, "disarm": {0: -99.0, 1: -102.0, 2: -98.5}}, ds="omniglot")
    assert compare.check_claim2(pd.concat([good, noisy]))[0].verdict == NOT_ENOUGH
