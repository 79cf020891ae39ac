"""Bernoulli VAEs with L >= 1 stochastic layers of 200 binary latents (PROTOCOL.md section 3).

Layers are numbered ``0 .. L-1`` (``b_1 .. b_L`` in the papers' notation):

* encoder ``q(b | x) = q(b_0 | x) prod_{l >= 1} q(b_l | b_{l-1})``, each
  ``Bernoulli(sigmoid(E_l(input)))``: ``E_0`` sees the encoder input (``x - mean(x_train)``
  or the binarised ``x``), ``E_l`` the layer below (``2b - 1`` or ``b``);
* decoder ``p(x, b) = p(x | b_0) prod_{l < L-1} p(b_l | b_{l+1}) p(b_{L-1})``: ``G_0`` gives
  the pixel logits, ``G_{l+1}`` the logits of ``b_l`` given ``b_{l+1}``, and the prior
  ``p(b_{L-1})`` is factorised with logits ``prior_logits`` (start 0).

Model names: ``linear`` and ``nonlinear`` (one layer; ``E_0`` and ``G_0`` are one dense
layer each, or three with two hidden layers of 200 LeakyReLU(0.3) units), and
``linear_<L>layer`` for L in 2..4 (every conditional one dense layer). The single-layer
VAE is the one-layer case of the same class, so training has one code path.

``elbo(x, bits, logits) = log p(x, b) - log q(b | x)`` summed over pixels and bits. Bits
may carry extra leading sample dimensions, broadcast against ``x`` ``[B, P]``, and may
be relaxed values in (0, 1) (every term is linear in the bits, which RELAX uses).
The model draws no random numbers: callers pass the uniforms (``complete``), so that
the random-stream plan stays with them (contracts/streams.py). It knows nothing of
gradient estimators.

Stacked members: built with ``seed`` a ``[M, 2]`` array (one seed pair per member),
every parameter gets a leading member axis (dense weights ``[M, n, k]``, biases
``[M, 1, k]``, ``prior_logits`` ``[M, 1, D]``) and member ``m`` starts exactly as the
model built with ``seed[m]`` (whose parameters have the shapes of one member:
``[n, k]``, ``[1, k]``, ``[1, D]``). Inputs then carry the member axis just before the
batch axis: ``x`` ``[M, B, P]``, bits ``[..., M, B, D]``; outputs ``[..., M, B]``.
"""

import math

import numpy as np
import tensorflow as tf

import ops
from models import members

SINGLE_LAYER_MODELS = ("linear", "nonlinear")
NUM_LAYERS = (2, 3, 4)
LAYERED_MODELS = tuple(f"linear_{n}layer" for n in NUM_LAYERS)
MODELS = SINGLE_LAYER_MODELS + LAYERED_MODELS
NUM_LATENTS = 200
HIDDEN_UNITS = 200
LEAKY_SLOPE = 0.3

ENCODER_INPUTS = ("centered", "raw")
LATENT_INPUTS = ("signed", "binary")
INITIALIZATIONS = ("glorot_data_bias", "glorot")


@tf.autograph.experimental.do_not_convert
def bernoulli_log_prob(logits, values):
  """log Bernoulli(values; sigmoid(logits)) elementwise; linear in values, so valid for relaxed values."""
  # values * log sigmoid(l) + (1 - values) * log sigmoid(-l) == values * l - softplus(l);
  # written out because tf.nn.sigmoid_cross_entropy_with_logits does not broadcast.
  return values * logits - tf.nn.softplus(logits)


def num_stochastic_layers(name):
  """1 for the single-layer models, L for ``linear_<L>layer``."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
  return 1 if name in SINGLE_LAYER_MODELS else int(name[len("linear_") : -len("layer")])


class Dense(tf.Module):
  """A dense layer with Glorot-uniform weights (the Keras default) and a zero (or given) bias.

  ``seed`` is one ``[2]`` seed (weights ``[n, k]``, bias ``[1, k]``) or ``[M, 2]`` seeds
  for ``M`` stacked members (weights ``[M, n, k]``, bias ``[M, 1, k]``; inputs then carry
  the member axis just before the batch axis, ``[..., M, B, n]``). Member ``m`` is
  initialised exactly as an unstacked layer with seed ``seed[m]``.
  """

  def __init__(self, in_dim, out_dim, seed, bias_init=None, name=None):
    super().__init__(name=name)
    seed = tf.convert_to_tensor(seed)
    limit = math.sqrt(6.0 / (in_dim + out_dim))
    bias = tf.zeros([1, out_dim]) if bias_init is None else tf.reshape(tf.constant(bias_init, tf.float32), [1, out_dim])
    init = lambda s: tf.random.stateless_uniform([in_dim, out_dim], s, -limit, limit)
    if seed.shape.rank == 1:
      self.num_members = None
      self.w = tf.Variable(init(seed), name="w")
      self.b = tf.Variable(bias, name="b")
    else:
      self.num_members = int(seed.shape[0])
      self.w = tf.Variable(tf.stack([init(s) for s in tf.unstack(seed)]), name="w")
      self.b = tf.Variable(tf.tile(bias[tf.newaxis], [self.num_members, 1, 1]), name="b")

  @tf.autograph.experimental.do_not_convert
  def __call__(self, x, frozen=False):
    """``x W + b``; ``frozen`` holds ``W`` and ``b`` constant (gradients flow into ``x`` only)."""
    w, b = (tf.stop_gradient(self.w), tf.stop_gradient(self.b)) if frozen else (self.w, self.b)
    return ops.dense(x, w, b)


class MLP(tf.Module):
  """Dense layers with LeakyReLU between them and a linear last layer.

  ``seeds``: one seed per dense layer (each ``[2]``, or ``[M, 2]`` when stacked).
  """

  def __init__(self, sizes, seeds, output_bias=None, name=None):
    super().__init__(name=name)
    self.layers = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
      last = i == len(sizes) - 2
      self.layers.append(Dense(d_in, d_out, seeds[i], output_bias if last else None, name=f"dense_{i}"))

  @tf.autograph.experimental.do_not_convert
  def __call__(self, x, frozen=False):
    for layer in self.layers[:-1]:
      x = tf.nn.leaky_relu(layer(x, frozen), alpha=LEAKY_SLOPE)
    return self.layers[-1](x, frozen)


class BernoulliVAE(tf.Module):
  """A Bernoulli VAE with ``len(encoder_nets)`` stochastic layers (see the module docstring).

  Build it with ``build_model``; the constructor takes the networks ready-made.
  """

  def __init__(
    self,
    name,
    encoder_nets,
    decoder_nets,
    mean_train,
    num_latents=NUM_LATENTS,
    num_members=None,
    encoder_input="centered",
    latent_input="signed",
  ):
    super().__init__(name="bernoulli_vae")
    if encoder_input not in ENCODER_INPUTS or latent_input not in LATENT_INPUTS:
      raise ValueError(
        f"encoder_input must be one of {ENCODER_INPUTS} and latent_input one of {LATENT_INPUTS}; "
        f"got {encoder_input!r}, {latent_input!r}"
      )
    self.model = name
    self.encoder_nets = list(encoder_nets)
    self.decoder_nets = list(decoder_nets)
    self.num_layers = len(self.encoder_nets)
    self.num_latents = int(num_latents)
    self.mean_train = tf.constant(mean_train, tf.float32)
    self.num_pixels = int(self.mean_train.shape[-1])
    self.num_members = num_members
    self.centered_input = encoder_input == "centered"
    self.signed_latents = latent_input == "signed"
    prior_shape = [1, self.num_latents] if num_members is None else [num_members, 1, self.num_latents]
    self.prior_logits = tf.Variable(tf.zeros(prior_shape), name="prior_logits")

  @property
  def encoder_variables(self):
    return [v for net in self.encoder_nets for v in net.trainable_variables]

  @property
  def decoder_variables(self):
    """The decoder networks' variables (``prior_logits`` not included)."""
    return [v for net in self.decoder_nets for v in net.trainable_variables]

  @tf.autograph.experimental.do_not_convert
  def encoder_input(self, x):
    """What the first encoder layer sees: ``x - mean(x_train)`` or ``x``."""
    return x - self.mean_train if self.centered_input else x

  @tf.autograph.experimental.do_not_convert
  def latent_input(self, bits):
    """How bits enter a network: ``2b - 1`` or ``b``."""
    return 2.0 * bits - 1.0 if self.signed_latents else bits

  @tf.autograph.experimental.do_not_convert
  def layer_logits(self, l, below, x, frozen=False):
    """Logits of ``q(b_l | b_{l-1})`` (``below`` = ``b_{l-1}`` ``[..., B, D]``), or of ``q(b_0 | x)`` for l = 0.

    ``frozen=True`` holds the layer's parameters constant (gradients flow into ``below``
    only; RELAX's relaxed completion differentiates through the relaxed bits).
    """
    inputs = self.encoder_input(x) if l == 0 else self.latent_input(below)
    return self.encoder_nets[l](inputs, frozen)

  @tf.autograph.experimental.do_not_convert
  def estimator_context(self, l, x, forward_bits, kind="raw"):
    """Side information for layer ``l``'s estimator state (RELAX's control network).

    Layer 0: the binarised ``x`` (``kind="raw"``, as RELAX's references) or what the
    encoder sees (``"encoder_input"``); above: the layer below, as its encoder sees it.
    """
    if l == 0:
      return x if kind == "raw" else self.encoder_input(x)
    return self.latent_input(forward_bits[l - 1])

  def context_dim(self, l):
    """Width of ``estimator_context(l, ...)``."""
    return self.num_pixels if l == 0 else self.num_latents

  @tf.autograph.experimental.do_not_convert
  def encoder_logits(self, x):
    """Logits of ``q(b_0 | x)``."""
    return self.layer_logits(0, None, x)

  @tf.autograph.experimental.do_not_convert
  def complete(self, x, bits_prefix, start_layer, uniforms, frozen=False):
    """Samples layers ``start_layer .. L-1`` from q given the layers below.

    Args:
      x: ``[B, P]`` (stacked: ``[M, B, P]``).
      bits_prefix: the ``start_layer`` layers below, each ``[..., B, D]``.
      start_layer: first layer to sample (0 samples everything).
      uniforms: ``L - start_layer`` U(0, 1) tensors ``[..., B, D]``;
        ``b_l = 1[u_l < sigmoid(logits_l)]``.
      frozen: compute the sampled layers' logits with the encoder's parameters held
        constant (gradients flow into the bits below only).

    Returns:
      ``(bits, logits)``: all ``L`` layers' bits, and the encoder logits of the
      sampled layers only (``L - start_layer`` tensors).
    """
    if len(bits_prefix) != start_layer or len(uniforms) != self.num_layers - start_layer:
      raise ValueError(
        f"complete: need {start_layer} prefix layers and {self.num_layers - start_layer} uniforms, "
        f"got {len(bits_prefix)} and {len(uniforms)}"
      )
    bits, logits = list(bits_prefix), []
    for l, u in zip(range(start_layer, self.num_layers), uniforms):
      layer_logits = self.layer_logits(l, bits[-1] if l > 0 else None, x, frozen=frozen)
      bits.append(tf.cast(u < tf.sigmoid(layer_logits), tf.float32))
      logits.append(layer_logits)
    return bits, logits

  @tf.autograph.experimental.do_not_convert
  def log_joint(self, x, bits):
    """``log p(x | b_0) + sum_l log p(b_l | b_{l+1}) + log p(b_{L-1})`` -> ``[..., B]``."""
    L = self.num_layers
    pixel_logits = self.decoder_nets[0](self.latent_input(bits[0]))
    total = tf.reduce_sum(bernoulli_log_prob(pixel_logits, x), axis=-1)
    for l in range(L - 1):
      upper_logits = self.decoder_nets[l + 1](self.latent_input(bits[l + 1]))
      total += tf.reduce_sum(bernoulli_log_prob(upper_logits, bits[l]), axis=-1)
    return total + tf.reduce_sum(bernoulli_log_prob(self.prior_logits, bits[L - 1]), axis=-1)

  @tf.autograph.experimental.do_not_convert
  def elbo(self, x, bits, logits):
    """``log p(x, b) - log q(b | x)`` -> ``[..., B]``.

    ``bits`` and ``logits`` are lists of ``L`` tensors ``[..., B, D]`` (a single tensor
    stands for a one-layer list); ``logits`` are the encoder logits the ``log q`` terms
    use (callers decide their gradients).
    """
    if not isinstance(bits, (list, tuple)):
      bits, logits = [bits], [logits]
    total = self.log_joint(x, bits)
    for b, a in zip(bits, logits):
      total -= tf.reduce_sum(bernoulli_log_prob(a, b), axis=-1)
    return total

  @tf.autograph.experimental.do_not_convert
  def bound(self, x, uniforms):
    """``log mean_k exp ELBO(x, b_k)`` over ancestral samples ``b_k ~ q(b | x)``: -> ``[..., B]``.

    ``uniforms``: one U(0, 1) tensor ``[K, ..., B, D]`` per layer; K is their leading axis.
    """
    bits, logits = self.complete(x, [], 0, uniforms)
    num_samples = int(uniforms[0].shape[0])
    return tf.reduce_logsumexp(self.elbo(x, bits, logits), axis=0) - math.log(num_samples)


def _output_bias(mean_train):
  clipped = tf.clip_by_value(tf.constant(mean_train, tf.float32), 0.001, 0.999)
  return tf.math.log(clipped) - tf.math.log1p(-clipped)


def build_model(
  name,
  mean_train,
  seed,
  encoder_input="centered",
  latent_input="signed",
  initialization="glorot_data_bias",
  num_latents=NUM_LATENTS,
  hidden_units=HIDDEN_UNITS,
):
  """The model called ``name`` (see the module docstring), initialised from ``seed``.

  ``seed``: one ``(int, int)`` pair, or a list of ``M`` pairs to stack ``M`` members (the
  training loop passes ``(run seed, contracts.streams.MODEL_INIT_SALT or
  LAYERED_MODEL_INIT_SALT)``). Weights are Glorot-uniform with zero biases; with
  ``initialization="glorot_data_bias"`` the pixel logits' bias starts at
  ``logit(clip(mean_train, 0.001, 0.999))``.
  """
  if initialization not in INITIALIZATIONS:
    raise ValueError(f"initialization must be one of {INITIALIZATIONS}, got {initialization!r}")
  layers = num_stochastic_layers(name)
  stacked = isinstance(seed, list)
  seed = tf.constant(seed, tf.int32)
  num_pixels = int(np.shape(mean_train)[-1])
  output_bias = _output_bias(mean_train) if initialization == "glorot_data_bias" else None
  if layers == 1:
    hidden = [] if name == "linear" else [hidden_units, hidden_units]
    enc_seed, dec_seed = tf.unstack(members.split(seed, 2))
    enc_sizes = [num_pixels] + hidden + [num_latents]
    dec_sizes = [num_latents] + hidden + [num_pixels]
    encoders = [MLP(enc_sizes, members.split(enc_seed, len(enc_sizes) - 1), name="encoder")]
    decoders = [MLP(dec_sizes, members.split(dec_seed, len(dec_sizes) - 1), output_bias=output_bias, name="decoder")]
  else:
    # One seed per dense layer: the encoders take the first L, the decoders the last L.
    seeds = members.split(seed, 2 * layers)
    D, P = num_latents, num_pixels
    encoders = [Dense(P if l == 0 else D, D, seeds[l], name=f"encoder_{l}") for l in range(layers)]
    decoders = [
      Dense(D, P if l == 0 else D, seeds[layers + l], output_bias if l == 0 else None, name=f"decoder_{l}")
      for l in range(layers)
    ]
  return BernoulliVAE(
    name,
    encoders,
    decoders,
    mean_train,
    num_latents,
    num_members=int(seed.shape[0]) if stacked else None,
    encoder_input=encoder_input,
    latent_input=latent_input,
  )
