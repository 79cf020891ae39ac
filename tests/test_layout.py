"""The import graph: data flows datasets -> models -> estimators -> training -> CSV -> plots.

Datasets, models, estimators and plots import none of each other (nor training); every
layer may read the stdlib-only ``contracts``, and models and estimators share ``ops``.
The gradient engine and the trainer sit above them, the driver and experiments on top.
Checked from the source files (every import statement, also inside functions).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("contracts", "ops", "datasets", "models", "estimators", "training", "experiments", "plots")
# What each package may import of the project's own packages.
ALLOWED = {
  "contracts": set(),
  "ops": set(),
  "datasets": {"contracts"},
  "models": {"contracts", "ops"},
  "estimators": {"contracts", "ops"},
  "plots": {"contracts"},
  "training": {"contracts", "ops", "datasets", "models", "estimators"},
  "experiments": {"contracts", "estimators", "training", "plots"},
}


def project_imports(package):
  """{imported project package: [file:line, ...]} for every .py file of ``package``."""
  found = {}
  for path in sorted((ROOT / package).rglob("*.py")):
    for lineno, name in imported_modules(path):
      top = name.split(".")[0]
      if top in PACKAGES and top != package:
        found.setdefault(top, []).append(f"{path.relative_to(ROOT)}:{lineno}")
  return found


def imported_modules(path):
  """(line, absolute module name) for every import statement of a .py file."""
  for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
    if isinstance(node, ast.Import):
      yield from ((node.lineno, alias.name) for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      yield node.lineno, node.module


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package):
  forbidden = {name: where for name, where in project_imports(package).items() if name not in ALLOWED[package]}
  assert not forbidden, f"{package} imports {forbidden}"


def test_contracts_need_only_the_standard_library():
  import sys

  third_party = set()
  for path in (ROOT / "contracts").rglob("*.py"):
    tops = {name.split(".")[0] for _, name in imported_modules(path)}
    third_party |= {top for top in tops if top not in sys.stdlib_module_names}
  assert third_party <= {"contracts"}, third_party


def test_no_module_outside_estimators_tests_an_estimator_name():
  """training/, plots/, experiments/ and the driver compare no value with an estimator's name: they read
  what estimators declare (the presets list the papers' grids as data; that is not a test)."""
  names = ("relax", "disarm", "arm", "vimco", "local_disarm", "rodeo", "double_cv", "arms", "reinforce_loo")
  offenders = []
  paths = (
    sorted((ROOT / "training").rglob("*.py"))
    + sorted((ROOT / "plots").rglob("*.py"))
    + sorted((ROOT / "experiments").rglob("*.py"))
    + [ROOT / "run_benchmarks.py"]
  )
  for path in paths:
    for node in ast.walk(ast.parse(path.read_text())):
      if not isinstance(node, ast.Compare):
        continue
      for operand in [node.left, *node.comparators]:
        constants = [operand] if isinstance(operand, ast.Constant) else getattr(operand, "elts", [])
        for constant in constants:
          if isinstance(constant, ast.Constant) and constant.value in names:
            offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {constant.value!r}")
  assert not offenders, offenders
