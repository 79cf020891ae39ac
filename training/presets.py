"""Named grids (``--preset``): the suite's sweeps and the papers' protocols.

Settings not named here are ``contracts.settings.Settings`` defaults: the DisARM
paper's protocol as its reference code runs it. The RODEO presets take the RODEO
code's settings from ``contracts.protocols`` (PROTOCOL.md section 9; README.md,
"Protocol choices"), where the comparison with its published tables reads them too.
"""

from contracts import protocols
from contracts.settings import Grid, Settings
from datasets import DATASETS
from models import LAYERED_MODELS, SINGLE_LAYER_MODELS

PAPER_ESTIMATORS = ("reinforce_loo", "arm", "disarm", "relax")
FIVE_SEEDS = tuple(range(protocols.PAPER_SEEDS))
PAPER_LENGTH = dict(num_steps=protocols.PAPER_STEPS, eval_every=1000, bound_every=1000)

RODEO_PROTOCOL = Settings(**protocols.RODEO, log_bound_k=True, **PAPER_LENGTH)
RODEO_DATASET_SETTINGS = tuple((d, tuple(v.items())) for d, v in protocols.RODEO_DATASETS.items())
RODEO_ESTIMATORS = (
  "disarm",
  "double_cv_2",
  "rodeo_2",
  "arms_3",
  "double_cv_3",
  "rodeo_3",
  "relax",
  "arms_4",
  "double_cv_4",
  "rodeo_4",
)
RODEO_LAYERED_PROTOCOL = Settings(**protocols.RODEO_LAYERED, log_bound_k=True, **PAPER_LENGTH)

PRESETS = {
  # A few minutes on 2 CPU cores: every dataset and estimator, linear model, one seed.
  "quick": Grid(
    DATASETS, ("linear",), PAPER_ESTIMATORS, (0,), Settings(num_steps=1000, eval_every=500, bound_every=1000)
  ),
  # The sweep committed under results/reduced (about two hours of a 2-core machine).
  "reduced": Grid(
    DATASETS,
    SINGLE_LAYER_MODELS,
    PAPER_ESTIMATORS,
    (0, 1, 2),
    Settings(num_steps=3000, eval_every=500, bound_every=3000),
  ),
  # The DisARM paper's single-layer table: 3 datasets x 2 models x 4 estimators x 5 seeds, 10^6 steps.
  "paper": Grid(DATASETS, SINGLE_LAYER_MODELS, PAPER_ESTIMATORS, FIVE_SEEDS, Settings(**PAPER_LENGTH)),
  # Multi-sample bounds at equal cost: VIMCO with 2m samples against local DisARM with m pairs.
  "multisample": Grid(
    DATASETS,
    SINGLE_LAYER_MODELS,
    ("vimco_2", "local_disarm_1", "vimco_10", "local_disarm_5", "vimco_20", "local_disarm_10"),
    FIVE_SEEDS,
    Settings(**PAPER_LENGTH),
  ),
  # The DisARM paper's appendix: 2, 3 and 4 stochastic layers, one estimate per layer.
  "hierarchical": Grid(DATASETS, LAYERED_MODELS, PAPER_ESTIMATORS, FIVE_SEEDS, Settings(**PAPER_LENGTH)),
  # The RODEO paper's Tables 1 and 2: nonlinear VAE, K = 2, 3, 4 evaluations.
  "rodeo": Grid(
    DATASETS, ("nonlinear",), RODEO_ESTIMATORS, FIVE_SEEDS, RODEO_PROTOCOL, dataset_settings=RODEO_DATASET_SETTINGS
  ),
  # The check of one new estimator (experiments/check.py), stage 4: its baselines on MNIST with the
  # RODEO protocol's settings, a few thousand steps, 3 seeds; the estimator under check joins them
  # (``--estimators`` names it), and DisARM and RODEO follow its K.
  "check": Grid(
    ("mnist",),
    ("nonlinear",),
    ("disarm", "rodeo_2"),
    (0, 1, 2),
    Settings(**protocols.RODEO, num_steps=2000, eval_every=500, bound_every=2000),
    dataset_settings=tuple((d, v) for d, v in RODEO_DATASET_SETTINGS if d == "mnist"),
  ),
  # The RODEO paper's Table 5: 2-4 linear stochastic layers, K = 2.
  "rodeo_hierarchical": Grid(
    DATASETS, LAYERED_MODELS, ("disarm", "double_cv_2", "rodeo_2"), FIVE_SEEDS, RODEO_LAYERED_PROTOCOL
  ),
}
