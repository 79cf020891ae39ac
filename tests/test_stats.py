"""The statistics behind every verdict (plots/stats.py, plots/verdicts.py): t quantiles against table
values, and simulations with known effects: how often a rule passes with no effect (at most its nominal
level) and how often it detects an effect of the size it says it can detect (its stated power).

Simulations use fixed seeds and REPS replications; a rate is compared with its target within
TOL_SE binomial standard errors, sqrt(q (1 - q) / REPS), so a correct rule fails one of these
checks with probability of order 1e-3 per check, and a rule off by a few points fails it."""

import math

import numpy as np
import pandas as pd
import pytest

from plots import compare, published, stats, verdicts

REPS = 4000
TOL_SE = 3.0
ALPHA = verdicts.ALPHA


def _upper(q):
  """Largest rate a rule with true rate q shows in REPS replications, within TOL_SE binomial s.e."""
  return q + TOL_SE * math.sqrt(q * (1 - q) / REPS)


def _paired_tests(n, effect, seed, sd=1.0, margin=None):
  """REPS paired tests on n simulated per-seed differences d ~ N(effect, sd^2)."""
  rng = np.random.default_rng(seed)
  d = rng.normal(effect, sd, size=(REPS, n))
  seeds = list(range(n))
  zero = pd.Series(np.zeros(n), index=seeds)
  return [stats.paired_test(pd.Series(row, index=seeds), zero, margin) for row in d]


def test_t_quantiles_match_tables():
  # Student's t 97.5% points (any statistics table): df 1, 2, 4, 10, inf.
  for df, q in ((1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (math.inf, 1.960)):
    assert stats.t_quantile(0.975, df) == pytest.approx(q, abs=1e-3)
  assert stats.t_sf(2.776, 4) == pytest.approx(0.025, abs=1e-4)


def test_smallest_detectable_difference_is_the_power_formula():
  # Normal limit: (z_{0.975} + z_{0.8}) se = (1.960 + 0.842) se, less the far tail's share (< 1e-5).
  assert stats.smallest_detectable(1.0, math.inf) == pytest.approx(1.95996 + 0.84162, abs=1e-4)
  # Finite df: larger than the normal-quantile approximation with t quantiles is not, close to it.
  approx = stats.t_quantile(0.975, 4) + stats.t_quantile(0.8, 4)
  assert stats.smallest_detectable(2.0, 4) == pytest.approx(2 * approx, rel=0.05)
  assert math.isnan(stats.smallest_detectable(float("nan"), 4))


def test_welch_satterthwaite_df():
  # Equal s.e. and df: twice the df; a known (inf df) term drops out: (a + b)^2 / (a^2 / df_a).
  assert stats.welch_df(1.0, 4, 1.0, 4) == pytest.approx(8.0)
  assert stats.welch_df(1.0, 4, 1.0, math.inf) == pytest.approx(16.0)
  t = stats.welch_test([1.0, 2.0, 3.0], [1.0, 1.5, 2.0, 2.5, 3.0])
  sa, sb = 1.0 / math.sqrt(3), math.sqrt(0.625 / 5)
  assert t["df"] == pytest.approx((sa**2 + sb**2) ** 2 / (sa**4 / 2 + sb**4 / 4))
  assert t["diff"] == pytest.approx(0.0) and t["n"] == 3


def test_holm_rejects_step_down():
  assert list(stats.holm([0.01, 0.04, 0.03, 0.005])) == [True, False, False, True]
  assert list(stats.holm([0.01, float("nan")])) == [True, False]  # 0.01 <= 0.05 / 2


@pytest.mark.slow  # thousands of simulated replications
@pytest.mark.parametrize("n", [2, 3, 5])
def test_beats_false_positive_rate_at_most_nominal(n):
  """No effect: "holds" (a pass) at most ALPHA / 2, any decision at most ALPHA; n = 2 is never judged."""
  got = [verdicts.decide_beats(t)[0] for t in _paired_tests(n, 0.0, seed=n)]
  holds = np.mean([v == verdicts.HOLDS for v in got])
  decided = np.mean([v in (verdicts.HOLDS, verdicts.FAILS) for v in got])
  assert holds <= _upper(ALPHA / 2) and decided <= _upper(ALPHA)
  if n < verdicts.MIN_N:
    assert set(got) == {verdicts.NOT_JUDGED}
  else:
    # A real test, not a silent one: its rate is near ALPHA, not near 0.
    assert decided >= ALPHA - TOL_SE * math.sqrt(ALPHA * (1 - ALPHA) / REPS)


@pytest.mark.slow  # thousands of simulated replications
@pytest.mark.parametrize("n", [3, 5])
def test_beats_detects_the_smallest_detectable_difference_at_the_stated_power(n):
  """An effect of exactly the size the rule says it detects (for the true s.e. sd / sqrt(n)) holds with
  probability POWER."""
  effect = stats.smallest_detectable(1.0 / math.sqrt(n), n - 1)
  got = [verdicts.decide_beats(t)[0] for t in _paired_tests(n, effect, seed=10 + n)]
  rate = np.mean([v == verdicts.HOLDS for v in got])
  tol = TOL_SE * math.sqrt(verdicts.POWER * (1 - verdicts.POWER) / REPS)
  assert abs(rate - verdicts.POWER) <= tol


@pytest.mark.slow  # thousands of simulated replications
@pytest.mark.parametrize("n", [2, 3, 5])
def test_noninferiority_passes_at_most_alpha_at_the_margin(n):
  """True difference exactly -margin (the worst allowed): "matches or beats" holds at most ALPHA."""
  m = verdicts.MARGIN_NATS
  got = [verdicts.decide_noninferior(t, m)[0] for t in _paired_tests(n, -m, seed=20 + n, sd=0.5, margin=m)]
  assert np.mean([v == verdicts.HOLDS for v in got]) <= _upper(ALPHA)


@pytest.mark.slow  # thousands of simulated replications
@pytest.mark.parametrize("n", [2, 3, 5])
def test_equivalence_passes_at_most_alpha_at_the_margin(n):
  """Published comparison: a true gap of exactly +margin is called consistent at most ALPHA of the time
  (Welch df with the published s.e. on 4 df)."""
  rng = np.random.default_rng(30 + n)
  m = verdicts.MARGIN_NATS
  consistent = 0
  for _ in range(REPS):
    ours = rng.normal(m, 0.3, size=n)
    pub_se = 0.1 * math.sqrt(rng.chisquare(4) / 4)  # s.e. of 5 published runs, true 0.1
    pub = rng.normal(0.0, 0.1)
    _, verdict, _ = published.judge_difference(ours, pub, pub_se, 4.0)
    consistent += verdict.startswith(verdicts.CONSISTENT)
  assert consistent / REPS <= _upper(ALPHA)


@pytest.mark.slow  # thousands of simulated replications
def test_welch_false_positive_rate_with_unequal_variances():
  """Welch-Satterthwaite df keeps the level with unequal spreads and sizes (3 vs 5 timings, sd 1 vs 3)."""
  rng = np.random.default_rng(40)
  decided = 0
  for _ in range(REPS):
    t = stats.welch_test(rng.normal(0, 1, 3), rng.normal(0, 3, 5))
    decided += verdicts.decide_beats(t, unit="")[0] in (verdicts.HOLDS, verdicts.FAILS)
  assert decided / REPS <= _upper(ALPHA)


@pytest.mark.slow  # thousands of simulated replications
def test_claim_fails_at_most_alpha_over_six_null_cells():
  """Six cells with no effect, n = 5: the claim-level "fails" (any cell, Holm) at most ALPHA / 2."""
  rng = np.random.default_rng(50)
  fails = 0
  reps = REPS // 4
  for _ in range(reps):
    rows = []
    for c in range(6):
      d = rng.normal(0, 1, 5)
      t = stats.difference_test(d.mean(), d.std(ddof=1) / math.sqrt(5), 4, 5)
      v, reason = verdicts.decide_beats(t)
      rows.append({"dataset": f"d{c}", "model": "m", **t, "verdict": v, "reason": reason})
    fails += verdicts.overall(verdicts.holm_fails(pd.DataFrame(rows)))[0] == verdicts.FAILS
  q = ALPHA / 2
  assert fails / reps <= q + TOL_SE * math.sqrt(q * (1 - q) / reps)


def _toy(v_subject, v_other, draws, exact=None):
  rows = []
  for i, (va, vb) in enumerate(zip(v_subject, v_other)):
    for est, v in (("disarm", va), ("arm", vb)):
      rows.append(
        {
          "p0": 0.49,
          "estimator": est,
          "sigma_phi": 0.05 * (i + 1),
          "variance": v,
          "variance_exact": math.nan if exact is None else exact[est][i],
          "num_samples": draws,
        }
      )
  return pd.DataFrame(rows)


@pytest.mark.slow  # thousands of simulated replications
def test_claim1_false_violation_rate_at_equal_variances():
  """Equal true variances at 19 points, normal draws (sample variance = var chi2_{n-1} / (n-1)): a
  violation anywhere at most ALPHA (Holm over points)."""
  rng = np.random.default_rng(60)
  draws, reps = 2000, REPS // 4
  violations = 0
  for _ in range(reps):
    va = rng.chisquare(draws - 1, 19) / (draws - 1)
    vb = rng.chisquare(draws - 1, 19) / (draws - 1)
    violations += compare.check_claim1(_toy(va, vb, draws)).verdict == compare.FAILS
  assert violations / reps <= ALPHA + TOL_SE * math.sqrt(ALPHA * (1 - ALPHA) / reps)


def test_claim1_on_monte_carlo_variances_with_the_closed_form_as_reference():
  rng = np.random.default_rng(61)
  draws = 2000
  true_a, true_b = np.full(5, 0.5), np.ones(5)
  va = true_a * rng.chisquare(draws - 1, 5) / (draws - 1)
  vb = true_b * rng.chisquare(draws - 1, 5) / (draws - 1)
  exact = {"disarm": true_a, "arm": true_b}
  c = compare.check_claim1(_toy(va, vb, draws, exact))
  assert c.verdict == compare.HOLDS and "5 of 5 points show 'at most'" in c.summary
  assert "agree with `variance_exact` within the Monte Carlo uncertainty" in " ".join(c.notes)
  assert "at 5 of 5 points" in " ".join(c.notes)
  # The implementation regresses (its variance doubles at one point) while the closed form says
  # "at most": the verdict follows the implementation, and the disagreement is reported.
  va2 = va.copy()
  va2[2] = 2.0 * vb[2]
  c = compare.check_claim1(_toy(va2, vb, draws, exact))
  assert c.verdict == compare.FAILS and "(0.49, 0.15)" in " ".join(c.notes)
  assert "disagree at (p0, sigma_phi): (0.49, 0.15)" in " ".join(c.notes)
  # Too few draws for the large-sample s.e.: not judged, never a pass.
  assert compare.check_claim1(_toy(va, vb, 50)).verdict == compare.NOT_ENOUGH
  # An equal pair of variances at one point cannot show "at most" beyond 5%: not enough to tell.
  va3 = va.copy()
  va3[0] = vb[0]
  assert compare.check_claim1(_toy(va3, vb, draws)).verdict == compare.NOT_ENOUGH


def test_variance_se_column_is_used_where_given():
  toy = _toy([0.5], [1.0], 2000)
  toy["variance_se"] = [0.3, 0.3]  # heavy tails: much larger than normal theory's ~0.016-0.03
  c = compare.check_claim1(toy)
  assert c.verdict == compare.NOT_ENOUGH  # 0.5 vs 1.0 is no longer beyond the noise
  assert not any("no `variance_se` column" in n for n in c.notes)
