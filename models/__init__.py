"""Models: Bernoulli VAEs with one or more stochastic layers of binary latents (PROTOCOL.md section 3).

Model names: ``linear`` and ``nonlinear`` (one stochastic layer of 200 bits), and
``linear_<L>layer`` for L in 2..4 (L layers of 200 bits, linear conditionals). All are
``BernoulliVAE``; ``build_model(name, mean_train, seed, ...)`` makes any of them, with
``seed`` a list of seed pairs to stack members. Models draw no random numbers and know
nothing of gradient estimators.
"""

from models.bernoulli_vae import (
  ENCODER_INPUTS,
  INITIALIZATIONS,
  LATENT_INPUTS,
  LAYERED_MODELS,
  MODELS,
  NUM_LATENTS,
  SINGLE_LAYER_MODELS,
  BernoulliVAE,
  bernoulli_log_prob,
  build_model,
  num_stochastic_layers,
)

__all__ = [
  "ENCODER_INPUTS",
  "INITIALIZATIONS",
  "LATENT_INPUTS",
  "LAYERED_MODELS",
  "MODELS",
  "NUM_LATENTS",
  "SINGLE_LAYER_MODELS",
  "BernoulliVAE",
  "bernoulli_log_prob",
  "build_model",
  "num_stochastic_layers",
]
