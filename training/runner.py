"""One training run: resume, train in blocks, evaluate, log, checkpoint, finish.

The order of writes makes a kill at any moment harmless: an evaluation row is
appended (fsynced) before the checkpoint of that step is saved (one .npz per
run, replaced atomically), and on resume rows beyond the restored checkpoint are
dropped and recomputed, so each evaluation step appears exactly once.
``DONE.json`` is written last. Runs that differ only in their seed can be
trained together in one graph (``train_stack``); each still has its own files,
and its checkpoint is the one a lone run would write, so a run can be resumed
alone or in any stack.
"""

import errno
import fcntl
import json
import math
import os
import socket
import time

import numpy as np
import pandas as pd
import tensorflow as tf

from contracts import results
from contracts.settings import RunConfig
from datasets import load_dataset
from estimators import get_estimator
from models import NUM_LATENTS
from training import provenance, results_io
from training.trainer import Trainer, effective_settings
from training.validation import validate_config


class ConfigMismatchError(ValueError):
  pass


class LockUnsupportedError(OSError):
  """The results folder's filesystem does not support file locks."""


class RunLock:
  """An exclusive per-run lock: ``flock`` on ``<run_dir>/run.lock``.

  The kernel releases the lock when its holder dies, however it dies (SIGKILL,
  OOM, a lost node's lease on a shared filesystem such as NFSv4), so a dead
  holder never keeps a run: the next driver takes it over. The file holds the
  holder's host and pid, for messages only.
  """

  def __init__(self, run_dir):
    self.path = os.path.join(run_dir, "run.lock")
    self.held = False
    self._fd = None

  def acquire(self):
    """True if this process now holds the run; False if a live process does."""
    for _ in range(5):
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        os.close(fd)
        return False
      except OSError as e:
        os.close(fd)
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
          raise LockUnsupportedError(
            e.errno,
            f"cannot lock {self.path}: the filesystem does not support file locks "
            f"({os.strerror(e.errno)}). Put the results on a filesystem with locking (local disk, "
            "NFSv4 or another shared filesystem with flock support)",
          ) from e
        raise
      # The holder before us may have unlinked the file after we opened it: then we
      # locked an orphaned inode, and must start over on the current one.
      try:
        same = os.path.samestat(os.fstat(fd), os.stat(self.path))
      except FileNotFoundError:
        same = False
      if not same:
        os.close(fd)
        continue
      os.ftruncate(fd, 0)
      os.pwrite(
        fd,
        json.dumps(dict(host=socket.gethostname(), pid=os.getpid(), since=time.strftime("%Y-%m-%d %H:%M:%S"))).encode(),
        0,
      )
      self._fd, self.held = fd, True
      return True
    return False

  def holder(self):
    """'pid P on host H' from the lock file (for messages), or ''.

    Call it only when ``acquire`` failed: on filesystems that emulate flock with
    POSIX locks (NFS), closing any descriptor of the file drops the holder's lock.
    """
    try:
      with open(self.path) as f:
        info = json.loads(f.read() or "{}")
      return f"pid {info['pid']} on host {info['host']}"
    except (OSError, ValueError, KeyError, TypeError):
      return ""

  def release(self):
    if self.held:
      try:
        os.unlink(self.path)  # unlinked while still locked: see the inode check in acquire
      except FileNotFoundError:
        pass
      os.close(self._fd)
      self._fd, self.held = None, False

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


def config_record(config):
  """What ``config.json`` holds: the run's settings, its id, and what it knew of its estimator and its basket's."""
  record = config.to_dict()
  record[results.ESTIMATOR_INFO_KEY] = get_estimator(config.estimator).info(NUM_LATENTS)
  record[results.EFFECTIVE_KEY] = effective_settings(config)
  if config.basket:
    baskets = [get_estimator(name) for name in config.basket]
    record[results.BASKET_INFO_KEY] = {e.name: e.info(NUM_LATENTS) for e in baskets}  # keyed as the basket_var_ columns
  return record


def record_segment(run_dir, splits, start_step):
  """Appends this process's provenance record (a segment starting at ``start_step``) to config.json."""
  path = os.path.join(run_dir, results.CONFIG_JSON)
  record = results_io.read_json(path)
  record.setdefault(results.PROVENANCE_KEY, []).append(provenance.segment(splits, start_step))
  results_io.atomic_write_json(path, record)
  return record[results.PROVENANCE_KEY]


def check_config(run_dir, config):
  """Writes config.json, or checks that an existing one describes the same run."""
  path = os.path.join(run_dir, results.CONFIG_JSON)
  if os.path.exists(path):
    stored = RunConfig.from_dict(results_io.read_json(path))
    differing = [k for k in ("dataset", "model", "estimator", "seed") if getattr(stored, k) != getattr(config, k)]
    differing += stored.settings.differences(config.settings)
    if differing:
      details = ", ".join(f"{k}: stored {getattr(stored, k)!r} vs requested {getattr(config, k)!r}" for k in differing)
      raise ConfigMismatchError(
        f"{run_dir} already holds run {config.run_id} with a different configuration ({details}). "
        "Use a new --sweep_name, or delete that run folder to start it over."
      )
  else:
    results_io.atomic_write_json(path, config_record(config))


CHECKPOINT_FILE = os.path.join(results.CHECKPOINT_DIR, results.CHECKPOINT_FILE)
# Seconds between progress reports inside an evaluation interval (a block takes ~10 s).
PROGRESS_SECONDS = 20.0


class DamagedRunError(ValueError):
  """A run's own files (config.json, metrics.csv, checkpoint) cannot be read."""


def checkpoint_step(run_dir):
  """The step of the run's checkpoint (0 when it has none)."""
  state = load_checkpoint(run_dir)
  return 0 if state is None else int(state["step"])


def save_checkpoint(run_dir, state):
  """One run's training state (``Trainer.member_state``), replaced atomically."""
  os.makedirs(os.path.join(run_dir, results.CHECKPOINT_DIR), exist_ok=True)
  results_io.atomic_write_npz(os.path.join(run_dir, CHECKPOINT_FILE), state)


def load_checkpoint(run_dir):
  """``{name: array}`` saved by ``save_checkpoint``, or None; ``DamagedRunError`` naming the file if unreadable."""
  path = os.path.join(run_dir, CHECKPOINT_FILE)
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as state:
      arrays = {name: state[name] for name in state.files}
    int(arrays["step"])
  except Exception as e:  # noqa: BLE001 - a zip, npy or key error: the file is damaged either way
    raise DamagedRunError(f"cannot read the checkpoint {path} ({type(e).__name__}: {e})") from e
  return arrays


def _read_run_files(run_dir, config):
  """Checks config.json and reads the run's status, metrics and checkpoint; DamagedRunError if unreadable."""
  try:
    check_config(run_dir, config)
  except (ValueError, TypeError) as e:
    if isinstance(e, ConfigMismatchError):
      raise
    raise DamagedRunError(f"cannot read {os.path.join(run_dir, results.CONFIG_JSON)} ({e})") from e
  status, reason = results_io.run_status(run_dir)
  metrics_path = os.path.join(run_dir, results.METRICS_CSV)
  try:
    metrics = results_io.read_metrics(metrics_path)
  except Exception as e:  # noqa: BLE001 - pandas raises several kinds for a garbled CSV
    raise DamagedRunError(f"cannot read {metrics_path} ({type(e).__name__}: {e})") from e
  state = load_checkpoint(run_dir) if status not in ("done", "failed") else None
  return status, reason, metrics, state


def _quarantine(run_dir, config, why):
  """Marks a damaged run failed (FAILED.json with the reason), so the other runs go on."""
  reason = (
    f"damaged run files: {why}. Repair or delete the file, or rerun with --restart_damaged to train "
    "this run again from step 0"
  )
  results_io.atomic_write_json(os.path.join(run_dir, results.FAILED_JSON), {"reason": reason, "damaged": True})
  return results_io.summarize(config.to_dict(), pd.DataFrame(columns=list(results.METRIC_COLUMNS)), "failed", reason)


def _restart(run_dir, config):
  """Clears a run's results and checkpoint so that it trains again from step 0 (--restart_damaged)."""
  for name in (
    results.CONFIG_JSON,
    results.METRICS_CSV,
    results.DONE_JSON,
    results.FAILED_JSON,
    os.path.join(results.CHECKPOINT_DIR, results.CHECKPOINT_FILE),
  ):
    path = os.path.join(run_dir, name)
    if os.path.exists(path):
      os.unlink(path)
  check_config(run_dir, config)


def train_run(config: RunConfig, run_dir, **kwargs):
  """Trains (or resumes, or skips) one run; returns its summary row (``train_stack`` of one)."""
  return train_stack([config], [run_dir], **kwargs)[0]


def train_stack(
  configs,
  run_dirs,
  data_dir=None,
  tensorboard=False,
  progress=None,
  train_jit=None,
  eval_jit=True,
  log=None,
  allow_download=False,
  restart_damaged=False,
):
  """Trains (or resumes, or skips) runs that differ only in their seed, in one graph.

  Runs already done or failed are summarised and left alone; the others are
  grouped by the step their checkpoints reached and each group is trained as one
  stack (``Trainer`` with a member axis): the members share every kernel call but
  each keeps its own metrics.csv, checkpoint, DONE.json or FAILED.json, exactly as
  if it had been trained alone. A run whose own files cannot be read (a damaged
  config.json, metrics.csv or checkpoint) is marked failed with the file named in its
  FAILED.json and the others go on; ``restart_damaged`` trains such a run again from
  step 0 instead (also one marked so by an earlier sweep). Returns the summary rows in
  the order of ``configs``.

  The caller holds every run's ``RunLock`` (or knows no other process can touch them).

  Args:
    progress: optional callable ``progress(config, step, steps_per_sec)`` called
      after every evaluation of every member, and with ``steps_per_sec=None`` where
      a resumed member starts.
    log: optional callable taking one line of text (where each run starts from).
  """
  if len(configs) != len(run_dirs):
    raise ValueError(f"{len(configs)} configs but {len(run_dirs)} run folders")
  summaries = [None] * len(configs)
  waiting = {}  # checkpoint step -> indices of runs to train from there
  loaded = {}
  for i, (config, run_dir) in enumerate(zip(configs, run_dirs)):
    validate_config(config)
    os.makedirs(run_dir, exist_ok=True)
    if restart_damaged and results_io.marked_damaged(run_dir):
      _restart(run_dir, config)
    try:
      status, reason, metrics, state = _read_run_files(run_dir, config)
    except DamagedRunError as e:
      if not restart_damaged:
        if log is not None:
          log(f"{config.run_id}: {e}; marked failed, the other runs go on")
        summaries[i] = _quarantine(run_dir, config, str(e))
        continue
      if log is not None:
        log(f"{config.run_id}: {e}; training it again from step 0 (--restart_damaged)")
      _restart(run_dir, config)
      status, reason, metrics, state = _read_run_files(run_dir, config)
    if status in ("done", "failed"):
      summaries[i] = results_io.summarize(config.to_dict(), metrics, status, reason)
    else:
      loaded[i] = (metrics, state)
      waiting.setdefault(0 if state is None else int(state["step"]), []).append(i)
  if waiting:
    splits = load_dataset(configs[0].dataset, data_dir, allow_download=allow_download)
  for step in sorted(waiting):
    members = waiting[step]
    group = _train_group(
      [configs[i] for i in members],
      [run_dirs[i] for i in members],
      [loaded[i] for i in members],
      splits,
      tensorboard,
      progress,
      train_jit,
      eval_jit,
      log,
    )
    for i, summary in zip(members, group):
      summaries[i] = summary
  return summaries


def _train_group(configs, run_dirs, loaded, splits, tensorboard, progress, train_jit, eval_jit, log):
  """Trains runs whose checkpoints are all at the same step as one stack; see ``train_stack``."""
  trainer = Trainer(configs, splits, train_jit=train_jit, eval_jit=eval_jit)
  size = len(configs)
  metrics_paths = [os.path.join(d, results.METRICS_CSV) for d in run_dirs]
  elapsed = [0.0] * size
  segments = [None] * size
  for m, (config, run_dir, (metrics, state)) in enumerate(zip(configs, run_dirs, loaded)):
    results_io.remove_temp_files(run_dir)  # only the lock holder writes here: leftovers are a dead writer's
    results_io.remove_temp_files(os.path.join(run_dir, results.CHECKPOINT_DIR))
    if state is not None:
      trainer.load_member_state(m, state)
    # Drops rows written after the last checkpoint (they are recomputed), and repeats.
    metrics = metrics[metrics["step"] <= int(trainer.step.numpy())]
    metrics = metrics.drop_duplicates("step", keep="last").reset_index(drop=True)
    results_io.write_metrics(metrics_paths[m], metrics)
    elapsed[m] = float(metrics["wall_time_s"].iloc[-1]) if len(metrics) else 0.0
    if log is not None:
      where = (
        f"resuming from its checkpoint at step {int(state['step'])}" if state is not None else "starting at step 0"
      )
      stacked = f" (in a stack of {size} runs)" if size > 1 else ""
      log(f"{config.run_id}: {where}{stacked}")
    segments[m] = record_segment(run_dir, splits, int(state["step"]) if state is not None else 0)
    if progress is not None and state is not None:
      # Where a resumed run starts (no rate: nothing trained yet), so that progress and the
      # sweep's throughput count only what this call trains.
      progress(config, int(state["step"]), None)
  step = int(trainer.step.numpy())
  config = configs[0]
  writers = [tf.summary.create_file_writer(os.path.join(d, "tensorboard")) if tensorboard else None for d in run_dirs]
  active = [True] * size
  summaries = [None] * size

  def evaluate(steps_per_sec, with_bounds):
    train_elbo, variance = trainer.train_elbo(), trainer.gradient_variance()
    rows = [
      dict(
        step=step,
        steps_per_sec=steps_per_sec,
        stack_size=size,
        train_elbo=train_elbo[m],
        grad_variance=variance[m],
        valid_bound_n=math.nan,
        test_bound_n=math.nan,
      )
      for m in range(size)
    ]
    if with_bounds or trainer.logs_bound_k:
      for row, bounds in zip(rows, trainer.bound_columns(with_bound_n=with_bounds)):
        row.update(bounds)
    for row, scalars, basket in zip(rows, trainer.estimator_scalars(), trainer.basket_variances()):
      row.update(scalars)
      row.update(basket)
    return rows

  def record(m, row):
    results_io.append_metrics_row(metrics_paths[m], row)
    if writers[m] is not None:
      with writers[m].as_default(step=row["step"]):
        for key, value in row.items():
          if key != "step" and isinstance(value, float) and not math.isnan(value):
            tf.summary.scalar(key, value)
      writers[m].flush()
    if progress is not None:
      progress(configs[m], row["step"], row["steps_per_sec"])

  def fail(m, why):
    active[m] = False
    results_io.atomic_write_json(os.path.join(run_dirs[m], results.FAILED_JSON), {"reason": why, "step": step})
    summaries[m] = results_io.summarize(configs[m].to_dict(), results_io.read_metrics(metrics_paths[m]), "failed", why)

  # Trace the training block now so that the first block's steps/s measures training, not tracing.
  trainer.trace()

  if step == 0:
    start = time.time()
    rows = evaluate(math.nan, with_bounds=False)  # bounds: positive multiples of bound_every, and the end
    took = time.time() - start
    for m, row in enumerate(rows):
      if not results_io.read_metrics(metrics_paths[m]).shape[0]:
        elapsed[m] += took
        record(m, dict(row, wall_time_s=elapsed[m]))

  last_report = [time.time()]

  def tick(reached, steps, seconds):
    # Between evaluations: a progress line at most every PROGRESS_SECONDS (the console
    # would otherwise be silent for a whole evaluation interval).
    now = time.time()
    if progress is None or now - last_report[0] < PROGRESS_SECONDS:
      return
    last_report[0] = now
    for m in range(size):
      if active[m]:
        progress(configs[m], reached, steps / max(seconds, 1e-9))

  while step < config.num_steps and any(active):
    block = min(config.eval_every - step % config.eval_every, config.num_steps - step)
    start = time.time()
    losses = trainer.train(block, on_block=tick if progress is not None else None)
    last_report[0] = time.time()
    train_time = time.time() - start
    step = int(trainer.step.numpy())
    # A member that diverged stops here; the others are independent and go on
    # (its parameters keep changing in the graph, but nothing of it is recorded).
    for m in range(size):
      if active[m] and not math.isfinite(losses[m]):
        fail(m, f"non-finite training loss {losses[m]} in the steps before {step}")
    rows = evaluate(block / train_time, with_bounds=step % config.bound_every == 0 or step == config.num_steps)
    took = time.time() - start
    for m, row in enumerate(rows):
      if not active[m]:
        continue
      elapsed[m] += took
      row["wall_time_s"] = elapsed[m]
      if not all(math.isfinite(row[k]) for k in ("train_elbo", "grad_variance")):
        fail(m, f"non-finite train ELBO or gradient variance at step {step}")
        continue
      record(m, row)
      save_checkpoint(run_dirs[m], trainer.member_state(m))

  for m in range(size):
    if active[m]:
      summaries[m] = results_io.summarize(configs[m].to_dict(), results_io.read_metrics(metrics_paths[m]), "done")
      done = dict(summaries[m], **{results.PROVENANCE_KEY: segments[m]})
      results_io.atomic_write_json(os.path.join(run_dirs[m], results.DONE_JSON), done)
  return summaries
