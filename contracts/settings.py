"""Run settings, declared once: every choice that can move a run's numbers.

``Settings`` holds every setting of a run except its cell (dataset, model,
estimator) and its seed; its field defaults are the DisARM paper's protocol as the
reference code runs it (PROTOCOL.md sections 3 and 5; README.md, "Protocol choices",
tabulates where each reference differs). Everything else derives from it:

* ``RunConfig`` = a cell + a seed + ``Settings``: one run (``config.json``);
* ``Grid`` = lists of datasets, models, estimators and seeds + ``Settings`` (and
  optional per-dataset overrides): a sweep (``sweep.json``);
* the driver's flags (one per field, ``run_benchmarks.py``), the integrity checks
  (every field of ``config.json`` against ``sweep.json``) and the report's grid
  section (every field that differs from the default) read the fields' metadata.

Checks that need a registry (is this estimator name known, can this model train with
that estimator) live with the registries (``training/validation.py``); the checks
here need nothing but the values.
"""

import dataclasses
import itertools
import json
import math

from contracts import streams

CELL_FIELDS = ("dataset", "model", "estimator", "seed")


def setting(default, help, choices=None, minimum=None, positive=False, flag=True, kind=None):
  """A ``Settings`` field with its documentation and its value checks.

  Args:
    default: the DisARM reference's value.
    help: one line for ``--help`` and the documentation.
    choices: the allowed values of a string setting.
    minimum: the smallest allowed value of a number (inclusive).
    positive: a number must be > 0.
    flag: whether the driver offers it as a flag.
    kind: the value type where it cannot be read off ``default`` (``float`` for an
      optional number, ``tuple`` for a list of names).
  """
  metadata = dict(
    help=help,
    choices=tuple(choices) if choices else None,
    minimum=minimum,
    positive=positive,
    flag=flag,
    kind=kind or type(default),
  )
  return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Settings:
  """Every setting of a run but its cell and seed; defaults: the DisARM reference code."""

  # --- length and evaluation (PROTOCOL.md section 5) ---
  num_steps: int = setting(1_000_000, "Training steps per run.", positive=True)
  eval_every: int = setting(1000, "Steps between evaluations (train ELBO, gradient variance).", positive=True)
  bound_every: int = setting(
    1000,
    "Steps between the costly 100-sample bounds; a multiple of eval_every. The final evaluation always has them.",
    positive=True,
  )
  num_bound_samples: int = setting(100, "Samples K of the K-sample bounds valid_bound_n / test_bound_n.", positive=True)
  log_bound_k: bool = setting(
    False,
    "Also log valid_bound_k / test_bound_k, the bound with K = the estimator's "
    "number of f evaluations, at every evaluation (always on for estimators of a "
    "multi-sample bound).",
  )
  grad_ema_decay: float = setting(0.999, "Decay of the moving averages of g and g^2 behind grad_variance.")
  grad_variance_debias: bool = setting(
    False,
    "Divide the moving averages behind grad_variance by 1 - decay^t "
    "(as Adam does); the references do not, so their early values read low.",
  )
  eval_binarization: str = setting(
    "fixed",
    "Binarisation of the evaluation data: fixed = one draw per run, "
    "replayed at every evaluation (what the references' tf.data pipelines do); "
    "fresh = a new draw at every evaluation (PROTOCOL.md section 4).",
    choices=("fixed", "fresh"),
  )
  train_elbo_samples: str = setting(
    "single",
    "The train ELBO pass: single = one sample per image (DisARM "
    "reference); k_mean = the mean ELBO over K samples per image, K the "
    "estimator's samples (RODEO reference).",
    choices=("single", "k_mean"),
  )

  # --- optimisation (PROTOCOL.md section 3; section 9 for the RODEO protocol) ---
  batch_size: int = setting(50, "Training batch size.", positive=True)
  encoder_lr: float = setting(1e-4, "Adam learning rate of the encoder.", positive=True)
  decoder_lr: float = setting(1e-4, "Adam learning rate of the decoder.", positive=True)
  train_prior: bool = setting(True, "Train the prior's logits (plain SGD at prior_lr); false keeps them at 0.")
  prior_lr: float = setting(1e-2, "SGD learning rate of the prior's logits.", positive=True)
  data_order: str = setting(
    "buffer_across_epochs",
    "Order of the training images: buffer_across_epochs = the file order repeated, "
    "then shuffled through a 1024-image buffer (tf.data repeat().shuffle(1024), DisARM and ARMS references); "
    "buffer_per_epoch = each epoch shuffled through the buffer, epochs kept apart (shuffle(1024).repeat(), "
    "RODEO reference); permutation = a fresh uniform permutation every epoch.",
    choices=("buffer_across_epochs", "buffer_per_epoch", "permutation"),
  )
  adam_epsilon: float = setting(1e-7, "Adam's epsilon for encoder, decoder and estimator parameters.", positive=True)
  estimator_lr: float | None = setting(
    None,
    "Adam learning rate of an estimator's own parameters; empty: "
    "the estimator's declared default (RELAX: the encoder's).",
    positive=True,
    kind=float,
  )

  # --- what trains the decoder, what the networks see (README: 'Protocol choices') ---
  decoder_sample: str = setting(
    "independent",
    "Samples whose ELBO trains decoder and prior (single-sample estimators): independent = "
    "one fresh b ~ q(b|x) drawn apart from the estimator's noise (DisARM reference code; one more decoder "
    "pass); estimator = the mean over the estimator's own samples (for ARM/DisARM both b and its partner); "
    "k_independent = the mean over K independent samples, K the estimator's number of f evaluations, "
    "reusing those of its samples that are independent draws (RODEO reference code).",
    choices=("independent", "estimator", "k_independent"),
  )
  decoder_reduction: str = setting(
    "as_reference",
    "Batch reduction of the decoder's and prior's loss: mean, sum, or as_reference = what the "
    "estimator's reference code does (a sum for RELAX, VIMCO and local DisARM in the DisARM code, whose "
    "losses are per-example vectors; a mean otherwise). The prior's plain SGD step scales with it.",
    choices=("as_reference", "mean", "sum"),
  )
  control_variate_input: str = setting(
    "raw",
    "Side input of an estimator's own networks (RELAX's control "
    "variate) at the first layer: raw = the binarised x (references), "
    "encoder_input = what the encoder sees.",
    choices=("raw", "encoder_input"),
  )
  encoder_input: str = setting(
    "centered",
    "What the encoder sees: centered = x - mean(x_train) (DisARM reference), raw = the binarised x (RODEO reference).",
    choices=("centered", "raw"),
  )
  latent_input: str = setting(
    "signed",
    "How bits enter the decoder (and upper encoder layers): signed = 2b - 1 "
    "(DisARM reference), binary = b (RODEO reference).",
    choices=("signed", "binary"),
  )
  initialization: str = setting(
    "glorot_data_bias",
    "Weights: glorot_data_bias = Glorot-uniform, zero biases, and the decoder's output bias "
    "at logit(clip(mean(x_train), 0.001, 0.999)) (DisARM reference); glorot = Glorot-uniform and zero biases "
    "everywhere (Keras defaults, RODEO reference).",
    choices=("glorot_data_bias", "glorot"),
  )

  # --- execution that changes the random streams ---
  xla_training: bool = setting(
    False,
    "Compile each training block with XLA: on a GPU the step loop becomes a few "
    "fused kernels; on a CPU TensorFlow's own kernels are faster. Under XLA the stateless "
    "draws follow another (equally valid) stream, so it is a setting of the run.",
  )

  # --- layered models and the variance basket ---
  share_upper_noise: bool = setting(
    False, "Layered models: the two completions of a layer's pair share the uniform noise of the layers above."
  )
  basket: tuple = setting(
    (),
    "Variance basket: estimators whose encoder-gradient variance is measured at every "
    "evaluation at the run's own parameters (basket_var_<name> columns).",
    kind=tuple,
  )
  basket_draws: int = setting(20, "Independent estimates per basket measurement.", minimum=2)
  basket_state: str = setting(
    "frozen",
    "Own parameters of a stateful basket estimator other than the run's (RELAX, Double CV, RODEO): "
    "frozen = at their initial value; trained = trained alongside the run, at every step on its batch "
    "and current model parameters, by the estimator's own loss and Adam (the run itself is unchanged).",
    choices=("frozen", "trained"),
  )

  def validate(self):
    """Raises ValueError naming the first impossible value and what is allowed."""
    for f in dataclasses.fields(self):
      value, meta = getattr(self, f.name), f.metadata
      if meta["kind"] in (int, float) and value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
          raise ValueError(f"{f.name} must be a number, got {value!r}")
        if meta["kind"] is int and not isinstance(value, int):
          raise ValueError(f"{f.name} must be a whole number, got {value!r}")
        if not math.isfinite(value):
          raise ValueError(f"{f.name} must be finite, got {value!r}")
        if meta["positive"] and value <= 0:
          raise ValueError(f"{f.name} must be positive, got {value!r}")
        if meta["minimum"] is not None and value < meta["minimum"]:
          raise ValueError(f"{f.name} must be at least {meta['minimum']}, got {value!r}")
      if meta["kind"] is bool and not isinstance(value, bool):
        raise ValueError(f"{f.name} must be true or false, got {value!r}")
      if meta["choices"] and value not in meta["choices"]:
        raise ValueError(f"{f.name} must be one of {', '.join(meta['choices'])}; got {value!r}")
    if self.bound_every % self.eval_every:
      raise ValueError(
        f"bound_every ({self.bound_every}) must be a multiple of eval_every ({self.eval_every}): "
        "the 100-sample bounds are computed at evaluations"
      )
    if not 0.0 < self.grad_ema_decay < 1.0:
      raise ValueError(f"grad_ema_decay must lie in (0, 1), got {self.grad_ema_decay}")
    if len(set(self.basket)) != len(self.basket):
      raise ValueError(f"basket names an estimator twice: {', '.join(self.basket)}")

  def to_dict(self):
    return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

  @classmethod
  def from_dict(cls, values):
    """Settings from a dict (config.json, sweep.json); unknown keys are refused, missing ones take defaults."""
    names = setting_names()
    unknown = sorted(set(values) - set(names))
    if unknown:
      raise ValueError(f"unknown settings {', '.join(unknown)}; known: {', '.join(names)}")
    return cls(**{k: (tuple(v) if field_kind(k) is tuple else v) for k, v in values.items()})

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  def differences(self, other):
    """Names of the settings whose values differ from ``other``'s."""
    return [name for name in setting_names() if getattr(self, name) != getattr(other, name)]


def setting_fields():
  """The ``Settings`` fields, in declaration order."""
  return dataclasses.fields(Settings)


def setting_names():
  return tuple(f.name for f in setting_fields())


def field_kind(name):
  return {f.name: f.metadata["kind"] for f in setting_fields()}[name]


def _plain(value):
  return list(value) if isinstance(value, tuple) else value


def check_seed(seed):
  """Raises ValueError unless ``seed`` is an int the random streams distinguish."""
  if isinstance(seed, bool) or not isinstance(seed, int):
    raise ValueError(f"a seed must be a whole number, got {seed!r}")
  if not 0 <= seed <= streams.MAX_SEED:
    raise ValueError(
      f"seed {seed} is outside 0..{streams.MAX_SEED}: seeds are int32 (contracts/streams.py), "
      "so a larger one would repeat the streams of another seed"
    )


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One run: a cell (dataset x model x estimator), a seed and its ``Settings``.

  Setting names read through (``config.num_steps``); ``to_dict`` is what
  ``config.json`` holds (the fields flat, plus ``run_id``).
  """

  dataset: str
  model: str
  estimator: str
  seed: int
  settings: Settings = Settings()

  def __getattr__(self, name):
    # Called only for names that are not fields: the settings' fields read through.
    if name != "settings" and name in setting_names():
      return getattr(self.settings, name)
    raise AttributeError(name)

  @property
  def run_id(self) -> str:
    from contracts import results

    return results.run_id(self.dataset, self.model, self.estimator, self.seed, self.share_upper_noise)

  def with_settings(self, **changes):
    return dataclasses.replace(self, settings=self.settings.replace(**changes))

  def to_dict(self):
    d = {k: getattr(self, k) for k in CELL_FIELDS}
    d.update(self.settings.to_dict())
    d["run_id"] = self.run_id
    return d

  @classmethod
  def from_dict(cls, d):
    """Reads ``to_dict``'s output (extra keys such as ``run_id`` or ``estimator_info`` are ignored)."""
    missing = [k for k in CELL_FIELDS if k not in d]
    if missing:
      raise ValueError(f"a run configuration needs {', '.join(missing)}")
    names = set(setting_names())
    return cls(
      **{k: d[k] for k in CELL_FIELDS}, settings=Settings.from_dict({k: v for k, v in d.items() if k in names})
    )

  def to_json(self):
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  def validate(self):
    """The value checks of ``Settings`` and of the seed (registry checks: ``training.validation``)."""
    check_seed(self.seed)
    self.settings.validate()


@dataclasses.dataclass(frozen=True)
class Grid:
  """A sweep: datasets x models x estimators x seeds, every run with ``settings``.

  ``dataset_settings`` overrides settings per dataset, as ``((dataset, ((name,
  value), ...)), ...)`` (the RODEO protocol's learning rate on Fashion-MNIST).
  """

  datasets: tuple
  models: tuple
  estimators: tuple
  seeds: tuple
  settings: Settings = Settings()
  dataset_settings: tuple = ()

  def __getattr__(self, name):
    if name != "settings" and name in setting_names():
      return getattr(self.settings, name)
    raise AttributeError(name)

  def settings_for(self, dataset):
    overrides = dict(dict(self.dataset_settings).get(dataset, ()))
    return self.settings.replace(**overrides) if overrides else self.settings

  def configs(self):
    """Every run, seed-major (each cell's seed 0, then each cell's seed 1, ...)."""
    for seed, dataset, model, estimator in itertools.product(self.seeds, self.datasets, self.models, self.estimators):
      yield RunConfig(dataset, model, estimator, seed, self.settings_for(dataset))

  def replace(self, **changes):
    """A copy with grid fields and/or settings changed (setting names go to ``settings``)."""
    names = set(setting_names())
    setting_changes = {k: v for k, v in changes.items() if k in names}
    grid_changes = {k: v for k, v in changes.items() if k not in names}
    grid = dataclasses.replace(self, **grid_changes)
    if setting_changes:
      grid = dataclasses.replace(grid, settings=grid.settings.replace(**setting_changes))
      # An explicit setting applies to every dataset: drop per-dataset overrides of it.
      grid = dataclasses.replace(
        grid,
        dataset_settings=tuple(
          (d, tuple((k, v) for k, v in pairs if k not in setting_changes)) for d, pairs in grid.dataset_settings
        ),
      )
    return grid

  def validate(self):
    """Value checks only: non-empty lists, distinct seeds, every run's settings."""
    for kind in ("datasets", "models", "estimators", "seeds"):
      values = getattr(self, kind)
      if not values:
        raise ValueError(f"the grid has no {kind}")
      if len(set(values)) != len(values):
        raise ValueError(f"{kind} repeat: {', '.join(map(str, values))}")
    for seed in self.seeds:
      check_seed(seed)
    names = set(setting_names())
    for dataset, pairs in self.dataset_settings:
      unknown = sorted(k for k, _ in pairs if k not in names)
      if unknown:
        raise ValueError(f"per-dataset settings for {dataset} name unknown settings {', '.join(unknown)}")
    for dataset in self.datasets:
      self.settings_for(dataset).validate()

  def to_dict(self):
    """What ``sweep.json`` holds."""
    return dict(
      datasets=list(self.datasets),
      models=list(self.models),
      estimators=list(self.estimators),
      seeds=list(self.seeds),
      settings=self.settings.to_dict(),
      dataset_settings={d: {k: _plain(v) for k, v in pairs} for d, pairs in self.dataset_settings},
    )

  @classmethod
  def from_dict(cls, d):
    try:
      return cls(
        datasets=tuple(d["datasets"]),
        models=tuple(d["models"]),
        estimators=tuple(d["estimators"]),
        seeds=tuple(d["seeds"]),
        settings=Settings.from_dict(d.get("settings", {})),
        dataset_settings=tuple(
          (ds, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in pairs.items()))
          for ds, pairs in d.get("dataset_settings", {}).items()
        ),
      )
    except (KeyError, TypeError, AttributeError) as e:
      raise ValueError(f"not a sweep description ({type(e).__name__}: {e})") from None

  def differences(self, other):
    """``{field: (self's value, other's value)}`` for every grid field or setting that differs."""
    mine, theirs = self.to_dict(), other.to_dict()
    out = {}
    for key in ("datasets", "models", "estimators", "seeds", "dataset_settings"):
      if mine[key] != theirs[key]:
        out[key] = (mine[key], theirs[key])
    for key in setting_names():
      if mine["settings"][key] != theirs["settings"][key]:
        out[key] = (mine["settings"][key], theirs["settings"][key])
    return out
