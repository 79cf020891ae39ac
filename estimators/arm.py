"""ARM: Augment-REINFORCE-Merge.

One ``u ~ U(0,1)^D`` gives the antithetic pair ``b = 1[u < sigmoid(phi)]`` and
``b~ = 1[u > 1 - sigmoid(phi)]``, and

    g = (f(b~) - f(b)) * (u - 1/2)

(every bit shares the scalar ``f(b~) - f(b)``). Two evaluations of ``f``.

Reference:
  Yin, Zhou. "ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary
  Networks". ICLR 2019. (PROTOCOL.md section 2.)
"""

import numpy as np
import tensorflow as tf

from estimators.base import Estimator, EstimatorOutput


def antithetic_pairs(logits, noise, num_pairs=None):
  """The uniforms ``u`` and the pairs ``(b, b~)`` used by ARM and DisARM.

  One pair (``num_pairs=None``): ``u`` ``[*batch, D]`` and bits ``[2, *batch, D]`` =
  ``[b, b~]``. ``m`` pairs: ``u`` ``[m, *batch, D]`` and bits ``[2m, *batch, D]`` =
  ``[b_1 .. b_m, b~_1 .. b~_m]``, each pair from its own ``u``.
  """
  probs = tf.sigmoid(logits)
  u = noise.uniform(logits, num_pairs, open_interval=True)
  b = tf.cast(u < probs, logits.dtype)
  b_tilde = tf.cast(u > 1.0 - probs, logits.dtype)
  if num_pairs is None:
    return u, tf.stack([b, b_tilde], axis=0)
  return u, tf.concat([b, b_tilde], axis=0)


def arm(f, logits, noise, state=None, context=None):
  del state, context
  u, bits = antithetic_pairs(logits, noise)
  f_values = f(bits)  # [2, *batch]
  diff = (f_values[1] - f_values[0])[..., tf.newaxis]  # f(b~) - f(b)
  grad = diff * (u - 0.5)
  return EstimatorOutput(grad=grad, bits=bits, f_values=f_values, num_independent=1)


def variance_on_linear_f(s, num_bits):
  """Var of bit 0's estimate for ``f = sum_d b_d``, all bits at ``s`` (derived in ``experiments/toy.py``)."""
  lo = np.minimum(s, 1.0 - s)
  hi = 1.0 - lo
  return lo / 2.0 - lo**2 + 2.0 * lo**3 / 3.0 - (lo * hi) ** 2 + (num_bits - 1) * lo / 6.0


ESTIMATOR = Estimator(
  name="arm",
  fn=arm,
  num_f_evals=2,
  label="ARM",
  description="ARM, antithetic pair, 2 evaluations",
  reference="Yin & Zhou, ICLR 2019",
  variance_on_linear_f=variance_on_linear_f,
)
