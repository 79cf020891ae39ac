"""Training and evaluation of Bernoulli VAE runs, in the graph, several runs at once.

A ``Trainer`` holds ``M >= 1`` independent runs ("members") of one cell
(dataset x model x estimator and every hyperparameter alike, seeds differing),
stacked along a leading member axis of every parameter, optimiser slot and
moving average: one graph trains them all with batched matrix products, which
amortises TensorFlow's per-operation cost over the members (issue 5,
benchmarks/README.md). Members never interact: every loss is a sum of
per-member terms, every update is elementwise, and each member draws its noise
from its own stateless stream (``models.members``), so member ``m`` computes
exactly the run it would have been alone with its seed (tests/test_stacking.py).

``Trainer.train(num_steps)`` runs a whole block of steps in one ``tf.function``
call (a ``tf.while_loop``): batch selection, dynamic binarisation, the
estimator, all optimisers and the gradient-variance moving averages happen
without returning to Python. Randomness is stateless: step ``t`` of the member
with seed ``s`` draws from ``fold_in(s, t)``, so a run is reproducible and a
resumed run continues exactly where it stopped, stacked or not.

The training loop knows estimators only through the registry (``Estimator``
objects): it hands the estimator ``f(b) = ELBO(x, b)`` with the encoder logits
held fixed inside ``f`` (their direct gradient has expectation zero,
PROTOCOL.md section 1) and backpropagates the estimate into the logits.
"""

import math

import numpy as np
import tensorflow as tf

from datasets import binarize
from estimators import get_estimator
from models import build_model, members
from training import layerwise
from training.optim import SGD, Adam

# Images per chunk in evaluation, per member: big enough to keep the matrix units
# busy, small enough that [100 samples x chunk x 784] float32 activations stay
# ~100 MB (benchmarks/bench_training.py measures the choice).
TRAIN_ELBO_CHUNK = 10000
BOUND_CHUNK = 250


def _fold(seed, *values):
  for v in values:
    seed = members.fold_in(seed, v)
  return seed


def _binarize_members(images, seeds):
  """images ``[M, N, P]`` (or ``[N, P]`` shared by all), seeds ``[M, 2]`` -> ``[M, N, P]``, one draw per member."""
  rows = tf.unstack(images) if images.shape.rank == 3 else [images] * int(seeds.shape[0])
  return tf.stack([binarize(x, s) for x, s in zip(rows, tf.unstack(seeds))])


class Trainer(tf.Module):
  """``M`` stacked runs of one cell: model, optimisers, estimator state, counters.

  ``configs`` is one ``RunConfig`` (``M = 1``) or a list of them that differ only
  in ``seed``. Per-member results (``train``, ``gradient_variance``,
  ``train_elbo``, ``bound``, ...) come back as length-``M`` lists in the order of
  ``configs``.
  """

  def __init__(self, configs, splits, train_jit=False, eval_jit=True, model=None):
    """``model`` overrides the config's BernoulliVAE (tests use tiny ones); it must be stacked ``M`` wide."""
    super().__init__(name="trainer")
    configs = list(configs) if isinstance(configs, (list, tuple)) else [configs]
    check_stackable(configs)
    self.configs = configs
    self.config = configs[0]  # every field but the seed is shared
    config = self.config
    self.seeds = [c.seed for c in configs]
    self.num_members = len(configs)
    self.estimator = get_estimator(config.estimator)
    self.model = model or build_model(config.model, splits.mean_train, seed=list(self.seeds))
    # Hierarchical models train with per-layer estimators (training/layerwise.py).
    self.hierarchical = getattr(self.model, "num_layers", 1) > 1
    if getattr(self.model, "num_members", None) != self.num_members:
      raise ValueError(f"the model must be stacked for {self.num_members} member(s) "
                       f"(built with seed=<list of {self.num_members} seeds>)")
    self.train_images = tf.constant(splits.train, tf.float32)
    self.valid_images = tf.constant(splits.valid, tf.float32)
    self.test_images = tf.constant(splits.test, tf.float32)
    num_train = int(splits.train.shape[0])
    if num_train < config.batch_size:
      raise ValueError(f"batch_size {config.batch_size} exceeds the {num_train} training images")
    self.steps_per_epoch = num_train // config.batch_size  # the remainder of each epoch is dropped
    self.base_seed = tf.constant([[s, 0] for s in self.seeds], tf.int32)  # [M, 2]

    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self.permutation = tf.Variable(tf.tile(tf.range(num_train, dtype=tf.int32)[tf.newaxis], [self.num_members, 1]),
                                   trainable=False, name="permutation")
    self.encoder_optimizer = Adam(self.model.encoder_variables, config.encoder_lr, name="encoder_adam")
    self.decoder_optimizer = Adam(self.model.decoder_variables, config.decoder_lr, name="decoder_adam")
    self.prior_optimizer = SGD([self.model.prior_logits], config.prior_lr, name="prior_sgd")
    if self.estimator.has_state:
      if self.hierarchical:  # one state (RELAX: control network, temperature, scale) per layer
        self.estimator_state = tf.Module(name="layer_states")
        self.estimator_state.layers = layerwise.make_layer_states(
            self.model, self.estimator.name, seed=[(s, 2) for s in self.seeds])
      else:
        self.estimator_state = self.estimator.make_state(
            self.model.num_latents, self.model.num_pixels, seed=[(s, 2) for s in self.seeds])
      # PROTOCOL.md section 2 (RELAX): the encoder's learning rate, beta1 = 0.999.
      self.estimator_optimizer = Adam(self.estimator_state.trainable_variables, config.encoder_lr,
                                      beta1=0.999, name="estimator_adam")
    else:
      self.estimator_state = None
    self.grad_mean_ema = [tf.Variable(tf.zeros_like(v), trainable=False, name="grad_mean_ema")
                          for v in self.model.encoder_variables]
    self.grad_sq_ema = [tf.Variable(tf.zeros_like(v), trainable=False, name="grad_sq_ema")
                        for v in self.model.encoder_variables]
    # On CPU, XLA compiling the training loop measured several times slower than
    # TensorFlow's own kernels (its matrix products are slower), while the evaluation's
    # large matmul + softplus + sum batches gain from fusion (benchmarks/README.md).
    # Evaluation numbers depend on this choice: XLA draws a different (equally valid)
    # random stream for the same stateless seed.
    self.basket = [get_estimator(name) for name in config.basket]
    self._train_block = tf.function(self._train_block_impl, jit_compile=train_jit)
    # The moving averages are pure elementwise streams over every encoder parameter:
    # compiled, XLA fuses each into one pass over memory (measured: benchmarks/README.md).
    self._moving_averages = tf.function(self._moving_averages_impl, jit_compile=True)
    self._basket_sums = tf.function(self._basket_sums_impl)
    self._elbo_sum = tf.function(self._elbo_sum_impl, jit_compile=eval_jit)
    self._bound_sum = tf.function(self._bound_sum_impl, jit_compile=eval_jit)

  # ------------------------------------------------------------ checkpoint state
  def state_variables(self):
    """``{name: (variable, per_member)}``: everything a resumed run needs, in a fixed order.

    ``per_member`` variables carry the member axis first; the others (step
    counters) are shared by all members. Data tensors are rebuilt from the files.
    """
    groups = [("model/encoder", self.model.encoder_variables),
              ("model/decoder", self.model.decoder_variables),
              ("model/prior_logits", [self.model.prior_logits]),
              ("permutation", [self.permutation]),
              ("grad_mean_ema", self.grad_mean_ema), ("grad_sq_ema", self.grad_sq_ema)]
    optimizers = [("encoder_adam", self.encoder_optimizer), ("decoder_adam", self.decoder_optimizer)]
    if self.estimator_state is not None:
      groups.append(("estimator_state", self.estimator_state.trainable_variables))
      optimizers.append(("estimator_adam", self.estimator_optimizer))
    for name, opt in optimizers:
      groups += [(f"{name}/m", opt.m), (f"{name}/v", opt.v)]
    out = {"step": (self.step, False)}
    for name, opt in optimizers:
      out[f"{name}/iterations"] = (opt.iterations, False)
    for group, variables in groups:
      for i, v in enumerate(variables):
        out[f"{group}/{i}"] = (v, True)
    return out

  def member_state(self, m):
    """Member ``m``'s state as ``{name: numpy array}`` (what a lone run of its seed would hold)."""
    return {name: (v[m] if per_member else v).numpy() for name, (v, per_member) in self.state_variables().items()}

  def load_member_state(self, m, state):
    """Loads ``member_state``'s output into member ``m``; the shared counters must agree across members."""
    variables = self.state_variables()
    missing = sorted(set(variables) - set(state))
    if missing:
      raise ValueError(f"the checkpoint lacks {', '.join(missing[:5])}: it was written by another "
                       "model, estimator or version of the suite")
    for name, (v, per_member) in variables.items():
      value = np.asarray(state[name])
      target_shape = v.shape[1:] if per_member else v.shape
      if tuple(value.shape) != tuple(target_shape):
        raise ValueError(f"checkpoint entry {name} has shape {value.shape}, the model needs {tuple(target_shape)}")
      if per_member:
        v[m].assign(value)
      else:
        v.assign(value)

  # ------------------------------------------------------------------ training
  def _next_batch(self, seed):
    batch = self.config.batch_size
    position = self.step % self.steps_per_epoch
    if position == 0:  # a fresh permutation at the start of every epoch
      epoch = self.step // self.steps_per_epoch
      keys = members.uniform(tf.shape(self.permutation), _fold(self.base_seed, 1, epoch))
      self.permutation.assign(tf.cast(tf.argsort(keys, axis=-1), tf.int32))
    start = tf.cast(position, tf.int32) * batch
    indices = tf.slice(self.permutation, [0, start], [self.num_members, batch])   # [M, B]
    return _binarize_members(tf.gather(self.train_images, indices), seed)

  def gradients(self, x, seed):
    """One estimate of every gradient at binarised batches ``x`` ``[M, B, P]``, seeds ``[M, 2]``.

    Returns ``(loss, encoder_grads, decoder_grads, state_grads)``: ``loss`` ``[M]``
    is each member's -mean ELBO at the estimator's samples; encoder gradients are
    the estimator's per-example estimates backpropagated into the encoder (descent
    direction on -mean ELBO); decoder gradients (decoder layers, then prior logits)
    are those of ``loss``; ``state_grads`` are the gradients of the sum of squared
    encoder gradients with respect to the estimator's own parameters (``None``
    without). Every gradient has the member axis first; member ``m``'s slice
    depends on member ``m`` alone (the losses are summed across members).
    """
    model, estimator, state = self.model, self.estimator, self.estimator_state
    batch_size = tf.cast(tf.shape(x)[-2], tf.float32)
    encoder_vars = list(model.encoder_variables)
    decoder_vars = list(model.decoder_variables) + [model.prior_logits]
    # Only estimators with trainable parameters (RELAX) need the estimate differentiable
    # w.r.t. them, so only they pay for the outer tape.
    variance_tape = tf.GradientTape() if state is not None else None
    if variance_tape is not None:
      variance_tape.__enter__()
    if self.hierarchical:
      loss, encoder_grads, decoder_grads = layerwise.hierarchical_gradients(
          model, estimator.name, x, seed, states=state.layers if state is not None else None,
          share_upper_noise=self.config.share_upper_noise)
      tape = None
    else:
      with tf.GradientTape(persistent=True) as tape:
        logits = model.encoder_logits(x)
        # Single-sample estimators see log q(b|x) as a fixed function of b (its direct
        # gradient has expectation zero); multi-sample bounds keep the direct term.
        f_logits = logits if estimator.multi_sample else tf.stop_gradient(logits)
        objective = lambda b: model.elbo(x, b, f_logits)
        out = estimator.fn(objective, logits, seed, state=state, context=model.encoder_input(x))
        # Decoder and prior: gradient of the objective at the estimator's samples
        # (-mean ELBO, or -mean K-sample bound), one loss per member.
        loss = -tf.reduce_mean(out.objective_value(), axis=-1)
        total_loss = tf.reduce_sum(loss)
      grad = out.grad if state is not None else tf.stop_gradient(out.grad)
      # Encoder: backpropagate the per-example estimate; ascent on mean ELBO = descent on -mean.
      encoder_grads = tape.gradient(logits, encoder_vars, output_gradients=-grad / batch_size)
      if estimator.multi_sample:  # plus the direct term: the bound's own dependence on the encoder
        direct = tape.gradient(total_loss, encoder_vars)
        encoder_grads = [g + d for g, d in zip(encoder_grads, direct)]
    state_grads = None
    if variance_tape is not None:
      variance_loss = tf.add_n([tf.reduce_sum(tf.square(g)) for g in encoder_grads])
      variance_tape.__exit__(None, None, None)
      state_grads = variance_tape.gradient(variance_loss, state.trainable_variables)
    if tape is not None:
      decoder_grads = tape.gradient(total_loss, decoder_vars)
      del tape
    encoder_grads = [tf.stop_gradient(g) for g in encoder_grads]
    return loss, encoder_grads, decoder_grads, state_grads

  def _train_step(self):
    step_seed = _fold(self.base_seed, 0, self.step)
    data_seed, estimator_seed = tf.unstack(members.split(step_seed, 2))
    return self.update(self._next_batch(data_seed), estimator_seed)

  def update(self, x, seed):
    """One optimisation step on binarised batches ``x``: all optimisers, the moving averages, step += 1."""
    loss, encoder_grads, decoder_grads, state_grads = self.gradients(x, seed)
    if state_grads is not None:
      self.estimator_optimizer.apply(state_grads)
    self.encoder_optimizer.apply(encoder_grads)
    self.decoder_optimizer.apply(decoder_grads[:-1])
    self.prior_optimizer.apply(decoder_grads[-1:])
    self._moving_averages(encoder_grads)
    self.step.assign_add(1)
    return loss

  def _moving_averages_impl(self, encoder_grads):
    """EMA[g] and EMA[g^2] of the encoder gradient (PROTOCOL.md section 5)."""
    decay = self.config.grad_ema_decay
    for g, mean_ema, sq_ema in zip(encoder_grads, self.grad_mean_ema, self.grad_sq_ema):
      mean_ema.assign(decay * mean_ema + (1.0 - decay) * g)
      sq_ema.assign(decay * sq_ema + (1.0 - decay) * tf.square(g))

  def _train_block_impl(self, num_steps):
    """num_steps training steps; returns each member's mean training loss (-ELBO at the samples)."""
    total = tf.zeros([self.num_members])
    for _ in tf.range(num_steps):
      total += self._train_step()
    return total / tf.cast(num_steps, tf.float32)

  def train(self, num_steps):
    """Trains every member ``num_steps`` steps; returns their mean training losses (a list)."""
    return [float(v) for v in self._train_block(tf.constant(num_steps, tf.int64)).numpy()]

  # ---------------------------------------------------------------- evaluation
  def gradient_variance(self):
    """Per member: mean over encoder parameters of EMA[g^2] - EMA[g]^2 (PROTOCOL.md section 5).

    Both moving averages start at zero, so they are bias-corrected by
    1 / (1 - decay^t) as in Adam; without it the variance reads low for the first
    few thousand steps.
    """
    t = int(self.step.numpy())
    if t == 0:
      return [float("nan")] * self.num_members
    correction = 1.0 - self.config.grad_ema_decay ** t
    total, count = np.zeros(self.num_members), 0
    for mean_ema, sq_ema in zip(self.grad_mean_ema, self.grad_sq_ema):
      mean = mean_ema.numpy().astype(np.float64) / correction
      sq = sq_ema.numpy().astype(np.float64) / correction
      total += np.sum((sq - mean ** 2).reshape(self.num_members, -1), axis=1)
      count += mean[0].size
    return [float(v) for v in total / count]

  def _elbo_sum_impl(self, images, seed):
    """Per member: the summed single-sample ELBO of ``images`` ``[n, P]`` (fresh binarisation each)."""
    x_seed, b_seed = tf.unstack(members.split(seed, 2))
    x = _binarize_members(images, x_seed)
    if self.hierarchical:
      bits, logits = self.model.sample_posterior(x, b_seed)
      return tf.reduce_sum(self.model.elbo(x, bits, logits), axis=-1)
    logits = self.model.encoder_logits(x)
    u = members.uniform(tf.shape(logits), b_seed)
    b = tf.cast(u < tf.sigmoid(logits), tf.float32)
    return tf.reduce_sum(self.model.elbo(x, b, logits), axis=-1)

  def _bound_sum_impl(self, images, seed, num_samples):
    x_seed, b_seed = tf.unstack(members.split(seed, 2))
    x = _binarize_members(images, x_seed)  # one binarisation per image, shared by its K samples
    return tf.reduce_sum(self.model.multisample_bound(x, num_samples, b_seed), axis=-1)

  def _chunked_mean(self, fn, images, chunk, seed, *args):
    # The chunks' sums stay on the device and are added there: one read-back per
    # split, so the calls queue up without waiting on the host (no sync per chunk).
    n = int(images.shape[0])
    total = tf.zeros([self.num_members])
    for i, start in enumerate(range(0, n, chunk)):
      total += fn(images[start:start + chunk], _fold(seed, i), *args)
    return [float(v) / n for v in total.numpy()]

  def _eval_seed(self, purpose):
    # Evaluation noise depends on the step, not on how often we evaluated: reproducible on resume.
    return _fold(tf.constant([[s, 1] for s in self.seeds], tf.int32), purpose, self.step)

  def train_elbo(self):
    """Per member: single-sample ELBO averaged over one pass of the training split (fresh binarisation)."""
    return self._chunked_mean(self._elbo_sum, self.train_images, TRAIN_ELBO_CHUNK, self._eval_seed(0))

  def bound(self, split, num_samples=None):
    """Per member: the K-sample bound averaged over a split ("valid" or "test"), K = num_bound_samples by default."""
    images = {"valid": self.valid_images, "test": self.test_images}[split]
    k = num_samples or self.config.num_bound_samples
    chunk = max(1, (BOUND_CHUNK * 100) // k)
    purpose = {"valid": 1, "test": 2}[split]
    return self._chunked_mean(self._bound_sum, images, chunk, self._eval_seed(purpose), k)

  def bound_columns(self, with_100=True):
    """Per member: both splits' bounds, 100 samples and (multi-sample estimators) the training K.

    ``with_100=False`` leaves out the costly 100-sample bounds (NaN): the
    training-K bound of a multi-sample estimator costs K/100 of them, so it is
    computed at every evaluation and gives the curve of the trained bound.
    """
    nan = [math.nan] * self.num_members
    columns = {"valid_bound_100": self.bound("valid") if with_100 else nan,
               "test_bound_100": self.bound("test") if with_100 else nan}
    k = self.estimator.eval_bound_samples
    columns["valid_bound_k"] = self.bound("valid", k) if k else nan
    columns["test_bound_k"] = self.bound("test", k) if k else nan
    return [{key: values[m] for key, values in columns.items()} for m in range(self.num_members)]

  # ------------------------------------------------------------ variance basket
  def _encoder_gradient(self, estimator, x, seed, state):
    """One estimate of the encoder gradient (batch mean, descent direction) by ``estimator``."""
    model = self.model
    with tf.GradientTape() as tape:
      logits = model.encoder_logits(x)
      f_logits = tf.stop_gradient(logits)
      out = estimator.fn(lambda b: model.elbo(x, b, f_logits), logits, seed, state=state,
                         context=model.encoder_input(x))
    batch_size = tf.cast(tf.shape(x)[-2], tf.float32)
    return tape.gradient(logits, list(model.encoder_variables),
                         output_gradients=-tf.stop_gradient(out.grad) / batch_size)

  def _basket_sums_impl(self, seed):
    """Sums of the basket estimators' encoder gradients and of their squares over independent draws.

    Every draw takes a fresh minibatch (uniform with replacement from the training
    split, freshly binarised) and fresh estimator noise; all basket estimators see the
    same minibatches, so their variances differ by the estimators alone.
    """
    num_train = int(self.train_images.shape[0])
    shape = [self.num_members, self.config.batch_size]
    num_vars = len(self.model.encoder_variables)
    zeros = [tf.zeros_like(v) for v in self.model.encoder_variables]

    def draw(r, accumulators):
      # accumulators: per basket estimator, its gradient sums then its squared sums (flat).
      draw_seeds = tf.unstack(members.split(_fold(seed, r), 2 + len(self.basket)))
      indices = members.uniform(shape, draw_seeds[0], minval=0, maxval=num_train, dtype=tf.int32)
      x = _binarize_members(tf.gather(self.train_images, indices), draw_seeds[1])
      updated = []
      for e, estimator in enumerate(self.basket):
        state = self.estimator_state if estimator.name == self.estimator.name else None
        grads = self._encoder_gradient(estimator, x, draw_seeds[2 + e], state)
        sums = accumulators[2 * e * num_vars:(2 * e + 1) * num_vars]
        squares = accumulators[(2 * e + 1) * num_vars:(2 * e + 2) * num_vars]
        updated += [a + g for a, g in zip(sums, grads)] + [a + tf.square(g) for a, g in zip(squares, grads)]
      return r + 1, updated

    _, accumulators = tf.while_loop(lambda r, _: r < self.config.basket_draws, draw,
                                    (tf.constant(0), zeros * (2 * len(self.basket))))
    sums = [accumulators[2 * e * num_vars:(2 * e + 1) * num_vars] for e in range(len(self.basket))]
    squares = [accumulators[(2 * e + 1) * num_vars:(2 * e + 2) * num_vars] for e in range(len(self.basket))]
    return sums, squares

  def basket_variances(self):
    """Per member: ``{basket_var_<name>: variance}`` for the estimators of ``config.basket``.

    The variance of each encoder parameter's gradient estimate (batch mean) over
    ``config.basket_draws`` independent draws at the current parameters (unbiased
    sample variance), averaged over parameters: the same quantity as
    ``gradient_variance`` but for every basket estimator at one and the same point,
    without the drift of the parameters that the moving averages also see.
    """
    if not self.basket:
      return [{} for _ in range(self.num_members)]
    draws = self.config.basket_draws
    seed = self._eval_seed(3)
    sums, squares = self._basket_sums(seed)
    rows = [{} for _ in range(self.num_members)]
    for estimator, sum_list, square_list in zip(self.basket, sums, squares):
      total, count = np.zeros(self.num_members), 0
      for s, q in zip(sum_list, square_list):
        s = s.numpy().astype(np.float64).reshape(self.num_members, -1)
        q = q.numpy().astype(np.float64).reshape(self.num_members, -1)
        total += np.sum((q - s ** 2 / draws) / (draws - 1), axis=1)
        count += s.shape[1]
      for m in range(self.num_members):
        rows[m][f"basket_var_{estimator.name}"] = float(total[m] / count)
    return rows

  def extra_metrics(self):
    """Per member: estimator-specific scalars worth logging (RELAX's temperature and scale)."""
    state = self.estimator_state
    if state is not None and hasattr(state, "temperature"):
      temperature = np.reshape(state.temperature.numpy(), [self.num_members])
      scale = np.reshape(state.scale.numpy(), [self.num_members])
      return [{"relax_temperature": float(t), "relax_scale": float(c)} for t, c in zip(temperature, scale)]
    return [{"relax_temperature": math.nan, "relax_scale": math.nan}] * self.num_members


def check_stackable(configs):
  """Runs can share a graph when they differ in their seed only (and the seeds are distinct)."""
  if not configs:
    raise ValueError("a Trainer needs at least one RunConfig")
  first = configs[0].to_dict()
  for c in configs[1:]:
    different = sorted(k for k, v in c.to_dict().items() if k not in ("seed", "run_id") and v != first[k])
    if different:
      raise ValueError(f"runs stacked in one graph must differ only in their seed; {c.run_id} and "
                       f"{configs[0].run_id} also differ in {', '.join(different)}")
  seeds = [c.seed for c in configs]
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"stacked runs need distinct seeds, got {seeds}")
