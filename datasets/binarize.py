"""Dynamic binarisation (PROTOCOL.md section 4): each pixel ~ Bernoulli(intensity)."""

import tensorflow as tf


@tf.autograph.experimental.do_not_convert
def binarize(intensities, seed):
  """Draws x ~ Bernoulli(intensities) per pixel, as float32 0./1. of the same shape.

  `seed` is a shape-[2] integer tensor (int32 or int64) for tf.random.stateless_uniform,
  so the draw is a pure function of (intensities, seed): it is reproducible and works
  inside tf.function and under XLA (jit_compile=True). The Philox algorithm is pinned
  (what auto_select picks on CPU/GPU) so the choice does not depend on the device.
  Note: TF 2.18's XLA lowering of stateless RNG produces a different (equally valid)
  stream than the eager / plain tf.function kernels, so for one seed a jit-compiled
  call draws different pixels than an uncompiled one; each is deterministic on its own.

  u ~ U[0, 1) and x = [u < p] gives P(x = 1) = p exactly, with p = 0 -> always 0 and
  p = 1 -> always 1.
  """
  p = tf.convert_to_tensor(intensities)
  if p.dtype != tf.float32:
    p = tf.cast(p, tf.float32)
  u = tf.random.stateless_uniform(tf.shape(p), seed=seed, dtype=tf.float32, alg="philox")
  return tf.cast(u < p, tf.float32)
