"""How the settings become a table's network and training (the ``auto`` choices made).

:func:`resolved_settings` makes the ``auto`` choices for a table from its schema (what the
saved model records); :func:`vae_config` and :func:`train_config` turn the resolved settings
into the configurations of :mod:`vae` (the network's shape, the optimiser and its robustness
to anomalies in the training rows).
"""

from __future__ import annotations

import os

from pipeline.config import Settings
from pipeline.schema import TableSchema
from vae import TrainConfig, VAEConfig, default_architecture

NUMERIC_BETA = 0.1  # the KL weight of a table with a numeric column
DISCRETE_BETA = 0.5  # the KL weight of a table whose model columns are all categorical
DISCRETE_DOWNWEIGHT = 0.1  # the share of each batch with bounded influence, for such a table
DISCRETE_AVERAGE_EPOCHS = 5.0  # the weights kept average the iterates of about 5 epochs, ditto
# trim_fraction "auto": the training rows beyond Tukey's far-out fence (Q3 + 3 IQR) of the
# detector's score halfway through training, at most AUTO_TRIM_CAP of them
AUTO_TRIM_FENCE = 3.0
AUTO_TRIM_CAP = 0.1
# cpu_threads "auto": an encoded table this wide trains on up to WIDE_THREADS threads
WIDE_FEATURES = 64
WIDE_THREADS = 2


def vae_config(settings: Settings, n_features: int) -> VAEConfig:
    m = settings.model
    arch = default_architecture(n_features)
    return VAEConfig(
        n_features=n_features,
        hidden_dims=tuple(m.hidden_dims) or arch["hidden_dims"],
        latent_dim=m.latent_dim or arch["latent_dim"],
        activation=m.activation,
        dropout=m.dropout,
        decoder_variance=m.decoder_variance,
        min_variance=m.min_variance,
    )


def resolved_settings(settings: Settings, schema: TableSchema) -> Settings:
    """The settings with ``auto`` choices made for this table (what the saved model records).

    A table whose model columns are all categorical (discrete) is trained with a KL weight of
    ``DISCRETE_BETA`` and scored by ``scaled_elbo``: the negative MSE ELBO with each encoded
    feature's squared error in units of its training variance (a one-hot indicator of a
    category of training share ``q``: ``q (1 - q)``, floored at 0.001), as the numeric columns'
    errors are in units of their standard deviation; other tables get ``NUMERIC_BETA`` and the
    ``log_max`` score. Why the KL weight: the Gaussian decoder's likelihood of 0/1 features is
    degenerate (their variance can shrink to its floor), so with a cheap latent code (``beta``
    0.1) a model learns every combination of categories in the code and reconstructs anomalies
    as well as normal rows (on the chess table it ranked them below random); at the ELBO's own
    weight (1) the code collapses to the prior for most of training and the model reads each
    column alone (blind to a rare combination of common values). Why the score: the plain
    squared error of a one-hot block is at most 2 however rare the category; in units of the
    indicator's variance, missing a category of share ``q`` costs about ``1 / q``, so one very
    rare value counts (w7a, 300 binary columns), and a combination of common values the
    decoder does not expect still costs its squared errors. The decoder's learned variances are
    not used for the score: they shrink with the fit, so they would weigh the features the
    model already reconstructs best. Measured in benchmarks/RESULTS.md ("Categorical tables",
    eighth round).

    Such a table also bounds the influence of each batch's worst-fitted 10% of rows
    (``DISCRETE_DOWNWEIGHT``, :func:`vae.loss.influence_weights`): its rare combinations of
    categories are not learned as normal. Not for tables with a numeric column: on the sample
    table it ranked relationship errors lower (RESULTS.md, "Bounded influence").

    Such a table's model keeps a moving average of its weights over about the last
    ``DISCRETE_AVERAGE_EPOCHS`` epochs (:class:`vae.train._WeightAverage`): the jitter of the
    last steps moves the decoder's outputs for rare categories, which rank its rows, from one
    fit to the next. Not for tables with a numeric column: neutral on ADBench, and on the sample
    table it ranked the currency mismatches lower (RESULTS.md, eleventh round).

    ``trim_fraction`` "auto" stays as given (a rule, not a share: the saved model records the
    rows it dropped, ``trimmed_rows``); :func:`train_config` turns it into the far-out fence.
    """
    discrete = not schema.numeric_columns
    training, scoring = settings.training, settings.scoring
    beta = training.beta
    if beta == "auto":
        beta = DISCRETE_BETA if discrete else NUMERIC_BETA
    downweight = training.downweight_fraction
    if downweight == "auto":
        downweight = DISCRETE_DOWNWEIGHT if discrete else 0.0
    average = training.average_epochs
    if average == "auto":
        average = DISCRETE_AVERAGE_EPOCHS if discrete else 0.0
    score = scoring.score if scoring.score != "auto" else ("scaled_elbo" if discrete else "log_max")
    return settings.model_copy(
        update={
            "training": training.model_copy(
                update={"beta": beta, "downweight_fraction": downweight, "average_epochs": average}
            ),
            "scoring": scoring.model_copy(update={"score": score}),
        }
    )


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def training_threads(requested: int | str, n_features: int) -> int:
    """The torch CPU threads to train a model of ``n_features`` encoded features with.

    ``auto``: one thread below ``WIDE_FEATURES``, where a step is a few dozen small operations
    whose cost is their dispatch (a second thread only adds its synchronisation, and spinning
    threads collapse when another process shares the cores); from there on the matrix
    products of a batch of 256 rows are large enough to split, and ``WIDE_THREADS`` threads
    (no more than the cores there are) train 15-35% faster on a 2-core machine
    (RESULTS.md, fifteenth round).
    """
    if requested != "auto":
        return int(requested)
    if n_features < WIDE_FEATURES:
        return 1
    return min(WIDE_THREADS, available_cores())


def train_config(settings: Settings, n_features: int) -> TrainConfig:
    """The optimiser's settings; ``trim_fraction`` "auto" trims the far-out training rows.

    Halfway through training (or earlier, when early stopping would end it before), the rows
    whose score (the ``log_max`` of :func:`vae.train._untrimmed`) lies beyond Tukey's far-out
    fence, ``Q3 + 3 IQR`` of the training rows' scores, are dropped (``AUTO_TRIM_CAP`` of them
    at most): anomalies in the training data
    that the model has begun to learn (a cluster of them is learned like a mode) leave the
    fit, while a table without far-out rows keeps every row. Unlike a fixed share it adapts to
    the contamination; unlike loss-ranked weights it cannot turn against a rare mode of normal
    rows (RESULTS.md, sixth round).
    """
    t = settings.training
    assert t.beta != "auto" and t.downweight_fraction != "auto", "resolve the settings first"
    assert t.average_epochs != "auto", "resolve the settings first"
    share, fence = (
        (AUTO_TRIM_CAP, AUTO_TRIM_FENCE) if t.trim_fraction == "auto" else (t.trim_fraction, 0.0)
    )
    return TrainConfig(
        max_epochs=t.max_epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        beta=t.beta,
        trim_fraction=share,
        trim_fence=fence,
        trim_epoch=max(2, t.max_epochs // 2),
        downweight_fraction=t.downweight_fraction,
        downweight_epoch=t.downweight_epoch,
        patience=t.patience,
        average_epochs=t.average_epochs,
        seed=t.seed,
        device=t.device,
        cpu_threads=training_threads(t.cpu_threads, n_features),
    )
