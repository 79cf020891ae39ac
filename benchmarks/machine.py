"""What machine a timing was taken on, and what its matrix units do (for every benchmark's first lines)."""

import statistics
import time

from training.provenance import cpu_description  # noqa: F401 - one home, re-exported for the benchmarks


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
