"""Gradient estimators for Bernoulli latent variables, registered by name.

Every estimator shares one signature (see ``estimators/base.py``)::

    estimator.fn(f, logits, seed, state=None, context=None) -> EstimatorOutput

Adding an estimator: write ``estimators/my_estimator.py`` defining the function
and an ``ESTIMATOR = Estimator(...)`` object, then add one line to ``ESTIMATORS``
below.

Multi-sample estimators (VIMCO, local DisARM) estimate the gradient of the
``K``-sample bound ``E[log mean_k exp f(b_k)]`` instead; ``Estimator.objective_samples``
says which, and their output's ``objective`` carries the bound for the direct term.
"""

import re

import tensorflow as tf

from estimators import arm, disarm, local_disarm, reinforce_loo, relax, vimco
from estimators.base import Estimator, EstimatorOutput, as_seed

ESTIMATORS = {
    # Single-sample estimators of d E[f(b)] (PROTOCOL.md section 2).
    "reinforce_loo": reinforce_loo.ESTIMATOR,
    "arm": arm.ESTIMATOR,
    "disarm": disarm.ESTIMATOR,
    "relax": relax.ESTIMATOR,
    # Multi-sample bounds, at the paper's equal-cost pairs: VIMCO with 2m samples
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

# Families whose size is part of the name: "<family>_<int>" builds any size on demand
# (e.g. "vimco_6", "local_disarm_3", "reinforce_loo_4").
FAMILIES = {
    "reinforce_loo": reinforce_loo.make,
    "vimco": vimco.make,
    "local_disarm": local_disarm.make,
    "local_disarm_sym": local_disarm.make_symmetrised,
}


def get_estimator(name) -> Estimator:
  """Looks an estimator up by name (an ``Estimator`` passes through)."""
  if isinstance(name, Estimator):
    return name
  if name in ESTIMATORS:
    return ESTIMATORS[name]
  match = re.fullmatch(r"(.+)_(\d+)", str(name))
  if match and match.group(1) in FAMILIES:
    return FAMILIES[match.group(1)](int(match.group(2)))
  raise ValueError(f"unknown estimator {name!r}; valid names: {', '.join(ESTIMATORS)}, "
                   f"or <family>_<size> for a family in {', '.join(FAMILIES)}")


def is_valid_estimator(name) -> bool:
  try:
    get_estimator(name)
  except ValueError:
    return False
  return True


def estimate_gradient(estimator, f, logits, seed, num_draws=None, state=None, context=None):
  """Estimates ``d E_{b ~ Bernoulli(sigmoid(logits))}[f(b)] / d logits``.

  Args:
    estimator: a registered name (see ``ESTIMATORS``) or an ``Estimator``.
    f: callable mapping bits ``[S, *batch, D]`` to values ``[S, *batch]``; it
      must broadcast over leading dimensions.
    logits: ``[*batch, D]`` logits.
    seed: int or ``[2]`` int seed; the estimate is a deterministic function of it.
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
  seed = as_seed(seed)
  if state is None and est.has_state:
    context_dim = 0 if context is None else int(context.shape[-1])
    state = est.make_state(int(logits.shape[-1]), context_dim)
  if num_draws is None:
    return est.fn(f, logits, seed, state=state, context=context).grad
  if num_draws < 1:
    raise ValueError(f"num_draws must be a positive int, got {num_draws}")
  # Draws become a leading batch dimension; f then sees [S, num_draws, *batch, D].
  tiled = tf.broadcast_to(logits, [num_draws] + logits.shape.as_list())
  if context is not None:
    context = tf.broadcast_to(context, [num_draws] + list(context.shape))
  return est.fn(f, tiled, seed, state=state, context=context).grad


__all__ = ["ESTIMATORS", "FAMILIES", "Estimator", "EstimatorOutput", "estimate_gradient", "get_estimator",
           "is_valid_estimator"]
