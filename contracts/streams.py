"""The random-stream plan: which seed feeds which draw.

Every draw in the suite is stateless (``tf.random.stateless_*``): a run is a pure
function of its seed, reproducible, resumable at any checkpoint, and the same alone
or stacked with other runs. A run with seed ``s`` derives every stream from int32
pairs ``(s, salt)``; ``fold(seed, a, b, ...)`` below means repeated
``tf.random.experimental.stateless_fold_in`` and ``split(seed, n)`` means
``stateless_split`` (whose first rows do not depend on ``n``).

    (s, TRAINING_SALT)                       base of the training streams
      fold(., STEP, t) -> split(., 2)        step t: [DATA, ESTIMATOR]
        DATA                                 dynamic binarisation of step t's batch
        ESTIMATOR                            the estimator's noise for step t (layer 0 of a
                                             layered model); further draws fold it:
          fold(., FORWARD_SAMPLE)            the forward sample b ~ q(b|x) (decoder sample of
                                             ``decoder_sample=independent``; conditions the
                                             upper layers of a layered model)
          fold(., DECODER_TOP_UP)            extra independent samples for
                                             ``decoder_sample=k_independent``
          fold(., LAYER + l)                 layer l >= 1's estimator noise
          fold(., COMPLETION + l)            noise of the upper layers completing layer l's candidates
          fold(., BASKET_STATE + i)          the noise with which the variance basket's i-th estimator
                                             trains its own state on step t's batch
                                             (``basket_state=trained``)
      fold(., EPOCH, e)                      keys of epoch e's permutation of the training set
    (s, EVALUATION_SALT)                     base of the evaluation streams
      fold(., purpose, t)                    evaluation at step t, purpose one of
                                             EVAL_TRAIN_ELBO, EVAL_VALID, EVAL_TEST, EVAL_BASKET;
                                             chunk i of a split folds i in
    (s, MODEL_INIT_SALT)                     single-layer VAE weights (split per network, per layer)
    (s, LAYERED_MODEL_INIT_SALT)             layered VAE weights (split into 2L, one per dense layer)
    (s, ESTIMATOR_STATE_SALT)                an estimator's own parameters (split per layer of a
                                             layered model)
      fold(., 1 + i)                         the initial state of the variance basket's i-th
                                             estimator (one with parameters, not the run's own)

The evaluation and single-layer model-init bases share the pair ``(s, 1)`` but use it
differently (fold-in against split), so their streams do not coincide. Under XLA,
TensorFlow 2.18 draws a different (equally valid, equally deterministic) stream for
the same stateless seed than its plain kernels; which parts run under XLA is fixed
per part of the graph (training/trainer.py), so a run's numbers do not depend on it.
"""

TRAINING_SALT = 0
EVALUATION_SALT = 1
MODEL_INIT_SALT = 1
LAYERED_MODEL_INIT_SALT = 2
ESTIMATOR_STATE_SALT = 2

# Purposes folded into the training base.
STEP = 0
EPOCH = 1

# Purposes folded into a step's estimator seed.
FORWARD_SAMPLE = 1_000
DECODER_TOP_UP = 1_001
LAYER = 2_000
COMPLETION = 3_000
BASKET_STATE = 4_000

# Purposes folded into the evaluation base.
EVAL_TRAIN_ELBO = 0
EVAL_VALID = 1
EVAL_TEST = 2
EVAL_BASKET = 3

# Seeds are int32 pairs: a run's seed must be a non-negative int32, or two seeds
# would name the same streams.
MAX_SEED = 2**31 - 1
