"""A broken estimator, registered at run time, whose estimate is NaN: its run must fail alone."""

import tensorflow as tf

import estimators
from estimators.base import Estimator, EstimatorOutput, independent_samples


def nan_gradient(f, logits, noise, state=None, context=None):
  bits = independent_samples(logits, noise, 2)
  f_values = f(bits)
  return EstimatorOutput(grad=tf.fill(tf.shape(logits), float("nan")), bits=bits, f_values=f_values, num_independent=2)


ESTIMATOR = estimators.register(
  Estimator(name="nan_gradient", fn=nan_gradient, num_f_evals=2, description="always NaN (a test estimator)")
)
