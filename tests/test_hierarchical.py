"""Hierarchical Bernoulli VAEs: the model's API, and per-layer estimators checked against exact gradients.

The exact gradient of -mean_x E_q[ELBO] enumerates all 2^D x 2^D states of a tiny
2-layer model (log q terms included: their direct part has zero expectation, so
the full gradient is what the per-layer single-sample estimators target). The
Monte Carlo mean of ``hierarchical_gradients`` over a tiled batch (every copy of an
example draws its own noise) must match it within a z-bound, and planted errors
must not.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from estimators import get_estimator
from models.bernoulli_vae import bernoulli_log_prob
from models.hierarchical_vae import HierarchicalBernoulliVAE
from training import layerwise

NUM_PIXELS, NUM_LATENTS = 5, 3
MEAN_TRAIN = np.array([0.2, 0.7, 0.5, 0.35, 0.9], np.float32)
X = tf.constant([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]], tf.float32)
# 24 replicates of 1,000 copies of each example: the replicate-mean z is ~t with 23 d.o.f.;
# P(|t_23| > 5.5) ~ 1.4e-5 per parameter; 65 parameters x 8 cases keep the family-wise
# false-failure rate under 1%. The planted errors below reach z of ~16 (fixed upper layers)
# and ~300 (negated top layer) at this size.
Z_BOUND = 5.5
NUM_REPLICATES, COPIES = 24, 1000


def tiny_model(cls=HierarchicalBernoulliVAE, seed=3):
  return cls(2, MEAN_TRAIN, seed=seed, num_latents=NUM_LATENTS)


def exact_gradients(model, x):
  """Gradients of -mean_x E_q[ELBO(x, b)] (encoder, then decoder and prior) by enumerating every state."""
  states = list(itertools.product([0.0, 1.0], repeat=model.num_latents))
  joint = tf.constant(list(itertools.product(states, repeat=model.num_layers)), tf.float32)  # [T, L, D]
  batch = int(x.shape[0])
  with tf.GradientTape(persistent=True) as tape:
    bits = [tf.broadcast_to(joint[:, l, None, :], [joint.shape[0], batch, model.num_latents])
            for l in range(model.num_layers)]
    logits = [model.layer_logits(l, bits[l - 1] if l else None, x) for l in range(model.num_layers)]
    log_q = tf.add_n([tf.reduce_sum(bernoulli_log_prob(a, b), -1) for a, b in zip(logits, bits)])  # [T, B]
    loss = -tf.reduce_mean(tf.reduce_sum(tf.exp(log_q) * model.elbo(x, bits, logits), axis=0))
  enc = tape.gradient(loss, model.encoder_variables)
  dec = tape.gradient(loss, model.decoder_variables + [model.prior_logits])
  return [g.numpy().astype(np.float64) for g in enc + dec]


def replicate_means(grad_fn, x, seed=11):
  """``NUM_REPLICATES`` Monte Carlo means of ``grad_fn(tiled x, seed) -> list of gradients``."""
  tiled = tf.tile(x, [COPIES, 1])
  fn = tf.function(grad_fn)
  return [[g.numpy().astype(np.float64) for g in fn(tiled, tf.constant([seed, r], tf.int32))]
          for r in range(NUM_REPLICATES)]


def max_abs_z(reps, exact):
  worst = 0.0
  for i, target in enumerate(exact):
    samples = np.stack([r[i] for r in reps])
    se = samples.std(0, ddof=1) / np.sqrt(len(samples))
    mask = se > 1e-9
    worst = max(worst, float(np.max(np.abs(samples.mean(0) - target)[mask] / se[mask], initial=0.0)))
    np.testing.assert_allclose(samples.mean(0)[~mask], target[~mask], atol=1e-5)
  return worst


def loop_gradients(model, estimator, states, share):
  def grads(x, seed):
    _, enc, dec = layerwise.hierarchical_gradients(model, estimator, x, seed, states, share)
    return enc + dec
  return grads


@pytest.mark.parametrize("share", [False, True], ids=["independent_upper", "shared_upper"])
@pytest.mark.parametrize("estimator", ["reinforce_loo", "arm", "disarm", "relax"])
def test_layerwise_gradients_match_exact(estimator, share):
  model = tiny_model()
  states = layerwise.make_layer_states(model, estimator, seed=(5, 6))
  exact = exact_gradients(model, X)
  reps = replicate_means(loop_gradients(model, estimator, states, share), X)
  assert max_abs_z(reps, exact) < Z_BOUND
  assert max_abs_z(reps, [-g for g in exact]) > 4 * Z_BOUND  # the check has power


def test_planted_errors_are_caught():
  model = tiny_model()
  exact = exact_gradients(model, X)

  def negated_top_layer(x, seed):  # backpropagate the top layer's estimate with the wrong sign
    with tf.GradientTape() as tape:
      est = layerwise.layerwise_encoder_grads(model, "disarm", x, seed)
    grads = [tf.stop_gradient(g) for g in est.grads[:-1]] + [-tf.stop_gradient(est.grads[-1])]
    batch = tf.cast(tf.shape(x)[0], tf.float32)
    return tape.gradient(est.logits, model.encoder_variables, output_gradients=[-g / batch for g in grads])

  assert max_abs_z(replicate_means(negated_top_layer, X), exact[:4]) > Z_BOUND

  class FixedUpper(HierarchicalBernoulliVAE):
    """Completes a candidate with the forward sample's upper bits instead of resampling them."""

    def sample_posterior(self, x, seed):
      bits, logits = super().sample_posterior(x, seed)
      self.forward_bits = bits
      return bits, logits

    def complete(self, x, bits_prefix, start_layer, noise):
      if not bits_prefix:
        return super().complete(x, bits_prefix, start_layer, noise)
      bits, logits = list(bits_prefix), []
      for l in range(start_layer, self.num_layers):
        logits.append(self.layer_logits(l, bits[-1], x))
        bits.append(tf.broadcast_to(self.forward_bits[l], tf.shape(logits[-1])))
      return bits, logits

  fixed = tiny_model(FixedUpper)
  reps = replicate_means(loop_gradients(fixed, "disarm", None, False), X)
  assert max_abs_z(reps, exact) > Z_BOUND


def exact_bottom_logit_gradients(model, x):
  """``d E_q[ELBO(x, b)] / d logits_0`` per example and bit (``[B, D]``), by enumeration."""
  states = list(itertools.product([0.0, 1.0], repeat=model.num_latents))
  joint = tf.constant(list(itertools.product(states, repeat=model.num_layers)), tf.float32)
  batch = int(x.shape[0])
  with tf.GradientTape() as tape:
    bottom = model.layer_logits(0, None, x)
    tape.watch(bottom)
    bits = [tf.broadcast_to(joint[:, l, None, :], [joint.shape[0], batch, model.num_latents])
            for l in range(model.num_layers)]
    logits = [bottom] + [model.layer_logits(l, bits[l - 1], x) for l in range(1, model.num_layers)]
    log_q = tf.add_n([tf.reduce_sum(bernoulli_log_prob(a, b), -1) for a, b in zip(logits, bits)])
    total = tf.reduce_sum(tf.exp(log_q) * model.elbo(x, bits, logits))
  return tape.gradient(total, bottom).numpy().astype(np.float64)


def test_relax_needs_the_relaxed_completion(monkeypatch):
  """Completing RELAX's relaxed candidates with hard upper bits (conditioned on the relaxed value)
  makes its control variate jump in z, which biases it; the relaxed completion does not."""
  model = tiny_model()
  exact = exact_bottom_logit_gradients(model, X)
  copies = 100000
  tiled = tf.tile(X, [copies, 1])

  def bottom_z():
    states = layerwise.make_layer_states(model, "relax", seed=(5, 6))
    for state in states:  # any temperature must be unbiased; at 0.3 the bias of the planted error is plain
      state.log_temperature.assign(np.log(0.3))
    fn = tf.function(lambda x, s: layerwise.layerwise_encoder_grads(model, "relax", x, s, states, True).grads[0])
    g = fn(tiled, tf.constant([1, 2])).numpy().reshape(copies, *exact.shape).astype(np.float64)
    return np.max(np.abs(g.mean(0) - exact) / (g.std(0, ddof=1) / np.sqrt(copies)))

  z = bottom_z()
  assert z < Z_BOUND, z
  monkeypatch.setitem(layerwise.RELAXED_FROM, "relax", None)  # every candidate completed with hard bits
  z = bottom_z()
  assert z > Z_BOUND, z


def test_model_api_shapes_and_broadcasting():
  model = HierarchicalBernoulliVAE(3, MEAN_TRAIN, seed=1, num_latents=4)
  B, D, P = 2, 4, NUM_PIXELS
  assert (model.num_layers, model.num_latents, model.num_pixels) == (3, D, P)
  assert len(model.encoder_variables) == len(model.decoder_variables) == 6
  assert isinstance(model.prior_logits, tf.Variable) and np.all(model.prior_logits.numpy() == 0)
  assert len(model.trainable_variables) == 13
  np.testing.assert_allclose(model.decoder_layers[0].b.numpy(), np.log(MEAN_TRAIN / (1 - MEAN_TRAIN)), rtol=1e-5)
  np.testing.assert_allclose(model.encoder_input(X), X - MEAN_TRAIN)

  bits, logits = model.sample_posterior(X, tf.constant([1, 2]))
  again, _ = model.sample_posterior(X, tf.constant([1, 2]))
  assert [b.shape for b in bits] == [a.shape for a in logits] == [(B, D)] * 3
  for b, c in zip(bits, again):
    np.testing.assert_array_equal(b, c)
    assert set(np.unique(b.numpy())) <= {0.0, 1.0}
  np.testing.assert_allclose(logits[2], model.layer_logits(2, bits[1], X), rtol=1e-6)

  # complete() with extra sample dims on the prefix and the noise; b = 1[u < sigmoid(logits)].
  rng = np.random.default_rng(0)
  prefix = tf.constant(rng.integers(0, 2, (7, B, D)), tf.float32)
  noise = [tf.constant(rng.uniform(size=(7, B, D)), tf.float32) for _ in range(2)]
  full, upper = model.complete(X, [prefix], 1, noise)
  assert [b.shape for b in full] == [(7, B, D)] * 3 and [a.shape for a in upper] == [(7, B, D)] * 2
  np.testing.assert_array_equal(full[1], tf.cast(noise[0] < tf.sigmoid(model.layer_logits(1, prefix, X)), tf.float32))

  # elbo over [6, 7, B, D] bits equals the per-sample elbo, layers with different leading dims broadcast.
  stacked = [tf.constant(rng.integers(0, 2, (6, 7, B, D)), tf.float32) for _ in range(3)]
  enc = [model.layer_logits(0, None, X)] + [model.layer_logits(l, stacked[l - 1], X) for l in (1, 2)]
  values = model.elbo(X, stacked, enc)
  assert values.shape == (6, 7, B)
  one = model.elbo(X, [b[4, 5] for b in stacked], [enc[0]] + [a[4, 5] for a in enc[1:]])
  np.testing.assert_allclose(values[4, 5], one, rtol=1e-5)
  mixed = model.elbo(X, [bits[0], stacked[1][0], stacked[2][0]], [logits[0], enc[1][0], enc[2][0]])
  assert mixed.shape == (7, B)


@pytest.mark.parametrize("num_layers", [2, 3, 4])
def test_depths_build_and_bound_is_finite(num_layers):
  mean = np.random.default_rng(num_layers).uniform(0.05, 0.95, 784).astype(np.float32)
  model = HierarchicalBernoulliVAE(num_layers, mean, seed=num_layers)
  x = tf.cast(tf.random.stateless_uniform([4, 784], [0, 1]) < mean, tf.float32)
  bound = model.multisample_bound(x, 10, tf.constant([0, 3])).numpy()
  assert bound.shape == (4,) and np.all(np.isfinite(bound)) and np.all(bound <= 0)
  # The training entry point runs at this depth too, RELAX included.
  states = layerwise.make_layer_states(model, "relax", seed=(1, 2))
  loss, enc, dec = layerwise.hierarchical_gradients(model, "relax", x, tf.constant([0, 4]), states, True)
  assert len(enc) == 2 * num_layers and len(dec) == 2 * num_layers + 1
  assert np.isfinite(loss.numpy()) and all(np.all(np.isfinite(g.numpy())) for g in enc + dec)


def test_relax_state_gradients_flow_through_every_layer():
  model = tiny_model()
  states = layerwise.make_layer_states(model, "relax", seed=(0, 1))
  assert [s.context_dim for s in states] == [NUM_PIXELS, NUM_LATENTS]
  with tf.GradientTape(persistent=True) as tape:
    _, enc, _ = layerwise.hierarchical_gradients(model, "relax", X, tf.constant([2, 3]), states)
    variance = tf.add_n([tf.reduce_sum(tf.square(g)) for g in enc])
  for state in states:
    grads = tape.gradient(variance, state.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


@pytest.mark.parametrize("name", ["vimco_2", "local_disarm_1"])
def test_multi_sample_estimators_are_refused(name):
  with pytest.raises(ValueError, match="single-sample.*disarm"):
    layerwise.hierarchical_gradients(tiny_model(), name, X, tf.constant([0, 0]))
  assert get_estimator(name).multi_sample


# ------------------------------------------------------------ stacked members (issue 5)
MEMBER_SEEDS = [3, 8]
MEMBER_STATE_SEEDS = [(5, 6), (7, 8)]
X_MEMBERS = tf.stack([X, tf.constant([[0, 0, 1, 1, 1], [1, 1, 0, 0, 1]], tf.float32)])  # [M, B, P]
SEED_ROWS = tf.constant([[1, 2], [3, 4]], tf.int32)                                     # [M, 2]


def test_stacked_members_start_as_lone_models():
  stacked = HierarchicalBernoulliVAE(3, MEAN_TRAIN, seed=MEMBER_SEEDS, num_latents=NUM_LATENTS)
  assert stacked.num_members == 2 and stacked.prior_logits.shape == (2, 1, NUM_LATENTS)
  assert HierarchicalBernoulliVAE(2, MEAN_TRAIN, seed=[4], num_latents=NUM_LATENTS).num_members == 1
  states = layerwise.make_layer_states(stacked, "relax", seed=MEMBER_STATE_SEEDS)
  assert [s.num_members for s in states] == [2, 2, 2]
  for m, seed in enumerate(MEMBER_SEEDS):
    lone = HierarchicalBernoulliVAE(3, MEAN_TRAIN, seed=seed, num_latents=NUM_LATENTS)
    assert lone.num_members is None
    pairs = list(zip(stacked.trainable_variables, lone.trainable_variables))
    assert len(pairs) == 13
    for s, v in pairs:  # bitwise: the same draws, stacked
      np.testing.assert_array_equal(s[m].numpy().reshape(v.shape), v.numpy(), err_msg=v.name)
    assert stacked.encoder_layers[0].w.shape == (2,) + tuple(lone.encoder_layers[0].w.shape)
    assert stacked.encoder_layers[0].b.shape == (2, 1, NUM_LATENTS)
    lone_states = layerwise.make_layer_states(lone, "relax", seed=MEMBER_STATE_SEEDS[m])
    for state, lone_state in zip(states, lone_states):
      for s, v in zip(state.trainable_variables, lone_state.trainable_variables):
        np.testing.assert_array_equal(s[m].numpy().reshape(v.shape), v.numpy(), err_msg=v.name)
    # Noise: each member draws what the lone model draws with its seed row.
    bits, logits = stacked.sample_posterior(X_MEMBERS, SEED_ROWS)
    lone_bits, lone_logits = lone.sample_posterior(X_MEMBERS[m], SEED_ROWS[m])
    for b, c in zip(bits, lone_bits):
      np.testing.assert_array_equal(b[m], c)
    for a, c in zip(logits, lone_logits):
      np.testing.assert_allclose(a[m], c, atol=1e-6)
    bound = stacked.multisample_bound(X_MEMBERS, 4, SEED_ROWS)
    assert bound.shape == (2, 2)
    np.testing.assert_allclose(bound[m], lone.multisample_bound(X_MEMBERS[m], 4, SEED_ROWS[m]), atol=1e-5)
  with pytest.raises(ValueError, match="one per member"):
    layerwise.make_layer_states(stacked, "relax", seed=(5, 6))
  with pytest.raises(ValueError, match="one \\(int, int\\) pair"):
    layerwise.make_layer_states(tiny_model(), "relax", seed=MEMBER_STATE_SEEDS)


def stacked_and_lone_gradients(model, estimator, states, x, seed, share):
  """``(loss, encoder + decoder gradients, state gradients)``: ``hierarchical_gradients`` and, with
  states, the gradients of the summed squared encoder gradients (RELAX's training signal)."""
  with tf.GradientTape() as tape:
    loss, enc, dec = layerwise.hierarchical_gradients(model, estimator, x, seed, states, share)
    variance = tf.add_n([tf.reduce_sum(tf.square(g)) for g in enc])
  state_grads = tape.gradient(variance, [v for s in states for v in s.trainable_variables]) if states else []
  return loss, enc + dec, state_grads


@pytest.mark.parametrize("estimator,share", [("reinforce_loo", False), ("arm", True), ("disarm", False),
                                             ("disarm", True), ("relax", False), ("relax", True)])
def test_stacked_members_give_the_lone_models_gradients(estimator, share):
  """Member m of a 2-member stack, fed x[m] and seed row m, computes the lone model's gradients (3 layers)."""
  stacked = HierarchicalBernoulliVAE(3, MEAN_TRAIN, seed=MEMBER_SEEDS, num_latents=NUM_LATENTS)
  states = layerwise.make_layer_states(stacked, estimator, seed=MEMBER_STATE_SEEDS)
  loss, grads, state_grads = stacked_and_lone_gradients(stacked, estimator, states, X_MEMBERS, SEED_ROWS, share)
  assert loss.shape == (2,)
  member = lambda g, m, like: tf.reshape(g[m], like.shape)  # biases are [M, 1, k] against [k]
  worst_other_row = 0.0
  for m, seed in enumerate(MEMBER_SEEDS):
    lone = HierarchicalBernoulliVAE(3, MEAN_TRAIN, seed=seed, num_latents=NUM_LATENTS)
    lone_states = layerwise.make_layer_states(lone, estimator, seed=MEMBER_STATE_SEEDS[m])
    lone_loss, lone_grads, lone_state_grads = stacked_and_lone_gradients(
        lone, estimator, lone_states, X_MEMBERS[m], SEED_ROWS[m], share)
    assert lone_loss.shape == ()
    np.testing.assert_allclose(loss[m], lone_loss, atol=1e-5)
    assert len(grads) == len(lone_grads) == 13 and len(state_grads) == len(lone_state_grads)
    for g, h in zip(grads, lone_grads):
      assert g.shape[0] == 2 and g.shape.num_elements() == 2 * h.shape.num_elements()
      np.testing.assert_allclose(member(g, m, h), h, atol=1e-5)
    # RELAX's variance gradients are second-order and large (~10): summation order shows at ~4e-6 relative.
    for g, h in zip(state_grads, lone_state_grads):
      np.testing.assert_allclose(member(g, m, h), h, rtol=1e-4, atol=1e-5)
    # The check has power: the other member's seed row gives other gradients.
    _, other, _ = stacked_and_lone_gradients(lone, estimator, lone_states, X_MEMBERS[m], SEED_ROWS[1 - m], share)
    worst_other_row = max(worst_other_row, max(float(np.max(np.abs(member(g, m, h) - h)))
                                               for g, h in zip(grads, other)))
  assert worst_other_row > 1e-2
