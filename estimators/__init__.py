"""Gradient estimators for Bernoulli latent variables, registered by name.

Every estimator shares one signature (see ``estimators/base.py``)::

    estimator.fn(f, logits, seed, state=None, context=None) -> EstimatorOutput

Adding an estimator: write ``estimators/my_estimator.py`` defining the function
and an ``ESTIMATOR = Estimator(...)`` object, then add one line to ``ESTIMATORS``
below.
"""

import tensorflow as tf

from estimators import arm, disarm, reinforce_loo, relax
from estimators.base import Estimator, EstimatorOutput, as_seed

ESTIMATORS = {
    "reinforce_loo": reinforce_loo.ESTIMATOR,
    "arm": arm.ESTIMATOR,
    "disarm": disarm.ESTIMATOR,
    "relax": relax.ESTIMATOR,
}


def get_estimator(name) -> Estimator:
  """Looks an estimator up by name (an ``Estimator`` passes through)."""
  if isinstance(name, Estimator):
    return name
  try:
    return ESTIMATORS[name]
  except KeyError:
    raise ValueError(f"unknown estimator {name!r}; valid names: {', '.join(sorted(ESTIMATORS))}") from None


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


__all__ = ["ESTIMATORS", "Estimator", "EstimatorOutput", "estimate_gradient", "get_estimator"]
