"""Training and evaluation of Bernoulli VAE runs, in the graph, one run or several at once.

A ``Trainer`` holds ``M >= 1`` runs ("members") of one cell: dataset x model x
estimator and every setting alike, seeds differing. One run is trained in its plain
form (two-dimensional products, no member axis); ``M > 1`` runs are stacked along a
leading member axis of every parameter, optimiser slot and moving average, so one
graph trains them all with batched products. Members never interact: every loss is
a sum of per-member terms, every update is elementwise, and each member draws its
noise from its own stateless stream (training/noise.py), so member ``m`` computes the
run it would have been alone with its seed (tests/test_stacking.py).

The trainer keeps the loop, the optimisers, the gradient moving averages and the
evaluation; the gradients of a step come from the gradient engine
(``training.engine.step_gradients``), which it shares with the variance basket and
the toy problem. ``Trainer.train(num_steps)`` runs a block of steps in one
``tf.function`` call: batch gathering, dynamic binarisation, the estimator, every
optimiser and the moving averages happen without returning to Python; the batches'
image indices are computed on the host beforehand (training/data_order.py). Every
draw is stateless and named in contracts/streams.py: a run is reproducible and a
resumed run continues exactly where it stopped, stacked or not.
"""

import math
import time

import numpy as np
import tensorflow as tf

from contracts import results, streams
from datasets import binarize
from estimators import get_estimator
from models import build_model, num_stochastic_layers
from training import engine
from training import noise as noise_lib
from training.data_order import DataOrder
from training.optim import SGD, Adam

# Images per evaluation chunk, per member: large products keep the matrix units busy,
# while [samples x chunk x 784] float32 activations stay within ~100 MB
# (benchmarks/bench_training.py measures the choice).
TRAIN_ELBO_CHUNK = 10000
BOUND_CHUNK = 250
# At most this many steps per call of the compiled block (the batches' indices are an input).
MAX_BLOCK_STEPS = 5000
# With a progress callback, blocks are sized to take about this long, so that a person
# watching the console hears from the run at least every 30 seconds; one more call per
# ~10 s of training costs well under 0.1% of the step (benchmarks/bench_protocols.py).
BLOCK_SECONDS = 10.0
MIN_BLOCK_STEPS = 50


def effective_settings(config):
  """The settings as this run's steps apply them, where the estimator or the model decides.

  ``decoder_sample`` (an estimator may fix its own; layered models train on their
  forward sample), ``decoder_reduction`` (``as_reference`` resolved), the estimator's
  learning rate (``None`` without state) and the samples per image of the train ELBO
  (``train_elbo_samples_per_image``).
  """
  estimator = get_estimator(config.estimator)
  options = engine.StepOptions.from_settings(config.settings)
  trainable = estimator.trainable
  return dict(
    decoder_sample=engine.effective_decoder_sample(estimator, options, num_stochastic_layers(config.model)),
    decoder_reduction=engine.effective_decoder_reduction(estimator, options),
    estimator_lr=(config.estimator_lr or trainable.learning_rate or config.encoder_lr) if trainable else None,
    # Named apart from the setting (single | k_mean): the number it resolves to.
    train_elbo_samples_per_image=1 if config.train_elbo_samples == "single" else estimator.samples,
  )


@tf.autograph.experimental.do_not_convert
def _binarize(images, seeds, stacked):
  """images ``[(M,) N, P]`` (or ``[N, P]`` shared by the members), seeds ``[(M,) 2]``: a fresh Bernoulli draw."""
  if not stacked:
    return binarize(images, seeds)
  rows = tf.unstack(images) if images.shape.rank == 3 else [images] * int(seeds.shape[0])
  return tf.stack([binarize(x, s) for x, s in zip(rows, tf.unstack(seeds))])


def _layer_noises(noise, num_layers):
  """One noise per stochastic layer: the noise itself for one layer, a split for several."""
  return [noise] if num_layers == 1 else noise.split(num_layers)


class Trainer(tf.Module):
  """``M`` runs of one cell: model, optimisers, estimator state, counters.

  ``configs`` is one ``RunConfig`` (``M = 1``) or a list of them that differ only in
  ``seed``. Per-member results (``train``, ``gradient_variance``, ``train_elbo``,
  ``bound``, ...) come back as length-``M`` lists in the order of ``configs``.
  """

  def __init__(self, configs, splits, train_jit=None, eval_jit=True, model=None, stacked=None):
    """``model`` overrides the config's model (tests use tiny ones; stacked for ``M > 1``).

    ``stacked`` forces the stacked form for one run (default: stacked iff ``M > 1``).
    ``train_jit`` overrides the runs' ``xla_training`` setting (benchmarks compare both).
    """
    super().__init__(name="trainer")
    configs = list(configs) if isinstance(configs, (list, tuple)) else [configs]
    check_stackable(configs)
    self.configs = configs
    self.config = config = configs[0]  # every field but the seed is shared
    self.seeds = [c.seed for c in configs]
    self.num_members = len(configs)
    self.stacked = self.num_members > 1 if stacked is None else bool(stacked)
    self.estimator = get_estimator(config.estimator)
    self.options = engine.StepOptions.from_settings(config.settings)
    layers = num_stochastic_layers(config.model) if model is None else model.num_layers
    init_salt = streams.MODEL_INIT_SALT if layers == 1 else streams.LAYERED_MODEL_INIT_SALT
    self.model = model or build_model(
      config.model,
      splits.mean_train,
      seed=self._seeds(init_salt, as_list=True),
      encoder_input=config.encoder_input,
      latent_input=config.latent_input,
      initialization=config.initialization,
    )
    if getattr(self.model, "num_members", None) != (self.num_members if self.stacked else None):
      raise ValueError(
        f"the model must be {'stacked for ' + str(self.num_members) if self.stacked else 'unstacked'} "
        "member(s): built with seed=<list of seed pairs> exactly when the runs are stacked"
      )
    self.num_layers = self.model.num_layers
    self.train_images = tf.constant(splits.train, tf.float32)
    self.valid_images = tf.constant(splits.valid, tf.float32)
    self.test_images = tf.constant(splits.test, tf.float32)
    num_train = int(splits.train.shape[0])
    self.data_orders = [DataOrder(config.data_order, s, num_train, config.batch_size) for s in self.seeds]

    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self._step_key = noise_lib.fold(noise_lib.fold(self._seeds(streams.TRAINING_SALT), streams.STEP), 0)[..., 0]
    eps = config.adam_epsilon
    self.encoder_optimizer = Adam(self.model.encoder_variables, config.encoder_lr, epsilon=eps, name="encoder_adam")
    self.decoder_optimizer = Adam(self.model.decoder_variables, config.decoder_lr, epsilon=eps, name="decoder_adam")
    self.prior_optimizer = (
      SGD([self.model.prior_logits], config.prior_lr, name="prior_sgd") if config.train_prior else None
    )
    trainable = self.estimator.trainable
    if trainable is not None:
      state_seeds = self._seeds(streams.ESTIMATOR_STATE_SALT)
      per_layer = [state_seeds] if self.num_layers == 1 else noise_lib.split(state_seeds, self.num_layers)
      self.estimator_states = [
        trainable.init(self.model.num_latents, self.model.context_dim(l), noise_lib.params_for(s, self.stacked))
        for l, s in enumerate(per_layer)
      ]
      learning_rate = effective_settings(config)["estimator_lr"]
      self.estimator_optimizer = Adam(
        [v for s in self.estimator_states for v in s.trainable_variables],
        learning_rate,
        beta1=trainable.beta1,
        beta2=trainable.beta2,
        epsilon=eps,
        name="estimator_adam",
      )
    else:
      self.estimator_states = None
    self.grad_mean_ema = [
      tf.Variable(tf.zeros_like(v), trainable=False, name="grad_mean_ema") for v in self.model.encoder_variables
    ]
    self.grad_sq_ema = [
      tf.Variable(tf.zeros_like(v), trainable=False, name="grad_sq_ema") for v in self.model.encoder_variables
    ]
    self.basket = [get_estimator(name) for name in config.basket]
    # Basket members with state of their own (other than the run's estimator) start from
    # a state built from the run's estimator-state seed folded with the member's position,
    # so each member's state is fixed by the run's seed alone. ``basket_state=frozen``
    # measures them there; ``trained`` trains each with its own loss and Adam at every
    # step (``_train_basket_states``), never touching the run's own parameters.
    self.basket_states = {}
    self.basket_optimizers = {}
    for e, member in enumerate(self.basket):
      if member.has_state and member.name != self.estimator.name:
        # Folded seeds are int64; the parameter factories take int32 pairs (a fixed, distinct stream either way).
        seeds = tf.cast(noise_lib.fold(self._seeds(streams.ESTIMATOR_STATE_SALT), 1 + e), tf.int32)
        params = noise_lib.params_for(seeds, self.stacked)
        self.basket_states[member.name] = [
          member.trainable.init(self.model.num_latents, self.model.context_dim(0), params)
        ]
        if config.basket_state == "trained":
          # As the run's own estimator state is trained, but without the run's
          # estimator_lr, which names the run's estimator's rate.
          self.basket_optimizers[member.name] = Adam(
            self.basket_states[member.name][0].trainable_variables,
            member.trainable.learning_rate or config.encoder_lr,
            beta1=member.trainable.beta1,
            beta2=member.trainable.beta2,
            epsilon=eps,
            name="basket_adam",
          )
    # On CPU, XLA compiling the training loop measured slower than TensorFlow's own
    # kernels, while the evaluation's large matmul + softplus + sum batches gain from
    # fusion (benchmarks/README.md). Evaluation numbers depend on this choice: XLA draws
    # a different (equally valid) random stream for the same stateless seed.
    index_shape = [None, self.num_members, config.batch_size] if self.stacked else [None, config.batch_size]
    train_jit = config.xla_training if train_jit is None else train_jit
    self._train_block = tf.function(
      self._train_block_impl, jit_compile=train_jit, input_signature=[tf.TensorSpec(index_shape, tf.int32)]
    )
    # Only the functions that reach an estimator (or loop over tensors) are left to autograph:
    # converting the others costs start-up time and changes nothing.
    #
    # The moving averages are pure elementwise streams over every encoder parameter:
    # compiled, XLA fuses each into one pass over memory.
    self._moving_averages = tf.function(self._moving_averages_impl, jit_compile=True, autograph=False)
    self._basket_sums = tf.function(self._basket_sums_impl)
    self._elbo_sum = tf.function(self._elbo_sum_impl, jit_compile=eval_jit, autograph=False)
    self._bound_sum = tf.function(self._bound_sum_impl, jit_compile=eval_jit, autograph=False)

  def _seeds(self, salt, as_list=False):
    """``(seed, salt)`` per member: ``[M, 2]`` stacked, ``[2]`` for one run (``as_list``: pairs, not a tensor)."""
    pairs = [(s, salt) for s in self.seeds]
    if as_list:
      return pairs if self.stacked else pairs[0]
    return tf.constant(pairs if self.stacked else pairs[0], tf.int32)

  def _per_member(self, values):
    """A ``[M]``-shaped (stacked) or scalar (one run) tensor as a list of M floats."""
    return [float(v) for v in np.reshape(np.asarray(values), [self.num_members])]

  # ------------------------------------------------------------ checkpoint state
  def state_variables(self):
    """``{name: (variable, per_member)}``: everything a resumed run needs, in a fixed order.

    ``per_member`` variables carry the member axis first when stacked; the others
    (step counters) are shared by all members. Data tensors are rebuilt from the files.
    """
    groups = [
      ("model/encoder", self.model.encoder_variables),
      ("model/decoder", self.model.decoder_variables),
      ("model/prior_logits", [self.model.prior_logits]),
      ("grad_mean_ema", self.grad_mean_ema),
      ("grad_sq_ema", self.grad_sq_ema),
    ]
    optimizers = [("encoder_adam", self.encoder_optimizer), ("decoder_adam", self.decoder_optimizer)]
    if self.estimator_states is not None:
      groups.append(("estimator_state", [v for s in self.estimator_states for v in s.trainable_variables]))
      optimizers.append(("estimator_adam", self.estimator_optimizer))
    # Trained basket states only: frozen ones are rebuilt from the seed and stay out of the checkpoint.
    for member, opt in self.basket_optimizers.items():
      groups.append((f"basket_state/{member}", opt.variables_to_train))
      optimizers.append((f"basket_adam/{member}", opt))
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
    state = {
      name: (v[m] if per_member and self.stacked else v).numpy()
      for name, (v, per_member) in self.state_variables().items()
    }
    state.update(self.data_orders[m].state())
    return state

  def load_member_state(self, m, state):
    """Loads ``member_state``'s output into member ``m``; the shared counters must agree across members."""
    variables = self.state_variables()
    missing = sorted(set(variables) - set(state))
    if missing:
      raise ValueError(
        f"the checkpoint lacks {', '.join(missing[:5])}: it was written by another "
        "model, estimator or version of the suite"
      )
    for name, (v, per_member) in variables.items():
      value = np.asarray(state[name])
      target_shape = v.shape[1:] if per_member and self.stacked else v.shape
      if tuple(value.shape) != tuple(target_shape):
        raise ValueError(f"checkpoint entry {name} has shape {value.shape}, the model needs {tuple(target_shape)}")
      if per_member and self.stacked:
        v[m].assign(value)
      else:
        v.assign(value)
    self.data_orders[m].load(state)

  # ------------------------------------------------------------------ training
  def _train_step(self, indices):
    # fold(fold(base, STEP), t) is [key, t] with a key that does not depend on t
    # (stateless_fold_in keeps its data as the seed's second half): the key is computed
    # once, outside the loop, and the step's seed costs no random op.
    step = self.step if not self.stacked else tf.fill([self.num_members], self.step)
    step_seed = tf.stack([self._step_key, step], axis=-1)
    data_seed, estimator_seed = tf.unstack(noise_lib.split(step_seed, 2))
    x = _binarize(tf.gather(self.train_images, indices), data_seed, self.stacked)
    return self.update(x, noise_lib.noise_for(estimator_seed, self.stacked))

  def gradients(self, x, noise):
    """Every gradient of a step at binarised batches ``x`` (``[M, B, P]`` stacked, else ``[B, P]``); see engine."""
    return engine.step_gradients(self.model, self.estimator, x, noise, self.estimator_states, self.options)

  def update(self, x, noise):
    """One optimisation step on binarised batches ``x``: all optimisers, the moving averages, step += 1."""
    grads = self.gradients(x, noise)
    # Before the model moves: the basket's states learn at the parameters the run's step saw.
    self._train_basket_states(x, noise)
    if grads.state is not None:
      self.estimator_optimizer.apply(grads.state)
    self.encoder_optimizer.apply(grads.encoder)
    self.decoder_optimizer.apply(grads.decoder)
    if self.prior_optimizer is not None:
      self.prior_optimizer.apply([grads.prior])
    self._moving_averages(grads.encoder)
    self.step.assign_add(1)
    return grads.loss

  def _train_basket_states(self, x, noise):
    """``basket_state=trained``: one Adam step of each stateful basket member's own loss at ``x``.

    Each member draws from its own stream (``streams.BASKET_STATE`` + its position), so
    it never reuses the run's estimator noise; only its state's gradients are applied.
    """
    for e, member in enumerate(self.basket):
      optimizer = self.basket_optimizers.get(member.name)
      if optimizer is None:
        continue
      member_noise = noise.fold_in(streams.BASKET_STATE + e)
      states = self.basket_states[member.name]
      grads = engine.step_gradients(self.model, member, x, member_noise, states, self.options, decoder=False)
      optimizer.apply(grads.state)

  def _moving_averages_impl(self, encoder_grads):
    """EMA[g] and EMA[g^2] of the encoder gradient (PROTOCOL.md section 5)."""
    decay = self.config.grad_ema_decay
    for g, mean_ema, sq_ema in zip(encoder_grads, self.grad_mean_ema, self.grad_sq_ema):
      mean_ema.assign(decay * mean_ema + (1.0 - decay) * g)
      sq_ema.assign(decay * sq_ema + (1.0 - decay) * tf.square(g))

  def _train_block_impl(self, indices):
    """One step per row of ``indices``; returns each member's mean training loss (-ELBO at the samples)."""
    num_steps = tf.shape(indices)[0]
    total = tf.zeros([self.num_members] if self.stacked else [])
    for t in tf.range(num_steps):
      total += self._train_step(indices[t])
    return total / tf.cast(num_steps, tf.float32)

  def _block_indices(self, start, num_steps):
    per_member = [order.indices(start, num_steps) for order in self.data_orders]
    return np.stack(per_member, axis=1) if self.stacked else per_member[0]

  def train(self, num_steps, on_block=None):
    """Trains every member ``num_steps`` steps; returns their mean training losses (a list).

    ``on_block(step, steps, seconds)``, if given, is called after every compiled block
    (the step reached, the block's steps and its clock time); blocks are then sized to
    take about ``BLOCK_SECONDS`` each, from the rate of the block before.
    """
    total, done = np.zeros(self.num_members), 0
    block_cap = MAX_BLOCK_STEPS if on_block is None else MIN_BLOCK_STEPS
    while done < num_steps:
      block = min(block_cap, num_steps - done)
      indices = self._block_indices(int(self.step.numpy()), block)
      start = time.perf_counter()
      total += block * np.reshape(self._train_block(tf.constant(indices, tf.int32)).numpy(), [self.num_members])
      seconds = time.perf_counter() - start
      done += block
      if on_block is not None:
        on_block(int(self.step.numpy()), block, seconds)
        rate = block / max(seconds, 1e-6)
        block_cap = int(min(MAX_BLOCK_STEPS, max(MIN_BLOCK_STEPS, rate * BLOCK_SECONDS)))
    return [float(v) for v in total / num_steps]

  def trace(self):
    """Builds the training graph now, so that a timing of the first block measures training."""
    self._train_block.get_concrete_function()

  # ---------------------------------------------------------------- evaluation
  def gradient_variance(self):
    """Per member: mean over encoder parameters of EMA[g^2] - EMA[g]^2 (PROTOCOL.md section 5).

    Both moving averages start at zero; with ``grad_variance_debias`` they are divided
    by ``1 - decay^t`` as in Adam (the references report them as they are).
    """
    t = int(self.step.numpy())
    if t == 0:
      return [math.nan] * self.num_members
    correction = 1.0 - self.config.grad_ema_decay**t if self.config.grad_variance_debias else 1.0
    total, count = np.zeros(self.num_members), 0
    for mean_ema, sq_ema in zip(self.grad_mean_ema, self.grad_sq_ema):
      mean = mean_ema.numpy().astype(np.float64) / correction
      sq = sq_ema.numpy().astype(np.float64) / correction
      per_member = (sq - mean**2).reshape(self.num_members, -1)
      total += np.sum(per_member, axis=1)
      count += per_member.shape[1]
    return [float(v) for v in total / count]

  def _samples(self, x, seed, num_samples):
    """Ancestral samples ``b ~ q(b | x)``: (bits, logits) per layer, ``[K, ..., B, D]`` (no K axis for None)."""
    noise = noise_lib.noise_for(seed, self.stacked)
    logits0 = self.model.encoder_logits(x)
    if self.num_layers == 1:
      u = noise.uniform(logits0, num_samples)
      return [tf.cast(u < tf.sigmoid(logits0), tf.float32)], [logits0]
    uniforms = [n.uniform(logits0, num_samples) for n in _layer_noises(noise, self.num_layers)]
    return self.model.complete(x, [], 0, uniforms)

  def _chunk_seeds(self, binarization_seed, sample_seed):
    # Split inside the compiled function: under XLA, the split itself draws XLA's stream.
    return noise_lib.split(binarization_seed, 2)[0], noise_lib.split(sample_seed, 2)[1]

  def _elbo_sum_impl(self, images, binarization_seed, sample_seed, num_samples):
    """Per member: the summed ELBO of ``images`` ``[n, P]`` (mean over ``num_samples`` samples per image)."""
    x_seed, b_seed = self._chunk_seeds(binarization_seed, sample_seed)
    x = _binarize(images, x_seed, self.stacked)
    if num_samples == 1:
      bits, logits = self._samples(x, b_seed, None)
      return tf.reduce_sum(self.model.elbo(x, bits, logits), axis=-1)
    bits, logits = self._samples(x, b_seed, num_samples)
    return tf.reduce_sum(tf.reduce_mean(self.model.elbo(x, bits, logits), axis=0), axis=-1)

  def _bound_sum_impl(self, images, binarization_seed, sample_seed, num_samples):
    x_seed, b_seed = self._chunk_seeds(binarization_seed, sample_seed)
    x = _binarize(images, x_seed, self.stacked)  # one binarisation per image, shared by its K samples
    bits, logits = self._samples(x, b_seed, num_samples)
    bound = tf.reduce_logsumexp(self.model.elbo(x, bits, logits), axis=0) - math.log(num_samples)
    return tf.reduce_sum(bound, axis=-1)

  def _chunked_mean(self, fn, images, chunk, purpose, *args):
    # The chunks' sums stay on the device and are added there: one read-back per
    # split, so the calls queue up without waiting on the host (no sync per chunk).
    base = self._seeds(streams.EVALUATION_SALT)
    now = noise_lib.fold(base, purpose, self.step)
    # fixed: every evaluation replays the binarisation of the step-0 evaluation.
    binarization = now if self.config.eval_binarization == "fresh" else noise_lib.fold(base, purpose, 0)
    n = int(images.shape[0])
    total = tf.zeros([self.num_members] if self.stacked else [])
    for i, start in enumerate(range(0, n, chunk)):
      total += fn(images[start : start + chunk], noise_lib.fold(binarization, i), noise_lib.fold(now, i), *args)
    return [v / n for v in self._per_member(total.numpy())]

  def train_elbo(self):
    """Per member: the ELBO averaged over one pass of the training split (``train_elbo_samples`` per image)."""
    k = 1 if self.config.train_elbo_samples == "single" else self.estimator.samples
    chunk = max(1, TRAIN_ELBO_CHUNK // k)
    return self._chunked_mean(self._elbo_sum, self.train_images, chunk, streams.EVAL_TRAIN_ELBO, k)

  def bound(self, split, num_samples=None):
    """Per member: the K-sample bound averaged over a split ("valid" or "test"), K = num_bound_samples by default."""
    images = {"valid": self.valid_images, "test": self.test_images}[split]
    k = num_samples or self.config.num_bound_samples
    chunk = max(1, (BOUND_CHUNK * 100) // k)
    purpose = {"valid": streams.EVAL_VALID, "test": streams.EVAL_TEST}[split]
    return self._chunked_mean(self._bound_sum, images, chunk, purpose, k)

  @property
  def logs_bound_k(self):
    return self.estimator.bound_estimator or self.config.log_bound_k

  def bound_columns(self, with_bound_n=True):
    """Per member: both splits' bounds, N = num_bound_samples samples and (where logged) K = the estimator's
    f evaluations.

    ``with_bound_n=False`` leaves out the costly N-sample bounds (NaN): the K-sample bound
    costs K/N of them, so it is computed at every evaluation and gives its curve.
    """
    nan = [math.nan] * self.num_members
    columns = {
      "valid_bound_n": self.bound("valid") if with_bound_n else nan,
      "test_bound_n": self.bound("test") if with_bound_n else nan,
    }
    k = self.estimator.num_f_evals if self.logs_bound_k else None
    columns["valid_bound_k"] = self.bound("valid", k) if k else nan
    columns["test_bound_k"] = self.bound("test", k) if k else nan
    return [{key: values[m] for key, values in columns.items()} for m in range(self.num_members)]

  # ------------------------------------------------------------ variance basket
  def _basket_sums_impl(self, seed):
    """Sums of the basket estimators' encoder gradients and of their squares over independent draws.

    Every draw takes a fresh minibatch (uniform with replacement from the training
    split, freshly binarised) and fresh estimator noise; all basket estimators see the
    same minibatches, so their variances differ by the estimators alone.
    """
    num_train = int(self.train_images.shape[0])
    shape = [self.num_members, self.config.batch_size] if self.stacked else [self.config.batch_size]
    num_vars = len(self.model.encoder_variables)
    zeros = [tf.zeros_like(v) for v in self.model.encoder_variables]

    def draw(r, accumulators):
      draw_seeds = tf.unstack(noise_lib.split(noise_lib.fold(seed, r), 2 + len(self.basket)))
      indices = noise_lib.uniform_int(shape, draw_seeds[0], num_train, self.stacked)
      x = _binarize(tf.gather(self.train_images, indices), draw_seeds[1], self.stacked)
      updated = []
      for e, estimator in enumerate(self.basket):
        states = (
          self.estimator_states if estimator.name == self.estimator.name else self.basket_states.get(estimator.name)
        )
        grads = engine.step_gradients(
          self.model,
          estimator,
          x,
          noise_lib.noise_for(draw_seeds[2 + e], self.stacked),
          states,
          self.options,
          decoder=False,
          train_state=False,
        ).encoder
        sums = accumulators[2 * e * num_vars : (2 * e + 1) * num_vars]
        squares = accumulators[(2 * e + 1) * num_vars : (2 * e + 2) * num_vars]
        updated += [a + g for a, g in zip(sums, grads)] + [a + tf.square(g) for a, g in zip(squares, grads)]
      return r + 1, updated

    _, accumulators = tf.while_loop(
      lambda r, _: r < self.config.basket_draws, draw, (tf.constant(0), zeros * (2 * len(self.basket)))
    )
    sums = [accumulators[2 * e * num_vars : (2 * e + 1) * num_vars] for e in range(len(self.basket))]
    squares = [accumulators[(2 * e + 1) * num_vars : (2 * e + 2) * num_vars] for e in range(len(self.basket))]
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
    seed = noise_lib.fold(self._seeds(streams.EVALUATION_SALT), streams.EVAL_BASKET, self.step)
    sums, squares = self._basket_sums(seed)
    rows = [{} for _ in range(self.num_members)]
    for estimator, sum_list, square_list in zip(self.basket, sums, squares):
      total, count = np.zeros(self.num_members), 0
      for s, q in zip(sum_list, square_list):
        s = s.numpy().astype(np.float64).reshape(self.num_members, -1)
        q = q.numpy().astype(np.float64).reshape(self.num_members, -1)
        total += np.sum((q - s**2 / draws) / (draws - 1), axis=1)
        count += s.shape[1]
      for m in range(self.num_members):
        rows[m][results.basket_column(estimator.name)] = float(total[m] / count)
    return rows

  def estimator_scalars(self):
    """Per member: the scalars the estimator reports about its state, as ``metrics.csv`` columns."""
    rows = [{} for _ in range(self.num_members)]
    trainable = self.estimator.trainable
    if trainable is None or trainable.scalars is None:
      return rows
    for l, state in enumerate(self.estimator_states):
      for name, value in trainable.scalars(state).items():
        column = results.estimator_scalar_column(self.estimator.name, name, None if self.num_layers == 1 else l)
        for m, v in enumerate(self._per_member(value.numpy())):
          rows[m][column] = v
    return rows


def check_stackable(configs):
  """Runs can share a graph when they differ in their seed only (and the seeds are distinct)."""
  if not configs:
    raise ValueError("a Trainer needs at least one RunConfig")
  first = configs[0]
  for c in configs[1:]:
    different = [k for k in ("dataset", "model", "estimator") if getattr(c, k) != getattr(first, k)]
    different += c.settings.differences(first.settings)
    if different:
      raise ValueError(
        f"runs stacked in one graph must differ only in their seed; {c.run_id} and "
        f"{first.run_id} also differ in {', '.join(different)}"
      )
  seeds = [c.seed for c in configs]
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"stacked runs need distinct seeds, got {seeds}")
