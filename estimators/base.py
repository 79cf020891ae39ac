"""The one signature every gradient estimator shares, and the public entry point.

An estimator is a function

    estimator_fn(f, logits, seed, state=None, context=None) -> EstimatorOutput

estimating ``d/d logits E_{b ~ Bernoulli(sigmoid(logits))}[f(b)]``.

* ``f`` maps bits ``b`` of shape ``[S, *batch, D]`` (``S`` stacked draws, 0./1.
  floats; relaxation-based estimators also pass values in (0, 1)) to values of
  shape ``[S, *batch]``. ``f`` is treated as a black box of ``b``: if it also
  depends on ``logits`` (the ELBO's ``-log q`` term) that dependence is the
  caller's business (its expected gradient is zero; PROTOCOL.md section 1), and
  the caller should stop gradients through it.
* ``logits`` has shape ``[*batch, D]``; the estimate has the same shape, one
  value per example and bit (nothing is averaged over the batch).
* ``seed`` is a ``[2]`` int32 seed for the stateless ``tf.random`` ops (or ``[M, 2]``
  seeds when the first batch axis stacks ``M`` independent runs: each member then
  draws exactly the noise a lone run with its seed would; ``models.members``), so that an
  estimate is a pure function of its inputs (reproducible and resumable; the
  same eagerly and in ``tf.function``; under XLA, TF 2.18 draws a different but
  equally valid and equally deterministic stream for the same seed).
* ``state`` carries trainable parameters of the estimator itself (RELAX's
  temperature, scale and control network), built by ``Estimator.make_state``.
* ``context`` is side information for such parameters (the encoder input), with
  shape ``[*batch, C]``.

The returned ``EstimatorOutput`` also carries the bits at which ``f`` was
evaluated and the values ``f`` took there, so that a caller can train the
parameters of ``f`` (a decoder) from the same evaluations without calling ``f``
again.
"""

import dataclasses
from typing import Callable, NamedTuple, Optional

import tensorflow as tf

from models import members


class EstimatorOutput(NamedTuple):
  """What every estimator returns.

  Attributes:
    grad: ``[*batch, D]`` estimate of ``d E[objective] / d logits`` through the
      sampling distribution (``f`` held fixed as a function of ``b``).
    bits: ``[S, *batch, D]`` the discrete samples ``f`` was evaluated at.
    f_values: ``[S, *batch]`` ``f`` at those samples.
    objective: ``[*batch]`` the objective's value at these samples, a
      differentiable function of ``f_values``; ``None`` means ``mean_S f_values``
      (single-sample estimators). Multi-sample estimators return their bound
      ``log mean exp f``: its gradient with respect to ``f``'s own parameters is
      the "direct" part of their gradient (PROTOCOL.md section 2, VIMCO).
  """
  grad: tf.Tensor
  bits: tf.Tensor
  f_values: tf.Tensor
  objective: Optional[tf.Tensor] = None

  def objective_value(self):
    return tf.reduce_mean(self.f_values, axis=0) if self.objective is None else self.objective


@dataclasses.dataclass(frozen=True)
class Estimator:
  """A registered estimator.

  Attributes:
    name: registry name.
    fn: the estimator function (signature in this module's docstring).
    num_f_evals: evaluations of ``f`` at discrete points per estimate (the
      paper's unit of cost).
    make_state: ``make_state(num_latents, context_dim, seed) -> tf.Module`` for
      estimators with trainable parameters of their own; ``None`` otherwise. The
      training loop trains such parameters to minimise the variance of the
      encoder gradient (sum of its squares).
    description: one line for ``--help`` and reports.
    objective_samples: ``K`` when the estimator targets the ``K``-sample bound
      ``E[log mean_{k<=K} exp f(b_k)]`` (b_k independent draws) rather than
      ``E[f(b)]`` (``K = 1``, the default). Callers then let ``f`` depend on the
      encoder directly and add the gradient of ``objective`` (the direct term).
    eval_bound_samples: the multi-sample bound the training loop also reports
      for this estimator (its training K, or its number of ``f`` evaluations when
      comparing at equal cost); ``None`` for single-sample estimators.
  """
  name: str
  fn: Callable[..., EstimatorOutput]
  num_f_evals: int
  make_state: Optional[Callable[..., tf.Module]] = None
  description: str = ""
  objective_samples: int = 1
  eval_bound_samples: Optional[int] = None

  @property
  def multi_sample(self) -> bool:
    return self.objective_samples > 1 or self.eval_bound_samples is not None

  @property
  def has_state(self) -> bool:
    return self.make_state is not None


def as_seed(seed) -> tf.Tensor:
  """Accepts an int, a [2] seed or [M, 2] per-member seeds; returns int32 seed(s)."""
  seed = tf.convert_to_tensor(seed)
  if seed.shape.rank == 0:
    return tf.stack([tf.cast(seed, tf.int32), tf.constant(0, tf.int32)])
  if seed.shape.rank not in (1, 2) or seed.shape[-1] != 2:
    raise ValueError(f"seed must be an int, a [2] or a [members, 2] integer tensor, got shape {seed.shape}")
  return tf.cast(seed, tf.int32)


def uniform_noise(shape, seed, dtype=tf.float32, member_axis=0):
  """U(0, 1) noise kept strictly inside (0, 1) so that log u and log(1-u) are finite.

  With ``[M, 2]`` per-member seeds (stacked runs, ``models.members``), axis
  ``member_axis`` of ``shape`` indexes the members and each draws its own stream.
  """
  tiny = 1e-6 if dtype == tf.float32 else 1e-12
  return members.uniform(shape, seed, member_axis, minval=tiny, maxval=1.0 - tiny, dtype=dtype)


def independent_samples(logits, seed, num_samples):
  """``num_samples`` independent draws ``b_k ~ Bernoulli(sigmoid(logits))``, stacked as ``[K, *batch, D]``."""
  shape = tf.concat([[num_samples], tf.shape(logits)], axis=0)
  u = members.uniform(shape, seed, member_axis=1, dtype=logits.dtype)
  return tf.cast(u < tf.sigmoid(logits), logits.dtype)
