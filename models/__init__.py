"""Models: Bernoulli VAEs (PROTOCOL.md section 3) and hierarchical ones (issue 4).

Model names (``RunConfig.model``): ``linear`` and ``nonlinear`` (one stochastic
layer of 200 bits), and ``linear_<L>layer`` for L in 2..4 stochastic layers of
200 bits with linear conditionals. ``build_model(name, mean_train, seed)`` makes
any of them; ``seed`` may be a list of ints to stack members (models/members.py).
"""

from models.bernoulli_vae import NUM_LATENTS, BernoulliVAE, bernoulli_log_prob
from models.bernoulli_vae import MODELS as SINGLE_LAYER_MODELS
from models.hierarchical_vae import NUM_LAYERS, HierarchicalBernoulliVAE

HIERARCHICAL_MODELS = tuple(f"linear_{n}layer" for n in NUM_LAYERS)
MODELS = SINGLE_LAYER_MODELS + HIERARCHICAL_MODELS


def num_stochastic_layers(name):
  """1 for the single-layer models, L for ``linear_<L>layer``."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
  return 1 if name in SINGLE_LAYER_MODELS else int(name[len("linear_"):-len("layer")])


def build_model(name, mean_train, seed=0):
  """The model called ``name`` (see the module docstring), initialised from ``seed``."""
  layers = num_stochastic_layers(name)
  if layers == 1:
    return BernoulliVAE(name, mean_train, seed=seed)
  return HierarchicalBernoulliVAE(layers, mean_train, seed=seed)


__all__ = ["MODELS", "SINGLE_LAYER_MODELS", "HIERARCHICAL_MODELS", "NUM_LATENTS", "BernoulliVAE",
           "HierarchicalBernoulliVAE", "bernoulli_log_prob", "build_model", "num_stochastic_layers"]
