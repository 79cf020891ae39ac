"""Hierarchical Bernoulli VAEs: L stochastic layers of binary latents, linear conditionals.

Layers are numbered ``0 .. L-1`` here (``b_1 .. b_L`` in the paper's notation);
every layer has ``D = num_latents`` bits and every conditional is one dense
layer (Glorot-uniform weights, zero bias unless stated) followed by a sigmoid:

* encoder ``q(b | x) = q(b_0 | x) prod_{l >= 1} q(b_l | b_{l-1})`` with
  ``q(b_0 | x) = Bernoulli(sigmoid(E_0 (x - mean_train)))`` and
  ``q(b_l | b_{l-1}) = Bernoulli(sigmoid(E_l (2 b_{l-1} - 1)))``;
* decoder ``p(x, b) = p(x | b_0) prod_{l < L-1} p(b_l | b_{l+1}) p(b_{L-1})`` with
  ``p(x | b_0) = Bernoulli(sigmoid(G_0 (2 b_0 - 1)))`` (output bias starting at
  ``logit(clip(mean_train, 0.001, 0.999))``, as in the single-layer model),
  ``p(b_l | b_{l+1}) = Bernoulli(sigmoid(G_{l+1} (2 b_{l+1} - 1)))`` and a factorised
  prior ``p(b_{L-1}) = Bernoulli(sigmoid(prior_logits))`` (trainable, start 0).

``ELBO(x, b) = log p(x, b) - log q(b | x)``, summed over pixels and bits. Every
method takes ``x`` as ``[B, P]`` and bits as ``[..., B, D]`` (extra leading sample
dimensions broadcast, layer by layer, so layers may carry different ones), and
every term is linear in the bits, so relaxed values in (0, 1) are accepted too.
The model knows nothing of gradient estimators (``training/layerwise.py`` does).

Stacked members (issue 5, ``models/members.py``): built with ``seed`` a list of
``M`` ints, every parameter gets a leading member axis (dense weights
``[M, n, k]``, biases ``[M, 1, k]``, ``prior_logits`` ``[M, 1, D]``) and member ``m``
starts exactly as an unstacked model built with ``seed[m]``. Inputs then carry
the member axis just before the batch axis: ``x`` ``[M, B, P]``, bits
``[..., M, B, D]``, and every noise seed is ``[M, 2]`` (one stream per member, each
drawing what a lone run with its seed draws); outputs are ``[..., M, B]``.
"""

import math

import tensorflow as tf

from models import members
from models.bernoulli_vae import NUM_LATENTS, Dense, bernoulli_log_prob, member_seeds, stacked_matmul

NUM_LAYERS = (2, 3, 4)


def _as_seed(seed):
  """An int becomes the seed ``(seed, 0)``; a ``[2]`` or ``[M, 2]`` seed passes through as int32."""
  seed = tf.convert_to_tensor(seed)
  if seed.shape.rank == 0:
    seed = tf.stack([seed, tf.zeros_like(seed)])
  return tf.cast(seed, tf.int32)


def _frozen(layer, inputs):
  """``layer(inputs)`` with the layer's parameters held constant (gradients flow into ``inputs`` only)."""
  w, b = tf.stop_gradient(layer.w), tf.stop_gradient(layer.b)
  return (tf.matmul(inputs, w) if layer.num_members is None else stacked_matmul(inputs, w)) + b


class HierarchicalBernoulliVAE(tf.Module):
  """``num_layers`` stochastic layers of ``num_latents`` bits; ``mean_train`` the per-pixel training mean.

  ``seed``: an int (one model; ``num_members`` is None) or a list of ``M`` ints
  (``M`` stacked members, ``num_members = M``; member ``m`` equals the model built
  with ``seed[m]``).
  """

  def __init__(self, num_layers, mean_train, seed=0, num_latents=NUM_LATENTS, name="hierarchical_bernoulli_vae"):
    super().__init__(name=name)
    if num_layers not in NUM_LAYERS:
      raise ValueError(f"num_layers must be one of {NUM_LAYERS}, got {num_layers!r}")
    mean_train = tf.constant(mean_train, tf.float32)
    self.num_layers = int(num_layers)
    self.num_latents = int(num_latents)
    self.num_pixels = int(mean_train.shape[-1])
    self.mean_train = mean_train
    clipped = tf.clip_by_value(mean_train, 0.001, 0.999)
    output_bias = tf.math.log(clipped) - tf.math.log1p(-clipped)
    self.num_members = len(seed) if isinstance(seed, (list, tuple)) else None
    # Salt 2 (BernoulliVAE uses 1); encoder layers take the first L seeds, decoder layers the last L.
    # seeds[i] is [2], or [M, 2] (one per member) when stacked.
    seeds = members.split(member_seeds(seed, 2), 2 * self.num_layers)
    L, D, P = self.num_layers, self.num_latents, self.num_pixels
    # encoder_layers[l] gives the logits of q(b_l | .): input x - mean_train for l = 0, 2 b_{l-1} - 1 above.
    self.encoder_layers = [Dense(P if l == 0 else D, D, seeds[l], name=f"encoder_{l}") for l in range(L)]
    # decoder_layers[0] gives the pixel logits of p(x | b_0); decoder_layers[l], l >= 1, the logits of
    # p(b_{l-1} | b_l); inputs 2 b - 1.
    self.decoder_layers = [Dense(D, P if l == 0 else D, seeds[L + l], output_bias if l == 0 else None,
                                 name=f"decoder_{l}") for l in range(L)]
    prior_shape = [D] if self.num_members is None else [self.num_members, 1, D]
    self.prior_logits = tf.Variable(tf.zeros(prior_shape), name="prior_logits")

  @property
  def encoder_variables(self):
    return [v for layer in self.encoder_layers for v in (layer.w, layer.b)]

  @property
  def decoder_variables(self):
    """The decoder layers' variables (``prior_logits`` not included)."""
    return [v for layer in self.decoder_layers for v in (layer.w, layer.b)]

  def encoder_input(self, x):
    """What the first encoder layer sees: ``x - mean_train``."""
    return x - self.mean_train

  def layer_logits(self, l, below, x, frozen=False):
    """Logits of ``q(b_l | b_{l-1})`` (``below`` = ``b_{l-1}``, ``[..., B, D]``), or of ``q(b_0 | x)`` for l = 0.

    Stacked: ``below`` ``[..., M, B, D]``, ``x`` ``[M, B, P]``.

    ``frozen=True`` holds the layer's parameters constant: gradients then flow into
    ``below`` only (used where an estimator differentiates through relaxed bits).
    """
    layer = self.encoder_layers[l]
    inputs = self.encoder_input(x) if l == 0 else 2.0 * below - 1.0
    return _frozen(layer, inputs) if frozen else layer(inputs)

  def complete(self, x, bits_prefix, start_layer, noise):
    """Samples layers ``start_layer .. L-1`` from q given the layers below.

    Args:
      x: ``[B, P]`` (stacked: ``[M, B, P]``).
      bits_prefix: list of the ``start_layer`` layers below, each ``[..., B, D]``
        (stacked: ``[..., M, B, D]``).
      start_layer: first layer to sample (0 samples everything).
      noise: list of ``L - start_layer`` uniforms, each ``[..., B, D]`` (stacked:
        ``[..., M, B, D]``; drawn by the caller, per member);
        ``b_l = 1[u_l < sigmoid(logits_l)]``.

    Returns:
      ``(bits, logits)``: all ``L`` layers' bits, and the encoder logits of the
      sampled layers only (``L - start_layer`` tensors).
    """
    if len(bits_prefix) != start_layer or len(noise) != self.num_layers - start_layer:
      raise ValueError(f"complete: need {start_layer} prefix layers and {self.num_layers - start_layer} noise "
                       f"tensors, got {len(bits_prefix)} and {len(noise)}")
    bits, logits = list(bits_prefix), []
    for l, u in zip(range(start_layer, self.num_layers), noise):
      layer_logits = self.layer_logits(l, bits[-1] if l > 0 else None, x)
      bits.append(tf.cast(u < tf.sigmoid(layer_logits), tf.float32))
      logits.append(layer_logits)
    return bits, logits

  def _noise_shape(self, x):
    return tf.concat([tf.shape(x)[:-1], [self.num_latents]], axis=0)

  def sample_posterior(self, x, seed):
    """One ancestral sample ``b ~ q(b | x)`` from stateless noise: ``(bits [L] x [B, D], logits [L] x [B, D])``.

    Stacked: ``x`` ``[M, B, P]`` and ``[M, 2]`` seeds -> ``[L] x [M, B, D]``, member ``m``
    drawing what a lone model draws with ``seed[m]``.
    """
    seeds = members.split(_as_seed(seed), self.num_layers)
    noise = [members.uniform(self._noise_shape(x), seeds[l], member_axis=0) for l in range(self.num_layers)]
    return self.complete(x, [], 0, noise)

  def elbo(self, x, bits, logits):
    """``log p(x|b_0) + sum_l log p(b_l|b_{l+1}) + log p(b_{L-1}) - sum_l log q(b_l|.)`` -> ``[..., B]``.

    Stacked: ``x`` ``[M, B, P]``, bits and logits ``[..., M, B, D]`` -> ``[..., M, B]``.

    ``bits`` and ``logits`` are lists of ``L`` tensors ``[..., B, D]``; ``logits``
    are the encoder logits the ``log q`` terms use (callers decide their gradients).
    """
    L = self.num_layers
    total = tf.reduce_sum(bernoulli_log_prob(self.decoder_layers[0](2.0 * bits[0] - 1.0), x), axis=-1)
    for l in range(L - 1):
      total += tf.reduce_sum(bernoulli_log_prob(self.decoder_layers[l + 1](2.0 * bits[l + 1] - 1.0), bits[l]), -1)
    total += tf.reduce_sum(bernoulli_log_prob(self.prior_logits, bits[L - 1]), axis=-1)
    for l in range(L):
      total -= tf.reduce_sum(bernoulli_log_prob(logits[l], bits[l]), axis=-1)
    return total

  def multisample_bound(self, x, num_samples, seed):
    """``log mean_{k<=K} exp ELBO(x, b_k)``, ``b_k ~ q(b|x)`` independent ancestral samples: -> ``[B]``.

    Stacked: ``x`` ``[M, B, P]`` and ``[M, 2]`` seeds (one stream per member) -> ``[M, B]``.
    """
    seeds = members.split(_as_seed(seed), self.num_layers)
    shape = tf.concat([[num_samples], self._noise_shape(x)], axis=0)  # [K, (M,) B, D]
    noise = [members.uniform(shape, seeds[l], member_axis=1) for l in range(self.num_layers)]
    bits, logits = self.complete(x, [], 0, noise)
    return tf.reduce_logsumexp(self.elbo(x, bits, logits), axis=0) - math.log(num_samples)
