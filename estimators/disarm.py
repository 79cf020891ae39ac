"""DisARM: ARM with the augmentation noise integrated out; ``disarm_<K>`` averages K/2 pairs.

Same ``u``, ``b = 1[u < sigmoid(phi)]``, ``b~ = 1[u > 1 - sigmoid(phi)]`` as ARM.
Conditioning ARM on the pair ``(b, b~)`` and integrating ``u`` out gives, per bit d,

    g_d = 1/2 * (f(b~) - f(b)) * (-1)^{b_d} * 1[b_d != b~_d] * sigmoid(|phi_d|)

Bits on which the pair agrees contribute nothing. Being the Rao-Blackwellisation of
ARM, its variance is never larger than ARM's; same cost (2 evaluations).
``disarm_<K>`` (K even) is the mean of K/2 such estimates from independent pairs, K
evaluations (PROTOCOL.md section 8); ``disarm`` is ``disarm_2``.

Reference:
  Dong, Mnih, Tucker. "DisARM: An Antithetic Gradient Estimator for Binary
  Latent Variables". NeurIPS 2020, eq. (5). (PROTOCOL.md section 2.)
"""

import functools

import numpy as np
import tensorflow as tf

from estimators.arm import antithetic_pairs
from estimators.base import Estimator, EstimatorOutput, check_num_samples


def disarm(f, logits, noise, state=None, context=None, num_pairs=1):
  del state, context
  _, bits = antithetic_pairs(logits, noise, num_pairs)  # [2m, *batch, D]: b_1..b_m, b~_1..b~_m
  b, b_tilde = bits[:num_pairs], bits[num_pairs:]
  f_values = f(bits)
  diff = (f_values[num_pairs:] - f_values[:num_pairs])[..., tf.newaxis]  # f(b~_i) - f(b_i)
  sign = 1.0 - 2.0 * b  # (-1)^{b_d}
  disagree = tf.abs(b - b_tilde)  # 1[b_d != b~_d]
  per_pair = 0.5 * diff * sign * disagree * tf.sigmoid(tf.abs(logits))
  return EstimatorOutput(grad=tf.reduce_mean(per_pair, axis=0), bits=bits, f_values=f_values, num_independent=num_pairs)


def variance_on_linear_f(s, num_bits):
  """Var of bit 0's estimate (one pair) for ``f = sum_d b_d``, all bits at ``s`` (derived in ``experiments/toy.py``)."""
  lo = np.minimum(s, 1.0 - s)
  hi = 1.0 - lo
  return hi**2 * lo * (hi - 0.5 + (num_bits - 1) * lo)


def make(num_evals: int = 2) -> Estimator:
  check_num_samples("disarm", num_evals, minimum=2, even=True)
  pairs = num_evals // 2
  return Estimator(
    name="disarm" if num_evals == 2 else f"disarm_{num_evals}",
    fn=functools.partial(disarm, num_pairs=pairs),
    num_f_evals=num_evals,
    label="DisARM",
    family="disarm",
    size=num_evals,
    description=f"DisARM, {pairs} antithetic pair{'s' if pairs > 1 else ''}, {num_evals} evaluations",
    reference="Dong, Mnih & Tucker, NeurIPS 2020",
    variance_on_linear_f=variance_on_linear_f if pairs == 1 else None,
  )


ESTIMATOR = make(2)
