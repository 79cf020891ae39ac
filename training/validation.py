"""Checks of run settings that need the registries: names, and which model trains with which estimator.

``contracts.settings`` checks values alone (positive numbers, known choices); this
module adds what only the dataset, model and estimator registries know, so that a
sweep refuses an impossible run before anything starts, with a message naming the
problem and the fix. Estimator names are parsed by the estimator registry itself
(``estimators.get_estimator``).
"""

import dataclasses

from contracts.settings import Grid, RunConfig
from datasets import DATASETS, SPLIT_SIZES
from estimators import canonical_name, get_estimator
from models import MODELS, num_stochastic_layers


def canonical_grid(grid: Grid) -> Grid:
  """The grid with every estimator under the name its runs are filed under (``disarm_2`` -> ``disarm``).

  Raises ValueError for an unknown or impossible name (the registry's message).
  """
  estimators = tuple(canonical_name(e) for e in grid.estimators)
  basket = tuple(canonical_name(e) for e in grid.settings.basket)
  return (
    grid.replace(estimators=estimators, basket=basket)
    if basket != grid.settings.basket
    else dataclasses.replace(grid, estimators=estimators)
  )


def validate_config(config: RunConfig):
  """Raises ValueError naming the first problem of one run's configuration."""
  config.validate()
  if config.dataset not in DATASETS:
    raise ValueError(f"unknown dataset {config.dataset!r}; valid datasets: {', '.join(DATASETS)}")
  if config.model not in MODELS:
    raise ValueError(f"unknown model {config.model!r}; valid models: {', '.join(MODELS)}")
  estimator = get_estimator(config.estimator)
  if estimator.name != config.estimator:
    raise ValueError(f"estimator {config.estimator!r} is filed as {estimator.name!r}; use that name")
  num_train = SPLIT_SIZES[config.dataset][0]
  if config.batch_size > num_train:
    raise ValueError(
      f"batch_size {config.batch_size} exceeds the {num_train} training images of "
      f"{config.dataset}; use a batch size of at most {num_train}"
    )
  layered = num_stochastic_layers(config.model) > 1
  if layered:
    if estimator.bound_estimator:
      raise ValueError(
        f"layered model {config.model} trains one single-sample estimate per layer; "
        f"{config.estimator} estimates a multi-sample bound"
      )
    if config.basket:
      raise ValueError(f"the variance basket measures single-layer models; drop --basket for {config.model}")
    if config.decoder_sample != "independent":
      raise ValueError(
        f"layered model {config.model} trains decoder and prior on its forward sample "
        f"(decoder_sample=independent); got decoder_sample={config.decoder_sample}"
      )
  elif config.share_upper_noise:
    raise ValueError(f"share_upper_noise applies to layered models only, not {config.model}")
  if config.basket:
    if estimator.bound_estimator:
      raise ValueError(
        f"a variance basket compares estimators of the ELBO gradient; {config.estimator} trains "
        "a multi-sample bound. Drop --basket for it."
      )
    for name in config.basket:
      if get_estimator(name).bound_estimator:
        raise ValueError(
          f"basket estimator {name!r} estimates a multi-sample bound: the basket compares estimators "
          "of the ELBO gradient. Drop it from --basket"
        )


def validate_grid(grid: Grid):
  """Raises ValueError naming the first problem of a sweep's grid (values, names, combinations)."""
  grid.validate()
  for kind, names, valid in (("dataset", grid.datasets, DATASETS), ("model", grid.models, MODELS)):
    unknown = [n for n in names if n not in valid]
    if unknown:
      raise ValueError(f"unknown {kind} {', '.join(map(repr, unknown))}; valid {kind}s: {', '.join(valid)}")
  for name in grid.estimators + tuple(grid.settings.basket):
    get_estimator(name)  # the registry's own message for an unknown or impossible name
  for config in grid.configs():
    validate_config(config)
