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

# The suite's graph code with no Python control flow on tensors (here, the models, the
# engine's helpers, optimisers, noise streams, binarisation) is marked do_not_convert:
# autograph has nothing to convert in it, and converting it anyway cost ~0.1-0.5 CPU-s per
# function in every process that traces a step (benchmarks/bench_startup.py). Estimators
# themselves stay converted, so a plugin may use Python control flow on tensors.


@tf.autograph.experimental.do_not_convert
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


@tf.autograph.experimental.do_not_convert
def dense(x, w, b):
  """``matmul(x, w) + b`` (``b`` ``[1, k]``, or ``[M, 1, k]`` with copies)."""
  return matmul(x, w) + b


@tf.autograph.experimental.do_not_convert
def copies_first(x, w):
  """``x`` ``[..., M, B, n]`` as ``[M, ..., B, n]`` when ``w`` has copies (rank 3), else ``x`` itself.

  Networks applied to many points per example (RODEO's control network) keep their
  large activations copy-first: the per-copy weight gradients are then reductions
  over adjacent axes and batched products, not reductions around a middle axis.
  """
  if w.shape.rank == 2:
    return x
  rank = x.shape.rank
  return tf.transpose(x, [rank - 3] + list(range(rank - 3)) + [rank - 2, rank - 1])


@tf.autograph.experimental.do_not_convert
def copies_back(x, w):
  """The inverse of ``copies_first``: ``[M, ..., B, n]`` -> ``[..., M, B, n]``."""
  if w.shape.rank == 2:
    return x
  rank = x.shape.rank
  return tf.transpose(x, list(range(1, rank - 2)) + [0, rank - 2, rank - 1])


@tf.autograph.experimental.do_not_convert
def broadcast_weights(w, rank):
  """Weights ``[n, k]`` or ``[M, n, k]`` shaped to broadcast against a copy-first ``[M, ..., n, k]`` of ``rank``."""
  if w.shape.rank == 2:
    return w
  return tf.reshape(w, tf.concat([tf.shape(w)[:1], tf.ones([rank - 3], tf.int32), tf.shape(w)[1:]], axis=0))


@tf.autograph.experimental.do_not_convert
def dense_copies_first(x, w, b):
  """``dense`` for a copy-first ``x`` ``[M, ..., n]`` (copies) or any ``x`` ``[..., n]`` (no copies)."""
  if w.shape.rank == 2:
    return dense(x, w, b)
  shape = tf.shape(x)
  flat = tf.reshape(x, tf.stack([shape[0], -1, shape[-1]]))
  product = tf.matmul(flat, w) + b  # [M, rows, k]
  return tf.reshape(product, tf.concat([shape[:-1], tf.shape(w)[-1:]], axis=0))
