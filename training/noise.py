"""Noise sources and parameter factories for runs stacked in one graph.

A ``Trainer`` trains ``M >= 1`` runs of one cell together; every tensor of a stack
carries a leading member axis, and member ``m`` must draw exactly what a lone run
with its seed draws. Estimators and models never see that axis: estimators draw
through the ``Noise`` interface and build their parameters through the ``Params``
interface (``estimators/base.py``), and the classes here implement both for a stack:
``MemberNoise.uniform(like)`` draws one stream per member (``like``'s axis 0 is the
member axis) with the shape a lone run would use, and ``MemberParams.variable``
stacks each member's lone initial value. ``noise_for`` and ``params_for`` give the
lone-run classes for one seed, so one code path serves both.
"""

import tensorflow as tf

from estimators import SeedNoise, SeedParams
from estimators.base import ALGORITHM


def _per_member(seeds, fn):
  return tf.stack([fn(s) for s in tf.unstack(seeds)])


class MemberNoise:
  """``Noise`` for ``M`` stacked runs: ``seeds`` ``[M, 2]``, one stateless stream per member."""

  def __init__(self, seeds):
    self.seeds = tf.convert_to_tensor(seeds)

  @tf.autograph.experimental.do_not_convert
  def uniform(self, like, num_samples=None, open_interval=False):
    # like: [M, ...]; member m draws the shape a lone run draws, [num_samples?, ...].
    member_shape = tf.shape(like)[1:]
    if num_samples is not None:
      member_shape = tf.concat([[num_samples], member_shape], axis=0)
    low, high = (SeedNoise.OPEN_LOW, SeedNoise.OPEN_HIGH) if open_interval else (0.0, 1.0)
    draws = [
      tf.random.stateless_uniform(member_shape, s, low, high, dtype=like.dtype, alg=ALGORITHM)
      for s in tf.unstack(self.seeds)
    ]
    return tf.stack(draws, axis=0 if num_samples is None else 1)

  @tf.autograph.experimental.do_not_convert
  def split(self, num):
    split = tf.stack([tf.random.experimental.stateless_split(s, num) for s in tf.unstack(self.seeds)], axis=1)
    return [MemberNoise(s) for s in tf.unstack(split)]

  @tf.autograph.experimental.do_not_convert
  def fold_in(self, value):
    value = tf.cast(value, tf.int64)
    return MemberNoise(_per_member(self.seeds, lambda s: tf.random.experimental.stateless_fold_in(s, value)))


class MemberParams:
  """``Params`` for ``M`` stacked runs: each variable is the stack of the members' lone initial values."""

  def __init__(self, seeds):
    self.seeds = tf.convert_to_tensor(seeds, tf.int32)

  def variable(self, init, name):
    return tf.Variable(_per_member(self.seeds, init), name=name)

  def split(self, num):
    split = tf.stack([tf.random.experimental.stateless_split(s, num) for s in tf.unstack(self.seeds)], axis=1)
    return [MemberParams(s) for s in tf.unstack(split)]


@tf.autograph.experimental.do_not_convert
def noise_for(seeds, stacked):
  """``MemberNoise`` for ``[M, 2]`` seeds of a stack, ``SeedNoise`` for the ``[2]`` seed of a lone run."""
  return MemberNoise(seeds) if stacked else SeedNoise(seeds)


def params_for(seeds, stacked):
  return MemberParams(seeds) if stacked else SeedParams(seeds)


@tf.autograph.experimental.do_not_convert
def fold(seeds, *values):
  """Repeated ``stateless_fold_in`` of ``[2]`` or (per member) ``[M, 2]`` seeds."""
  seeds = tf.convert_to_tensor(seeds)
  for v in values:
    v = tf.cast(v, tf.int64)
    if seeds.shape.rank == 1:
      seeds = tf.random.experimental.stateless_fold_in(seeds, v)
    else:
      seeds = _per_member(seeds, lambda s, v=v: tf.random.experimental.stateless_fold_in(s, v))
  return seeds


@tf.autograph.experimental.do_not_convert
def split(seeds, num):
  """``stateless_split`` of ``[2]`` seeds (-> ``[num, 2]``) or per member of ``[M, 2]`` (-> ``[num, M, 2]``)."""
  seeds = tf.convert_to_tensor(seeds)
  if seeds.shape.rank == 1:
    return tf.random.experimental.stateless_split(seeds, num)
  return tf.stack([tf.random.experimental.stateless_split(s, num) for s in tf.unstack(seeds)], axis=1)


@tf.autograph.experimental.do_not_convert
def uniform_int(shape, seeds, maxval, stacked):
  """Uniform ints in ``[0, maxval)`` of ``shape`` (its axis 0 the members when stacked), one stream per member."""
  if not stacked:
    return tf.random.stateless_uniform(shape, seeds, 0, maxval, dtype=tf.int32, alg=ALGORITHM)
  return tf.stack(
    [tf.random.stateless_uniform(shape[1:], s, 0, maxval, dtype=tf.int32, alg=ALGORITHM) for s in tf.unstack(seeds)]
  )
