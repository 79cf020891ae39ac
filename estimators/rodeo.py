"""RODEO: REINFORCE LOO with control variates from a discrete Stein operator, ``rodeo_<K>``.

For the factorised Bernoulli ``q`` with ``s = sigmoid(phi)``, the neighbours of a point
``y`` are the D points ``y^(i)`` that flip one bit, with ``r_i(y) = s_i`` if ``y_i = 0``
else ``1 - s_i`` (the probability of the flipped value). The Stein operator

    (A h)(y) = 1/D * sum_i r_i(y) * (h(y^(i)) - h(y))

has mean zero under ``q`` for every ``h``. A small network ``H: R^2 -> R^2`` (each input
through a dense layer of 100 units, the two summed, LeakyReLU 0.3, a dense layer with
outputs ``H_1, H_2``) and scalars ``alpha``, ``beta`` (start 0) make, for sample ``k``,

    h_k(y) = mean_{j != k} H_1(f_j, <G_j, y - b_j>),   h'_k(y) the same with H_2,

(``G_j = grad_b f`` at ``b_j``; ``h_k`` never depends on ``b_k`` and costs no evaluation of
``f``), and the estimate

    g = 1/K * sum_k [ (f_k - mean_{j != k} (f_j + alpha * (A h_j)(b_j))) * (b_k - s)
                      + beta * (A ht'_k)(b_k) ],

where ``ht'_k(y) = h'_k(y) * (y - s)`` and A acts on it coordinate by coordinate:
``(A ht'_k)(b) = (b - s) * (A h'_k)(b) + 1/D * r(b) * h'_k(b^(.)) * (1 - 2b)``. Both control
variates have mean zero for any network and scalars; with ``alpha = beta = 0`` it is
REINFORCE LOO. ``alpha``, ``beta`` and ``H`` are trained to minimise the mean square of
the per-example estimate (Adam, learning rate 1e-3, as the paper's code). Cost: K
evaluations of ``f`` plus ``K (K-1) (D+1)`` evaluations of ``H``.

Reference:
  Shi, Zhou, Hwang, Titsias, Mackey. "Gradient Estimation with Discrete Stein
  Operators". NeurIPS 2022. (PROTOCOL.md section 8.)
"""

import functools

import tensorflow as tf

import ops
from estimators.base import (
  Estimator,
  EstimatorOutput,
  Needs,
  Trainable,
  check_num_samples,
  dense_params,
  independent_samples,
  mean_square_per_example,
)
from estimators.reinforce_loo import leave_one_out_mean

HIDDEN_UNITS = 100
LEAKY_SLOPE = 0.3
LEARNING_RATE = 1e-3


def init_state(num_latents, context_dim, params):
  del num_latents, context_dim
  linear_params, value_params, out_params = params.split(3)
  state = tf.Module(name="rodeo_state")
  state.alpha = params.variable(lambda s: tf.zeros([1]), "alpha")
  state.beta = params.variable(lambda s: tf.zeros([1]), "beta")
  state.linear_w, state.linear_b = dense_params(linear_params, 1, HIDDEN_UNITS, "linear")
  state.value_w, state.value_b = dense_params(value_params, 1, HIDDEN_UNITS, "value")
  state.out_w, state.out_b = dense_params(out_params, HIDDEN_UNITS, 2, "out")
  return state


def control_network(state, values, linear):
  """``H(f, lin)``: ``values`` ``[P, 1, *batch]`` and ``linear`` ``[P, N, *batch]`` -> ``[P, N, *batch, 2]``.

  Each input goes through its own dense layer from one feature: a broadcast product,
  with the value's layer computed once for the ``N`` points that share it. For stacked
  runs (weights ``[M, 1, 100]``, ``*batch`` = ``[M, B]``) the network runs copy-first
  (``[M, P, N, B, 100]``), so that its weight gradients are reductions over adjacent
  axes and batched products rather than reductions around the member axis.
  """
  w = state.out_w
  linear = ops.copies_first(linear[..., tf.newaxis], w)  # [(M,) P, N, (M,) B, 1]
  values = ops.copies_first(values[..., tf.newaxis], w)
  rank = linear.shape.rank
  hidden = (
    linear * ops.broadcast_weights(state.linear_w, rank)
    + ops.broadcast_weights(state.linear_b, rank)
    + values * ops.broadcast_weights(state.value_w, rank)
    + ops.broadcast_weights(state.value_b, rank)
  )
  outputs = ops.dense_copies_first(tf.nn.leaky_relu(hidden, alpha=LEAKY_SLOPE), w, state.out_b)
  return ops.copies_back(outputs, w)


def rodeo_terms(f, logits, noise, state, num_samples):
  """The pieces of the estimate, per sample ``k`` (each ``[K, *batch, D]``).

  Returns ``(bits, f_values, reinforce, stein_scaled, stein_flipped)``: the REINFORCE
  term with the alpha control variate in its baseline, and the two parts of
  ``(A ht'_k)(b_k)``: ``(b_k - s) (A h'_k)(b_k)`` and ``1/D r(b_k) h'_k(b_k^(.)) (1 - 2 b_k)``.
  """
  K = num_samples
  probs = tf.sigmoid(logits)
  bits = independent_samples(logits, noise, K)  # [K, *batch, D]
  f_values, grads = f.value_and_gradient(bits)  # [K, *batch], [K, *batch, D]
  grads = tf.stop_gradient(grads)
  flip = 1.0 - 2.0 * bits  # y^(d) - y at bit d
  rates = bits + flip * probs  # r_d(b): s_d where b_d = 0, 1 - s_d where 1
  # <G_i, b_j - b_i> for every source i and point j: [K_i, K_j, *batch]
  g_dot_b = tf.reduce_sum(grads * bits, axis=-1)  # <G_i, b_i>
  cross = tf.einsum("i...d,j...d->ij...", grads, bits)  # <G_i, b_j>
  linear_at = cross - g_dot_b[:, tf.newaxis]
  # ... and at the point's neighbours b_j^(d): + G_{i,d} (1 - 2 b_{j,d}): [K_i, K_j, *batch, D]
  linear_near = linear_at[..., tf.newaxis] + grads[:, tf.newaxis] * flip[tf.newaxis]
  # Points first (y = b_j, then its D neighbours) so the network sees [..., *batch] inputs.
  linear = tf.concat([linear_at[..., tf.newaxis], linear_near], axis=-1)  # [K_i, K_j, *batch, D+1]
  linear = tf.experimental.numpy.moveaxis(linear, -1, 2)  # [K_i, K_j, D+1, *batch]
  # Only the K (K - 1) pairs of a point j and a source i != j: h_j never sees sample j.
  pairs = [(i, j) for j in range(K) for i in range(K) if i != j]  # point-major
  linear = tf.stack([linear[i, j] for i, j in pairs])  # [K (K-1), D+1, *batch]
  values = tf.stop_gradient(tf.stack([f_values[i] for i, _ in pairs]))[:, tf.newaxis]  # [K (K-1), 1, *batch]
  outputs = control_network(state, values, tf.stop_gradient(linear))  # [K (K-1), D+1, *batch, 2]
  outputs = tf.reshape(outputs, tf.concat([[K, K - 1], tf.shape(outputs)[1:]], axis=0))
  h = tf.reduce_mean(outputs, axis=1)  # [K_j, D+1, *batch, 2]
  h = tf.experimental.numpy.moveaxis(h, 1, -2)  # [K, *batch, D+1, 2]
  h_at, h_near = h[..., 0, :], h[..., 1:, :]  # [K, *batch, 2], [K, *batch, D, 2]
  num_bits = tf.cast(tf.shape(logits)[-1], logits.dtype)
  # (A h)(b_k) for both outputs: 1/D sum_d r_d (h(b^(d)) - h(b)).
  stein = tf.reduce_sum(rates[..., tf.newaxis] * (h_near - h_at[..., tf.newaxis, :]), axis=-2) / num_bits
  baseline = leave_one_out_mean(f_values + state.alpha * stein[..., 0])
  centred = bits - probs
  reinforce = (f_values - baseline)[..., tf.newaxis] * centred
  stein_scaled = centred * stein[..., 1][..., tf.newaxis]
  stein_flipped = rates * h_near[..., 1] * flip / num_bits
  return bits, f_values, reinforce, stein_scaled, stein_flipped


def rodeo(f, logits, noise, state=None, context=None, num_samples=2):
  del context
  check_num_samples("rodeo", num_samples)
  if state is None:
    raise ValueError("rodeo needs its state (alpha, beta, network): pass state=get_estimator(name).make_state(D)")
  bits, f_values, reinforce, stein_scaled, stein_flipped = rodeo_terms(f, logits, noise, state, num_samples)
  grad = tf.reduce_mean(reinforce + state.beta[..., tf.newaxis] * (stein_scaled + stein_flipped), axis=0)
  return EstimatorOutput(grad=grad, bits=bits, f_values=f_values, num_independent=num_samples)


TRAINABLE = Trainable(
  init=init_state,
  loss=mean_square_per_example,
  loss_space="logits",
  learning_rate=LEARNING_RATE,
  scalars=lambda state: {"alpha": state.alpha, "beta": state.beta},
)


def make(num_samples: int) -> Estimator:
  check_num_samples("rodeo", num_samples)
  return Estimator(
    name=f"rodeo_{num_samples}",
    fn=functools.partial(rodeo, num_samples=num_samples),
    num_f_evals=num_samples,
    needs=Needs.GRADIENT,
    num_grad_evals=num_samples,
    # The control network at each of the K (K - 1) pairs of a point and another sample,
    # and at the D one-bit flips of the pair's point plus the point itself.
    network_evals=lambda num_latents: num_samples * (num_samples - 1) * (num_latents + 1),
    trainable=TRAINABLE,
    label="RODEO",
    family="rodeo",
    size=num_samples,
    description=f"RODEO, {num_samples} samples, discrete Stein control variates",
    reference="Shi, Zhou, Hwang, Titsias & Mackey, NeurIPS 2022",
  )
