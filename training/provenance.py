"""What made a run: the code, the packages, the hardware and the data, for each trained segment.

A run may be trained in several segments (a sweep stopped and resumed, perhaps on
another machine or after a code change). Each segment appends one record to its run's
``config.json`` (``contracts.results.PROVENANCE_KEY``) before it trains, and ``DONE.json``
repeats the list, so that a reader can trust or discount the run: a run resumed across
commits, or a cell whose runs read different data, shows in the report.
"""

import functools
import os
import platform
import subprocess
import sys
import time

from datasets import source_record

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_description():
  """'<model name> (<cores> cores; AVX2, AVX-512 ...)' from /proc/cpuinfo where there is one."""
  model, flags_seen = platform.processor() or platform.machine(), set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
          model = value.strip()
        elif key.strip() == "flags":
          flags_seen = set(value.split())
  except OSError:
    pass
  extensions = [
    name
    for name, flag in (("AVX2", "avx2"), ("FMA", "fma"), ("AVX-512F", "avx512f"), ("AVX-512 BF16", "avx512_bf16"))
    if flag in flags_seen
  ]
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return f"{model} ({cores} cores; {', '.join(extensions) or 'no AVX2'})"


def _git(*args):
  try:
    out = subprocess.run(
      ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20, check=True, stdin=subprocess.DEVNULL
    )
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout


def code_state():
  """``{"commit": sha or None, "dirty": bool or None}`` of the repository this code runs from.

  ``dirty`` counts tracked files that differ from the commit (untracked files, such as
  results being written, do not change what the code does).
  """
  commit = _git("rev-parse", "HEAD")
  status = _git("status", "--porcelain", "--untracked-files=no")
  return dict(commit=commit.strip() if commit else None, dirty=None if status is None else bool(status.strip()))


@functools.cache
def _environment():
  from importlib import metadata

  import numpy as np
  import tensorflow as tf

  gpus = []
  for device in tf.config.list_physical_devices("GPU"):
    try:
      gpus.append(tf.config.experimental.get_device_details(device).get("device_name", device.name))
    except Exception:  # noqa: BLE001 - a name is enough
      gpus.append(device.name)
  return dict(
    python=sys.version.split()[0],
    tensorflow=tf.__version__,
    # The installed distribution's version, as tfp.__version__ says, without importing TFP (seconds).
    tensorflow_probability=metadata.version("tensorflow-probability"),
    numpy=np.__version__,
    cpu=cpu_description(),
    gpus=gpus,
  )


def segment(splits, start_step):
  """The record of one trained segment of a run starting at ``start_step`` on ``splits``."""
  record = dict(start_step=int(start_step), started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
  record.update(code_state())
  record.update(_environment())
  record.update(source_record(splits))
  return record
