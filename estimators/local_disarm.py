"""Local DisARM for the multi-sample bound, plain and symmetrised (``local_disarm_<m>``, ``local_disarm_sym_<m>``).

``m`` antithetic pairs ``(b_i, b~_i)``, each from its own ``u_i`` exactly as in
DisARM. The objective is the ``m``-sample bound ``L = log mean_i exp f(b_i)``. For
pair ``i`` let ``L~_i`` be ``L`` with ``b_i`` replaced by ``b~_i``; then, per bit,

    g = sum_i 1/2 * (L - L~_i) * (-1)^{b~_i} * 1[b_i != b~_i] * sigmoid(|phi|),

plus the direct term ``grad L`` added by the caller (``objective``). Each pair is
a DisARM estimate of ``L`` as a function of ``b_i`` with the other samples held
fixed. The symmetrised variant averages this with the same estimate with the
roles of ``b`` and ``b~`` swapped (objective: the mean of the two bounds). Both use
``2m`` evaluations of ``f`` and are compared with VIMCO at ``2m`` samples, all
evaluated with the ``2m``-sample bound.

Reference:
  Dong, Mnih, Tucker. "DisARM". NeurIPS 2020, section 4. (PROTOCOL.md section 2.)
"""

import functools

import tensorflow as tf

from estimators.arm import antithetic_pairs
from estimators.base import Estimator, EstimatorOutput, check_num_samples


def _pair_signal(f_main, f_other):
  """L - L~_i for every i: [m, *batch], with L over f_main and f_main[i] swapped for f_other[i]."""
  num_pairs = f_main.shape[0]
  bound = tf.reduce_logsumexp(f_main, axis=0)
  # Swapping sample i changes one term of the sum: log(sum - exp f_i + exp f~_i), done stably.
  swapped = []
  for i in range(num_pairs):
    terms = tf.concat([f_main[:i], f_other[i : i + 1], f_main[i + 1 :]], axis=0)
    swapped.append(tf.reduce_logsumexp(terms, axis=0))
  # The log m normalisers cancel in the difference.
  return bound[tf.newaxis] - tf.stack(swapped, axis=0), bound - tf.math.log(float(num_pairs))


def local_disarm(f, logits, noise, state=None, context=None, num_pairs=1, symmetrised=False):
  del state, context
  _, bits = antithetic_pairs(logits, noise, num_pairs)  # [2m, *batch, D]
  b, b_tilde = bits[:num_pairs], bits[num_pairs:]
  f_all = f(bits)  # [2m, *batch]
  f_b, f_tilde = f_all[:num_pairs], f_all[num_pairs:]
  disagree = tf.abs(b - b_tilde) * tf.sigmoid(tf.abs(logits))
  signal, bound = _pair_signal(f_b, f_tilde)
  # (-1)^{b~_i}
  grad = tf.reduce_sum(0.5 * tf.stop_gradient(signal)[..., tf.newaxis] * (1.0 - 2.0 * b_tilde) * disagree, 0)
  objective = bound
  if symmetrised:
    signal_swapped, bound_swapped = _pair_signal(f_tilde, f_b)
    grad_swapped = tf.reduce_sum(
      0.5 * tf.stop_gradient(signal_swapped)[..., tf.newaxis] * (1.0 - 2.0 * b) * disagree, 0
    )
    grad = 0.5 * (grad + grad_swapped)
    objective = 0.5 * (bound + bound_swapped)
  return EstimatorOutput(grad=grad, bits=bits, f_values=f_all, objective=objective, num_independent=num_pairs)


def make(num_pairs: int, symmetrised: bool = False) -> Estimator:
  family = "local_disarm_sym" if symmetrised else "local_disarm"
  check_num_samples(family, num_pairs, minimum=1, noun="antithetic pairs")
  return Estimator(
    name=f"{family}_{num_pairs}",
    fn=functools.partial(local_disarm, num_pairs=num_pairs, symmetrised=symmetrised),
    num_f_evals=2 * num_pairs,
    bound_samples=num_pairs,
    bound_estimator=True,
    label="Local DisARM (sym.)" if symmetrised else "Local DisARM",
    family=family,
    size=num_pairs,
    description=f"local DisARM{' (symmetrised)' if symmetrised else ''}, {num_pairs} antithetic pairs",
    reference="Dong, Mnih & Tucker, NeurIPS 2020",
    decoder_sample="estimator",
    reference_decoder_reduction="sum",
  )


make_symmetrised = functools.partial(make, symmetrised=True)
