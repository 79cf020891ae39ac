"""The driver's check of a new estimator (``--preset=check``, experiments/check.py), through the real command.

A biased plugin must stop at the unbiasedness check with the documented exit code and a
console line naming the objective, D, logits and state; a broken one must stop before it
with what to fix; the suite's own DisARM and RODEO, loaded from plugin files, must pass
every stage (on the smoke budget: every stage runs, the unbiasedness check in full).
"""

import os
import subprocess
import sys

import pytest

from experiments import check

# The real check command in real processes: the fast tier leaves them out.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_check(tmp_path, plugin, name, *extra):
  cmd = [
    sys.executable,
    "run_benchmarks.py",
    "--preset=check",
    f"--estimator_modules={plugin}",
    f"--estimators={name}",
    f"--results_dir={tmp_path}",
    *extra,
  ]
  done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
  report = tmp_path / f"check_{name}" / "report.md"
  return done, (report.read_text() if report.exists() else "")


@pytest.mark.parametrize(
  "plugin, name", [("disarm_scaled", "disarm_scaled"), ("disarm_own_baseline", "disarm_own_baseline")]
)
def test_a_biased_plugin_fails_and_is_not_trained(tmp_path, plugin, name):
  done, report = run_check(tmp_path, f"tests/check_plugins/{plugin}.py", name)
  assert done.returncode == check.EXIT_BIASED, done.stderr[-3000:]
  assert "BIASED" in done.stderr and "D = " in done.stderr and "logits = [" in done.stderr and "state = " in done.stderr
  assert "1. Unbiasedness: FAIL" in report and "Not trained" in done.stderr
  assert not (tmp_path / f"check_{name}" / "training").exists()


def test_a_plugin_that_cannot_run_says_what_to_fix(tmp_path):
  done, report = run_check(tmp_path, "tests/check_plugins/wrong_shape.py", "batch_mean_loo")
  assert done.returncode == check.EXIT_CANNOT_RUN, done.stderr[-3000:]
  assert "logits' shape" in done.stderr and "do not average over the batch" in report


def test_bad_plugin_paths_and_names_are_refused(tmp_path):
  done, _ = run_check(tmp_path, "no/such/file.py", "x")
  assert done.returncode == 2 and "no file no/such/file.py" in done.stderr
  done, _ = run_check(tmp_path, "tests/check_plugins/disarm_copy.py", "not_registered")
  assert done.returncode == 2 and "unknown estimator 'not_registered'" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("plugin, name", [("disarm_copy", "disarm_copy"), ("rodeo_copy", "rodeo_copy")])
def test_the_suites_estimators_from_plugin_files_pass_every_stage(tmp_path, plugin, name):
  done, report = run_check(tmp_path, f"tests/check_plugins/{plugin}.py", name, "--check_size=smoke")
  assert done.returncode == check.EXIT_OK, done.stderr[-3000:]
  stages = ("1. Unbiasedness: pass", "2. Variance (toy problem): pass", "3. Variance basket (shared parameters)")
  for stage in stages + ("4. Training (MNIST): pass",):
    assert stage in report, report
  assert "equal f evaluations" in report and "equal wall-clock" in report
  assert (tmp_path / f"check_{name}" / "figures" / "toy_variance.png").exists()
