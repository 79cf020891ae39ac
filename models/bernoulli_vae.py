"""Bernoulli VAEs with 200 binary latents (PROTOCOL.md section 3).

* prior ``p(b)``: factorised Bernoulli, trainable logits (start 0);
* encoder ``q(b | x)``: logits from ``x - mean(x_train)``;
* decoder ``p(x | b)``: pixel logits from ``2b - 1``, output bias starting at
  ``logit(clip(mean(x_train), 0.001, 0.999))``;
* ``linear``: one dense layer each way; ``nonlinear``: two hidden layers of 200
  LeakyReLU(0.3) units each way (784-200-200-200 / 200-200-200-784).

``elbo(x, b, encoder_logits)`` is the single-sample ELBO
``log p(x|b) + log p(b) - log q(b|x)`` summed over pixels and bits. It accepts
bits with extra leading sample dimensions (``[S, batch, D]`` against ``x`` of
``[batch, 784]``), and relaxed bits in (0, 1) as well (every term is linear in
``b``), which RELAX uses. The model knows nothing of gradient estimators.
"""

import math

import tensorflow as tf

from models import members

MODELS = ("linear", "nonlinear")
NUM_LATENTS = 200
HIDDEN_UNITS = 200
LEAKY_SLOPE = 0.3


def bernoulli_log_prob(logits, values):
  """log Bernoulli(values; sigmoid(logits)) elementwise; linear in values, so valid for relaxed values."""
  # values * log sigmoid(l) + (1 - values) * log sigmoid(-l) == values * l - softplus(l);
  # written out because tf.nn.sigmoid_cross_entropy_with_logits does not broadcast.
  return values * logits - tf.nn.softplus(logits)


def stacked_matmul(x, w):
  """Per-member products: x ``[..., M, B, n]`` times w ``[M, n, k]`` -> ``[..., M, B, k]``.

  Extra leading sample dimensions are folded into each member's rows first, so
  that every member does one large product and the weight gradient comes out
  as ``[M, n, k]`` directly (a broadcasting batch matmul would materialise one
  weight gradient per sample and then sum them).
  """
  rank = x.shape.rank
  if rank == 3:
    return tf.matmul(x, w)
  lead = rank - 3
  perm = [lead] + list(range(lead)) + [lead + 1, lead + 2]
  moved = tf.transpose(x, perm)                                   # [M, ..., B, n]
  moved_shape = tf.shape(moved)
  flat = tf.reshape(moved, tf.stack([moved_shape[0], -1, moved_shape[-1]]))
  product = tf.matmul(flat, w)                                    # [M, rows, k]
  product = tf.reshape(product, tf.concat([moved_shape[:-1], tf.shape(w)[-1:]], axis=0))
  inverse = [0] * rank
  for i, p in enumerate(perm):
    inverse[p] = i
  return tf.transpose(product, inverse)


def member_seeds(seed, salt):
  """The ``[2]`` seed ``(seed, salt)``, or ``[M, 2]`` of them for a sequence of member seeds."""
  if isinstance(seed, (list, tuple)):
    return tf.constant([[int(s), salt] for s in seed], tf.int32)
  return tf.constant([int(seed), salt], tf.int32)


class Dense(tf.Module):
  """A dense layer with Glorot-uniform weights (the Keras default) and zero bias.

  ``seed`` is one ``[2]`` seed (weights ``[n, k]``) or ``[M, 2]`` seeds for ``M``
  stacked members (weights ``[M, n, k]``, bias ``[M, 1, k]``; inputs then carry
  the member axis just before the batch axis, ``[..., M, B, n]``). Member ``m``
  is initialised exactly as an unstacked layer with seed ``seed[m]``.
  """

  def __init__(self, in_dim, out_dim, seed, bias_init=None, name=None):
    super().__init__(name=name)
    seed = tf.convert_to_tensor(seed)
    limit = math.sqrt(6.0 / (in_dim + out_dim))
    bias = tf.zeros([out_dim]) if bias_init is None else tf.reshape(tf.constant(bias_init, tf.float32), [out_dim])
    init = lambda s: tf.random.stateless_uniform([in_dim, out_dim], s, -limit, limit)
    if seed.shape.rank == 1:
      self.num_members = None
      self.w = tf.Variable(init(seed), name="w")
      self.b = tf.Variable(bias, name="b")
    else:
      self.num_members = int(seed.shape[0])
      self.w = tf.Variable(tf.stack([init(s) for s in tf.unstack(seed)]), name="w")
      self.b = tf.Variable(tf.tile(bias[tf.newaxis, tf.newaxis], [self.num_members, 1, 1]), name="b")

  def __call__(self, x):
    if self.num_members is None:
      return tf.matmul(x, self.w) + self.b
    return stacked_matmul(x, self.w) + self.b


class MLP(tf.Module):
  """Dense layers with LeakyReLU between them and a linear last layer."""

  def __init__(self, sizes, seed, output_bias=None, name=None):
    super().__init__(name=name)
    seeds = members.split(seed, len(sizes) - 1)
    self.layers = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
      last = i == len(sizes) - 2
      self.layers.append(Dense(d_in, d_out, seeds[i], output_bias if last else None, name=f"dense_{i}"))

  def __call__(self, x):
    for layer in self.layers[:-1]:
      x = tf.nn.leaky_relu(layer(x), alpha=LEAKY_SLOPE)
    return self.layers[-1](x)


class BernoulliVAE(tf.Module):
  """A Bernoulli VAE: ``model`` in MODELS, ``mean_train`` the per-pixel training mean."""

  def __init__(self, model, mean_train, seed=0, num_latents=NUM_LATENTS, hidden_units=HIDDEN_UNITS,
               name="bernoulli_vae"):
    super().__init__(name=name)
    if model not in MODELS:
      raise ValueError(f"unknown model {model!r}; valid models: {', '.join(MODELS)}")
    mean_train = tf.constant(mean_train, tf.float32)
    num_pixels = int(mean_train.shape[-1])
    self.model = model
    self.num_latents = num_latents
    self.num_pixels = num_pixels
    self.mean_train = mean_train
    hidden = [] if model == "linear" else [hidden_units, hidden_units]
    clipped = tf.clip_by_value(mean_train, 0.001, 0.999)
    output_bias = tf.math.log(clipped) - tf.math.log1p(-clipped)
    self.num_members = len(seed) if isinstance(seed, (list, tuple)) else None
    enc_seed, dec_seed = tf.unstack(members.split(member_seeds(seed, 1), 2))
    self.encoder = MLP([num_pixels] + hidden + [num_latents], enc_seed, name="encoder")
    self.decoder = MLP([num_latents] + hidden + [num_pixels], dec_seed, output_bias=output_bias, name="decoder")
    prior_shape = [num_latents] if self.num_members is None else [self.num_members, 1, num_latents]
    self.prior_logits = tf.Variable(tf.zeros(prior_shape), name="prior_logits")

  @property
  def encoder_variables(self):
    return self.encoder.trainable_variables

  @property
  def decoder_variables(self):
    return self.decoder.trainable_variables

  def encoder_input(self, x):
    """What the encoder sees (and what RELAX's control network gets as context)."""
    return x - self.mean_train

  def encoder_logits(self, x):
    return self.encoder(self.encoder_input(x))

  def decoder_logits(self, b):
    return self.decoder(2.0 * b - 1.0)

  def elbo(self, x, b, encoder_logits):
    """``log p(x|b) + log p(b) - log q(b|x)``: x [batch, P], b [..., batch, D] -> [..., batch]."""
    log_likelihood = tf.reduce_sum(bernoulli_log_prob(self.decoder_logits(b), x), axis=-1)
    log_prior = tf.reduce_sum(bernoulli_log_prob(self.prior_logits, b), axis=-1)
    log_posterior = tf.reduce_sum(bernoulli_log_prob(encoder_logits, b), axis=-1)
    return log_likelihood + log_prior - log_posterior

  def multisample_bound(self, x, num_samples, seed):
    """``log mean_{k<=K} exp ELBO(x, b_k)``, b_k ~ q(b|x) independent: x [batch, P] -> [batch].

    Stacked: x ``[M, batch, P]`` and ``[M, 2]`` seeds (one stream per member) -> ``[M, batch]``.
    """
    logits = self.encoder_logits(x)
    u = members.uniform(tf.concat([[num_samples], tf.shape(logits)], 0), seed, member_axis=1)
    b = tf.cast(u < tf.sigmoid(logits), tf.float32)
    elbos = self.elbo(x, b, logits)
    return tf.reduce_logsumexp(elbos, axis=0) - math.log(num_samples)
