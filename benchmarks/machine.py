"""What machine a timing was taken on, and what its matrix units do (for every benchmark's first lines)."""

import os
import platform
import statistics
import time


def cpu_description():
  """'<model name> (<cores> cores; AVX2, AVX-512 ...)' from /proc/cpuinfo where there is one."""
  model, flags_seen = platform.processor() or platform.machine(), set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
          model = value.strip()
        elif key.strip() == "flags":
          flags_seen = set(value.split())
  except OSError:
    pass
  extensions = [
    name
    for name, flag in (("AVX2", "avx2"), ("FMA", "fma"), ("AVX-512F", "avx512f"), ("AVX-512 BF16", "avx512_bf16"))
    if flag in flags_seen
  ]
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return f"{model} ({cores} cores; {', '.join(extensions) or 'no AVX2'})"


def median_time(fn, repetitions):
  """The median of ``repetitions`` timed calls of ``fn`` after a warm-up call (tracing, compiling)."""
  fn()
  times = []
  for _ in range(repetitions):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_rate(tf, rows=100_000, inner=200, cols=784, repetitions=5):
  """GFLOP/s of TensorFlow's float32 product [rows, inner] x [inner, cols] (the evaluation's shape)."""
  a = tf.random.uniform([rows, inner])
  b = tf.random.uniform([inner, cols])
  product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
  seconds = median_time(lambda: product().numpy(), repetitions)
  return 2.0 * rows * inner * cols / seconds / 1e9
