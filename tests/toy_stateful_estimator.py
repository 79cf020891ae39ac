"""A stateful estimator in one file, registered at run time: the README's example, tested end to end.

REINFORCE with two samples and a learned constant baseline ``c`` added to the
leave-one-out baseline of each sample:

    g = 1/2 * sum_k (f_k - f_{other} - c) * (b_k - s)

Unbiased for any ``c`` (``E[b - s] = 0``); ``c`` starts at 0 and is trained, as every
state of the suite, to make the encoder-gradient estimate small (its declared loss).
Its value is logged as the ``learned_baseline_loo_c`` column of metrics.csv.
Registered by importing this module (``--estimator_modules=tests.toy_stateful_estimator``).
"""

import tensorflow as tf

import estimators
from estimators.base import Estimator, EstimatorOutput, Trainable, independent_samples


def init_state(num_latents, context_dim, params):
  del num_latents, context_dim
  state = tf.Module(name="learned_baseline_state")
  state.c = params.variable(lambda seed: tf.zeros([1]), "c")
  return state


def learned_baseline_loo(f, logits, noise, state=None, context=None):
  del context
  probs = tf.sigmoid(logits)
  bits = independent_samples(logits, noise, 2)  # [2, *batch, D]
  f_values = f(bits)  # [2, *batch]
  others = tf.reverse(f_values, axis=[0])
  signal = (f_values - others - state.c)[..., tf.newaxis]
  grad = 0.5 * tf.reduce_sum(signal * (bits - probs), axis=0)
  return EstimatorOutput(grad=grad, bits=bits, f_values=f_values, num_independent=2)


ESTIMATOR = estimators.register(
  Estimator(
    name="learned_baseline_loo",
    fn=learned_baseline_loo,
    num_f_evals=2,
    label="LOO + learned baseline",
    trainable=Trainable(init=init_state, learning_rate=1e-2, scalars=lambda state: {"c": state.c}),
    description="REINFORCE LOO with a learned constant baseline (a test estimator)",
  )
)
