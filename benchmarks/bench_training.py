#!/usr/bin/env python3
"""Training and evaluation speed on this machine, against its arithmetic (benchmarks/README.md).

  python3 -m benchmarks.bench_training                  # the full table (~10 minutes on 2 CPU cores)
  python3 -m benchmarks.bench_training --quick          # linear DisARM and evaluation only
  python3 -m benchmarks.bench_training --stacks=1,5,20,120 --xla   # on a GPU
  python3 -m benchmarks.bench_training --models=nonlinear --estimators=disarm \
    --new_estimators=rodeo_2,rodeo_3 --rodeo_stacks=1,3 --evaluation=false --block=50   # RODEO in stacks

Prints first the machine (CPU model and its vector extensions, cores, TensorFlow,
devices) and a reference rate: TensorFlow's float32 matrix product of the evaluation's
shape (100,000 x 200 x 784), so that every figure can be read against the hardware.
Then, each the median of ``--repetitions`` timed calls after a warm-up call:

* ``step``: milliseconds per training step (``Trainer.train(block)``) for one run, or
  per member-step for stacks of S runs in one graph, with the run settings of the
  named preset (DisARM protocol: batch 50; ``rodeo``: batch 100), per model and
  estimator, and each estimator's step time relative to DisARM's;
* ``evaluation``: one full evaluation of one run (the train-ELBO pass over the
  training split and the 100-sample bounds on valid and test), split into its parts,
  with the FLOPs of the bounds' decoder products and the rate achieved;
* ``projection``: one paper-protocol run (10^6 steps, an evaluation every 1,000 with
  the bounds) and every preset's total, from the rows above.

``--data_dir`` / ``--allow_download`` are the driver's data options.
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Linear DisARM, one evaluation per model, 2 repetitions.")
flags.DEFINE_list("models", ["linear", "nonlinear"], "Models to time.")
flags.DEFINE_list("estimators", ["disarm", "relax"], "Estimators to time (the paper protocol).")
flags.DEFINE_list(
  "new_estimators",
  ["arms_3", "double_cv_3", "rodeo_3", "rodeo_2", "arms_4", "rodeo_4"],
  "Estimators timed under the RODEO protocol (nonlinear, batch 100) against DisARM there.",
)
flags.DEFINE_list("stacks", ["1", "5"], "Stack sizes S to time (runs trained in one graph).")
flags.DEFINE_list("rodeo_stacks", ["1"], "Stack sizes S for the RODEO-protocol rows.")
flags.DEFINE_integer("block", 500, "Training steps per timed call.")
flags.DEFINE_integer("repetitions", 3, "Timed calls per figure (the median is reported).")
flags.DEFINE_bool("training", True, "Time training steps.")
flags.DEFINE_bool("evaluation", True, "Time one full evaluation per model.")
flags.DEFINE_bool("xla", False, "Compile the training block with XLA (on a GPU this usually pays).")
flags.DEFINE_string("data_dir", None, "Folder with the raw dataset files (the driver's --data_dir).")
flags.DEFINE_bool("allow_download", False, "Let the loader fall back to tensorflow_datasets (network).")


def main(argv):
  del argv
  import tensorflow as tf

  from benchmarks.machine import cpu_description, matmul_rate, median_time
  from contracts.settings import RunConfig
  from datasets import load_dataset
  from training.presets import PRESETS
  from training.trainer import Trainer

  quick = FLAGS.quick
  models = ["linear"] if quick else FLAGS.models
  estimators = ["disarm"] if quick else FLAGS.estimators
  reps = 2 if quick else FLAGS.repetitions
  stacks = [int(s) for s in FLAGS.stacks]
  gpus = [
    tf.config.experimental.get_device_details(d).get("device_name", "GPU")
    for d in tf.config.list_physical_devices("GPU")
  ]
  print(f"machine: {cpu_description()}; GPUs: {', '.join(gpus) or 'none'}; TensorFlow {tf.__version__}")
  print(f"reference: TensorFlow float32 matmul 100,000 x 200 x 784: {matmul_rate(tf):.0f} GFLOP/s")
  print(f"median of {reps} timed calls after a warm-up; training blocks of {FLAGS.block} steps; MNIST", flush=True)
  splits = {}

  def data(name):
    if name not in splits:
      splits[name] = load_dataset(name, FLAGS.data_dir, allow_download=FLAGS.allow_download)
    return splits[name]

  def step_ms(preset, model, estimator, size):
    settings = PRESETS[preset].settings_for("mnist")
    configs = [RunConfig("mnist", model, estimator, s, settings) for s in range(size)]
    trainer = Trainer(configs if size > 1 else configs[0], data("mnist"), train_jit=FLAGS.xla or None)
    seconds = median_time(lambda: trainer.train(FLAGS.block), reps)
    return 1000.0 * seconds / (FLAGS.block * size)

  steps = {}
  if FLAGS.training:
    print(
      f"{'protocol':9s} {'model':10s} {'estimator':12s} {'S':>4s} {'ms/member-step':>15s} {'steps/s':>9s}"
      f" {'vs DisARM':>9s}"
    )
    rows = [("paper", m, e) for m in models for e in estimators]
    if not quick:
      rows.append(("rodeo", "nonlinear", "disarm"))
      rows += [("rodeo", "nonlinear", e) for e in FLAGS.new_estimators]
    for preset, model, estimator in rows:
      for size in stacks if preset == "paper" else [int(s) for s in FLAGS.rodeo_stacks]:
        ms = step_ms(preset, model, estimator, size)
        steps[preset, model, estimator, size] = ms
        base = steps.get((preset, model, "disarm", size))
        ratio = f"{ms / base:8.2f}x" if base else ""
        print(f"{preset:9s} {model:10s} {estimator:12s} {size:4d} {ms:15.3f} {1000 / ms:9.0f} {ratio:>9s}", flush=True)
  evaluation = {}
  if FLAGS.evaluation:
    for model in models:
      trainer = Trainer(RunConfig("mnist", model, "disarm", 0, PRESETS["paper"].settings), data("mnist"))
      parts = {"elbo": [], "valid": [], "test": []}

      def evaluate(trainer=trainer, parts=parts):
        t0 = time.perf_counter()
        trainer.train_elbo()
        t1 = time.perf_counter()
        trainer.bound("valid")
        t2 = time.perf_counter()
        trainer.bound("test")
        t3 = time.perf_counter()
        parts["elbo"].append(t1 - t0)
        parts["valid"].append(t2 - t1)
        parts["test"].append(t3 - t2)

      seconds = median_time(evaluate, reps)
      elbo, valid, test = (statistics.median(parts[k][1:]) for k in ("elbo", "valid", "test"))
      evaluation[model] = seconds
      decoder_flop = 2 * (200 * 784 + (0 if model == "linear" else 2 * 200 * 200))
      bound_gflop = 2 * 10_000 * 100 * decoder_flop / 1e9
      print(
        f"evaluation {model:10s} {seconds:6.2f} s: train ELBO {elbo:.2f} s, valid bound {valid:.2f} s, "
        f"test bound {test:.2f} s; the bounds' decoder products {bound_gflop:.0f} GFLOP at "
        f"{bound_gflop / (valid + test):.0f} GFLOP/s",
        flush=True,
      )
  if FLAGS.training and FLAGS.evaluation:
    project(steps, evaluation, PRESETS, stacks)


def project(steps, evaluation, presets, sizes):
  """One paper-protocol run, and every preset's total with its runs trained in the fastest stack size timed."""

  def best(protocol, model, estimator):
    timed = {
      size: steps[protocol, model, estimator, size] for size in sizes if (protocol, model, estimator, size) in steps
    }
    if not timed:
      return None, None
    size = min(timed, key=timed.get)
    return timed[size], size

  for model in evaluation:
    ms, size = best("paper", model, "disarm")
    if ms is not None:
      hours = (10**6 * ms / 1000 + 1000 * evaluation[model]) / 3600
      print(
        f"projection: one paper-protocol run, {model} DisARM: {hours:.2f} h (10^6 steps at {ms:.2f} ms per "
        f"member-step, S={size}; 1,000 evaluations at {evaluation[model]:.1f} s)"
      )
  for name in ("paper", "hierarchical", "multisample", "rodeo"):
    grid = presets[name]
    total, missing, used = 0.0, set(), set()
    for config in grid.configs():
      model = config.model if config.model in evaluation else "linear"
      protocol = "rodeo" if name == "rodeo" else "paper"
      ms, size = best(protocol, config.model, config.estimator)
      if ms is None:
        missing.add(config.estimator)
        ms, size = best(protocol, config.model, "disarm")
      if ms is None:
        ms, size = best("paper", model, "disarm")
      if ms is None or model not in evaluation:
        break
      used.add(size)
      # A stack of S runs evaluates its members in the same calls: about S times one run's cost.
      total += config.num_steps * ms / 1000 + (config.num_steps // config.eval_every) * evaluation[model]
    else:
      note = f" (not timed, counted as DisARM: {', '.join(sorted(missing))})" if missing else ""
      print(
        f"projection: preset {name}, {len(list(grid.configs()))} runs, stacks of S={'/'.join(map(str, sorted(used)))}:"
        f" {total / 3600:,.1f} h{note}"
      )


if __name__ == "__main__":
  app.run(main)
