"""Small TensorFlow operations shared by models and estimators (which import nothing of each other).

``dense(x, w, b)`` is the product every network of the suite uses. It folds the
leading sample axes of ``x`` into the rows of one large product, and handles weights
with a leading copy axis (runs stacked in one graph) as a batch of products without
broadcasting. Both matter: one large product is faster than many and gives the
weight gradient without a per-sample intermediate, and TensorFlow 2.18's oneDNN
kernel for a broadcasting batched product (``[S, M, B, n] x [M, n, k]``) corrupts
memory on CPU (a crash, seen with B = 20).
"""

import tensorflow as tf


def matmul(x, w):
  """``x @ w`` for ``x`` ``[..., n]``: ``w`` ``[n, k]``, or ``[M, n, k]`` with ``M`` aligned with axis -3 of ``x``.

  With copies, ``x`` is ``[..., M, B, n]`` and copy ``m`` of the weights acts on
  ``x[..., m, :, :]``; the result is ``[..., M, B, k]``.
  """
  rank = x.shape.rank
  if w.shape.rank == 2:
    if rank == 2:
      return tf.matmul(x, w)
    shape = tf.shape(x)
    flat = tf.reshape(x, [-1, shape[-1]])
    return tf.reshape(tf.matmul(flat, w), tf.concat([shape[:-1], tf.shape(w)[-1:]], axis=0))
  if rank == 3:
    return tf.matmul(x, w)
  lead = rank - 3
  perm = [lead] + list(range(lead)) + [lead + 1, lead + 2]
  moved = tf.transpose(x, perm)  # [M, ..., B, n]
  moved_shape = tf.shape(moved)
  flat = tf.reshape(moved, tf.stack([moved_shape[0], -1, moved_shape[-1]]))
  product = tf.matmul(flat, w)  # [M, rows, k]
  product = tf.reshape(product, tf.concat([moved_shape[:-1], tf.shape(w)[-1:]], axis=0))
  inverse = [0] * rank
  for i, p in enumerate(perm):
    inverse[p] = i
  return tf.transpose(product, inverse)


def dense(x, w, b):
  """``matmul(x, w) + b`` (``b`` ``[1, k]``, or ``[M, 1, k]`` with copies)."""
  return matmul(x, w) + b
