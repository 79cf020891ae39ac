"""Shared fixtures: the tiny real sweeps the plots tests read (tests/sweeps.py); the fast tier's marks."""

import os

import pytest

# Quiet TensorFlow's C++ start-up logging in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _shared_temp(tmp_path_factory):
  """The pytest run's temp folder, the same for every worker of ``pytest -n`` (pytest-xdist gives
  each worker a subfolder of it), so that the workers build each tiny sweep once between them."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def main_sweep(tmp_path_factory):
  """Omniglot x nonlinear x {REINFORCE LOO, ARM, DisARM, RELAX} x 2 seeds, basket, K-bound, toy (read only)."""
  from tests import sweeps

  return sweeps.build_sweep("main", sweeps.sweeps_root(_shared_temp(tmp_path_factory)))


@pytest.fixture(scope="session")
def multisample_sweep(tmp_path_factory):
  """MNIST x linear x {VIMCO K=2, local DisARM m=1, VIMCO K=4, local DisARM m=2} x 2 seeds (read only)."""
  from tests import sweeps

  return sweeps.build_sweep("multisample", sweeps.sweeps_root(_shared_temp(tmp_path_factory)))


# Building these sweeps trains real runs in real processes (about a minute): every test that
# reads one belongs to the slow tier, whatever its own cost.
SWEEP_FIXTURES = {"main_sweep", "multisample_sweep"}


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if SWEEP_FIXTURES & set(getattr(item, "fixturenames", ())):
      item.add_marker(pytest.mark.slow)
