#!/usr/bin/env python3
"""Training-step and evaluation timings on real MNIST (see benchmarks/README.md).

  python benchmarks/bench_training.py            # the full table, a few minutes on 2 cores
  python benchmarks/bench_training.py --quick    # fewer repetitions

Rows:
  * ``in-graph block``: the suite's loop, ``Trainer.train(n)``: n steps per tf.function call,
    batches gathered and binarised in the graph (train_jit off and on);
  * ``baseline``: the straightforward loop, one tf.function call per step fed by tf.data
    (shuffle, batch, binarise in a map), same model, estimator and update;
  * ``evaluation``: one full evaluation: train-ELBO pass over 50,000 images plus the
    100-sample bounds on the 10,000 validation and 10,000 test images.
Each figure is the median over repetitions after a warm-up call.
"""

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
import tensorflow as tf  # noqa: E402

from datasets import binarize, load_dataset  # noqa: E402
from training.config import RunConfig  # noqa: E402
from training.trainer import Trainer  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Fewer repetitions.")
flags.DEFINE_list("models", ["linear", "nonlinear"], "Models to time.")
flags.DEFINE_string("estimator", "disarm", "Estimator to time.")
flags.DEFINE_integer("block", 500, "Steps per timed block.")
flags.DEFINE_bool("baseline", True, "Also time the one-call-per-step tf.data baseline.")
flags.DEFINE_bool("evaluation", True, "Also time one full evaluation.")


def median_time(fn, repetitions):
  fn()  # warm-up: tracing and compilation
  times = []
  for _ in range(repetitions):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def baseline_ms_per_step(trainer, splits, steps, repetitions):
  dataset = (tf.data.Dataset.from_tensor_slices(splits.train).shuffle(50000, seed=0).repeat()
             .batch(trainer.config.batch_size, drop_remainder=True).enumerate()
             .map(lambda i, x: binarize(x, tf.stack([tf.cast(i, tf.int32), 7])))
             .prefetch(tf.data.AUTOTUNE))
  iterator = iter(dataset)
  step_fn = tf.function(lambda x, seed: trainer.update(x, seed))
  counter = [0]

  def run():
    for _ in range(steps):
      counter[0] += 1
      step_fn(next(iterator), tf.constant([counter[0], 3], tf.int32))
  return median_time(run, repetitions) / steps * 1000


def main(argv):
  del argv
  reps = 3 if FLAGS.quick else 5
  splits = load_dataset("mnist")
  print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, devices: "
        f"{[d.device_type for d in tf.config.list_physical_devices()]}")
  print(f"{'model':10s} {'what':34s} {'value':>12s}")
  for model in FLAGS.models:
    config = RunConfig("mnist", model, FLAGS.estimator, seed=0, num_steps=10**6)
    for train_jit in (False, True):
      trainer = Trainer(config, splits, train_jit=train_jit)
      ms = median_time(lambda: trainer.train(FLAGS.block), reps) / FLAGS.block * 1000
      print(f"{model:10s} {'in-graph block, train_jit=' + str(train_jit):34s} {ms:9.2f} ms/step", flush=True)
    if FLAGS.baseline:
      trainer = Trainer(config, splits)
      ms = baseline_ms_per_step(trainer, splits, max(100, FLAGS.block // 5), reps)
      print(f"{model:10s} {'baseline: 1 call/step + tf.data':34s} {ms:9.2f} ms/step", flush=True)
    if FLAGS.evaluation:
      trainer = Trainer(config, splits)
      parts = {}

      def evaluate():
        t0 = time.perf_counter(); trainer.train_elbo(); t1 = time.perf_counter()
        trainer.bound("valid"); trainer.bound("test"); t2 = time.perf_counter()
        parts.update(elbo=t1 - t0, bounds=t2 - t1)
      total = median_time(evaluate, max(1, reps - 2))
      print(f"{model:10s} {'full evaluation':34s} {total:10.2f} s  "
            f"(train ELBO {parts['elbo']:.2f} s, two 100-sample bounds {parts['bounds']:.2f} s)", flush=True)


if __name__ == "__main__":
  app.run(main)
