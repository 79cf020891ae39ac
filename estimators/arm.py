"""ARM: Augment-REINFORCE-Merge.

One ``u ~ U(0,1)^D`` gives the antithetic pair ``b = 1[u < sigmoid(phi)]`` and
``b~ = 1[u > 1 - sigmoid(phi)]``, and

    g = (f(b~) - f(b)) * (u - 1/2)

(every bit shares the scalar ``f(b~) - f(b)``). Two evaluations of ``f``.

Reference:
  Yin, Zhou. "ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary
  Networks". ICLR 2019. (PROTOCOL.md section 2.)
"""

import tensorflow as tf

from estimators.base import Estimator, EstimatorOutput, uniform_noise


def antithetic_pair(logits, seed):
  """The shared ``u`` and the pair ``(b, b~)`` used by ARM and DisARM, stacked as [2, ...]."""
  probs = tf.sigmoid(logits)
  u = uniform_noise(tf.shape(logits), seed, logits.dtype)
  b = tf.cast(u < probs, logits.dtype)
  b_tilde = tf.cast(u > 1.0 - probs, logits.dtype)
  return u, tf.stack([b, b_tilde], axis=0)


def arm(f, logits, seed, state=None, context=None):
  del state, context
  u, bits = antithetic_pair(logits, seed)
  f_values = f(bits)                                   # [2, *batch]
  diff = (f_values[1] - f_values[0])[..., tf.newaxis]  # f(b~) - f(b)
  grad = diff * (u - 0.5)
  return EstimatorOutput(grad=grad, bits=bits, f_values=f_values)


ESTIMATOR = Estimator(name="arm", fn=arm, num_f_evals=2,
                      description="ARM (Yin & Zhou 2019), antithetic pair, 2 evaluations")
