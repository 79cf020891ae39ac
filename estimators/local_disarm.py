"""Local DisARM for the multi-sample bound, plain and symmetrised.

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

from estimators.base import Estimator, EstimatorOutput, uniform_noise


def _pair_signal(f_main, f_other):
  """L - L~_i for every i: [m, *batch], with L over f_main and f_main[i] swapped for f_other[i]."""
  num_pairs = f_main.shape[0]
  bound = tf.reduce_logsumexp(f_main, axis=0)
  # Swapping sample i changes one term of the sum: log(sum - exp f_i + exp f~_i), done stably.
  swapped = []
  for i in range(num_pairs):
    terms = tf.concat([f_main[:i], f_other[i:i + 1], f_main[i + 1:]], axis=0)
    swapped.append(tf.reduce_logsumexp(terms, axis=0))
  # The log m normalisers cancel in the difference.
  return bound[tf.newaxis] - tf.stack(swapped, axis=0), bound - tf.math.log(float(num_pairs))


def local_disarm(f, logits, seed, state=None, context=None, num_pairs=1, symmetrised=False):
  del state, context
  probs = tf.sigmoid(logits)
  shape = tf.concat([[num_pairs], tf.shape(logits)], axis=0)
  u = uniform_noise(shape, seed, logits.dtype, member_axis=1)
  b = tf.cast(u < probs, logits.dtype)                 # [m, *batch, D]
  b_tilde = tf.cast(u > 1.0 - probs, logits.dtype)
  f_all = f(tf.concat([b, b_tilde], axis=0))           # [2m, *batch]
  f_b, f_tilde = f_all[:num_pairs], f_all[num_pairs:]
  disagree = tf.abs(b - b_tilde) * tf.sigmoid(tf.abs(logits))
  signal, bound = _pair_signal(f_b, f_tilde)
  # (-1)^{b~_i}
  grad = tf.reduce_sum(0.5 * tf.stop_gradient(signal)[..., tf.newaxis] * (1.0 - 2.0 * b_tilde) * disagree, 0)
  objective = bound
  if symmetrised:
    signal_swapped, bound_swapped = _pair_signal(f_tilde, f_b)
    grad_swapped = tf.reduce_sum(
        0.5 * tf.stop_gradient(signal_swapped)[..., tf.newaxis] * (1.0 - 2.0 * b) * disagree, 0)
    grad = 0.5 * (grad + grad_swapped)
    objective = 0.5 * (bound + bound_swapped)
  return EstimatorOutput(grad=grad, bits=tf.concat([b, b_tilde], 0), f_values=f_all, objective=objective)


def make(num_pairs: int, symmetrised: bool = False) -> Estimator:
  if num_pairs < 1:
    raise ValueError(f"local_disarm needs num_pairs >= 1, got {num_pairs}")
  name = f"local_disarm{'_sym' if symmetrised else ''}_{num_pairs}"
  return Estimator(name=name,
                   fn=functools.partial(local_disarm, num_pairs=num_pairs, symmetrised=symmetrised),
                   num_f_evals=2 * num_pairs, objective_samples=num_pairs,
                   eval_bound_samples=2 * num_pairs,
                   description=f"local DisARM{' (symmetrised)' if symmetrised else ''}, "
                               f"{num_pairs} antithetic pairs (Dong et al. 2020)")


make_symmetrised = functools.partial(make, symmetrised=True)
