"""The anomaly score: its definition, the output columns, and :class:`ScoreResult`.

The anomaly score. Each record gets ``recon_error`` (squared error of its encoded features,
weighted by the decoder's learned precision, or with ``scaled_elbo`` by one over the
feature's training variance, summed) and ``kl`` (KL divergence of its
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

``scoring.score=elbo`` scores a table's categorical columns by their likelihood: the negative
ELBO ``recon_error / 2 + kl``, where a categorical column's part of
``recon_error`` is ``-2 log p`` of its observed category (``vae.infer.PaddedVAE.feature_loss``)
instead of the squared error of its one-hot block, so ``recon_error / 2`` is a negative
log-likelihood and the score a bound on ``-log p(row)`` (see
``pipeline.training_setup.resolved_settings``).

Tables whose model columns are all categorical get ``scaled_elbo`` by default
(``scoring.score`` = ``auto``): the negative MSE ELBO ``recon_error / 2 + kl``, with each
encoded feature's squared error in units of its variance over the training records
(:func:`scaled_precision`) instead of the decoder's learned variance. A one-hot indicator of a
category with training share ``q`` has the variance ``q (1 - q)``, so failing to reconstruct
a category of share ``q`` costs about ``1 / q``: one value that normal rows almost never hold
counts, where the plain squared error of a one-hot block is at most 2 and the categorical
likelihood grows only like ``log 1/q`` (w7a, 300 binary columns: the negative ELBO ranked a row
with one rare value below rows with many ordinary ones); and a combination of common values
the decoder does not expect still costs its squared errors. It is the standardisation the
numeric columns already get (a standardised feature has the variance 1). The decoder's learned
variances shrink for the features it reconstructs best, so weighing by them rewards fitting
rather than measuring rarity (weights from each feature's mean squared training residual, what
a learned variance estimates, measured 74.0 / 17.3 against 75.6 / 18.2 on the categorical
tables). The variance is floored at ``VARIANCE_FLOOR`` (0.001, the decoder's probability
floor): a category seen once in 5,000 rows weighs like one seen in 1 of 1,000. Measured in
benchmarks/RESULTS.md (eighth round).

``tail_max`` (the default of the previous release for such tables) is still available: the
larger tail surprise of two views, the negative ELBO with the categorical likelihood and
Pearson's chi-square of the decoder's class probabilities (``1/p - 1`` summed over the
columns). Each view is turned into its tail surprise against the training records
(:class:`TailScale`: ``-log`` of the share of training records scoring higher), and the score
is the larger: a record is as anomalous as its rarer view.

A :class:`ScoreDefinition` (which score, the KL weight, the training statistics) is learned
state of a fitted detector, saved with it: a loaded model scores as it did when trained,
whatever the settings of the machine that loads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from vae.infer import LogScale

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


# per view of ``tail_max``, the training records' scores kept: every one up to TAIL_KNOTS + 1
# records, else that many quantiles (the top of the ranking is decided between a few training
# records: with 1,000 quantiles of 5,600 records, u2r's PR-AUC fell from 48 to 32 at seed 42)
TAIL_KNOTS = 10_000


@dataclass(frozen=True)
class TailScale:
    """The tail surprise of a non-negative score against the training records.

    ``surprise(v) = -log(1 - F(v) n / (n + 1))``, ``F`` the training records' distribution
    function of ``log(v + eps)`` (known at every record, or at ``TAIL_KNOTS + 1`` quantiles of
    more records, linear between them): ``-log`` of the share of training records scoring
    higher, ``v`` itself counted once (``(above + 1) / (n + 1)``). A value at the highest
    training score gets ``log(n + 1)``, and beyond it one more for each standard deviation of
    the training logs (the ranking goes on above the training range).

    Records tied with ``v`` do not count as higher: the scores already say how common a row
    is (the model's likelihood), and the distribution function only puts the two views of
    ``tail_max`` on one scale. Counting ties as "at least as high" would discount a value for
    the training records that share it: anomalies repeated in the training rows (u2r's
    attacks) would mask their own kind. Measured: 75.23 / 15.40 on the categorical tables
    against 75.20 / 16.24 (u2r PR-AUC 39.8 against 45.6; benchmarks/RESULTS.md).

    Unlike a z-score it puts two scores of different tails on one scale: the same surprise
    means the same share of training records above.
    """

    eps: float
    knots: tuple[float, ...]  # log(v + eps) at the quantiles 0, 1/K, ..., 1 (K + 1 knots)
    std: float
    rows: int

    @staticmethod
    def fit(values: np.ndarray) -> TailScale:
        scale = LogScale.fit(values)
        logged = np.log(values + scale.eps)
        knots = np.quantile(logged, np.linspace(0.0, 1.0, min(len(values), TAIL_KNOTS + 1)))
        return TailScale(scale.eps, tuple(float(k) for k in knots), scale.std, len(values))

    @cached_property
    def _distribution(self) -> tuple[np.ndarray, np.ndarray]:
        """The distribution function's points ``(log value, level)``, built once per scale: a
        value tied with training records is measured against the records above it, so tied
        knots keep the level of the last of them (see the class notes)."""
        knots = np.asarray(self.knots, dtype=np.float64)
        levels = np.linspace(0.0, 1.0, len(knots))
        last = np.r_[knots[1:] != knots[:-1], True]
        return knots[last], levels[last]

    def surprise(self, values: np.ndarray) -> np.ndarray:
        knots, levels = self._distribution
        with np.errstate(invalid="ignore"):  # a NaN score stays NaN
            logged = np.log(values + self.eps)
            below = np.interp(logged, knots, levels, left=0.0, right=1.0)
            beyond = np.maximum(logged - knots[-1], 0.0) / max(self.std, 1e-6)
        return -np.log1p(-below * self.rows / (self.rows + 1)) + beyond


def tail_views(
    recon: np.ndarray, kl: np.ndarray, pearson: np.ndarray, kl_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """The two views of ``tail_max``: the negative ELBO and Pearson's chi-square."""
    return 0.5 * recon + kl_weight * kl, pearson


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
    tails: tuple[TailScale, ...] = ()  # of each view of ``tail_max``
    # per encoded feature, the weight of its squared error with ``scaled_elbo``
    # (:func:`scaled_precision`)
    precision: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        # read back from JSON (dicts and lists), the objects and tuples a fitted detector holds
        tails = tuple(
            t if isinstance(t, TailScale) else TailScale(**{**t, "knots": tuple(t["knots"])})
            for t in self.tails
        )
        object.__setattr__(self, "tails", tails)
        object.__setattr__(self, "precision", tuple(float(w) for w in self.precision))

    @staticmethod
    def of(
        recon: np.ndarray,
        kl: np.ndarray,
        views: tuple[np.ndarray, ...] = (),
        precision: np.ndarray | None = None,
    ) -> ScoreStats:
        """The statistics of the training records' terms (and of ``views``, the tail
        scales of ``tail_max``: see :func:`tail_views`; ``precision``: the feature weights of
        ``scaled_elbo``)."""
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
            tuple(TailScale.fit(v) for v in views),
            () if precision is None else tuple(float(w) for w in precision),
        )

    def feature_weights(self, score: str, n_features: int) -> np.ndarray | None:
        """The feature weights of ``scaled_elbo`` (None: the decoder's precision)."""
        if score == "scaled_elbo" and len(self.precision) != n_features:
            raise ValueError(
                f"this model's score is scaled_elbo but it holds {len(self.precision)} feature "
                f"weights for {n_features} features: the model file is damaged"
            )
        return np.asarray(self.precision, dtype=np.float64) if self.precision else None

    def log_scales(self) -> tuple[LogScale, LogScale]:
        if not math.isfinite(self.log_recon_mean):
            raise ValueError("this model has no log statistics: it cannot use score=log_max")
        return (
            LogScale(self.recon_eps, self.log_recon_mean, self.log_recon_std),
            LogScale(self.kl_eps, self.log_kl_mean, self.log_kl_std),
        )


# the smallest training variance an encoded feature is measured against with ``scaled_elbo``:
# that of a category seen in about 1 row in 1,000 (the decoder's class probabilities have the
# same floor, vae.infer.CATEGORY_FLOOR)
VARIANCE_FLOOR = 1e-3


def scaled_precision(x_train: np.ndarray) -> np.ndarray:
    """Per encoded feature, ``1 / max(variance over the training rows, VARIANCE_FLOOR)``: the
    weights of ``scaled_elbo``. A one-hot indicator of a category of training share ``q`` has
    the variance ``q (1 - q)``; a standardised numeric feature has 1."""
    variance = np.asarray(x_train, dtype=np.float64).var(axis=0)
    return 1.0 / np.maximum(variance, VARIANCE_FLOOR)


def _floor(std: float, mean: float) -> float:
    return max(std, 1e-6 * max(1.0, abs(mean)))


@dataclass(frozen=True)
class ScoreDefinition:
    """How ``(recon_error, kl)`` (and for ``tail_max`` the categorical columns' chi-square,
    ``pearson``) become the anomaly score (``scoring.score``, see the module notes), with the
    training records' statistics of the terms."""

    kind: str  # log_max | elbo | scaled_elbo | tail_max | max | standardized | sum
    kl_weight: float
    stats: ScoreStats

    def standardized(
        self, recon: np.ndarray, kl: np.ndarray, logged: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``z(recon_error)`` and ``kl_weight * z(kl)``, with training-record statistics; of
        the logs of the terms when ``logged`` (default: when the score is ``log_max``)."""
        st = self.stats
        if logged is None:
            logged = self.kind == "log_max"
        if logged:
            recon_scale, kl_scale = st.log_scales()
            return recon_scale.z(recon), self.kl_weight * kl_scale.z(kl)
        z_recon = (recon - st.recon_mean) / _floor(st.recon_std, st.recon_mean)
        z_kl = self.kl_weight * (kl - st.kl_mean) / _floor(st.kl_std, st.kl_mean)
        return z_recon, z_kl

    def combine(
        self, recon: np.ndarray, kl: np.ndarray, pearson: np.ndarray | None = None
    ) -> np.ndarray:
        """The anomaly score of each record (``pearson``: :attr:`vae.Scores.pearson`, which
        ``tail_max`` needs)."""
        if self.kind == "tail_max":
            if pearson is None or len(self.stats.tails) != 2:
                raise ValueError("score=tail_max needs the categorical columns' chi-square")
            views = tail_views(recon, kl, pearson, self.kl_weight)
            tails = zip(self.stats.tails, views, strict=True)
            return np.maximum(*(scale.surprise(view) for scale, view in tails))
        if self.kind == "sum":
            return recon + kl
        # recon: twice the negative log-likelihood (scaled_elbo: of Gaussians whose variances
        # are the features' training variances)
        if self.kind in ("elbo", "scaled_elbo"):
            return 0.5 * recon + self.kl_weight * kl
        z_recon, z_kl = self.standardized(recon, kl)
        if self.kind in ("max", "log_max"):
            return np.maximum(z_recon, z_kl)
        return z_recon + z_kl

    def kl_driven(self, recon: np.ndarray, kl: np.ndarray) -> np.ndarray:
        """Rows whose score comes from the KL term rather than the reconstruction term.

        None with ``tail_max``: its chi-square view has no KL part, and the columns that make
        a row of categories surprising in either view are those of the largest ``-log p``
        (the reasons' driving weights)."""
        if self.kind in ("sum", "tail_max"):
            return np.zeros(len(recon), dtype=bool)
        z_recon, z_kl = self.standardized(recon, kl, logged=self.kind == "log_max")
        return np.asarray(z_kl > z_recon)

    def reason_scale(
        self, recon: np.ndarray, kl: np.ndarray, pearson: np.ndarray | None = None
    ) -> np.ndarray:
        """The score on which reasons measure a change: the score itself, except that for
        ``log_max`` the falls are measured before the log, on ``max(z(recon), z(kl))``.

        The log is monotone within each term, so a column's best change is the same on both
        scales; the log only compresses the falls of the highest-scored rows, which would make
        near-equal explanations (currency or country) look distinct."""
        if self.kind != "log_max":
            return self.combine(recon, kl, pearson)  # elbo: the bound itself
        return np.maximum(*self.standardized(recon, kl, logged=False))


def output_frame(
    ids: pd.DataFrame,
    scores: np.ndarray,
    recon: np.ndarray,
    kl: np.ndarray,
    percentile: np.ndarray,
    flags: np.ndarray,
) -> pd.DataFrame:
    """The scored rows in the output contract's column order: ``ids`` (passthrough columns),
    then :data:`SCORE_COLUMNS` (``reasons`` empty, the model columns to be filled in)."""
    out = ids.reset_index(drop=True)
    out["anomaly_score"] = scores
    out["recon_error"] = recon
    out["kl"] = kl
    out["score_percentile"] = percentile
    out["is_anomaly"] = flags
    out["reasons"] = ""
    return out
