"""The variance basket: several estimators' gradient variance at one run's parameters."""

import dataclasses
import itertools
import json
import types

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from contracts import results, streams
from contracts.settings import RunConfig, Settings
from models import build_model
from plots import loading, style
from training import runner
from training.trainer import Trainer
from training.validation import validate_config

NUM_PIXELS, NUM_LATENTS, BATCH = 6, 3, 10


def identical_images(n=40):
  """A training set of one 0/1 image repeated: binarisation and minibatches add no variance."""
  image = np.array([1, 0, 1, 1, 0, 1], np.float32)
  train = np.tile(image, (n, 1))
  return types.SimpleNamespace(
    train=train, valid=train[:10], test=train[:10], mean_train=train.mean(0) * 0.9, name="fake"
  )


def exact_loo_variance(model, x):
  """sum_d Var(g_d) of 2-sample REINFORCE LOO, g = (f(b1) - f(b2)) (b1 - b2) / 2, by enumeration."""
  logits = model.encoder_logits(x[tf.newaxis])[0]  # [D]
  states = np.array(list(itertools.product([0.0, 1.0], repeat=NUM_LATENTS)), np.float32)
  probs = tf.sigmoid(logits).numpy()
  q = np.prod(np.where(states == 1, probs, 1 - probs), axis=1)  # [2^D]
  f = model.elbo(x[tf.newaxis], tf.constant(states)[:, tf.newaxis], logits[tf.newaxis]).numpy()[:, 0]
  weights = q[:, None] * q[None, :]
  g = 0.5 * (f[:, None] - f[None, :])[..., None] * (states[:, None, :] - states[None, :, :])
  mean = np.einsum("ij,ijd->d", weights, g)
  second = np.einsum("ij,ijd->d", weights, g**2)
  return float(np.sum(second - mean**2))


@pytest.mark.parametrize("stacked", [False, True], ids=["lone", "stacked"])
def test_basket_variance_matches_exact_estimator_variance(stacked):
  """The basket measured by a lone run (plain form) and by a one-member stack (member axis)."""
  splits = identical_images()
  config = RunConfig(
    "fake",
    "linear",
    "disarm",
    0,
    Settings(num_steps=10, batch_size=BATCH, basket=("reinforce_loo", "arm", "disarm"), basket_draws=2000),
  )
  seed = (0, streams.MODEL_INIT_SALT)
  single = build_model("linear", splits.mean_train, seed=seed, num_latents=NUM_LATENTS)
  model = build_model("linear", splits.mean_train, seed=[seed], num_latents=NUM_LATENTS) if stacked else single
  trainer = Trainer(config, splits, model=model, stacked=stacked)
  row = trainer.basket_variances()[0]
  assert sorted(row) == ["basket_var_arm", "basket_var_disarm", "basket_var_reinforce_loo"]
  # Identical images: the encoder input x - mean is the same for every example, each
  # example draws its own noise, so the batch-mean gradient of parameter w_id (input i,
  # latent d) has variance input_i^2 Var(g_d) / B and that of bias d, Var(g_d) / B.
  x = tf.constant(splits.train[0])
  inputs = (splits.train[0] - splits.mean_train).astype(np.float64)
  per_latent_total = exact_loo_variance(single, x) / BATCH
  expected = per_latent_total * (np.sum(inputs**2) + 1.0) / (NUM_PIXELS * NUM_LATENTS + NUM_LATENTS)
  # 2,000 draws: the sample variance of each parameter has relative s.e. ~sqrt(2/2000) = 3%
  # (more for heavy tails); 15% is > 4 s.e. and still catches a missing or extra 1/B.
  assert row["basket_var_reinforce_loo"] == pytest.approx(expected, rel=0.15)
  # PROTOCOL.md claim 1 at one point: DisARM's variance is at most ARM's.
  assert row["basket_var_disarm"] < row["basket_var_arm"]


def test_basket_columns_land_in_metrics_csv(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  train = rng.uniform(0.05, 0.95, size=(100, 784)).astype(np.float32)
  splits = types.SimpleNamespace(train=train, valid=train[:30], test=train[:30], mean_train=train.mean(0), name="fake")
  monkeypatch.setattr(runner, "load_dataset", lambda name, data_dir=None, **kwargs: splits)
  configs = [
    RunConfig(
      "mnist",
      "linear",
      "arm",
      s,
      Settings(
        num_steps=20,
        batch_size=10,
        eval_every=10,
        bound_every=20,
        num_bound_samples=5,
        basket=("arm", "arms_2"),
        basket_draws=5,
      ),
    )
    for s in (0, 1)
  ]
  dirs = [str(tmp_path / c.run_id) for c in configs]
  summaries = runner.train_stack(configs, dirs)
  assert [s["status"] for s in summaries] == ["done", "done"]
  for d in dirs:
    metrics = pd.read_csv(f"{d}/metrics.csv")
    assert list(metrics.columns[-2:]) == ["basket_var_arm", "basket_var_arms_2"]
    assert (metrics["stack_size"] == 2).all()  # both seeds trained in one graph
    for column in ("basket_var_arm", "basket_var_arms_2"):
      assert metrics[column].notna().all() and (metrics[column] > 0).all()
    # config.json records what the basket's estimators are, so reports can label a
    # basket-only estimator (arms_2 here) without parsing its name.
    with open(f"{d}/{results.CONFIG_JSON}") as f:
      recorded = json.load(f)[results.BASKET_INFO_KEY]
    assert set(recorded) == {"arm", "arms_2"}
    infos = loading._basket_infos({results.BASKET_INFO_KEY: recorded})
    assert (infos["arms_2"].label, infos["arms_2"].family, infos["arms_2"].num_f_evals) == ("ARMS", "arms", 2)
    assert style.Catalogue(infos).labels(["arm", "arms_2"]) == {"arm": "ARM", "arms_2": "ARMS"}


@pytest.mark.parametrize(
  "estimator,basket,match",
  [
    ("vimco_2", ("arm",), "multi-sample bound"),
    ("arm", ("vimco_2",), "multi-sample bound"),
    ("arm", ("disarn",), "disarm"),
  ],
)
def test_bad_baskets_are_refused(estimator, basket, match):
  with pytest.raises(ValueError, match=match):
    validate_config(RunConfig("mnist", "linear", estimator, 0, Settings(num_steps=10, basket=basket)))


@pytest.mark.parametrize("stacked", [False, True], ids=["lone", "stacked"])
def test_stateful_basket_members_have_their_own_frozen_state(stacked):
  """RELAX, RODEO and a stateful plugin measured at a DisARM run's parameters, each at its own
  initial state (frozen), the same for the same seed; their variances differ from the stateless ones'."""
  from tests import toy_stateful_estimator  # noqa: F401 - registers learned_baseline_loo

  splits = identical_images()
  basket = ("disarm", "relax", "rodeo_2", "learned_baseline_loo")
  config = RunConfig(
    "fake", "linear", "disarm", 0, Settings(num_steps=10, batch_size=BATCH, basket=basket, basket_draws=50)
  )
  validate_config(dataclasses.replace(config, dataset="mnist"))  # stateful members are accepted
  seed = (0, streams.MODEL_INIT_SALT)
  rows = []
  for _ in range(2):
    model = build_model("linear", splits.mean_train, seed=[seed] if stacked else seed, num_latents=NUM_LATENTS)
    trainer = Trainer(config, splits, model=model, stacked=stacked)
    assert sorted(trainer.basket_states) == ["learned_baseline_loo", "relax", "rodeo_2"]
    rows.append(trainer.basket_variances()[0])
  assert sorted(rows[0]) == sorted(results.basket_column(n) for n in basket)
  assert all(np.isfinite(v) and v > 0 for v in rows[0].values()), rows[0]
  assert rows[0] == rows[1]  # the frozen states and the draws follow from the seed alone
  assert rows[0]["basket_var_relax"] != rows[0]["basket_var_disarm"]


def varied_images(n=200):
  """Grey levels in (0.05, 0.95): binarisation and minibatches vary, as on real data."""
  train = np.random.default_rng(0).uniform(0.05, 0.95, size=(n, NUM_PIXELS)).astype(np.float32)
  return types.SimpleNamespace(train=train, valid=train[:20], test=train[:20], mean_train=train.mean(0), name="fake")


def basket_trainer(splits, basket_state, seeds=(0,), basket=("disarm", "relax", "double_cv_2"), **settings):
  """A DisARM run on a tiny linear model (one per seed, stacked for several) with a trainable basket."""
  fields = dict(num_steps=200, batch_size=BATCH, encoder_lr=1e-3, decoder_lr=1e-3, basket=basket, basket_draws=20)
  fields.update(settings, basket_state=basket_state)
  configs = [RunConfig("fake", "linear", "disarm", s, Settings(**fields)) for s in seeds]
  pairs = [(s, streams.MODEL_INIT_SALT) for s in seeds]
  model = build_model("linear", splits.mean_train, seed=pairs if len(seeds) > 1 else pairs[0], num_latents=NUM_LATENTS)
  return Trainer(configs if len(seeds) > 1 else configs[0], splits, model=model)


def state_losses(trainers, member, num_draws):
  """``[num_draws, len(trainers)]``: the member's state loss under each trainer's state, on common draws.

  Every draw (a fresh minibatch, its binarisation and the member's noise) is shared by
  the trainers, so their differences are paired and free of the draws' own spread.
  """
  from datasets import binarize
  from training import engine
  from training import noise as noise_lib

  @tf.function
  def losses(seed):
    first = trainers[0]
    indices = noise_lib.uniform_int([BATCH], noise_lib.fold(seed, 0), int(first.train_images.shape[0]), False)
    x = binarize(tf.gather(first.train_images, indices), noise_lib.fold(seed, 1))
    noise = noise_lib.noise_for(noise_lib.fold(seed, 2), False)
    return tf.stack(
      [
        engine.step_gradients(
          t.model, member, x, noise, t.basket_states[member.name], t.options, decoder=False
        ).state_loss
        for t in trainers
      ]
    )

  return np.array([losses(tf.constant([11, r], tf.int32)).numpy() for r in range(num_draws)])


def test_trained_basket_states_learn_and_leave_the_run_alone():
  """basket_state=trained: the run's parameters are bit-identical to basket_state=frozen; the
  members' states move from their initial values and lower their own loss."""
  splits = varied_images()
  frozen, trained = basket_trainer(splits, "frozen"), basket_trainer(splits, "trained")
  assert not frozen.basket_optimizers and sorted(trained.basket_optimizers) == ["double_cv_2", "relax"]
  names = ("relax", "double_cv_2")
  initial = {name: [v.numpy() for v in trained.basket_states[name][0].trainable_variables] for name in names}
  losses = [t.train(200) for t in (frozen, trained)]
  assert losses[0] == losses[1]
  for a, b in zip(frozen.model.trainable_variables, trained.model.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
  # Both start from the same state; the frozen one stays there, and every trained
  # variable receives gradients, so each one moves.
  for name in names:
    pairs = zip(initial[name], frozen.basket_states[name][0].trainable_variables)
    assert all(np.array_equal(start, v.numpy()) for start, v in pairs), name
    for start, v in zip(initial[name], trained.basket_states[name][0].trainable_variables):
      assert np.any(start != v.numpy()), (name, v.name)
  # Each member's own loss at the common final parameters, paired over 200 common draws.
  # Measured: Double CV 0.142 trained against 0.172 frozen (alpha 0 -> -0.13 in 200 Adam
  # steps at lr 1e-3), a paired difference of 17 standard errors; RELAX 24.8 against 30.4,
  # 8 standard errors. Four standard errors leave a wide margin, while a state that did
  # not learn (no gradient, the wrong sign) fails.
  for member in trained.basket[1:]:
    values = state_losses([frozen, trained], member, 200)
    difference = values[:, 1] - values[:, 0]
    standard_error = difference.std(ddof=1) / np.sqrt(len(difference))
    assert difference.mean() + 4 * standard_error < 0, (member.name, values.mean(axis=0), standard_error)
  # The basket measures the trained states: the stateless member's column is unchanged.
  rows = [t.basket_variances()[0] for t in (frozen, trained)]
  assert rows[0]["basket_var_disarm"] == rows[1]["basket_var_disarm"]
  assert rows[0]["basket_var_double_cv_2"] != rows[1]["basket_var_double_cv_2"]


def test_trained_basket_states_resume_exactly_alone_and_from_a_stack():
  """Basket states and their Adam slots are checkpointed: a run stopped and resumed from its
  checkpoint ends where the straight run ends, and a stacked member's checkpoint resumes alone."""
  splits = varied_images()
  straight = basket_trainer(splits, "trained", seeds=(1,))
  straight.train(20)
  reference = straight.member_state(0)
  assert {"basket_state/relax/0", "basket_adam/double_cv_2/m/0", "basket_adam/relax/iterations"} <= set(reference)
  assert "basket_state/relax/0" not in basket_trainer(splits, "frozen", seeds=(1,)).member_state(0)

  first = basket_trainer(splits, "trained", seeds=(1,))
  first.train(10)
  stack = basket_trainer(splits, "trained", seeds=(0, 1))
  stack.train(10)
  for checkpoint, exact in ((first.member_state(0), True), (stack.member_state(1), False)):
    assert checkpoint.keys() == reference.keys()
    resumed = basket_trainer(splits, "trained", seeds=(1,))
    resumed.load_member_state(0, checkpoint)
    resumed.train(10)
    state = resumed.member_state(0)
    for name, value in reference.items():
      if exact or name == "step" or name.startswith("data_order") or name.endswith("iterations"):
        np.testing.assert_array_equal(state[name], value, err_msg=name)
      else:
        # Stacked products round differently in the last bit (tests/test_stacking.py); Adam's
        # second moments reach ~450 here, so the tolerance is relative as well.
        np.testing.assert_allclose(state[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
