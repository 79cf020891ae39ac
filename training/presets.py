"""Named grids (``--preset``): the suite's sweeps and the papers' protocols.

Settings not named here are ``contracts.settings.Settings`` defaults: the DisARM
paper's protocol as its reference code runs it. ``RODEO_PROTOCOL`` collects every
difference of the RODEO paper's protocol (PROTOCOL.md section 9, and the table in
plots/README.md of where each reference code differs).
"""

from contracts.settings import Grid, Settings
from datasets import DATASETS
from models import LAYERED_MODELS, SINGLE_LAYER_MODELS

PAPER_ESTIMATORS = ("reinforce_loo", "arm", "disarm", "relax")
FIVE_SEEDS = (0, 1, 2, 3, 4)
PAPER_LENGTH = dict(num_steps=1_000_000, eval_every=1000, bound_every=1000)

# The RODEO code's single-layer protocol (thjashin/rodeo, experiment_launcher_singlelayer.py).
RODEO_PROTOCOL = Settings(
    batch_size=100, encoder_lr=1e-3, decoder_lr=1e-3, train_prior=False, encoder_input="raw",
    latent_input="binary", initialization="glorot", decoder_sample="k_independent", decoder_reduction="sum",
    data_order="buffer_per_epoch", train_elbo_samples="k_mean", log_bound_k=True, **PAPER_LENGTH)
# Its learning rate on Fashion-MNIST (the repository's README).
RODEO_DATASET_SETTINGS = (("fashion_mnist", (("encoder_lr", 3e-4), ("decoder_lr", 3e-4))),)
RODEO_ESTIMATORS = ("disarm", "double_cv_2", "rodeo_2", "arms_3", "double_cv_3", "rodeo_3", "relax", "arms_4",
                    "double_cv_4", "rodeo_4")
# Its layered protocol (experiment_launcher_multilayer.py): learning rates 1e-4, the decoder
# trained on the forward sample, a true 100-sample bound, file order through the buffer.
RODEO_LAYERED_PROTOCOL = Settings(
    batch_size=100, train_prior=False, encoder_input="raw", latent_input="binary", initialization="glorot",
    decoder_sample="independent", decoder_reduction="mean", log_bound_k=True, **PAPER_LENGTH)

PRESETS = {
    # A few minutes on 2 CPU cores: every dataset and estimator, linear model, one seed.
    "quick": Grid(DATASETS, ("linear",), PAPER_ESTIMATORS, (0,),
                  Settings(num_steps=1000, eval_every=500, bound_every=1000)),
    # The sweep committed under results/reduced (about two hours of a 2-core machine).
    "reduced": Grid(DATASETS, SINGLE_LAYER_MODELS, PAPER_ESTIMATORS, (0, 1, 2),
                    Settings(num_steps=3000, eval_every=500, bound_every=3000)),
    # The DisARM paper's single-layer table: 3 datasets x 2 models x 4 estimators x 5 seeds, 10^6 steps.
    "paper": Grid(DATASETS, SINGLE_LAYER_MODELS, PAPER_ESTIMATORS, FIVE_SEEDS, Settings(**PAPER_LENGTH)),
    # Multi-sample bounds at equal cost: VIMCO with 2m samples against local DisARM with m pairs.
    "multisample": Grid(DATASETS, SINGLE_LAYER_MODELS,
                        ("vimco_2", "local_disarm_1", "vimco_10", "local_disarm_5", "vimco_20", "local_disarm_10"),
                        FIVE_SEEDS, Settings(**PAPER_LENGTH)),
    # The DisARM paper's appendix: 2, 3 and 4 stochastic layers, one estimate per layer.
    "hierarchical": Grid(DATASETS, LAYERED_MODELS, PAPER_ESTIMATORS, FIVE_SEEDS, Settings(**PAPER_LENGTH)),
    # The RODEO paper's Tables 1 and 2: nonlinear VAE, K = 2, 3, 4 evaluations.
    "rodeo": Grid(DATASETS, ("nonlinear",), RODEO_ESTIMATORS, FIVE_SEEDS, RODEO_PROTOCOL,
                  dataset_settings=RODEO_DATASET_SETTINGS),
    # The RODEO paper's Table 5: 2-4 linear stochastic layers, K = 2.
    "rodeo_hierarchical": Grid(DATASETS, LAYERED_MODELS, ("disarm", "double_cv_2", "rodeo_2"), FIVE_SEEDS,
                               RODEO_LAYERED_PROTOCOL),
}
