"""Statistical and interface tests for every estimator in ``estimators.ESTIMATORS``.

Every test that takes ``name`` is parametrised over the registry, so an estimator
added to ``ESTIMATORS`` is covered without editing this file.

* Unbiasedness (PROTOCOL.md sections 1, 2, 7.1): the harness ``estimators.check``
  (the one the driver's ``check`` preset runs on a new estimator): Monte Carlo means
  against the exact gradient from enumerating all 2^D states, D in {1, 2, 3, 4}, five
  objectives, logits near 0, moderate and saturated (+-6), a constant f (zero gradient)
  and an f that ignores one bit; estimators with state at their initial and at a random state.
* Planted errors: sign-flipped, doubled, scaled by 0.97 and mis-derived estimators must
  fail the very same check, so a passing check means something.
* Variance (PROTOCOL.md 7.1): for D = 1 ARM's and DisARM's variances are computed
  exactly from the implementations; for D > 1 they are compared from paired samples.
* Interface: shapes, per-example independence, seeding, errors.

The Monte Carlo draws run under XLA (``tf.function(jit_compile=True)``), the path the
trainer uses; the interface tests run eagerly.
"""

import dataclasses
import math
import statistics

import numpy as np
import pytest
import tensorflow as tf

import estimators
from estimators import ESTIMATORS, Objective, SeedNoise, estimate_gradient, get_estimator
from estimators import arm as arm_module
from estimators import check as harness
from estimators import reinforce_loo as loo_module
from estimators.base import Estimator, EstimatorOutput

# Estimators of d E[f(b)]; multi-sample-bound estimators (VIMCO, local DisARM) target
# d E[log mean exp f] instead and are tested in tests/test_multisample.py.
NAMES = sorted(n for n, e in ESTIMATORS.items() if not e.bound_estimator)
STATEFUL = sorted(n for n, e in ESTIMATORS.items() if e.has_state and not e.bound_estimator)
_PHI = statistics.NormalDist().inv_cdf


# --------------------------------------------------------------------------------------
# Objectives and exact gradients: the harness's own (estimators/check.py).
# --------------------------------------------------------------------------------------

make_f = harness.table_objective


def test_exact_gradient_matches_finite_differences():
  rng = np.random.default_rng(11)
  logits = rng.normal(size=(3, 3)) * 2.0
  tables = rng.normal(size=(3, 8))

  def expectation(lg):
    p = 1.0 / (1.0 + np.exp(-lg))
    bits = harness.state_bits(3)
    probs = np.prod(np.where(bits[None] > 0, p[:, None, :], 1.0 - p[:, None, :]), axis=-1)
    return np.sum(probs * tables, axis=-1)

  h = 1e-6
  numeric = np.zeros_like(logits)
  for d in range(3):
    step = np.zeros_like(logits)
    step[:, d] = h
    numeric[:, d] = (expectation(logits + step) - expectation(logits - step)) / (2 * h)
  np.testing.assert_allclose(harness.exact_gradient(logits, tables), numeric, rtol=1e-6, atol=1e-9)
  # And the table and the tf objective agree on {0,1}^D.
  f = make_f(tables)
  for i, b in enumerate(harness.state_bits(3)):
    value = f(tf.constant(np.broadcast_to(b, (1, 3, 3)), tf.float32)).numpy()[0]
    np.testing.assert_allclose(value, tables[:, i], rtol=1e-6)


# --------------------------------------------------------------------------------------
# The test cases: each D gets a batch of examples (one row of logits, one table each).
# --------------------------------------------------------------------------------------


def _build_cases():
  rng = np.random.default_rng(20201206)
  cases = {}
  # D = 1: symmetric, moderate, and saturated logits.
  cases[1] = (np.array([[0.0], [1.3], [-2.1], [6.0], [-6.0]]), rng.normal(size=(5, 2)))
  # D = 2: random; both bits saturated in opposite directions; one saturated bit;
  # a constant f (exact gradient 0: ARM/DisARM/LOO then return exactly 0, zero variance).
  logits2 = np.array([rng.normal(size=2) * 1.5, [6.0, -6.0], [0.3, 6.0], rng.normal(size=2)])
  tables2 = rng.normal(size=(4, 4))
  tables2[3] = 0.7
  cases[2] = (logits2, tables2)
  # D = 3: random; mixed saturated; an f that ignores the last bit (exact gradient 0 there).
  logits3 = np.array([rng.normal(size=3) * 1.5, [-6.0, 0.5, 6.0], rng.normal(size=3)])
  tables3 = rng.normal(size=(3, 8))
  tables3[2, 4:] = tables3[2, :4]  # states with bit 2 set copy those without it
  cases[3] = (logits3, tables3)
  # D = 4: random; two saturated bits; all saturated.
  logits4 = np.array([rng.normal(size=4) * 1.5, [6.0, -0.7, -6.0, 1.1], [6.0, -6.0, -6.0, 6.0]])
  cases[4] = (logits4, rng.normal(size=(3, 16)))
  return cases


CASES = _build_cases()
BITS_PER_SWEEP = sum(lg.size for lg, _ in CASES.values())  # 34 z-scores per estimator

# The "powerful" case for planted errors: moderate logits (one negative) and a table with
# large differences, so |exact| / s.e. is in the hundreds at PLANT_DRAWS draws.
PLANT_LOGITS = np.array([[-1.5, 0.8]])
PLANT_TABLE = np.array([[0.0, 2.0, -1.0, 3.0]])

N_DRAWS = 200_000  # Monte Carlo draws per unbiasedness check on CASES
PLANT_DRAWS = 50_000
# Every estimator is also checked on the harness's standard cases (five objectives x
# three kinds of logits x D = 1..4, plus a constant f and one ignoring a bit), at its
# initial state and at a random one.
STANDARD_CASES = harness.standard_cases()
STANDARD_COORDINATES = sum(case.logits.size for case in STANDARD_CASES)


def draws_for(est):
  """The harness's draws for estimators without state; for those with state, which are checked
  twice (initial and random state) and evaluate networks per draw (RODEO: K (K-1) (D+1)), half the
  check command's (its planted control-variate errors are tested below on a case with more power)."""
  return harness.STATEFUL_DRAWS // 2 if est.has_state else harness.DEFAULT_DRAWS


# ---- Bonferroni bound for the unbiasedness z-scores ---------------------------------
# Every estimator is bounded on these cases (|f| bounded, all weights bounded, the noise
# clipped away from 0 and 1), so by the CLT the per-bit mean of N i.i.d. draws is normal
# to good accuracy and z = (mean - exact) / (s / sqrt(N)) is ~N(0, 1) under unbiasedness.
# The least normal case is a saturated bit whose estimate is mostly 0 or tiny (DisARM at
# |phi| = 6 is nonzero w.p. 2 * sigmoid(-6) = 0.5%): even then N = 1e5 gives ~500
# nonzero draws (2e4: ~100), enough for the normal tail to be accurate to a small factor.
# Counting every z-score this file expects to pass (registry sweep over the standard
# cases at each state, extra LOO sample sizes, and the unmodified estimators on the
# planted-error case), a two-sided bound |z| < Phi^{-1}(1 - ALPHA / (2 M)) makes the
# probability that ANY correct estimator fails at most ALPHA = 0.1% (Bonferroni; the
# seeds are fixed, so in practice the outcome is deterministic, and this says a failure
# is not plausibly bad luck).
ALPHA = harness.ALPHA
EXTRA_LOO_K = (3, 4)
M_UNBIASED = (
  sum(STANDARD_COORDINATES * (2 if ESTIMATORS[n].has_state else 1) for n in NAMES)
  + len(EXTRA_LOO_K) * CASES[3][0].size
  + len(NAMES) * PLANT_LOGITS.size
)
Z_BOUND = harness.z_bound(M_UNBIASED, ALPHA)  # ~5.1 for M ~ 4000


def mc_draws(estimator, tables, logits, seed, num_draws=N_DRAWS, state=None, jit=True):
  """num_draws independent estimates as float64 [num_draws, C, D] for lookup tables (the harness's sampler)."""
  est = get_estimator(estimator)
  return harness.mc_draws(est, make_f(tables), logits, seed, num_draws, state=state, jit=jit)


def compare(draws, logits, tables):
  """The harness's z-scores of draws against the exact gradient, under this file's bound."""
  return harness.compare_to_exact(draws, logits, tables, Z_BOUND)


# --------------------------------------------------------------------------------------
# 1. Unbiasedness of every registered estimator.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "name", [pytest.param(n, marks=pytest.mark.slow) if ESTIMATORS[n].has_state else n for n in NAMES]
)
def test_unbiased(name):
  """The harness on its standard cases; an estimator with state at its initial and a random state."""
  est = ESTIMATORS[name]
  result = harness.check_unbiased(est, STANDARD_CASES, num_draws=draws_for(est), seed=1, num_tests=M_UNBIASED)
  assert result.ok, result.describe()
  assert {f.state for f in result.findings} == ({"initial", "random"} if est.has_state else {"none"})


@pytest.mark.parametrize("num_samples", EXTRA_LOO_K)
def test_reinforce_loo_unbiased_for_other_sample_counts(num_samples):
  logits, tables = CASES[3]
  est = loo_module.make(num_samples)
  assert est.num_f_evals == num_samples
  case = harness.table_case(tables, logits)
  result = harness.check_unbiased(est, [case], num_draws=N_DRAWS, seed=2000 + num_samples, num_tests=M_UNBIASED)
  assert result.ok, result.describe()


# --------------------------------------------------------------------------------------
# 2. Planted errors must fail the same check.
# --------------------------------------------------------------------------------------


def _wrapped(est, transform, label):
  def fn(f, logits, noise, state=None, context=None):
    out = est.fn(f, logits, noise, state=state, context=context)
    return out._replace(grad=transform(out.grad))

  return dataclasses.replace(est, name=f"{est.name}_{label}", fn=fn)


def _disarm_wrong_sign(f, logits, noise, state=None, context=None):
  """DisARM with (-1)^{b~} instead of (-1)^{b} (our own code)."""
  _, bits = arm_module.antithetic_pairs(logits, noise)
  b, b_tilde = bits[0], bits[1]
  f_values = f(bits)
  diff = (f_values[1] - f_values[0])[..., tf.newaxis]
  grad = 0.5 * diff * (1.0 - 2.0 * b_tilde) * tf.abs(b - b_tilde) * tf.sigmoid(tf.abs(logits))
  return EstimatorOutput(grad, bits, f_values)


def _disarm_no_abs(f, logits, noise, state=None, context=None):
  """DisARM with sigmoid(phi) instead of sigmoid(|phi|): biased wherever phi < 0."""
  _, bits = arm_module.antithetic_pairs(logits, noise)
  b, b_tilde = bits[0], bits[1]
  f_values = f(bits)
  diff = (f_values[1] - f_values[0])[..., tf.newaxis]
  grad = 0.5 * diff * (1.0 - 2.0 * b) * tf.abs(b - b_tilde) * tf.sigmoid(logits)
  return EstimatorOutput(grad, bits, f_values)


def _arm_without_antithetic(f, logits, noise, state=None, context=None):
  """ARM using f(b~) alone instead of f(b~) - f(b): expectation is half the gradient."""
  u, bits = arm_module.antithetic_pairs(logits, noise)
  f_values = f(bits)
  return EstimatorOutput(f_values[1][..., tf.newaxis] * (u - 0.5), bits, f_values)


def _loo_baseline_includes_self(f, logits, noise, state=None, context=None):
  """REINFORCE with the mean of ALL K samples as baseline: scaled by (K-1)/K = 1/2."""
  probs = tf.sigmoid(logits)
  bits = tf.cast(noise.uniform(logits, 2) < probs, logits.dtype)
  f_values = f(bits)
  signal = (f_values - tf.reduce_mean(f_values, axis=0, keepdims=True))[..., tf.newaxis]
  return EstimatorOutput(tf.reduce_mean(signal * (bits - probs), axis=0), bits, f_values)


def _arms_without_debias(f, logits, noise, state=None, context=None):
  """ARMS (K = 3) without its factor s(1-s) / (s - P2(s)): biased by the samples' correlation."""
  from estimators import arms as arms_module

  probs = tf.sigmoid(logits)
  bits = arms_module.copula_samples(logits, noise, 3)
  f_values = f(bits)
  centred = (f_values - tf.reduce_mean(f_values, axis=0, keepdims=True))[..., tf.newaxis]
  return EstimatorOutput(tf.reduce_sum(centred * (bits - probs), axis=0) / 2.0, bits, f_values)


PLANTED_FORMULAS = {
  "arms_without_debias_factor": _arms_without_debias,
  "disarm_sign_of_b_tilde": _disarm_wrong_sign,
  "disarm_sigmoid_without_abs": _disarm_no_abs,
  "arm_without_antithetic_term": _arm_without_antithetic,
  "loo_baseline_includes_self": _loo_baseline_includes_self,
}


def _plant_check(est):
  draws = mc_draws(est, PLANT_TABLE, PLANT_LOGITS, seed=4000, num_draws=PLANT_DRAWS, jit=False)
  return compare(draws, PLANT_LOGITS, PLANT_TABLE)


@pytest.mark.parametrize("name", NAMES)
def test_planted_sign_flip_and_scaling_fail(name):
  est = ESTIMATORS[name]
  honest = _plant_check(est)
  assert honest.ok, "the unmodified estimator must pass on the planted case: " + honest.describe()
  # The case has power: |exact| is many s.e. away from 0 (and from 2 * exact).
  assert np.max(np.abs(honest.exact) / honest.se) > 4 * Z_BOUND
  for label, transform in [("negated", lambda g: -g), ("doubled", lambda g: 2.0 * g)]:
    planted = _plant_check(_wrapped(est, transform, label))
    assert not planted.ok, f"{name} {label} passed the unbiasedness check: " + planted.describe()


@pytest.mark.parametrize("label", sorted(PLANTED_FORMULAS))
def test_planted_formula_errors_fail(label):
  est = Estimator(name=label, fn=PLANTED_FORMULAS[label], num_f_evals=2)
  planted = _plant_check(est)
  assert not planted.ok, f"{label} passed the unbiasedness check: " + planted.describe()


@pytest.mark.parametrize(
  "module, fails",
  [("disarm_copy", False), ("disarm_scaled", True), ("disarm_own_baseline", True)],
)
def test_harness_on_plugin_files(module, fails):
  """The harness with its defaults (what the check command runs): a 3% scaling of DisARM and a
  baseline that depends on its own sample are caught; the unmodified copy passes."""
  import importlib

  est = importlib.import_module(f"tests.check_plugins.{module}").ESTIMATOR
  harness.check_runs(est)
  result = harness.check_unbiased(est)
  assert result.ok != fails, result.describe()
  if fails:  # decisively, not at the edge of the bound
    assert result.worst.max_abs_z > 2 * result.bound, result.describe()
    assert f"D = {result.worst.num_bits}" in result.where() and "logits = [" in result.where()


def test_check_runs_names_what_to_fix():
  import importlib

  wrong = importlib.import_module("tests.check_plugins.wrong_shape").ESTIMATOR
  with pytest.raises(harness.EstimatorDefect, match="logits' shape"):
    harness.check_runs(wrong)
  with pytest.raises(harness.EstimatorDefect, match="num_f_evals"):
    harness.check_runs(dataclasses.replace(ESTIMATORS["disarm"], num_f_evals=0))
  # Asking f for what it did not declare: RODEO without needs=GRADIENT.
  undeclared = dataclasses.replace(ESTIMATORS["rodeo_2"], needs=estimators.Needs.VALUES)
  with pytest.raises(harness.EstimatorDefect, match="needs=Needs.GRADIENT"):
    harness.check_runs(undeclared)
  nan = Estimator(
    name="nan", fn=lambda f, lg, n, state=None, context=None: ESTIMATORS["disarm"].fn(f, lg * np.nan, n), num_f_evals=2
  )
  with pytest.raises(harness.EstimatorDefect):
    harness.check_runs(nan)


# --------------------------------------------------------------------------------------
# 3. Variance: DisARM <= ARM (PROTOCOL.md 7.1).
# --------------------------------------------------------------------------------------

VAR_LOGITS = np.array([-6.0, -4.0, -2.0, -1.0, -0.3, 0.0, 0.3, 1.0, 2.0, 4.0, 6.0])
VAR_TABLES = np.random.default_rng(31).normal(size=(3, 2))
GRID_PER_PIECE = 2000


class GridNoise:
  """A ``Noise`` source that returns given uniforms (shape-checked) instead of random ones."""

  def __init__(self, values):
    self.values, self.calls = values, 0

  def uniform(self, like, num_samples=None, open_interval=False):
    assert num_samples in (None, 1) and tuple(like.shape) == self.values.shape, (like.shape, self.values.shape)
    self.calls += 1
    values = tf.constant(self.values, like.dtype)
    return values if num_samples is None else values[tf.newaxis]

  def split(self, num):
    raise AssertionError("the estimators under test draw one uniform")


def _exact_d1_moments(name, logits, tables):
  """Exact mean and variance of a D = 1 ARM-family estimator, from its implementation.

  For D = 1 the estimate is a function of the single uniform u. The pair (b, b~) is
  constant on the three pieces of (0, 1) cut at s and 1 - s (taken exactly as the
  float32 code computes them); on each piece ARM is linear in u and DisARM constant.
  A midpoint grid inside each piece (no cell straddles a discontinuity) therefore
  integrates the mean exactly and the second moment to O(w^3 / G^2) (< 1e-14 here).
  We feed the grid in place of the random u through a ``Noise`` source (``GridNoise``).
  Returns mean, var [K] (one per example), and the values and weights on the grid.
  """
  probs32 = tf.sigmoid(tf.constant(logits, tf.float32)).numpy()  # [K]
  one_minus32 = (np.float32(1.0) - probs32).astype(np.float32)  # as in the code
  lo = np.minimum(probs32, one_minus32).astype(np.float64)
  hi = np.maximum(probs32, one_minus32).astype(np.float64)
  edges = np.stack([np.zeros_like(lo), lo, hi, np.ones_like(lo)])  # [4, K]
  mids = (np.arange(GRID_PER_PIECE) + 0.5) / GRID_PER_PIECE  # [G]
  u64 = edges[:-1, None, :] + mids[None, :, None] * (edges[1:] - edges[:-1])[:, None, :]
  u32 = u64.astype(np.float32)  # [3, G, K]
  # No grid point may land on or across a piece boundary after rounding to float32.
  nonempty = (edges[1:] > edges[:-1])[:, None, :] & np.ones_like(u32, bool)
  assert np.all((u32 > edges[:-1, None, :].astype(np.float32))[nonempty])
  assert np.all((u32 < edges[1:, None, :].astype(np.float32))[nonempty])
  weights = np.broadcast_to(((edges[1:] - edges[:-1]) / GRID_PER_PIECE)[:, None, :], u32.shape)
  u_flat = u32.reshape(3 * GRID_PER_PIECE, len(logits), 1)
  noise = GridNoise(u_flat)
  tiled = tf.broadcast_to(tf.constant(logits[:, None], tf.float32), u_flat.shape)
  values = ESTIMATORS[name].fn(Objective(make_f(tables)), tiled, noise).grad.numpy().astype(np.float64)
  assert noise.calls, f"{name} did not draw its noise through its Noise source"
  values = values.reshape(3, GRID_PER_PIECE, len(logits))
  mean = np.sum(weights * values, axis=(0, 1))
  second = np.sum(weights * values**2, axis=(0, 1))
  return mean, second - mean**2, values, weights


def test_d1_exact_variance_disarm_below_arm():
  """Exact D = 1 moments of ARM and DisARM from their code, against the closed forms.

  With m = min(s, 1 - s) and Delta = f(1) - f(0):
    E[g] = Delta m (1 - m) for both (the exact gradient),
    Var[ARM]    = Delta^2 (m/2 - 2 m^2 + 8/3 m^3 - m^4),
    Var[DisARM] = Delta^2 (m/2 - 2 m^2 + 5/2 m^3 - m^4),
  so Var[ARM] - Var[DisARM] = Delta^2 m^3 / 6 >= 0, with equality only as |phi| -> inf.
  At phi = +-6 the gap is ~2e-6 of the variance, so the comparison below must be (and
  is) accurate to ~1e-8 relative: float32 rounding of u and of the estimates.
  """
  num_logits = len(VAR_LOGITS)
  logits = np.tile(VAR_LOGITS, len(VAR_TABLES))  # [T * L]
  tables = np.repeat(VAR_TABLES, num_logits, axis=0)  # [T * L, 2]
  mean_a, var_a, values_a, weights = _exact_d1_moments("arm", logits, tables)
  mean_d, var_d, values_d, _ = _exact_d1_moments("disarm", logits, tables)

  exact = harness.exact_gradient(logits[:, None], tables)[:, 0]
  # The means are the exact gradient (float32 sigmoid moves s(1-s) by <= 2e-5 at |phi| = 6).
  np.testing.assert_allclose(mean_a, exact, rtol=5e-5, atol=1e-9)
  np.testing.assert_allclose(mean_d, exact, rtol=5e-5, atol=1e-9)

  # The implementations match the closed forms, with m the width of the end pieces as the
  # float32 code cuts them (they can differ by one float32 ulp of 1 - s: use their mean;
  # the variances are linear in the widths to first order).
  m = 0.5 * (weights[0].sum(axis=0) + weights[2].sum(axis=0))
  delta2 = (tables[:, 1] - tables[:, 0]) ** 2
  np.testing.assert_allclose(var_a, delta2 * (m / 2 - 2 * m**2 + 8 / 3 * m**3 - m**4), rtol=1e-5)
  np.testing.assert_allclose(var_d, delta2 * (m / 2 - 2 * m**2 + 5 / 2 * m**3 - m**4), rtol=1e-5, atol=1e-12)

  # DisARM is the Rao-Blackwellisation of ARM: on each piece (fixed (b, b~)) its value is
  # the average of ARM's over u. Checked where the piece has positive width.
  piece_w = weights.sum(axis=1)  # [3, K]
  arm_piece_mean = (weights * values_a).sum(axis=1) / np.where(piece_w > 0, piece_w, 1.0)
  disarm_piece = values_d[:, 0, :]
  assert np.all(np.ptp(values_d, axis=1)[piece_w > 0] == 0)  # constant per piece
  np.testing.assert_allclose(disarm_piece[piece_w > 0], arm_piece_mean[piece_w > 0], rtol=1e-6, atol=1e-9)

  # The claim: Var[DisARM] <= Var[ARM] at every logit. The true gap is smallest at
  # |phi| = 6, m^2/3 ~ 2e-6 of the variance; float32 rounding of the estimates moves the
  # computed variances by ~1e-7 relative, so a 1e-8 cushion leaves the check meaningful.
  assert np.all(var_d <= var_a * (1 + 1e-8) + 1e-15), np.c_[logits, var_a, var_d]
  # Where DisARM is strictly better by a visible margin: all |phi| <= 4.
  inner = np.abs(logits) <= 4
  assert np.all(var_d[inner] < var_a[inner] * (1 - 1e-4))


# Paired per-bit variance comparison for D > 1 (both estimators get the same seed; the
# test below does not rely on the pairing being exact, only on draws being i.i.d.).
# Per draw i: d_i = (g^D_i - mean^D)^2 - (g^A_i - mean^A)^2; mean(d) estimates
# Var[DisARM] - Var[ARM] with s.e. std(d)/sqrt(N) (CLT; bounded estimators). One-sided
# Bonferroni over M_VAR bits: fail only if mean(d) > Phi^{-1}(1 - ALPHA/M_VAR) * s.e., so
# a true Var[DisARM] <= Var[ARM] fails with probability <= 0.1%. This is the "margin of
# several standard errors" form of var_disarm <= var_arm * (1 + tol).
VAR_CASES = [2, 3, 4]
M_VAR = sum(CASES[d][0].size for d in VAR_CASES)
Z_VAR = _PHI(1.0 - ALPHA / M_VAR)


def _variance_gap_z(draws_low, draws_high):
  centred_low = (draws_low - draws_low.mean(axis=0)) ** 2
  centred_high = (draws_high - draws_high.mean(axis=0)) ** 2
  diff = centred_low - centred_high
  se = diff.std(axis=0, ddof=1) / math.sqrt(diff.shape[0])
  gap = diff.mean(axis=0)
  # Bits where both estimates are exactly constant (the constant f) have gap 0, s.e. 0.
  return np.where(se > 0, gap / np.where(se > 0, se, 1.0), np.where(gap > 0, np.inf, 0.0))


@pytest.mark.parametrize("num_bits", VAR_CASES)
def test_sampled_variance_disarm_below_arm(num_bits):
  logits, tables = CASES[num_bits]
  draws_a = mc_draws("arm", tables, logits, seed=5000 + num_bits)
  draws_d = mc_draws("disarm", tables, logits, seed=5000 + num_bits)
  z = _variance_gap_z(draws_d, draws_a)
  assert np.all(z < Z_VAR), f"Var[DisARM] > Var[ARM] beyond sampling error: z =\n{z}"
  # The comparison has power: the reverse claim (ARM <= DisARM) is rejected somewhere.
  assert np.any(_variance_gap_z(draws_a, draws_d) >= Z_VAR)


# --------------------------------------------------------------------------------------
# 4. Interface.
# --------------------------------------------------------------------------------------


def _table_f(num_bits, num_examples, seed=0):
  return make_f(np.random.default_rng(seed).normal(size=(num_examples, 2**num_bits)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_shape", [(), (2,), (2, 3)])
def test_output_shapes(name, batch_shape):
  num_bits = 3
  logits = tf.constant(np.random.default_rng(1).normal(size=batch_shape + (num_bits,)), tf.float32)
  # A table per last batch index (a table-free f would do too); broadcasts over leading dims.
  num_examples = batch_shape[-1] if batch_shape else 1
  f_tab = _table_f(num_bits, num_examples)
  f = f_tab if batch_shape else (lambda b: f_tab(b[..., tf.newaxis, :])[..., 0])
  single = estimate_gradient(name, f, logits, seed=3)
  assert single.shape == logits.shape and single.dtype == tf.float32
  many = estimate_gradient(name, f, logits, seed=3, num_draws=5)
  assert many.shape == (5,) + logits.shape
  assert np.all(np.isfinite(single.numpy())) and np.all(np.isfinite(many.numpy()))
  # Side information (the encoder input) is accepted by every estimator.
  context = tf.ones(batch_shape + (4,))
  assert estimate_gradient(name, f, logits, seed=3, context=context).shape == logits.shape
  assert estimate_gradient(name, f, logits, seed=3, num_draws=5, context=context).shape == (5,) + logits.shape
  with pytest.raises(ValueError):
    estimate_gradient(name, f, logits, seed=3, num_draws=0)


@pytest.mark.parametrize("name", NAMES)
def test_each_example_depends_only_on_its_own_row(name):
  """Changing other examples' logits and tables leaves example 0's estimate unchanged.

  (That each row's estimate is unbiased for that row's own gradient is what the batched
  unbiasedness test checks: every D there is a batch of examples with their own tables.)
  """
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(4, 3))
  tables = rng.normal(size=(4, 8))
  est = ESTIMATORS[name]
  state = est.make_state(3, 0) if est.has_state else None
  first = estimate_gradient(name, make_f(tables), logits, seed=9, num_draws=64, state=state)
  logits2, tables2 = logits.copy(), tables.copy()
  logits2[1:] = rng.normal(size=(3, 3)) * 3
  tables2[1:] = rng.normal(size=(3, 8)) * 5
  second = estimate_gradient(name, make_f(tables2), logits2, seed=9, num_draws=64, state=state)
  np.testing.assert_allclose(second.numpy()[:, 0], first.numpy()[:, 0], rtol=1e-5, atol=1e-6)
  assert not np.allclose(second.numpy()[:, 1:], first.numpy()[:, 1:])


@pytest.mark.parametrize("name", NAMES)
def test_seeding(name):
  logits = tf.constant(np.random.default_rng(3).normal(size=(2, 3)), tf.float32)
  f = _table_f(3, 2)
  est = ESTIMATORS[name]
  state = est.make_state(3, 0) if est.has_state else None

  def run(seed):
    return estimate_gradient(name, f, logits, seed=seed, num_draws=32, state=state).numpy()

  a = run(7)
  np.testing.assert_array_equal(a, run(7))  # deterministic
  np.testing.assert_array_equal(a, run([7, 0]))  # int seed s == [s, 0]
  np.testing.assert_array_equal(a, run(tf.constant([7, 0])))
  assert not np.array_equal(a, run(8))  # another seed, other draws
  assert not np.array_equal(a, run([7, 1]))
  # A plain tf.function gives the eager values (same stateless kernels).
  graph = tf.function(lambda l: estimate_gradient(name, f, l, [7, 0], num_draws=32, state=state))
  np.testing.assert_allclose(graph(logits).numpy(), a, rtol=1e-5, atol=1e-6)
  # Under XLA (what the trainer and the Monte Carlo tests above use) the estimate is also
  # a pure function of the seed. It is NOT the eager stream: TF 2.18's XLA lowering of the
  # stateless RNG draws different (equally valid) noise; see datasets/binarize.py.
  jitted = tf.function(lambda l, s: estimate_gradient(name, f, l, s, num_draws=32, state=state), jit_compile=True)
  x1 = jitted(logits, tf.constant([7, 0])).numpy()
  np.testing.assert_array_equal(x1, jitted(logits, tf.constant([7, 0])).numpy())
  assert not np.array_equal(x1, jitted(logits, tf.constant([8, 0])).numpy())
  # The draws within one call differ from each other.
  assert len({row.tobytes() for row in a}) > 1


def test_unknown_name_lists_valid_names():
  f = _table_f(2, 1)
  for call in (
    lambda: get_estimator("no_such_estimator"),
    lambda: estimate_gradient("no_such_estimator", f, tf.zeros([1, 2]), seed=0),
  ):
    with pytest.raises(ValueError) as info:
      call()
    message = str(info.value)
    assert "no_such_estimator" in message
    for name in ESTIMATORS:
      assert name in message


def test_registry_entries_are_consistent():
  for name, est in ESTIMATORS.items():
    assert isinstance(est, Estimator) and est.name == name
    assert get_estimator(name) is est and get_estimator(est) is est
    assert est.num_f_evals >= 1 and callable(est.fn)
  assert estimators.__all__  # the public API is declared


def test_reinforce_loo_rejects_one_sample():
  f = _table_f(2, 1)
  logits = tf.zeros([1, 2])
  with pytest.raises(ValueError, match="samples >= 2"):
    estimate_gradient(loo_module.make(1), f, logits, seed=0)
  with pytest.raises(ValueError, match="samples >= 2"):
    loo_module.reinforce_loo(Objective(f), logits, SeedNoise(0), num_samples=1)


@pytest.mark.parametrize(
  "name, message",
  [
    ("vimco_1", "samples >= 2"),
    ("disarm_3", "even number"),
    ("arms_1", "samples >= 2"),
    ("rodeo_0", "samples >= 2"),
    ("local_disarm_0", "pairs >= 1"),
  ],
)
def test_family_members_of_impossible_size_are_refused_with_the_reason(name, message):
  with pytest.raises(ValueError, match=message):
    get_estimator(name)


def test_family_names_are_canonical():
  assert estimators.canonical_name("disarm_2") == "disarm"
  assert estimators.canonical_name("reinforce_loo_2") == "reinforce_loo"
  assert get_estimator("disarm_2") is ESTIMATORS["disarm"]
  assert get_estimator("rodeo_5").num_f_evals == 5 and get_estimator("rodeo_5").name == "rodeo_5"


# --------------------------------------------------------------------------------------
# 5. ARMS with K = 2 is DisARM (PROTOCOL.md section 8).
# --------------------------------------------------------------------------------------


class FixedNoise:
  """A ``Noise`` source returning given draws for a given number of samples."""

  def __init__(self, values):
    self.values = values

  def uniform(self, like, num_samples=None, open_interval=False):
    values = tf.constant(self.values, like.dtype)
    want = tuple(like.shape) if num_samples is None else (num_samples,) + tuple(like.shape)
    if num_samples == 1 and values.shape[0] != 1:
      values = values[tf.newaxis]
    assert tuple(values.shape) == want, (values.shape, want)
    return values

  def split(self, num):
    raise AssertionError("not used")


@pytest.mark.parametrize("num_bits", [1, 3])
def test_arms_with_two_samples_is_disarm_at_the_same_uniform(num_bits):
  """ARMS's two copula samples from (u_1, u_2) are DisARM's pair at one uniform per bit.

  With w_1 = e_2 / (e_1 + e_2) (uniform): for s < 1/2, b_1 = 1[w_1 < s] = b and
  b_2 = 1[1 - w_1 < s] = b~ at u = w_1; for s >= 1/2, b_1 = 1[1 - w_1 < s] and
  b_2 = 1[w_1 < s] are DisARM's pair at u = 1 - w_1. ARMS's factor s(1-s) / (s - P2(s))
  is 1 - s for s < 1/2 and s for s >= 1/2, i.e. sigmoid(|phi|). So the two estimates
  agree draw by draw (to float32 rounding), hence also in distribution.
  """
  rng = np.random.default_rng(8)
  draws = 4000
  logits = np.concatenate([rng.normal(size=(draws // 2, num_bits)) * 2, np.full((draws // 2, num_bits), 0.0)])
  logits[:10] = 6.0
  tables = rng.normal(size=(draws, 2**num_bits))
  u = rng.uniform(1e-6, 1 - 1e-6, size=(2, draws, num_bits)).astype(np.float32)
  e = -np.log(u.astype(np.float64))
  w1 = e[1] / (e[0] + e[1])
  f = Objective(make_f(tables))
  logits_t = tf.constant(logits, tf.float32)
  probs = tf.sigmoid(logits_t).numpy()
  disarm_u = np.where(probs < 0.5, w1, 1.0 - w1).astype(np.float32)
  arms_grad = ESTIMATORS["arms_2"].fn(f, logits_t, FixedNoise(u)).grad.numpy()
  disarm_grad = ESTIMATORS["disarm"].fn(f, logits_t, FixedNoise(disarm_u)).grad.numpy()
  # w_1 computed in float64 here and in float32 in ARMS: a draw within rounding of s may
  # land on the other side of it. Such draws are rare; every other draw must agree.
  agree = np.isclose(arms_grad, disarm_grad, rtol=1e-4, atol=1e-5)
  assert agree.mean() > 0.999, np.argwhere(~agree)[:5]
  assert np.abs(disarm_grad).max() > 0.1  # the comparison is not between zeros


@pytest.mark.parametrize("num_samples", [2, 3, 4, 6])
def test_arms_factor_matches_its_formula_and_stays_finite_when_bits_saturate(num_samples):
  """ARMS's factor s(1-s) / (s - P2(s)): the formula in float64 where it is well conditioned,
  and sigmoid(|phi|) (finite) where float32 rounds s to 0 or 1 and the textbook form is 0/0.

  The RODEO protocol's learning rate drives encoder logits past 17 within 2,000 steps: an
  arms_4 run on MNIST died of the 0/0.
  """
  from estimators import arms as arms_module

  k1 = num_samples - 1
  moderate = np.linspace(-9.0, 9.0, 181)
  s = 1.0 / (1.0 + np.exp(-moderate))
  low = np.maximum(0.0, 2.0 * s ** (1.0 / k1) - 1.0) ** k1
  high = 2.0 * s - 1.0 + np.maximum(0.0, 2.0 * (1.0 - s) ** (1.0 / k1) - 1.0) ** k1
  expected = s * (1.0 - s) / (s - np.where(s < 0.5, low, high))
  got = arms_module.debias_factor(tf.constant(moderate, tf.float32), num_samples).numpy()
  np.testing.assert_allclose(got, expected, rtol=2e-5)
  saturated = np.array([-200.0, -90.0, -40.0, -17.0, 17.0, 40.0, 90.0, 200.0])
  got = arms_module.debias_factor(tf.constant(saturated, tf.float32), num_samples).numpy()
  np.testing.assert_allclose(got, 1.0, rtol=1e-6)
  # The estimate with saturated bits: finite, and 0 (to within s ~ 1e-13) on those bits: their
  # samples never vary.
  rng = np.random.default_rng(11)
  logits = np.array([[20.0, -20.0, 100.0, -100.0], [0.4, -1.2, 30.0, -30.0]])
  tables = rng.normal(size=(2, 16))
  u = rng.uniform(1e-6, 1 - 1e-6, size=(num_samples, 2, 4)).astype(np.float32)
  grad = get_estimator(f"arms_{num_samples}").fn(
    Objective(make_f(tables)), tf.constant(logits, tf.float32), FixedNoise(u)
  )
  grad = grad.grad.numpy()
  assert np.all(np.isfinite(grad)), grad
  assert np.abs(grad[0]).max() < 1e-10, grad[0]  # every bit saturated: the K samples coincide
  assert np.abs(grad[1, 2:]).max() < 1e-10, grad[1]
  assert np.abs(grad[1, :2]).max() > 1e-3, grad[1]  # the varying bits are not zeros


# --------------------------------------------------------------------------------------
# 6. Planted errors in the learned control variates (visible only away from alpha = 0).
# --------------------------------------------------------------------------------------


def _perturbed_state(est, num_bits, seed=5):
  state = est.make_state(num_bits, 0, seed=(seed, 6))
  rng = np.random.default_rng(seed)
  for v in state.trainable_variables:
    v.assign_add(tf.constant(0.5 * rng.normal(size=v.shape) + 0.5, v.dtype))
  return state


def _double_cv_without_correction(f, logits, noise, state=None, context=None):
  """Double CV without its last term -alpha mean_k G_k s(1-s): biased whenever alpha != 0."""
  out = ESTIMATORS["double_cv_2"].fn(f, logits, noise, state=state, context=context)
  probs = tf.sigmoid(logits)
  _, grads = f.value_and_gradient(out.bits)
  return out._replace(grad=out.grad + state.alpha[..., tf.newaxis] * tf.reduce_mean(grads, 0) * probs * (1 - probs))


def _rodeo_beta_term_without_flip_part(f, logits, noise, state=None, context=None):
  """RODEO whose beta term keeps (b - s)(A h')(b) but drops the flipped coordinate's part of A ht'."""
  from estimators import rodeo as rodeo_module

  bits, f_values, reinforce, stein_scaled, _ = rodeo_module.rodeo_terms(f, logits, noise, state, 2)
  grad = tf.reduce_mean(reinforce + state.beta[..., tf.newaxis] * stein_scaled, axis=0)
  return EstimatorOutput(grad, bits, f_values)


@pytest.mark.parametrize("name", ["double_cv_2", "double_cv_3", "rodeo_2", "rodeo_3"])
def test_perturbed_control_variates_are_unbiased_and_have_power(name):
  """With alpha, beta and the network away from 0 the estimate stays unbiased, and it differs
  from REINFORCE LOO (so the state is exercised, not ignored)."""
  est = ESTIMATORS[name]
  state = _perturbed_state(est, PLANT_LOGITS.shape[-1])
  draws = mc_draws(est, PLANT_TABLE, PLANT_LOGITS, seed=4100, num_draws=PLANT_DRAWS, state=state)
  result = compare(draws, PLANT_LOGITS, PLANT_TABLE)
  assert result.ok, result.describe()
  loo = mc_draws(
    f"reinforce_loo_{est.num_f_evals}" if est.num_f_evals > 2 else "reinforce_loo",
    PLANT_TABLE,
    PLANT_LOGITS,
    seed=4100,
    num_draws=PLANT_DRAWS,
  )
  assert not np.allclose(np.var(draws, axis=0), np.var(loo, axis=0), rtol=1e-3)


@pytest.mark.parametrize(
  "label, fn",
  [
    ("double_cv_without_correction", _double_cv_without_correction),
    ("rodeo_beta_term_without_flip_part", _rodeo_beta_term_without_flip_part),
  ],
)
def test_planted_control_variate_errors_fail(label, fn):
  base = ESTIMATORS["double_cv_2" if label.startswith("double") else "rodeo_2"]
  planted = dataclasses.replace(base, name=label, fn=fn)
  state = _perturbed_state(base, PLANT_LOGITS.shape[-1])
  draws = mc_draws(planted, PLANT_TABLE, PLANT_LOGITS, seed=4200, num_draws=PLANT_DRAWS, state=state, jit=False)
  result = compare(draws, PLANT_LOGITS, PLANT_TABLE)
  assert not result.ok, f"{label} passed the unbiasedness check: " + result.describe()


# --------------------------------------------------------------------------------------
# 7. What estimate_gradient refuses.
# --------------------------------------------------------------------------------------


def test_f_that_keeps_the_bit_axis_is_refused():
  logits = tf.zeros([4, 3])
  with pytest.raises(ValueError, match="reduce the last axis"):
    estimate_gradient("disarm", lambda b: tf.square(b - 0.49), logits, seed=0)
  with pytest.raises(ValueError, match="reduce the last axis"):
    estimate_gradient("arm", lambda b: tf.reduce_sum(b, axis=0), logits, seed=0)


def test_f_that_is_not_a_float_tensor_is_refused():
  logits = tf.zeros([2, 3])
  with pytest.raises(ValueError, match="floating-point TensorFlow tensor"):
    estimate_gradient("disarm", lambda b: np.sum(np.asarray(b), axis=-1), logits, seed=0)
  with pytest.raises(ValueError, match="floating-point TensorFlow tensor"):
    estimate_gradient("disarm", lambda b: tf.cast(tf.reduce_sum(b, -1), tf.int32), logits, seed=0)


@pytest.mark.parametrize("name", ["relax", "double_cv_2", "rodeo_2"])
def test_estimators_that_differentiate_f_refuse_an_f_without_gradient(name):
  logits = tf.zeros([2, 3])
  rounded = lambda b: tf.reduce_sum(tf.round(b * 0.9 + 0.05), axis=-1)
  with pytest.raises(ValueError, match="differentiable TensorFlow function"):
    estimate_gradient(name, rounded, logits, seed=0)


def test_bad_logits_draws_and_seeds_are_refused():
  f = _table_f(2, 1)
  with pytest.raises(ValueError, match="at least one axis"):
    estimate_gradient("disarm", f, tf.constant(0.0), seed=0)
  for draws in (2.5, True, -1):
    with pytest.raises(ValueError, match="num_draws"):
      estimate_gradient("disarm", f, tf.zeros([1, 2]), seed=0, num_draws=draws)
  for seed in (2**32, -(2**31) - 1, 1.5, True, [1, 2, 3], [1.0, 2.0]):
    with pytest.raises(ValueError, match="seed"):
      estimate_gradient("disarm", f, tf.zeros([1, 2]), seed=seed)
