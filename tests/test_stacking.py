"""Several runs in one graph: each stacked member is exactly the run it would be alone."""

import types

import numpy as np
import pytest

from contracts.settings import Grid, RunConfig, Settings
from estimators import get_estimator
from training.trainer import Trainer, check_stackable

# Real driver processes or whole sweeps: minutes; the fast tier leaves them out.
pytestmark = pytest.mark.slow


def fake_splits(num_pixels=784, sizes=(400, 60, 60), seed=0):
  rng = np.random.default_rng(seed)
  train, valid, test = (rng.uniform(0.02, 0.98, size=(n, num_pixels)).astype(np.float32) for n in sizes)
  return types.SimpleNamespace(train=train, valid=valid, test=test, mean_train=train.mean(0), name="fake")


def config(estimator, seed, model="linear", **kw):
  fields = dict(num_steps=300, batch_size=50, num_bound_samples=10)
  fields.update(kw)
  return RunConfig("fake", model, estimator, seed, Settings(**fields))


SEEDS = (7, 0, 3)
# Members and lone runs do the same float32 arithmetic, but not in the same order: a
# lone run uses plain 2-D products, a stack batched products with a member axis, and
# reductions over a stacked tensor (the prior's and the decoder's weight gradients
# sum over sample and batch axes around the member axis) may round the last bit
# differently (measured: ~3e-8 after one step). Rarely such a difference flips one
# sampled bit of one example, and the trajectories then part by a few Adam steps
# (lr 1e-4 each): measured at most 1.2e-4 in encoder and decoder parameters after 300
# steps (RELAX, linear). A member drawing
# another member's noise or data differs by the whole parameter movement (~1e-2 here,
# checked below), and its evaluation by nats.
PARAM_ATOL, METRIC_RTOL = 1e-3, 1e-3
STATE_SCALAR_ATOL = 2e-3  # an estimator's reported scalars (see test_stacked_members_equal_lone_runs)
# The prior's logits take plain SGD steps (lr 1e-2), which do not normalise the
# gradient as Adam does: one flipped bit of one example moves one prior logit by
# prior_lr / B under a batch-mean loss (2e-4, inside PARAM_ATOL), but by prior_lr
# itself (1e-2) under a batch sum, which is RELAX's reference reduction
# (decoder_reduction=as_reference). Measured (RELAX, linear, seed 3, 300 steps): one
# flip at step 69, exactly 1e-2 in one of the 200 logits, 7.7e-3 at step 300, every
# other logit within PARAM_ATOL. Under a sum the prior may therefore differ by up to
# three flips in a few logits (at most 2% of them), the rest within PARAM_ATOL; a
# member on another seed's streams differs by more than 3 flips in ~75% of its prior
# logits (median 0.065, max 0.31: measured), so the check keeps its power.
PRIOR_FLIPS, PRIOR_FRACTION = 3, 0.02
# Exact state: counters, and the data order's shuffle buffer (buffer_across_epochs, the default).
EXACT_KEYS = ("step", "data_order/buffer", "data_order/filled", "data_order/cursor")


def prior_flip(cfg):
  """How far one flipped bit moves a prior logit in one SGD step (see PRIOR_FLIPS)."""
  reduction = cfg.decoder_reduction
  if reduction == "as_reference":
    reduction = get_estimator(cfg.estimator).reference_decoder_reduction
  return cfg.prior_lr * (1.0 if reduction == "sum" else 1.0 / cfg.batch_size)


def assert_same_run(state, reference, cfg):
  """Same parameters within PARAM_ATOL (prior: see PRIOR_FLIPS), the same counters and data order exactly."""
  assert state.keys() == reference.keys()
  assert {"data_order/buffer", "data_order/filled", "data_order/cursor"} <= set(reference)
  for name, value in reference.items():
    if name.startswith("model/prior_logits"):
      difference = np.abs(state[name] - value)
      assert np.mean(difference > PARAM_ATOL) <= PRIOR_FRACTION, (name, np.sort(difference.ravel())[-10:])
      assert difference.max() <= max(PARAM_ATOL, PRIOR_FLIPS * prior_flip(cfg)), (name, difference.max())
    elif name.startswith("model/"):
      np.testing.assert_allclose(state[name], value, atol=PARAM_ATOL, rtol=0, err_msg=name)
    elif name in EXACT_KEYS or name.endswith("iterations"):
      np.testing.assert_array_equal(state[name], value, err_msg=name)


@pytest.mark.parametrize(
  "estimator,model", [("disarm", "linear"), ("relax", "linear"), ("disarm", "nonlinear"), ("rodeo_2", "linear")]
)
def test_stacked_members_equal_lone_runs(estimator, model):
  """S = 3 members over 300 steps against three lone runs: parameters, losses, evaluations."""
  splits = fake_splits()
  stacked = Trainer([config(estimator, s, model) for s in SEEDS], splits)
  assert stacked.stacked and stacked.model.num_members == len(SEEDS)
  stacked_loss = stacked.train(300)  # 300 steps of 50 images: the 400 images pass through the buffer ~37 times
  stacked_state = [stacked.member_state(m) for m in range(len(SEEDS))]
  stacked_eval = (stacked.train_elbo(), stacked.bound("test"), stacked.gradient_variance())
  stacked_scalars = stacked.estimator_scalars()
  for m, seed in enumerate(SEEDS):
    alone = Trainer(config(estimator, seed, model), splits)
    assert not alone.stacked and alone.model.num_members is None  # the plain form: 2-D products
    alone_loss = alone.train(300)
    np.testing.assert_allclose(stacked_loss[m], alone_loss[0], rtol=METRIC_RTOL)
    assert_same_run(stacked_state[m], alone.member_state(0), alone.config)
    # The estimator's own state, through the scalars it reports (RELAX's temperature and
    # scale, RODEO's alpha and beta): Adam moves each by at most its learning rate (1e-3)
    # per step; measured for RODEO after 300 steps, members and lone runs differ by at most 7e-4.
    # (The weights of RODEO's network are not compared: their gradients carry the factors
    # alpha and beta, which start at 0, so early gradients are rounding-sized and Adam,
    # which normalises them, sends rounding differences into full-sized steps. Measured:
    # up to 0.3 apart after 300 steps, with or without stacking's changes of layout.)
    alone_scalars = alone.estimator_scalars()[0]
    assert stacked_scalars[m].keys() == alone_scalars.keys()
    for column, value in alone_scalars.items():
      assert abs(stacked_scalars[m][column] - value) <= STATE_SCALAR_ATOL, (column, stacked_scalars[m][column], value)
    alone_eval = (alone.train_elbo(), alone.bound("test"), alone.gradient_variance())
    for stacked_values, lone_values in zip(stacked_eval, alone_eval):
      np.testing.assert_allclose(stacked_values[m], lone_values[0], rtol=METRIC_RTOL)
  # The check has power: member 0's starting point trained on another seed's
  # noise and data stream ends up far outside the tolerance.
  other_stream = Trainer(config(estimator, SEEDS[1], model), splits)
  other_stream.load_member_state(0, Trainer(config(estimator, SEEDS[0], model), splits).member_state(0))
  other_stream.train(300)
  mixed_up = other_stream.member_state(0)
  assert (
    max(np.abs(mixed_up[k] - stacked_state[0][k]).max() for k in mixed_up if k.startswith("model/")) > 10 * PARAM_ATOL
  )
  with pytest.raises(AssertionError):  # on the parameters alone (the data order differs too)
    assert_same_run(
      dict(mixed_up, **{k: stacked_state[0][k] for k in EXACT_KEYS}), stacked_state[0], other_stream.config
    )


def test_member_state_round_trips_between_stack_and_lone_run():
  splits = fake_splits()
  stacked = Trainer([config("relax", s) for s in SEEDS], splits)
  stacked.train(20)
  alone = Trainer(config("relax", SEEDS[2]), splits)
  alone.load_member_state(0, stacked.member_state(2))
  stacked.train(15)
  alone.train(15)
  assert_same_run(stacked.member_state(2), alone.member_state(0), alone.config)


def test_only_seed_may_differ_within_a_stack():
  with pytest.raises(ValueError, match="differ only in their seed.*batch_size"):
    check_stackable([config("disarm", 0), config("disarm", 1, batch_size=20)])
  with pytest.raises(ValueError, match="differ only in their seed.*decoder_sample"):
    check_stackable([config("disarm", 0), config("disarm", 1, decoder_sample="estimator")])
  with pytest.raises(ValueError, match="distinct seeds"):
    check_stackable([config("disarm", 0), config("disarm", 0)])


def test_stacked_hierarchical_members_equal_lone_runs():
  """The same for a 2-layer model trained by per-layer RELAX with shared upper noise (60 steps)."""
  splits = fake_splits()
  cfg = lambda seed: config("relax", seed, "linear_2layer", share_upper_noise=True)
  stacked = Trainer([cfg(s) for s in SEEDS[:2]], splits)
  stacked.train(60)
  for m, seed in enumerate(SEEDS[:2]):
    alone = Trainer(cfg(seed), splits)
    alone.train(60)
    assert_same_run(stacked.member_state(m), alone.member_state(0), alone.config)


def test_driver_groups_seeds_of_a_cell_into_stacks_in_round_robin_order():
  from training.sweep import stack_runs

  grid = Grid(
    datasets=("mnist",),
    models=("linear",),
    estimators=("arm", "disarm"),
    seeds=(0, 1, 2),
    settings=Settings(num_steps=10),
  )
  pending = [(c, c.run_id) for c in grid.configs()]  # seed-major
  stacks = stack_runs(pending, max_stack=2)
  assert [[c.run_id for c, _ in s] for s in stacks] == [
    ["mnist-linear-arm-seed0", "mnist-linear-arm-seed1"],
    ["mnist-linear-disarm-seed0", "mnist-linear-disarm-seed1"],
    ["mnist-linear-arm-seed2"],
    ["mnist-linear-disarm-seed2"],
  ]
  # A cap of 1 keeps the seed-major order of the runs themselves.
  assert [s[0][0] for s in stack_runs(pending, 1)] == [c for c, _ in pending]
  with pytest.raises(ValueError, match="positive integer"):
    stack_runs(pending, 0)


def test_stack_resumes_runs_at_different_steps_and_matches_lone_runs(tmp_path, monkeypatch):
  """A stack whose runs stopped at different steps: each resumes from its own checkpoint."""
  from training import results_io, runner

  splits = fake_splits(sizes=(100, 30, 30))
  monkeypatch.setattr(runner, "load_dataset", lambda name, data_dir=None, **kwargs: splits)
  cfg = lambda seed: RunConfig(
    "mnist",
    "linear",
    "relax",
    seed,
    Settings(num_steps=30, batch_size=10, eval_every=10, bound_every=30, num_bound_samples=3),
  )

  class Crash(Exception):
    pass

  def crash_at_20(config, step, steps_per_sec):
    if step == 20:  # the row of step 20 is on disk, its checkpoint is not: the run restarts from 10
      raise Crash

  stacked = [str(tmp_path / "stacked" / name) for name in ("a", "b")]
  with pytest.raises(Crash):
    runner.train_stack([cfg(0)], stacked[:1], progress=crash_at_20)
  assert runner.checkpoint_step(stacked[0]) == 10 and runner.checkpoint_step(stacked[1]) == 0
  logs = []
  summaries = runner.train_stack([cfg(0), cfg(1)], stacked, log=logs.append)
  assert [s["status"] for s in summaries] == ["done", "done"]
  assert "mnist-linear-relax-seed0: resuming from its checkpoint at step 10" in logs
  alone = [str(tmp_path / "alone" / name) for name in ("a", "b")]
  for seed, lone_dir, stacked_dir in zip((0, 1), alone, stacked):
    runner.train_run(cfg(seed), lone_dir)
    lone, resumed = (results_io.read_metrics(f"{d}/metrics.csv") for d in (lone_dir, stacked_dir))
    assert list(resumed["step"]) == [0, 10, 20, 30]  # each evaluation once
    # Runs whose checkpoints are at different steps train in separate groups (train_stack),
    # and metrics.csv records the size of the graph that trained each row.
    assert list(lone["stack_size"]) == list(resumed["stack_size"]) == [1] * 4
    np.testing.assert_allclose(resumed["train_elbo"], lone["train_elbo"], rtol=METRIC_RTOL)
    np.testing.assert_allclose(resumed["test_bound_n"], lone["test_bound_n"], rtol=METRIC_RTOL)
    assert_same_run(runner.load_checkpoint(stacked_dir), runner.load_checkpoint(lone_dir), cfg(seed))
