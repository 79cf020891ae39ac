"""A planted error: DisARM whose estimate is scaled by 0.97 (3% bias). The check must call it biased."""

import tensorflow as tf

from estimators.arm import antithetic_pairs
from estimators.base import Estimator, EstimatorOutput


def disarm_scaled(f, logits, noise, state=None, context=None):
  del state, context
  _, bits = antithetic_pairs(logits, noise)
  b, b_tilde = bits[:1], bits[1:]
  f_values = f(bits)
  diff = (f_values[1:] - f_values[:1])[..., tf.newaxis]
  grad = 0.5 * diff * (1.0 - 2.0 * b) * tf.abs(b - b_tilde) * tf.sigmoid(tf.abs(logits))
  return EstimatorOutput(grad=0.97 * grad[0], bits=bits, f_values=f_values, num_independent=1)


ESTIMATOR = Estimator(name="disarm_scaled", fn=disarm_scaled, num_f_evals=2, label="DisARM x 0.97 (planted error)")
