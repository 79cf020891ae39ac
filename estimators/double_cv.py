"""Double control variates: REINFORCE LOO plus a learned, gradient-based local term, ``double_cv_<K>``.

K >= 2 independent samples ``b_k``, ``f_k = f(b_k)``, ``G_k = grad_b f`` at ``b_k`` (the
gradient of f's continuous extension), ``Gbar_{-k}`` the mean of ``G_j`` over ``j != k``,
``s = sigmoid(phi)`` and one learned scalar ``alpha`` (start 0):

    v_k = f_k + alpha * <b_k - s, Gbar_{-k}>,     c_k = mean_{j != k} v_j,
    t_k = alpha * <Gbar_{-k}, b_k - s>,
    g = 1/K * sum_k (f_k - c_k + t_k) * (b_k - s) - alpha * (mean_k G_k) * s(1-s).

The last term cancels the mean of the ``t_k`` part, so ``g`` is unbiased for every
``alpha``; ``alpha = 0`` is REINFORCE LOO. ``alpha`` is trained to minimise the mean
square of the per-example estimate (Adam, learning rate 1e-3), as in the RODEO
paper's code.

Reference:
  Titsias, Shi. "Double Control Variates for Gradient Estimation in Discrete Latent
  Variable Models". AISTATS 2022. (PROTOCOL.md section 8.)
"""

import functools

import tensorflow as tf

from estimators.base import (
  Estimator,
  EstimatorOutput,
  Needs,
  Trainable,
  check_num_samples,
  independent_samples,
  mean_square_per_example,
)
from estimators.reinforce_loo import leave_one_out_mean

LEARNING_RATE = 1e-3


def init_state(num_latents, context_dim, params):
  del num_latents, context_dim
  state = tf.Module(name="double_cv_state")
  state.alpha = params.variable(lambda s: tf.zeros([1]), "alpha")
  return state


def double_cv(f, logits, noise, state=None, context=None, num_samples=2):
  del context
  check_num_samples("double_cv", num_samples)
  if state is None:
    raise ValueError("double_cv needs its state (alpha): pass state=get_estimator(name).make_state(num_latents)")
  probs = tf.sigmoid(logits)
  bits = independent_samples(logits, noise, num_samples)  # [K, *batch, D]
  f_values, grads = f.value_and_gradient(bits)  # [K, *batch], [K, *batch, D]
  grads = tf.stop_gradient(grads)
  alpha = state.alpha  # broadcasts against [*batch]
  centred = bits - probs
  others_grad = leave_one_out_mean(grads)  # Gbar_{-k}
  local = alpha * tf.reduce_sum(centred * others_grad, axis=-1)  # t_k = alpha <Gbar_{-k}, b_k - s>
  baseline = leave_one_out_mean(f_values + local)  # c_k = mean_{j != k} v_j
  signal = (f_values - baseline + local)[..., tf.newaxis]
  correction = alpha[..., tf.newaxis] * tf.reduce_mean(grads, axis=0) * probs * (1.0 - probs)
  grad = tf.reduce_mean(signal * centred, axis=0) - correction
  return EstimatorOutput(grad=grad, bits=bits, f_values=f_values, num_independent=num_samples)


TRAINABLE = Trainable(
  init=init_state,
  loss=mean_square_per_example,
  loss_space="logits",
  learning_rate=LEARNING_RATE,
  scalars=lambda state: {"alpha": state.alpha},
)


def make(num_samples: int) -> Estimator:
  check_num_samples("double_cv", num_samples)
  return Estimator(
    name=f"double_cv_{num_samples}",
    fn=functools.partial(double_cv, num_samples=num_samples),
    num_f_evals=num_samples,
    needs=Needs.GRADIENT,
    num_grad_evals=num_samples,
    trainable=TRAINABLE,
    label="Double CV",
    family="double_cv",
    size=num_samples,
    description=f"double control variates, {num_samples} samples, learned alpha",
    reference="Titsias & Shi, AISTATS 2022",
  )
