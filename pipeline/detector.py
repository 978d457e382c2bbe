"""AnomalyDetector: the VAE on DataFrames (scikit-learn / pyod semantics).

- ``__init__`` stores settings only; learned state ends with ``_``; every method but ``fit``
  raises :class:`NotFittedError` before ``fit``.
- Higher score = more anomalous; ``predict`` returns 0 (normal) / 1 (anomaly).
- Scoring is deterministic (the latent mean) unless Monte Carlo samples are asked for.
- A row that cannot be scored is rejected with a reason, never given a NaN score.

The anomaly score. Each record gets ``recon_error`` (squared error of its encoded features,
weighted by the decoder's learned precision, summed) and ``kl`` (KL divergence of its
posterior from the prior). Each term is log-transformed (``log(term + eps)``, ``eps`` a
thousandth of its training median), standardised with the mean and standard deviation of
those logs over the training records, and the score is the larger of the two:
``max(z(log recon_error), z(log kl))``: a record is as anomalous as its more unusual term.
Both terms are sums of squares with long right tails; after the log their training
distributions are close to normal, so "3 standard deviations" means about the same for both,
and a few large but normal values no longer crowd out the anomalies at the top of the
ranking. On the ADBench datasets the log beat the plain ``max(z(recon_error), z(kl))`` on both
halves with each of three model seeds (PR-AUC +2.6 to +5.6 points on one half, +0.1 to +1.4
on the other), and the max beat the sum, which
also drowns a clean reconstruction signal when the KL term carries none: see
benchmarks/RESULTS.md. ``scoring.score`` also offers ``max`` (without the log),
``standardized`` (the sum of the plain z's) and ``sum`` (raw ``recon_error + kl``);
``scoring.kl_weight`` scales the KL term.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.checksums import verify_checksums, write_checksums
from pipeline.config import Settings
from pipeline.drift import DriftReference
from pipeline.preprocess import TabularPreprocessor
from pipeline.schema import (
    SchemaError,
    TableSchema,
    check_scoring_frame,
    clean_training_frame,
    infer_schema,
)
from pipeline.threshold import contamination_threshold, reference_quantiles, score_percentile
from vae import VAE, EpochStats, TrainConfig, VAEConfig, default_architecture, fit_vae
from vae.infer import LogScale, aligned_window, kl_array, reconstruct, score_arrays

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# reasons: numeric values tried per column, and how close two columns' score falls must be to
# count as equally good explanations (then the driving term's shares order them)
REASON_QUANTILES = 7
REASON_TIE = 0.15
REASON_WINDOW = 2048  # rows per forward pass of the reasons (flagged rows, changed copies)
REASON_SEARCH_COLUMNS = 4  # columns searched per row: those with the largest driving share
SCORE_COLUMNS = [
    "anomaly_score",
    "recon_error",
    "kl",
    "score_percentile",
    "is_anomaly",
    "reasons",
    "model_name",
    "model_version",
    "threshold",
]
WEIGHTS_FILE = "weights.pt"
PREPROCESS_FILE = "preprocess.json"
DETECTOR_FILE = "detector.json"
REFERENCE_FILE = "reference.parquet"


class NotFittedError(RuntimeError):
    """A method that needs a fitted detector was called before ``fit``."""


@dataclass
class ScoreResult:
    """Scored rows (input order kept) and rejected rows (with line and reason)."""

    scored: pd.DataFrame
    rejected: pd.DataFrame
    scored_lines: np.ndarray
    warnings: list[str] = field(default_factory=list)
    # the scored rows' model columns as checked (numeric columns float), for drift monitoring
    accepted: pd.DataFrame | None = None

    @property
    def rows_read(self) -> int:
        return len(self.scored) + len(self.rejected)

    def all_rows(self) -> pd.DataFrame:
        """Scored and rejected rows together in input order, with a ``rejected_reason`` column."""
        scored = self.scored.assign(rejected_reason="", _line=self.scored_lines)
        if self.rejected.empty:
            return scored.drop(columns="_line")
        rejected = self.rejected.reindex(columns=self.scored.columns)
        rejected = rejected.assign(
            anomaly_score=np.nan,
            recon_error=np.nan,
            kl=np.nan,
            score_percentile=np.nan,
            is_anomaly=0,
            reasons="",
            rejected_reason=self.rejected["reason"].to_numpy(),
            _line=self.rejected["line"].to_numpy(),
        )
        if len(scored):
            for column in ("model_name", "model_version", "threshold"):
                rejected[column] = scored[column].iloc[0]
        both = pd.concat([scored, rejected], ignore_index=True).sort_values("_line", kind="stable")
        return both.drop(columns="_line").reset_index(drop=True).astype({"is_anomaly": "int8"})


@dataclass(frozen=True)
class ScoreStats:
    """Statistics of recon_error and KL over the training records: mean and standard
    deviation of each term, and of its log (``log(term + eps)``, ``eps`` a thousandth of the
    term's training median, so that a term of 0 stays finite)."""

    recon_mean: float
    recon_std: float
    kl_mean: float
    kl_std: float
    recon_eps: float = math.nan
    log_recon_mean: float = math.nan
    log_recon_std: float = math.nan
    kl_eps: float = math.nan
    log_kl_mean: float = math.nan
    log_kl_std: float = math.nan

    @staticmethod
    def of(recon: np.ndarray, kl: np.ndarray) -> ScoreStats:
        log_recon, log_kl = LogScale.fit(recon), LogScale.fit(kl)
        return ScoreStats(
            float(recon.mean()),
            float(recon.std()),
            float(kl.mean()),
            float(kl.std()),
            log_recon.eps,
            log_recon.mean,
            log_recon.std,
            log_kl.eps,
            log_kl.mean,
            log_kl.std,
        )

    def log_scales(self) -> tuple[LogScale, LogScale]:
        if not math.isfinite(self.log_recon_mean):
            raise ValueError("this model has no log statistics: it cannot use score=log_max")
        return (
            LogScale(self.recon_eps, self.log_recon_mean, self.log_recon_std),
            LogScale(self.kl_eps, self.log_kl_mean, self.log_kl_std),
        )


def _floor(std: float, mean: float) -> float:
    return max(std, 1e-6 * max(1.0, abs(mean)))


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return "missing"
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def _column_sums(per_feature: np.ndarray, group: np.ndarray) -> np.ndarray:
    """``per_feature @ group`` (features summed into their source columns), added one feature
    at a time in a fixed order: unlike a matrix product, whose kernel (and summation order)
    depends on the number of rows, a row's sums do not depend on the other rows."""
    out = np.zeros((per_feature.shape[0], group.shape[1]))
    for feature, column in zip(*np.nonzero(group), strict=True):
        out[:, column] += per_feature[:, feature]
    return out


def _row_totals(values: np.ndarray) -> np.ndarray:
    """Sum of each row, shape ``(n, 1)``, added column by column (see :func:`_column_sums`)."""
    return _column_sums(values, np.ones((values.shape[1], 1)))


def _reason_order(falls: np.ndarray, driving: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Column positions of each row, best explanation first (see ``AnomalyDetector.explain``).

    First the present columns whose score fall is within ``REASON_TIE`` of the best present
    one, by their share of the driving term; then the other present columns by fall; then
    the missing ones by fall.
    """
    present = np.where(missing, -np.inf, falls)
    top = present.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    near = ~missing & (falls >= top - REASON_TIE * np.abs(top))
    rank_group = np.where(near, 0, np.where(missing, 2, 1))
    within = np.where(near, -driving, -falls)
    return np.lexsort((within, rank_group), axis=1)


def _runtime_settings(saved: Settings) -> Settings:
    """A loaded model's settings: what defines the model from training, the rest from here.

    The score definition (``scoring.score``, ``scoring.kl_weight``), data roles, architecture
    and threshold come from the saved model; how to run it (inference batch size, Monte Carlo
    samples, reasons, outputs, device, tracking) comes from this machine's settings.
    """
    here = Settings()
    scoring = here.scoring.model_copy(
        update={"score": saved.scoring.score, "kl_weight": saved.scoring.kl_weight}
    )
    training = saved.training.model_copy(update={"device": here.training.device})
    return saved.model_copy(
        update={"scoring": scoring, "training": training, "tracking": here.tracking}
    )


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
        clean = clean_training_frame(frame, schema)
        rng = np.random.default_rng(s.training.seed)
        order = rng.permutation(len(clean))
        n_val = max(1, round(s.training.validation_fraction * len(clean)))
        val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
        train_part, val_part = clean.iloc[train_rows], clean.iloc[val_rows]

        pre = TabularPreprocessor(
            schema.numeric_columns, schema.categorical_columns, s.data.max_categories
        ).fit(train_part)
        x_train, x_val = pre.transform(train_part), pre.transform(val_part)

        arch = default_architecture(pre.n_features)
        vae_config = VAEConfig(
            n_features=pre.n_features,
            hidden_dims=tuple(s.model.hidden_dims) or arch["hidden_dims"],
            latent_dim=s.model.latent_dim or arch["latent_dim"],
            activation=s.model.activation,
            dropout=s.model.dropout,
            decoder_variance=s.model.decoder_variance,
            min_variance=s.model.min_variance,
        )
        t = s.training
        result = fit_vae(
            x_train,
            x_val,
            vae_config,
            TrainConfig(
                max_epochs=t.max_epochs,
                batch_size=t.batch_size,
                learning_rate=t.learning_rate,
                weight_decay=t.weight_decay,
                beta=t.beta,
                trim_fraction=t.trim_fraction,
                trim_epoch=max(2, t.max_epochs // 2),
                patience=t.patience,
                seed=t.seed,
                device=t.device,
                cpu_threads=t.cpu_threads,
            ),
            on_epoch=on_epoch,
        )
        self.schema_ = schema
        self.preprocessor_ = pre
        self.vae_config_ = vae_config
        self.model_ = result.model
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.train_seconds_ = result.train_seconds
        self.trimmed_rows_ = result.trimmed_rows
        self.device_ = result.device

        window = s.scoring.batch_rows  # the windows of scoring: the same numbers for a row
        train_terms = score_arrays(self.model_, x_train, window)
        self.score_stats_ = ScoreStats.of(train_terms.recon, train_terms.kl)
        val_terms = score_arrays(self.model_, x_val, window)
        val_scores = self._combine(val_terms.recon, val_terms.kl)
        self.threshold_ = contamination_threshold(val_scores, s.threshold.contamination)
        self.reference_quantiles_ = reference_quantiles(val_scores)
        self.validation_scores_ = val_scores
        kept = [c for c in frame.columns if c in schema.roles or c == "label"]
        self.reference_frame_ = frame.iloc[val_rows][kept].reset_index(drop=True)
        self.n_train_rows_ = len(train_part)
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

    # -- scoring ------------------------------------------------------------------------
    def _standardized(
        self, recon: np.ndarray, kl: np.ndarray, logged: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``z(recon_error)`` and ``kl_weight * z(kl)``, with training-record statistics; of
        the logs of the terms when ``logged`` (default: when the score is ``log_max``)."""
        st = self.score_stats_
        weight = self.settings.scoring.kl_weight
        if logged is None:
            logged = self.settings.scoring.score == "log_max"
        if logged:
            recon_scale, kl_scale = st.log_scales()
            return recon_scale.z(recon), weight * kl_scale.z(kl)
        z_recon = (recon - st.recon_mean) / _floor(st.recon_std, st.recon_mean)
        z_kl = weight * (kl - st.kl_mean) / _floor(st.kl_std, st.kl_mean)
        return z_recon, z_kl

    def _combine(self, recon: np.ndarray, kl: np.ndarray) -> np.ndarray:
        if self.settings.scoring.score == "sum":
            return recon + kl
        z_recon, z_kl = self._standardized(recon, kl)
        if self.settings.scoring.score in ("max", "log_max"):
            return np.maximum(z_recon, z_kl)
        return z_recon + z_kl

    def _terms(
        self, frame: pd.DataFrame, mc_samples: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, recon_error, kl) of checked rows, encoded and scored batch by batch.

        Each batch of ``scoring.batch_rows`` rows (rounded up to whole kernel panels) is
        encoded and fed to the model while it is still in the CPU cache: the encoded matrix
        of a whole chunk is never built. Every forward pass has that many rows (the last one
        padded), so a row's score does not depend on how the rows were chunked.
        """
        mc = self.settings.scoring.mc_samples if mc_samples is None else mc_samples
        step = aligned_window(self.settings.scoring.batch_rows)
        n = len(frame)
        recon, kl = np.empty(n, dtype=np.float64), np.empty(n, dtype=np.float64)
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
            )
            recon[start : start + len(x)] = terms.recon
            kl[start : start + len(x)] = terms.kl
        return self._combine(recon, kl), recon, kl

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
    ) -> ScoreResult:
        """Score every row of ``frame``: output columns as in the scoring contract.

        Rows whose values cannot be read (text or inf in a numeric column) are rejected with
        their line and a reason; :class:`SchemaError` is raised when model columns are missing.
        ``log_warnings=False`` leaves logging the returned warnings to the caller (a file scored
        in chunks logs them once, not once per chunk).
        """
        self._check_fitted()
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
        scores, recon, kl = self._terms(accepted, mc_samples)
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
        out = accepted[self.schema_.id_columns].reset_index(drop=True)
        out["anomaly_score"] = scores
        out["recon_error"] = recon
        out["kl"] = kl
        out["score_percentile"] = score_percentile(scores, self.reference_quantiles_)
        out["is_anomaly"] = flags
        out["reasons"] = ""
        flagged = np.flatnonzero(flags)
        if flagged.size:
            rows = accepted.iloc[flagged]  # checked already: encode, do not check again
            out.loc[flagged, "reasons"] = self.explain(
                rows, self.preprocessor_.transform(rows), (recon[flagged], kl[flagged])
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

    def explain(
        self,
        rows: pd.DataFrame,
        x: np.ndarray | None = None,
        terms: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[str]:
        """Top source columns of each row's score, with their share and expected value.

        A column's weight is how much the row's score falls when that column alone takes its
        most plausible value: each kept category, or each of ``REASON_QUANTILES`` training
        quantiles of a numeric column, is tried in its place (a one-column counterfactual;
        the fix of an ``amount`` that is not ``quantity x unit_price`` removes the whole
        score, a change elsewhere does not). The share is the column's part of the summed
        falls. Two columns whose falls are within ``REASON_TIE`` of the best one explain the
        row about equally well (a wrong currency is fixed as well by changing the country);
        among those, the one the score's driving term puts first comes first: its share of
        the reconstruction error (precision-weighted squared error, one-hot groups summed
        back to the column) when the reconstruction term drives the score, its share of the
        KL fall when set to its training mean when the KL term does. Missing cells come after
        present values: a missing value is named first only when no present value explains
        the row. The expected value is the column's best change (the category or training
        quantile that lowers the score most) where one lowers it, else the reconstruction in
        the column's units (the most likely category).
        ``x`` (the encoded rows) and ``terms`` (their recon_error and kl) save recomputing.
        """
        self._check_fitted()
        pre = self.preprocessor_
        if x is None:
            rows = check_scoring_frame(rows, self.schema_).accepted  # reasons for scorable rows
            x = pre.transform(rows)
        columns = self.schema_.model_columns
        sources = pre.feature_sources
        position = {c: i for i, c in enumerate(columns)}
        group = np.zeros((len(sources), len(columns)))
        group[np.arange(len(sources)), [position[s] for s in sources]] = 1.0
        recon = reconstruct(self.model_, x, REASON_WINDOW)
        driving = self._driving_term_weights(x, recon, group, terms)
        falls, best = self._counterfactual_falls(x, driving)
        missing = rows[columns].isna().to_numpy()
        order = _reason_order(falls, driving, missing)
        positive = np.maximum(falls, 0.0)
        total = _row_totals(positive)
        share = np.where(total > 0, positive / np.maximum(total, 1e-12), driving)
        expected = self._expected_values(recon, falls, best)
        k = min(self.settings.scoring.top_reasons, len(columns))
        top = order[:, :k]
        # per-row Python is limited to formatting the reasons of the (few) flagged rows
        actual = {columns[j]: rows[columns[j]].to_numpy(dtype=object) for j in np.unique(top)}
        approx = {c: "~" if c in pre.numeric_columns else "" for c in columns}
        texts = []
        for i in range(len(rows)):
            parts = []
            for j in top[i]:
                column = columns[j]
                parts.append(
                    f"{column}={_fmt(actual[column][i])} (expected {approx[column]}"
                    f"{_fmt(expected[column][i])}, {share[i, j]:.0%})"
                )
            texts.append(", ".join(parts))
        return texts

    def _expected_values(
        self, recon: np.ndarray, falls: np.ndarray, best: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Per column, in its units: the value of its best single change where that lowers the
        score, else the reconstruction (numeric) or the most likely category."""
        pre = self.preprocessor_
        columns = self.schema_.model_columns
        candidates = self._reason_candidates()
        # the decoder output with each column replaced by its best change, mapped back
        changed = recon.copy()
        for j in range(len(columns)):
            helps = falls[:, j] > 0
            for i in np.unique(best[helps, j]):
                _, features, values = candidates[i]
                rows = helps & (best[:, j] == i)
                changed[np.ix_(rows, features)] = values
        return pre.expected_values(changed)

    def _driving_term_weights(
        self,
        x: np.ndarray,
        recon: np.ndarray,
        group: np.ndarray,
        terms: tuple[np.ndarray, np.ndarray] | None,
    ) -> np.ndarray:
        """Per column, its share of the term that drives each row's score (rows sum to 1).

        Reconstruction-driven rows: the column's part of the precision-weighted squared error.
        KL-driven rows (the encoder followed an extreme value instead of failing to
        reconstruct it): how much the KL falls when the column alone is set to its training
        mean.
        """
        precision = self.model_.feature_precision().detach().cpu().numpy().astype(np.float64)
        per_column = _column_sums((x.astype(np.float64) - recon) ** 2 * precision, group)
        if terms is None:
            computed = score_arrays(self.model_, x, self.settings.scoring.batch_rows)
            terms = (computed.recon, computed.kl)
        kl_driven = self._kl_driven(*terms)
        if kl_driven.any():
            per_column[kl_driven] = self._kl_occlusion(x[kl_driven], terms[1][kl_driven], group)
        return per_column / np.maximum(_row_totals(per_column), 1e-12)

    def _reason_candidates(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(column position, encoded features, their values) of every one-column change tried.

        Numeric columns: ``REASON_QUANTILES`` quantiles (2%..98%) of the standardised
        training values (of a standard normal when no training rows were kept), with the
        missing indicator off; categoricals: each kept category. Grouped by column, in order.
        """
        cached = getattr(self, "_candidates", None)
        if cached is not None:
            return cached
        pre = self.preprocessor_
        sources = np.asarray(pre.feature_sources)
        levels = np.linspace(0.02, 0.98, REASON_QUANTILES)
        reference = None
        if not self.reference_frame_.empty and pre.numeric_columns:
            kept = check_scoring_frame(self.reference_frame_, self.schema_).accepted
            reference = pre.transform(kept)
        normal = np.array([statistics.NormalDist().inv_cdf(q) for q in levels])
        candidates: list[tuple[int, np.ndarray, np.ndarray]] = []
        for j, column in enumerate(self.schema_.model_columns):
            features = np.flatnonzero(sources == column)
            if column in pre.numeric_columns:
                value = pre.numeric_columns.index(column)  # its feature; then its indicator
                grid = normal if reference is None else np.quantile(reference[:, value], levels)
                for level in np.unique(grid):
                    values = np.zeros(len(features), np.float32)
                    values[0] = level
                    candidates.append((j, features, values))
            else:
                for k in range(len(features)):
                    values = np.zeros(len(features), np.float32)
                    values[k] = 1.0
                    candidates.append((j, features, values))
        self._candidates = candidates
        return candidates

    def _window_scores(
        self,
        x: np.ndarray,
        rows: np.ndarray,
        values: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        changes: np.ndarray | None = None,
    ) -> np.ndarray:
        """Deterministic scores of ``x[rows]``, each row changed by ``values[changes]`` where
        ``mask[changes]`` when given, built and scored ``REASON_WINDOW`` rows at a time (the
        changed copies of many rows never exist at once)."""
        scores = np.empty(len(rows))
        trial = np.empty((REASON_WINDOW, x.shape[1]), dtype=np.float32)
        for start in range(0, len(rows), REASON_WINDOW):
            part = rows[start : start + REASON_WINDOW]
            np.take(x, part, axis=0, out=trial[: len(part)])
            if values is not None and mask is not None and changes is not None:
                tried = changes[start : start + REASON_WINDOW]
                np.copyto(trial[: len(part)], values[tried], where=mask[tried])
            terms = score_arrays(self.model_, trial[: len(part)], REASON_WINDOW)
            scores[start : start + len(part)] = self._reason_scale(terms.recon, terms.kl)
        return scores

    def _reason_scale(self, recon: np.ndarray, kl: np.ndarray) -> np.ndarray:
        """The score on which reasons measure a change: the score itself, except that for
        ``log_max`` the falls are measured before the log, on ``max(z(recon), z(kl))``.

        The log is monotone within each term, so a column's best change is the same on both
        scales; the log only compresses the falls of the highest-scored rows, which would make
        near-equal explanations (currency or country) look distinct."""
        if self.settings.scoring.score != "log_max":
            return self._combine(recon, kl)
        return np.maximum(*self._standardized(recon, kl, logged=False))

    def _counterfactual_falls(
        self, x: np.ndarray, driving: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per row and column: how much the (deterministic) score falls at the column's best
        single change, and which candidate that is (its index in ``_reason_candidates``).

        Only the ``REASON_SEARCH_COLUMNS`` columns with the largest share of the driving term
        are searched (their fall is ``-inf`` elsewhere): the cost per flagged row stays
        bounded on wide tables.
        """
        candidates = self._reason_candidates()
        n, n_columns = len(x), len(self.schema_.model_columns)
        owner = np.array([c[0] for c in candidates])
        mask = np.zeros((len(candidates), x.shape[1]), dtype=bool)
        values = np.zeros((len(candidates), x.shape[1]), dtype=np.float32)
        for i, (_, features, vals) in enumerate(candidates):
            mask[i, features], values[i, features] = True, vals
        searched = np.zeros((n, n_columns), dtype=bool)
        widest = np.argsort(-driving, axis=1, kind="stable")[:, :REASON_SEARCH_COLUMNS]
        np.put_along_axis(searched, widest, True, axis=1)
        pair_row, pair_candidate = np.nonzero(searched[:, owner])  # (row, candidate) to score
        scores = self._window_scores(x, pair_row, values, mask, pair_candidate)
        # lowest score per (row, column), and which candidate gives it
        key = pair_row * n_columns + owner[pair_candidate]
        order = np.lexsort((scores, key))
        firsts = order[np.r_[True, key[order][1:] != key[order][:-1]]] if len(order) else order
        lowest = np.full((n, n_columns), np.inf)
        best = np.zeros((n, n_columns), dtype=np.int64)
        at_row, at_column = pair_row[firsts], owner[pair_candidate[firsts]]
        lowest[at_row, at_column] = scores[firsts]
        best[at_row, at_column] = pair_candidate[firsts]
        base = self._window_scores(x, np.arange(n))
        falls = np.where(searched, base[:, None] - lowest, -np.inf)
        return falls, best

    def _kl_driven(self, recon: np.ndarray, kl: np.ndarray) -> np.ndarray:
        """Rows whose score comes from the KL term rather than the reconstruction term."""
        if self.settings.scoring.score == "sum":
            return np.zeros(len(recon), dtype=bool)
        z_recon, z_kl = self._standardized(recon, kl)
        return np.asarray(z_kl > z_recon)

    def _kl_occlusion(self, x: np.ndarray, base: np.ndarray, group: np.ndarray) -> np.ndarray:
        """Per column: how much each row's KL (``base``) falls when that column is set to its
        training mean (encoded features of the held-out training rows), floored at 0."""
        if getattr(self, "_feature_means", None) is None:
            if self.reference_frame_.empty:  # no kept training rows: the standardised mean
                self._feature_means = np.zeros(x.shape[1], np.float32)
            else:
                reference = check_scoring_frame(self.reference_frame_, self.schema_).accepted
                self._feature_means = self.preprocessor_.transform(reference).mean(axis=0)
        drops = np.zeros((len(x), group.shape[1]))
        for j in range(group.shape[1]):
            features = group[:, j] > 0
            occluded = x.copy()
            occluded[:, features] = self._feature_means[features]
            drops[:, j] = base - kl_array(self.model_, occluded, REASON_WINDOW)
        return np.maximum(drops, 0.0)

    def score_samples(self, frame: pd.DataFrame) -> np.ndarray:
        """Anomaly scores only, one per row; raises if any row would be rejected."""
        self._check_fitted()
        checked = check_scoring_frame(frame, self.schema_)
        if len(checked.rejected):
            first = checked.rejected.iloc[0]
            raise SchemaError(
                f"{len(checked.rejected)} row(s) cannot be scored, first at line {first['line']}: "
                f"{first['reason']}; use score() to get them as rejected rows"
            )
        return self._terms(checked.accepted)[0]

    decision_function = score_samples

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """0 (normal) / 1 (anomaly) per row, against the fitted threshold."""
        return (self.score_samples(frame) > self.threshold_).astype(np.int8)

    def drift_reference(self) -> DriftReference | None:
        """Per-column bins of the held-out training rows, for drift monitoring (cached);
        None for a model saved without those rows (``reference.parquet``)."""
        self._check_fitted()
        if self.reference_frame_.empty:
            return None
        cached: DriftReference | None = getattr(self, "_drift_reference", None)
        if cached is None:
            cached = DriftReference.fit(self.reference_frame_, self.schema_)
            self._drift_reference = cached
        return cached

    # -- persistence --------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "format_version": FORMAT_VERSION,
            "settings": self.settings.public_dump(),
            "vae_config": self.vae_config_.to_dict(),
            "schema": self.schema_.to_dict(),
            "threshold": self.threshold_,
            "score_stats": self.score_stats_.__dict__,
            "reference_quantiles": self.reference_quantiles_.tolist(),
            "best_epoch": self.best_epoch_,
            "n_train_rows": self.n_train_rows_,
            "trimmed_rows": self.trimmed_rows_,
            "history": [h.to_dict() for h in self.history_],
        }

    def save(self, directory: str | Path) -> Path:
        """Write the fitted detector to ``directory`` (no pickled Python objects).

        Files: ``weights.pt`` (torch state dict), ``preprocess.json``, ``detector.json``
        (settings, architecture, schema, threshold, score scaling), ``reference.parquet``
        (the held-out validation rows) and ``checksums.json`` (sha256 of each file).
        """
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)
        (directory / PREPROCESS_FILE).write_text(json.dumps(self.preprocessor_.to_dict(), indent=1))
        (directory / DETECTOR_FILE).write_text(json.dumps(self.metadata(), indent=1))
        self.reference_frame_.to_parquet(directory / REFERENCE_FILE, index=False)
        write_checksums(directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> AnomalyDetector:
        """Load a detector saved by :meth:`save`, refusing any file whose checksum differs."""
        directory = Path(directory)
        verify_checksums(directory)
        meta = json.loads((directory / DETECTOR_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory}: model format {meta.get('format_version')} is not supported "
                f"(this version reads {FORMAT_VERSION})"
            )
        detector = cls(_runtime_settings(Settings.model_validate(meta["settings"])))
        detector.schema_ = TableSchema.from_dict(meta["schema"])
        detector.preprocessor_ = TabularPreprocessor.from_dict(
            json.loads((directory / PREPROCESS_FILE).read_text())
        )
        detector.vae_config_ = VAEConfig.from_dict(meta["vae_config"])
        from vae import pick_device

        target = pick_device(device or detector.settings.training.device)
        model = VAE(detector.vae_config_)
        state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        detector.model_ = model.to(target).eval()
        detector.threshold_ = float(meta["threshold"])
        detector.score_stats_ = ScoreStats(**meta["score_stats"])
        detector.reference_quantiles_ = np.asarray(meta["reference_quantiles"])
        detector.best_epoch_ = int(meta["best_epoch"])
        detector.n_train_rows_ = int(meta["n_train_rows"])
        detector.trimmed_rows_ = int(meta.get("trimmed_rows", 0))
        detector.history_ = [EpochStats(**{**h, "epoch": int(h["epoch"])}) for h in meta["history"]]
        detector.device_ = str(target)
        reference = directory / REFERENCE_FILE
        detector.reference_frame_ = (
            pd.read_parquet(reference) if reference.exists() else pd.DataFrame()
        )
        return detector
