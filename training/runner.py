"""One training run: resume, train in blocks, evaluate, log, checkpoint, finish.

The order of writes makes a kill at any moment harmless: an evaluation row is
appended (fsynced) before the checkpoint of that step is saved, and on resume
rows beyond the restored checkpoint are dropped and recomputed, so each
evaluation step appears exactly once. ``DONE.json`` is written last.
"""

import errno
import fcntl
import json
import math
import os
import socket
import time

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
    differing = sorted(k for k in wanted if stored.get(k) != wanted[k])
    if differing:
      details = ", ".join(f"{k}: stored {stored.get(k)!r} vs requested {wanted[k]!r}" for k in differing)
      raise ConfigMismatchError(
          f"{run_dir} already holds run {config.run_id} with a different configuration ({details}). "
          "Use a new --sweep_name, or delete that run folder to start it over.")
  else:
    results_io.atomic_write_json(path, wanted)


def train_run(config: RunConfig, run_dir, data_dir=None, tensorboard=False, progress=None,
              train_jit=False, eval_jit=True, log=None):
  """Trains (or resumes, or skips) one run; returns its summary row.

  The caller holds the run's ``RunLock`` (or knows no other process can touch the run).

  Args:
    progress: optional callable ``progress(config, step, steps_per_sec)`` called
      after every evaluation.
    log: optional callable taking one line of text (where the run starts from).
  """
  config.validate()
  os.makedirs(run_dir, exist_ok=True)
  check_config(run_dir, config)
  status, reason = results_io.run_status(run_dir)
  metrics_path = os.path.join(run_dir, "metrics.csv")
  if status in ("done", "failed"):
    return results_io.summarize(config.to_dict(), results_io.read_metrics(metrics_path), status, reason)

  results_io.remove_temp_files(run_dir)  # only the lock holder writes here: leftovers are a dead writer's
  splits = load_dataset(config.dataset, data_dir)
  trainer = Trainer(config, splits, train_jit=train_jit, eval_jit=eval_jit)
  manager = tf.train.CheckpointManager(trainer.checkpoint(), os.path.join(run_dir, "checkpoint"),
                                       max_to_keep=1)
  if manager.latest_checkpoint:
    manager.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
  step = int(trainer.step.numpy())
  metrics = results_io.read_metrics(metrics_path)
  metrics = metrics[metrics["step"] <= step].drop_duplicates("step", keep="last").reset_index(drop=True)
  results_io.write_metrics(metrics_path, metrics)  # drops rows written after the last checkpoint
  if log is not None:
    if manager.latest_checkpoint:
      log(f"{config.run_id}: resuming from its checkpoint at step {step}")
    else:
      log(f"{config.run_id}: starting at step 0")
  elapsed = float(metrics["wall_time_s"].iloc[-1]) if len(metrics) else 0.0
  writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard")) if tensorboard else None

  def evaluate(steps_per_sec, with_bounds):
    row = dict(step=int(trainer.step.numpy()), steps_per_sec=steps_per_sec,
               train_elbo=trainer.train_elbo(), grad_variance=trainer.gradient_variance(),
               valid_bound_100=math.nan, test_bound_100=math.nan)
    if with_bounds:
      row.update(trainer.bound_columns())
    row.update(trainer.extra_metrics())
    return row

  def record(row):
    results_io.append_metrics_row(metrics_path, row)
    if writer is not None:
      with writer.as_default(step=row["step"]):
        for key, value in row.items():
          if key != "step" and isinstance(value, float) and not math.isnan(value):
            tf.summary.scalar(key, value)
      writer.flush()
    if progress is not None:
      progress(config, row["step"], row["steps_per_sec"])

  def fail(why):
    results_io.atomic_write_json(os.path.join(run_dir, "FAILED.json"), {"reason": why, "step": step})
    return results_io.summarize(config.to_dict(), results_io.read_metrics(metrics_path), "failed", why)

  # Trace the training block now so that the first block's steps/s measures training, not tracing.
  trainer._train_block.get_concrete_function(tf.TensorSpec([], tf.int64))

  if step == 0 and len(metrics) == 0:
    start = time.time()
    row = evaluate(math.nan, with_bounds=False)  # bounds: positive multiples of bound_every, and the end
    elapsed += time.time() - start
    row["wall_time_s"] = elapsed
    record(row)

  while step < config.num_steps:
    block = min(config.eval_every - step % config.eval_every, config.num_steps - step)
    start = time.time()
    loss = trainer.train(block)
    train_time = time.time() - start
    step = int(trainer.step.numpy())
    if not math.isfinite(loss):
      return fail(f"non-finite training loss {loss} in the steps before {step}")
    row = evaluate(block / train_time, with_bounds=step % config.bound_every == 0 or step == config.num_steps)
    elapsed += time.time() - start
    row["wall_time_s"] = elapsed
    if not all(math.isfinite(row[k]) for k in ("train_elbo", "grad_variance")):
      return fail(f"non-finite train ELBO or gradient variance at step {step}")
    record(row)
    manager.save(checkpoint_number=step)

  metrics = results_io.read_metrics(metrics_path)
  summary = results_io.summarize(config.to_dict(), metrics, "done")
  results_io.atomic_write_json(os.path.join(run_dir, "DONE.json"), summary)
  return summary
