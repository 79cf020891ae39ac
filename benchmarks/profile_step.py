#!/usr/bin/env python3
"""Where a training step and an evaluation spend their time, against their arithmetic.

  python3 -m benchmarks.profile_step                 # linear and nonlinear DisARM, RELAX; ~5 minutes

Training: the full step (``Trainer.train``), then its parts, each timed in a graph loop
of its own that consumes every output (so nothing is pruned): the gradient engine
(estimator, encoder and decoder gradients, the estimator's state), the updates (Adam,
SGD, moving averages), the batch (gather and binarisation); with the FLOPs of the
step's matrix products, and a minimal hand-written step of the same products
(``floor``) for what TensorFlow's kernels do without the suite's bookkeeping.
Evaluation: one chunk of the 100-sample bound (250 images x 100 samples) split into its
parts: the draws and the encoder (under XLA, as in the suite), the decoder's products
(TensorFlow), and the likelihood, log-sum-exp and sums (XLA), with their FLOPs, bytes
and element counts. Each figure is the median of 5 timed calls after a warm-up.
"""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("rows", ["linear:disarm", "nonlinear:disarm", "linear:relax"], "model:estimator rows to profile.")
flags.DEFINE_integer("steps", 300, "Steps per timed training call.")


def main(argv):
  del argv
  import tensorflow as tf

  from benchmarks.machine import cpu_description, matmul_rate, median_time
  from contracts.settings import RunConfig, Settings
  from datasets import load_dataset
  from estimators import SeedNoise
  from models.bernoulli_vae import bernoulli_log_prob
  from training import trainer as trainer_lib

  print(f"machine: {cpu_description()}; TensorFlow {tf.__version__}")
  print(f"reference: TensorFlow float32 matmul 100,000 x 200 x 784: {matmul_rate(tf):.0f} GFLOP/s")
  splits = load_dataset("mnist")
  n = FLAGS.steps

  def per_step(fn):
    return 1000 * median_time(fn, 5) / n

  for row in FLAGS.rows:
    model, estimator = row.split(":")
    trainer = trainer_lib.Trainer(RunConfig("mnist", model, estimator, 0, Settings()), splits)
    x = tf.cast(tf.random.uniform([50, 784]) < 0.5, tf.float32)
    noise_seed = lambda i: SeedNoise(tf.stack([tf.cast(i, tf.int64), tf.constant(3, tf.int64)]))

    @tf.function
    def gradients_loop(steps, trainer=trainer, x=x, noise_seed=noise_seed):
      total = tf.constant(0.0)
      for i in tf.range(steps):
        g = trainer.gradients(x, noise_seed(i))
        outputs = g.encoder + g.decoder + [g.prior] + (g.state or [])
        total += tf.add_n([tf.reduce_sum(o) for o in outputs])
      return total

    @tf.function
    def updates_loop(steps, trainer=trainer):
      zeros = lambda vs: [tf.zeros_like(v) for v in vs]
      for _ in tf.range(steps):
        trainer.encoder_optimizer.apply(zeros(trainer.model.encoder_variables))
        trainer.decoder_optimizer.apply(zeros(trainer.model.decoder_variables))
        trainer.prior_optimizer.apply(zeros([trainer.model.prior_logits]))
        if trainer.estimator_states is not None:
          trainer.estimator_optimizer.apply(zeros(trainer.estimator_optimizer.variables_to_train))
        trainer._moving_averages(zeros(trainer.model.encoder_variables))
      return tf.constant(0.0)

    @tf.function
    def batch_loop(steps, trainer=trainer):
      total = tf.constant(0.0)
      for i in tf.range(steps):
        indices = tf.range(50) + tf.cast(i, tf.int32)
        seed = tf.stack([tf.cast(i, tf.int64), tf.constant(5, tf.int64)])
        total += tf.reduce_sum(trainer_lib._binarize(tf.gather(trainer.train_images, indices), seed, False))
      return total

    full = per_step(lambda trainer=trainer: trainer.train(n))
    grads = per_step(lambda: gradients_loop(tf.constant(n)).numpy())
    updates = per_step(lambda: updates_loop(tf.constant(n)).numpy())
    batch = per_step(lambda: batch_loop(tf.constant(n)).numpy())
    hidden = 0 if model == "linear" else 2
    layer_flop = 2 * 50 * (784 * 200 + hidden * 200 * 200)  # one pass of a 50-row batch through encoder or decoder
    passes = {"disarm": 3, "relax": 3}.get(estimator, 3)  # decoder rows evaluated: the estimator's and the decoder's
    flop = layer_flop * (1 + 1 + passes + 1)  # encoder forward and backward, decoder forward, decoder backward
    print(
      f"step {model} {estimator}: {full:.2f} ms = gradients {grads:.2f} + updates {updates:.2f} + batch {batch:.2f}"
      f" + loop and seeds {full - grads - updates - batch:.2f} ms; products ~{flop / 1e6:.0f} MFLOP "
      f"({flop / (full / 1000) / 1e9:.0f} GFLOP/s over the whole step)",
      flush=True,
    )

  # A minimal step with the same products and no bookkeeping: what TensorFlow's kernels cost.
  w_enc = tf.Variable(tf.random.normal([784, 200]) * 0.01)
  w_dec = tf.Variable(tf.random.normal([200, 784]) * 0.01)
  x = tf.cast(tf.random.uniform([50, 784]) < 0.5, tf.float32)

  @tf.function
  def floor_loop(steps):
    total = tf.constant(0.0)
    for _ in tf.range(steps):
      with tf.GradientTape(persistent=True) as tape:
        logits = tf.matmul(x, w_enc)
        u = tf.random.uniform([3, 50, 200])
        b = tf.cast(u < tf.sigmoid(logits), tf.float32)
        pixel = tf.matmul(tf.reshape(2 * b - 1, [150, 200]), w_dec)
        elbo = tf.reshape(tf.reduce_sum(tf.tile(x, [3, 1]) * pixel - tf.nn.softplus(pixel), -1), [3, 50])
        g = tf.stop_gradient((elbo[1] - elbo[0])[:, None] * (u[0] - 0.5))
        loss = -tf.reduce_mean(elbo[2])
      g_enc = tape.gradient(logits, w_enc, output_gradients=-g / 50)
      g_dec = tape.gradient(loss, w_dec)
      w_enc.assign_sub(1e-4 * g_enc)
      w_dec.assign_sub(1e-4 * g_dec)
      total += loss
    return total

  floor = per_step(lambda: floor_loop(tf.constant(n)).numpy())
  print(f"floor: a hand-written linear ARM step, the same products and draws: {floor:.2f} ms")

  # One chunk of the 100-sample bound, in parts.
  trainer = trainer_lib.Trainer(RunConfig("mnist", "linear", "disarm", 0, Settings()), splits)
  model = trainer.model
  images = trainer.valid_images[:250]
  seed = tf.constant([1, 2], tf.int64)
  k = 100

  @tf.function(jit_compile=True)
  def draws_and_encoder(images):
    x_seed, b_seed = trainer._chunk_seeds(seed, seed)
    x = trainer_lib._binarize(images, x_seed, False)
    logits = model.encoder_logits(x)
    u = SeedNoise(b_seed).uniform(logits, k)
    b = tf.cast(u < tf.sigmoid(logits), tf.float32)
    rest = tf.reduce_sum(bernoulli_log_prob(model.prior_logits, b) - bernoulli_log_prob(logits, b), -1)
    return x, model.latent_input(b), rest

  decoder = tf.function(lambda s: model.decoder_nets[0](s))

  @tf.function(jit_compile=True)
  def likelihood(x, pixel_logits, rest):
    elbo = tf.reduce_sum(x * pixel_logits - tf.nn.softplus(pixel_logits), -1) + rest
    return tf.reduce_sum(tf.reduce_logsumexp(elbo, 0) - math.log(k))

  x, s, rest = draws_and_encoder(images)
  pixel_logits = decoder(s)
  t_draw = median_time(lambda: [v.numpy() for v in draws_and_encoder(images)], 5)
  t_dec = median_time(lambda: decoder(s).numpy(), 5)
  t_lik = median_time(lambda: likelihood(x, pixel_logits, rest).numpy(), 5)
  t_chunk = median_time(lambda: trainer._bound_sum(images, seed, seed, k).numpy(), 5)
  rows, elements = k * 250, k * 250 * 784
  print(
    f"bound chunk (250 images x 100 samples, linear): {1000 * t_chunk:.0f} ms as the suite runs it; parts: draws and"
    f" encoder {1000 * t_draw:.0f} ms ({k * 250 * 200 / 1e6:.0f} M uniforms), decoder products {1000 * t_dec:.0f} ms "
    f"({2 * rows * 200 * 784 / t_dec / 1e9:.0f} GFLOP/s), likelihood and log-sum-exp {1000 * t_lik:.0f} ms "
    f"({t_lik / elements * 1e9:.2f} ns per pixel term, {elements / 1e6:.0f} M terms)"
  )
  print(
    f"one 100-sample bound over 10,000 images: 40 chunks; floor from the parts "
    f"{40 * (t_dec + t_lik):.1f} s (products and likelihood), measured calls queue two at a time"
  )


if __name__ == "__main__":
  app.run(main)
