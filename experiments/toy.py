"""The toy problem of PROTOCOL.md section 6: variance curves and training curves.

    f(b) = sum_d (b_d - p0)^2,   b_d ~ Bernoulli(sigma(phi_d)),   p0 in {0.49, 0.499, 0.4999}.

Maximising E[f] pushes every sigma(phi_d) to 1, but the signal is tiny: per bit the
exact gradient is ``(1 - 2 p0) * s * (1 - s)`` with ``s = sigma(phi_d)``.

    python -m experiments.toy --out_dir=results/<sweep>/toy [--quick] [--plot]

writes ``toy_variance.csv`` and ``toy_training.csv`` in the format ``plots/`` reads
(``plots/loading.py``: pass ``out_dir = <sweep>/toy`` and ``plots.figures.write_toy_figures(<sweep>)``
draws them; ``--plot`` draws them into ``<out_dir>/figures/`` directly).

Entry points:
  * ``variance_curve``: Monte Carlo variance of one bit's estimate, all bits at
    ``phi = logit(sigma)``, for each sigma of a grid, next to the exact variance where
    the estimator declares it (``exact_variance``, ``Estimator.variance_on_linear_f``).
  * ``train_curve``: Adam on phi from phi = 0, the whole loop in one ``tf.function``,
    mean over bits of sigma(phi) every ``log_every`` steps. Each step's gradients come
    from the suite's gradient engine (``training.engine``), with the toy problem as a
    one-layer model whose encoder logits are phi (``ToyModel``).
  * ``run_toy``: both CSVs for estimators x p0 (x seeds), written atomically, skipped
    when ``toy_config.json`` says the CSV on disk was made with the same parameters.

Exact variances (``exact_variance``; each formula lives with its estimator as
``variance_on_linear_f``). On bits ``f(b) = delta * sum_d b_d + D p0^2`` with
``delta = 1 - 2 p0``: every estimator that only sees ``f`` at discrete points through
differences (REINFORCE LOO, ARM, DisARM) is ``delta`` times a function of the noise, so
its variance is ``delta^2`` times a polynomial in ``s``. With ``lo = min(s, 1 - s)``,
``hi = 1 - lo`` and ``D`` bits all at the same ``s`` (estimate of bit 0):

  * ARM: per bit ``X = b~ - b`` is -1 for ``u < lo``, 0 between, +1 for ``u > hi``, and
    ``g_0 = delta * (X_0 + sum_{d>0} X_d) * (u_0 - 1/2)``. Integrating ``u`` piecewise,
    ``E[X^2 (u-1/2)^2] = (2/3)(1/8 - |s-1/2|^3)``, ``E[X^2] = 2 lo``, ``E[(u-1/2)^2] = 1/12``:
    ``Var = delta^2 (lo/2 - lo^2 + 2 lo^3 / 3 - lo^2 hi^2 + (D - 1) lo / 6)``.
  * DisARM: ``(-1)^{b_0} 1[b_0 != b~_0] = X_0``, so ``g_0 = delta hi / 2 * X_0 (X_0 + sum_{d>0} X_d)``:
    ``Var = delta^2 hi^2 lo (hi - 1/2 + (D - 1) lo)`` (zero at s = 1/2 when D = 1: then the
    pair always disagrees and the estimate is the exact gradient).
  * REINFORCE LOO, K = 2: ``g_0 = delta / 2 * Y_0 (Y_0 + sum_{d>0} Y_d)``, ``Y = b_1 - b_2``,
    ``E[Y^2] = w = 2 s (1 - s)``: ``Var = delta^2 / 4 * w (1 + (D - 2) w)``.

RELAX evaluates ``f`` at relaxed points through a learned control variate: no exact
variance (NaN). ``tests/test_toy.py`` checks these formulas against direct quadrature /
enumeration of the estimators' definitions and against Monte Carlo.

Defaults, and why (see also the module constants):
  * ``num_bits = 20``, one value for both CSVs. With one bit, ARM's and DisARM's
    variances differ only near s = 1/2 (DisARM's is 0 there) and meet as s -> 1, where
    both signal-to-noise ratios fall like ``sqrt(2 (1 - s))``: the training curves cannot
    tell them apart. With D bits the other bits' noise enters each bit's estimate through
    the shared ``f(b~) - f(b)``: DisARM and REINFORCE LOO keep a signal-to-noise ratio of
    about ``1 / sqrt(D - 1)`` at every s, ARM's is ``hi sqrt(6 lo)`` times that (0.87 at
    s = 1/2, 0.24 at s = 0.99), and DisARM's variance is 0.23-0.89 of ARM's over the grid.
    20 bits keep a step a handful of tiny ops.
  * Adam (the paper's toy optimiser; ``training.optim.Adam`` as in the main loop),
    ``learning_rate = 0.01``, 5,000 steps, logged every 50. Measured (mean of 3 seeds,
    p0 = 0.49): DisARM's mean sigma(phi) is 0.86 at 1,000 steps, 0.95 at 2,000, 0.993 at
    5,000; REINFORCE LOO the same within 0.002; ARM lags (0.84, 0.94, 0.989: 1.5x
    DisARM's distance to 1 at the end); RELAX barely moves (0.62 at 5,000 steps).
    Under Adam progress is set by the signal-to-noise ratio, so the ARM-DisARM gap is
    the ratio above, whatever D (large) and the learning rate; it grows in ``1 - sigma``
    the longer one trains.
  * Adam is invariant to the scale of the gradient and the estimates of REINFORCE LOO,
    ARM and DisARM are ``delta`` times noise, so their sigma(phi) trajectories for the
    three p0 differ only through Adam's epsilon (with the same seed, nearly identical
    curves). p0 sets their absolute variance (``delta^2``). It matters for RELAX: its
    control variate is ``f`` at relaxed points, where ``f``'s slope is O(1) however small
    ``delta`` is, so its variance stays ~1e-2 for every p0 (10 to 10^7 times DisARM's)
    and it makes no progress at p0 = 0.499 or 0.4999 (unbiased all the same).
  * RELAX: its state is trained as in the main training loop (Adam, the same learning
    rate as phi, beta1 = 0.999, loss = sum over bits of the squared estimate). For the
    variance curve a fresh state is first trained at each sigma for
    ``RELAX_VARIANCE_STEPS`` steps on batches of ``RELAX_VARIANCE_BATCH`` draws, so that
    the curve shows RELAX with a fitted control variate rather than its initial one
    (this is most of run_toy's time: about 1 s per point).
  * Variance: 10,000 draws per point (relative s.e. of the variance ~2-6%, larger at the
    ends of the grid where the estimates are heavy-tailed), sigma = 0.02, 0.04, ..., 0.98.
"""

import functools
import hashlib
import json
import math
import os
import time

if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import numpy as np
import pandas as pd
import tensorflow as tf

from contracts import results
from estimators import Objective, SeedNoise, as_seed, estimate_gradient, get_estimator
from training import engine
from training.optim import Adam
from training.results_io import atomic_write_text

P0S = (0.49, 0.499, 0.4999)
DEFAULT_ESTIMATORS = ("reinforce_loo", "arm", "disarm", "relax")
DEFAULT_SEEDS = (0, 1, 2)
# sigma(phi) = 0.02, 0.04, ..., 0.98 (includes 1/2).
DEFAULT_SIGMA_GRID = tuple(round(i / 50.0, 4) for i in range(1, 50))
DEFAULT_NUM_BITS = 20
DEFAULT_NUM_DRAWS = 10000
DEFAULT_NUM_STEPS = 5000
DEFAULT_LOG_EVERY = 50
DEFAULT_LEARNING_RATE = 1e-2
DEFAULT_VARIANCE_SEED = 0
RELAX_VARIANCE_STEPS = 1000
RELAX_VARIANCE_BATCH = 100
RELAX_VARIANCE_LR = 1e-2

# --quick: the same estimators and p0s, a coarser grid, fewer draws, steps and seeds.
QUICK = dict(
  sigma_grid=tuple(round(i / 20.0, 4) for i in range(1, 20)),
  num_draws=2000,
  num_steps=2000,
  log_every=50,
  seeds=(0, 1),
  relax_variance_steps=100,
)

VARIANCE_COLUMNS = results.TOY_VARIANCE_COLUMNS
TRAINING_COLUMNS = results.TOY_TRAINING_COLUMNS
VARIANCE_CSV = results.TOY_VARIANCE_CSV
TRAINING_CSV = results.TOY_TRAINING_CSV
CONFIG_JSON = "toy_config.json"
# Bump when a change to this module changes the numbers, so that old CSVs are recomputed.
FORMAT_VERSION = 1

# None: XLA for estimators with state only (see _use_xla); True / False: for all / none.
JIT_COMPILE = None
# Sample variances below this times the mean square of the estimates are float32 rounding.
FLOAT32_VARIANCE_FLOOR = (8.0 * float(np.finfo(np.float32).eps)) ** 2


# ------------------------------------------------------------------------ problem
def toy_objective(p0):
  """f(b) = sum_d (b_d - p0)^2 over the last axis (bits [..., D] -> [...]); works on relaxed b too."""
  return _objective_of(float(p0))


def exact_gradient(p0, logits):
  """d E[f] / d phi = (1 - 2 p0) * s * (1 - s) per bit (numpy, float64)."""
  s = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
  return (1.0 - 2.0 * float(p0)) * s * (1.0 - s)


def exact_variance(estimator, p0, sigma, num_bits=1):
  """Exact variance of bit 0's estimate with all ``num_bits`` bits at ``sigma(phi) = sigma``.

  ``delta^2`` times the estimator's own ``variance_on_linear_f`` (derivations in the
  module docstring); NaN for an estimator that declares none. ``estimator``: an
  ``Estimator`` or a registered name (an unknown name raises ``get_estimator``'s error).
  ``sigma`` may be an array.
  """
  est = estimator if hasattr(estimator, "variance_on_linear_f") else get_estimator(str(estimator))
  s = np.asarray(sigma, np.float64)
  d = int(num_bits)
  if d < 1:
    raise ValueError(f"num_bits must be >= 1, got {num_bits}")
  if est.variance_on_linear_f is None:
    v = np.full_like(s, np.nan)
  else:
    v = (1.0 - 2.0 * float(p0)) ** 2 * np.maximum(est.variance_on_linear_f(s, d), 0.0)
  return float(v) if v.ndim == 0 else v


def sample_variance_se(samples):
  """Sample variance (ddof=1) of 1-D samples and its standard error.

  The s.e. is the large-sample one, sqrt((m4 - m2^2) / n) with the central moments
  estimated from the samples; it holds for any distribution with a finite fourth moment
  (for a normal one it is m2 * sqrt(2 / n)).
  """
  x = np.asarray(samples, np.float64)
  n = x.size
  c = x - x.mean()
  m2 = np.mean(c**2)
  m4 = np.mean(c**4)
  return float(m2 * n / (n - 1)), float(math.sqrt(max(m4 - m2**2, 0.0) / n))


# ------------------------------------------------------------------ compiled pieces
def _use_xla(est):
  """XLA for estimators with state (RELAX: a second-order step whose tracing costs as much
  as compiling, and which then runs ~10x faster); plain graphs for the rest (a handful of
  tiny ops a step: tracing takes well under a second, compiling takes seconds)."""
  return est.has_state if JIT_COMPILE is None else bool(JIT_COMPILE)


def _objective_of(p0):
  """f for a p0 that is a tensor argument of a tf.function (one trace serves every p0)."""
  return lambda b: tf.reduce_sum(tf.square(b - p0), axis=-1)


def _reset_adam(optimizer):
  optimizer.iterations.assign(0)
  for slot in optimizer.m + optimizer.v:
    slot.assign(tf.zeros_like(slot))


def _reset_state(est, state, num_bits, seed):
  """Sets ``state`` to the values ``est.make_state(num_bits, 0, seed=(seed, 2))`` starts from."""
  fresh = est.make_state(num_bits, 0, seed=(int(seed), 2))
  for var, init in zip(state.variables, fresh.variables):
    var.assign(init)


class _VarianceSampler:
  """``num_draws`` estimates at one logits vector, traced once per estimator and shape.

  Estimators with state get a fresh state (seeded by the call's ``state_seed``) trained
  at the point for ``relax_steps`` steps first, on batches of ``relax_batch`` draws
  (Adam, ``relax_learning_rate``, beta1 = 0.999, loss = mean over the batch of the sum
  over bits of the squared estimate).
  """

  def __init__(self, est, num_draws, num_bits, relax_steps, relax_batch, relax_learning_rate):
    self.est, self.num_draws, self.num_bits = est, num_draws, num_bits
    self.relax_steps, self.relax_batch = relax_steps, relax_batch
    xla = _use_xla(est)
    if est.has_state:
      self.state = est.make_state(num_bits, 0, seed=(0, 2))
      self.optimizer = Adam(
        list(self.state.trainable_variables),
        relax_learning_rate,
        beta1=est.trainable.beta1,
        beta2=est.trainable.beta2,
        name="toy_variance_state_adam",
      )
      self._fit = tf.function(self._fit_impl, jit_compile=xla)
    else:
      self.state = None
    self._draw = tf.function(self._draw_impl, jit_compile=xla)

  def _fit_impl(self, p0, logits, seed):
    f = _objective_of(p0)
    tiled = tf.broadcast_to(logits, [self.relax_batch, self.num_bits])
    variables = list(self.state.trainable_variables)
    for t in tf.range(self.relax_steps):
      with tf.GradientTape() as tape:
        step_seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(t, tf.int64))
        grad = self.est.fn(Objective(f), tiled, SeedNoise(step_seed), state=self.state).grad
        loss = tf.reduce_mean(tf.reduce_sum(tf.square(grad), axis=-1))
      self.optimizer.apply(tape.gradient(loss, variables))

  def _draw_impl(self, p0, logits, seed):
    return estimate_gradient(self.est, _objective_of(p0), logits, seed, num_draws=self.num_draws, state=self.state)

  def __call__(self, p0, logits, seed, state_seed):
    p0 = tf.constant(p0, tf.float32)
    if self.state is None:
      return self._draw(p0, logits, seed).numpy()
    fit_seed, draw_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    _reset_state(self.est, self.state, self.num_bits, state_seed)
    _reset_adam(self.optimizer)
    if self.relax_steps > 0:
      self._fit(p0, logits, fit_seed)
    return self._draw(p0, logits, draw_seed).numpy()


class ToyModel(tf.Module):
  """The toy problem as a one-layer model for the gradient engine.

  Its encoder logits are the parameters ``phi`` (the same for every example of a
  batch), its "ELBO" is ``f(b) = sum_d (b_d - p0)^2`` (no log q term), and it has no
  decoder, prior or side input.
  """

  num_layers = 1

  def __init__(self, num_bits):
    super().__init__(name="toy_model")
    self.num_bits = num_bits
    self.phi = tf.Variable(tf.zeros([num_bits]), name="phi")
    self.p0 = tf.Variable(0.0, trainable=False, name="p0")
    self.prior_logits = None

  @property
  def encoder_variables(self):
    return [self.phi]

  @property
  def decoder_variables(self):
    return []

  def layer_logits(self, l, below, x, frozen=False):
    del l, below, frozen
    return tf.broadcast_to(self.phi, [tf.shape(x)[0], self.num_bits])

  def elbo(self, x, bits, logits):
    del x, logits
    return tf.reduce_sum(tf.square(bits - self.p0), axis=-1)

  def estimator_context(self, l, x, forward_bits, kind="raw"):
    return None

  def context_dim(self, l):
    return 0


class _CurveTrainer:
  """train_curve's loop for one (estimator, num_bits, learning rate, logged steps), traced
  once; p0 and the seed are arguments, and every variable is reset before each curve."""

  def __init__(self, est, num_bits, learning_rate, steps):
    self.est, self.num_bits = est, num_bits
    self.blocks = tf.constant(np.diff(steps), tf.int64)
    self.model = ToyModel(num_bits)
    self.phi = self.model.phi
    self.optimizer = Adam([self.phi], learning_rate, name="toy_adam")
    if est.has_state:
      self.state = est.make_state(num_bits, 0, seed=(0, 2))
      self.state_vars = list(self.state.trainable_variables)
      # As the main training loop: the learning rate of phi, the estimator's own Adam settings.
      self.state_optimizer = Adam(
        self.state_vars, learning_rate, beta1=est.trainable.beta1, beta2=est.trainable.beta2, name="toy_state_adam"
      )
    else:
      self.state = None
    self._run = tf.function(self._run_impl, jit_compile=_use_xla(est))

  def _train_step(self, base_seed, t):
    noise = SeedNoise(tf.random.experimental.stateless_fold_in(base_seed, t))
    batch = tf.zeros([1, 0])  # one example; the toy problem has no data
    grads = engine.step_gradients(
      self.model, self.est, batch, noise, None if self.state is None else [self.state], decoder=False
    )
    if grads.state is not None:
      self.state_optimizer.apply(grads.state)
    self.optimizer.apply(grads.encoder)  # descent on -E[f]: ascent on E[f]

  def _run_impl(self, p0, base_seed):
    self.model.p0.assign(p0)
    num_blocks = self.blocks.shape[0]
    logged = tf.TensorArray(tf.float32, size=num_blocks + 1)
    logged = logged.write(0, tf.reduce_mean(tf.sigmoid(self.phi)))
    t = tf.constant(0, tf.int64)
    for i in tf.range(num_blocks):
      end = t + self.blocks[i]
      while t < end:  # not tf.range: XLA needs the bounds of a range at compile time
        self._train_step(base_seed, t)
        t += 1
      logged = logged.write(i + 1, tf.reduce_mean(tf.sigmoid(self.phi)))
    return logged.stack()

  def __call__(self, p0, seed):
    self.phi.assign(tf.zeros_like(self.phi))
    _reset_adam(self.optimizer)
    if self.state is not None:
      _reset_state(self.est, self.state, self.num_bits, seed)
      _reset_adam(self.state_optimizer)
    sigma = self._run(tf.constant(p0, tf.float32), tf.constant([int(seed), 0], tf.int32))
    return sigma.numpy().astype(np.float64)


@functools.lru_cache(maxsize=16)
def _variance_sampler(est, num_draws, num_bits, relax_steps, relax_batch, relax_learning_rate):
  return _VarianceSampler(est, num_draws, num_bits, relax_steps, relax_batch, relax_learning_rate)


@functools.lru_cache(maxsize=16)
def _curve_trainer(est, num_bits, learning_rate, steps):
  return _CurveTrainer(est, num_bits, learning_rate, steps)


def clear_caches():
  """Drops the traced functions (and their variables) kept between calls."""
  _variance_sampler.cache_clear()
  _curve_trainer.cache_clear()


# ------------------------------------------------------------------ variance curve
def _sigma_seed(seed, sigma):
  """A [2] seed for one grid point, from the point's value (independent of the grid)."""
  return tf.random.experimental.stateless_fold_in(as_seed(seed), int(round(float(sigma) * 1e9)))


def _logits_for(sigma, num_bits):
  phi = math.log(sigma) - math.log1p(-sigma)
  return tf.fill([num_bits], tf.constant(phi, tf.float32))


def variance_curve(
  estimator_name,
  p0,
  sigma_grid=DEFAULT_SIGMA_GRID,
  num_draws=DEFAULT_NUM_DRAWS,
  num_bits=DEFAULT_NUM_BITS,
  seed=DEFAULT_VARIANCE_SEED,
  *,
  relax_steps=RELAX_VARIANCE_STEPS,
  relax_batch=RELAX_VARIANCE_BATCH,
  relax_learning_rate=RELAX_VARIANCE_LR,
):
  """Variance of bit 0's gradient estimate at ``phi = logit(sigma)`` (all bits) over a grid.

  For each sigma, ``num_draws`` independent estimates come from one vectorised
  ``estimate_gradient`` call; ``variance`` is their sample variance (ddof=1),
  ``variance_exact`` is ``exact_variance`` (NaN where unknown), ``num_samples`` is
  ``num_draws``. Estimators with trainable state (RELAX) get a fresh state per sigma,
  trained for ``relax_steps`` steps first (module docstring). The noise of a point
  depends on ``seed`` and the sigma value only. A variance below float32's resolution
  of the estimates (``FLOAT32_VARIANCE_FLOOR`` times their mean square: rounding, not
  noise) is reported as 0.

  Returns a DataFrame with columns ``VARIANCE_COLUMNS``, one row per sigma.
  """
  est = get_estimator(estimator_name)
  num_draws, num_bits = int(num_draws), int(num_bits)
  if num_draws < 2:
    raise ValueError(f"num_draws must be >= 2 for a variance, got {num_draws}")
  if num_bits < 1:
    raise ValueError(f"num_bits must be >= 1, got {num_bits}")
  sigmas = [float(s) for s in sigma_grid]
  if any(not 0.0 < s < 1.0 for s in sigmas):
    raise ValueError(f"sigma_grid values must lie in (0, 1), got {sigmas}")
  sampler = _variance_sampler(est, num_draws, num_bits, int(relax_steps), int(relax_batch), float(relax_learning_rate))
  exact = exact_variance(est, p0, np.array(sigmas), num_bits)
  rows = []
  for s, ex in zip(sigmas, exact):
    g = sampler(float(p0), _logits_for(s, num_bits), _sigma_seed(seed, s), seed)[:, 0]
    var, _ = sample_variance_se(g)
    if var <= FLOAT32_VARIANCE_FLOOR * np.mean(np.square(g, dtype=np.float64)):
      var = 0.0
    rows.append(
      {
        "p0": float(p0),
        "estimator": est.name,
        "sigma_phi": s,
        "variance": var,
        "variance_exact": float(ex),
        "num_samples": num_draws,
      }
    )
  return pd.DataFrame(rows, columns=list(VARIANCE_COLUMNS))


# ------------------------------------------------------------------ training curve
def log_steps(num_steps, log_every):
  """Steps at which train_curve logs: 0, log_every, 2 log_every, ..., and num_steps."""
  num_steps, log_every = int(num_steps), int(log_every)
  if num_steps < 1 or log_every < 1:
    raise ValueError(f"num_steps and log_every must be >= 1, got {num_steps}, {log_every}")
  steps = list(range(0, num_steps + 1, log_every))
  if steps[-1] != num_steps:
    steps.append(num_steps)
  return steps


def train_curve(
  estimator_name,
  p0,
  num_steps=DEFAULT_NUM_STEPS,
  num_bits=DEFAULT_NUM_BITS,
  seed=0,
  learning_rate=DEFAULT_LEARNING_RATE,
  log_every=DEFAULT_LOG_EVERY,
):
  """Maximises E[f] over phi with Adam from phi = 0; sigma(phi) (mean over bits) over steps.

  Step t (0-based) draws its noise from ``stateless_fold_in([seed, 0], t)``; the whole
  loop runs in one ``tf.function`` call, so a curve is a deterministic function of its
  arguments. Estimators with state (RELAX) train it alongside phi, as the main training
  loop does: Adam with the same learning rate and beta1 = 0.999 on the sum over bits of
  the squared estimate; the state starts from ``make_state(num_bits, 0, seed=(seed, 2))``.

  Returns a DataFrame with columns ``TRAINING_COLUMNS``, one row per logged step
  (``log_steps(num_steps, log_every)``; step 0 is the start, sigma = 0.5).
  """
  est = get_estimator(estimator_name)
  num_bits = int(num_bits)
  if num_bits < 1:
    raise ValueError(f"num_bits must be >= 1, got {num_bits}")
  steps = log_steps(num_steps, log_every)
  sigma = _curve_trainer(est, num_bits, float(learning_rate), tuple(steps))(float(p0), int(seed))
  return pd.DataFrame(
    {"p0": float(p0), "estimator": est.name, "seed": int(seed), "step": steps, "sigma_phi": sigma},
    columns=list(TRAINING_COLUMNS),
  )


# ------------------------------------------------------------------------ run_toy
def _sha256(path):
  with open(path, "rb") as fh:
    return hashlib.sha256(fh.read()).hexdigest()


def _normalise(params):
  """Parameters as they read back from JSON (tuples -> lists), for comparison."""
  return json.loads(json.dumps(params, sort_keys=True))


def _read_config(path):
  try:
    with open(path) as fh:
      config = json.load(fh)
    return config if isinstance(config, dict) else {}
  except (OSError, ValueError):
    return {}


def _up_to_date(out_dir, csv_name, key, params):
  """The CSV exists, and toy_config.json records these parameters and this very file."""
  csv_path = os.path.join(out_dir, csv_name)
  entry = _read_config(os.path.join(out_dir, CONFIG_JSON)).get(key)
  return (
    os.path.isfile(csv_path)
    and isinstance(entry, dict)
    and entry.get("params") == _normalise(params)
    and entry.get("csv_sha256") == _sha256(csv_path)
  )


def _write_csv_and_record(out_dir, csv_name, key, params, frame):
  """CSV first, then its parameters and checksum in toy_config.json (both atomic).

  A kill between the two leaves a config whose checksum does not match the CSV, so
  the next run recomputes rather than trusting a stale record.
  """
  csv_path = os.path.join(out_dir, csv_name)
  atomic_write_text(csv_path, frame.to_csv(index=False))
  config_path = os.path.join(out_dir, CONFIG_JSON)
  config = _read_config(config_path)
  config[key] = {"params": _normalise(params), "csv_sha256": _sha256(csv_path)}
  atomic_write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
  return csv_path


def run_toy(
  out_dir,
  estimators=DEFAULT_ESTIMATORS,
  p0s=P0S,
  seeds=DEFAULT_SEEDS,
  num_steps=DEFAULT_NUM_STEPS,
  num_bits=DEFAULT_NUM_BITS,
  num_draws=DEFAULT_NUM_DRAWS,
  *,
  sigma_grid=DEFAULT_SIGMA_GRID,
  learning_rate=DEFAULT_LEARNING_RATE,
  log_every=DEFAULT_LOG_EVERY,
  variance_seed=DEFAULT_VARIANCE_SEED,
  relax_variance_steps=RELAX_VARIANCE_STEPS,
  log=print,
):
  """Writes ``<out_dir>/toy_variance.csv`` and ``<out_dir>/toy_training.csv``.

  Pass ``out_dir = <sweep>/toy`` for ``plots/`` to find them. Each CSV is skipped
  when it exists and ``toy_config.json`` records the same parameters (and the CSV's
  checksum); otherwise it is recomputed in full and replaced atomically.

  Returns ``(variance_csv_path, training_csv_path)``.
  """
  estimators = tuple(get_estimator(e).name for e in estimators)
  p0s = tuple(float(p) for p in p0s)
  seeds = tuple(int(s) for s in seeds)
  os.makedirs(out_dir, exist_ok=True)
  log = log or (lambda *_: None)

  var_params = dict(
    version=FORMAT_VERSION,
    estimators=estimators,
    p0s=p0s,
    num_bits=int(num_bits),
    num_draws=int(num_draws),
    sigma_grid=tuple(float(s) for s in sigma_grid),
    seed=int(variance_seed),
    relax_steps=int(relax_variance_steps),
    relax_batch=RELAX_VARIANCE_BATCH,
    relax_learning_rate=RELAX_VARIANCE_LR,
  )
  var_path = os.path.join(out_dir, VARIANCE_CSV)
  if _up_to_date(out_dir, VARIANCE_CSV, "variance", var_params):
    log(f"toy: {var_path} is up to date; skipped")
  else:
    start = time.time()
    frames = []
    for est in estimators:
      for p0 in p0s:
        t0 = time.time()
        frames.append(
          variance_curve(est, p0, sigma_grid, num_draws, num_bits, variance_seed, relax_steps=relax_variance_steps)
        )
        log(f"toy: variance {est} p0={p0:g}: {time.time() - t0:.1f}s")
    _write_csv_and_record(out_dir, VARIANCE_CSV, "variance", var_params, pd.concat(frames, ignore_index=True))
    log(f"toy: wrote {var_path} ({time.time() - start:.1f}s)")

  train_params = dict(
    version=FORMAT_VERSION,
    estimators=estimators,
    p0s=p0s,
    seeds=seeds,
    num_steps=int(num_steps),
    num_bits=int(num_bits),
    learning_rate=float(learning_rate),
    log_every=int(log_every),
  )
  train_path = os.path.join(out_dir, TRAINING_CSV)
  if _up_to_date(out_dir, TRAINING_CSV, "training", train_params):
    log(f"toy: {train_path} is up to date; skipped")
  else:
    start = time.time()
    frames = []
    for est in estimators:
      for p0 in p0s:
        t0 = time.time()
        for seed in seeds:
          frames.append(train_curve(est, p0, num_steps, num_bits, seed, learning_rate, log_every))
        final = np.mean([fr["sigma_phi"].iloc[-1] for fr in frames[-len(seeds) :]])
        log(f"toy: training {est} p0={p0:g}: final mean sigma {final:.3f} ({time.time() - t0:.1f}s)")
    _write_csv_and_record(out_dir, TRAINING_CSV, "training", train_params, pd.concat(frames, ignore_index=True))
    log(f"toy: wrote {train_path} ({time.time() - start:.1f}s)")
  return var_path, train_path


def plot_toy(out_dir):
  """Draws the toy figures from ``out_dir``'s CSVs into ``<out_dir>/figures/``; returns the paths."""
  from plots import figures  # matplotlib only when asked for

  fig_dir = os.path.join(out_dir, figures.FIGURES_SUBDIR)
  paths = []
  var_path, train_path = os.path.join(out_dir, VARIANCE_CSV), os.path.join(out_dir, TRAINING_CSV)
  if os.path.isfile(var_path):
    paths += figures.plot_toy_variance(pd.read_csv(var_path), fig_dir)
  if os.path.isfile(train_path):
    paths += figures.plot_toy_training(pd.read_csv(train_path), fig_dir)
  return paths


# --------------------------------------------------------------------------- CLI
def main(argv):
  from absl import app, flags

  FLAGS = flags.FLAGS
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  kwargs = {}
  if FLAGS.quick:
    kwargs.update(QUICK)
  for name in ("num_steps", "num_bits", "num_draws"):
    if FLAGS[name].value is not None:
      kwargs[name] = FLAGS[name].value
  try:
    if FLAGS.seeds is not None:
      kwargs["seeds"] = tuple(int(s) for s in FLAGS.seeds)
    if FLAGS.p0s is not None:
      kwargs["p0s"] = tuple(float(p) for p in FLAGS.p0s)
  except ValueError as e:
    raise app.UsageError(f"--seeds takes integers and --p0s numbers, separated by commas: {e}") from None
  if FLAGS.estimator_modules:
    from estimators import import_estimator_modules

    try:
      import_estimator_modules(FLAGS.estimator_modules)
    except ValueError as e:
      raise app.UsageError(str(e)) from None
  if FLAGS.estimators is not None:
    names = []
    for name in (e.strip() for e in FLAGS.estimators if e.strip()):
      try:  # the registry parses names, family members (arms_3) included
        est = get_estimator(name)
      except ValueError as e:
        raise app.UsageError(str(e)) from None
      if est.bound_estimator:
        raise app.UsageError(f"{name} estimates a multi-sample bound; the toy problem compares estimators of d E[f]")
      names.append(est.name)
    kwargs["estimators"] = tuple(names)
  start = time.time()
  var_path, train_path = run_toy(FLAGS.out_dir, **kwargs)
  print(f"toy: {var_path}\ntoy: {train_path}\ntoy: total {time.time() - start:.1f}s")
  if FLAGS.plot:
    for path in plot_toy(FLAGS.out_dir):
      print(f"toy: figure {path}")


def _define_flags():
  from absl import flags

  flags.DEFINE_string(
    "out_dir",
    None,
    "Folder for toy_variance.csv, toy_training.csv, toy_config.json (results/<sweep>/toy for plots/ to find them).",
  )
  flags.DEFINE_bool(
    "quick",
    False,
    "Coarser grid, fewer draws, steps and seeds (about 40 s on 2 busy CPU cores, mostly compiling RELAX).",
  )
  flags.DEFINE_bool("plot", False, "Also draw the toy figures into <out_dir>/figures/.")
  flags.DEFINE_list(
    "estimators",
    None,
    f"Estimators by registry name, <family>_<K> included (arms_3) (default: {','.join(DEFAULT_ESTIMATORS)}).",
  )
  flags.DEFINE_list(
    "estimator_modules", [], "Modules defining estimators of your own: .py file paths or importable module paths."
  )
  flags.DEFINE_list("p0s", None, "Values of p0 (default: 0.49,0.499,0.4999).")
  flags.DEFINE_list("seeds", None, "Training seeds (default: 0,1,2; --quick: 0,1).")
  flags.DEFINE_integer("num_steps", None, f"Training steps (default {DEFAULT_NUM_STEPS}).")
  flags.DEFINE_integer("num_bits", None, f"Bits D (default {DEFAULT_NUM_BITS}).")
  flags.DEFINE_integer("num_draws", None, f"Estimates per variance point (default {DEFAULT_NUM_DRAWS}).")
  flags.mark_flag_as_required("out_dir")


if __name__ == "__main__":
  from absl import app as _app

  _define_flags()
  _app.run(main)
