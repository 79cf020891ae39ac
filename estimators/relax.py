"""RELAX for Bernoulli variables, with a learned control variate.

Reparameterise ``b = H(z)``, ``z = phi + log u - log(1 - u)``, ``u ~ U(0,1)``.
``z~`` is a draw of ``z`` conditional on ``b``: with ``v ~ U(0,1)``,

    v' = b * (v * s + 1 - s) + (1 - b) * v * (1 - s),   z~ = phi + logit(v'),   s = sigmoid(phi).

The control variate is ``c(z) = eta * f(sigmoid(z / lambda)) + eta * r_psi(x, z)``:
the objective at the relaxed (continuous) bits plus a small network
``r_psi`` (one hidden layer of 137 units, LeakyReLU 0.3, input: the context ``x``
concatenated with ``z``). The estimate is

    g = (f(b) - c(z~)) * d log q(b)/d phi + d c(z)/d phi - d c(z~)/d phi,

with ``d log q(b)/d phi = b - s`` and the last two derivatives taken through
the reparameterisations of ``z`` and ``z~`` (noise held fixed). It is unbiased for
any ``c``; ``lambda`` (learned as ``log lambda``, start 0.1), ``eta`` (start 1) and
``psi`` are trained by the caller to minimise the variance of the resulting
gradient. Three evaluations of ``f`` per estimate (one discrete, two relaxed),
batched into a single call.

Reference:
  Grathwohl, Choi, Wu, Roeder, Duvenaud. "Backpropagation through the Void:
  Optimizing control variates for black-box gradient estimation". ICLR 2018.
  (PROTOCOL.md section 2.)
"""

import math

import tensorflow as tf

from estimators.base import Estimator, EstimatorOutput, uniform_noise
from models import members
from models.bernoulli_vae import Dense

CONTROL_HIDDEN_UNITS = 137
LEAKY_SLOPE = 0.3
INITIAL_TEMPERATURE = 0.1
INITIAL_SCALE = 1.0


class RelaxState(tf.Module):
  """RELAX's own trainable parameters: log temperature, scale, control network.

  ``seed`` is one ``(int, int)`` pair, or a list of them to stack ``M`` members
  (one per stacked run, ``models.members``): then every parameter has a leading
  member axis, shaped to broadcast against ``[S, M, batch, ...]`` tensors, and
  member ``m`` starts exactly as an unstacked state with ``seed[m]``.
  """

  def __init__(self, num_latents, context_dim=0, seed=(0, 0), name="relax_state"):
    super().__init__(name=name)
    stacked = isinstance(seed, list)
    seed = tf.constant(seed, tf.int32)
    self.num_members = int(seed.shape[0]) if stacked else None
    hidden_seed, out_seed = tf.unstack(members.split(seed, 2))
    self.context_dim = context_dim
    # Scalars for one run; [M, 1, 1] (temperature, against z [S, M, B, D]) and
    # [M, 1] (scale, against f [S, M, B]) for stacked members.
    temperature_shape = [] if self.num_members is None else [self.num_members, 1, 1]
    scale_shape = [] if self.num_members is None else [self.num_members, 1]
    self.log_temperature = tf.Variable(tf.fill(temperature_shape, math.log(INITIAL_TEMPERATURE)),
                                       name="log_temperature")
    self.scale = tf.Variable(tf.fill(scale_shape, INITIAL_SCALE), name="scale")
    self.hidden = Dense(context_dim + num_latents, CONTROL_HIDDEN_UNITS, hidden_seed, name="hidden")
    self.out = Dense(CONTROL_HIDDEN_UNITS, 1, out_seed, name="out")

  @property
  def temperature(self):
    return tf.exp(self.log_temperature)

  def control_net(self, z, context):
    """r_psi(x, z): z [S, *batch, D], context [*batch, C] or None -> [S, *batch]."""
    if self.context_dim:
      if context is None:
        raise ValueError("this RELAX state was built with context_dim > 0; pass context=")
      context = tf.broadcast_to(context, tf.concat([tf.shape(z)[:-1], tf.shape(context)[-1:]], 0))
      inputs = tf.concat([context, z], axis=-1)
    else:
      inputs = z
    hidden = tf.nn.leaky_relu(self.hidden(inputs), alpha=LEAKY_SLOPE)
    return tf.squeeze(self.out(hidden), axis=-1)


def make_state(num_latents, context_dim=0, seed=(0, 0)):
  return RelaxState(num_latents, context_dim, seed)


def relax(f, logits, seed, state=None, context=None):
  if state is None:
    raise ValueError("relax needs its trainable state: pass state=ESTIMATORS['relax'].make_state(num_latents, context_dim)")
  seed_u, seed_v = tf.unstack(members.split(seed, 2))
  u = uniform_noise(tf.shape(logits), seed_u, logits.dtype)
  v = uniform_noise(tf.shape(logits), seed_v, logits.dtype)
  eps = 1e-6
  with tf.GradientTape() as tape:
    tape.watch(logits)
    probs = tf.sigmoid(logits)
    z = logits + tf.math.log(u) - tf.math.log1p(-u)
    b = tf.stop_gradient(tf.cast(z > 0, logits.dtype))
    v_cond = b * (v * probs + 1.0 - probs) + (1.0 - b) * v * (1.0 - probs)
    v_cond = tf.clip_by_value(v_cond, eps, 1.0 - eps)
    z_tilde = logits + tf.math.log(v_cond) - tf.math.log1p(-v_cond)
    z_both = tf.stack([z, z_tilde], axis=0)                             # [2, *batch, D]
    relaxed = tf.sigmoid(z_both / state.temperature)
    f_all = f(tf.concat([b[tf.newaxis], relaxed], axis=0))              # [3, *batch]
    control = state.scale * (f_all[1:] + state.control_net(z_both, context))
    control_z, control_z_tilde = control[0], control[1]
    # Summing over the batch is harmless: each example's c depends on its own logits only.
    control_diff = tf.reduce_sum(control_z - control_z_tilde)
  dcontrol = tape.gradient(control_diff, logits)
  f_b = f_all[0]
  grad = (f_b - control_z_tilde)[..., tf.newaxis] * (b - probs) + dcontrol
  return EstimatorOutput(grad=grad, bits=b[tf.newaxis], f_values=f_b[tf.newaxis])


ESTIMATOR = Estimator(name="relax", fn=relax, num_f_evals=1, make_state=make_state,
                      description="RELAX (Grathwohl et al. 2018), learned control variate; "
                                  "1 discrete + 2 relaxed evaluations")
