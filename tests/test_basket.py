"""The variance basket: several estimators' gradient variance at one run's parameters."""

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
    ("arm", ("relax",), "cannot be measured"),
    ("arm", ("vimco_2",), "cannot be measured"),
    ("arm", ("disarn",), "disarm"),
  ],
)
def test_bad_baskets_are_refused(estimator, basket, match):
  with pytest.raises(ValueError, match=match):
    validate_config(RunConfig("mnist", "linear", estimator, 0, Settings(num_steps=10, basket=basket)))
