"""Gradient estimators for Bernoulli latent variables, registered by name.

Every estimator shares one signature and declares what the rest of the suite needs
to know about it (``estimators/base.py``)::

    estimator.fn(f, logits, noise, state=None, context=None) -> EstimatorOutput

Names: the fixed ones in ``ESTIMATORS``, and ``<family>_<size>`` for a family in
``FAMILIES`` (``reinforce_loo_4``, ``vimco_10``); a family member whose name is also a
fixed name is that estimator (``disarm_2`` is ``disarm``). ``canonical_name`` maps a
name to the one runs are filed under.

Adding an estimator: write ``estimators/my_estimator.py`` with the function and an
``ESTIMATOR = Estimator(...)``, and add it to ``ESTIMATORS`` below; or keep it in a
file of your own, anywhere, and pass that file (or its module path) to the driver with
``--estimator_modules``: ``import_estimator_modules`` imports it and registers its
``ESTIMATOR`` (or ``ESTIMATORS``, a list) unless the module calls ``register`` itself.
``estimators.check`` checks any estimator against exact gradients.
"""

import importlib
import importlib.util
import os
import re
import sys

import tensorflow as tf

from estimators import arm, arms, disarm, double_cv, local_disarm, reinforce_loo, relax, rodeo, vimco
from estimators.base import (
  Estimator,
  EstimatorOutput,
  Needs,
  Noise,
  Objective,
  Params,
  SeedNoise,
  SeedParams,
  Trainable,
  as_seed,
)

ESTIMATORS = {
  # Estimators of d E[f(b)] (PROTOCOL.md section 2).
  "reinforce_loo": reinforce_loo.ESTIMATOR,
  "arm": arm.ESTIMATOR,
  "disarm": disarm.ESTIMATOR,
  "relax": relax.ESTIMATOR,
  # Estimators the later papers compare against (PROTOCOL.md section 8), at K = 2, 3, 4.
  **{estimator.name: estimator for k in (2, 3, 4) for estimator in (arms.make(k), double_cv.make(k), rodeo.make(k))},
  "disarm_4": disarm.make(4),
  # Multi-sample bounds at the paper's equal-cost pairs: VIMCO with 2m samples
  # against local DisARM with m pairs, m in {1, 5, 10}.
  "vimco_2": vimco.make(2),
  "vimco_10": vimco.make(10),
  "vimco_20": vimco.make(20),
  "local_disarm_1": local_disarm.make(1),
  "local_disarm_5": local_disarm.make(5),
  "local_disarm_10": local_disarm.make(10),
  "local_disarm_sym_1": local_disarm.make_symmetrised(1),
  "local_disarm_sym_5": local_disarm.make_symmetrised(5),
  "local_disarm_sym_10": local_disarm.make_symmetrised(10),
}

# Families whose size is part of the name: "<family>_<size>" builds any size on demand.
FAMILIES = {
  "reinforce_loo": reinforce_loo.make,
  "disarm": disarm.make,
  "arms": arms.make,
  "double_cv": double_cv.make,
  "rodeo": rodeo.make,
  "vimco": vimco.make,
  "local_disarm": local_disarm.make,
  "local_disarm_sym": local_disarm.make_symmetrised,
}

_FAMILY_NAME = re.compile(r"(.+)_(\d+)")


def register(estimator: Estimator):
  """Adds an estimator to the registry at run time (e.g. from a module given to ``--estimator_modules``)."""
  if not isinstance(estimator, Estimator):
    raise TypeError(f"register takes an Estimator, got {type(estimator).__name__}")
  known = ESTIMATORS.get(estimator.name)
  if known is not None and known is not estimator:
    raise ValueError(f"an estimator named {estimator.name!r} is already registered")
  ESTIMATORS[estimator.name] = estimator
  return estimator


def _module_name_for_file(path):
  """The importable name of a ``.py`` file: dotted from a ``sys.path`` folder holding it, else its stem.

  A file under a folder already on ``sys.path`` (the repository root) keeps its package
  path (``tests/x.py`` -> ``tests.x``), so that a module registering estimators is never
  imported twice under two names. Any other file's folder is put on ``sys.path`` (and
  on ``PYTHONPATH``, for worker processes).
  """
  path = os.path.realpath(path)
  for entry in [os.getcwd()] + sys.path:
    root = os.path.realpath(entry or os.getcwd())
    if not os.path.isdir(root) or not path.startswith(root + os.sep):
      continue
    parts = os.path.relpath(path, root)[: -len(".py")].split(os.sep)
    if all(p.isidentifier() for p in parts):
      if root not in [os.path.realpath(e or os.getcwd()) for e in sys.path]:
        sys.path.insert(0, root)
      return ".".join(parts)
  folder, stem = os.path.split(path[: -len(".py")])
  if not stem.isidentifier():
    raise ValueError(f"cannot import {path}: {stem!r} is not a valid module name; rename the file (letters, _, digits)")
  if stem in sys.modules and os.path.realpath(getattr(sys.modules[stem], "__file__", "") or "") != path:
    raise ValueError(
      f"cannot import {path} as module {stem!r}: another module of that name is already imported "
      f"({getattr(sys.modules[stem], '__file__', 'built in')}); rename the file"
    )
  if folder not in sys.path:
    sys.path.insert(0, folder)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (folder, os.environ.get("PYTHONPATH")) if p)
  return stem


def import_estimator_modules(specs):
  """Imports modules that define estimators; returns ``(module names, names of the estimators they define)``.

  Each spec is a module path (``my_estimators.adaptive_loo``) or a ``.py`` file path.
  A module's ``ESTIMATOR`` (or ``ESTIMATORS``, a sequence) is registered unless the
  module registered it itself. Raises ValueError (a missing file, an import error, a
  module that defines no estimator), naming the module and the fix.
  """
  modules, names = [], []
  for spec in specs:
    spec = str(spec).strip()
    if not spec:
      continue
    if spec.endswith(".py") or os.sep in spec:
      if not os.path.isfile(spec):
        raise ValueError(f"--estimator_modules: no file {spec}; give a .py file path or an importable module path")
      module_name = _module_name_for_file(spec)
    else:
      module_name = spec
    before = set(ESTIMATORS)
    try:
      module = importlib.import_module(module_name)
    except ImportError as e:
      raise ValueError(
        f"--estimator_modules: cannot import {spec} ({type(e).__name__}: {e}); give a .py file path or a "
        "module path importable from the repository root, e.g. my_estimators.adaptive_loo"
      ) from None
    declared = getattr(module, "ESTIMATORS", None)
    declared = list(declared.values() if isinstance(declared, dict) else declared or [])
    if getattr(module, "ESTIMATOR", None) is not None:
      declared.append(module.ESTIMATOR)
    for estimator in declared:
      register(estimator)
    defined = [n for n in ESTIMATORS if n not in before] + [e.name for e in declared if e.name in before]
    if not defined and not declared:
      raise ValueError(
        f"--estimator_modules: {spec} defines no estimator; give it ESTIMATOR = Estimator(...) "
        "(estimators/base.py) or call estimators.register(...) in it"
      )
    modules.append(module_name)
    names += [n for n in dict.fromkeys(defined) if n not in names]
  return modules, names


def get_estimator(name) -> Estimator:
  """Looks an estimator up by name (an ``Estimator`` passes through); ValueError naming the valid ones."""
  if isinstance(name, Estimator):
    return name
  if name in ESTIMATORS:
    return ESTIMATORS[name]
  match = _FAMILY_NAME.fullmatch(str(name))
  if match and match.group(1) in FAMILIES:
    try:
      built = FAMILIES[match.group(1)](int(match.group(2)))
    except ValueError as e:
      raise ValueError(f"estimator {name!r}: {e}") from None
    return ESTIMATORS.get(built.name, built)
  raise ValueError(
    f"unknown estimator {name!r}; valid names: {', '.join(ESTIMATORS)}, "
    f"or <family>_<size> for a family in {', '.join(FAMILIES)}"
  )


def canonical_name(name) -> str:
  """The name runs of this estimator are filed under (``disarm_2`` -> ``disarm``)."""
  return get_estimator(name).name


def is_valid_estimator(name) -> bool:
  try:
    get_estimator(name)
  except ValueError:
    return False
  return True


class _CheckedObjective(Objective):
  """A user's ``f``, checked once per call for what it must return."""

  def __call__(self, bits, relaxed=None, temperature=None):
    points = bits if relaxed is None else tf.concat([bits, relaxed], axis=0)
    if relaxed is None:
      values = self.fn(points)
    else:  # relaxation-based estimators differentiate f through the relaxed points
      with tf.GradientTape() as tape:
        tape.watch(points)
        values = self.fn(points)
    if not isinstance(values, (tf.Tensor, tf.Variable)) or not values.dtype.is_floating:
      raise ValueError(
        f"f must return a floating-point TensorFlow tensor, got {type(values).__name__}"
        f"{'' if not hasattr(values, 'dtype') else ' of dtype ' + str(values.dtype)}: "
        "f maps bits [S, *batch, D] to values [S, *batch] with TensorFlow ops"
      )
    want = points.shape[:-1]
    if values.shape.rank is not None and want.rank is not None and not values.shape.is_compatible_with(want):
      raise ValueError(
        f"f returned shape {values.shape} for bits of shape {points.shape}; f must reduce the "
        f"last axis (the D bits) only and return shape {want}: one value per sample and example"
      )
    if relaxed is not None and tape.gradient(values, points) is None:
      raise ValueError(
        "this estimator evaluates f at relaxed points in (0, 1)^D and differentiates through "
        "them, and f has no gradient there: f must be a differentiable TensorFlow function of b "
        "(a smooth continuous extension of f from {0,1}^D, such as its multilinear extension); "
        "not NumPy code, tf.round, tf.cast or a lookup"
      )
    return values


def estimate_gradient(estimator, f, logits, seed, num_draws=None, state=None, context=None):
  """Estimates ``d E_{b ~ Bernoulli(sigmoid(logits))}[f(b)] / d logits``.

  Args:
    estimator: a registered name (see ``ESTIMATORS``) or an ``Estimator``.
    f: callable mapping bits ``[S, *batch, D]`` to values ``[S, *batch]`` with
      TensorFlow ops (it must broadcast over leading dimensions); estimators that
      need its gradient or its values at relaxed points (``Estimator.needs``) need
      a smooth continuous extension of it. Its output is checked.
    logits: ``[*batch, D]`` logits (at least one axis: the bits).
    seed: an int or a ``[2]`` int seed (int32); the estimate is a deterministic function of it.
    num_draws: ``None`` for one estimate of shape ``logits.shape``; an int ``N``
      for ``N`` independent estimates stacked as ``[N, *logits.shape]`` (computed
      in one vectorised call), e.g. to measure the estimator's variance.
    state: the estimator's trainable state, if it has one (RELAX); built with
      ``get_estimator(name).make_state(num_latents, context_dim)`` when omitted.
    context: optional side information ``[*batch, C]`` for the estimator's state.

  Returns:
    A tensor of shape ``logits.shape`` or ``[num_draws, *logits.shape]``.
  """
  est = get_estimator(estimator)
  logits = tf.convert_to_tensor(logits, tf.float32)
  if logits.shape.rank is None or logits.shape.rank == 0:
    raise ValueError(f"logits must have at least one axis (the bits, last), got shape {logits.shape}")
  noise = SeedNoise(seed)
  if num_draws is not None and (isinstance(num_draws, bool) or not isinstance(num_draws, int) or num_draws < 1):
    raise ValueError(f"num_draws must be a positive int (or None for one estimate), got {num_draws!r}")
  if state is None and est.has_state:
    context_dim = 0 if context is None else int(context.shape[-1])
    state = est.make_state(int(logits.shape[-1]), context_dim)
  objective = f if isinstance(f, Objective) else _CheckedObjective(f)
  shape = logits.shape.as_list()
  if num_draws is not None:
    # Draws become a leading batch dimension; f then sees [S, num_draws, *batch, D].
    logits = tf.broadcast_to(logits, [num_draws] + shape)
    if context is not None:
      context = tf.broadcast_to(context, [num_draws] + list(context.shape))
  elif len(shape) == 1:
    # Estimators (and the parameters of their states) expect at least one batch axis.
    logits = logits[tf.newaxis]
    context = None if context is None else context[tf.newaxis]
    return est.fn(objective, logits, noise, state=state, context=context).grad[0]
  return est.fn(objective, logits, noise, state=state, context=context).grad


__all__ = [
  "ESTIMATORS",
  "FAMILIES",
  "Estimator",
  "EstimatorOutput",
  "Needs",
  "Noise",
  "Objective",
  "Params",
  "SeedNoise",
  "SeedParams",
  "Trainable",
  "as_seed",
  "canonical_name",
  "estimate_gradient",
  "get_estimator",
  "import_estimator_modules",
  "is_valid_estimator",
  "register",
]
