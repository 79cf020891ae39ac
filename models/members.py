"""Per-member stateless random streams, for runs stacked along a leading axis.

Several independent runs ("members") can be trained in one graph by giving
every parameter a leading member axis (issue 5). For each member to be exactly
the run it would have been alone, each must draw its noise from its own seed,
with the shape a single run would use. The helpers here accept either one seed
(shape ``[2]``: a single run, unchanged behaviour) or one seed per member
(shape ``[M, 2]``): then the member axis of the requested shape is removed,
member ``m`` draws from ``seed[m]`` exactly what a single run with that seed
draws, and the draws are stacked back along the member axis. ``M`` must be
known when the graph is built (it is: it is the number of stacked runs).
"""

import tensorflow as tf


def is_per_member(seed):
  """True for a ``[M, 2]`` stack of seeds, False for one ``[2]`` seed."""
  rank = tf.convert_to_tensor(seed).shape.rank
  if rank not in (1, 2):
    raise ValueError(f"a seed must have shape [2] or [members, 2], got rank {rank}")
  return rank == 2


def split(seed, num):
  """``num`` new seeds: ``[num, 2]`` from a ``[2]`` seed, ``[num, M, 2]`` from ``[M, 2]`` seeds."""
  seed = tf.convert_to_tensor(seed)
  if not is_per_member(seed):
    return tf.random.experimental.stateless_split(seed, num)
  return tf.stack([tf.random.experimental.stateless_split(s, num) for s in tf.unstack(seed)], axis=1)


def fold_in(seed, value):
  """``stateless_fold_in`` applied to one seed or to each member's seed."""
  seed = tf.convert_to_tensor(seed)
  value = tf.cast(value, tf.int64)
  if not is_per_member(seed):
    return tf.random.experimental.stateless_fold_in(seed, value)
  return tf.stack([tf.random.experimental.stateless_fold_in(s, value) for s in tf.unstack(seed)])


def uniform(shape, seed, member_axis=0, minval=0.0, maxval=1.0, dtype=tf.float32, alg="auto_select"):
  """``stateless_uniform(shape)``; with ``[M, 2]`` seeds, one independent draw per member.

  ``member_axis`` names the axis of ``shape`` that indexes members (its size must be
  ``M``); it is ignored for a single ``[2]`` seed.
  """
  seed = tf.convert_to_tensor(seed)
  if not is_per_member(seed):
    return tf.random.stateless_uniform(shape, seed, minval, maxval, dtype=dtype, alg=alg)
  shape = tf.convert_to_tensor(shape, tf.int32)
  member_shape = tf.concat([shape[:member_axis], shape[member_axis + 1:]], axis=0)
  draws = [tf.random.stateless_uniform(member_shape, s, minval, maxval, dtype=dtype, alg=alg)
           for s in tf.unstack(seed)]
  return tf.stack(draws, axis=member_axis)
