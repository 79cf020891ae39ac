"""Where the runs of a sweep execute: in this process, in N local worker processes, or on Ray.

Every executor runs the same unit of work, ``execute(task, report)``: take the
locks of the task's runs (one run, or a stack of runs differing only in their
seed), train (or resume, or skip) them in one graph with
``training.runner.train_stack``, release the locks, and return one plain-dict
result per run. Whatever the executor, results
land in the run folders exactly the same way, and the driver (``training.sweep``)
sees the same stream of events (``report``) and results.

* ``InProcessExecutor`` (``--executor=local --workers=1``): one run after another in
  the driver's own process.
* ``LocalExecutor`` (``--executor=local --workers=N``): N worker processes on this
  machine, each running one task at a time with ``threads`` TensorFlow threads. A
  worker that dies (killed, out of memory) is replaced and its task retried, up to
  ``max_retries`` times; workers die with the driver.
* ``RayExecutor`` (``--executor=ray``): one Ray task per task on a Ray cluster
  (``address``; default: a local instance), with per-task CPU/GPU resources and
  Ray's own retries of tasks whose worker or node died. Multi-machine model: the
  repository, the data and the results directory are on a filesystem shared by
  every node, at the same path; each task writes its run folder there directly,
  under the run's lock, and only small results and progress events travel back
  to the driver.

Errors that would hit every run the same way (a missing or corrupt data file, a
full or read-only disk, a run folder holding another configuration, a filesystem
without locks) are returned as ``error`` results of a ``fatal`` kind: the driver
stops the sweep with their message. Any other exception is returned with its
traceback and the sweep goes on with the other runs.
"""

import dataclasses
import errno
import os
import queue as queue_lib
import time
import traceback

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FATAL_KINDS = ("data", "io", "config", "lock")


@dataclasses.dataclass(frozen=True)
class Task:
  """Runs to bring to an end together, all picklable: one run, or a stack of runs
  that differ only in their seed (trained in one graph, ``training.runner.train_stack``)."""

  configs: tuple  # of training.config.RunConfig
  run_dirs: tuple  # absolute, one per config
  data_dir: str | None = None
  tensorboard: bool = False
  retry_failed: bool = False
  plugins: tuple = ()  # modules registering estimators (--estimator_modules), imported before training
  allow_download: bool = False
  restart_damaged: bool = False

  @property
  def run_ids(self):
    return [c.run_id for c in self.configs]

  @property
  def run_id(self):
    """A name for messages: the run, or the stack's first run and how many more."""
    more = len(self.configs) - 1
    return self.configs[0].run_id + (f" (+{more} stacked)" if more else "")

  def errors(self, message):
    """One crash result per run of the task."""
    return [
      dict(run_id=run_id, outcome="error", status="", reason="", error_kind="crash", message=message)
      for run_id in self.run_ids
    ]


# ------------------------------------------------------------------------- the unit of work
def describe_error(error, run_dir=""):
  """(kind, message) for an exception raised by a run; kind in FATAL_KINDS or 'crash'."""
  from datasets import DataError
  from training.runner import ConfigMismatchError, LockUnsupportedError

  if isinstance(error, DataError):
    return "data", str(error)
  if isinstance(error, ConfigMismatchError):
    return "config", str(error)
  if isinstance(error, LockUnsupportedError):
    return "lock", str(error)
  code = getattr(error, "errno", None)
  text = str(error)
  try:
    import tensorflow as tf

    if isinstance(error, tf.errors.OpError):
      for needle, value in (
        ("No space left", errno.ENOSPC),
        ("quota", errno.EDQUOT),
        ("Read-only file system", errno.EROFS),
        ("Permission denied", errno.EACCES),
      ):
        if needle in text:
          code = value
  except ImportError:  # pragma: no cover
    pass
  if isinstance(error, OSError) or code is not None:
    where = getattr(error, "filename", None) or run_dir or "the results folder"
    if code in (errno.ENOSPC, errno.EDQUOT):
      return "io", (
        f"no space left on the device while writing {where} ({os.strerror(code)}). "
        "Free some space (the checkpoint/ folders of finished runs can be deleted) or pass "
        "another --results_dir, then rerun the same command: finished runs are kept and "
        "interrupted ones resume from their last checkpoint."
      )
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
      return "io", (
        f"cannot write {where} ({os.strerror(code)}). Make the results folder writable "
        "or pass a writable --results_dir."
      )
    if isinstance(error, OSError):
      return "io", (
        f"cannot access {where} ({error.strerror or text}). Check the results folder and "
        "its disk, then rerun: finished runs are kept and interrupted ones resume."
      )
  return "crash", "".join(traceback.format_exception(error)).rstrip()


def allow_gpu_memory_growth():
  """Lets this process's GPUs grow their memory as needed, so that several workers share a device.

  Where the environment does not already say so (``TF_FORCE_GPU_ALLOW_GROWTH``, set by the
  driver): a Ray worker starts with the node's environment, not the driver's. Must run
  before TensorFlow first touches the GPU; a device already initialised keeps its setting.
  """
  import tensorflow as tf

  for gpu in tf.config.list_physical_devices("GPU"):
    try:
      tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # already initialised in this process
      pass


def execute(task, report=None):
  """Trains ``task``'s runs under their locks; returns one result dict per run (never raises an Exception).

  ``report(event)`` receives dicts: ``{"kind": "log", "text"}`` and
  ``{"kind": "progress", "run_id", "step", "num_steps", "steps_per_sec"}`` (``steps_per_sec``
  None: where a resumed run starts).
  Result keys: ``run_id``; ``outcome`` in ``trained`` (this call trained it),
  ``finished`` (it was already done or failed), ``locked`` (a live process holds
  it), ``error``; ``status``/``reason`` of the run; for errors ``error_kind``
  (one of FATAL_KINDS or ``crash``) and ``message``. Runs of a stack that are
  locked elsewhere or already finished are left out of the stack; the others
  are trained together.
  """
  from contracts import results as files
  from training import results_io
  from training.runner import RunLock, train_stack

  report = report or (lambda event: None)
  allow_gpu_memory_growth()
  import_plugins(task.plugins)
  results = {c.run_id: dict(run_id=c.run_id, outcome="error", status="", reason="") for c in task.configs}
  locks = []
  to_train = []
  current = task.run_dirs[0]
  try:
    for config, run_dir in zip(task.configs, task.run_dirs):
      current = run_dir
      os.makedirs(run_dir, exist_ok=True)
      lock = RunLock(run_dir)
      if not lock.acquire():
        holder = lock.holder()
        results[config.run_id].update(
          outcome="locked", reason=f"locked by a live process{' (' + holder + ')' if holder else ''}"
        )
        continue
      locks.append(lock)
      status, reason = results_io.run_status(run_dir)
      if status == "failed" and task.restart_damaged and results_io.marked_damaged(run_dir):
        status = "running"  # train_stack restarts it from step 0
      elif status == "failed" and task.retry_failed:
        os.unlink(os.path.join(run_dir, files.FAILED_JSON))
        report(dict(kind="log", text=f"{config.run_id}: retrying after a numerical failure ({reason})"))
        status = "running"
      if status in ("done", "failed"):
        results[config.run_id].update(outcome="finished", status=status, reason=reason)
        continue
      to_train.append((config, run_dir))

    def progress(cfg, step, steps_per_sec):
      report(
        dict(
          kind="progress",
          run_id=cfg.run_id,
          step=int(step),
          num_steps=cfg.num_steps,
          steps_per_sec=None if steps_per_sec is None else float(steps_per_sec),
        )
      )

    if to_train:
      current = to_train[0][1]
      summaries = train_stack(
        [c for c, _ in to_train],
        [d for _, d in to_train],
        data_dir=task.data_dir,
        tensorboard=task.tensorboard,
        progress=progress,
        log=lambda text: report(dict(kind="log", text=text)),
        allow_download=task.allow_download,
        restart_damaged=task.restart_damaged,
      )
      for (config, _), summary in zip(to_train, summaries):
        results[config.run_id].update(outcome="trained", status=summary["status"], reason=summary.get("reason") or "")
  except Exception as e:  # noqa: BLE001 - every failure becomes a result the driver can act on
    kind, message = describe_error(e, current)
    for config, _ in to_train or list(zip(task.configs, task.run_dirs)):
      if results[config.run_id]["outcome"] == "error":
        results[config.run_id].update(error_kind=kind, message=message)
  finally:
    for lock in locks:
      lock.release()
  return [results[run_id] for run_id in task.run_ids]


def import_plugins(modules):
  """Imports the modules that register estimators (``--estimator_modules``), here and in workers alike."""
  import importlib
  import sys

  if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
  for name in modules:
    importlib.import_module(name)


_threads_set = None


def configure_threads(threads):
  """TensorFlow intra- and inter-op threads of this process (0: TensorFlow's default)."""
  global _threads_set
  if not threads or _threads_set == threads:
    return
  import tensorflow as tf

  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  except RuntimeError:  # the runtime is already initialised in this process: keep its setting
    pass
  _threads_set = threads


def available_cores():
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # pragma: no cover - not Linux
    return os.cpu_count() or 1


# ---------------------------------------------------------------------------------- executors
class InProcessExecutor:
  """Runs the tasks one after another in this process (``--workers=1``)."""

  description = "in this process"

  def __init__(self, threads=0):
    self.threads = threads

  def run(self, tasks, on_event):
    configure_threads(self.threads)
    for task in tasks:
      yield from execute(task, on_event)

  def stop(self):
    pass


def _die_with_parent():
  """Linux: this process gets SIGKILL when the process that started it dies."""
  try:
    import ctypes
    import signal

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):  # pragma: no cover - elsewhere, orphans finish their run
    pass


def _worker_main(worker_id, threads, inbox, outbox, parent_pid):
  _die_with_parent()
  if os.getppid() != parent_pid:  # the driver died before prctl took effect
    return
  configure_threads(threads)
  while True:
    item = inbox.get()
    if item is None:
      return
    task_id, task = item
    result = execute(task, lambda event: outbox.put(("event", worker_id, event)))
    outbox.put(("result", worker_id, task_id, result))


class LocalExecutor:
  """N worker processes on this machine, one run each at a time (``--workers=N``)."""

  def __init__(self, workers, threads=0, max_retries=2):
    if workers < 1:
      raise ValueError(f"workers must be a positive integer, got {workers}")
    self.workers = workers
    self.threads = threads or max(1, available_cores() // workers)
    self.max_retries = max_retries
    self.description = f"{workers} local worker processes, {self.threads} TensorFlow thread(s) each"
    self._processes = {}

  def _start_worker(self, worker_id):
    process = self._ctx.Process(
      target=_worker_main,
      name=f"disarm-worker-{worker_id}",
      daemon=True,
      args=(worker_id, self.threads, self._inboxes[worker_id], self._outbox, os.getpid()),
    )
    process.start()
    self._processes[worker_id] = process

  def run(self, tasks, on_event):
    import multiprocessing

    self._ctx = multiprocessing.get_context("spawn")  # never fork a process that holds TensorFlow
    self._outbox = self._ctx.Queue()
    self._inboxes = {w: self._ctx.Queue() for w in range(self.workers)}
    by_id = dict(enumerate(tasks))
    todo = sorted(by_id, reverse=True)  # pop() from the end keeps the sweep's order
    attempts = {i: 0 for i in todo}
    busy = {}  # worker id -> task id
    for w in range(min(self.workers, len(todo))):
      self._start_worker(w)
    try:
      while todo or busy:
        for w in list(self._processes):
          if w not in busy and todo:
            task_id = todo.pop()
            attempts[task_id] += 1
            busy[w] = task_id
            self._inboxes[w].put((task_id, by_id[task_id]))
        for message in self._messages(timeout=0.5):
          if message[0] == "event":
            on_event(message[2])
          else:
            _, w, task_id, result = message
            busy.pop(w, None)
            yield from result
        for w, task_id in list(busy.items()):
          process = self._processes[w]
          if process.is_alive():
            continue
          # Its result may still be in the pipe: read everything before calling it lost.
          for message in self._messages(timeout=0.2):
            if message[0] == "event":
              on_event(message[2])
            else:
              busy.pop(message[1], None)
              yield from message[3]
          if busy.get(w) != task_id:
            continue
          del busy[w]
          task = by_id[task_id]
          if attempts[task_id] <= self.max_retries:
            on_event(
              dict(
                kind="log",
                text=f"{task.run_id}: worker process died (exit code "
                f"{process.exitcode}); retrying the run ({attempts[task_id]}/{self.max_retries})",
              )
            )
            todo.append(task_id)
          else:
            yield from task.errors(
              f"the worker process training {task.run_id} died (exit code "
              f"{process.exitcode}) {attempts[task_id]} times; rerun to resume it"
            )
          self._inboxes[w] = self._ctx.Queue()
          self._start_worker(w)
    finally:
      self.stop()

  def _messages(self, timeout):
    try:
      yield self._outbox.get(timeout=timeout)
    except queue_lib.Empty:
      return
    while True:
      try:
        yield self._outbox.get_nowait()
      except queue_lib.Empty:
        return

  def stop(self):
    for w, process in self._processes.items():
      if process.is_alive():
        try:
          self._inboxes[w].put_nowait(None)
        except Exception:  # noqa: BLE001
          pass
    deadline = time.time() + 2.0
    for process in self._processes.values():
      process.join(max(0.0, deadline - time.time()))
      if process.is_alive():
        process.kill()  # a running run resumes from its checkpoint next time
        process.join()
    self._processes = {}


class ExecutorError(RuntimeError):
  """An executor cannot start (Ray missing or unreachable)."""


RAY_MISSING = (
  "--executor=ray needs Ray, which is not installed here. Install it with "
  "`python3 -m pip install ray==2.60.0` (the version tested with this suite), "
  "or use --executor=local."
)


class RayExecutor:
  """One Ray task per run on a Ray cluster (shared results folder; see the module docstring)."""

  def __init__(self, address=None, cpus_per_task=1.0, gpus_per_task=0.0, max_retries=2, threads=0):
    if cpus_per_task <= 0 or gpus_per_task < 0 or max_retries < 0:
      raise ValueError("ray_cpus_per_task must be positive, ray_gpus_per_task and max_retries non-negative")
    self.address = address or None
    self.cpus_per_task, self.gpus_per_task = cpus_per_task, gpus_per_task
    self.max_retries = max_retries
    self.threads = threads or max(1, int(cpus_per_task))
    where = self.address or "a local Ray instance"
    self.description = (
      f"Ray tasks on {where} ({cpus_per_task:g} CPU, {gpus_per_task:g} GPU, "
      f"{self.threads} TensorFlow thread(s) per task)"
    )
    self._pending = {}

  def run(self, tasks, on_event):
    try:
      import ray
      from ray.util.queue import Queue
    except ImportError:
      raise ExecutorError(RAY_MISSING) from None
    env = {
      "PYTHONPATH": os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p),
      "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    options = dict(runtime_env={"env_vars": env}, log_to_driver=False)
    if self.address is None:  # a local instance, started here and stopped at the end
      options.update(include_dashboard=False)
    try:
      ray.init(address=self.address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
      raise ExecutorError(
        f"cannot start or reach the Ray cluster {self.address or '(local)'}: {e}. "
        "Check --ray_address (`ray status` on a cluster node shows it)."
      ) from e
    try:
      events = Queue()
      remote = ray.remote(_ray_execute).options(
        num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=self.max_retries, retry_exceptions=False
      )
      self._pending = {remote.remote(task, self.threads, events): task for task in tasks}
      while self._pending:
        ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=0.5)
        for event in self._drain(events):
          on_event(event)
        for ref in ready:
          task = self._pending.pop(ref)
          try:
            result = ray.get(ref)
          except Exception as e:  # noqa: BLE001 - the worker or node died max_retries + 1 times
            result = task.errors(
              f"Ray task for {task.run_id} failed after {self.max_retries} retries: {type(e).__name__}: {str(e)[:2000]}"
            )
          for event in self._drain(events):
            on_event(event)
          yield from result
    finally:
      self.stop()
      ray.shutdown()

  @staticmethod
  def _drain(events):
    size = events.qsize()
    return events.get_nowait_batch(size) if size else []

  def stop(self):
    if self._pending:
      import ray

      for ref in self._pending:
        ray.cancel(ref, force=True)  # killed runs resume from their checkpoints on a rerun
      self._pending = {}


def _ray_execute(task, threads, events):
  configure_threads(threads)
  return execute(task, lambda event: events.put(event))


def make_executor(
  kind="local", workers=1, threads=0, ray_address=None, ray_cpus_per_task=1.0, ray_gpus_per_task=0.0, max_retries=2
):
  if kind == "local":
    if workers == 1:
      return InProcessExecutor(threads)
    return LocalExecutor(workers, threads, max_retries=max_retries)
  if kind == "ray":
    return RayExecutor(ray_address, ray_cpus_per_task, ray_gpus_per_task, max_retries, threads)
  raise ValueError(f"unknown executor {kind!r}; valid executors: local, ray")
