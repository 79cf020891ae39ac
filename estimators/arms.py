"""ARMS: antithetic REINFORCE with K >= 2 negatively correlated samples (Dirichlet copula), ``arms_<K>``.

Per example and bit, with ``s = sigmoid(phi)``: ``u_1..u_K`` i.i.d. ``U(0,1)``,
``e_k = -log u_k``, ``d_k = e_k / sum_j e_j`` (a flat Dirichlet draw) and
``w_k = (1 - d_k)^(K-1)``: each ``w_k`` is uniform on (0, 1), and the ``w_k`` are
negatively dependent. The samples are ``b_k = 1[w'_k < s]`` with ``w'_k = w_k`` where
``s < 1/2`` and ``w'_k = 1 - w_k`` where ``s >= 1/2``. With ``P2(s)`` the probability
that two of the K bits are both 1,

    P2(s) = max(0, 2 s^(1/(K-1)) - 1)^(K-1)                       for s < 1/2,
    P2(s) = 2s - 1 + max(0, 2 (1-s)^(1/(K-1)) - 1)^(K-1)          for s >= 1/2,

the estimate is

    g = 1/(K-1) * sum_k (f_k - mean_j f_j) * (b_k - s) * s(1-s) / (s - P2(s)),

the leave-one-out REINFORCE estimate rescaled to undo the samples' negative
correlation. For K = 2 the pair is antithetic (``w_2 = 1 - w_1``) and ARMS is DisARM
in distribution. The reference implementations add 1e-6 to the denominator; this one
uses the exact factor (PROTOCOL.md section 8), so the K = 2 identity holds exactly.
The factor is computed from ``m = min(s, 1 - s) = sigmoid(-|phi|)``: ``s - P2(s) =
m - P2(m)`` on both sides of 1/2, so no difference of numbers near 1 is formed and
saturated bits (``s`` rounding to 1 in float32 beyond ``phi`` ~ 17) get the exact
factor ``sigmoid(|phi|)`` instead of 0/0.

Reference:
  Dimitriev, Zhou. "ARMS: Antithetic-REINFORCE-Multi-Sample Gradient for Binary
  Variables". ICML 2021. (PROTOCOL.md section 8.)
"""

import functools

import tensorflow as tf

from estimators.base import Estimator, EstimatorOutput, check_num_samples


def debias_factor(logits, num_samples):
  """``s (1-s) / (s - P2(s))`` from the logits, exact where ``s`` rounds to 0 or 1.

  For ``s >= 1/2``, ``P2(s) = 2s - 1 + P2(1 - s)``, so ``s - P2(s) = m - P2(m)`` with
  ``m = min(s, 1 - s)``; ``P2(m) = 0`` for ``m <= 2^-(K-1)`` (every saturated bit), where
  the factor is ``s (1-s) / m = sigmoid(|phi|)``.
  """
  k1 = float(num_samples - 1)
  m = tf.sigmoid(-tf.abs(logits))
  p2 = tf.pow(tf.nn.relu(2.0 * tf.pow(m, 1.0 / k1) - 1.0), k1)
  correlated = p2 > 0.0  # only where m > 2^-(K-1): never an underflowed m
  ratio = tf.where(correlated, m, 1.0) / tf.where(correlated, m - p2, 1.0)
  return tf.sigmoid(tf.abs(logits)) * ratio


def copula_samples(logits, noise, num_samples):
  """The K negatively correlated samples ``[K, *batch, D]`` (the module docstring)."""
  probs = tf.sigmoid(logits)
  u = noise.uniform(logits, num_samples, open_interval=True)
  e = -tf.math.log(u)
  d = e / tf.reduce_sum(e, axis=0, keepdims=True)
  w = tf.pow(1.0 - d, float(num_samples - 1))
  w = tf.where(probs < 0.5, w, 1.0 - w)
  return tf.cast(w < probs, logits.dtype)


def arms(f, logits, noise, state=None, context=None, num_samples=2):
  del state, context
  check_num_samples("arms", num_samples)
  probs = tf.sigmoid(logits)
  bits = copula_samples(logits, noise, num_samples)  # [K, *batch, D]
  f_values = f(bits)  # [K, *batch]
  centred = (f_values - tf.reduce_mean(f_values, axis=0, keepdims=True))[..., tf.newaxis]
  debias = debias_factor(logits, num_samples)
  grad = tf.reduce_sum(centred * (bits - probs), axis=0) * debias / float(num_samples - 1)
  return EstimatorOutput(grad=grad, bits=bits, f_values=f_values, num_independent=0)


def make(num_samples: int) -> Estimator:
  check_num_samples("arms", num_samples)
  return Estimator(
    name=f"arms_{num_samples}",
    fn=functools.partial(arms, num_samples=num_samples),
    num_f_evals=num_samples,
    label="ARMS",
    family="arms",
    size=num_samples,
    description=f"ARMS, {num_samples} samples from a Dirichlet copula",
    reference="Dimitriev & Zhou, ICML 2021",
  )
