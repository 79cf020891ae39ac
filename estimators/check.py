"""Exact checks of an estimator: does it run as it declares, and is it unbiased.

Every estimator of ``d E[f(b)] / d logits`` can be checked exactly for small ``D``:
enumerating the ``2^D`` states gives the true gradient (PROTOCOL.md section 1), and
the Monte Carlo mean of many independent estimates must agree with it up to sampling
error. This module is the one harness for that check; the suite's own estimator tests
(``tests/test_estimators.py``) and the ``check`` preset of the driver both use it.

    from estimators.check import check_unbiased
    result = check_unbiased("disarm")          # or an Estimator object
    assert result.ok, result.describe()

``check_unbiased`` runs the estimator on ``standard_cases()``: ``D = 1..4``; five
objectives (linear, quadratic, a product of bits, a random lookup table, and the ELBO
of a tiny Bernoulli VAE with its natural differentiable extension); logits near 0,
moderate and saturated; for an estimator with state, at its initial state and at a
state moved to random non-zero values. Each coordinate's ``z = (mean - exact) / s.e.``
is compared with a two-sided Bonferroni bound over all the coordinates checked
(``z_bound``), so that a correct estimator fails with probability at most ``alpha``
whatever the number of coordinates. (Holm's step-down procedure rejects *some*
coordinate exactly when Bonferroni does; a yes/no verdict gains nothing from it.)
The result names the worst coordinate: objective, ``D``, logits, state, bit.

``check_runs`` is the cheap check before it: the declarations are well formed, one
call returns an ``EstimatorOutput`` of the right shapes, finite, and asks of ``f`` only
what ``Estimator.needs`` declares. It raises ``EstimatorDefect`` with what to fix.
"""

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from estimators.base import Estimator, EstimatorOutput, Needs, Objective, SeedNoise

ALPHA = 1e-3
DEFAULT_DRAWS = 100_000
# Estimators with state are checked at two states and evaluate their own networks at
# every draw: fewer draws keep their check to a minute or two on 2 CPU cores.
STATEFUL_DRAWS = 40_000
# Draws per vectorised call: large for cheap estimators, small for estimators with
# state (their networks see every draw at once).
CHUNK = 50_000
STATEFUL_CHUNK = 5_000
STATES_INITIAL, STATES_RANDOM = "initial", "random"


class EstimatorDefect(ValueError):
  """The estimator cannot be checked as it is: a declaration or an output is wrong (the message says which)."""


def z_bound(num_tests, alpha=ALPHA):
  """Two-sided Bonferroni bound: P(any |z| >= bound) <= alpha for ``num_tests`` N(0, 1) z-scores."""
  if num_tests < 1:
    raise ValueError(f"num_tests must be >= 1, got {num_tests}")
  return statistics.NormalDist().inv_cdf(1.0 - alpha / (2.0 * num_tests))


# --------------------------------------------------------------------------------------
# Exact gradients by enumeration.
# --------------------------------------------------------------------------------------


def state_bits(num_bits):
  """[2^D, D] 0/1 matrix; row i holds the bits of state i (bit d = (i >> d) & 1)."""
  states = np.arange(2**num_bits)
  return ((states[:, None] >> np.arange(num_bits)[None, :]) & 1).astype(np.float64)


def exact_gradient(logits, tables):
  """``d E[f(b)] / d logits`` by enumeration, float64. logits ``[C, D]``; tables ``[C, 2^D]``, f per example."""
  logits = np.asarray(logits, np.float64)
  tables = np.asarray(tables, np.float64)
  num_bits = logits.shape[-1]
  bits = state_bits(num_bits)
  probs = 1.0 / (1.0 + np.exp(-logits))
  grads = np.zeros_like(logits)
  for d in range(num_bits):
    p_others = np.ones((logits.shape[0], bits.shape[0]))
    for e in range(num_bits):
      if e != d:
        p_others *= np.where(bits[:, e] > 0, probs[:, e : e + 1], 1.0 - probs[:, e : e + 1])
    on = bits[:, d] > 0
    # E[f | b_d = 1] - E[f | b_d = 0], each half of the states weighted by the other bits' probability.
    diff = np.sum(tables[:, on] * p_others[:, on], axis=1) - np.sum(tables[:, ~on] * p_others[:, ~on], axis=1)
    grads[:, d] = probs[:, d] * (1.0 - probs[:, d]) * diff
  return grads


def table_objective(tables):
  """f for a batch of examples, example c with its own lookup table ``tables[c]`` (``[C, 2^D]``).

  ``f(b) = sum_states table[state] * prod_d (b_d or 1 - b_d)``: the table on {0,1}^D and
  its multilinear extension in between (what relaxation-based estimators evaluate).
  Maps bits ``[..., C, D]`` to ``[..., C]``.
  """
  tables = np.asarray(tables, np.float64)
  num_bits = int(round(math.log2(tables.shape[-1])))
  bits = state_bits(num_bits)
  table_t = tf.constant(tables, tf.float32)

  def f(b):
    weights = None
    for d in range(num_bits):
      b_d = b[..., d : d + 1]
      factor = tf.where(tf.constant(bits[:, d] > 0), b_d, 1.0 - b_d)
      weights = factor if weights is None else weights * factor
    return tf.reduce_sum(weights * table_t, axis=-1)

  return f


def tabulate(fn, num_bits, num_examples):
  """``fn`` at every state of ``{0,1}^D`` for each example: ``[C, 2^D]`` float64."""
  bits = np.broadcast_to(state_bits(num_bits)[:, None, :], (2**num_bits, num_examples, num_bits))
  values = fn(tf.constant(bits, tf.float32)).numpy().astype(np.float64)  # [2^D, C]
  return values.T


# --------------------------------------------------------------------------------------
# The cases: objectives x logits for D = 1..4.
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
  """One objective on ``C`` rows of logits ``[C, D]``; ``fn`` maps bits ``[..., C, D]`` to ``[..., C]``.

  ``row_labels`` name each row's logits (``near_zero``, ``saturated``...) for reports.
  """

  name: str
  fn: Callable
  logits: np.ndarray
  row_labels: tuple = ()

  @property
  def num_bits(self):
    return int(self.logits.shape[-1])

  @property
  def tables(self):
    return tabulate(self.fn, self.num_bits, self.logits.shape[0])

  def row_label(self, row):
    return self.row_labels[row] if row < len(self.row_labels) else f"row {row}"


def table_case(tables, logits, name="table", row_labels=()):
  """A ``Case`` from lookup tables (multilinear extension)."""
  logits = np.asarray(logits, np.float64)
  return Case(name, table_objective(tables), logits, tuple(row_labels))


def _logit_rows(rng, num_bits):
  """Logits near 0, moderate, and saturated (+-6 mixed with moderate bits)."""
  near_zero = rng.uniform(-0.3, 0.3, size=num_bits)
  moderate = rng.normal(size=num_bits) * 1.5
  saturated = np.where(np.arange(num_bits) % 2 == 0, 6.0, -6.0)
  if num_bits > 2:
    saturated[1] = rng.normal()  # a moderate bit among saturated ones
  return np.stack([near_zero, moderate, saturated]), ("near_zero", "moderate", "saturated")


def _vae_elbo(num_bits, logits, rng, num_pixels=4):
  """The ELBO of a tiny Bernoulli VAE at one image, as a function of the latent bits.

  ``log p(x | b) + log p(b) - log q(b)`` with ``q`` at the row's logits (held fixed: the
  estimator differentiates through the sampling only). Smooth in ``b`` (its natural
  extension: the decoder is evaluated at relaxed bits as they are), not multilinear.
  """
  x = tf.constant(rng.integers(0, 2, size=num_pixels), tf.float32)
  w = tf.constant(rng.normal(size=(num_bits, num_pixels)) * 1.5, tf.float32)
  c = tf.constant(rng.normal(size=num_pixels) * 0.5, tf.float32)
  prior = tf.constant(rng.normal(size=num_bits), tf.float32)
  q_logits = tf.constant(logits, tf.float32)  # [C, D]

  def log_bernoulli(bits, lg):
    return bits * tf.math.log_sigmoid(lg) + (1.0 - bits) * tf.math.log_sigmoid(-lg)

  def f(b):
    pixel_logits = tf.tensordot(b, w, axes=[[-1], [0]]) + c  # [..., C, P]
    log_lik = tf.reduce_sum(log_bernoulli(x, pixel_logits), axis=-1)
    return log_lik + tf.reduce_sum(log_bernoulli(b, prior) - log_bernoulli(b, q_logits), axis=-1)

  return f


def standard_cases(num_bits=(1, 2, 3, 4), seed=20201206):
  """The objectives ``check_unbiased`` uses by default, for each ``D`` in ``num_bits``.

  linear ``w . b + c``; quadratic ``(w . b - t)^2``; product ``a * prod_d b_d`` (only
  the all-ones state counts: small probabilities at saturated logits); a random lookup
  table; a tiny VAE's ELBO; for D = 2 a constant f, for D = 3 a table that ignores the
  last bit (exact gradients 0). Each on logits near 0, moderate, and saturated.
  """
  rng = np.random.default_rng(seed)
  cases = []
  for d in num_bits:
    logits, labels = _logit_rows(rng, d)
    w = tf.constant(rng.normal(size=d) + 1.0, tf.float32)
    offset = float(rng.normal())
    target = float(rng.normal())
    scale = float(2.0 + rng.uniform())
    cases += [
      Case("linear", lambda b, w=w, o=offset: tf.reduce_sum(b * w, -1) + o, logits, labels),
      Case("quadratic", lambda b, w=w, t=target: tf.square(tf.reduce_sum(b * w, -1) - t), logits, labels),
      Case("product", lambda b, a=scale: a * tf.reduce_prod(b, -1), logits, labels),
      table_case(rng.normal(size=(3, 2**d)), logits, "table", labels),
      Case("vae_elbo", _vae_elbo(d, logits, rng), logits, labels),
    ]
    if d == 2:  # zero gradient: estimators built on differences of f return exactly 0
      cases.append(Case("constant", lambda b: 0.7 + 0.0 * tf.reduce_sum(b, -1), logits, labels))
    if d == 3:  # the last bit does not matter: its exact gradient is 0
      tables = rng.normal(size=(3, 8))
      tables[:, 4:] = tables[:, :4]
      cases.append(table_case(tables, logits, "ignores_last_bit", labels))
  return cases


def _stack(cases):
  """The cases of one D as one objective over their rows side by side (one trace per D)."""
  sizes = [c.logits.shape[0] for c in cases]
  bounds = np.cumsum([0] + sizes)

  def f(b):
    return tf.concat([c.fn(b[..., lo:hi, :]) for c, lo, hi in zip(cases, bounds[:-1], bounds[1:])], axis=-1)

  return f, np.concatenate([c.logits for c in cases]), bounds


# --------------------------------------------------------------------------------------
# Monte Carlo against the exact gradient.
# --------------------------------------------------------------------------------------


def _as_estimator(estimator):
  if isinstance(estimator, Estimator):
    return estimator
  from estimators import get_estimator  # the registry imports this module's siblings

  return get_estimator(estimator)


def random_state(estimator, num_bits, seed=5, context_dim=0):
  """A state of ``estimator`` with every variable moved to random non-zero values (``0.5 + 0.5 N(0, 1)`` added)."""
  est = _as_estimator(estimator)
  state = est.make_state(num_bits, context_dim, seed=(seed, 6))
  rng = np.random.default_rng(seed)
  for v in state.trainable_variables:
    v.assign_add(tf.constant(0.5 * rng.normal(size=v.shape) + 0.5, v.dtype))
  return state


def mc_draws(estimator, f, logits, seed, num_draws=DEFAULT_DRAWS, state=None, jit=True, chunk=None):
  """``num_draws`` independent estimates ``[num_draws, C, D]`` (float64) at ``logits [C, D]``.

  Chunk k draws from seed ``[seed, k]``. With ``jit`` the chunks run under XLA (one
  compile, as the trainer runs estimators), else eagerly. ``f``: bits ``[..., C, D]`` to ``[..., C]``.
  """
  est = _as_estimator(estimator)
  if state is None and est.has_state:
    state = est.make_state(int(np.shape(logits)[-1]), 0)
  return _drawer(est, f, logits, num_draws, state, jit, chunk)(seed)


def _drawer(est, f, logits, num_draws, state, jit, chunk):
  """``seed -> mc_draws(...)`` with one trace (and XLA compile) for every call.

  ``state``'s variables are captured by reference: assigning them new values between calls
  draws at the new state without tracing again (``check_unbiased``: one compile per D for
  both states)."""
  objective = f if isinstance(f, Objective) else Objective(f)
  logits_t = tf.constant(np.asarray(logits), tf.float32)
  chunk = min(chunk or (STATEFUL_CHUNK if est.has_state else CHUNK), num_draws)
  num_chunks = -(-num_draws // chunk)

  def run(seed_pair):
    tiled = tf.broadcast_to(logits_t, [chunk] + logits_t.shape.as_list())
    return est.fn(objective, tiled, SeedNoise(seed_pair), state=state, context=None).grad

  if jit:
    run = tf.function(run, jit_compile=True)

  def draw(seed):
    out = [run(tf.constant([seed, k], tf.int32)).numpy() for k in range(num_chunks)]
    return np.concatenate(out, axis=0)[:num_draws].astype(np.float64)

  return draw


@dataclasses.dataclass
class Comparison:
  """z-scores of a Monte Carlo mean against the exact gradient, per example and bit."""

  z: np.ndarray
  mean: np.ndarray
  exact: np.ndarray
  se: np.ndarray
  bound: float

  @property
  def ok(self):
    return bool(np.all(np.abs(self.z) < self.bound))

  @property
  def worst(self):
    """(row, bit) of the largest |z|."""
    return tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(self.z)), self.z.shape))

  def describe(self):
    c, d = self.worst
    return (
      f"max |z| = {abs(self.z[c, d]):.2f} (bound {self.bound:.2f}) at example {c}, bit {d}: "
      f"mean {self.mean[c, d]:.6g}, exact {self.exact[c, d]:.6g}, s.e. {self.se[c, d]:.3g}\n"
      f"z =\n{np.array2string(self.z, precision=2)}"
    )


def compare_to_exact(draws, logits, tables, bound):
  """``Comparison`` of draws ``[N, C, D]`` with the exact gradient of ``tables`` at ``logits``.

  A coordinate whose draws are all equal (a constant f; DisARM at logit 0 with D = 1)
  has s.e. 0, and so has one whose nonzero estimates are rarer than about 1 in N (a
  product of bits at saturated logits, whose exact gradient is then ~1e-5): N draws
  cannot resolve its mean below ``(1 + max |f|) / N``. That resolution, plus float32's
  ``1e-6 (1 + max |f|)``, is a floor under the s.e. in the denominator, so such a check
  asks agreement to what N draws can show instead of dividing by zero. It lies far below
  the s.e. of every random coordinate, so it costs little power.
  """
  exact = exact_gradient(logits, tables)
  mean = draws.mean(axis=0)
  num_draws = draws.shape[0]
  se = draws.std(axis=0, ddof=1) / math.sqrt(num_draws)
  floor = (1e-6 + 1.0 / num_draws) * (1.0 + np.max(np.abs(tables)))
  z = (mean - exact) / np.sqrt(se**2 + floor**2)
  return Comparison(z=z, mean=mean, exact=exact, se=se, bound=bound)


@dataclasses.dataclass
class Finding:
  """One (case, state) of a ``check_unbiased`` run: its worst coordinate."""

  case: str
  num_bits: int
  state: str
  max_abs_z: float
  row: str
  logits: tuple
  bit: int
  mean: float
  exact: float
  se: float


@dataclasses.dataclass
class UnbiasedResult:
  """What ``check_unbiased`` found. ``worst`` is the finding with the largest |z| (where it failed, if it did)."""

  estimator: str
  ok: bool
  bound: float
  alpha: float
  num_tests: int
  num_draws: int
  findings: list

  @property
  def worst(self) -> Finding:
    return max(self.findings, key=lambda f: f.max_abs_z)

  def where(self):
    w = self.worst
    logits = ", ".join(f"{v:.3g}" for v in w.logits)
    return f"f = {w.case}, D = {w.num_bits}, logits = [{logits}] ({w.row}), state = {w.state}, bit {w.bit}"

  def describe(self):
    w = self.worst
    verdict = "unbiased" if self.ok else "BIASED"
    return (
      f"{self.estimator}: {verdict}: max |z| = {w.max_abs_z:.2f} (bound {self.bound:.2f}: two-sided Bonferroni, "
      f"alpha = {self.alpha:g} over {self.num_tests} coordinates, {self.num_draws} draws each) at {self.where()}: "
      f"mean {w.mean:.6g}, exact {w.exact:.6g}, s.e. {w.se:.3g}"
    )


def check_unbiased(
  estimator,
  cases: Sequence[Case] | None = None,
  *,
  num_draws=None,
  seed=0,
  states=(STATES_INITIAL, STATES_RANDOM),
  alpha=ALPHA,
  num_tests=None,
  jit=True,
  chunk=None,
  log=None,
) -> UnbiasedResult:
  """Checks ``estimator`` (a name or an ``Estimator``) against exact gradients; returns an ``UnbiasedResult``.

  Args:
    cases: ``Case`` objects (default ``standard_cases()``); cases of one D run in one call.
    num_draws: independent estimates per coordinate (default ``DEFAULT_DRAWS``;
      ``STATEFUL_DRAWS`` for an estimator with state).
    seed: the Monte Carlo draws are a deterministic function of it.
    states: for an estimator with state, which states to check it at: ``"initial"``
      (``make_state``'s values) and/or ``"random"`` (``random_state``). Ignored without state.
    alpha: the family-wise false-alarm probability for a correct estimator.
    num_tests: the number of z-scores the bound covers (default: those checked in this
      call); a caller running several checks under one bound passes their total.
  Raises ``EstimatorDefect`` if an estimate is not finite.
  """
  est = _as_estimator(estimator)
  if est.bound_estimator:
    raise ValueError(
      f"{est.name} estimates the gradient of a multi-sample bound, not of E[f(b)]; check_unbiased checks "
      "estimators of d E[f] / d logits"
    )
  cases = list(standard_cases() if cases is None else cases)
  if num_draws is None:
    num_draws = STATEFUL_DRAWS if est.has_state else DEFAULT_DRAWS
  state_kinds = tuple(states) if est.has_state else ("none",)
  by_bits = {}
  for case in cases:
    by_bits.setdefault(case.num_bits, []).append(case)
  checked = sum(c.logits.size for c in cases) * len(state_kinds)
  bound = z_bound(num_tests or checked, alpha)
  ok = True
  findings_at = {}  # (kind index, D) -> findings; reported kind by kind, D by D
  for num_bits, group in sorted(by_bits.items()):
    f, logits, bounds = _stack(group)
    # One state object per D: the random state's values are assigned into the initial
    # state's variables, so both states run through one compiled draw function.
    state = est.make_state(num_bits, 0) if est.has_state else None
    draw = _drawer(est, f, logits, num_draws, state, jit, chunk)
    for kind_index, kind in enumerate(state_kinds):
      if state is not None and (kind == STATES_RANDOM or kind_index > 0):
        source = random_state(est, num_bits) if kind == STATES_RANDOM else est.make_state(num_bits, 0)
        for variable, value in zip(state.variables, source.variables, strict=True):
          variable.assign(value)
      draws = draw(int(seed) * 1000 + 100 * kind_index + num_bits)
      if not np.all(np.isfinite(draws)):
        bad = np.argwhere(~np.isfinite(draws))[0]
        raise EstimatorDefect(
          f"{est.name} returned a non-finite estimate at D = {num_bits}, logits {logits[bad[1]].tolist()}, "
          f"state {kind}: every estimate must be finite (guard divisions and logs at saturated logits)"
        )
      found = findings_at[kind_index, num_bits] = []
      for case, lo, hi in zip(group, bounds[:-1], bounds[1:]):
        comparison = compare_to_exact(draws[:, lo:hi], case.logits, case.tables, bound)
        ok = ok and comparison.ok
        row, bit = comparison.worst
        found.append(
          Finding(
            case=case.name,
            num_bits=num_bits,
            state=kind,
            max_abs_z=float(abs(comparison.z[row, bit])),
            row=case.row_label(row),
            logits=tuple(float(v) for v in case.logits[row]),
            bit=bit,
            mean=float(comparison.mean[row, bit]),
            exact=float(comparison.exact[row, bit]),
            se=float(comparison.se[row, bit]),
          )
        )
      if log:
        worst = max(found, key=lambda x: x.max_abs_z)
        log(f"unbiasedness: D = {num_bits}, state {kind}: max |z| = {worst.max_abs_z:.2f} (bound {bound:.2f})")
  findings = [x for key in sorted(findings_at) for x in findings_at[key]]
  return UnbiasedResult(est.name, ok, bound, alpha, num_tests or checked, num_draws, findings)


# --------------------------------------------------------------------------------------
# Does it run as it declares.
# --------------------------------------------------------------------------------------


class _DeclaredObjective(Objective):
  """An objective that refuses what the estimator did not declare in ``needs``, and counts evaluations."""

  def __init__(self, fn, needs, name):
    super().__init__(fn)
    self.needs, self.name = needs, name
    self.points = 0

  def __call__(self, bits, relaxed=None, temperature=None):
    if relaxed is not None and self.needs != Needs.RELAXED:
      raise EstimatorDefect(
        f"{self.name} evaluates f at relaxed points but declares needs={self.needs.value!r}; "
        "declare needs=Needs.RELAXED"
      )
    self.points += int(bits.shape[0]) + (0 if relaxed is None else int(relaxed.shape[0]))
    return super().__call__(bits, relaxed, temperature)

  def value_and_gradient(self, bits):
    if self.needs != Needs.GRADIENT:
      raise EstimatorDefect(
        f"{self.name} asks for the gradient of f but declares needs={self.needs.value!r}; declare needs=Needs.GRADIENT"
      )
    return super().value_and_gradient(bits)


def check_declarations(estimator):
  """Raises ``EstimatorDefect`` naming the first malformed declaration of an ``Estimator``."""
  est = estimator
  if not isinstance(est, Estimator):
    raise EstimatorDefect(f"expected an estimators.base.Estimator, got {type(est).__name__}")
  if not isinstance(est.name, str) or not est.name:
    raise EstimatorDefect("Estimator.name must be a non-empty string")
  if not callable(est.fn):
    raise EstimatorDefect(f"{est.name}: Estimator.fn must be callable as fn(f, logits, noise, state, context)")
  if isinstance(est.num_f_evals, bool) or not isinstance(est.num_f_evals, int) or est.num_f_evals < 1:
    raise EstimatorDefect(
      f"{est.name}: declare num_f_evals, the evaluations of f per example and estimate (an int >= 1), "
      f"got {est.num_f_evals!r}"
    )
  if not isinstance(est.needs, Needs):
    raise EstimatorDefect(f"{est.name}: needs must be a estimators.base.Needs member, got {est.needs!r}")
  if est.trainable is not None and not callable(est.trainable.init):
    raise EstimatorDefect(f"{est.name}: trainable.init must build the state: init(num_latents, context_dim, params)")


def check_runs(estimator, num_bits=3, batch=2, seed=0):
  """One eager call on a small problem; raises ``EstimatorDefect`` saying what to fix.

  Returns ``{"f_points": evaluations of f per example in one call}``, the cost as measured.
  """
  est = _as_estimator(estimator)
  check_declarations(est)
  rng = np.random.default_rng(seed)
  logits = tf.constant(rng.normal(size=(batch, num_bits)), tf.float32)
  objective = _DeclaredObjective(table_objective(rng.normal(size=(batch, 2**num_bits))), est.needs, est.name)
  try:
    state = est.make_state(num_bits, 0)
  except Exception as e:  # noqa: BLE001 - any failure here is the estimator's, reported with its message
    raise EstimatorDefect(f"{est.name}: building its state failed: {type(e).__name__}: {e}") from e
  try:
    out = est.fn(objective, logits, SeedNoise(seed), state=state, context=None)
  except EstimatorDefect:
    raise
  except Exception as e:  # noqa: BLE001
    raise EstimatorDefect(
      f"{est.name} failed on logits of shape {logits.shape}: {type(e).__name__}: {e}. An estimator takes "
      "(f, logits [*batch, D], noise, state=None, context=None) and returns an EstimatorOutput"
    ) from e
  if not isinstance(out, EstimatorOutput):
    raise EstimatorDefect(f"{est.name} returned {type(out).__name__}; return estimators.base.EstimatorOutput")
  grad = tf.convert_to_tensor(out.grad)
  if grad.shape != logits.shape or not grad.dtype.is_floating:
    raise EstimatorDefect(
      f"{est.name} returned grad of shape {grad.shape} ({grad.dtype.name}) for logits {logits.shape}: the "
      "estimate has the logits' shape, one float per example and bit (do not average over the batch)"
    )
  if not np.all(np.isfinite(grad.numpy())):
    raise EstimatorDefect(f"{est.name} returned a non-finite estimate on moderate logits; every value must be finite")
  bits = tf.convert_to_tensor(out.bits)
  if bits.shape.rank != 3 or bits.shape[1:] != logits.shape:
    raise EstimatorDefect(
      f"{est.name} returned bits of shape {bits.shape}; bits are the samples f was evaluated at, [S, *batch, D]"
    )
  values = tf.convert_to_tensor(out.f_values)
  if values.shape != bits.shape[:-1]:
    raise EstimatorDefect(
      f"{est.name} returned f_values of shape {values.shape}; expected [S, *batch] = {bits.shape[:-1]}"
    )
  return {"f_points": objective.points}


__all__ = [
  "ALPHA",
  "Case",
  "Comparison",
  "EstimatorDefect",
  "Finding",
  "UnbiasedResult",
  "check_declarations",
  "check_runs",
  "check_unbiased",
  "compare_to_exact",
  "exact_gradient",
  "mc_draws",
  "random_state",
  "standard_cases",
  "state_bits",
  "table_case",
  "table_objective",
  "tabulate",
  "z_bound",
]
