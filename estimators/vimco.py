"""VIMCO: leave-one-out control variates for the K-sample bound, ``vimco_<K>``.

``K`` independent draws ``b_k ~ q``, ``f_k = f(b_k)``, bound ``L = log mean_k exp f_k``.
Each sample's learning signal is ``L - L_{-k}``, where ``L_{-k}`` is ``L`` with ``f_k``
replaced by the mean of the other ``f_j`` (the log of their geometric mean of
``exp f``): a baseline independent of ``b_k``. The estimate through the sampling
distribution is

    g = sum_k (L - L_{-k}) * (b_k - sigmoid(phi)),

and the caller adds the direct term ``grad L`` through ``f``'s own dependence on
its parameters (``objective`` below). ``tfp.stats.log_soomean_exp`` computes
``L_{-k}`` and ``L`` together.

Reference:
  Mnih, Rezende. "Variational Inference for Monte Carlo Objectives". ICML 2016.
  (PROTOCOL.md section 2.)
"""

import functools

import tensorflow as tf

from estimators.base import Estimator, EstimatorOutput, check_num_samples, independent_samples


def vimco(f, logits, noise, state=None, context=None, num_samples=2):
  del state, context
  # Imported here, at trace time: TFP's import (about 0.7 CPU-s) would otherwise be paid by every
  # process that loads the registry, and only VIMCO uses it.
  import tensorflow_probability as tfp

  check_num_samples("vimco", num_samples)
  probs = tf.sigmoid(logits)
  bits = independent_samples(logits, noise, num_samples)  # [K, *batch, D]
  f_values = f(bits)  # [K, *batch]
  swapped, bound = tfp.stats.log_soomean_exp(f_values, axis=0)  # L_{-k} [K, *batch], L [*batch]
  signal = tf.stop_gradient(bound[tf.newaxis] - swapped)[..., tf.newaxis]
  grad = tf.reduce_sum(signal * (bits - probs), axis=0)
  return EstimatorOutput(grad=grad, bits=bits, f_values=f_values, objective=bound, num_independent=num_samples)


def make(num_samples: int) -> Estimator:
  check_num_samples("vimco", num_samples)
  return Estimator(
    name=f"vimco_{num_samples}",
    fn=functools.partial(vimco, num_samples=num_samples),
    num_f_evals=num_samples,
    bound_samples=num_samples,
    bound_estimator=True,
    label="VIMCO",
    family="vimco",
    size=num_samples,
    description=f"VIMCO, {num_samples}-sample bound",
    reference="Mnih & Rezende, ICML 2016",
    decoder_sample="estimator",
    reference_decoder_reduction="sum",
  )
