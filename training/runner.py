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
import tensorflow as tf

from datasets import load_dataset
from training import results_io
from training.config import RunConfig
from training.trainer import Trainer


class ConfigMismatchError(ValueError):
  pass


class LockUnsupportedError(OSError):
  """The results folder's filesystem does not support file locks."""


class RunLock:
  """An exclusive per-run lock: ``flock`` on ``<run_dir>/run.lock``.

  The kernel releases the lock when its holder dies, however it dies (SIGKILL,
  OOM, a lost node's lease on a shared filesystem such as NFSv4), so a dead
  holder never keeps a run: the next driver takes it over. The file holds the
  holder's host and pid, for messages only. A lock file written by an older,
  pid-only version of this suite is honoured while that pid is alive on this host.
  """

  def __init__(self, run_dir):
    self.path = os.path.join(run_dir, "run.lock")
    self.held = False
    self._fd = None

  def acquire(self):
    """True if this process now holds the run; False if a live process does."""
    for _ in range(5):
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        os.close(fd)
        return False
      except OSError as e:
        os.close(fd)
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
          raise LockUnsupportedError(
              e.errno, f"cannot lock {self.path}: the filesystem does not support file locks "
              f"({os.strerror(e.errno)}). Put the results on a filesystem with locking (local disk, "
              "NFSv4 or another shared filesystem with flock support)") from e
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
      if self._legacy_owner_alive(fd):
        os.close(fd)
        return False
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps(dict(host=socket.gethostname(), pid=os.getpid(),
                                    since=time.strftime("%Y-%m-%d %H:%M:%S"))).encode(), 0)
      self._fd, self.held = fd, True
      return True
    return False

  @staticmethod
  def _legacy_owner_alive(fd):
    content = os.pread(fd, 64, 0).decode(errors="replace").strip()
    if not content.isdigit() or int(content) in (0, os.getpid()):
      return False
    try:
      os.kill(int(content), 0)
    except ProcessLookupError:
      return False
    except PermissionError:
      return True
    return True

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


def check_config(run_dir, config):
  """Writes config.json, or checks that an existing one describes the same run."""
  path = os.path.join(run_dir, "config.json")
  wanted = config.to_dict()
  if os.path.exists(path):
    stored = results_io.read_json(path)
    defaults = RunConfig.defaults()
    defaults["basket"] = []
    differing = sorted(k for k in wanted if stored.get(k, defaults.get(k)) != wanted[k])
    if differing:
      details = ", ".join(f"{k}: stored {stored.get(k)!r} vs requested {wanted[k]!r}" for k in differing)
      raise ConfigMismatchError(
          f"{run_dir} already holds run {config.run_id} with a different configuration ({details}). "
          "Use a new --sweep_name, or delete that run folder to start it over.")
  else:
    results_io.atomic_write_json(path, wanted)


CHECKPOINT_FILE = os.path.join("checkpoint", "state.npz")


def checkpoint_step(run_dir):
  """The step of the run's checkpoint (0 when it has none)."""
  path = os.path.join(run_dir, CHECKPOINT_FILE)
  if not os.path.exists(path):
    return 0
  with np.load(path) as state:
    return int(state["step"])


def save_checkpoint(run_dir, state):
  """One run's training state (``Trainer.member_state``), replaced atomically."""
  os.makedirs(os.path.join(run_dir, "checkpoint"), exist_ok=True)
  results_io.atomic_write_npz(os.path.join(run_dir, CHECKPOINT_FILE), state)


def load_checkpoint(run_dir):
  """``{name: array}`` saved by ``save_checkpoint``, or None."""
  path = os.path.join(run_dir, CHECKPOINT_FILE)
  if not os.path.exists(path):
    return None
  with np.load(path) as state:
    return {name: state[name] for name in state.files}


def train_run(config: RunConfig, run_dir, **kwargs):
  """Trains (or resumes, or skips) one run; returns its summary row (``train_stack`` of one)."""
  return train_stack([config], [run_dir], **kwargs)[0]


def train_stack(configs, run_dirs, data_dir=None, tensorboard=False, progress=None,
                train_jit=False, eval_jit=True, log=None):
  """Trains (or resumes, or skips) runs that differ only in their seed, in one graph.

  Runs already done or failed are summarised and left alone; the others are
  grouped by the step their checkpoints reached and each group is trained as one
  stack (``Trainer`` with a member axis): the members share every kernel call but
  each keeps its own metrics.csv, checkpoint, DONE.json or FAILED.json, exactly as
  if it had been trained alone. Returns the summary rows in the order of ``configs``.

  The caller holds every run's ``RunLock`` (or knows no other process can touch them).

  Args:
    progress: optional callable ``progress(config, step, steps_per_sec)`` called
      after every evaluation of every member.
    log: optional callable taking one line of text (where each run starts from).
  """
  if len(configs) != len(run_dirs):
    raise ValueError(f"{len(configs)} configs but {len(run_dirs)} run folders")
  summaries = [None] * len(configs)
  waiting = {}  # checkpoint step -> indices of runs to train from there
  for i, (config, run_dir) in enumerate(zip(configs, run_dirs)):
    config.validate()
    os.makedirs(run_dir, exist_ok=True)
    check_config(run_dir, config)
    status, reason = results_io.run_status(run_dir)
    if status in ("done", "failed"):
      metrics = results_io.read_metrics(os.path.join(run_dir, "metrics.csv"))
      summaries[i] = results_io.summarize(config.to_dict(), metrics, status, reason)
    else:
      waiting.setdefault(checkpoint_step(run_dir), []).append(i)
  if waiting:
    splits = load_dataset(configs[0].dataset, data_dir)
  for step in sorted(waiting):
    members = waiting[step]
    group = _train_group([configs[i] for i in members], [run_dirs[i] for i in members], splits,
                         tensorboard, progress, train_jit, eval_jit, log)
    for i, summary in zip(members, group):
      summaries[i] = summary
  return summaries


def _train_group(configs, run_dirs, splits, tensorboard, progress, train_jit, eval_jit, log):
  """Trains runs whose checkpoints are all at the same step as one stack; see ``train_stack``."""
  trainer = Trainer(configs, splits, train_jit=train_jit, eval_jit=eval_jit)
  size = len(configs)
  metrics_paths = [os.path.join(d, "metrics.csv") for d in run_dirs]
  elapsed = [0.0] * size
  for m, (config, run_dir) in enumerate(zip(configs, run_dirs)):
    results_io.remove_temp_files(run_dir)  # only the lock holder writes here: leftovers are a dead writer's
    results_io.remove_temp_files(os.path.join(run_dir, "checkpoint"))
    state = load_checkpoint(run_dir)
    if state is not None:
      trainer.load_member_state(m, state)
    metrics = results_io.read_metrics(metrics_paths[m])
    # Drops rows written after the last checkpoint (they are recomputed), and repeats.
    metrics = metrics[metrics["step"] <= int(trainer.step.numpy())]
    metrics = metrics.drop_duplicates("step", keep="last").reset_index(drop=True)
    results_io.write_metrics(metrics_paths[m], metrics)
    elapsed[m] = float(metrics["wall_time_s"].iloc[-1]) if len(metrics) else 0.0
    if log is not None:
      where = f"resuming from its checkpoint at step {int(state['step'])}" if state is not None else "starting at step 0"
      stacked = f" (in a stack of {size} runs)" if size > 1 else ""
      log(f"{config.run_id}: {where}{stacked}")
  step = int(trainer.step.numpy())
  config = configs[0]
  writers = [tf.summary.create_file_writer(os.path.join(d, "tensorboard")) if tensorboard else None
             for d in run_dirs]
  active = [True] * size
  summaries = [None] * size

  def evaluate(steps_per_sec, with_bounds):
    train_elbo, variance = trainer.train_elbo(), trainer.gradient_variance()
    rows = [dict(step=step, steps_per_sec=steps_per_sec, train_elbo=train_elbo[m], grad_variance=variance[m],
                 valid_bound_100=math.nan, test_bound_100=math.nan) for m in range(size)]
    if with_bounds or trainer.estimator.eval_bound_samples:
      for row, bounds in zip(rows, trainer.bound_columns(with_100=with_bounds)):
        row.update(bounds)
    for row, extra, basket in zip(rows, trainer.extra_metrics(), trainer.basket_variances()):
      row.update(extra)
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
    results_io.atomic_write_json(os.path.join(run_dirs[m], "FAILED.json"), {"reason": why, "step": step})
    summaries[m] = results_io.summarize(configs[m].to_dict(), results_io.read_metrics(metrics_paths[m]),
                                        "failed", why)

  # Trace the training block now so that the first block's steps/s measures training, not tracing.
  trainer._train_block.get_concrete_function(tf.TensorSpec([], tf.int64))

  if step == 0:
    start = time.time()
    rows = evaluate(math.nan, with_bounds=False)  # bounds: positive multiples of bound_every, and the end
    took = time.time() - start
    for m, row in enumerate(rows):
      if not results_io.read_metrics(metrics_paths[m]).shape[0]:
        elapsed[m] += took
        record(m, dict(row, wall_time_s=elapsed[m]))

  while step < config.num_steps and any(active):
    block = min(config.eval_every - step % config.eval_every, config.num_steps - step)
    start = time.time()
    losses = trainer.train(block)
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
      results_io.atomic_write_json(os.path.join(run_dirs[m], "DONE.json"), summaries[m])
  return summaries
