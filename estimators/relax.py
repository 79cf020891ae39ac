"""RELAX for Bernoulli variables, with a learned control variate.

Reparameterise ``b = H(z)``, ``z = phi + log u - log(1 - u)``, ``u ~ U(0,1)``.
``z~`` is a draw of ``z`` conditional on ``b``: with ``v ~ U(0,1)``,

    v' = b * (v * s + 1 - s) + (1 - b) * v * (1 - s),   z~ = phi + logit(v'),   s = sigmoid(phi).

The control variate is ``c(z) = eta * f(sigmoid(z / lambda)) + eta * r_psi(x, z)``:
the objective at the relaxed (continuous) bits plus a small network ``r_psi`` (one
hidden layer of 137 units, LeakyReLU 0.3, input: the context ``x`` concatenated with
``z``). The estimate is

    g = (f(b) - c(z~)) * d log q(b)/d phi + d c(z)/d phi - d c(z~)/d phi,

with ``d log q(b)/d phi = b - s`` and the last two derivatives taken through the
reparameterisations of ``z`` and ``z~`` (noise held fixed). It is unbiased for any
``c``; ``lambda`` (learned as ``log lambda``, start 0.1), ``eta`` (start 1) and
``psi`` are trained to minimise the variance of the encoder gradient (Adam at the
encoder's learning rate, beta1 = 0.999). One discrete and two relaxed evaluations of
``f`` per estimate, batched into one call: cost 3 evaluations.

Reference:
  Grathwohl, Choi, Wu, Roeder, Duvenaud. "Backpropagation through the Void:
  Optimizing control variates for black-box gradient estimation". ICLR 2018.
  (PROTOCOL.md section 2.)
"""

import math

import tensorflow as tf

import ops
from estimators.base import Estimator, EstimatorOutput, Needs, Trainable, dense_params

CONTROL_HIDDEN_UNITS = 137
LEAKY_SLOPE = 0.3
INITIAL_TEMPERATURE = 0.1
INITIAL_SCALE = 1.0
# v' is kept this far inside (0, 1) so that logit(v') is finite.
CONDITIONAL_EPS = 1e-6


def init_state(num_latents, context_dim, params):
  """RELAX's parameters: log temperature, scale, and the control network on [context, z]."""
  hidden_params, out_params = params.split(2)
  state = tf.Module(name="relax_state")
  state.context_dim = context_dim
  state.log_temperature = params.variable(lambda s: tf.fill([1], math.log(INITIAL_TEMPERATURE)), "log_temperature")
  state.scale = params.variable(lambda s: tf.fill([1], INITIAL_SCALE), "scale")
  state.hidden_w, state.hidden_b = dense_params(
    hidden_params, context_dim + num_latents, CONTROL_HIDDEN_UNITS, "hidden"
  )
  state.out_w, state.out_b = dense_params(out_params, CONTROL_HIDDEN_UNITS, 1, "out")
  return state


def control_net(state, z, context):
  """r_psi(x, z): z ``[S, *batch, D]``, context ``[*batch, C]`` or None -> ``[S, *batch]``."""
  if state.context_dim:
    if context is None:
      raise ValueError("this RELAX state was built with context_dim > 0; pass context=")
    context = tf.broadcast_to(context, tf.concat([tf.shape(z)[:-1], tf.shape(context)[-1:]], 0))
    inputs = tf.concat([context, z], axis=-1)
  else:
    inputs = z
  hidden = tf.nn.leaky_relu(ops.dense(inputs, state.hidden_w, state.hidden_b), alpha=LEAKY_SLOPE)
  return tf.squeeze(ops.dense(hidden, state.out_w, state.out_b), axis=-1)


def relax(f, logits, noise, state=None, context=None):
  if state is None:
    raise ValueError(
      "relax needs its trainable state: pass state=get_estimator('relax').make_state(num_latents, context_dim)"
    )
  noise_u, noise_v = noise.split(2)
  u = noise_u.uniform(logits, open_interval=True)
  v = noise_v.uniform(logits, open_interval=True)
  temperature = tf.exp(state.log_temperature)
  with tf.GradientTape() as tape:
    tape.watch(logits)
    probs = tf.sigmoid(logits)
    z = logits + tf.math.log(u) - tf.math.log1p(-u)
    b = tf.stop_gradient(tf.cast(z > 0, logits.dtype))
    v_cond = b * (v * probs + 1.0 - probs) + (1.0 - b) * v * (1.0 - probs)
    v_cond = tf.clip_by_value(v_cond, CONDITIONAL_EPS, 1.0 - CONDITIONAL_EPS)
    z_tilde = logits + tf.math.log(v_cond) - tf.math.log1p(-v_cond)
    z_both = tf.stack([z, z_tilde], axis=0)  # [2, *batch, D]
    relaxed = tf.sigmoid(z_both / temperature[..., tf.newaxis])
    f_all = f(b[tf.newaxis], relaxed=relaxed, temperature=temperature)  # [3, *batch]
    control = state.scale * (f_all[1:] + control_net(state, z_both, context))
    control_z, control_z_tilde = control[0], control[1]
    # Summing over the batch is harmless: each example's c depends on its own logits only.
    control_diff = tf.reduce_sum(control_z - control_z_tilde)
  dcontrol = tape.gradient(control_diff, logits)
  f_b = f_all[0]
  grad = (f_b - control_z_tilde)[..., tf.newaxis] * (b - probs) + dcontrol
  return EstimatorOutput(grad=grad, bits=b[tf.newaxis], f_values=f_b[tf.newaxis], num_independent=1)


def _scalars(state):
  return {"temperature": tf.exp(state.log_temperature), "scale": state.scale}


TRAINABLE = Trainable(init=init_state, learning_rate=None, beta1=0.999, scalars=_scalars)

# Every reference trains the decoder on RELAX's own discrete sample, with a batch sum.
ESTIMATOR = Estimator(
  name="relax",
  fn=relax,
  num_f_evals=3,
  needs=Needs.RELAXED,
  num_grad_evals=2,  # d c / d phi through both relaxed evaluations
  network_evals=lambda num_latents: 2,  # r_psi at z and at z~
  trainable=TRAINABLE,
  num_samples=1,
  decoder_sample="estimator",
  reference_decoder_reduction="sum",
  label="RELAX",
  description="RELAX, learned control variate; 1 discrete + 2 relaxed evaluations",
  reference="Grathwohl, Choi, Wu, Roeder & Duvenaud, ICLR 2018",
)
