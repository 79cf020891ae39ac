"""The training loop: exact gradients on a tiny VAE, determinism, resume, bookkeeping."""

import dataclasses
import io
import itertools
import os
import types

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from contracts.settings import Grid, RunConfig, Settings
from estimators import ESTIMATORS, SeedNoise, get_estimator
from models import build_model
from training import results_io, runner
from training.data_order import DataOrder
from training.presets import PRESETS
from training.sweep import Progress
from training.trainer import Trainer
from training.validation import validate_config, validate_grid

NUM_PIXELS, NUM_LATENTS = 6, 3


def fake_splits(num_pixels=NUM_PIXELS, sizes=(200, 60, 60), seed=0):
  rng = np.random.default_rng(seed)
  train, valid, test = (rng.uniform(0.05, 0.95, size=(n, num_pixels)).astype(np.float32) for n in sizes)
  return types.SimpleNamespace(train=train, valid=valid, test=test, mean_train=train.mean(0), name="fake")


def exact_gradients(model, x, num_samples=1):
  """Gradients of -mean_x E[log mean_{k<=K} exp ELBO(x, b_k)], b_k iid q, by enumeration.

  K = 1 is the ELBO. Enumerates all (2^D)^K tuples of latent states; the full
  gradient, log q terms included (for K = 1 their direct part has zero
  expectation, so this is also what single-sample estimators target).
  """
  states = list(itertools.product([0.0, 1.0], repeat=model.num_latents))
  tuples = tf.constant(list(itertools.product(states, repeat=num_samples)), tf.float32)  # [T, K, D]
  tuples = tf.transpose(tuples, [1, 0, 2])  # [K, T, D]
  with tf.GradientTape(persistent=True) as tape:
    logits = model.encoder_logits(x)  # [B, D]
    b = tf.broadcast_to(tuples[:, :, None, :], [num_samples, tuples.shape[1], x.shape[0], model.num_latents])
    log_q = tf.reduce_sum(b * logits - tf.nn.softplus(logits), -1)  # [K, T, B]
    bound = tf.reduce_logsumexp(model.elbo(x, b, logits), 0) - np.log(num_samples)  # [T, B]
    expected = tf.reduce_sum(tf.exp(tf.reduce_sum(log_q, 0)) * bound, 0)
    loss = -tf.reduce_mean(expected)
  enc = tape.gradient(loss, list(model.encoder_variables))
  dec = tape.gradient(loss, list(model.decoder_variables) + [model.prior_logits])
  return [g.numpy().astype(np.float64) for g in enc + dec]


def tiny_model(kind, splits, seed=3, **options):
  return build_model(kind, splits.mean_train, seed=(seed, 1), num_latents=NUM_LATENTS, hidden_units=4, **options)


def replicate_gradients(trainer, x, num_replicates, copies, seed):
  """Means of the training loop's gradients over `copies` independent draws, `num_replicates` times.

  Tiling the batch makes the batch-mean gradient an average of independent estimates
  (every example draws its own noise), so one call gives a Monte Carlo mean.
  """
  tiled = tf.tile(x, [copies, 1])
  fn = tf.function(lambda x, s: trainer.gradients(x, SeedNoise(s)))
  reps = []
  for r in range(num_replicates):
    grads = fn(tiled, tf.constant([seed, r], tf.int32))
    reps.append([g.numpy().astype(np.float64) for g in grads.encoder + grads.decoder + [grads.prior]])
  return reps


def max_abs_z(reps, exact):
  worst = 0.0
  for i, target in enumerate(exact):
    samples = np.stack([r[i] for r in reps])
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(len(samples))
    mask = se > 1e-9
    worst = max(worst, float(np.max(np.abs(mean - target)[mask] / se[mask], initial=0.0)))
    # Where the estimate does not vary (no dependence on noise) it must be exact.
    np.testing.assert_allclose(mean[~mask], target[~mask], atol=1e-5)
  return worst


# With 24 replicates the replicate-mean z is ~t with 23 d.o.f.; P(|t_23| > 5.5) ~ 1.4e-5
# per parameter; over <= 60 parameters x 18 cases the family-wise false-failure rate is < 2%.
Z_BOUND = 5.5


SINGLE_SAMPLE = sorted(n for n, e in ESTIMATORS.items() if not e.bound_estimator)
# Small members of the multi-sample families: their bounds can be enumerated.
MULTI_SAMPLE = ["vimco_2", "vimco_3", "local_disarm_1", "local_disarm_2", "local_disarm_sym_2"]
X = tf.constant([[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 0]], tf.float32)


def check_against_exact(model_kind, estimator, **settings):
  splits = fake_splits()
  settings = dict(dict(num_steps=1, batch_size=2, decoder_reduction="mean"), **settings)
  config = RunConfig("fake", model_kind, estimator, 3, Settings(**settings))
  model = tiny_model(model_kind, splits, encoder_input=config.encoder_input, latent_input=config.latent_input)
  exact = exact_gradients(model, X, get_estimator(estimator).bound_samples)
  trainer = Trainer(config, splits, model=model)
  reps = replicate_gradients(trainer, X, num_replicates=24, copies=4000, seed=11)
  reps = [[g.reshape(e.shape) for g, e in zip(rep, exact)] for rep in reps]
  assert max_abs_z(reps, exact) < Z_BOUND
  # The same check rejects a gradient of the wrong sign: it has power here.
  assert max_abs_z(reps, [-g for g in exact]) > 4 * Z_BOUND


@pytest.mark.parametrize("estimator", SINGLE_SAMPLE + MULTI_SAMPLE)
@pytest.mark.parametrize("model_kind", ["linear", "nonlinear"])
def test_training_gradients_match_exact_expected_objective_gradient(estimator, model_kind):
  check_against_exact(model_kind, estimator)


@pytest.mark.parametrize("decoder_sample", ["independent", "estimator", "k_independent"])
@pytest.mark.parametrize("estimator", ["disarm", "reinforce_loo_3", "arms_3", "double_cv_2", "disarm_4"])
def test_every_decoder_sample_gives_the_exact_decoder_gradient_in_expectation(estimator, decoder_sample):
  """Whichever samples train decoder and prior (README, "Protocol choices"), their gradient is unbiased."""
  check_against_exact("linear", estimator, decoder_sample=decoder_sample, encoder_input="raw", latent_input="binary")


def test_decoder_reduction_sum_is_the_batch_size_times_the_mean():
  splits = fake_splits()
  grads = {}
  for reduction in ("mean", "sum"):
    config = RunConfig("fake", "linear", "disarm", 3, Settings(batch_size=2, decoder_reduction=reduction))
    trainer = Trainer(config, splits, model=tiny_model("linear", splits))
    grads[reduction] = trainer.gradients(X, SeedNoise(5))
  for a, b in zip(grads["mean"].decoder + [grads["mean"].prior], grads["sum"].decoder + [grads["sum"].prior]):
    np.testing.assert_allclose(2.0 * a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
  for a, b in zip(grads["mean"].encoder, grads["sum"].encoder):  # the encoder is not affected
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  # as_reference follows the estimator's reference code: a sum for RELAX, a mean for DisARM.
  assert ESTIMATORS["relax"].reference_decoder_reduction == "sum"
  assert ESTIMATORS["disarm"].reference_decoder_reduction == "mean"


@pytest.mark.parametrize("estimator", ["relax", "double_cv_2", "rodeo_3"])
def test_estimator_state_gradients_flow(estimator):
  splits = fake_splits()
  config = RunConfig("fake", "linear", estimator, 0, Settings(num_steps=1, batch_size=4))
  trainer = Trainer(config, splits, model=tiny_model("linear", splits, seed=0))
  x = tf.constant(splits.train[:4] > 0.5, tf.float32)
  grads = trainer.gradients(x, SeedNoise(1))
  variables = [v for s in trainer.estimator_states for v in s.trainable_variables]
  assert len(grads.state) == len(variables)
  assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads.state)
  assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads.state)


def _behind_a_tensor_if(value):
  """``value`` where it is finite, else zeros, through a Python ``if`` on a tensor (as a plugin may write)."""
  if tf.reduce_all(tf.math.is_finite(value)):  # a tensor: autograph makes this a tf.cond
    return value
  return tf.zeros_like(value)


def _fn_with_an_if(fn):
  def estimate(f, logits, noise, state=None, context=None):
    out = fn(f, logits, noise, state=state, context=context)
    return out._replace(grad=_behind_a_tensor_if(out.grad))

  return estimate


def _loss_with_an_if(loss):
  return lambda gradients: _behind_a_tensor_if(loss(gradients))


@pytest.mark.parametrize("base_name", ["disarm", "double_cv_2"])
def test_plugin_code_with_python_control_flow_on_tensors_trains_as_it_would_without(base_name, monkeypatch):
  """The training step leaves the estimator and its state's loss to autograph (its own helpers are not converted)."""
  base = get_estimator(base_name)
  changes = dict(name=f"{base_name}_behind_a_tensor_if", fn=_fn_with_an_if(base.fn))
  if base.trainable is not None:
    changes["trainable"] = dataclasses.replace(base.trainable, loss=_loss_with_an_if(base.trainable.loss))
  plugin = dataclasses.replace(base, **changes)
  monkeypatch.setitem(ESTIMATORS, plugin.name, plugin)
  splits = fake_splits()
  params = {}
  for name in (base.name, plugin.name):
    config = RunConfig("fake", "nonlinear", name, 5, Settings(num_steps=3, batch_size=4))
    trainer = Trainer(config, splits, model=tiny_model("nonlinear", splits, seed=0))
    trainer.train(3)  # one compiled block: fails to trace if an `if` is not converted
    states = [v for s in trainer.estimator_states or [] for v in s.trainable_variables]
    params[name] = [v.numpy() for v in list(trainer.model.trainable_variables) + states]
  initial = [v.numpy() for v in tiny_model("nonlinear", splits, seed=0).trainable_variables]
  assert any(np.abs(a - b).max() > 0 for a, b in zip(params[base.name], initial))
  assert len(params[base.name]) == len(params[plugin.name])
  for a, b in zip(params[base.name], params[plugin.name]):
    np.testing.assert_array_equal(a, b)


CELL_FIELDS = ("dataset", "model", "estimator", "seed")


def small_config(estimator="disarm", **kw):
  cell = dict(dataset="mnist", model="linear", estimator=estimator, seed=1)
  cell.update({k: kw.pop(k) for k in CELL_FIELDS if k in kw})
  settings = dict(num_steps=40, batch_size=10, eval_every=10, bound_every=20, num_bound_samples=5)
  settings.update(kw)
  return RunConfig(**cell, settings=Settings(**settings))


@pytest.fixture
def fake_data(monkeypatch):
  splits = fake_splits(num_pixels=784, sizes=(100, 30, 30))
  monkeypatch.setattr(runner, "load_dataset", lambda name, data_dir=None, allow_download=False: splits)
  return splits


def final_params(run_dir, config, splits):
  trainer = Trainer(config, splits)
  trainer.load_member_state(0, runner.load_checkpoint(run_dir))
  return [v.numpy() for v in trainer.model.trainable_variables], int(trainer.step.numpy())


@pytest.mark.parametrize("estimator", ["disarm", "relax"])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, fake_data, estimator):
  config = small_config(estimator)
  straight = tmp_path / "straight"
  summary = runner.train_run(config, str(straight))
  assert summary["status"] == "done" and summary["final_step"] == 40

  class Crash(Exception):
    pass

  def crash_at_20(cfg, step, steps_per_sec):
    if step == 20:  # the row of step 20 is on disk, its checkpoint is not
      raise Crash

  interrupted = tmp_path / "interrupted"
  with pytest.raises(Crash):
    runner.train_run(config, str(interrupted), progress=crash_at_20)
  assert list(pd.read_csv(interrupted / "metrics.csv")["step"]) == [0, 10, 20]
  assert not (interrupted / "DONE.json").exists()
  events = []
  runner.train_run(config, str(interrupted), progress=lambda cfg, step, steps_per_sec: events.append(step))
  # The resumed call reports where it starts (its checkpoint, before step 20), so that the
  # sweep's throughput log counts only the steps this call trained.
  assert 0 < events[0] < 20 and events[-1] == 40, events
  tracker = Progress(1, 40, stream=io.StringIO())
  for step in events:
    tracker.event(dict(kind="progress", run_id=config.run_id, step=step, num_steps=40, steps_per_sec=None))
  assert tracker.trained_steps() == 40 - events[0]

  metrics = results_io.read_metrics(str(interrupted / "metrics.csv"))
  assert list(metrics["step"]) == [0, 10, 20, 30, 40]  # every evaluation exactly once
  extra = ["relax_temperature", "relax_scale"] if estimator == "relax" else []
  assert list(metrics.columns) == list(results_io.METRIC_COLUMNS) + extra
  assert metrics["test_bound_n"].notna().tolist() == [False, False, True, False, True]
  reference = results_io.read_metrics(str(straight / "metrics.csv"))
  np.testing.assert_allclose(metrics["train_elbo"], reference["train_elbo"], rtol=1e-5)
  np.testing.assert_allclose(metrics["grad_variance"], reference["grad_variance"], rtol=1e-4)
  params_a, step_a = final_params(str(straight), config, fake_data)
  params_b, step_b = final_params(str(interrupted), config, fake_data)
  assert step_a == step_b == 40
  for a, b in zip(params_a, params_b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

  # One provenance record per trained segment, in config.json and DONE.json alike.
  from contracts import results as files

  segments = results_io.read_json(str(interrupted / "config.json"))[files.PROVENANCE_KEY]
  assert [s["start_step"] for s in segments] == [0, events[0]]
  assert results_io.read_json(str(interrupted / "DONE.json"))[files.PROVENANCE_KEY] == segments
  for segment in segments:
    assert segment["tensorflow"] == tf.__version__ and segment["numpy"] == np.__version__
    assert segment["data_kind"] == "in_memory" and len(segment["split_digest"]) == 64
    assert isinstance(segment["dirty"], (bool, type(None))) and segment["cpu"]
  assert segments[0]["split_digest"] == segments[1]["split_digest"]  # the same images both times
  # What the steps applied: RELAX fixes its decoder sample whatever the run asks for.
  applied = results_io.read_json(str(interrupted / "config.json"))[files.EFFECTIVE_KEY]
  assert applied["decoder_sample"] == ("estimator" if estimator == "relax" else config.decoder_sample)
  if estimator == "relax":
    assert metrics["relax_temperature"].notna().all()


def test_finished_run_is_skipped_and_config_change_is_refused(tmp_path, fake_data):
  config = small_config(num_steps=20)
  run_dir = str(tmp_path / "run")
  runner.train_run(config, run_dir)
  before = (tmp_path / "run" / "metrics.csv").read_text()
  calls = []
  runner.train_run(config, run_dir, progress=lambda *a: calls.append(a))
  assert calls == [] and (tmp_path / "run" / "metrics.csv").read_text() == before
  with pytest.raises(runner.ConfigMismatchError, match="batch_size"):
    runner.train_run(small_config(num_steps=20, batch_size=5), run_dir)


def test_same_seed_same_numbers_different_seed_different(fake_data):
  def train(seed):
    trainer = Trainer(small_config(seed=seed), fake_data)
    trainer.train(15)
    return np.concatenate([v.numpy().ravel() for v in trainer.model.trainable_variables])

  a, b, c = train(4), train(4), train(5)
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-6


def test_summary_rebuilt_from_run_files(tmp_path, fake_data):
  from training.sweep import run_sweep

  grid = Grid(
    ("mnist",),
    ("linear",),
    ("arm", "disarm"),
    (0,),
    Settings(num_steps=20, eval_every=10, bound_every=20, batch_size=10, num_bound_samples=5),
  )
  import io

  out = io.StringIO()
  summary = run_sweep(grid, str(tmp_path), stream=out)
  assert sorted(summary["run_id"]) == ["mnist-linear-arm-seed0", "mnist-linear-disarm-seed0"]
  assert (summary["status"] == "done").all() and (summary["final_step"] == 20).all()
  assert "step 20/20" in out.getvalue() and "ETA" in out.getvalue()
  os.unlink(tmp_path / "summary.csv")
  rebuilt = results_io.rebuild_summary(str(tmp_path))
  pd.testing.assert_frame_equal(rebuilt.reset_index(drop=True), summary.reset_index(drop=True))


@pytest.mark.parametrize(
  "field,value",
  [
    ("num_steps", 0),
    ("batch_size", -1),
    ("eval_every", 0),
    ("num_bound_samples", 0),
    ("num_steps", 2.5),
    ("encoder_lr", float("nan")),
    ("decoder_sample", "fresh"),
    ("train_prior", 1),
  ],
)
def test_impossible_values_are_rejected(field, value):
  with pytest.raises(ValueError, match=field):
    small_config(**{field: value}).validate()


def test_bound_cadence_must_divide():
  with pytest.raises(ValueError, match="multiple of eval_every"):
    small_config(eval_every=10, bound_every=15).validate()


@pytest.mark.parametrize(
  "field,bad,valid",
  [("datasets", "mnsit", "fashion_mnist"), ("models", "deep", "nonlinear"), ("estimators", "disarn", "reinforce_loo")],
)
def test_unknown_names_list_the_valid_ones(field, bad, valid):
  grid = dataclasses.replace(PRESETS["quick"], **{field: (bad,)})
  with pytest.raises(ValueError, match=valid):
    validate_grid(grid)


def test_every_preset_is_valid():
  for grid in PRESETS.values():
    validate_grid(grid)


def test_gradient_variance_with_and_without_debiasing(fake_data):
  for debias in (True, False):
    trainer = Trainer(small_config(grad_variance_debias=debias), fake_data)
    decay = trainer.config.grad_ema_decay
    rng = np.random.default_rng(0)
    draws = rng.normal(1.0, 2.0, size=(300,) + tuple(trainer.grad_mean_ema[0].shape)).astype(np.float32)
    mean = np.zeros(draws.shape[1:])
    sq = np.zeros(draws.shape[1:])
    for g in draws:
      mean = decay * mean + (1 - decay) * g
      sq = decay * sq + (1 - decay) * g**2
    for i, (m, s) in enumerate(zip(trainer.grad_mean_ema, trainer.grad_sq_ema)):
      m.assign(mean.astype(np.float32) if i == 0 else tf.zeros_like(m))
      s.assign(sq.astype(np.float32) if i == 0 else tf.zeros_like(s))
    trainer.step.assign(300)
    c = 1 - decay**300 if debias else 1.0
    expected_first = np.sum(sq / c - (mean / c) ** 2)
    total_params = sum(int(np.prod(v.shape)) for v in trainer.grad_mean_ema)
    assert trainer.gradient_variance()[0] == pytest.approx(expected_first / total_params, rel=1e-4)
    if debias:  # bias-corrected EMAs over 300 draws of N(1, 4): the per-parameter variance is near 4
      assert expected_first / draws[0].size == pytest.approx(4.0, rel=0.1)
    else:  # as the references report it: w Var + w (1 - w) E[g]^2 with w = 1 - decay^300 ~ 0.26
      w = 1 - decay**300
      assert expected_first / draws[0].size == pytest.approx(w * 4.0 + w * (1 - w) * 1.0, rel=0.15)


@pytest.mark.parametrize(
  "fields,match",
  [
    (dict(model="linear_2layer", estimator="vimco_2"), "single-sample estimate per layer"),
    (dict(model="linear_3layer", estimator="arm", basket=("arm",)), "single-layer models"),
    (dict(model="linear", estimator="arm", share_upper_noise=True), "layered models only"),
    (dict(model="linear_5layer", estimator="arm"), "linear_4layer"),
    (dict(model="linear", estimator="arm", basket=("arm",), basket_draws=1), "at least 2"),
    (dict(model="linear", estimator="disarm", basket=("vimco_2",)), "multi-sample bound"),
    (dict(model="linear_2layer", estimator="disarm", decoder_sample="estimator"), "forward sample"),
    (dict(model="linear", estimator="disarm_2"), "filed as 'disarm'"),
    (dict(model="linear", estimator="arm", batch_size=50_001), "exceeds the 50000 training images"),
  ],
)
def test_impossible_model_estimator_combinations_are_refused(fields, match):
  config = small_config(**fields)
  with pytest.raises(ValueError, match=match):
    validate_config(config)


def test_multisample_run_logs_its_training_k_bound_at_every_evaluation(tmp_path, fake_data):
  config = small_config("local_disarm_2", num_steps=20, bound_every=20, num_bound_samples=100)
  summary = runner.train_run(config, str(tmp_path / "run"))
  metrics = results_io.read_metrics(str(tmp_path / "run" / "metrics.csv"))
  assert list(metrics["step"]) == [0, 10, 20]
  assert metrics["test_bound_k"].notna().all() and metrics["valid_bound_k"].notna().all()
  assert metrics["test_bound_n"].notna().tolist() == [False, False, True]
  # The 4-sample bound (2 pairs: 2m = 4 evaluations) lies below the 100-sample bound.
  assert metrics["test_bound_k"].iloc[-1] < metrics["test_bound_n"].iloc[-1]
  assert summary["final_test_bound_k"] == pytest.approx(metrics["test_bound_k"].iloc[-1])


def test_log_bound_k_logs_the_bound_with_the_estimators_cost(tmp_path, fake_data):
  config = small_config("rodeo_3", num_steps=10, bound_every=10, log_bound_k=True)
  runner.train_run(config, str(tmp_path / "run"))
  metrics = results_io.read_metrics(str(tmp_path / "run" / "metrics.csv"))
  assert metrics["test_bound_k"].notna().all()
  assert {"rodeo_3_alpha", "rodeo_3_beta"} <= set(metrics.columns)
  assert metrics["rodeo_3_alpha"].iloc[0] == 0.0 and metrics["rodeo_3_alpha"].iloc[-1] != 0.0
  record = results_io.read_json(str(tmp_path / "run" / "config.json"))
  assert record["estimator_info"]["num_f_evals"] == 3 and record["estimator_info"]["family"] == "rodeo"


# ------------------------------------------------------------------ data order and evaluation


@pytest.mark.parametrize("order", ["permutation", "buffer_across_epochs", "buffer_per_epoch"])
def test_data_orders_visit_the_training_set_as_their_references_do(order):
  n, batch = 2100, 50
  data = DataOrder(order, seed=3, num_train=n, batch_size=batch)
  steps = 3 * n // batch
  indices = data.indices(0, steps).ravel()
  assert indices.min() >= 0 and indices.max() < n
  counts = np.bincount(indices[: (n // batch) * batch], minlength=n)
  if order == "permutation":  # whole epochs, each image once per epoch (the remainder skipped)
    assert counts.max() == 1 and counts.sum() == (n // batch) * batch
  elif order == "buffer_per_epoch":  # epochs kept apart: every image exactly once per epoch
    counts = np.bincount(indices[:n], minlength=n)
    assert np.all(counts == 1)
  else:  # a 1024 buffer over the repeated stream: about one epoch, some images twice or not at all
    assert counts.max() >= 2 and (counts == 0).any()
    # ... but the shuffle is local: an image comes out within a few buffer lengths of its turn
    first = np.array([np.argmax(indices == i) for i in range(0, n, 97)])
    assert np.all(np.abs(first - np.arange(0, n, 97)) < 6 * 1024)
  # Deterministic, and resumable from the state it checkpoints.
  again = DataOrder(order, seed=3, num_train=n, batch_size=batch)
  head = again.indices(0, 40)
  state = again.state()
  resumed = DataOrder(order, seed=3, num_train=n, batch_size=batch)
  resumed.load(state)
  np.testing.assert_array_equal(np.concatenate([head, resumed.indices(40, steps - 40)]).ravel(), indices)
  other_seed = DataOrder(order, seed=4, num_train=n, batch_size=batch).indices(0, 10)
  assert not np.array_equal(other_seed, indices.reshape(steps, batch)[:10])


def test_fixed_evaluation_binarisation_replays_one_draw(fake_data):
  values = {}
  for mode in ("fixed", "fresh"):
    trainer = Trainer(small_config(eval_binarization=mode, num_bound_samples=2), fake_data)
    first = trainer.train_elbo()[0], trainer.bound("test")[0]
    trainer.step.assign(10)  # the model is unchanged: only the evaluation's noise moves with the step
    values[mode] = (first, (trainer.train_elbo()[0], trainer.bound("test")[0]))
  # fixed: the binarisation repeats (the latent samples do not): the two evaluations differ
  # less than with a fresh binarisation of both.
  fixed, fresh = values["fixed"], values["fresh"]
  assert fixed[0] == fresh[0]  # step 0: the same draw either way
  assert fixed[1] != fixed[0] and fresh[1] != fresh[0]
  assert fixed[1] != fresh[1]


def test_train_elbo_with_k_samples_averages_k_single_sample_elbos(fake_data):
  single = Trainer(small_config("reinforce_loo_4", train_elbo_samples="single"), fake_data).train_elbo()[0]
  k_mean = Trainer(small_config("reinforce_loo_4", train_elbo_samples="k_mean"), fake_data).train_elbo()[0]
  # Same model and data: the same expectation, a mean over 4x the samples (sampling error ~0.1 nats).
  assert k_mean == pytest.approx(single, abs=1.0) and k_mean != single


def _decoder_gradient_at(model, x, bits):
  """Gradient of -mean_batch mean_S ELBO(x, bits_s) in the decoder and prior, the encoder's logits held fixed."""
  with tf.GradientTape() as tape:
    logits = tf.stop_gradient(model.encoder_logits(x))
    loss = -tf.reduce_mean(model.elbo(x, bits, logits))
  return [g.numpy() for g in tape.gradient(loss, list(model.decoder_variables) + [model.prior_logits])]


def test_the_three_decoder_samples_train_the_decoder_on_the_bits_they_name():
  """Which bits the decoder's gradient sees, mode by mode, for one DisARM step (all three are unbiased).

  independent: the forward sample from its own stream; estimator: both halves of the
  antithetic pair; k_independent: the pair's first half and one fresh draw from its own
  stream, never the antithetic partner (a decoder trained on it would still be unbiased,
  so only this comparison tells the modes apart).
  """
  from contracts import streams
  from estimators.arm import antithetic_pairs
  from training import engine

  splits = fake_splits()
  model = tiny_model("nonlinear", splits)
  estimator = get_estimator("disarm")
  noise = SeedNoise([5, 7])
  logits = model.encoder_logits(X)
  _, pair = antithetic_pairs(logits, noise)
  fresh = tf.cast(noise.fold_in(streams.DECODER_TOP_UP).uniform(logits, 1) < tf.sigmoid(logits), tf.float32)
  forward = tf.cast(noise.fold_in(streams.FORWARD_SAMPLE).split(1)[0].uniform(logits) < tf.sigmoid(logits), tf.float32)
  expected = {
    "independent": _decoder_gradient_at(model, X, forward[tf.newaxis]),
    "estimator": _decoder_gradient_at(model, X, pair),
    "k_independent": _decoder_gradient_at(model, X, tf.concat([pair[:1], fresh], axis=0)),
  }
  partner = _decoder_gradient_at(model, X, tf.concat([pair[1:], fresh], axis=0))
  for mode, want in expected.items():
    options = engine.StepOptions(decoder_sample=mode, decoder_reduction="mean")
    got = engine.step_gradients(model, estimator, X, noise, options=options)
    got = [g.numpy() for g in got.decoder + [got.prior]]
    for g, w in zip(got, want):
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=mode)
    for other, theirs in list(expected.items()) + [("k_independent with the partner", partner)]:
      if other != mode:
        assert max(np.max(np.abs(g - t)) for g, t in zip(got, theirs)) > 1e-3, f"{mode} looks like {other}"
