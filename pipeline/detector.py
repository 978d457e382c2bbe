"""AnomalyDetector: the VAE on DataFrames (scikit-learn / pyod semantics).

- ``__init__`` stores settings only; learned state ends with ``_``; every method but ``fit``
  raises :class:`NotFittedError` before ``fit``.
- Higher score = more anomalous; ``predict`` returns 0 (normal) / 1 (anomaly).
- Scoring is deterministic (the latent mean) unless Monte Carlo samples are asked for.
- A row that cannot be scored is rejected with a reason, never given a NaN score.

The class is the estimator contract and delegates the rest: the score definition to
:mod:`pipeline.scoring`, the reasons to :mod:`pipeline.explain`, files to
:mod:`pipeline.artifacts`, the forward passes to :mod:`vae.infer`. How to run a fitted model
(inference batch size, Monte Carlo samples, number of reasons) is an argument of
:meth:`AnomalyDetector.score` (a ``ScoringSettings``), never read from the environment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import artifacts
from pipeline.config import ScoringSettings, Settings
from pipeline.explain import Explainer
from pipeline.preprocess import TabularPreprocessor
from pipeline.schema import (
    SchemaError,
    check_scoring_frame,
    clean_training_frame,
    infer_schema,
)
from pipeline.scoring import (
    ScoreDefinition,
    ScoreResult,
    ScoreStats,
    output_frame,
    scaled_precision,
    tail_views,
)
from pipeline.threshold import fit_threshold, reference_quantiles, score_percentile
from pipeline.training_setup import resolved_settings, train_config, vae_config
from vae import EpochStats, fit_vae
from vae.infer import FeatureLoss, aligned_window, score_arrays

logger = logging.getLogger(__name__)

__all__ = ["AnomalyDetector", "NotFittedError"]


class NotFittedError(RuntimeError):
    """A method that needs a fitted detector was called before ``fit``."""


class AnomalyDetector:
    """Fit a VAE on a table of normal-looking records; score and flag new records."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()

    # -- state helpers ------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                "this AnomalyDetector is not fitted yet: call fit() or load() first"
            )

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "model_")

    # -- fitting ------------------------------------------------------------------------
    def fit(
        self, frame: pd.DataFrame, on_epoch: Callable[[EpochStats], Any] | None = None
    ) -> AnomalyDetector:
        """Learn preprocessing, the VAE, the score scaling and the threshold from ``frame``.

        A seeded share (``training.validation_fraction``) of the rows is held out: it drives
        early stopping and the threshold (so the threshold is not set on rows the VAE saw).
        """
        s = self.settings
        if len(frame) < s.training.min_rows:
            raise ValueError(
                f"training needs at least {s.training.min_rows} rows, got {len(frame)}; "
                "add data or lower training.min_rows"
            )
        schema = infer_schema(frame, s.data)
        s = self.settings = resolved_settings(s, schema)
        if s.scoring.score == "tail_max" and not schema.categorical_columns:
            raise ValueError(
                "scoring.score=tail_max compares the categorical columns' chi-square with the "
                "negative ELBO, and this table has no categorical column; use log_max or elbo"
            )
        clean = clean_training_frame(frame, schema)
        order = np.random.default_rng(s.training.seed).permutation(len(clean))
        n_val = max(1, round(s.training.validation_fraction * len(clean)))
        val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
        train_part, val_part = clean.iloc[train_rows], clean.iloc[val_rows]

        pre = TabularPreprocessor(
            schema.numeric_columns, schema.categorical_columns, s.data.max_categories
        ).fit(train_part)
        x_train, x_val = pre.transform(train_part), pre.transform(val_part)
        config = vae_config(s, pre.n_features)
        result = fit_vae(x_train, x_val, config, train_config(s, pre.n_features), on_epoch=on_epoch)
        self.schema_ = schema
        self.preprocessor_ = pre
        self.vae_config_ = config
        self.model_ = result.model
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.train_seconds_ = result.train_seconds
        self.trimmed_rows_ = result.trimmed_rows
        self.device_ = result.device

        window = s.scoring.batch_rows  # the windows of scoring: the same numbers for a row
        weights = scaled_precision(x_train) if s.scoring.score == "scaled_elbo" else None
        loss = self._feature_loss(weights)
        train_terms = score_arrays(self.model_, x_train, window, loss=loss)
        views: tuple[np.ndarray, ...] = ()
        if s.scoring.score == "tail_max":
            t = train_terms
            assert t.pearson is not None  # categorical columns: checked above
            views = tail_views(t.recon, t.kl, t.pearson, s.scoring.kl_weight)
        self.score_stats_ = ScoreStats.of(train_terms.recon, train_terms.kl, views, weights)
        val_terms = score_arrays(self.model_, x_val, window, loss=loss)
        val_scores = self._definition().combine(val_terms.recon, val_terms.kl, val_terms.pearson)
        self.threshold_ = fit_threshold(val_scores, s.threshold)
        self.reference_quantiles_ = reference_quantiles(val_scores)
        self.validation_scores_ = val_scores
        kept = [c for c in frame.columns if c in schema.roles or c == "label"]
        self.reference_frame_ = frame.iloc[val_rows][kept].reset_index(drop=True)
        self.n_train_rows_ = len(train_part)
        self._build_explainer()
        logger.info(
            "fitted on %d rows (%d held out, %d trimmed halfway), %d features, best epoch %d, "
            "threshold %.4g",
            len(train_part),
            len(val_part),
            result.trimmed_rows,
            pre.n_features,
            result.best_epoch,
            self.threshold_,
        )
        return self

    def _feature_loss(self, weights: np.ndarray | None) -> FeatureLoss:
        """How the score counts each feature's loss: the one-hot blocks by their categorical
        likelihood with the ``elbo`` and ``tail_max`` scores (the negative ELBO is a likelihood
        bound); else the squared error, weighted by ``scaled_elbo``'s ``weights``."""
        likelihood = self.settings.scoring.score in ("elbo", "tail_max")
        return FeatureLoss(self.preprocessor_.categorical_blocks() if likelihood else (), weights)

    def likelihood_loss(self) -> FeatureLoss:
        """The loss of the model's likelihood bound, the negative ELBO: the score's own when
        that is a likelihood; for ``scaled_elbo`` (weights, not a likelihood) the decoder's
        precision and every one-hot block's categorical likelihood."""
        if self.feature_loss_.precision is None:
            return self.feature_loss_
        return FeatureLoss(self.preprocessor_.categorical_blocks())

    def _definition(self) -> ScoreDefinition:
        scoring = self.settings.scoring
        return ScoreDefinition(scoring.score, scoring.kl_weight, self.score_stats_)

    def _build_explainer(self) -> None:
        """The score definition and the reasons, from the learned state (fit and load)."""
        self.score_definition_ = self._definition()
        self.feature_loss_ = self._feature_loss(
            self.score_stats_.feature_weights(
                self.settings.scoring.score, self.vae_config_.n_features
            )
        )
        self.explainer_ = Explainer(
            self.model_,
            self.preprocessor_,
            self.schema_,
            self.score_definition_,
            self.reference_frame_,
            self.settings.scoring.batch_rows,
            self.feature_loss_,
        )

    # -- scoring ------------------------------------------------------------------------
    def _terms(
        self, frame: pd.DataFrame, options: ScoringSettings, mc_samples: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, recon_error, kl) of checked rows, encoded and scored batch by batch.

        Each batch of ``batch_rows`` rows (rounded up to whole kernel panels) is encoded and
        fed to the model while it is still in the CPU cache: the encoded matrix of a whole
        chunk is never built. Every forward pass has that many rows (the last one padded), so
        a row's score does not depend on how the rows were chunked.
        """
        mc = options.mc_samples if mc_samples is None else mc_samples
        step = aligned_window(options.batch_rows)
        n = len(frame)
        recon, kl = np.empty(n, dtype=np.float64), np.empty(n, dtype=np.float64)
        pearson = np.empty(n, dtype=np.float64) if self.feature_loss_.categories else None
        for start, x in zip(
            range(0, n, step), self.preprocessor_.iter_transform(frame, step), strict=False
        ):
            # Monte Carlo noise: seeded per block (reproducible; with mc_samples > 0 a score
            # depends on the row's position in its chunk, unlike the default deterministic one)
            terms = score_arrays(
                self.model_,
                x,
                window=step,
                mc_samples=mc,
                seed=self.settings.training.seed + start,
                loss=self.feature_loss_,
            )
            recon[start : start + len(x)] = terms.recon
            kl[start : start + len(x)] = terms.kl
            if pearson is not None:
                pearson[start : start + len(x)] = terms.pearson
        return self.score_definition_.combine(recon, kl, pearson), recon, kl

    def score(
        self,
        frame: pd.DataFrame,
        *,
        source: str = "input",
        line_numbers: np.ndarray | None = None,
        model_name: str | None = None,
        model_version: str = "",
        threshold: float | None = None,
        mc_samples: int | None = None,
        log_warnings: bool = True,
        scoring: ScoringSettings | None = None,
    ) -> ScoreResult:
        """Score every row of ``frame``: output columns as in the scoring contract.

        Rows whose values cannot be read (text or inf in a numeric column) are rejected with
        their line and a reason; :class:`SchemaError` is raised when model columns are missing.
        ``scoring`` says how to run (``batch_rows``, ``mc_samples``, ``top_reasons``; default:
        this detector's settings; the score definition always comes from the model);
        ``mc_samples`` overrides its Monte Carlo samples. ``log_warnings=False`` leaves logging
        the returned warnings to the caller (a file scored in chunks logs them once).
        """
        self._check_fitted()
        options = scoring or self.settings.scoring
        checked = check_scoring_frame(
            frame,
            self.schema_,
            source=source,
            line_numbers=line_numbers,
            ignored=self.settings.data.ignore_columns,
        )
        for message in checked.warnings if log_warnings else []:
            logger.warning(message)
        accepted, lines, rejected = checked.accepted, checked.accepted_lines, checked.rejected
        scores, recon, kl = self._terms(accepted, options, mc_samples)
        finite = np.isfinite(scores)
        if not finite.all():  # never a silent NaN: such a row is rejected with a reason
            unscorable = accepted.loc[~finite].copy()
            unscorable.insert(0, "reason", "the model's score is not finite for this row")
            unscorable.insert(0, "line", lines[~finite])
            rejected = pd.concat([rejected, unscorable], ignore_index=True).sort_values("line")
            accepted, lines = accepted.loc[finite], lines[finite]
            scores, recon, kl = scores[finite], recon[finite], kl[finite]
        cut = self.threshold_ if threshold is None else float(threshold)
        flags = (scores > cut).astype(np.int8)
        out = output_frame(
            accepted[self.schema_.id_columns],
            scores,
            recon,
            kl,
            score_percentile(scores, self.reference_quantiles_),
            flags,
        )
        flagged = np.flatnonzero(flags)
        if flagged.size:
            rows = accepted.iloc[flagged]  # checked already: encode, do not check again
            out.loc[flagged, "reasons"] = self.explainer_.explain(
                rows,
                self.preprocessor_.transform(rows),
                (recon[flagged], kl[flagged]),
                options.top_reasons,
            )
        out["model_name"] = model_name or self.settings.tracking.registered_model
        out["model_version"] = str(model_version)
        out["threshold"] = cut
        return ScoreResult(
            scored=out,
            rejected=rejected.reset_index(drop=True),
            scored_lines=lines,
            warnings=checked.warnings,
            accepted=accepted,
        )

    def explain(self, rows: pd.DataFrame, top_reasons: int | None = None) -> list[str]:
        """Top source columns of each (scorable) row's score, with share and expected value
        (see :meth:`pipeline.explain.Explainer.explain`)."""
        self._check_fitted()
        rows = check_scoring_frame(rows, self.schema_).accepted
        count = self.settings.scoring.top_reasons if top_reasons is None else top_reasons
        return self.explainer_.explain(rows, self.preprocessor_.transform(rows), None, count)

    def score_samples(
        self, frame: pd.DataFrame, scoring: ScoringSettings | None = None
    ) -> np.ndarray:
        """Anomaly scores only, one per row; raises if any row would be rejected."""
        self._check_fitted()
        checked = check_scoring_frame(frame, self.schema_)
        if len(checked.rejected):
            first = checked.rejected.iloc[0]
            raise SchemaError(
                f"{len(checked.rejected)} row(s) cannot be scored, first at line {first['line']}: "
                f"{first['reason']}; use score() to get them as rejected rows"
            )
        return self._terms(checked.accepted, scoring or self.settings.scoring)[0]

    decision_function = score_samples

    def predict(self, frame: pd.DataFrame, scoring: ScoringSettings | None = None) -> np.ndarray:
        """0 (normal) / 1 (anomaly) per row, against the fitted threshold."""
        return (self.score_samples(frame, scoring) > self.threshold_).astype(np.int8)

    # -- persistence --------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the fitted detector to ``directory`` (no pickled Python objects; see
        :mod:`pipeline.artifacts`)."""
        self._check_fitted()
        return artifacts.save(self, directory)

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> AnomalyDetector:
        """Load a detector saved by :meth:`save`, refusing any file whose checksum differs.

        It keeps what defines the model; how to run it is passed to :meth:`score`.
        """
        saved = artifacts.read(directory, device)
        detector = cls(saved.settings)
        detector.schema_ = saved.schema
        detector.preprocessor_ = saved.preprocessor
        detector.vae_config_ = saved.vae_config
        detector.model_ = saved.model
        detector.threshold_ = saved.threshold
        detector.score_stats_ = saved.score_stats
        detector.reference_quantiles_ = saved.reference_quantiles
        detector.best_epoch_ = saved.best_epoch
        detector.n_train_rows_ = saved.n_train_rows
        detector.trimmed_rows_ = saved.trimmed_rows
        detector.history_ = saved.history
        detector.device_ = saved.device
        detector.reference_frame_ = saved.reference_frame
        detector._build_explainer()
        return detector
