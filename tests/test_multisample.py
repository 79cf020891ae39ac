"""Multi-sample-bound estimators (VIMCO, local DisARM) against exact enumeration.

Target: d/d logits E[log mean_{k<=K} exp f(b_k)], b_k iid Bernoulli(sigmoid(logits)),
with f a fixed table (no direct term at this level). The training-loop check with
the direct term is in tests/test_training.py.
"""

import dataclasses
import itertools
import statistics

import numpy as np
import pytest
import tensorflow as tf

from estimators import ESTIMATORS, FAMILIES, estimate_gradient, get_estimator
from estimators import local_disarm as local_disarm_module

CASES = [
  "vimco_2",
  "vimco_3",
  "local_disarm_1",
  "local_disarm_2",
  "local_disarm_3",
  "local_disarm_sym_1",
  "local_disarm_sym_2",
]
NUM_BITS = 2
NUM_DRAWS = 200_000
# 7 estimators x (2 examples x 2 bits) = 28 z-scores expected to pass; Bonferroni at a
# family-wise 0.1% gives |z| < Phi^-1(1 - 0.001 / 56) ~ 4.13 (estimates are bounded, N is large).
Z_BOUND = statistics.NormalDist().inv_cdf(1 - 0.001 / (2 * len(CASES) * 2 * NUM_BITS))


def table_f(table):
  weights = tf.constant(2.0 ** np.arange(NUM_BITS)[::-1], tf.float32)
  table = tf.constant(table, tf.float32)  # [B, 2^D]

  def f(b):  # [S, ..., B, D] -> [S, ..., B]
    index = tf.cast(tf.reduce_sum(b * weights, -1), tf.int32)
    flat = tf.reshape(index, [-1, table.shape[0]])
    values = tf.gather(table, flat, axis=1, batch_dims=0)  # [B, N, B]
    values = tf.linalg.diag_part(tf.transpose(values, [1, 0, 2]))
    return tf.reshape(values, tf.shape(index))

  return f


def exact_gradient(logits, table, num_samples):
  """d/d logits E[log mean exp table[b_k]] for one example, by enumerating K-tuples."""
  s = 1 / (1 + np.exp(-logits))
  states = np.array(list(itertools.product([0, 1], repeat=NUM_BITS)), np.float64)
  grad = np.zeros(NUM_BITS)
  for combo in itertools.product(range(len(states)), repeat=num_samples):
    bits = states[list(combo)]  # [K, D]
    prob = np.prod(np.where(bits == 1, s, 1 - s))
    values = table[list(combo)]
    bound = np.log(np.mean(np.exp(values - values.max()))) + values.max()
    grad += prob * bound * np.sum(bits - s, axis=0)  # score function, exact
  return grad


def check(name_or_estimator, seed=0):
  rng = np.random.default_rng(42)
  logits = np.array([[0.7, -1.3], [6.0, -0.4]])
  tables = rng.normal(size=(2, 2**NUM_BITS)) * 2
  est = get_estimator(name_or_estimator)
  draws = (
    estimate_gradient(est, table_f(tables), tf.constant(logits, tf.float32), seed, num_draws=NUM_DRAWS)
    .numpy()
    .astype(np.float64)
  )
  exact = np.stack([exact_gradient(logits[i], tables[i], est.bound_samples) for i in range(2)])
  se = draws.std(0, ddof=1) / np.sqrt(NUM_DRAWS)
  return (draws.mean(0) - exact) / np.maximum(se, 1e-7), exact, se


@pytest.mark.parametrize("name", CASES)
def test_unbiased_for_the_multi_sample_bound(name):
  z, exact, se = check(name)
  assert np.all(np.abs(z) < Z_BOUND), (z, exact)


def test_planted_errors_fail():
  # Symmetric sign error: (-1)^{b} in place of (-1)^{b~}.
  def wrong_sign(f, logits, noise, state=None, context=None):
    out = local_disarm_module.local_disarm(f, logits, noise, num_pairs=2)
    return out._replace(grad=-out.grad)

  broken = dataclasses.replace(get_estimator("local_disarm_2"), fn=wrong_sign)
  assert np.max(np.abs(check(broken)[0])) > 4 * Z_BOUND
  # VIMCO scored against the wrong bound (K=1: plain REINFORCE target E[f]).
  mislabelled = dataclasses.replace(get_estimator("vimco_3"), bound_samples=1)
  assert np.max(np.abs(check(mislabelled)[0])) > 4 * Z_BOUND


def test_symmetrised_variance_is_not_larger():
  """Averaging the two roles can only help: a Rao-Blackwell-style symmetrisation."""
  rng = np.random.default_rng(1)
  tables = rng.normal(size=(2, 2**NUM_BITS)) * 2
  logits = tf.constant([[0.7, -1.3], [1.5, -0.4]], tf.float32)
  plain = estimate_gradient("local_disarm_2", table_f(tables), logits, 3, num_draws=NUM_DRAWS).numpy()
  sym = estimate_gradient("local_disarm_sym_2", table_f(tables), logits, 3, num_draws=NUM_DRAWS).numpy()
  assert np.all(sym.var(0) <= plain.var(0) * 1.02)


def test_family_names_build_any_size_and_registry_is_consistent():
  assert get_estimator("vimco_7").num_f_evals == 7
  assert get_estimator("local_disarm_4").num_f_evals == 8  # its logged bound's K: compared with vimco_8
  assert get_estimator("local_disarm_sym_4").bound_samples == 4
  for name, est in ESTIMATORS.items():
    assert est.name == name
  with pytest.raises(ValueError, match="vimco"):
    get_estimator("vimco_1")
  with pytest.raises(ValueError, match="local_disarm"):
    get_estimator("local_disarm_0")
  assert set(FAMILIES) >= {"vimco", "local_disarm", "local_disarm_sym"}


def test_vimco_matches_tfp_swap_one_out_definition():
  """L - L_{-k} with L_{-k}: f_k replaced by the mean of the others."""
  f_values = tf.constant([[1.0], [3.0], [-2.0]])
  import tensorflow_probability as tfp

  swapped, bound = tfp.stats.log_soomean_exp(f_values, axis=0)
  f = f_values.numpy()[:, 0]
  for k in range(3):
    replaced = f.copy()
    replaced[k] = np.mean(np.delete(f, k))
    np.testing.assert_allclose(swapped.numpy()[k, 0], np.log(np.mean(np.exp(replaced))), atol=2e-6)
  np.testing.assert_allclose(bound.numpy()[0], np.log(np.mean(np.exp(f))), rtol=1e-6)
