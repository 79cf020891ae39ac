"""Hierarchical Bernoulli VAEs: the model's API, and per-layer estimators checked against exact gradients.

The exact gradient of -mean_x E_q[ELBO] enumerates all 2^D x 2^D states of a tiny
2-layer model (log q terms included: their direct part has zero expectation, so
the full gradient is what the per-layer single-sample estimators target). The
Monte Carlo mean of the gradient engine's ``step_gradients`` (training/engine.py,
the code path the trainer uses) over a tiled batch (every copy of an example draws
its own noise) must match it within a z-bound, and planted errors must not.
"""

import dataclasses
import itertools
import types

import numpy as np
import pytest
import tensorflow as tf

from contracts import streams
from contracts.settings import RunConfig, Settings
from estimators import SeedNoise, get_estimator
from models import bernoulli_log_prob, build_model
from training import engine
from training import noise as noise_lib
from training.engine import StepOptions
from training.trainer import Trainer
from training.validation import validate_config

NUM_PIXELS, NUM_LATENTS = 5, 3
MEAN_TRAIN = np.array([0.2, 0.7, 0.5, 0.35, 0.9], np.float32)
X = tf.constant([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]], tf.float32)
# 24 replicates of 1,000 copies of each example: the replicate-mean z is ~t with 23 d.o.f.;
# P(|t_23| > 5.5) ~ 1.4e-5 per parameter; 65 parameters x 8 cases keep the family-wise
# false-failure rate under 1%. The planted errors below reach z of ~13 (fixed upper layers)
# and ~230 (negated top layer) at this size (measured with this engine's streams; the
# correct estimators' worst z is 1.6-3.6).
Z_BOUND = 5.5
NUM_REPLICATES, COPIES = 24, 1000
SALT = streams.LAYERED_MODEL_INIT_SALT  # the trainer builds layered models from (run seed, SALT)


def tiny_model(num_layers=2, seed=3, num_latents=NUM_LATENTS):
  """A lone layered model; ``seed`` a list of ints stacks one member per seed."""
  pairs = [(s, SALT) for s in seed] if isinstance(seed, list) else (seed, SALT)
  return build_model(f"linear_{num_layers}layer", MEAN_TRAIN, seed=pairs, num_latents=num_latents)


def layer_states(model, estimator, seed):
  """One estimator state per layer, built as the trainer builds them (None without state).

  ``seed``: one ``(int, int)`` pair for a lone model, a list of pairs (one per member)
  for a stacked one; layer ``l`` gets the ``l``-th pair split from it.
  """
  est = get_estimator(estimator)
  if not est.has_state:
    return None
  stacked = model.num_members is not None
  per_layer = noise_lib.split(tf.constant(seed, tf.int32), model.num_layers)
  return [
    est.trainable.init(model.num_latents, model.context_dim(l), noise_lib.params_for(s, stacked))
    for l, s in enumerate(per_layer)
  ]


def options(share):
  # The exact target is the gradient of the batch MEAN of -ELBO: the decoder's loss is
  # reduced by a mean here (RELAX's reference reduction, a sum, is B times that).
  return StepOptions(share_upper_noise=share, decoder_reduction="mean")


def exact_gradients(model, x):
  """Gradients of -mean_x E_q[ELBO(x, b)] (encoder, then decoder and prior) by enumerating every state."""
  states = list(itertools.product([0.0, 1.0], repeat=model.num_latents))
  joint = tf.constant(list(itertools.product(states, repeat=model.num_layers)), tf.float32)  # [T, L, D]
  batch = int(x.shape[0])
  with tf.GradientTape(persistent=True) as tape:
    bits = [
      tf.broadcast_to(joint[:, l, None, :], [joint.shape[0], batch, model.num_latents]) for l in range(model.num_layers)
    ]
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
  return [
    [g.numpy().astype(np.float64) for g in fn(tiled, tf.constant([seed, r], tf.int32))] for r in range(NUM_REPLICATES)
  ]


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
  """The engine's encoder, decoder and prior gradients of one step (the state used, not trained)."""
  est = get_estimator(estimator)

  def grads(x, seed):
    out = engine.step_gradients(model, est, x, SeedNoise(seed), states, options(share), train_state=False)
    return out.encoder + out.decoder + [out.prior]

  return grads


@pytest.mark.parametrize("share", [False, True], ids=["independent_upper", "shared_upper"])
@pytest.mark.parametrize("estimator", ["reinforce_loo", "arm", "disarm", "relax"])
def test_layerwise_gradients_match_exact(estimator, share):
  model = tiny_model()
  states = layer_states(model, estimator, seed=(5, 6))
  exact = exact_gradients(model, X)
  reps = replicate_means(loop_gradients(model, estimator, states, share), X)
  assert max_abs_z(reps, exact) < Z_BOUND
  assert max_abs_z(reps, [-g for g in exact]) > 4 * Z_BOUND  # the check has power
  # ... and so do the estimates themselves: decoder and prior gradients come from the
  # forward sample whatever the estimator, so check every encoder layer on its own
  # (measured: z of 75-230 against the negated gradient).
  for l in range(model.num_layers):
    layer = slice(2 * l, 2 * l + 2)  # layer l's encoder weights and bias
    assert max_abs_z([r[layer] for r in reps], [-g for g in exact[layer]]) > 4 * Z_BOUND, l


def test_planted_errors_are_caught(monkeypatch):
  model = tiny_model()
  exact = exact_gradients(model, X)
  disarm = get_estimator("disarm")

  def negated_top_layer(f, logits, noise, state=None, context=None):
    """DisARM whose top layer's estimate has the wrong sign (f is the engine's per-layer objective)."""
    out = disarm.fn(f, logits, noise, state=state, context=context)
    return out._replace(grad=-out.grad) if f.layer == f.model.num_layers - 1 else out

  broken = dataclasses.replace(disarm, name="disarm_negated_top", fn=negated_top_layer)
  assert max_abs_z(replicate_means(loop_gradients(model, broken, None, False), X), exact) > Z_BOUND

  class FixedUpper(engine.LayerObjective):
    """Completes a candidate with the forward sample's upper bits instead of resampling them."""

    def __init__(self, model, x, forward_bits, *args, **kwargs):
      super().__init__(model, x, forward_bits, *args, **kwargs)
      self.forward_bits = forward_bits

    def _hard(self, candidates, uniforms=None):
      bits, logits = self.below + [candidates], list(self.fixed_logits)
      for j in range(self.layer + 1, self.model.num_layers):
        logits.append(tf.stop_gradient(self.model.layer_logits(j, bits[-1], self.x)))
        bits.append(tf.broadcast_to(self.forward_bits[j], tf.shape(logits[-1])))
      return self.model.elbo(self.x, bits, logits)

  monkeypatch.setattr(engine, "LayerObjective", FixedUpper)
  reps = replicate_means(loop_gradients(model, "disarm", None, False), X)
  assert max_abs_z(reps, exact) > Z_BOUND


def exact_bottom_logit_gradients(model, x):
  """``d E_q[ELBO(x, b)] / d logits_0`` per example and bit (``[B, D]``), by enumeration."""
  states = list(itertools.product([0.0, 1.0], repeat=model.num_latents))
  joint = tf.constant(list(itertools.product(states, repeat=model.num_layers)), tf.float32)
  batch = int(x.shape[0])
  with tf.GradientTape() as tape:
    bottom = model.layer_logits(0, None, x)
    tape.watch(bottom)
    bits = [
      tf.broadcast_to(joint[:, l, None, :], [joint.shape[0], batch, model.num_latents]) for l in range(model.num_layers)
    ]
    logits = [bottom] + [model.layer_logits(l, bits[l - 1], x) for l in range(1, model.num_layers)]
    log_q = tf.add_n([tf.reduce_sum(bernoulli_log_prob(a, b), -1) for a, b in zip(logits, bits)])
    total = tf.reduce_sum(tf.exp(log_q) * model.elbo(x, bits, logits))
  return tape.gradient(total, bottom).numpy().astype(np.float64)


class HardRelaxedCompletion(engine.LayerObjective):
  """Planted error: RELAX's relaxed candidates completed with hard upper bits, as the discrete one."""

  def __call__(self, bits, relaxed=None, temperature=None):
    return self._hard(bits if relaxed is None else tf.concat([bits, relaxed], axis=0))


def test_relax_needs_the_relaxed_completion(monkeypatch):
  """Completing RELAX's relaxed candidates with hard upper bits (conditioned on the relaxed value)
  makes its control variate jump in z, which biases it; the relaxed completion does not."""
  model = tiny_model()
  exact = exact_bottom_logit_gradients(model, X)
  copies = 100000
  tiled = tf.tile(X, [copies, 1])
  relax = get_estimator("relax")

  def bottom_z():
    states = layer_states(model, "relax", seed=(5, 6))
    for state in states:  # any temperature must be unbiased; at 0.3 the bias of the planted error is plain
      state.log_temperature.assign(np.full(state.log_temperature.shape, np.log(0.3), np.float32))
    fn = tf.function(
      lambda x, s: engine.step_gradients(
        model, relax, x, SeedNoise(s), states, options(True), decoder=False, train_state=False
      ).estimates[0]
    )
    g = fn(tiled, tf.constant([1, 2])).numpy().reshape(copies, *exact.shape).astype(np.float64)
    return np.max(np.abs(g.mean(0) - exact) / (g.std(0, ddof=1) / np.sqrt(copies)))

  # Measured at noise seeds (1, 2), (3, 4), (5, 6): z of 0.9-1.9 with the relaxed completion,
  # 8.7-9.9 with the planted hard one.
  z = bottom_z()
  assert z < Z_BOUND, z
  monkeypatch.setattr(engine, "LayerObjective", HardRelaxedCompletion)  # every candidate completed with hard bits
  z = bottom_z()
  assert z > Z_BOUND, z


def test_model_api_shapes_and_broadcasting():
  model = tiny_model(3, seed=1, num_latents=4)
  B, D, P = 2, 4, NUM_PIXELS
  assert (model.num_layers, model.num_latents, model.num_pixels) == (3, D, P)
  assert model.num_members is None
  assert len(model.encoder_variables) == len(model.decoder_variables) == 6
  assert isinstance(model.prior_logits, tf.Variable) and np.all(model.prior_logits.numpy() == 0)
  assert model.prior_logits.shape == (1, D)
  assert len(model.trainable_variables) == 13
  np.testing.assert_allclose(model.decoder_nets[0].b.numpy()[0], np.log(MEAN_TRAIN / (1 - MEAN_TRAIN)), rtol=1e-5)
  np.testing.assert_allclose(model.encoder_input(X), X - MEAN_TRAIN)
  assert [model.context_dim(l) for l in range(3)] == [P, D, D]

  # Ancestral sampling: the model draws nothing, the caller's uniforms decide every bit.
  noise = SeedNoise((1, 2))
  uniforms = [n.uniform(tf.zeros([B, D])) for n in noise.split(3)]
  bits, logits = model.complete(X, [], 0, uniforms)
  again, _ = model.complete(X, [], 0, uniforms)
  assert [b.shape for b in bits] == [a.shape for a in logits] == [(B, D)] * 3
  for b, c in zip(bits, again):
    np.testing.assert_array_equal(b, c)
    assert set(np.unique(b.numpy())) <= {0.0, 1.0}
  np.testing.assert_allclose(logits[0], model.encoder_logits(X), rtol=1e-6)
  np.testing.assert_allclose(logits[2], model.layer_logits(2, bits[1], X), rtol=1e-6)
  np.testing.assert_array_equal(bits[2], tf.cast(uniforms[2] < tf.sigmoid(logits[2]), tf.float32))
  with pytest.raises(ValueError, match="complete"):
    model.complete(X, [], 0, uniforms[:2])

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
  model = build_model(f"linear_{num_layers}layer", mean, seed=(num_layers, SALT))
  assert model.num_layers == num_layers and model.num_latents == 200
  x = tf.cast(tf.random.stateless_uniform([4, 784], [0, 1]) < mean, tf.float32)
  uniforms = [n.uniform(tf.zeros([4, 200]), 10) for n in SeedNoise((0, 3)).split(num_layers)]
  bound = model.bound(x, uniforms).numpy()
  assert bound.shape == (4,) and np.all(np.isfinite(bound)) and np.all(bound <= 0)
  # The training entry point runs at this depth too, RELAX included (its state trained).
  states = layer_states(model, "relax", seed=(1, 2))
  out = engine.step_gradients(
    model, get_estimator("relax"), x, SeedNoise((0, 4)), states, StepOptions(share_upper_noise=True)
  )
  assert len(out.encoder) == 2 * num_layers and len(out.decoder) == 2 * num_layers
  assert out.prior.shape == model.prior_logits.shape and len(out.estimates) == num_layers
  assert len(out.state) == sum(len(s.trainable_variables) for s in states)
  assert np.isfinite(out.loss.numpy()) and np.isfinite(out.state_loss.numpy())
  assert all(np.all(np.isfinite(g.numpy())) for g in out.encoder + out.decoder + [out.prior] + out.state)


def test_relax_state_gradients_flow_through_every_layer():
  model = tiny_model()
  states = layer_states(model, "relax", seed=(0, 1))
  assert [s.context_dim for s in states] == [NUM_PIXELS, NUM_LATENTS]
  out = engine.step_gradients(model, get_estimator("relax"), X, SeedNoise((2, 3)), states, StepOptions())
  grads = iter(out.state)  # the gradient of the variance loss, every layer's state in turn
  for state in states:
    state_grads = [next(grads) for _ in state.trainable_variables]
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in state_grads)
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in state_grads)


@pytest.mark.parametrize("name", ["vimco_2", "local_disarm_1"])
def test_multi_sample_estimators_are_refused(name):
  with pytest.raises(ValueError, match="single-sample estimate per layer.*multi-sample bound"):
    validate_config(RunConfig("mnist", "linear_2layer", name, 0, Settings(num_steps=10)))
  assert get_estimator(name).bound_estimator


# ------------------------------------------------------------ stacked members
MEMBER_SEEDS = [3, 8]
MEMBER_STATE_SEEDS = [(5, 6), (7, 8)]
X_MEMBERS = tf.stack([X, tf.constant([[0, 0, 1, 1, 1], [1, 1, 0, 0, 1]], tf.float32)])  # [M, B, P]
SEED_ROWS = tf.constant([[1, 2], [3, 4]], tf.int32)  # [M, 2]


def tiny_splits():
  rng = np.random.default_rng(0)
  train = rng.uniform(0.05, 0.95, size=(20, NUM_PIXELS)).astype(np.float32)
  return types.SimpleNamespace(train=train, valid=train[:4], test=train[:4], mean_train=MEAN_TRAIN, name="fake")


def test_stacked_members_start_as_lone_models():
  stacked = tiny_model(3, seed=MEMBER_SEEDS)
  assert stacked.num_members == 2 and stacked.prior_logits.shape == (2, 1, NUM_LATENTS)
  assert tiny_model(2, seed=[4]).num_members == 1
  states = layer_states(stacked, "relax", seed=MEMBER_STATE_SEEDS)
  assert [s.log_temperature.shape for s in states] == [(2, 1)] * 3
  stacked_noise = noise_lib.MemberNoise(SEED_ROWS)
  for m, seed in enumerate(MEMBER_SEEDS):
    lone = tiny_model(3, seed=seed)
    assert lone.num_members is None
    pairs = list(zip(stacked.trainable_variables, lone.trainable_variables))
    assert len(pairs) == 13
    for s, v in pairs:  # bitwise: the same draws, stacked
      assert s.shape == (2,) + tuple(v.shape)
      np.testing.assert_array_equal(s[m].numpy(), v.numpy(), err_msg=v.name)
    assert stacked.encoder_nets[0].w.shape == (2,) + tuple(lone.encoder_nets[0].w.shape)
    assert stacked.encoder_nets[0].b.shape == (2, 1, NUM_LATENTS)
    lone_states = layer_states(lone, "relax", seed=MEMBER_STATE_SEEDS[m])
    for state, lone_state in zip(states, lone_states):
      for s, v in zip(state.trainable_variables, lone_state.trainable_variables):
        np.testing.assert_array_equal(s[m].numpy(), v.numpy(), err_msg=v.name)
    # Noise: each member draws what the lone model draws with its seed row.
    lone_noise = SeedNoise(SEED_ROWS[m])
    like = tf.zeros([2, 2, NUM_LATENTS])
    uniforms = [n.uniform(like) for n in stacked_noise.split(3)]
    lone_uniforms = [n.uniform(like[m]) for n in lone_noise.split(3)]
    for u, v in zip(uniforms, lone_uniforms):
      np.testing.assert_array_equal(u[m], v)
    bits, logits = stacked.complete(X_MEMBERS, [], 0, uniforms)
    lone_bits, lone_logits = lone.complete(X_MEMBERS[m], [], 0, lone_uniforms)
    for b, c in zip(bits, lone_bits):
      np.testing.assert_array_equal(b[m], c)
    for a, c in zip(logits, lone_logits):
      np.testing.assert_allclose(a[m], c, atol=1e-6)
    for a, b in ((stacked_noise, lone_noise), (stacked_noise.fold_in(7), lone_noise.fold_in(7))):
      np.testing.assert_array_equal(a.uniform(like, 4)[:, m], b.uniform(like[m], 4))
    bound = stacked.bound(X_MEMBERS, [n.uniform(like, 4) for n in stacked_noise.split(3)])
    assert bound.shape == (2, 2)
    np.testing.assert_allclose(
      bound[m], lone.bound(X_MEMBERS[m], [n.uniform(like[m], 4) for n in lone_noise.split(3)]), atol=1e-5
    )
  # A model whose stacking does not match the runs' is refused.
  config = lambda seed: RunConfig("fake", "linear_3layer", "relax", seed, Settings(num_steps=10, batch_size=2))
  with pytest.raises(ValueError, match="must be unstacked"):
    Trainer(config(3), tiny_splits(), model=stacked)
  with pytest.raises(ValueError, match="must be stacked for 2"):
    Trainer([config(3), config(8)], tiny_splits(), model=tiny_model(3, seed=3))


def stacked_and_lone_gradients(model, estimator, states, x, noise, share):
  """``(loss, encoder + decoder + prior gradients, state gradients)`` of the engine (states trained)."""
  out = engine.step_gradients(model, get_estimator(estimator), x, noise, states, StepOptions(share_upper_noise=share))
  return out.loss, out.encoder + out.decoder + [out.prior], out.state or []


@pytest.mark.parametrize(
  "estimator,share",
  [("reinforce_loo", False), ("arm", True), ("disarm", False), ("disarm", True), ("relax", False), ("relax", True)],
)
def test_stacked_members_give_the_lone_models_gradients(estimator, share):
  """Member m of a 2-member stack, fed x[m] and seed row m, computes the lone model's gradients (3 layers)."""
  stacked = tiny_model(3, seed=MEMBER_SEEDS)
  states = layer_states(stacked, estimator, seed=MEMBER_STATE_SEEDS)
  loss, grads, state_grads = stacked_and_lone_gradients(
    stacked, estimator, states, X_MEMBERS, noise_lib.MemberNoise(SEED_ROWS), share
  )
  assert loss.shape == (2,)
  worst_other_row = 0.0
  for m, seed in enumerate(MEMBER_SEEDS):
    lone = tiny_model(3, seed=seed)
    lone_states = layer_states(lone, estimator, seed=MEMBER_STATE_SEEDS[m])
    lone_loss, lone_grads, lone_state_grads = stacked_and_lone_gradients(
      lone, estimator, lone_states, X_MEMBERS[m], SeedNoise(SEED_ROWS[m]), share
    )
    assert lone_loss.shape == ()
    np.testing.assert_allclose(loss[m], lone_loss, atol=1e-5)
    assert len(grads) == len(lone_grads) == 13 and len(state_grads) == len(lone_state_grads)
    assert len(state_grads) == (3 * 6 if estimator == "relax" else 0)
    for g, h in zip(grads, lone_grads):
      assert g.shape == (2,) + tuple(h.shape)
      np.testing.assert_allclose(g[m], h, atol=1e-5)
    # RELAX's variance gradients are second-order and large (up to ~130: its loss is on the batch-summed
    # encoder gradient): summation order shows at up to 3.6e-5 absolute (measured), inside rtol 1e-4.
    for g, h in zip(state_grads, lone_state_grads):
      np.testing.assert_allclose(g[m], h, rtol=1e-4, atol=1e-5)
    # The check has power: the other member's seed row gives other gradients.
    _, other, _ = stacked_and_lone_gradients(
      lone, estimator, lone_states, X_MEMBERS[m], SeedNoise(SEED_ROWS[1 - m]), share
    )
    worst_other_row = max(worst_other_row, max(float(np.max(np.abs(g[m] - h))) for g, h in zip(grads, other)))
  assert worst_other_row > 1e-2
