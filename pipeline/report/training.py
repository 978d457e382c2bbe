"""The training report of a fitted detector, and the numbers behind its figures.

Sections: the key facts (``summary``), loss curves (``loss``), then, from the held-out
validation rows, the reconstruction error per source column (``column-errors``), a PCA view of
the latent means coloured by anomaly score (``latent``) and the validation score histogram
with the threshold (``validation-scores``); with the training table, a per-column summary
(``data``). The model's numbers come from :mod:`vae.infer` and the detector's public API; the
report does no model math of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from pipeline.detector import NotFittedError
from pipeline.report import figures
from pipeline.report.page import (
    Banner,
    Cell,
    Facts,
    Image,
    Table,
    cell,
    image,
    number,
    render,
    score_text,
    stamp,
    table,
)
from pipeline.schema import clean_training_frame
from vae.infer import feature_errors, latent_means

if TYPE_CHECKING:
    from pipeline.detector import AnomalyDetector


@dataclass
class TrainingDiagnostics:
    """The numbers behind the training report's figures, from the validation rows."""

    column_errors: dict[str, float]  # mean precision-weighted squared error per source column
    latent_coords: np.ndarray  # (rows, 2): first two principal components of the latent means
    latent_explained: tuple[float, float]  # share of the latent variance of those components
    scores: np.ndarray  # (rows,) anomaly score of the same rows
    rows: int


def _projection(latent: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Coordinates on the first two principal components of ``latent`` (a zero column when
    there is only one) and the shares of the variance they explain."""
    rows, width = latent.shape
    coords = np.zeros((rows, 2))
    if rows < 2 or not np.any(latent.var(axis=0) > 0):
        return coords, (0.0, 0.0)  # no variance to explain
    pca = PCA(n_components=min(2, width), svd_solver="full")
    coords[:, : pca.n_components] = pca.fit_transform(latent)
    share = pca.explained_variance_ratio_
    return coords, (float(share[0]), float(share[1]) if share.size > 1 else 0.0)


def training_diagnostics(
    detector: AnomalyDetector, max_rows: int = 5000, seed: int = 0
) -> TrainingDiagnostics | None:
    """Per-column error, latent PCA and scores of (up to ``max_rows``) validation rows.

    Uses ``detector.reference_frame_`` (the held-out validation rows, raw values); a seeded
    sample of ``max_rows`` keeps it fast for huge training sets. None when the detector kept
    no validation rows (a model saved without them).
    """
    reference = getattr(detector, "reference_frame_", None)
    if reference is None or reference.empty:
        return None
    if len(reference) > max_rows:
        reference = reference.sample(max_rows, random_state=seed)
    clean = clean_training_frame(reference, detector.schema_)
    x = detector.preprocessor_.transform(clean)
    # the loss as the score counts it (the categorical likelihood or scaled_elbo's weights)
    errors = feature_errors(detector.model_, x, loss=detector.feature_loss_)
    sources = np.asarray(detector.preprocessor_.feature_sources)
    column_errors = {
        c: float(errors[:, sources == c].sum(axis=1).mean()) for c in detector.schema_.model_columns
    }
    coords, explained = _projection(latent_means(detector.model_, x))
    scores = detector.score_samples(clean)
    return TrainingDiagnostics(column_errors, coords, explained, scores, len(reference))


@dataclass(frozen=True)
class TrainingStop:
    """How a training run ended: the epochs run and the limit, the best epoch, whether early
    stopping triggered, and whether the validation loss was still falling at the end."""

    epochs: int
    max_epochs: int
    best_epoch: int
    patience: int

    @property
    def stopped_early(self) -> bool:
        return self.epochs < self.max_epochs

    @property
    def still_improving(self) -> bool:
        """Stopped by the epoch limit with the best epoch among the last ``patience``: early
        stopping would not have stopped it yet."""
        return not self.stopped_early and self.best_epoch > self.epochs - self.patience

    def text(self) -> str:
        if self.stopped_early:
            return (
                f"{self.epochs} of at most {self.max_epochs}: early stopping triggered "
                f"(no validation gain for {self.patience} epochs after the best epoch, "
                f"{self.best_epoch}, whose weights are kept)"
            )
        return (
            f"{self.epochs} of at most {self.max_epochs}: early stopping did not trigger "
            f"(best epoch {self.best_epoch}, whose weights are kept)"
        )

    def warning(self) -> str:
        """A sentence when the validation loss was still falling at the last epoch."""
        if not self.still_improving:
            return ""
        return (
            f"The validation loss was still falling when training stopped at its epoch limit "
            f"(best epoch {self.best_epoch} of {self.epochs}): a model trained longer "
            "(--max-epochs, VAE_ANOMALY_TRAINING__MAX_EPOCHS) may fit the data better."
        )


def training_stop(detector: AnomalyDetector) -> TrainingStop:
    """How the detector's training ended (from its history and training settings)."""
    t = detector.settings.training
    return TrainingStop(len(detector.history_), t.max_epochs, detector.best_epoch_, t.patience)


@dataclass(frozen=True)
class ValidationView:
    rows: int
    column_errors: Image
    latent: Image
    scores: Image


@dataclass(frozen=True)
class DataView:
    rows: int
    summary: Table


@dataclass(frozen=True)
class TrainingPage:
    title: str
    facts: Facts
    banners: tuple[Banner, ...]
    details: Facts
    loss: Image
    validation: ValidationView | None
    data: DataView | None
    generated_at: str


def _training_rows(detector: AnomalyDetector) -> str:
    """The training rows, and how many were trimmed halfway (``training.trim_fraction``)."""
    rows = str(getattr(detector, "n_train_rows_", ""))
    trimmed = getattr(detector, "trimmed_rows_", 0)
    if not trimmed:
        return rows
    rule = detector.settings.training.trim_fraction
    which = "far-out rows" if rule == "auto" else f"rows, the {rule:.0%} scored highest,"
    return f"{rows} ({trimmed} {which} dropped halfway)"


def _facts(detector: AnomalyDetector, input_name: str, model: str) -> Facts:
    s = detector.settings
    config = detector.vae_config_
    schema = detector.schema_
    facts = [
        ("model", model),
        ("training data", input_name),
        ("training rows", _training_rows(detector)),
        ("validation rows", str(len(getattr(detector, "reference_frame_", [])))),
        (
            "columns",
            f"{len(schema.numeric_columns)} numeric, {len(schema.categorical_columns)} "
            f"categorical, {len(schema.id_columns)} id (passed through)",
        ),
        ("encoded features", str(detector.preprocessor_.n_features)),
        (
            "architecture",
            f"hidden {list(config.hidden_dims)}, latent {config.latent_dim}, "
            f"{config.activation}, decoder variance {config.decoder_variance}",
        ),
        ("epochs", training_stop(detector).text()),
        ("score", f"{s.scoring.score} (kl weight {s.scoring.kl_weight})"),
        ("threshold", f"{score_text(detector.threshold_)} ({s.threshold.rule})"),
    ]
    seconds = getattr(detector, "train_seconds_", None)
    if seconds is not None:
        facts.append(("training time", f"{seconds:.1f} s on {getattr(detector, 'device_', '')}"))
    return tuple(facts)


def _validation(detector: AnomalyDetector) -> ValidationView | None:
    diagnostics = training_diagnostics(detector)
    if diagnostics is None:
        return None
    errors = figures.column_error_bars(
        list(diagnostics.column_errors), list(diagnostics.column_errors.values())
    )
    latent = figures.latent_scatter(
        diagnostics.latent_coords,
        diagnostics.scores,
        detector.threshold_,
        diagnostics.latent_explained,
    )
    validation = getattr(detector, "validation_scores_", None)
    scores = diagnostics.scores if validation is None else np.asarray(validation)
    return ValidationView(
        rows=diagnostics.rows,
        column_errors=image(errors, "reconstruction error per column"),
        latent=image(latent, "latent means of the validation rows"),
        scores=image(
            figures.score_histogram(scores, detector.threshold_),
            "validation score histogram with the threshold",
        ),
    )


def _data_summary(frame: pd.DataFrame, detector: AnomalyDetector) -> Table:
    rows: list[list[Cell | str]] = []
    for column, role in detector.schema_.roles.items():
        if column not in frame.columns:
            continue
        values = frame[column]
        summary = ""
        if role == "numeric":
            numbers = pd.to_numeric(values, errors="coerce")
            summary = (
                f"min {number(numbers.min())}, median {number(numbers.median())}, "
                f"max {number(numbers.max())}"
            )
        elif role == "categorical":
            common = values.astype(str).value_counts().head(3)
            summary = ", ".join(f"{k} ({v / len(values):.0%})" for k, v in common.items())
        rows.append(
            [
                column,
                role,
                cell(f"{values.isna().mean():.2%}", "num"),
                cell(str(values.nunique(dropna=True)), "num"),
                summary,
            ]
        )
    return table(["column", "role", "missing", "distinct", "summary"], rows)


def render_training_report(
    detector: AnomalyDetector,
    frame: pd.DataFrame | None = None,
    *,
    input_name: str = "",
    model_name: str = "",
    model_version: str = "",
    details: dict[str, str] | None = None,
    generated_at: str = "",
) -> str:
    """The HTML report of a fitted detector (self-contained; see :mod:`pipeline.report`).

    ``frame``, when given, is the training table: it adds a per-column data summary.
    ``details`` are more header facts (run id, data hash, ...).
    """
    if not detector.is_fitted:
        raise NotFittedError("this AnomalyDetector is not fitted yet: call fit() or load() first")
    name = model_name or detector.settings.tracking.registered_model
    model = f"{name} version {model_version}" if model_version else name
    loss = figures.loss_curves(detector.history_, detector.best_epoch_)
    page = TrainingPage(
        title=f"Training report: {model}",
        facts=_facts(detector, input_name or "(not recorded)", model),
        banners=tuple(
            Banner("warn", text, "epochs-warning")
            for text in [training_stop(detector).warning()]
            if text
        ),
        details=tuple((str(k), str(v)) for k, v in (details or {}).items()),
        loss=image(loss, "training and validation loss per epoch"),
        validation=_validation(detector),
        data=None if frame is None else DataView(len(frame), _data_summary(frame, detector)),
        generated_at=stamp(generated_at),
    )
    return render("training.html", page=page)
