"""A broken plugin: its estimate is averaged over the batch (wrong shape). The check must say it cannot run it."""

import tensorflow as tf

from estimators.base import Estimator, EstimatorOutput, independent_samples


def batch_mean(f, logits, noise, state=None, context=None):
  del state, context
  bits = independent_samples(logits, noise, 2)
  f_values = f(bits)
  signal = (f_values[0] - f_values[1])[..., tf.newaxis] * (bits[0] - bits[1]) / 2.0
  return EstimatorOutput(grad=tf.reduce_mean(signal, axis=0), bits=bits, f_values=f_values, num_independent=2)


ESTIMATOR = Estimator(name="batch_mean_loo", fn=batch_mean, num_f_evals=2)
