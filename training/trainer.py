"""Training and evaluation of one Bernoulli VAE run, in the graph.

``Trainer.train(num_steps)`` runs a whole block of steps in one ``tf.function``
call (a ``tf.while_loop``, compiled with XLA): batch selection, dynamic
binarisation, the estimator, all optimisers and the gradient-variance moving
averages happen without returning to Python. Randomness is stateless: step ``t``
of a run with seed ``s`` draws from ``fold_in(s, t)``, so a run is reproducible and
a resumed run continues exactly where it stopped.

The training loop knows estimators only through the registry (``Estimator``
objects): it hands the estimator ``f(b) = ELBO(x, b)`` with the encoder logits
held fixed inside ``f`` (their direct gradient has expectation zero,
PROTOCOL.md section 1) and backpropagates the estimate into the logits.
"""

import math
import time

import numpy as np
import tensorflow as tf

from datasets import binarize
from estimators import get_estimator
from models import BernoulliVAE
from training.optim import SGD, Adam

# Images per chunk in evaluation: big enough to keep the matrix units busy, small
# enough that [100 samples x chunk x 784] float32 activations stay ~100 MB.
TRAIN_ELBO_CHUNK = 10000
BOUND_CHUNK = 250


def _fold(seed, *values):
  for v in values:
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(v, tf.int64))
  return seed


class Trainer(tf.Module):
  """Holds a run's model, optimisers, estimator state and counters (all checkpointable)."""

  def __init__(self, config, splits, train_jit=False, eval_jit=True, model=None):
    """``model`` overrides the config's BernoulliVAE (tests use tiny ones)."""
    super().__init__(name="trainer")
    self.config = config
    self.estimator = get_estimator(config.estimator)
    self.model = model or BernoulliVAE(config.model, splits.mean_train, seed=config.seed)
    self.train_images = tf.constant(splits.train, tf.float32)
    self.valid_images = tf.constant(splits.valid, tf.float32)
    self.test_images = tf.constant(splits.test, tf.float32)
    num_train = int(splits.train.shape[0])
    if num_train < config.batch_size:
      raise ValueError(f"batch_size {config.batch_size} exceeds the {num_train} training images")
    self.steps_per_epoch = num_train // config.batch_size  # the remainder of each epoch is dropped
    self.base_seed = tf.constant([config.seed, 0], tf.int32)

    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self.permutation = tf.Variable(tf.range(num_train, dtype=tf.int32), trainable=False, name="permutation")
    self.encoder_optimizer = Adam(self.model.encoder_variables, config.encoder_lr, name="encoder_adam")
    self.decoder_optimizer = Adam(self.model.decoder_variables, config.decoder_lr, name="decoder_adam")
    self.prior_optimizer = SGD([self.model.prior_logits], config.prior_lr, name="prior_sgd")
    if self.estimator.has_state:
      self.estimator_state = self.estimator.make_state(
          self.model.num_latents, self.model.num_pixels, seed=(config.seed, 2))
      # PROTOCOL.md section 2 (RELAX): the encoder's learning rate, beta1 = 0.999.
      self.estimator_optimizer = Adam(self.estimator_state.trainable_variables, config.encoder_lr,
                                      beta1=0.999, name="estimator_adam")
    else:
      self.estimator_state = None
    self.grad_mean_ema = [tf.Variable(tf.zeros_like(v), trainable=False, name="grad_mean_ema")
                          for v in self.model.encoder_variables]
    self.grad_sq_ema = [tf.Variable(tf.zeros_like(v), trainable=False, name="grad_sq_ema")
                        for v in self.model.encoder_variables]
    # On CPU, XLA's while loop around these small matrix products measured slower than
    # TF's own kernels (benchmarks/README.md), while XLA wins on the large,
    # elementwise-heavy evaluation batches; each choice can be overridden.
    self._train_block = tf.function(self._train_block_impl, jit_compile=train_jit)
    self._elbo_sum = tf.function(self._elbo_sum_impl, jit_compile=eval_jit)
    self._bound_sum = tf.function(self._bound_sum_impl, jit_compile=eval_jit)

  # ------------------------------------------------------------------ training
  def checkpoint(self):
    """Everything a resumed run needs (the data tensors are rebuilt from the files)."""
    items = dict(model=self.model, step=self.step, permutation=self.permutation,
                 encoder_optimizer=self.encoder_optimizer, decoder_optimizer=self.decoder_optimizer,
                 grad_mean_ema=self.grad_mean_ema, grad_sq_ema=self.grad_sq_ema)
    if self.estimator_state is not None:
      items.update(estimator_state=self.estimator_state, estimator_optimizer=self.estimator_optimizer)
    return tf.train.Checkpoint(**items)

  def _next_batch(self, seed):
    batch = self.config.batch_size
    position = self.step % self.steps_per_epoch
    if position == 0:  # a fresh permutation at the start of every epoch
      epoch = self.step // self.steps_per_epoch
      keys = tf.random.stateless_uniform(tf.shape(self.permutation), _fold(self.base_seed, 1, epoch))
      self.permutation.assign(tf.cast(tf.argsort(keys), tf.int32))
    start = tf.cast(position, tf.int32) * batch
    indices = tf.slice(self.permutation, [start], [batch])
    return binarize(tf.gather(self.train_images, indices), seed)

  def gradients(self, x, seed):
    """One estimate of every gradient at binarised batch ``x``, without applying it.

    Returns ``(loss, encoder_grads, decoder_grads, state_grads)``: ``loss`` is -mean
    ELBO at the estimator's samples; encoder gradients are the estimator's
    per-example estimates backpropagated into the encoder (descent direction on
    -mean ELBO); decoder gradients (decoder layers, then prior logits) are those of
    ``loss``; ``state_grads`` are the gradients of the sum of squared encoder
    gradients with respect to the estimator's own parameters (``None`` without).
    """
    model, estimator, state = self.model, self.estimator, self.estimator_state
    batch_size = tf.cast(tf.shape(x)[0], tf.float32)
    encoder_vars = list(model.encoder_variables)
    decoder_vars = list(model.decoder_variables) + [model.prior_logits]
    with tf.GradientTape() as variance_tape:
      with tf.GradientTape(persistent=True) as tape:
        logits = model.encoder_logits(x)
        # Single-sample estimators see log q(b|x) as a fixed function of b (its direct
        # gradient has expectation zero); multi-sample bounds keep the direct term.
        f_logits = logits if estimator.multi_sample else tf.stop_gradient(logits)
        objective = lambda b: model.elbo(x, b, f_logits)
        out = estimator.fn(objective, logits, seed, state=state, context=model.encoder_input(x))
        # Decoder and prior: gradient of the objective at the estimator's samples
        # (-mean ELBO, or -mean K-sample bound).
        loss = -tf.reduce_mean(out.objective_value())
      # Only RELAX-like estimators need the estimate differentiable w.r.t. their own parameters.
      grad = out.grad if state is not None else tf.stop_gradient(out.grad)
      # Encoder: backpropagate the per-example estimate; ascent on mean ELBO = descent on -mean.
      encoder_grads = tape.gradient(logits, encoder_vars, output_gradients=-grad / batch_size)
      if estimator.multi_sample:  # plus the direct term: the bound's own dependence on the encoder
        direct = tape.gradient(loss, encoder_vars)
        encoder_grads = [g + d for g, d in zip(encoder_grads, direct)]
      if state is not None:
        variance_loss = tf.add_n([tf.reduce_sum(tf.square(g)) for g in encoder_grads])
    decoder_grads = tape.gradient(loss, decoder_vars)
    del tape
    state_grads = None
    if state is not None:
      state_grads = variance_tape.gradient(variance_loss, state.trainable_variables)
    encoder_grads = [tf.stop_gradient(g) for g in encoder_grads]
    return loss, encoder_grads, decoder_grads, state_grads

  def _train_step(self):
    step_seed = _fold(self.base_seed, 0, self.step)
    data_seed, estimator_seed = tf.unstack(tf.random.experimental.stateless_split(step_seed, 2))
    return self.update(self._next_batch(data_seed), estimator_seed)

  def update(self, x, seed):
    """One optimisation step on binarised batch ``x``: all optimisers, the moving averages, step += 1."""
    loss, encoder_grads, decoder_grads, state_grads = self.gradients(x, seed)
    if state_grads is not None:
      self.estimator_optimizer.apply(state_grads)
    self.encoder_optimizer.apply(encoder_grads)
    self.decoder_optimizer.apply(decoder_grads[:-1])
    self.prior_optimizer.apply(decoder_grads[-1:])
    decay = self.config.grad_ema_decay
    for g, mean_ema, sq_ema in zip(encoder_grads, self.grad_mean_ema, self.grad_sq_ema):
      mean_ema.assign(decay * mean_ema + (1.0 - decay) * g)
      sq_ema.assign(decay * sq_ema + (1.0 - decay) * tf.square(g))
    self.step.assign_add(1)
    return loss

  def _train_block_impl(self, num_steps):
    """num_steps training steps; returns the mean training loss (-ELBO at the samples) over them."""
    total = tf.constant(0.0)
    for _ in tf.range(num_steps):
      total += self._train_step()
    return total / tf.cast(num_steps, tf.float32)

  def train(self, num_steps):
    return float(self._train_block(tf.constant(num_steps, tf.int64)))

  # ---------------------------------------------------------------- evaluation
  def gradient_variance(self):
    """mean over encoder parameters of EMA[g^2] - EMA[g]^2 (PROTOCOL.md section 5).

    Both moving averages start at zero, so they are bias-corrected by
    1 / (1 - decay^t) as in Adam; without it the variance reads low for the first
    few thousand steps.
    """
    t = int(self.step.numpy())
    if t == 0:
      return float("nan")
    correction = 1.0 - self.config.grad_ema_decay ** t
    total, count = 0.0, 0
    for mean_ema, sq_ema in zip(self.grad_mean_ema, self.grad_sq_ema):
      mean = mean_ema.numpy().astype(np.float64) / correction
      sq = sq_ema.numpy().astype(np.float64) / correction
      total += float(np.sum(sq - mean ** 2))
      count += mean.size
    return total / count

  def _elbo_sum_impl(self, images, seed):
    x_seed, b_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    x = binarize(images, x_seed)
    logits = self.model.encoder_logits(x)
    u = tf.random.stateless_uniform(tf.shape(logits), b_seed)
    b = tf.cast(u < tf.sigmoid(logits), tf.float32)
    return tf.reduce_sum(self.model.elbo(x, b, logits))

  def _bound_sum_impl(self, images, seed, num_samples):
    x_seed, b_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    x = binarize(images, x_seed)  # one binarisation per image, shared by its K samples
    return tf.reduce_sum(self.model.multisample_bound(x, num_samples, b_seed))

  def _chunked_mean(self, fn, images, chunk, seed, *args):
    n = int(images.shape[0])
    total = 0.0
    for i, start in enumerate(range(0, n, chunk)):
      total += float(fn(images[start:start + chunk], _fold(seed, i), *args))
    return total / n

  def _eval_seed(self, purpose):
    # Evaluation noise depends on the step, not on how often we evaluated: reproducible on resume.
    return _fold(tf.constant([self.config.seed, 1], tf.int32), purpose, self.step)

  def train_elbo(self):
    """Single-sample ELBO averaged over one pass of the training split (fresh binarisation)."""
    return self._chunked_mean(self._elbo_sum, self.train_images, TRAIN_ELBO_CHUNK, self._eval_seed(0))

  def bound(self, split, num_samples=None):
    """The K-sample bound averaged over a split ("valid" or "test"), K = num_bound_samples by default."""
    images = {"valid": self.valid_images, "test": self.test_images}[split]
    k = num_samples or self.config.num_bound_samples
    chunk = max(1, (BOUND_CHUNK * 100) // k)
    purpose = {"valid": 1, "test": 2}[split]
    return self._chunked_mean(self._bound_sum, images, chunk, self._eval_seed(purpose), k)

  def bound_columns(self):
    """Both splits' bounds: 100 samples, and the estimator's own K when it trains a K-sample bound."""
    row = {"valid_bound_100": self.bound("valid"), "test_bound_100": self.bound("test")}
    k = self.estimator.eval_bound_samples
    row["valid_bound_k"] = self.bound("valid", k) if k else math.nan
    row["test_bound_k"] = self.bound("test", k) if k else math.nan
    return row

  def extra_metrics(self):
    """Estimator-specific scalars worth logging (RELAX's temperature and scale)."""
    if self.estimator_state is not None and hasattr(self.estimator_state, "temperature"):
      return {"relax_temperature": float(self.estimator_state.temperature.numpy()),
              "relax_scale": float(self.estimator_state.scale.numpy())}
    return {"relax_temperature": math.nan, "relax_scale": math.nan}
