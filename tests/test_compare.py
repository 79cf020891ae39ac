"""Claim verdicts (plots/compare.py): the rules as pure functions on summary-like frames with known
answers, and on tiny real sweeps (two seeds: too few to judge) whose chosen values are set through the
suite's writer (tests.sweeps.set_metric_values: training.results_io.write_metrics, then rebuild_summary),
so the files keep the format the suite writes."""

import io
import json
import math
import os
import types

import numpy as np
import pandas as pd
import pytest

from contracts import results
from plots import compare, loading, style, verdicts
from tests import sweeps as testing

HOLDS, FAILS, NOT_ENOUGH, NOT_JUDGED = compare.HOLDS, compare.FAILS, compare.NOT_ENOUGH, compare.NOT_JUDGED


@pytest.fixture
def main_copy(main_sweep, tmp_path):
  return testing.copy_sweep(main_sweep, str(tmp_path / "main"))


def _final(sweep, estimator, values):
  """{run_id: {"train_elbo": {"last": v}}} for the estimator's runs, seed by seed."""
  return {r: {"train_elbo": {"last": v}} for r, v in zip(testing.run_ids(sweep, estimator), values)}


def _claim(sweep, name):
  return compare.check_claim(compare.claim_by_name(name), loading.load_sweep(sweep))


def _arm_finals(sweep):
  summary = pd.read_csv(os.path.join(sweep, results.SUMMARY_CSV))
  arm = summary[summary["estimator"] == "arm"].sort_values("seed")
  return list(arm["final_train_elbo"])


def _frame(effects, seeds=5, models=compare.PAPER_MODELS, datasets=compare.PAPER_DATASETS, noise=0.05, speed=None):
  """A summary-like frame of finished runs: ARM at -100 + seed noise, every other estimator at ARM + its
  effect (``effects``: estimator -> nats, or (dataset, model) -> nats for per-cell effects)."""
  rng = np.random.default_rng(0)
  rows = []
  for ds in datasets:
    for m in models:
      for seed in range(seeds):
        base = -100.0 + rng.normal()
        for est, effect in effects.items():
          e = effect.get((ds, m), effect.get("all", 0.0)) if isinstance(effect, dict) else effect
          sps = (speed or {}).get(est, 100.0) * (1 + 0.02 * rng.normal())
          rows.append(
            {
              "run_id": f"{ds}-{m}-{est}-seed{seed}",
              "dataset": ds,
              "model": m,
              "estimator": est,
              "seed": seed,
              "status": "done",
              "final_step": 1000,
              "final_train_elbo": base + e + noise * rng.normal(),
              "steps_per_sec": sps,
              "member_steps_per_sec": sps,
            }
          )
  return pd.DataFrame(rows)


def _check(name, done, metrics=None):
  data = types.SimpleNamespace(done=done, catalogue=style.Catalogue(), metrics=metrics or pd.DataFrame())
  return compare.check_claim(compare.claim_by_name(name), data)


def test_claims_are_one_table_naming_the_compared_estimators():
  assert [c.claim for c in compare.CLAIMS] == ["1", "2a", "2b", "2c", "3", "4"]
  assert {c.claim: (c.subject, c.other) for c in compare.CLAIMS}["2a"] == (("disarm",), ("arm",))
  claim4 = compare.claim_by_name("4")
  assert claim4.pair_by_cost and claim4.other == ("vimco",) and claim4.metric == "final_test_bound_k"
  assert compare.claim_by_name("2a").cells == compare.PAPER_CELLS and len(compare.PAPER_CELLS) == 6


def test_paired_t_by_hand():
  done = _frame({"arm": 0.0, "disarm": 0.0}, seeds=3, datasets=("mnist",), models=("linear",), noise=0.0)
  done.loc[done["estimator"] == "disarm", "final_train_elbo"] += [2.0, 2.4, 2.2]
  row = compare.paired_table(compare.claim_by_name("2a"), done, style.Catalogue()).iloc[0]
  # d = (2.0, 2.4, 2.2): sd 0.2, s.e. 0.2 / sqrt(3), df 2, t_{0.975, 2} = 4.303
  se = 0.2 / math.sqrt(3)
  assert (row["n"], row["df"]) == (3, 2) and row["diff"] == pytest.approx(2.2) and row["se"] == pytest.approx(se)
  assert row["t"] == pytest.approx(2.2 / se) and row["ci_low"] == pytest.approx(2.2 - 4.3027 * se, abs=1e-3)
  assert row["verdict"] == HOLDS and row["sdd"] > 4.3027 * se


def test_claim2a_holds_only_in_every_paper_cell_and_names_the_others():
  c = _check("2a", _frame({"arm": 0.0, "disarm": 1.0}))
  assert c.verdict == HOLDS and c.summary == "6 of 6 cells hold" and c.seeds == "5"
  # Two of the six cells: never "holds (all datasets, both models)".
  c = _check("2a", _frame({"arm": 0.0, "disarm": 1.0}, datasets=("mnist",)))
  assert c.verdict == NOT_ENOUGH
  assert c.summary.startswith("2 of 6 cells hold") and "not run: fashion_mnist/linear" in c.summary
  # One failing cell fails the claim and is named.
  c = _check("2a", _frame({"arm": 0.0, "disarm": {"all": 1.0, ("omniglot", "linear"): -1.0}}))
  assert c.verdict == FAILS and "fails: omniglot/linear (disarm vs arm)" in c.summary
  # Too few seeds: not judged, never a pass.
  c = _check("2a", _frame({"arm": 0.0, "disarm": 1.0}, seeds=2))
  assert c.verdict == NOT_ENOUGH and set(c.details["verdict"]) == {NOT_JUDGED}
  assert set(c.details["reason"]) == {"n = 2 < 3"}
  # A clear gap within the noise of few seeds: no difference detected, with the detectable size.
  c = _check("2a", _frame({"arm": 0.0, "disarm": 0.01}, noise=1.0, datasets=("mnist",), models=("linear",)))
  row = c.details.iloc[0]
  assert row["verdict"] == verdicts.NO_DIFFERENCE and f"{row['sdd']:.3g} nats at n = 5" in row["reason"]


def test_layered_models_are_listed_not_pooled():
  done = _frame({"arm": 0.0, "disarm": 1.0}, models=("linear", "nonlinear", "linear_2layer"))
  c = _check("2a", done)
  layered = c.details[c.details["model"] == "linear_2layer"]
  assert len(layered) == 3 and set(layered["verdict"]) == {NOT_JUDGED} and c.summary == "6 of 6 cells hold"
  assert c.verdict == HOLDS


def test_claim2b_is_non_inferiority_at_the_margin():
  m = compare.MARGIN_NATS
  assert _check("2b", _frame({"reinforce_loo": 0.0, "disarm": -0.1})).verdict == HOLDS
  assert _check("2b", _frame({"reinforce_loo": 0.0, "disarm": -3 * m})).verdict == FAILS
  # Noisy and near the margin: neither shown.
  c = _check("2b", _frame({"reinforce_loo": 0.0, "disarm": -m}, noise=0.5, datasets=("mnist",), models=("linear",)))
  assert c.details.iloc[0]["verdict"] == verdicts.UNDECIDED and c.verdict == NOT_ENOUGH


def test_claim2c_compares_cost_per_step_at_equal_stack_size():
  done = _frame({"disarm": 0.0, "relax": 0.0}, speed={"relax": 40.0, "disarm": 100.0})
  c = _check("2c", done)
  assert c.verdict == HOLDS and (c.details["stack_size"] == 1).all()
  assert c.details.iloc[0]["log_ratio"] == pytest.approx(math.log(100 / 40), abs=0.05)
  assert _check("2c", _frame({"disarm": 0.0, "relax": 0.0}, speed={"relax": 120.0})).verdict == FAILS
  # RELAX in stacks of 2 (member_steps_per_sec = 2 x steps_per_sec), DisARM alone: not comparable.
  relax = done["estimator"] == "relax"
  done.loc[relax, "member_steps_per_sec"] = 2 * done.loc[relax, "steps_per_sec"]
  c = _check("2c", done)
  assert c.verdict == NOT_ENOUGH and set(c.details["verdict"]) == {NOT_JUDGED}
  assert c.details.iloc[0]["reason"] == "not comparable: no common stack size (2 vs 1)"


def test_two_seed_sweep_is_not_judged(main_copy):
  arm = _arm_finals(main_copy)
  testing.set_metric_values(main_copy, _final(main_copy, "disarm", [arm[0] + 2.0, arm[1] + 2.4]))
  c = _claim(main_copy, "2a")
  assert c.verdict == NOT_ENOUGH and c.steps == "20" and c.seeds == "2"
  row = c.details.iloc[0]
  assert row["n"] == 2 and row["df"] == 1 and row["comparison"] == "DisARM vs ARM"
  assert row["diff"] == pytest.approx(2.2, abs=1e-4) and row["se"] == pytest.approx(0.2, abs=1e-4)
  assert row["verdict"] == NOT_JUDGED and row["reason"] == "n = 2 < 3"
  assert "not judged: omniglot/nonlinear (DisARM vs ARM)" in c.summary and "not run: mnist/linear" in c.summary
  assert "(runs of 20 steps, 2 seed(s) per cell (paper: 1,000,000 steps, 5 seeds))" in c.to_markdown()


def test_claim2c_on_a_sweep_reads_stack_sizes(main_copy):
  relax, disarm = testing.run_ids(main_copy, "relax"), testing.run_ids(main_copy, "disarm")
  testing.set_metric_values(
    main_copy, {**{r: {"steps_per_sec": 40.0} for r in relax}, **{r: {"steps_per_sec": 100.0} for r in disarm}}
  )
  c = _claim(main_copy, "2c")
  row = c.details.iloc[0]
  # Both seeds of an estimator were one stack: one timing each, too few to judge.
  assert row["stack_size"] == 2 and row["timings"] == "1/1" and row["verdict"] == NOT_JUDGED
  assert row["log_ratio"] == pytest.approx(math.log(100 / 40))
  assert (row["f_evals_subject"], row["f_evals_other"]) == (3, 2)  # from config.json
  assert c.verdict == NOT_ENOUGH


def _scale_basket(sweep, factors):
  """basket_var_disarm = factor(seed) x basket_var_arm in every run of the sweep."""
  changes = {}
  for est in ("reinforce_loo", "arm", "disarm", "relax"):
    for seed, run_id in enumerate(testing.run_ids(sweep, est)):
      changes[run_id] = {
        results.basket_column("disarm"): lambda m, f=factors[seed]: f * m[results.basket_column("arm")]
      }
  testing.set_metric_values(sweep, changes)


def test_claim3_on_the_basket(main_copy):
  _scale_basket(main_copy, [0.5, 0.6])
  c = _claim(main_copy, "3")
  row = c.details.iloc[0]
  assert row["basis"] == "basket" and "variance basket" in c.basis
  assert row["ratio_mean"] == pytest.approx(0.55) and row["diff"] == pytest.approx(0.45)
  assert row["se"] == pytest.approx(0.05) and row["df"] == 1
  assert row["evaluations"] == 16  # 4 training estimators x 2 seeds x 2 evaluations
  assert row["verdict"] == NOT_JUDGED and c.verdict == NOT_ENOUGH  # two seeds


def test_claim3_rule_on_seeds():
  metrics = []
  for seed, r in enumerate([0.5, 0.55, 0.45, 0.5]):
    for step in (0, 20):
      metrics.append(
        {
          "run_id": f"s{seed}",
          "dataset": "mnist",
          "model": "linear",
          "estimator": "disarm",
          "seed": seed,
          "step": step,
          "grad_variance": 1.0,
          results.basket_column("disarm"): r,
          results.basket_column("arm"): 1.0,
        }
      )
  data = types.SimpleNamespace(catalogue=style.Catalogue(), metrics=pd.DataFrame(metrics))
  c = compare.check_claim(compare.claim_by_name("3"), data)
  assert c.verdict == HOLDS and c.details.iloc[0]["ratio_mean"] == pytest.approx(0.5) and c.details.iloc[0]["n"] == 4


def test_claim3_falls_back_to_grad_variance_without_a_basket(main_copy):
  from training import results_io

  for est in ("reinforce_loo", "arm", "disarm", "relax"):
    for run_id in testing.run_ids(main_copy, est):
      path = os.path.join(main_copy, results.RUNS_DIR, run_id, results.METRICS_CSV)
      frame = results_io.read_metrics(path)
      results_io.write_metrics(path, frame.drop(columns=[c for c in frame.columns if c.startswith("basket_var_")]))
  arm = {
    seed: pd.read_csv(os.path.join(main_copy, results.RUNS_DIR, r, results.METRICS_CSV))["grad_variance"]
    for seed, r in enumerate(testing.run_ids(main_copy, "arm"))
  }
  testing.set_metric_values(
    main_copy,
    {
      r: {"grad_variance": lambda m, a=arm[seed]: 0.4 * a.to_numpy()}
      for seed, r in enumerate(testing.run_ids(main_copy, "disarm"))
    },
  )
  c = _claim(main_copy, "3")
  row = c.details.iloc[0]
  assert row["basis"] == "grad_variance" and "no variance basket" in c.basis
  assert row["ratio_mean"] == pytest.approx(0.4)


def test_claim1_on_the_toy_csvs(main_copy):
  c = _claim(main_copy, "1")
  assert c.verdict != FAILS and int(c.details["points"].sum()) == 6 and c.seeds == "200"
  assert "variance_exact" in " ".join(c.notes)
  path = os.path.join(main_copy, results.TOY_DIR, results.TOY_VARIANCE_CSV)
  toy = pd.read_csv(path)
  at = (toy["p0"] == 0.499) & (toy["sigma_phi"] == 0.5)
  disarm, arm = at & (toy["estimator"] == "disarm"), at & (toy["estimator"] == "arm")
  # The closed form alone changing moves no verdict (the implementation is judged) but shows as a disagreement.
  toy.loc[disarm, "variance_exact"] = 2 * toy.loc[arm, "variance_exact"].item() + 1.0
  toy.to_csv(path, index=False)
  c2 = _claim(main_copy, "1")
  assert c2.verdict == c.verdict and "disagree at (p0, sigma_phi): (0.499, 0.5)" in " ".join(c2.notes)
  # The implementation's variance doubling over ARM's fails the claim.
  toy.loc[disarm, "variance"] = 3 * toy.loc[arm, "variance"].item()
  toy.to_csv(path, index=False)
  c3 = _claim(main_copy, "1")
  assert c3.verdict == FAILS and "(0.499, 0.5)" in " ".join(c3.notes)
  os.remove(path)
  assert _claim(main_copy, "1").verdict == NOT_ENOUGH


def test_claim4_pairs_by_num_f_evals_from_config(multisample_sweep, tmp_path):
  sweep = testing.copy_sweep(multisample_sweep, str(tmp_path / "multisample"))
  summary = pd.read_csv(os.path.join(sweep, results.SUMMARY_CSV))
  changes = {}
  for local, vimco, deltas in (("local_disarm_1", "vimco_2", (1.0, 1.2)), ("local_disarm_2", "vimco_4", (-1.0, -1.4))):
    base = summary[summary["estimator"] == vimco].sort_values("seed")["final_test_bound_k"].tolist()
    for run_id, b, d in zip(testing.run_ids(sweep, local), base, deltas):
      changes[run_id] = {"test_bound_k": {"last": b + d}}
  testing.set_metric_values(sweep, changes)
  c = _claim(sweep, "4")
  assert list(c.details["comparison"]) == ["Local DisARM (K=2) vs VIMCO (K=2)", "Local DisARM (K=4) vs VIMCO (K=4)"]
  assert list(c.details["K"]) == [2, 4]
  assert list(c.details["verdict"]) == [NOT_JUDGED, NOT_JUDGED] and c.verdict == NOT_ENOUGH
  assert c.details.iloc[0]["diff"] == pytest.approx(1.1, abs=1e-4)
  text = c.to_markdown()
  assert "trains the m-sample bound" in text and "2m-sample test bound" in text
  assert "var_verdict" in c.details and set(c.details["var_verdict"]) <= {NOT_JUDGED}
  # The pairing reads config.json: recorded as costing 2 evaluations, vimco_4 pairs with local_disarm_1.
  for run_id in testing.run_ids(sweep, "vimco_4"):
    path = os.path.join(sweep, results.RUNS_DIR, run_id, results.CONFIG_JSON)
    config = json.load(open(path))
    config[results.ESTIMATOR_INFO_KEY]["num_f_evals"] = 2
    json.dump(config, open(path, "w"))
  pairs = {tuple(x.split(" vs ")) for x in _claim(sweep, "4").details["comparison"]}
  assert len(pairs) == 2 and all(p[0].startswith("Local DisARM") for p in pairs)
  assert compare.comparisons(
    compare.claim_by_name("4"),
    loading.load_sweep(sweep).catalogue,
    ["vimco_2", "vimco_4", "local_disarm_1", "local_disarm_2"],
  ) == [("local_disarm_1", "vimco_2"), ("local_disarm_1", "vimco_4")]


def test_claims_without_their_estimators_are_not_enough(multisample_sweep):
  data = loading.load_sweep(multisample_sweep)
  for claim in ("2a", "2b", "2c", "3"):
    c = compare.check_claim(compare.claim_by_name(claim), data)
    assert c.verdict == NOT_ENOUGH and c.scope() == "no runs compared"


def test_combine_verdicts():
  assert compare.combine_verdicts([HOLDS, HOLDS]) == HOLDS
  assert compare.combine_verdicts([HOLDS, FAILS, NOT_ENOUGH]) == FAILS
  assert compare.combine_verdicts([HOLDS, NOT_ENOUGH]) == NOT_ENOUGH
  assert compare.combine_verdicts([]) == NOT_ENOUGH


def test_run_prints_verdicts_and_the_default_comparison(main_sweep):
  out = io.StringIO()
  claims, comp = compare.run(main_sweep, out=out)
  text = out.getvalue()
  assert [c.claim for c in claims] == ["1", "2a", "2b", "2c", "3", "4"]
  assert "| 4 | not enough runs to tell |" in text
  assert "## Comparison with published numbers" in text and len(comp) == 4
  claims, comp = compare.run(main_sweep, published_csv="none", out=io.StringIO())
  assert comp is None


def test_paired_statistics_use_common_seeds_only(main_copy):
  import shutil

  shutil.rmtree(os.path.join(main_copy, results.RUNS_DIR, testing.run_ids(main_copy, "arm")[1]))
  from training import results_io

  results_io.rebuild_summary(main_copy)
  c = _claim(main_copy, "2a")
  assert c.details.iloc[0]["n"] == 1 and c.verdict == NOT_ENOUGH
  assert "not judged: omniglot/nonlinear (DisARM vs ARM)" in c.summary
  assert not math.isnan(c.details.iloc[0]["diff"]) and np.isnan(c.details.iloc[0]["t"])
