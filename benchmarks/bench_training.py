#!/usr/bin/env python3
"""Throughput of stacked training, cost of evaluation, projected sweep time (benchmarks/README.md).

  python3 benchmarks/bench_training.py            # the full table, ~8 minutes on 2 cores
  python3 benchmarks/bench_training.py --quick    # linear model only, fewer repetitions

Rows:
  * ``train``: member-steps per second of ``Trainer.train(block)`` (``block`` steps per
    ``tf.function`` call, batches gathered and binarised in the graph) for stacks of
    S runs (S = 1: one run per graph; S = 5: the paper's five seeds in one graph);
  * ``evaluation``: one full evaluation of one run (train-ELBO pass over the 50,000
    training images plus the 100-sample bounds on the 10,000 validation and 10,000
    test images), split into its parts;
  * ``paper preset``: the projected wall time of ``run_benchmarks.py --preset=paper``
    (120 runs x 10^6 steps, an evaluation every 1,000 steps) from the rows above,
    against the core issue's straightforward baseline (7 ms per step, 40 s per
    evaluation), and with ``--bound_every=10000``.
Each figure is the median over ``--repetitions`` timed calls after a warm-up call.
"""

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
import tensorflow as tf  # noqa: E402

from datasets import load_dataset  # noqa: E402
from training.config import RunConfig  # noqa: E402
from training.sweep import PRESETS  # noqa: E402
from training.trainer import Trainer  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Linear model only, 2 repetitions.")
flags.DEFINE_list("models", ["linear", "nonlinear"], "Models to time.")
flags.DEFINE_list("estimators", ["disarm", "relax"], "Estimators to time.")
flags.DEFINE_list("stacks", ["1", "5"], "Stack sizes S to time.")
flags.DEFINE_integer("block", 100, "Training steps per timed call.")
flags.DEFINE_integer("repetitions", 3, "Timed calls per figure (the median is reported).")
flags.DEFINE_bool("training", True, "Time the training throughput.")
flags.DEFINE_bool("evaluation", True, "Time one full evaluation per model.")
flags.DEFINE_bool("xla", False, "Compile the training block with XLA (on a GPU this usually pays).")

BASELINE_MS_PER_STEP, BASELINE_S_PER_EVAL = 7.0, 40.0  # the core issue's straightforward loop


def median_time(fn, repetitions):
  fn()  # warm-up: tracing and compilation
  times = []
  for _ in range(repetitions):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def configs(model, estimator, size):
  return [RunConfig("mnist", model, estimator, seed=s, num_steps=10**6) for s in range(size)]


def format_hours(seconds):
  return f"{seconds / 3600:,.0f} h ({seconds / 86400:,.1f} days)"


def main(argv):
  del argv
  models = ["linear"] if FLAGS.quick else FLAGS.models
  reps = 2 if FLAGS.quick else FLAGS.repetitions
  stacks = [int(s) for s in FLAGS.stacks]
  splits = load_dataset("mnist")
  devices = [d.device_type for d in tf.config.list_physical_devices()]
  gpus = [tf.config.experimental.get_device_details(d).get("device_name", "GPU")
          for d in tf.config.list_physical_devices("GPU")]
  print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, devices: {devices} {gpus}")
  print(f"median of {reps} timed calls after a warm-up; training blocks of {FLAGS.block} steps, batch 50, MNIST")
  print(f"{'model':10s} {'estimator':9s} {'what':30s} {'value':>30s}")
  throughput = {}  # (model, estimator, S) -> member-steps/s
  for model in models if FLAGS.training else []:
    for estimator in FLAGS.estimators:
      for size in stacks:
        trainer = Trainer(configs(model, estimator, size), splits, train_jit=FLAGS.xla)
        seconds = median_time(lambda: trainer.train(FLAGS.block), reps)
        rate = size * FLAGS.block / seconds
        throughput[model, estimator, size] = rate
        gain = (f"  ({rate / throughput[model, estimator, stacks[0]]:.2f}x S={stacks[0]})"
                if size != stacks[0] else "")
        print(f"{model:10s} {estimator:9s} {'train, S=' + str(size):30s} "
              f"{rate:12.1f} member-steps/s{gain}", flush=True)
  evaluation = {}  # model -> (seconds of the train-ELBO pass, seconds of the two bounds), one run
  if FLAGS.evaluation:
    for model in models:
      trainer = Trainer(configs(model, "disarm", 1), splits)
      parts = {"elbo": [], "bounds": []}

      def evaluate():
        t0 = time.perf_counter()
        trainer.train_elbo()
        t1 = time.perf_counter()
        trainer.bound("valid")
        trainer.bound("test")
        t2 = time.perf_counter()
        parts["elbo"].append(t1 - t0)
        parts["bounds"].append(t2 - t1)
      seconds = median_time(evaluate, reps)
      elbo, bounds = statistics.median(parts["elbo"][1:]), statistics.median(parts["bounds"][1:])
      evaluation[model] = (elbo, bounds)
      print(f"{model:10s} {'-':9s} {'full evaluation, one run':30s} {seconds:12.1f} s "
            f"(train ELBO {elbo:.1f} s, two 100-sample bounds {bounds:.1f} s)", flush=True)
  if set(models) >= {"linear", "nonlinear"} and evaluation and throughput and "disarm" in FLAGS.estimators:
    project(throughput, evaluation, max(stacks))


def project(throughput, evaluation, size):
  """Projected wall time of the paper preset, one stack of ``size`` runs at a time."""
  grid = PRESETS["paper"]
  num_evals = grid.num_steps // grid.eval_every
  runs = list(grid.configs())
  totals = {}
  for bound_every in (grid.bound_every, 10 * grid.bound_every):
    total = 0.0
    for config in runs:
      # Estimators not timed here cost like DisARM (REINFORCE LOO and ARM: two
      # evaluations of f per step, the same products).
      estimator = config.estimator if (config.model, config.estimator, size) in throughput else "disarm"
      elbo, bounds = evaluation[config.model]
      total += (config.num_steps / throughput[config.model, estimator, size]
                + num_evals * elbo + (grid.num_steps // bound_every) * bounds)
    totals[bound_every] = total
  baseline = len(runs) * (grid.num_steps * BASELINE_MS_PER_STEP / 1000 + num_evals * BASELINE_S_PER_EVAL)
  print(f"paper preset, {len(runs)} runs x {grid.num_steps:,} steps, stacks of S={size}:")
  print(f"  baseline (7 ms/step, 40 s/evaluation):        {format_hours(baseline)}")
  for bound_every, total in totals.items():
    print(f"  this suite, 100-sample bounds every {bound_every:>6,}: {format_hours(total)} "
          f"= {baseline / total:.1f}x faster")

if __name__ == "__main__":
  app.run(main)
