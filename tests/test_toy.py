"""The toy problem (experiments/toy.py, PROTOCOL.md section 6).

The exact variances of experiments/toy.py are closed forms; here they are checked against
a direct computation of each estimator's distribution from its definition in
PROTOCOL.md section 2 (quadrature over the uniform noise, exact for these piecewise
polynomial integrands, or enumeration of the bits), and against Monte Carlo from the
registered estimators.
"""

import itertools
import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from experiments import toy

EXACT = ("arm", "disarm", "reinforce_loo")


# ----------------------------------------------------------- direct computations
def f_np(bits, p0):
  return np.sum((np.asarray(bits, np.float64) - p0) ** 2, axis=-1)


def _uniform_rule(sigma, nodes_per_piece=4):
  """Nodes and weights on [0, 1] exact for polynomials of degree <= 7 on each of the
  pieces [0, lo], [lo, hi], [hi, 1] between the points where b or b~ flips."""
  lo, hi = min(sigma, 1 - sigma), max(sigma, 1 - sigma)
  x, w = np.polynomial.legendre.leggauss(nodes_per_piece)
  nodes, weights = [], []
  for a, b in ((0.0, lo), (lo, hi), (hi, 1.0)):
    if b > a:
      nodes.append(a + (b - a) * (x + 1) / 2)
      weights.append(w * (b - a) / 2)
  return np.concatenate(nodes), np.concatenate(weights)


def direct_distribution(estimator, p0, sigma, num_bits):
  """(values, probabilities) of bit 0's estimate, from PROTOCOL.md section 2 directly.

  ARM and DisARM: tensor-product quadrature over u in [0, 1]^D (ARM's estimate is linear
  in u_0 between flips, so its 4th power has degree 4: exact with 4 Gauss nodes per piece;
  DisARM's is piecewise constant). REINFORCE LOO (K = 2): all 4^D pairs (b_1, b_2).
  """
  phi = math.log(sigma / (1 - sigma))
  if estimator in ("arm", "disarm"):
    nodes, weights = _uniform_rule(sigma)
    u = np.array(list(itertools.product(nodes, repeat=num_bits)))  # [M, D]
    p = np.prod(np.array(list(itertools.product(weights, repeat=num_bits))), axis=1)
    b = (u < sigma).astype(float)
    bt = (u > 1 - sigma).astype(float)
    diff = f_np(bt, p0) - f_np(b, p0)
    if estimator == "arm":
      g = diff * (u[:, 0] - 0.5)
    else:
      g = 0.5 * diff * (-1.0) ** b[:, 0] * (b[:, 0] != bt[:, 0]) * (1 / (1 + math.exp(-abs(phi))))
    return g, p
  if estimator == "reinforce_loo":
    configs = np.array(list(itertools.product([0.0, 1.0], repeat=2 * num_bits)))
    b1, b2 = configs[:, :num_bits], configs[:, num_bits:]
    p = np.prod(np.where(configs == 1, sigma, 1 - sigma), axis=1)
    f1, f2 = f_np(b1, p0), f_np(b2, p0)
    g = 0.5 * ((f1 - f2) * (b1[:, 0] - sigma) + (f2 - f1) * (b2[:, 0] - sigma))
    return g, p
  raise ValueError(estimator)


def moments(values, probs):
  """mean, variance and 4th central moment of a discrete / quadrature distribution."""
  assert abs(probs.sum() - 1) < 1e-12
  mean = np.sum(probs * values)
  c = values - mean
  return mean, np.sum(probs * c**2), np.sum(probs * c**4)


# ----------------------------------------------------------------------- tests
def test_exact_gradient_matches_enumeration_and_finite_differences():
  rng = np.random.default_rng(0)
  num_bits = 3
  configs = np.array(list(itertools.product([0.0, 1.0], repeat=num_bits)))

  def expected_f(phi, p0):
    s = 1 / (1 + np.exp(-phi))
    probs = np.prod(np.where(configs == 1, s, 1 - s), axis=1)
    return np.sum(probs * f_np(configs, p0))

  for p0 in toy.P0S:
    phi = rng.normal(0, 1.5, num_bits)
    h = 1e-5
    fd = np.array([(expected_f(phi + h * e, p0) - expected_f(phi - h * e, p0)) / (2 * h) for e in np.eye(num_bits)])
    exact = toy.exact_gradient(p0, phi)
    scale = (1 - 2 * p0) * 0.25
    np.testing.assert_allclose(exact, fd, rtol=1e-5, atol=1e-9 * scale)
    # Enumeration in the score-function form: E[f(b) (b - s)].
    s = 1 / (1 + np.exp(-phi))
    probs = np.prod(np.where(configs == 1, s, 1 - s), axis=1)
    score = np.sum(probs[:, None] * f_np(configs, p0)[:, None] * (configs - s), axis=0)
    np.testing.assert_allclose(exact, score, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("estimator", EXACT)
@pytest.mark.parametrize("num_bits", [1, 2, 3])
def test_exact_variance_matches_direct_computation(estimator, num_bits):
  for p0 in (0.49, 0.4999):
    delta2 = (1 - 2 * p0) ** 2
    for sigma in (0.03, 0.3, 0.5, 0.77, 0.96):
      g, p = direct_distribution(estimator, p0, sigma, num_bits)
      mean, var, _ = moments(g, p)
      # Every estimator is unbiased ...
      assert mean == pytest.approx(toy.exact_gradient(p0, math.log(sigma / (1 - sigma))), rel=1e-9, abs=1e-14)
      # ... and the closed form is its variance.
      assert toy.exact_variance(estimator, p0, sigma, num_bits) == pytest.approx(var, rel=1e-8, abs=1e-12 * delta2), (
        estimator,
        p0,
        sigma,
        num_bits,
      )


def test_exact_variance_vectorises_and_is_nan_where_unknown():
  grid = np.array(toy.DEFAULT_SIGMA_GRID)
  v = toy.exact_variance("disarm", 0.49, grid, 5)
  assert v.shape == grid.shape and np.all(np.isfinite(v))
  assert v[3] == toy.exact_variance("disarm", 0.49, grid[3], 5)
  assert math.isnan(toy.exact_variance("relax", 0.49, 0.3, 1))
  assert math.isnan(toy.exact_variance("reinforce_loo_4", 0.49, 0.3, 1))
  assert np.all(np.isnan(toy.exact_variance("relax", 0.49, grid, 3)))


@pytest.mark.parametrize("estimator", EXACT)
@pytest.mark.parametrize("num_bits", [1, 3])
def test_monte_carlo_variance_agrees_with_exact(estimator, num_bits):
  """The sample variance S^2 of n iid draws has Var(S^2) = (mu4 - sigma^4) / n
  + 2 sigma^4 / (n (n - 1)) and is close to normal for n = 20,000 (CLT applied to the
  squared deviations). mu4 and sigma^2 come from the direct computation above, so the
  band |S^2 - sigma^2| <= 4 s.e. is exact up to the normal approximation: a correct
  estimator falls outside it with probability ~6e-5 per point (the seeds are fixed,
  so the test is deterministic)."""
  p0, n = 0.49, 20000
  sigmas = (0.1, 0.5, 0.85)
  df = toy.variance_curve(estimator, p0, sigmas, n, num_bits, seed=7)
  assert list(df.columns) == list(toy.VARIANCE_COLUMNS)
  assert (df["num_samples"] == n).all()
  for sigma, row in zip(sigmas, df.itertuples()):
    _, var, mu4 = moments(*direct_distribution(estimator, p0, sigma, num_bits))
    se = math.sqrt(max(mu4 - var**2, 0.0) / n + 2 * var**2 / (n * (n - 1)))
    assert row.variance_exact == pytest.approx(var, rel=1e-8, abs=1e-16)
    assert abs(row.variance - var) <= 4 * se + 1e-12 * (1 - 2 * p0) ** 2, (
      estimator,
      num_bits,
      sigma,
      row.variance,
      var,
      se,
    )


def test_sample_variance_se_matches_the_normal_case():
  x = np.random.default_rng(1).normal(0, 2.0, 200000)
  var, se = toy.sample_variance_se(x)
  assert var == pytest.approx(4.0, rel=0.02)
  assert se == pytest.approx(4.0 * math.sqrt(2 / x.size), rel=0.05)


@pytest.mark.parametrize("num_bits", [1, 2, 5, 20, 100])
def test_disarm_exact_variance_at_most_arm_and_reinforce_loo(num_bits):
  grid = np.concatenate([np.array(toy.DEFAULT_SIGMA_GRID), np.linspace(0.001, 0.999, 999)])
  for p0 in toy.P0S:
    arm = toy.exact_variance("arm", p0, grid, num_bits)
    disarm = toy.exact_variance("disarm", p0, grid, num_bits)
    loo = toy.exact_variance("reinforce_loo", p0, grid, num_bits)
    slack = 1e-12 * (1 - 2 * p0) ** 2
    assert np.all(disarm <= arm + slack)
    assert np.all(disarm <= loo + slack)
    assert np.all(disarm < arm)  # strictly, at every interior sigma
  # The Rao-Blackwellisation gains most at sigma = 1/2: with one bit DisARM is exact there.
  assert toy.exact_variance("disarm", 0.49, 0.5, 1) == 0.0
  assert toy.exact_variance("arm", 0.49, 0.5, 1) == pytest.approx(0.02**2 / 48)


def test_train_curve_disarm_climbs_and_is_deterministic():
  kwargs = dict(num_steps=1000, num_bits=20, seed=3, learning_rate=0.01, log_every=100)
  df = toy.train_curve("disarm", 0.49, **kwargs)
  assert list(df.columns) == list(toy.TRAINING_COLUMNS)
  assert df["step"].tolist() == list(range(0, 1001, 100))
  assert (df["estimator"] == "disarm").all() and (df["seed"] == 3).all() and (df["p0"] == 0.49).all()
  sigma = df["sigma_phi"].to_numpy()
  assert sigma[0] == 0.5
  # The drift is lr * E[g] / rms(g) ~ 0.01 / sqrt(20) per step in phi: about phi ~ 2,
  # sigma ~ 0.85 after 1000 steps; the noise in the mean over 20 bits is far smaller.
  assert sigma[-1] > 0.75
  assert np.all(np.diff(sigma) > -0.02)
  # Same seed, same curve: again from the cached trace (all state reset) and from a
  # fresh one.
  again = toy.train_curve("disarm", 0.49, **kwargs)
  toy.clear_caches()
  fresh = toy.train_curve("disarm", 0.49, **kwargs)
  np.testing.assert_array_equal(again["sigma_phi"].to_numpy(), sigma)
  np.testing.assert_array_equal(fresh["sigma_phi"].to_numpy(), sigma)
  other = toy.train_curve("disarm", 0.49, **{**kwargs, "seed": 4})
  assert not np.array_equal(other["sigma_phi"].to_numpy(), sigma)


def test_log_steps_ends_at_num_steps():
  assert toy.log_steps(250, 100) == [0, 100, 200, 250]
  assert toy.log_steps(200, 100) == [0, 100, 200]
  with pytest.raises(ValueError):
    toy.log_steps(0, 10)


SMALL = dict(
  estimators=("reinforce_loo", "arm", "disarm"),
  p0s=(0.49, 0.499),
  seeds=(0, 1),
  num_steps=200,
  num_bits=3,
  num_draws=2000,
  sigma_grid=(0.2, 0.5, 0.8),
  log_every=50,
)


def test_run_toy_writes_the_csvs_skips_and_recomputes(tmp_path, monkeypatch):
  out = str(tmp_path / "toy")
  var_path, train_path = toy.run_toy(out, log=None, **SMALL)
  assert var_path == os.path.join(out, "toy_variance.csv")
  assert train_path == os.path.join(out, "toy_training.csv")
  var = pd.read_csv(var_path)
  tr = pd.read_csv(train_path)
  assert list(var.columns) == ["p0", "estimator", "sigma_phi", "variance", "variance_exact", "num_samples"]
  assert list(tr.columns) == ["p0", "estimator", "seed", "step", "sigma_phi"]
  assert len(var) == 3 * 2 * 3 and var["variance"].notna().all() and var["variance_exact"].notna().all()
  assert len(tr) == 3 * 2 * 2 * 5
  config = json.load(open(os.path.join(out, "toy_config.json")))
  assert set(config) == {"variance", "training"}
  assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]

  # Same parameters: nothing is recomputed.
  def boom(*args, **kwargs):
    raise AssertionError("recomputed although up to date")

  with monkeypatch.context() as m:
    m.setattr(toy, "variance_curve", boom)
    m.setattr(toy, "train_curve", boom)
    toy.run_toy(out, log=None, **SMALL)

  # A changed training parameter recomputes the training CSV only.
  with monkeypatch.context() as m:
    m.setattr(toy, "variance_curve", boom)
    toy.run_toy(out, log=None, **{**SMALL, "num_steps": 100})
  assert pd.read_csv(train_path)["step"].max() == 100

  # A CSV that no longer matches its recorded checksum is recomputed.
  pd.read_csv(var_path).iloc[:2].to_csv(var_path, index=False)
  with monkeypatch.context() as m:
    m.setattr(toy, "train_curve", boom)
    toy.run_toy(out, log=None, **{**SMALL, "num_steps": 100})
  pd.testing.assert_frame_equal(pd.read_csv(var_path), var)


def test_plots_draw_the_toy_csvs_and_claim1_holds(tmp_path):
  from plots import compare, figures, loading

  sweep = str(tmp_path / "sweep")
  toy.run_toy(os.path.join(sweep, "toy"), log=None, **SMALL)
  # plots/ reads <sweep>/toy/*.csv.
  var = loading.load_toy_variance(sweep)
  assert var is not None and len(var) == 18
  written = figures.write_toy_figures(sweep)
  assert set(written) == {"variance", "training"}
  for paths in written.values():
    assert sorted(os.path.splitext(p)[1] for p in paths) == [".pdf", ".png"]
    for p in paths:
      assert os.path.getsize(p) > 1000
    with open([p for p in paths if p.endswith(".png")][0], "rb") as fh:
      assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
  assert compare.check_claim1(var).verdict == compare.HOLDS


def test_plot_toy_draws_from_the_csv_folder(tmp_path, monkeypatch):
  from plots import figures

  monkeypatch.setattr(figures, "FORMATS", ("png",))  # PDFs are covered above
  out = str(tmp_path / "toy")
  toy.run_toy(out, log=None, **{**SMALL, "estimators": ("disarm",), "p0s": (0.49,)})
  paths = toy.plot_toy(out)
  assert sorted(os.path.basename(p) for p in paths) == ["toy_training.png", "toy_variance.png"]
  assert all(os.path.dirname(p) == os.path.join(out, "figures") for p in paths)


def _toy_cli(tmp_path, *args):
  import subprocess
  import sys

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  cmd = [sys.executable, "-m", "experiments.toy", f"--out_dir={tmp_path / 'toy'}", "--num_steps=20", "--num_bits=3"]
  cmd += ["--num_draws=200", "--seeds=0", "--p0s=0.49", *args]
  return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # the toy's command line in a real process
def test_toy_command_line_takes_family_names_and_plugin_files(tmp_path):
  done = _toy_cli(
    tmp_path,
    "--quick",
    "--estimators=arms_3,learned_baseline_loo",
    "--estimator_modules=tests/toy_stateful_estimator.py",
  )
  assert done.returncode == 0, done.stderr[-2000:]
  var = pd.read_csv(tmp_path / "toy" / "toy_variance.csv")
  assert set(var["estimator"]) == {"arms_3", "learned_baseline_loo"}
  bad = _toy_cli(tmp_path, "--estimators=arms_1")
  assert bad.returncode != 0 and "arms" in bad.stderr and "samples >= 2" in bad.stderr


def test_the_driver_runs_the_toy_on_the_grid_estimators():
  """The driver's toy problem compares the sweep's own estimators (plugins and family members
  included), leaving out multi-sample bounds, which do not estimate d E[f]."""
  import run_benchmarks
  from contracts.settings import Grid

  grid = Grid(("mnist",), ("linear",), ("arms_3", "vimco_2", "disarm"), (0,))
  assert run_benchmarks.toy_estimators_of(grid) == ("arms_3", "disarm")
