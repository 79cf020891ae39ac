#!/usr/bin/env python3
"""The RODEO protocol's step against the DisARM paper's, at the same batch, against their arithmetic.

  python3 -m benchmarks.bench_protocols                 # ~6 minutes on 2 CPU cores
  python3 -m benchmarks.bench_protocols --driver=false  # without the driver runs (~3 minutes)

For DisARM on the nonlinear VAE at batch 100, under the ``paper`` preset's settings (the
decoder trained on one independent sample) and the ``rodeo`` preset's (the decoder
trained on two independent samples per example, ``decoder_sample=k_independent``):

* ``products``: the FLOPs of every matrix product in one step's graph (forward and
  backward, counted from the traced graph's shapes, not from a formula), so that the
  measured ratio can be read against the arithmetic one;
* ``step``: milliseconds per step of ``Trainer.train`` in blocks of ``--block`` steps,
  both protocols interleaved call by call (a busy machine slows both alike), the median
  and the minimum of ``--repetitions`` calls;
* ``progress``: the same blocks with the driver's progress callback (blocks of ~10 s
  and a report at most every 20 s) against one call per block, interleaved;
* ``driver``: both through ``run_benchmarks.py`` (a fresh process each, ``--driver_steps``
  steps, an evaluation every quarter), its ``steps_per_sec`` beside the ``step`` figures.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("block", 300, "Training steps per timed call.")
flags.DEFINE_integer("repetitions", 9, "Timed calls per protocol (interleaved).")
flags.DEFINE_bool("driver", True, "Also time both through run_benchmarks.py.")
flags.DEFINE_integer("driver_steps", 4000, "Steps of each driver run.")
flags.DEFINE_string("data_dir", None, "Folder with the raw dataset files (the driver's --data_dir).")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOCOLS = (("paper", dict(batch_size=100)), ("rodeo", {}))
PRODUCT_OPS = ("MatMul", "BatchMatMulV2", "BatchMatMulV3")


def product_flops(graph):
  """2 x multiply-adds of every matrix product in ``graph`` (shapes must be static)."""
  total = 0
  for op in graph.get_operations():
    if op.type not in PRODUCT_OPS:
      continue
    a, b = (t.shape.as_list() for t in op.inputs[:2])
    out = op.outputs[0].shape.as_list()
    transpose_a = op.get_attr("transpose_a") if op.type == "MatMul" else op.get_attr("adj_x")
    inner = a[-2] if transpose_a else a[-1]
    size = 1
    for d in out:
      size *= d
    total += 2 * size * inner
  return total


def main(argv):
  del argv
  import numpy as np
  import pandas as pd
  import tensorflow as tf

  from benchmarks.machine import cpu_description, matmul_rate
  from contracts.settings import RunConfig
  from datasets import load_dataset
  from estimators import SeedNoise
  from training.presets import PRESETS
  from training.trainer import Trainer

  print(f"machine: {cpu_description()}; TensorFlow {tf.__version__}")
  print(f"reference: TensorFlow float32 matmul 100,000 x 200 x 784: {matmul_rate(tf):.0f} GFLOP/s", flush=True)
  splits = load_dataset("mnist", FLAGS.data_dir)
  trainers, flops = {}, {}
  for name, changes in PROTOCOLS:
    settings = PRESETS[name].settings_for("mnist").replace(**changes)
    trainer = Trainer(RunConfig("mnist", "nonlinear", "disarm", 0, settings), splits)
    x = tf.zeros([settings.batch_size, 784])
    step = tf.function(lambda x, trainer=trainer: trainer.update(x, SeedNoise(tf.constant([1, 2]))))
    flops[name] = product_flops(step.get_concrete_function(x).graph)
    trainer.train(FLAGS.block)  # trace and warm up
    trainers[name] = trainer
  print(
    "products per step: "
    + ", ".join(f"{n} {flops[n] / 1e6:.0f} MFLOP" for n, _ in PROTOCOLS)
    + f"; rodeo / paper {flops['rodeo'] / flops['paper']:.3f}",
    flush=True,
  )

  times = {name: [] for name, _ in PROTOCOLS}
  for _ in range(FLAGS.repetitions):
    for name, _ in PROTOCOLS:
      start = time.perf_counter()
      trainers[name].train(FLAGS.block)
      times[name].append(1000 * (time.perf_counter() - start) / FLAGS.block)
  for name, _ in PROTOCOLS:
    ms = statistics.median(times[name])
    print(
      f"step {name:6s}: median {ms:.3f} ms, min {min(times[name]):.3f} ms per step "
      f"({flops[name] / (min(times[name]) / 1000) / 1e9:.0f} GFLOP/s in products at the min)"
    )
  med = {n: statistics.median(t) for n, t in times.items()}
  low = {n: min(t) for n, t in times.items()}
  print(f"rodeo / paper: {med['rodeo'] / med['paper']:.3f} (medians), {low['rodeo'] / low['paper']:.3f} (minima)")

  calls = {"one call": [], "progress": []}
  noop = lambda *args: None  # noqa: E731
  rodeo = trainers["rodeo"]
  for _ in range(FLAGS.repetitions):
    for kind in calls:
      start = time.perf_counter()
      rodeo.train(4 * FLAGS.block, on_block=noop if kind == "progress" else None)
      calls[kind].append(1000 * (time.perf_counter() - start) / (4 * FLAGS.block))
  overhead = statistics.median(calls["progress"]) / statistics.median(calls["one call"]) - 1
  print(
    f"progress blocks: {statistics.median(calls['progress']):.3f} ms per step against "
    f"{statistics.median(calls['one call']):.3f} in one call ({100 * overhead:+.1f}%)",
    flush=True,
  )

  if FLAGS.driver:
    steps = FLAGS.driver_steps
    with tempfile.TemporaryDirectory() as root:
      for name, changes in PROTOCOLS:
        command = [
          sys.executable,
          os.path.join(REPO_ROOT, "run_benchmarks.py"),
          f"--preset={name}",
          "--datasets=mnist",
          "--models=nonlinear",
          "--estimators=disarm",
          "--seeds=0",
          f"--num_steps={steps}",
          f"--eval_every={steps // 4}",
          f"--bound_every={steps}",
          "--toy=none",
          f"--results_dir={root}",
          f"--sweep_name={name}",
          "--published=none",
        ] + [f"--{k}={v}" for k, v in changes.items()]
        if FLAGS.data_dir:
          command.append(f"--data_dir={FLAGS.data_dir}")
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
        if done.returncode:
          print(
            f"driver {name}: exit {done.returncode} (the report may have failed; the runs are timed from metrics.csv)"
          )
        metrics = pd.read_csv(os.path.join(root, name, "runs", "mnist-nonlinear-disarm-seed0", "metrics.csv"))
        rates = metrics["steps_per_sec"].dropna().to_numpy()
        ms = 1000 / np.median(rates)
        print(
          f"driver {name:6s}: {ms:.3f} ms per step (median of {len(rates)} blocks of {steps // 4} steps); "
          f"Trainer.train above: {med[name]:.3f} ({ms / med[name] - 1:+.0%})",
          flush=True,
        )


if __name__ == "__main__":
  app.run(main)
