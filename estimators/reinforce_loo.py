"""REINFORCE with a leave-one-out baseline (LOORF), ``reinforce_loo_<K>``.

With ``K`` independent draws ``b_1..b_K ~ Bernoulli(sigmoid(phi))``:

    g = 1/K * sum_k (f(b_k) - 1/(K-1) * sum_{j != k} f(b_j)) * (b_k - sigmoid(phi))

``b - sigmoid(phi)`` is ``d log q(b) / d phi``; the baseline of draw ``k`` uses only
the other draws, so it is independent of ``b_k`` and the estimate stays unbiased.
The paper's baseline uses ``K = 2`` (``reinforce_loo``), the cost of ARM and DisARM.

References:
  Kool, van Hoof, Welling. "Buy 4 REINFORCE samples, get a baseline for free!"
  ICLR Deep RL meets Structured Prediction workshop, 2019.
  Dong, Mnih, Tucker. "DisARM". NeurIPS 2020, section 2 (PROTOCOL.md section 2).
"""

import functools

import tensorflow as tf

from estimators.base import Estimator, EstimatorOutput, check_num_samples, independent_samples


def leave_one_out_mean(values):
  """``mean_{j != k} values_j`` for every ``k`` along axis 0 (K >= 2)."""
  k = tf.cast(tf.shape(values)[0], values.dtype)
  return (tf.reduce_sum(values, axis=0, keepdims=True) - values) / (k - 1.0)


def reinforce_loo(f, logits, noise, state=None, context=None, num_samples=2):
  del state, context  # no trainable parameters, no side information
  check_num_samples("reinforce_loo", num_samples)
  probs = tf.sigmoid(logits)
  bits = independent_samples(logits, noise, num_samples)  # [K, *batch, D]
  f_values = f(bits)  # [K, *batch]
  signal = (f_values - leave_one_out_mean(f_values))[..., tf.newaxis]
  grad = tf.reduce_mean(signal * (bits - probs), axis=0)
  return EstimatorOutput(grad=grad, bits=bits, f_values=f_values, num_independent=num_samples)


def variance_on_linear_f(s, num_bits):
  """Var of bit 0's estimate (K = 2) for ``f = sum_d b_d``, all bits at ``s`` (derived in ``experiments/toy.py``)."""
  w = 2.0 * s * (1.0 - s)
  return w * (1.0 + (num_bits - 2) * w) / 4.0


def make(num_samples: int = 2) -> Estimator:
  check_num_samples("reinforce_loo", num_samples)
  return Estimator(
    name="reinforce_loo" if num_samples == 2 else f"reinforce_loo_{num_samples}",
    fn=functools.partial(reinforce_loo, num_samples=num_samples),
    num_f_evals=num_samples,
    label="REINFORCE LOO",
    family="reinforce_loo",
    size=num_samples,
    description=f"REINFORCE with leave-one-out baseline, K={num_samples} samples",
    reference="Kool, van Hoof & Welling, 2019",
    variance_on_linear_f=variance_on_linear_f if num_samples == 2 else None,
  )


ESTIMATOR = make(2)
