"""The configuration of one training run, and its identity."""

import dataclasses
import json


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Everything that determines a run's numbers (PROTOCOL.md sections 3 and 5 defaults)."""
  dataset: str
  model: str
  estimator: str
  seed: int
  num_steps: int
  batch_size: int = 50
  eval_every: int = 1000          # steps between evaluations (train ELBO, gradient variance)
  bound_every: int = 1000         # steps between the (costly) 100-sample bounds; the last evaluation always has them
  num_bound_samples: int = 100
  encoder_lr: float = 1e-4
  decoder_lr: float = 1e-4
  prior_lr: float = 1e-2
  grad_ema_decay: float = 0.999

  @property
  def run_id(self) -> str:
    return f"{self.dataset}-{self.model}-{self.estimator}-seed{self.seed}"

  def to_dict(self):
    d = dataclasses.asdict(self)
    d["run_id"] = self.run_id
    return d

  @classmethod
  def from_dict(cls, d):
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in fields})

  def to_json(self):
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  def validate(self):
    """Rejects impossible numbers before anything starts."""
    for name in ("num_steps", "batch_size", "eval_every", "bound_every", "num_bound_samples"):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if self.bound_every % self.eval_every:
      raise ValueError(f"bound_every ({self.bound_every}) must be a multiple of eval_every ({self.eval_every}): "
                       "the 100-sample bounds are computed at evaluations")
    if not 0.0 < self.grad_ema_decay < 1.0:
      raise ValueError(f"grad_ema_decay must lie in (0, 1), got {self.grad_ema_decay}")
    for name in ("encoder_lr", "decoder_lr", "prior_lr"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
