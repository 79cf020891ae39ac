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
  # Hierarchical models only: the two completions of a layer's pair share the
  # uniform noise of the layers above (training.layerwise).
  share_upper_noise: bool = False
  # Estimators whose encoder-gradient variance is measured at this run's parameters at
  # every evaluation (the run is trained by ``estimator`` alone): the fair variance
  # comparison, logged as basket_var_<name> columns.
  basket: tuple = ()
  basket_draws: int = 20          # independent gradient estimates per basket measurement

  @property
  def run_id(self) -> str:
    shared = "-shared" if self.share_upper_noise else ""
    return f"{self.dataset}-{self.model}-{self.estimator}{shared}-seed{self.seed}"

  def to_dict(self):
    d = dataclasses.asdict(self)
    d["basket"] = list(self.basket)
    d["run_id"] = self.run_id
    return d

  @classmethod
  def from_dict(cls, d):
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in d.items() if k in fields}
    if "basket" in values:
      values["basket"] = tuple(values["basket"])
    return cls(**values)

  @classmethod
  def defaults(cls):
    """Field defaults: what a config.json written before a field existed means by its absence."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}

  def to_json(self):
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  def validate(self):
    """Rejects impossible numbers before anything starts."""
    for name in ("num_steps", "batch_size", "eval_every", "bound_every", "num_bound_samples", "basket_draws"):
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
    from models import num_stochastic_layers
    if num_stochastic_layers(self.model) > 1:
      from estimators import get_estimator
      if get_estimator(self.estimator).multi_sample:
        raise ValueError(f"hierarchical model {self.model} trains with per-layer single-sample estimators "
                         f"(reinforce_loo, arm, disarm, relax); {self.estimator} is a multi-sample estimator")
      if self.basket:
        raise ValueError("the variance basket measures single-layer models; drop --basket for "
                         f"{self.model}")
    elif self.share_upper_noise:
      raise ValueError(f"share_upper_noise applies to hierarchical models only, not {self.model}")
    if self.basket:
      if self.basket_draws < 2:
        raise ValueError(f"basket_draws must be at least 2 (a variance needs two draws), got {self.basket_draws}")
      from estimators import get_estimator
      if get_estimator(self.estimator).multi_sample:
        raise ValueError(f"a variance basket compares single-sample estimators of the ELBO gradient; "
                         f"{self.estimator} trains a multi-sample bound. Drop --basket for it.")
      for name in self.basket:
        other = get_estimator(name)  # raises for unknown names, listing the valid ones
        if other.multi_sample or (other.has_state and name != self.estimator):
          raise ValueError(f"basket estimator {name!r} cannot be measured at another estimator's parameters: "
                           "the basket takes stateless single-sample estimators (reinforce_loo, arm, "
                           "disarm, reinforce_loo_<K>), plus the run's own estimator")
