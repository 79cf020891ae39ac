"""``--check``: find run folders whose files disagree with their configuration.

Reads files only (safe while a sweep runs). For every ``runs/<run_id>/`` folder:

* ``config.json`` exists, parses, passes ``RunConfig.validate``, and names the run of
  its folder (``run_id`` and the fields it is made of);
* its numbers agree with ``sweep.json`` (steps, cadences, batch size, bound samples);
* ``metrics.csv`` has every column, steps are whole numbers, unique, increasing,
  start at 0, lie on the evaluation cadence (multiples of ``eval_every``, and
  ``num_steps``) and never beyond ``num_steps``; the bounds are there at the
  bound cadence;
* a finished run (``DONE.json``) has every evaluation step up to ``num_steps`` and
  its ``DONE.json`` says ``final_step == num_steps``; ``DONE.json`` and
  ``FAILED.json`` are not both present;
* ``summary.csv`` agrees with the run folders on which runs are finished.

Problems make ``--check`` exit non-zero; notes (a torn last metrics line or
``.tmp-*`` files left by a kill, both repaired when the run resumes) do not.
"""

import io
import os

import numpy as np
import pandas as pd

from contracts import results
from contracts.settings import Grid, RunConfig
from training import results_io
from training.validation import validate_config


def expected_steps(config):
  steps = list(range(0, config.num_steps, config.eval_every))
  return steps + [config.num_steps]


def bound_steps(config):
  return {s for s in expected_steps(config) if s > 0 and (s % config.bound_every == 0 or s == config.num_steps)}


def check_run(run_dir, grid=None):
  """(problems, notes) of one run folder: lists of strings."""
  problems, notes = [], []
  name = os.path.basename(os.path.normpath(run_dir))
  config_path = os.path.join(run_dir, results.CONFIG_JSON)
  if not os.path.exists(config_path):
    if any(
      os.path.exists(os.path.join(run_dir, f)) for f in (results.METRICS_CSV, results.DONE_JSON, results.FAILED_JSON)
    ):
      problems.append("has results but no config.json")
    return problems, notes
  try:
    stored = results_io.read_json(config_path)
    config = RunConfig.from_dict(stored)
  except (ValueError, TypeError) as e:
    return [f"config.json is unreadable or incomplete ({e})"], notes
  if stored.get("run_id") != name or config.run_id != name:
    problems.append(
      f"config.json describes run {stored.get('run_id')!r} (fields give {config.run_id!r}), not the folder's {name!r}"
    )
  try:
    validate_config(config)
  except ValueError as e:
    problems.append(f"config.json is invalid: {e}")
    return problems, notes
  if grid is not None:
    wanted = grid.settings_for(config.dataset)
    differing = [
      f"{k}: config {getattr(config, k)!r} vs sweep.json {getattr(wanted, k)!r}"
      for k in config.settings.differences(wanted)
    ]
    if differing:
      problems.append("config.json disagrees with sweep.json (" + "; ".join(differing) + ")")

  done = os.path.exists(os.path.join(run_dir, results.DONE_JSON))
  failed = os.path.exists(os.path.join(run_dir, results.FAILED_JSON))
  if done and failed:
    problems.append("both DONE.json and FAILED.json are present")
  metrics_path = os.path.join(run_dir, results.METRICS_CSV)
  whole = results_io.complete_lines(metrics_path, whole=True)
  text = results_io.complete_lines(metrics_path)
  if whole != text:
    (problems if done else notes).append(
      "metrics.csv ends in a torn line (a kill mid-append; cut off when the run resumes)"
    )
  steps = []
  if text:
    try:
      frame = pd.read_csv(io.StringIO(text))
      frame = frame.rename(columns=results.legacy_renames(frame.columns))
    except (ValueError, pd.errors.ParserError) as e:
      problems.append(f"metrics.csv does not parse ({e})")
      frame = None
    if frame is not None:
      missing = [c for c in results.METRIC_COLUMNS if c not in frame.columns]
      if missing:
        problems.append(f"metrics.csv lacks columns {missing}")
      if "step" in frame.columns:
        problems += _check_steps(frame, config, done)
        steps = [int(s) for s in frame["step"] if _is_whole(s)]
  elif done:
    problems.append("DONE.json is present but metrics.csv is missing or empty")
  if done:
    try:
      final = results_io.read_json(os.path.join(run_dir, results.DONE_JSON)).get("final_step")
    except ValueError as e:
      problems.append(f"DONE.json is unreadable ({e})")
    else:
      if final != config.num_steps:
        problems.append(f"DONE.json has final_step {final!r}, but num_steps is {config.num_steps}")
    if steps and steps[-1] != config.num_steps:
      problems.append(f"finished, but the last metrics step is {steps[-1]}, not num_steps {config.num_steps}")
  checkpoint = os.path.join(run_dir, results.CHECKPOINT_DIR, results.CHECKPOINT_FILE)
  if os.path.exists(checkpoint):
    try:
      with np.load(checkpoint, allow_pickle=False) as state:
        step = int(state["step"])
      if step > config.num_steps:
        problems.append(f"checkpoint/state.npz is at step {step}, beyond num_steps {config.num_steps}")
    except Exception as e:  # noqa: BLE001 - whatever numpy raises, the file cannot be resumed from
      problems.append(
        f"checkpoint/state.npz is unreadable ({type(e).__name__}: {e}); the run cannot resume from "
        "it: delete it, or rerun with --restart_damaged"
      )
  leftovers = sorted(n for n in os.listdir(run_dir) if n.startswith(".tmp-"))
  if leftovers:
    notes.append(f"temporary files left by a killed writer: {', '.join(leftovers)} (removed on resume)")
  return problems, notes


def _is_whole(value):
  try:
    return float(value) == int(float(value))
  except (TypeError, ValueError):
    return False


def _check_steps(frame, config, done):
  problems = []
  raw = list(frame["step"])
  bad = [v for v in raw if not _is_whole(v)]
  if bad:
    problems.append(f"metrics.csv has steps that are not whole numbers: {bad[:5]}")
  steps = [int(float(v)) for v in raw if _is_whole(v)]
  duplicated = sorted({s for s in steps if steps.count(s) > 1})
  if duplicated:
    problems.append(f"metrics.csv repeats steps {duplicated[:10]}")
  if any(b <= a for a, b in zip(steps, steps[1:])) and not duplicated:
    problems.append("metrics.csv steps are not increasing")
  beyond = [s for s in steps if s > config.num_steps]
  if beyond:
    problems.append(f"metrics.csv has steps beyond num_steps {config.num_steps}: {beyond[:5]}")
  expected = expected_steps(config)
  cadence = set(expected)
  off = [s for s in steps if s not in cadence and s <= config.num_steps]
  if off:
    problems.append(
      f"metrics.csv has steps off the evaluation cadence (every {config.eval_every}, and {config.num_steps}): {off[:5]}"
    )
  if steps and steps[0] != 0:
    problems.append(f"metrics.csv starts at step {steps[0]}, not 0")
  if done:
    absent = [s for s in expected if s not in set(steps)]
    if absent:
      problems.append(f"finished, but metrics.csv lacks evaluation steps {absent[:10]}")
  if {"valid_bound_n", "test_bound_n"} <= set(frame.columns):
    wanted = bound_steps(config)
    for _, row in frame.iterrows():
      if _is_whole(row["step"]) and int(float(row["step"])) in wanted:
        if any(pd.isna(row[c]) for c in ("valid_bound_n", "test_bound_n")):
          step = int(float(row["step"]))
          problems.append(f"metrics.csv lacks the N-sample bounds (valid_bound_n, test_bound_n) at step {step}")
  return problems


def check_sweep(sweep_dir):
  """{run_id: (problems, notes)} for every run folder with something to say, plus sweep-level ones under ''."""
  report = {}
  runs_dir = os.path.join(sweep_dir, "runs")
  grid = None
  sweep_problems, sweep_notes = [], []
  if not os.path.isdir(runs_dir):
    sweep_problems.append(f"{sweep_dir} has no runs/ folder: is it a sweep folder?")
  try:
    grid = Grid.from_dict(results_io.read_json(os.path.join(sweep_dir, results.SWEEP_JSON)))
  except FileNotFoundError:
    sweep_notes.append("no sweep.json")
  except ValueError as e:
    sweep_problems.append(f"sweep.json is unreadable ({e})")
  finished = {}
  for run_id in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
    run_dir = os.path.join(runs_dir, run_id)
    if not os.path.isdir(run_dir):
      continue
    problems, notes = check_run(run_dir, grid)
    if problems or notes:
      report[run_id] = (problems, notes)
    if os.path.exists(os.path.join(run_dir, results.DONE_JSON)):
      finished[run_id] = "done"
    elif os.path.exists(os.path.join(run_dir, results.FAILED_JSON)):
      finished[run_id] = "failed"
  summary_path = os.path.join(sweep_dir, results.SUMMARY_CSV)
  if os.path.exists(summary_path):
    try:
      summary = pd.read_csv(summary_path)
      listed = {r: s for r, s in zip(summary["run_id"], summary["status"]) if s in ("done", "failed")}
      for run_id in summary.loc[summary["status"] == "invalid", "run_id"]:
        finished.pop(run_id, None)  # unreadable: reported with its own folder's problems
      if listed != finished:
        differing = sorted(set(listed.items()) ^ set(finished.items()))
        sweep_problems.append(
          f"summary.csv disagrees with the run folders on finished runs "
          f"({', '.join(f'{r}: {s}' for r, s in differing[:5])}); "
          "rebuild it with --rebuild_summary"
        )
    except (ValueError, KeyError, pd.errors.ParserError) as e:
      sweep_problems.append(f"summary.csv is unreadable ({e}); rebuild it with --rebuild_summary")
  elif finished:
    sweep_notes.append("no summary.csv yet; --rebuild_summary writes it")
  if sweep_problems or sweep_notes:
    report[""] = (sweep_problems, sweep_notes)
  return report


def format_report(report, sweep_dir):
  """(text, number of problems)."""
  lines, count = [], 0
  for run_id, (problems, notes) in report.items():
    where = run_id or "sweep"
    for p in problems:
      lines.append(f"PROBLEM {where}: {p}")
      count += 1
    for n in notes:
      lines.append(f"note    {where}: {n}")
  runs_dir = os.path.join(sweep_dir, "runs")
  num_runs = len(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else 0
  lines.append(
    f"checked {num_runs} run folder(s) in {sweep_dir}: " + (f"{count} problem(s)" if count else "no problems")
  )
  return "\n".join(lines), count
