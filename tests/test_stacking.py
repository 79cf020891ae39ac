"""Several runs in one graph (issue 5): each stacked member is exactly the run it would be alone."""

import types

import numpy as np
import pytest

from training.config import RunConfig
from training.trainer import Trainer, check_stackable


def fake_splits(num_pixels=784, sizes=(400, 60, 60), seed=0):
  rng = np.random.default_rng(seed)
  train, valid, test = (rng.uniform(0.02, 0.98, size=(n, num_pixels)).astype(np.float32) for n in sizes)
  return types.SimpleNamespace(train=train, valid=valid, test=test, mean_train=train.mean(0), name="fake")


def config(estimator, seed, model="linear", **kw):
  fields = dict(num_steps=300, batch_size=50, num_bound_samples=10)
  fields.update(kw)
  return RunConfig("fake", model, estimator, seed=seed, **fields)


SEEDS = (7, 0, 3)
# Members and lone runs do the same float32 arithmetic, but not always in the same
# order: reductions over a stacked tensor (the prior's and the decoder's weight
# gradients sum over sample and batch axes around the member axis) may round the
# last bit differently (measured: 3e-8 after one step). Rarely such a difference
# flips one sampled bit of one example, and the trajectories then part by a few
# Adam steps (lr 1e-4 each): measured at most 3e-4 in parameters after 300 steps.
# A member drawing another member's noise or data differs by the whole
# parameter movement (~1e-2 here, checked below), and its evaluation by nats.
PARAM_ATOL, METRIC_RTOL = 1e-3, 1e-3


def assert_same_run(state, reference):
  """Same parameters within PARAM_ATOL, and the same step counters and data order exactly."""
  assert state.keys() == reference.keys()
  for name, value in reference.items():
    if name.startswith("model/"):
      np.testing.assert_allclose(state[name], value, atol=PARAM_ATOL, rtol=0, err_msg=name)
    elif name in ("step", "permutation/0") or name.endswith("iterations"):
      np.testing.assert_array_equal(state[name], value, err_msg=name)


@pytest.mark.parametrize("estimator,model", [("disarm", "linear"), ("relax", "linear"),
                                             ("disarm", "nonlinear")])
def test_stacked_members_equal_lone_runs(estimator, model):
  """S = 3 members over 300 steps against three lone runs: parameters, losses, evaluations."""
  splits = fake_splits()
  stacked = Trainer([config(estimator, s, model) for s in SEEDS], splits)
  stacked_loss = stacked.train(300)  # 300 steps: the 8-step epochs wrap ~37 times
  stacked_state = [stacked.member_state(m) for m in range(len(SEEDS))]
  stacked_eval = (stacked.train_elbo(), stacked.bound("test"), stacked.gradient_variance())
  for m, seed in enumerate(SEEDS):
    alone = Trainer(config(estimator, seed, model), splits)
    alone_loss = alone.train(300)
    np.testing.assert_allclose(stacked_loss[m], alone_loss[0], rtol=METRIC_RTOL)
    assert_same_run(stacked_state[m], alone.member_state(0))
    alone_eval = (alone.train_elbo(), alone.bound("test"), alone.gradient_variance())
    for stacked_values, lone_values in zip(stacked_eval, alone_eval):
      np.testing.assert_allclose(stacked_values[m], lone_values[0], rtol=METRIC_RTOL)
  # The check has power: member 0's starting point trained on another seed's
  # noise and data stream ends up far outside the tolerance.
  other_stream = Trainer(config(estimator, SEEDS[1], model), splits)
  other_stream.load_member_state(0, Trainer(config(estimator, SEEDS[0], model), splits).member_state(0))
  other_stream.train(300)
  mixed_up = other_stream.member_state(0)
  assert max(np.abs(mixed_up[k] - stacked_state[0][k]).max() for k in mixed_up if k.startswith("model/")) \
      > 10 * PARAM_ATOL


def test_member_state_round_trips_between_stack_and_lone_run():
  splits = fake_splits()
  stacked = Trainer([config("relax", s) for s in SEEDS], splits)
  stacked.train(20)
  alone = Trainer(config("relax", SEEDS[2]), splits)
  alone.load_member_state(0, stacked.member_state(2))
  stacked.train(15)
  alone.train(15)
  assert_same_run(stacked.member_state(2), alone.member_state(0))


def test_only_seed_may_differ_within_a_stack():
  with pytest.raises(ValueError, match="differ only in their seed.*batch_size"):
    check_stackable([config("disarm", 0), config("disarm", 1, batch_size=20)])
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
    assert_same_run(stacked.member_state(m), alone.member_state(0))


def test_driver_groups_seeds_of_a_cell_into_stacks_in_round_robin_order():
  from training.sweep import Grid, stack_runs
  grid = Grid(datasets=("mnist",), models=("linear",), estimators=("arm", "disarm"), seeds=(0, 1, 2),
              num_steps=10)
  pending = [(c, c.run_id) for c in grid.configs()]  # seed-major
  stacks = stack_runs(pending, max_stack=2)
  assert [[c.run_id for c, _ in s] for s in stacks] == [
      ["mnist-linear-arm-seed0", "mnist-linear-arm-seed1"],
      ["mnist-linear-disarm-seed0", "mnist-linear-disarm-seed1"],
      ["mnist-linear-arm-seed2"], ["mnist-linear-disarm-seed2"]]
  # A cap of 1 keeps the seed-major order of the runs themselves.
  assert [s[0][0] for s in stack_runs(pending, 1)] == [c for c, _ in pending]
  with pytest.raises(ValueError, match="positive integer"):
    stack_runs(pending, 0)


def test_stack_resumes_runs_at_different_steps_and_matches_lone_runs(tmp_path, monkeypatch):
  """A stack whose runs stopped at different steps: each resumes from its own checkpoint."""
  from training import results_io, runner
  splits = fake_splits(sizes=(100, 30, 30))
  monkeypatch.setattr(runner, "load_dataset", lambda name, data_dir=None: splits)
  cfg = lambda seed: RunConfig("mnist", "linear", "relax", seed=seed, num_steps=30, batch_size=10,
                               eval_every=10, bound_every=30, num_bound_samples=3)

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
    np.testing.assert_allclose(resumed["train_elbo"], lone["train_elbo"], rtol=METRIC_RTOL)
    np.testing.assert_allclose(resumed["test_bound_100"], lone["test_bound_100"], rtol=METRIC_RTOL)
    assert_same_run(runner.load_checkpoint(stacked_dir), runner.load_checkpoint(lone_dir))
