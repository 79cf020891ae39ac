"""Reading and writing the files of a results directory (the format: contracts/results.py).

Every whole-file write goes to a temporary file (``.tmp-*``) that is then renamed
over the target, so a kill leaves either the old or the new file, never half of
one (a leftover ``.tmp-*`` file is removed by the next process that owns the run).
Metrics rows are appended with one ``write`` and fsynced, one evaluation at a
time; a torn last line (a kill in the middle of an append) is ignored by every
reader, and on resume the file is cut back to the checkpointed step, so every
step appears exactly once.
"""

import csv
import fcntl
import io
import json
import math
import os
import tempfile
import time

import numpy as np
import pandas as pd

from contracts import results
from contracts.results import METRIC_COLUMNS, SUMMARY_COLUMNS, metric_columns


def _file_mode():
  """The mode ``open()`` gives a new file under the process's umask (mkstemp's 0600 would hide results)."""
  umask = os.umask(0)
  os.umask(umask)
  return 0o666 & ~umask


def atomic_write_bytes(path, data):
  """Replaces ``path`` by ``data`` atomically: a temporary file beside it, fsync, rename.

  The file gets the umask's ordinary mode, so a results folder shared by a group
  stays readable to it.
  """
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    os.fchmod(fd, _file_mode())
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_text(path, text):
  atomic_write_bytes(path, text.encode())


def atomic_write_npz(path, arrays):
  """Writes ``{name: array}`` as an .npz file, atomically."""
  buffer = io.BytesIO()  # built in memory: a failed write (full disk) leaves no half-open zip behind
  np.savez(buffer, **arrays)
  atomic_write_bytes(path, buffer.getvalue())


def atomic_write_json(path, obj):
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value):
  if hasattr(value, "item"):
    return value.item()
  raise TypeError(f"not JSON serialisable: {value!r}")


def append_json_line(path, obj):
  """Appends one JSON line, durably (one write, fsynced)."""
  data = (json.dumps(obj, sort_keys=True, default=_json_default) + "\n").encode()
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
  try:
    os.write(fd, data)
    os.fsync(fd)
  finally:
    os.close(fd)


def read_json(path):
  with open(path) as f:
    return json.load(f)


def read_metrics(path):
  """The metrics CSV as a DataFrame with METRIC_COLUMNS (empty if the file is absent).

  A last line without its newline is an append cut short by a kill: it is ignored.
  """
  text = complete_lines(path)
  if not text:
    return pd.DataFrame(columns=list(METRIC_COLUMNS))
  frame = pd.read_csv(io.StringIO(text))
  frame = frame.rename(columns=results.legacy_renames(frame.columns))
  missing = [c for c in METRIC_COLUMNS if c not in frame.columns]
  if missing:
    raise ValueError(
      f"{path} lacks columns {missing}; it was not written by this suite's version. "
      "Move it away or start a new --sweep_name."
    )
  return frame


def write_metrics(path, frame):
  atomic_write_text(path, frame.to_csv(index=False, columns=metric_columns(frame.columns)))


def append_metrics_row(path, row):
  """Appends one evaluation, durably (header written if the file is new)."""
  buffer = io.StringIO()
  columns = metric_columns(row)
  writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
  if not os.path.exists(path) or os.path.getsize(path) == 0:
    writer.writeheader()
  else:
    if not complete_lines(path, whole=True).endswith("\n"):
      # A torn line left by a kill mid-append: cut it off before adding a new one.
      atomic_write_text(path, complete_lines(path))
    with open(path) as f:
      header = f.readline().rstrip("\n").split(",")
    if header != columns:  # a header written before this row's extra columns were known
      frame = read_metrics(path).reindex(columns=columns)
      atomic_write_text(path, frame.to_csv(index=False, columns=columns))
  writer.writerow({k: _fmt(row.get(k, math.nan)) for k in columns})
  data = buffer.getvalue().encode()
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
  try:
    written = os.write(fd, data)  # one write: the line lands whole or (on a kill) torn at the end
    while written < len(data):
      written += os.write(fd, data[written:])
    os.fsync(fd)
  finally:
    os.close(fd)


def complete_lines(path, whole=False):
  """The file's text up to its last newline ('' if absent); ``whole``: all of it."""
  try:
    with open(path, newline="") as f:
      text = f.read()
  except FileNotFoundError:
    return ""
  if whole or text.endswith("\n"):
    return text
  return text[: text.rfind("\n") + 1]


def remove_temp_files(directory, older_than_s=0.0):
  """Removes ``.tmp-*`` files left by writers that were killed before their rename.

  Call it only where no live writer can be mid-write (a run folder, under its lock),
  or with ``older_than_s`` well above the time one write takes.
  """
  removed = []
  try:
    names = os.listdir(directory)
  except FileNotFoundError:
    return removed
  now = time.time()
  for name in names:
    if not name.startswith(".tmp-"):
      continue
    path = os.path.join(directory, name)
    try:
      if now - os.path.getmtime(path) >= older_than_s:
        os.unlink(path)
        removed.append(path)
    except FileNotFoundError:
      pass
  return removed


def _fmt(value):
  if isinstance(value, float):
    return "" if math.isnan(value) else repr(value)
  return value


def summarize(config_dict, metrics, status, reason=""):
  """One summary row from a run's config and metrics."""
  row = {k: config_dict.get(k) for k in ("run_id", "dataset", "model", "estimator", "seed", "num_steps")}
  row.update(status=status, reason=reason)
  if len(metrics) == 0:
    return row

  def last_valid(column):
    values = metrics[column].dropna()
    return float(values.iloc[-1]) if len(values) else math.nan

  def best(column):
    values = metrics[column].dropna()
    return float(values.max()) if len(values) else math.nan

  valid = metrics["valid_bound_n"]
  test_at_best_valid = math.nan
  if valid.notna().any():
    test_at_best_valid = float(metrics.loc[valid.idxmax(), "test_bound_n"])
  variance = metrics["grad_variance"].dropna()
  speed = metrics["steps_per_sec"].dropna()
  stack = metrics["stack_size"].fillna(1.0) if "stack_size" in metrics else pd.Series(1.0, index=metrics.index)
  member_speed = (metrics["steps_per_sec"] * stack).dropna()
  row.update(
    final_step=int(metrics["step"].iloc[-1]),
    final_train_elbo=last_valid("train_elbo"),
    best_train_elbo=best("train_elbo"),
    final_valid_bound_n=last_valid("valid_bound_n"),
    best_valid_bound_n=best("valid_bound_n"),
    final_test_bound_n=last_valid("test_bound_n"),
    test_bound_n_at_best_valid=test_at_best_valid,
    final_grad_variance=last_valid("grad_variance"),
    mean_grad_variance=float(variance.mean()) if len(variance) else math.nan,
    wall_time_s=float(metrics["wall_time_s"].iloc[-1]),
    steps_per_sec=float(speed.median()) if len(speed) else math.nan,
    member_steps_per_sec=float(member_speed.median()) if len(member_speed) else math.nan,
    final_valid_bound_k=last_valid("valid_bound_k"),
    final_test_bound_k=last_valid("test_bound_k"),
  )
  return row


def run_status(run_dir):
  """('done' | 'failed' | 'running' | 'new', reason)."""
  if os.path.exists(os.path.join(run_dir, results.DONE_JSON)):
    return "done", ""
  if os.path.exists(os.path.join(run_dir, results.FAILED_JSON)):
    return "failed", read_json(os.path.join(run_dir, results.FAILED_JSON)).get("reason", "")
  if os.path.exists(os.path.join(run_dir, results.METRICS_CSV)):
    return "running", ""
  return "new", ""


def marked_damaged(run_dir):
  """True for a run marked failed because its own files were unreadable (see training.runner)."""
  path = os.path.join(run_dir, results.FAILED_JSON)
  try:
    return os.path.exists(path) and bool(read_json(path).get("damaged"))
  except ValueError:
    return True


def upgrade_legacy_names(sweep_dir):
  """Renames the columns that earlier versions named otherwise (contracts.results.LEGACY_COLUMNS) in
  the finished runs' metrics.csv headers and DONE.json records; returns the files rewritten.

  Only the header line and the keys change, never a value. Runs still in progress are left to
  their driver, whose next evaluation rewrites the header (append_metrics_row).
  """
  rewritten = []
  runs_dir = os.path.join(sweep_dir, results.RUNS_DIR)
  for run_id in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
    run_dir = os.path.join(runs_dir, run_id)
    if run_status(run_dir)[0] not in ("done", "failed"):
      continue
    metrics_path = os.path.join(run_dir, results.METRICS_CSV)
    text = complete_lines(metrics_path, whole=True)
    header, newline, rows = text.partition("\n")
    renames = results.legacy_renames(header.split(","))
    if renames:
      header = ",".join(renames.get(name, name) for name in header.split(","))
      atomic_write_text(metrics_path, header + newline + rows)
      rewritten.append(metrics_path)
    done_path = os.path.join(run_dir, results.DONE_JSON)
    if os.path.exists(done_path):
      record = read_json(done_path)
      renames = results.legacy_renames(record)
      if renames:
        atomic_write_json(done_path, {renames.get(k, k): v for k, v in record.items()})
        rewritten.append(done_path)
  return rewritten


def rebuild_summary(sweep_dir):
  """Rewrites summary.csv from every runs/<run_id>/ folder; returns the DataFrame.

  Drivers sharing a sweep take turns (a lock on ``.summary.lock``), so that a
  slower one cannot overwrite a newer summary with the older state it read.
  """
  os.makedirs(sweep_dir, exist_ok=True)
  fd = os.open(os.path.join(sweep_dir, ".summary.lock"), os.O_RDWR | os.O_CREAT, 0o666)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # no locks on this filesystem: run folders are still locked per run
      pass
    return _rebuild_summary(sweep_dir)
  finally:
    os.close(fd)


def _rebuild_summary(sweep_dir):
  runs_dir = os.path.join(sweep_dir, "runs")
  rows = []
  if os.path.isdir(runs_dir):
    for run_id in sorted(os.listdir(runs_dir)):
      run_dir = os.path.join(runs_dir, run_id)
      config_path = os.path.join(run_dir, results.CONFIG_JSON)
      if not os.path.exists(config_path):
        continue
      try:
        status, reason = run_status(run_dir)
        if status == "new":
          continue
        config = read_json(config_path)
        if config.get("run_id") != run_id:
          raise ValueError(f"config.json describes run {config.get('run_id')!r}")
        rows.append(summarize(config, read_metrics(os.path.join(run_dir, results.METRICS_CSV)), status, reason))
      except (ValueError, OSError, KeyError) as e:  # a damaged folder must not hide the others
        rows.append(
          dict(run_id=run_id, status="invalid", reason=f"unreadable run files ({e}); see run_benchmarks.py --check")
        )
  frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
  remove_temp_files(sweep_dir, older_than_s=600.0)  # left by drivers killed mid-write
  atomic_write_text(os.path.join(sweep_dir, results.SUMMARY_CSV), frame.to_csv(index=False))
  return frame
