"""Seeds for stacked members: ``[2]`` for one model, ``[M, 2]`` for ``M`` members initialised side by side."""

import tensorflow as tf


def split(seed, num):
  """``num`` new seeds: ``[num, 2]`` from a ``[2]`` seed, ``[num, M, 2]`` from ``[M, 2]`` seeds (per member)."""
  seed = tf.convert_to_tensor(seed)
  if seed.shape.rank == 1:
    return tf.random.experimental.stateless_split(seed, num)
  return tf.stack([tf.random.experimental.stateless_split(s, num) for s in tf.unstack(seed)], axis=1)
