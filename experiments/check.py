"""Benchmark one estimator in one command, and write a one-page verdict.

    python3 run_benchmarks.py --preset=check --estimator_modules=path/to/my_estimator.py --estimators=my_estimator

Stages, in order; the check stops at the first that fails:

0. Declarations and one call (``estimators.check.check_runs``): an ``EstimatorOutput`` of
   the right shapes, finite, asking of ``f`` only what ``needs`` declares.
1. Unbiasedness against exact gradients (``estimators.check.check_unbiased``; D = 1..4,
   five objectives, logits near 0 / moderate / saturated, initial and random states).
2. Variance on the toy problem (PROTOCOL.md section 6) against DisARM, RODEO and RELAX at
   the estimator's K, next to the closed forms the estimators declare. Where the
   estimator itself declares one, its Monte Carlo variance must agree with it.
3. The variance basket at shared model parameters: the training runs of stage 4 measure
   every compared estimator's encoder-gradient variance at their own parameters, on the
   same minibatches (stateful members other than the run's own at their initial state,
   frozen).
4. Training on MNIST (nonlinear VAE, the RODEO protocol's settings, a few thousand steps,
   3 seeds) against DisARM and RODEO at the estimator's K, compared at equal f
   evaluations and at equal wall-clock time.
5. ``<out_dir>/report.md`` with its figures: each stage's verdict and numbers, and what
   the estimator declares.

Exit codes (``run_check``'s return value): ``EXIT_OK`` every stage ran and passed;
``EXIT_BIASED`` the estimator is biased (report and console name the f, D, logits and
state); ``EXIT_CANNOT_RUN`` it cannot be run as declared (the message says what to fix);
``EXIT_CHECK_FAILED`` a later stage failed (its variance contradicts its own closed
form, or its training runs failed).
"""

import dataclasses
import json
import math
import os
import time

import numpy as np
import pandas as pd

from estimators import check as harness
from estimators import get_estimator

EXIT_OK = 0
EXIT_BIASED = 4
EXIT_CANNOT_RUN = 5
EXIT_CHECK_FAILED = 6

TOY_P0 = 0.49


@dataclasses.dataclass(frozen=True)
class CheckSize:
  """How much work each stage does. ``FULL`` fits 15 minutes on 2 CPU cores; ``SMOKE`` is for tests."""

  toy_sigma_grid: tuple = tuple(round(i / 10.0, 4) for i in range(1, 10))
  toy_num_bits: int = 20
  toy_draws: int = 4000
  toy_relax_steps: int = 100
  train: bool = True
  train_steps: int = 2000
  train_eval_every: int = 500
  train_seeds: tuple = (0, 1, 2)
  train_bound_samples: int = 100
  # (setting, value) pairs replacing the preset's run settings in stage 4; the report names them.
  train_overrides: tuple = ()


SIZES = {
  "full": CheckSize(),
  # Every stage on a tiny budget (the unbiasedness check is the full one): about a minute
  # plus the estimator's stage 1 on 2 CPU cores, most of it compiling.
  "smoke": CheckSize(
    toy_sigma_grid=(0.3, 0.5, 0.9),
    toy_draws=500,
    toy_relax_steps=10,
    train_steps=20,
    train_eval_every=20,
    train_seeds=(0, 1),
    train_bound_samples=2,
    # The evaluations, not the 20 steps, are most of a tiny run's time: one sample per image
    # in the train ELBO pass and a few basket draws keep every column without the cost.
    train_overrides=(("train_elbo_samples", "single"), ("basket_draws", 4)),
  ),
}


def baselines_for(est):
  """``{"disarm", "rodeo", "relax"}``: DisARM and RODEO at the estimator's K where the family has that
  K (DisARM: even K; RODEO: K >= 2), and RELAX. A baseline that is the estimator itself is left out."""
  k = est.num_f_evals
  names = {"disarm": f"disarm_{k}" if k >= 2 and k % 2 == 0 else "disarm", "rodeo": f"rodeo_{max(k, 2)}"}
  names["relax"] = "relax"
  out = {}
  for role, name in names.items():
    baseline = get_estimator(name)
    if baseline.name != est.name:
      out[role] = baseline
  return out


def declaration(est, num_latents=200):
  """What the estimator declares, as report rows."""
  rows = {
    "name": est.name,
    "label": est.label or est.name,
    "f evaluations per estimate (K)": est.num_f_evals,
    "needs of f": est.needs.value,
    "state": "trainable" if est.has_state else "none",
  }
  cost = getattr(est, "cost", None)
  if callable(cost):
    c = cost(num_latents)
    rows[f"cost per example (D = {num_latents})"] = ", ".join(f"{k} {v}" for k, v in c.items())
  if est.has_state:
    t = est.trainable
    rows["state training"] = (
      f"loss space {t.loss_space}, Adam lr {t.learning_rate or 'the encoder’s'}, beta1 {t.beta1}, beta2 {t.beta2}"
    )
  rows["closed-form variance on linear f"] = "declared" if est.variance_on_linear_f is not None else "none"
  if est.description:
    rows["description"] = est.description
  return rows


class _Report:
  """Collects the stages' sections and writes report.md (each time a stage ends, so a stop leaves a report)."""

  def __init__(self, out_dir, est, log):
    self.out_dir, self.est, self.log = out_dir, est, log
    self.sections, self.verdicts = [], []
    os.makedirs(out_dir, exist_ok=True)

  def add(self, stage, verdict, text):
    """Adds a stage's section; stages are listed in the order of their numbers, whenever they ran."""
    self.verdicts.append((stage, verdict))
    self.sections.append((stage, f"## {stage}: {verdict}\n\n{text.strip()}\n"))
    self.verdicts.sort()
    self.sections.sort()
    self.write()

  def write(self, exit_code=None):
    lines = [f"# Estimator check: {self.est.label or self.est.name} (`{self.est.name}`)", ""]
    if exit_code is not None:
      lines += [f"Exit code {exit_code}: {_EXIT_TEXT[exit_code]}.", ""]
    lines += ["| stage | verdict |", "|---|---|"] + [f"| {s} | {v} |" for s, v in self.verdicts] + [""]
    lines += ["## What the estimator declares", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in declaration(self.est).items()] + [""]
    path = os.path.join(self.out_dir, "report.md")
    with open(path + ".tmp", "w") as fh:
      fh.write("\n".join(lines + [section for _, section in self.sections]))
    os.replace(path + ".tmp", path)
    return path


_EXIT_TEXT = {
  EXIT_OK: "every check passed",
  EXIT_BIASED: "the estimator is biased",
  EXIT_CANNOT_RUN: "the estimator cannot be run as declared",
  EXIT_CHECK_FAILED: "a check after the unbiasedness check failed",
}


# ----------------------------------------------------------------------------- stage 1
def stage_unbiased(est, report, log):
  start = time.time()
  result = harness.check_unbiased(est, log=log)
  rows = pd.DataFrame([dataclasses.asdict(f) for f in result.findings])
  rows.to_csv(os.path.join(report.out_dir, "unbiasedness.csv"), index=False)
  table = rows.groupby(["case", "num_bits"])["max_abs_z"].max().unstack("num_bits")
  text = (
    f"{result.describe()}\n\n"
    f"Monte Carlo mean of {result.num_draws} estimates per coordinate against the exact gradient "
    "(enumeration of all 2^D states); a correct estimator fails with probability at most "
    f"{result.alpha:g}. Max |z| per objective and D (all logits rows and states; bound {result.bound:.2f}):\n\n"
    + _markdown(table.rename(columns=lambda d: f"D = {d}"), "{:.2f}")
    + f"\n\nAll coordinates: `unbiasedness.csv`. ({time.time() - start:.0f} s)"
  )
  report.add("1. Unbiasedness", "pass" if result.ok else "FAIL: biased", text)
  return result


# ----------------------------------------------------------------------------- stage 2
def stage_variance(est, size, report, log):
  from experiments import toy

  start = time.time()
  members = [est] + list(baselines_for(est).values())
  frames = []
  for member in members:
    frames.append(
      toy.variance_curve(
        member,
        TOY_P0,
        size.toy_sigma_grid,
        size.toy_draws,
        size.toy_num_bits,
        relax_steps=size.toy_relax_steps,
      )
    )
    log(f"variance: {member.name} done ({time.time() - start:.0f} s)")
  frame = pd.concat(frames, ignore_index=True)
  frame.to_csv(os.path.join(report.out_dir, "toy_variance.csv"), index=False)
  figure = _variance_figure(frame, report.out_dir)
  ok, note = True, "no closed form declared: nothing to check against, compared only"
  if est.variance_on_linear_f is not None:
    ok, note = _closed_form_check(est, size)
  pivot = frame.pivot_table(index="sigma_phi", columns="estimator", values="variance")
  ratio = {b.name: float(np.exp(np.nanmean(np.log(pivot[est.name] / pivot[b.name])))) for b in members[1:]}
  text = (
    f"Toy problem f(b) = sum_d (b_d - {TOY_P0})^2, D = {size.toy_num_bits} bits all at sigma, "
    f"{size.toy_draws} estimates per point; variance of bit 0's estimate. {note}.\n\n"
    "Geometric mean over the grid of the variance ratio (this estimator / baseline; < 1: lower variance): "
    + ", ".join(f"{k} {v:.3g}" for k, v in ratio.items())
    + "\n\n"
    + _markdown(pivot, "{:.3g}")
    + (f"\n\n![toy variance]({figure})" if figure else "")
    + f"\n\n({time.time() - start:.0f} s)"
  )
  report.add("2. Variance (toy problem)", "pass" if ok else "FAIL: variance contradicts its closed form", text)
  return ok


def _closed_form_check(est, size):
  """The estimator's Monte Carlo variance on the toy problem against its declared closed form.

  Fresh draws at each sigma of the grid (the initial state, if it has one); z = (sample
  variance - closed form) / its large-sample s.e. (``experiments.toy.sample_variance_se``,
  from the fourth moment: the estimates are far from normal), with a two-sided
  Bonferroni bound over the grid points.
  """
  import tensorflow as tf

  from estimators import estimate_gradient
  from experiments import toy

  bound = harness.z_bound(len(size.toy_sigma_grid))
  state = est.make_state(size.toy_num_bits, 0)
  worst = (0.0, None)
  for i, sigma in enumerate(size.toy_sigma_grid):
    logits = tf.fill([size.toy_num_bits], float(math.log(sigma) - math.log1p(-sigma)))
    draws = estimate_gradient(est, toy.toy_objective(TOY_P0), logits, [7, i], num_draws=size.toy_draws, state=state)
    var, se = toy.sample_variance_se(draws.numpy()[:, 0])
    exact = float(toy.exact_variance(est, TOY_P0, sigma, size.toy_num_bits))
    z = abs(var - exact) / max(se, 1e-30)
    if z >= worst[0]:
      worst = (z, sigma, var, exact)
  ok = worst[0] < bound
  note = (
    f"Monte Carlo ({size.toy_draws} fresh draws per point) against its declared closed form: max |z| = "
    f"{worst[0]:.2f} (bound {bound:.2f}) at sigma = {worst[1]}: variance {worst[2]:.4g}, closed form {worst[3]:.4g}"
  )
  return ok, note


def _variance_figure(frame, out_dir):
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:  # pragma: no cover - matplotlib is a dependency of the suite
    return None
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for name, group in frame.groupby("estimator", sort=False):
    line = ax.plot(group["sigma_phi"], group["variance"], marker="o", ms=3, label=name)[0]
    if group["variance_exact"].notna().any():
      ax.plot(group["sigma_phi"], group["variance_exact"], ls=":", color=line.get_color())
  ax.set_yscale("log")
  ax.set_xlabel("sigma(phi)")
  ax.set_ylabel("variance of bit 0's estimate")
  ax.legend(fontsize=7)
  return _save_figure(fig, out_dir, "toy_variance.png")


# ----------------------------------------------------------------------------- stage 4
def stage_training(est, size, report, log, data_dir=None, plugins=(), executor=None, basket_state="frozen"):
  from contracts.settings import Grid
  from training.presets import PRESETS
  from training.sweep import run_sweep

  start = time.time()
  base = PRESETS["check"]
  baselines = baselines_for(est)
  names = [est.name] + [baselines[role].name for role in ("disarm", "rodeo") if role in baselines]
  grid = Grid(
    base.datasets,
    base.models,
    tuple(dict.fromkeys(names)),
    tuple(size.train_seeds),
    dataclasses.replace(
      base.settings,
      num_steps=size.train_steps,
      eval_every=size.train_eval_every,
      bound_every=size.train_steps,
      num_bound_samples=size.train_bound_samples,
      basket=tuple(dict.fromkeys(names)),
      basket_state=basket_state,
      **dict(size.train_overrides),
    ),
  )
  sweep_dir = os.path.join(report.out_dir, "training")
  summary = run_sweep(
    grid, sweep_dir, data_dir=data_dir, plugins=plugins, executor=executor, max_stack=len(size.train_seeds), extend=True
  )
  failed = summary[summary["status"].isin(["failed", "invalid"])]
  curves = _load_curves(sweep_dir, summary)
  figure = _training_figure(curves, report.out_dir)
  rows = []
  for axis, label in (("f_evals", "equal f evaluations"), ("train_time_s", "equal wall-clock")):
    at = min(g[axis].max() for _, g in curves.groupby("estimator"))
    for name, g in curves.groupby("estimator", sort=False):
      per_seed = [np.interp(at, s[axis], s["train_elbo"]) for _, s in g.groupby("seed")]
      mean = float(np.mean(per_seed))
      se = float(np.std(per_seed, ddof=1) / math.sqrt(len(per_seed))) if len(per_seed) > 1 else float("nan")
      rows.append(
        {
          "comparison": label,
          "at": f"{at:.4g} {'f evals' if axis == 'f_evals' else 's'}",
          "estimator": name,
          "train ELBO": f"{mean:.2f} ± {se:.2f}",
          "seeds": len(per_seed),
        }
      )
  table = pd.DataFrame(rows)
  ok = failed.empty
  text = (
    "MNIST, nonlinear VAE, the RODEO protocol's settings"
    + "".join(f", {name} = {value}" for name, value in size.train_overrides)
    + f", {size.train_steps} steps, seeds "
    f"{', '.join(map(str, size.train_seeds))}. Train ELBO (mean ± s.e. over seeds, interpolated along each "
    "run's curve) at the largest f-evaluation count and the largest wall-clock time every estimator reached. "
    "f evaluations = steps x batch x K; wall-clock = training time (evaluations excluded), the seeds of each "
    "estimator trained together in one graph, as every other estimator's.\n\n"
    + _markdown(table, index=False)
    + (f"\n\n![training]({figure})" if figure else "")
    + (f"\n\nFailed runs: {', '.join(failed['run_id'])}" if not ok else "")
    + f"\n\nRuns: `training/`. ({time.time() - start:.0f} s)"
  )
  report.add("4. Training (MNIST)", "pass (compared)" if ok else "FAIL: runs failed", text)
  if ok:
    stage_basket(est, sweep_dir, summary, report, basket_state)
  return ok


def stage_basket(est, sweep_dir, summary, report, basket_state="frozen"):
  """The basket columns of the training runs: every estimator's variance at each run's parameters."""
  from contracts import results

  frames = []
  for _, row in summary.iterrows():
    path = os.path.join(sweep_dir, "runs", row["run_id"], "metrics.csv")
    metrics = pd.read_csv(path)
    columns = [c for c in metrics.columns if c.startswith(results.BASKET_PREFIX)]
    last = metrics.dropna(subset=columns).iloc[-1]
    frames.append({"parameters of": row["estimator"], "seed": row["seed"], "step": int(last["step"])})
    frames[-1].update({c[len(results.BASKET_PREFIX) :]: float(last[c]) for c in columns})
  table = pd.DataFrame(frames)
  members = [c for c in table.columns if c not in ("parameters of", "seed", "step")]
  mean = table.groupby("parameters of", sort=False)[members].mean()
  ratios = (mean[est.name].to_numpy()[:, None] / mean.to_numpy()).min(axis=0)
  text = (
    "Encoder-gradient variance (mean over encoder parameters, "
    "basket_var_<name>) of every estimator at the same model parameters: each training run's, at its last "
    "evaluation, on the same minibatches (mean over seeds). A member with state other than the run's own "
    + (
      "estimator is measured with its own state, trained alongside the run on the same batches "
      "(--basket_state=trained).\n\n"
      if basket_state == "trained"
      else "estimator is measured at its own initial state, frozen (--basket_state=trained trains it alongside).\n\n"
    )
    + _markdown(mean, "{:.4g}")
    + "\n\nSmallest ratio of this estimator's variance to each member's over the parameter sets: "
    + ", ".join(f"{m} {r:.3g}" for m, r in zip(members, ratios))
  )
  report.add("3. Variance basket (shared parameters)", "measured", text)


def _load_curves(sweep_dir, summary):
  frames = []
  for _, row in summary.iterrows():
    path = os.path.join(sweep_dir, "runs", row["run_id"], "metrics.csv")
    if not os.path.isfile(path):
      continue
    with open(os.path.join(sweep_dir, "runs", row["run_id"], "config.json")) as fh:
      config = json.load(fh)
    metrics = pd.read_csv(path)
    est = get_estimator(row["estimator"])
    batch = config.get("batch_size") or config.get("settings", {}).get("batch_size", 1)
    metrics = metrics.assign(
      estimator=row["estimator"], seed=row["seed"], f_evals=metrics["step"] * est.num_f_evals * int(batch)
    )
    # Training time only (evaluations cost every estimator the same and would blur the
    # comparison): each block's steps over its measured rate, accumulated.
    blocks = metrics["step"].diff().fillna(0.0) / metrics["steps_per_sec"].where(metrics["steps_per_sec"] > 0)
    metrics = metrics.assign(train_time_s=blocks.fillna(0.0).cumsum())
    frames.append(metrics[["estimator", "seed", "step", "f_evals", "train_time_s", "train_elbo"]].dropna())
  return pd.concat(frames, ignore_index=True)


def _training_figure(curves, out_dir):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
  for ax, axis, xlabel in zip(axes, ("f_evals", "train_time_s"), ("f evaluations", "training time (s)")):
    for name, g in curves.groupby("estimator", sort=False):
      mean = g.groupby("step")[[axis, "train_elbo"]].mean()
      ax.plot(mean[axis], mean["train_elbo"], marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
  axes[0].set_ylabel("train ELBO")
  axes[0].legend(fontsize=7)
  return _save_figure(fig, out_dir, "training.png")


def _save_figure(fig, out_dir, name):
  """Writes ``fig`` to ``<out_dir>/figures/<name>`` and closes it; returns the path the report links."""
  import matplotlib.pyplot as plt

  fig.tight_layout()
  os.makedirs(os.path.join(out_dir, "figures"), exist_ok=True)
  path = os.path.join("figures", name)
  fig.savefig(os.path.join(out_dir, path), dpi=120)
  plt.close(fig)
  return path


def _markdown(frame, fmt="{}", index=True):
  """A DataFrame as a Markdown table (numbers through ``fmt``)."""
  cell = lambda v: fmt.format(v) if isinstance(v, (int, float, np.floating)) and not pd.isna(v) else str(v)
  header = ([str(frame.index.name or "")] if index else []) + [str(c) for c in frame.columns]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for key, row in frame.iterrows():
    lines.append("| " + " | ".join(([str(key)] if index else []) + [cell(v) for v in row]) + " |")
  return "\n".join(lines)


# ----------------------------------------------------------------------------- driver
def run_check(name, out_dir, size="full", data_dir=None, plugins=(), executor=None, log=print, basket_state="frozen"):
  """Runs the stages on estimator ``name``; writes ``<out_dir>/report.md``; returns an exit code (module docstring).

  ``basket_state``: the stateful basket members' states frozen at their initial values, or
  trained alongside each run on its batches (the run setting of that name).
  """
  size = SIZES[size] if isinstance(size, str) else size
  est = get_estimator(name)
  report = _Report(out_dir, est, log)
  start = time.time()

  def finish(code, message):
    path = report.write(code)
    stream = log if code == EXIT_OK else _stderr
    stream(f"check: {message}")
    log(f"check: report {path} ({time.time() - start:.0f} s)")
    return code

  try:
    cost = harness.check_runs(est)
  except harness.EstimatorDefect as e:
    report.add("0. Declarations and one call", "FAIL: cannot run", f"{e}")
    return finish(EXIT_CANNOT_RUN, f"error: {est.name} cannot be checked: {e}")
  if est.bound_estimator:
    message = (
      f"{est.name} estimates a multi-sample bound; the check compares estimators of d E[f] / d logits. "
      "Check it with tests/test_multisample.py instead"
    )
    report.add("0. Declarations and one call", "FAIL: not an estimator of d E[f]", message)
    return finish(EXIT_CANNOT_RUN, "error: " + message)
  report.add(
    "0. Declarations and one call",
    "pass",
    f"One call on 2 examples x 3 bits: shapes, finite values, and f asked only for what `needs` declares. "
    f"Discrete and relaxed points f was evaluated at per example: {cost['f_points']} (declared K = {est.num_f_evals}).",
  )
  log(f"check: {est.name}: stage 1, unbiasedness against exact gradients")
  try:
    result = stage_unbiased(est, report, log)
  except harness.EstimatorDefect as e:
    report.add("1. Unbiasedness", "FAIL: cannot run", f"{e}")
    return finish(EXIT_CANNOT_RUN, f"error: {e}")
  if not result.ok:
    return finish(EXIT_BIASED, f"error: {result.describe()}. Not trained: fix the estimator and rerun the check.")
  log(f"check: {result.describe()}")
  log(f"check: {est.name}: stage 2, variance on the toy problem")
  if not stage_variance(est, size, report, log):
    return finish(EXIT_CHECK_FAILED, "error: its variance on the toy problem contradicts its own closed form")
  if size.train:
    log(f"check: {est.name}: stage 4, training on MNIST")
    if not stage_training(
      est, size, report, log, data_dir=data_dir, plugins=plugins, executor=executor, basket_state=basket_state
    ):
      return finish(EXIT_CHECK_FAILED, "error: training runs failed (see the report)")
  return finish(EXIT_OK, f"{est.name}: every check passed")


def _stderr(message):
  import sys

  print(message, file=sys.stderr)
