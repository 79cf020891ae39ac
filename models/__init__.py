"""Models: Bernoulli VAEs (PROTOCOL.md section 3)."""

from models.bernoulli_vae import MODELS, NUM_LATENTS, BernoulliVAE, bernoulli_log_prob

__all__ = ["MODELS", "NUM_LATENTS", "BernoulliVAE", "bernoulli_log_prob"]
