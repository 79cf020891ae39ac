"""Per-layer gradient estimates for hierarchical Bernoulli VAEs (issue 4, item 3).

For a model with layers ``b_0 .. b_{L-1}`` (``models/hierarchical_vae.py``) and one
forward sample ``b ~ q(b | x)``, the estimate for layer ``l`` of
``d E_q[ELBO] / d logits_l`` (``logits_l`` = the encoder logits of layer ``l`` at the
forward sample's ``b_{l-1}``) calls the registered single-sample estimator

    estimator.fn(f_l, logits_l, seed_l, state=states[l], context=input_l)

with ``f_l(c)`` = the full ELBO of the configuration whose layers below ``l`` are the
forward sample's, whose layer ``l`` is the candidate ``c`` (``[S, B, D]``) and whose
layers above are sampled afresh from ``q`` given ``c`` ("completion"), with uniform
noise drawn for this layer's call: independent for every candidate (``[S, B, D]``
per upper layer) or, with ``share_upper_noise=True``, one ``[B, D]`` draw per upper
layer shared by all candidates (common random numbers). So ARM/DisARM score the
antithetic pair of layer ``l`` and REINFORCE LOO its two independent draws by the
ELBOs of their completions. Since ``d E_q[ELBO] = sum_l E_{b_<l}[d/d logits_l
E_{b_l, b_>l | b_<l}[ELBO] * d logits_l]`` (plus the ``log q`` terms' direct part,
zero in expectation), each layer's estimate, given the forward sample's ``b_<l``, is
unbiased for its part of the encoder gradient, shared or independent completion
noise alike.

Inside ``f_l`` every encoder logit of a ``log q`` term is held constant
(``tf.stop_gradient``), as PROTOCOL.md section 1 asks of single-sample estimators.
``input_l`` (RELAX's context) is the layer's input: ``x - mean_train`` for layer 0,
``2 b_{l-1} - 1`` above; RELAX gets one state (temperature, scale, control network)
per layer, see ``make_layer_states``.

RELAX's relaxed candidates (continuous values in (0, 1)) are completed
differently, and this is a deliberate choice: RELAX is unbiased only if its
control variate ``c(z) = eta * f_l(sigmoid(z / lambda)) + eta * r(z)`` is a
continuous function of ``z`` whose derivative it uses. Sampling the upper layers
as hard bits ``1[u < sigmoid(logits(c))]`` would make ``c(z)`` jump wherever a
threshold is crossed (the pathwise derivative then misses the jumps: biased), so
relaxed candidates get a relaxed completion from the same uniforms,
``b~_j = sigmoid((a_j - logit(u_j)) / lambda)`` with ``a_j`` the encoder logits at
``2 b~_{j-1} - 1`` (the hard completion is its ``lambda -> 0`` limit), and these
upper logits keep their gradient with respect to ``c`` (encoder parameters are
held fixed through ``HierarchicalBernoulliVAE.layer_logits(..., frozen=True)``).
Which candidates are relaxed is RELAX's layout ``[b, sigmoid(z/lambda),
sigmoid(z~/lambda)]`` (``RELAXED_FROM``). The discrete candidate is completed with
hard bits as for every other estimator.

Stacked members (issue 5, ``models/members.py``): with a stacked model
(``model.num_members = M``), ``x`` is ``[M, B, P]``, seeds are ``[M, 2]`` (one per
member), every per-layer tensor is ``[..., M, B, D]`` and RELAX's states are
stacked too (``make_layer_states`` with one seed pair per member). Every draw goes
through ``models.members``, so member ``m`` computes exactly what an unstacked
model with member ``m``'s parameters computes from ``x[m]`` and ``seed[m]``.

Multi-sample estimators (VIMCO, local DisARM) are not supported here.
"""

from typing import List, NamedTuple

import tensorflow as tf

from estimators import ESTIMATORS, get_estimator
from estimators.base import EstimatorOutput, as_seed, uniform_noise
from models import members

# For estimators that also evaluate f at relaxed (continuous) candidates: the index
# along f's sample axis from which the candidates are relaxed (estimators/relax.py).
RELAXED_FROM = {"relax": 1}


def supported_estimators():
  """Registered estimators this module accepts (plus ``reinforce_loo_<K>`` for any K >= 2)."""
  return sorted(n for n, e in ESTIMATORS.items() if not e.multi_sample)


class LayerwiseEstimate(NamedTuple):
  """What ``layerwise_encoder_grads`` returns (lists have one entry per layer, bottom first).

  Attributes:
    logits: ``[B, D]`` (stacked: ``[M, B, D]``) encoder logits of the forward sample,
      differentiable with respect to the encoder variables; ``grads`` are estimates
      with respect to these.
    grads: ``[B, D]`` (``[M, B, D]``) estimates of ``d E_q[ELBO] / d logits_l``, per
      example and bit.
    bits: ``[B, D]`` (``[M, B, D]``) the forward sample (no gradient).
    outputs: the estimator's ``EstimatorOutput`` of each layer (bits and ELBOs ``f_l`` was evaluated at).
  """
  logits: List[tf.Tensor]
  grads: List[tf.Tensor]
  bits: List[tf.Tensor]
  outputs: List[EstimatorOutput]


def check_estimator(estimator):
  """The ``Estimator`` for ``estimator``, or a ValueError naming the supported ones."""
  est = get_estimator(estimator)
  if est.multi_sample:
    raise ValueError(f"hierarchical models support single-sample estimators only "
                     f"({', '.join(supported_estimators())}, or reinforce_loo_<K>); got {est.name!r}")
  if est.has_state and est.name not in RELAXED_FROM:
    raise ValueError(f"estimator {est.name!r} has a state but training/layerwise.py does not know which of its "
                     f"candidates are relaxed; supported: {', '.join(supported_estimators())}")
  return est


def layer_context_dim(model, l):
  """Width of layer ``l``'s input (RELAX's context): pixels for layer 0, latents above."""
  return model.num_pixels if l == 0 else model.num_latents


def layer_context(model, x, forward_bits, l):
  """Layer ``l``'s input: ``x - mean_train`` for layer 0, ``2 b_{l-1} - 1`` above."""
  return model.encoder_input(x) if l == 0 else 2.0 * forward_bits[l - 1] - 1.0


def make_layer_states(model, estimator, seed=(0, 0)):
  """One fresh estimator state per layer (RELAX), with that layer's context width; None without state.

  ``seed`` is one ``(int, int)`` pair for an unstacked model; layer ``l``'s state
  gets the ``l``-th of ``num_layers`` pairs split from it. For a stacked model
  (``model.num_members = M``) it is a list of ``M`` pairs, one per member (the
  training loop uses ``[(s, 2) for s in seeds]``): every state is then stacked
  (``RelaxState`` with one pair per member) and member ``m``'s layer ``l`` starts
  exactly as layer ``l`` of ``make_layer_states(<unstacked model>, estimator,
  seed[m])``.
  """
  est = check_estimator(estimator)
  if not est.has_state:
    return None
  L = model.num_layers
  num_members = getattr(model, "num_members", None)
  seed = tf.constant(seed, tf.int32)
  if seed.shape.rank != (1 if num_members is None else 2) or seed.shape[-1] != 2 \
      or (num_members is not None and seed.shape[0] != num_members):
    want = "one (int, int) pair" if num_members is None else f"a list of {num_members} (int, int) pairs, one per member"
    raise ValueError(f"make_layer_states: this model takes {want} as seed, got shape {seed.shape}")
  seeds = members.split(seed, L).numpy()  # [L, 2], or [L, M, 2]: member m's pairs are split from its own
  pair = lambda s: tuple(int(v) for v in s)
  # A list of pairs makes a stacked state (RelaxState), one tuple an unstacked one.
  per_layer = [pair(seeds[l]) if num_members is None else [pair(s) for s in seeds[l]] for l in range(L)]
  return [est.make_state(model.num_latents, layer_context_dim(model, l), seed=per_layer[l]) for l in range(L)]


def _logit(u):
  return tf.math.log(u) - tf.math.log1p(-u)


def layer_objective(model, x, forward_bits, forward_logits, l, noise_seed, share_upper_noise=False,
                    relaxed_from=None, temperature=None):
  """``f_l``: candidates ``c`` ``[S, B, D]`` for layer ``l`` -> full ELBOs ``[S, B]`` (see the module docstring).

  Stacked: ``c`` ``[S, M, B, D]`` -> ``[S, M, B]``, ``noise_seed`` ``[M, 2]``.

  ``relaxed_from``: candidates ``c[relaxed_from:]`` are relaxed and get the relaxed
  completion at ``temperature``; ``None`` when every candidate is discrete.
  """
  L = model.num_layers
  num_upper = L - l - 1
  below = list(forward_bits[:l])
  fixed_logits = [tf.stop_gradient(a) for a in forward_logits[:l + 1]]  # layer l's own included
  upper_seeds = members.split(noise_seed, max(num_upper, 1))

  def hard(c, noise):
    bits, upper_logits = model.complete(x, below + [c], l + 1, noise)
    return model.elbo(x, bits, fixed_logits + [tf.stop_gradient(a) for a in upper_logits])

  def relaxed(c, noise):
    bits, logits = below + [c], list(fixed_logits)
    for j, u in zip(range(l + 1, L), noise):
      a = model.layer_logits(j, bits[-1], x, frozen=True)  # differentiable in the relaxed bits below
      bits.append(tf.sigmoid((a - _logit(u)) / temperature))
      logits.append(a)
    return model.elbo(x, bits, logits)

  def f(c):
    # Shared: one [(M,) B, D] draw (member axis 0); independent: [S, (M,) B, D] (member axis 1).
    shape = tf.shape(c)[1:] if share_upper_noise else tf.shape(c)
    member_axis = 0 if share_upper_noise else 1
    noise = [uniform_noise(shape, upper_seeds[i], member_axis=member_axis) for i in range(num_upper)]
    if relaxed_from is None:
      return hard(c, noise)
    split = lambda us, part: us if share_upper_noise else [part(u) for u in us]
    return tf.concat([hard(c[:relaxed_from], split(noise, lambda u: u[:relaxed_from])),
                      relaxed(c[relaxed_from:], split(noise, lambda u: u[relaxed_from:]))], axis=0)

  return f


def layerwise_encoder_grads(model, estimator, x, seed, states=None, share_upper_noise=False):
  """Per-layer estimates of ``d E_q[ELBO] / d logits_l`` at one forward sample.

  Args:
    model: a ``HierarchicalBernoulliVAE``.
    estimator: a single-sample estimator's name or ``Estimator`` (``supported_estimators()``).
    x: ``[B, P]`` binarised batch (stacked model: ``[M, B, P]``, one batch per member).
    seed: int or ``[2]`` seed (stacked model: ``[M, 2]``, one per member); the
      forward sample uses one split of it, layer ``l`` another.
    states: one estimator state per layer (RELAX; ``make_layer_states``; stacked
      for a stacked model), else None.
    share_upper_noise: one completion noise per upper layer for all of layer ``l``'s candidates.

  Returns:
    A ``LayerwiseEstimate``. Call inside a ``tf.GradientTape`` to backpropagate
    ``grads`` into ``logits`` (``hierarchical_gradients`` does).
  """
  est = check_estimator(estimator)
  L = model.num_layers
  if est.has_state and (states is None or len(states) != L):
    raise ValueError(f"{est.name} needs one state per layer ({L}); build them with make_layer_states(model, ...)")
  seeds = members.split(as_seed(seed), L + 1)  # [L + 1, 2] or [L + 1, M, 2]
  bits, logits = model.sample_posterior(x, seeds[0])
  bits = [tf.stop_gradient(b) for b in bits]
  grads, outputs = [], []
  for l in range(L):
    estimator_seed, noise_seed = tf.unstack(members.split(seeds[l + 1], 2))
    state = states[l] if est.has_state else None
    relaxed_from = RELAXED_FROM.get(est.name)
    f_l = layer_objective(model, x, bits, logits, l, noise_seed, share_upper_noise, relaxed_from,
                          temperature=None if relaxed_from is None else state.temperature)
    out = est.fn(f_l, logits[l], estimator_seed, state=state, context=layer_context(model, x, bits, l))
    grads.append(out.grad)
    outputs.append(out)
  return LayerwiseEstimate(logits=logits, grads=grads, bits=bits, outputs=outputs)


def hierarchical_gradients(model, estimator, x, seed, states=None, share_upper_noise=False):
  """One estimate of every gradient of ``-mean ELBO`` at batch ``x``, without applying it.

  Returns ``(loss, encoder_grads, decoder_grads)``: ``loss`` is -mean ELBO over
  the batch at the forward sample (a scalar; for a stacked model ``[M]``, one per
  member); encoder gradients are the per-layer estimates backpropagated into each
  layer's logits (``-grad_l / B``), summed over layers; decoder gradients (decoder
  layers, then prior logits, as in ``Trainer.gradients``) are those of ``loss``
  (of the sum of the members' losses when stacked) with the encoder logits held
  fixed. Gradients have the variables' shapes, so stacked ones carry the member
  axis first, and member ``m``'s slice depends on member ``m`` alone. With
  ``states`` the encoder gradients stay differentiable with respect to the states
  (train them by the gradient of the sum of squared encoder gradients, under an
  outer tape). Arguments as for ``layerwise_encoder_grads``.
  """
  batch_size = tf.cast(tf.shape(x)[-2], tf.float32)
  encoder_vars = list(model.encoder_variables)
  decoder_vars = list(model.decoder_variables) + [model.prior_logits]
  with tf.GradientTape(persistent=True) as tape:
    est = layerwise_encoder_grads(model, estimator, x, seed, states, share_upper_noise)
    loss = -tf.reduce_mean(model.elbo(x, est.bits, [tf.stop_gradient(a) for a in est.logits]), axis=-1)
    total_loss = tf.reduce_sum(loss)  # members are independent: the sum's gradient is each member's own
  grads = est.grads if states is not None else [tf.stop_gradient(g) for g in est.grads]
  encoder_grads = tape.gradient(est.logits, encoder_vars, output_gradients=[-g / batch_size for g in grads])
  decoder_grads = tape.gradient(total_loss, decoder_vars)
  del tape
  return loss, encoder_grads, decoder_grads
