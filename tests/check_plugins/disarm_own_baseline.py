"""A planted error: DisARM whose baseline for f(b) depends on b itself.

    g = 1/2 ((f(b~) - f(b)) - c(b)) (-1)^b 1[b != b~] sigmoid(|phi|),   c(b) = f(b) / 2

A baseline is unbiased only if it is independent of the sample it multiplies; this
one is not, and the estimate's mean is 5/4 of the gradient. The check must call it biased.
"""

import tensorflow as tf

from estimators.arm import antithetic_pairs
from estimators.base import Estimator, EstimatorOutput


def disarm_own_baseline(f, logits, noise, state=None, context=None):
  del state, context
  _, bits = antithetic_pairs(logits, noise)
  b, b_tilde = bits[0], bits[1]
  f_values = f(bits)
  baseline = 0.5 * f_values[0]
  diff = (f_values[1] - f_values[0] - baseline)[..., tf.newaxis]
  grad = 0.5 * diff * (1.0 - 2.0 * b) * tf.abs(b - b_tilde) * tf.sigmoid(tf.abs(logits))
  return EstimatorOutput(grad=grad, bits=bits, f_values=f_values, num_independent=1)


ESTIMATOR = Estimator(
  name="disarm_own_baseline", fn=disarm_own_baseline, num_f_evals=2, label="DisARM, own-sample baseline (planted)"
)
