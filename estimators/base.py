"""The estimator protocol: one signature, and everything an estimator declares about itself.

An estimator is a function

    estimator_fn(f, logits, noise, state=None, context=None) -> EstimatorOutput

estimating ``d/d logits E_{b ~ Bernoulli(sigmoid(logits))}[f(b)]`` (or, for an
estimator of a multi-sample bound, ``d/d logits E[log mean_{k<=K} exp f(b_k)]``).

* ``f`` is an ``Objective``: ``f(bits)`` maps bits ``[S, *batch, D]`` (``S`` stacked
  draws, 0./1. floats) to values ``[S, *batch]``. What else an estimator may ask of it
  is declared in ``Estimator.needs``: values at discrete points only (``Needs.VALUES``),
  values at relaxed points in (0, 1)^D through which it differentiates
  (``Needs.RELAXED``: ``f(bits, relaxed=points, temperature=t)``), or the gradient
  ``grad_b f`` at the discrete points (``Needs.GRADIENT``: ``f.value_and_gradient``). If
  ``f`` also depends on ``logits`` (the ELBO's ``-log q`` term), that dependence is the
  caller's business (PROTOCOL.md section 1).
* ``logits`` ``[*batch, D]``; the estimate has the same shape, one value per example and
  bit (nothing is averaged over the batch), so its variance can be measured.
* ``noise`` is a ``Noise`` source given by the caller: ``noise.uniform(like, num_samples)``
  draws ``U(0, 1)`` of shape ``[num_samples, *like.shape]``, ``noise.split(n)`` gives ``n``
  independent sources. An estimate is a pure function of its inputs and the noise
  (``SeedNoise`` draws from one stateless seed; the training loop hands each run of a
  stack its own stream through the same interface).
* ``state`` holds the estimator's own trainable parameters (``Estimator.trainable``),
  built by ``Trainable.init`` from a ``Params`` factory; ``context`` is side information
  for them (the encoder's input), ``[*batch, C]``.

Parameters of a state broadcast against the leading axes of ``logits``: a scalar is
created with shape ``[1]`` and multiplies ``[*batch]`` tensors directly (``[..., None]``
against ``[*batch, D]``); a dense layer's weights ``[n, k]`` and bias ``[1, k]`` act on
``[..., *batch, n]`` through ``ops.dense``. A caller that trains several runs in one
graph gives every parameter a leading copy axis aligned with the leading batch axis of
its logits; code written this way needs no change for it.

Reference for the design: optax's ``stochastic_gradient_estimators`` and control
variates (explicit state with init, loss and update; per-sample estimates).
"""

import dataclasses
import enum
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import tensorflow as tf

# U(0, 1) draws of ``Noise.uniform(..., open_interval=True)`` lie in [EPS, 1 - EPS],
# so that log u and log(1 - u) are finite.
OPEN_INTERVAL_EPS = 1e-6
# The stateless generator. "philox" is what "auto_select" picks on CPU and GPU, with the
# same draws in TensorFlow's kernels and under XLA alike; named explicitly, XLA:CPU
# generates it 2.4x faster than through "auto_select" (measured: benchmarks/README.md).
ALGORITHM = "philox"
MAX_INT32 = 2**31 - 1


class Needs(str, enum.Enum):
  """What an estimator needs of ``f``."""

  VALUES = "values"  # f at discrete points only (a black box)
  RELAXED = "relaxed"  # also f at relaxed points in (0, 1)^D, differentiable there
  GRADIENT = "gradient"  # also grad_b f at the discrete points (f's continuous extension)


class Noise(Protocol):
  """A source of independent U(0, 1) draws, handed to an estimator by its caller."""

  def uniform(self, like: tf.Tensor, num_samples: int | None = None, open_interval: bool = False) -> tf.Tensor:
    """U(0, 1) of shape ``[num_samples, *like.shape]`` (``like.shape`` without ``num_samples``), dtype of ``like``."""

  def split(self, num: int) -> Sequence["Noise"]:
    """``num`` independent sources."""


class SeedNoise:
  """``Noise`` from one stateless seed (``[2]`` int32): the same draws eagerly and in a ``tf.function``."""

  OPEN_LOW, OPEN_HIGH = OPEN_INTERVAL_EPS, 1.0 - OPEN_INTERVAL_EPS

  def __init__(self, seed):
    self.seed = as_seed(seed)

  @tf.autograph.experimental.do_not_convert
  def uniform(self, like, num_samples=None, open_interval=False):
    shape = tf.shape(like)
    if num_samples is not None:
      shape = tf.concat([[num_samples], shape], axis=0)
    low, high = (self.OPEN_LOW, self.OPEN_HIGH) if open_interval else (0.0, 1.0)
    return tf.random.stateless_uniform(shape, self.seed, low, high, dtype=like.dtype, alg=ALGORITHM)

  @tf.autograph.experimental.do_not_convert
  def split(self, num):
    return [SeedNoise(s) for s in tf.unstack(tf.random.experimental.stateless_split(self.seed, num))]

  @tf.autograph.experimental.do_not_convert
  def fold_in(self, value):
    """A source for purpose ``value`` (an int), independent of this one's draws and splits."""
    return SeedNoise(tf.random.experimental.stateless_fold_in(self.seed, tf.cast(value, tf.int64)))


class Params(Protocol):
  """Creates the variables of an estimator's state, handed to ``Trainable.init`` by its caller."""

  def variable(self, init: Callable[[tf.Tensor], tf.Tensor], name: str) -> tf.Variable:
    """A variable holding ``init(seed)`` (``seed``: a ``[2]`` stateless seed) for each run the caller trains."""

  def split(self, num: int) -> Sequence["Params"]:
    """``num`` factories with independent seeds."""


class SeedParams:
  """``Params`` for one run: variables initialised from one stateless seed."""

  def __init__(self, seed=(0, 0)):
    self.seed = as_seed(seed)

  def variable(self, init, name):
    return tf.Variable(init(self.seed), name=name)

  def split(self, num):
    return [SeedParams(s) for s in tf.unstack(tf.random.experimental.stateless_split(self.seed, num))]


def glorot_uniform(seed, in_dim, out_dim):
  """Glorot-uniform ``[in_dim, out_dim]`` weights (the Keras default) from a stateless seed."""
  limit = math.sqrt(6.0 / (in_dim + out_dim))
  return tf.random.stateless_uniform([in_dim, out_dim], seed, -limit, limit)


def dense_params(params, in_dim, out_dim, name):
  """``(w [in, out], b [1, out])``: Glorot-uniform weights, zero bias, as variables of ``params``."""
  w = params.variable(lambda s: glorot_uniform(s, in_dim, out_dim), name=f"{name}_w")
  b = params.variable(lambda s: tf.zeros([1, out_dim]), name=f"{name}_b")
  return w, b


class Objective:
  """``f`` as estimators see it: a callable on bits, plus what some estimators need of it.

  Wraps a plain callable ``fn`` mapping bits ``[S, *batch, D]`` (or relaxed points) to
  ``[S, *batch]``. Callers with more structure (a layered model, whose upper layers are
  resampled for every candidate) subclass it.
  """

  def __init__(self, fn):
    self.fn = fn

  def __call__(self, bits, relaxed=None, temperature=None):
    """Values at ``bits`` ``[S, ...]``, then (if given) at relaxed points ``[R, ...]``: ``[S + R, ...]``.

    ``temperature`` is the relaxation's temperature (used by objectives that relax
    further variables of their own); a plain ``f`` is evaluated at the points as they are.
    """
    if relaxed is None:
      return self.fn(bits)
    return self.fn(tf.concat([bits, relaxed], axis=0))

  def value_and_gradient(self, bits):
    """``(f(bits), grad_b f(bits))`` with the gradient of ``f``'s continuous extension."""
    bits = tf.convert_to_tensor(bits)
    with tf.GradientTape() as tape:
      tape.watch(bits)
      values = self(bits)
    grads = tape.gradient(values, bits)
    if grads is None:
      raise ValueError(
        "this estimator needs the gradient of f with respect to the bits, and f has none: "
        "f must be a differentiable TensorFlow function of b (a smooth continuous extension "
        "of f from {0,1}^D, such as its multilinear extension); not NumPy code, tf.round, "
        "tf.cast or a lookup"
      )
    return values, grads


class EstimatorOutput(NamedTuple):
  """What every estimator returns.

  Attributes:
    grad: ``[*batch, D]`` estimate of ``d E[objective] / d logits`` through the
      sampling distribution (``f`` held fixed as a function of ``b``).
    bits: ``[S, *batch, D]`` the discrete samples ``f`` was evaluated at.
    f_values: ``[S, *batch]`` ``f`` at those samples.
    objective: ``[*batch]`` the objective at these samples, a differentiable function
      of ``f_values``; ``None`` means ``mean_S f_values``. Estimators of a multi-sample
      bound return their bound ``log mean exp f``: its gradient with respect to ``f``'s
      own parameters is the direct part of their gradient (PROTOCOL.md section 2).
    num_independent: how many of the leading ``bits`` are independent draws from q
      (a caller training a decoder on independent samples reuses them).
  """

  grad: tf.Tensor
  bits: tf.Tensor
  f_values: tf.Tensor
  objective: tf.Tensor | None = None
  num_independent: int = 0

  def objective_value(self):
    return tf.reduce_mean(self.f_values, axis=0) if self.objective is None else self.objective


@tf.autograph.experimental.do_not_convert
def sum_of_squares(gradients):
  """The variance loss: the sum of squares of an encoder-gradient estimate (its mean is fixed)."""
  return tf.add_n([tf.reduce_sum(tf.square(g)) for g in gradients])


@tf.autograph.experimental.do_not_convert
def mean_square_per_example(estimates):
  """Per run, the mean over its examples and bits of the squared estimate ``[..., B, D]``; summed over runs."""
  return tf.add_n([tf.reduce_sum(tf.reduce_mean(tf.square(g), axis=[-2, -1])) for g in estimates])


@dataclasses.dataclass(frozen=True)
class Trainable:
  """An estimator's own trainable parameters, and how they are trained.

  Attributes:
    init: ``init(num_latents, context_dim, params) -> tf.Module`` builds the state's
      variables through the ``Params`` factory.
    loss: ``loss(gradients) -> scalar`` trains the state, given the encoder-gradient
      estimate (a list of tensors, differentiable with respect to the state) in the
      space ``loss_space`` names. A caller training several runs in one graph sums the
      runs' losses, so a loss must be a sum over the leading (copy) axes.
    loss_space: ``"encoder_parameters"``: the gradient of the batch-summed objective
      with respect to the encoder's parameters (RELAX's references); ``"logits"``: the
      per-example estimates ``[*batch, D]`` themselves, one per stochastic layer.
    learning_rate: Adam's learning rate; ``None``: the encoder's.
    beta1, beta2: Adam's decay rates (epsilon is the run's ``adam_epsilon``).
    scalars: ``scalars(state) -> {name: tensor}``: values worth logging, each of the
      shape a scalar parameter has (``[1]``, or ``[M, 1]`` for ``M`` stacked runs).
  """

  init: Callable[..., tf.Module]
  loss: Callable[[Sequence[tf.Tensor]], tf.Tensor] = sum_of_squares
  loss_space: str = "encoder_parameters"
  learning_rate: float | None = None
  beta1: float = 0.9
  beta2: float = 0.999
  scalars: Callable[[tf.Module], dict] | None = None


@dataclasses.dataclass(frozen=True)
class Estimator:
  """A registered estimator and everything the rest of the suite needs to know about it.

  Attributes:
    name: registry name (``<family>_<size>`` for a member of a family).
    fn: the estimator function (signature in this module's docstring).
    num_f_evals: evaluations of ``f`` per example and estimate (the unit of cost).
    num_grad_evals: of those, how many also backpropagate through ``f`` to its input
      (``grad_b f`` at a discrete point, or the derivative through a relaxed point):
      each costs about one more pass of ``f`` backwards.
    network_evals: ``num_latents -> `` evaluations of the estimator's own networks per
      example and estimate (RODEO: ``K (K-1) (D+1)``); ``None``: it has no network.
    needs: what it asks of ``f`` (``Needs``).
    bound_samples: ``K`` when it estimates the gradient of the ``K``-sample bound
      ``E[log mean_{k<=K} exp f(b_k)]``; 1 for ``E[f(b)]``.
    bound_estimator: True for estimators of a multi-sample bound (whatever its K): the
      caller then lets ``f`` depend on the encoder and adds the gradient of the output's
      ``objective`` (the direct term), and trains the decoder on that bound.
    trainable: its own parameters and how they are trained (``None``: it has none).
    num_samples: the K of its name: how many independent samples from q the decoder
      trains on under ``decoder_sample=k_independent`` (``None``: ``num_f_evals``).
    decoder_sample: fixes which samples train the decoder whatever the run's
      ``decoder_sample`` setting (``"estimator"``: its own samples, as every reference
      of RELAX and of the multi-sample bounds does); ``None``: the run setting decides.
    reference_decoder_reduction: how its reference code reduces the decoder's loss
      over the batch (``"mean"``, or ``"sum"`` where the loss is a per-example vector);
      the run setting ``decoder_reduction=as_reference`` follows it.
    label: display name; family, size: ``reinforce_loo`` and 3 for ``reinforce_loo_3``.
    description: one line for ``--help`` and reports; reference: the paper.
    variance_on_linear_f: where known in closed form, ``(s, num_bits) -> variance`` of
      bit 0's estimate for ``f(b) = sum_d b_d`` with every bit at probability ``s``
      (numpy, vectorised over ``s``); for ``f = delta * sum_d b_d + c`` multiply by
      ``delta^2``. The toy problem (PROTOCOL.md section 6) checks its Monte Carlo
      variances against it. ``None``: not known.
  """

  name: str
  fn: Callable[..., EstimatorOutput]
  num_f_evals: int
  needs: Needs = Needs.VALUES
  num_grad_evals: int = 0
  network_evals: Callable[[int], int] | None = None
  bound_samples: int = 1
  bound_estimator: bool = False
  trainable: Trainable | None = None
  num_samples: int | None = None
  decoder_sample: str | None = None
  reference_decoder_reduction: str = "mean"
  label: str = ""
  family: str = ""
  size: int | None = None
  description: str = ""
  reference: str = ""
  variance_on_linear_f: Callable[..., Any] | None = None

  @property
  def samples(self) -> int:
    """K: independent samples from q behind its estimate (``num_samples``, else ``num_f_evals``)."""
    return self.num_f_evals if self.num_samples is None else self.num_samples

  @property
  def has_state(self) -> bool:
    return self.trainable is not None

  def make_state(self, num_latents, context_dim=0, seed=(0, 0)):
    """A fresh state for one run (``None`` for an estimator without one)."""
    if self.trainable is None:
      return None
    return self.trainable.init(num_latents, context_dim, SeedParams(seed))

  def cost(self, num_latents):
    """Per example and estimate: ``{"f_evals", "grad_evals", "network_evals"}`` with ``D = num_latents``."""
    network = 0 if self.network_evals is None else int(self.network_evals(int(num_latents)))
    return dict(f_evals=self.num_f_evals, grad_evals=self.num_grad_evals, network_evals=network)

  def info(self, num_latents=None):
    """What ``config.json`` records about this estimator (contracts.results.ESTIMATOR_INFO_FIELDS).

    ``num_network_evals`` needs the model's ``num_latents`` (``None`` where not given).
    """
    network = self.cost(num_latents)["network_evals"] if num_latents is not None else None
    return dict(
      label=self.label or self.name,
      family=self.family or self.name,
      size=self.size,
      num_f_evals=self.num_f_evals,
      num_grad_evals=self.num_grad_evals,
      num_network_evals=network,
      bound_samples=self.bound_samples,
      num_samples=self.samples,
      needs=self.needs.value,
      trainable=self.has_state,
      description=self.description,
      reference=self.reference,
    )


def as_seed(seed) -> tf.Tensor:
  """An int ``s`` (meaning ``[s, 0]``) or a ``[2]`` int seed, as an integer tensor; refuses anything else.

  Stateless seeds are int32: an int outside the int32 range would wrap onto another
  seed's stream, and a float would be truncated, so both are refused.
  """
  if isinstance(seed, bool):
    raise ValueError(f"a seed must be an int or a pair of ints, got {seed!r}")
  if isinstance(seed, int):
    if not -MAX_INT32 - 1 <= seed <= MAX_INT32:
      raise ValueError(
        f"seed {seed} is outside the int32 range the random streams distinguish ({-MAX_INT32 - 1}..{MAX_INT32})"
      )
    return tf.constant([seed, 0], tf.int32)
  if isinstance(seed, (list, tuple)):
    if len(seed) != 2:
      raise ValueError(f"a seed pair has two ints, got {seed!r}")
    for s in seed:
      if isinstance(s, bool) or not isinstance(s, int) or not -MAX_INT32 - 1 <= s <= MAX_INT32:
        raise ValueError(f"a seed pair holds two int32 values, got {seed!r}")
    return tf.constant(seed, tf.int32)
  tensor = tf.convert_to_tensor(seed)
  if not tensor.dtype.is_integer:
    raise ValueError(f"a seed must be an int or a pair of ints, got {seed!r} ({tensor.dtype.name})")
  if tensor.shape.rank == 0:
    return tf.stack([tensor, tf.zeros_like(tensor)])
  if tensor.shape.rank != 1 or tensor.shape[0] != 2:
    raise ValueError(f"a seed must be an int or a [2] integer tensor, got shape {tensor.shape}")
  # Seeds derived in the graph (stateless_split, fold_in) are int64: kept as they are,
  # since a cast to int32 would name another stream.
  return tensor if tensor.dtype in (tf.int32, tf.int64) else tf.cast(tensor, tf.int64)


@tf.autograph.experimental.do_not_convert
def independent_samples(logits, noise, num_samples):
  """``num_samples`` independent draws ``b_k ~ Bernoulli(sigmoid(logits))``, stacked as ``[K, *batch, D]``."""
  u = noise.uniform(logits, num_samples)
  return tf.cast(u < tf.sigmoid(logits), logits.dtype)


def check_num_samples(family, num_samples, minimum=2, even=False, noun="samples"):
  """Raises ValueError for a family member of impossible size (``vimco_1``)."""
  if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < minimum:
    raise ValueError(f"{family} needs a whole number of {noun} >= {minimum}, got {num_samples!r}")
  if even and num_samples % 2:
    raise ValueError(f"{family} needs an even number of evaluations (pairs), got {num_samples}")
