"""Thresholds and calibrated scores: pure functions of score arrays.

Training sets a model's threshold from the scores of the validation split (rows held out from
training) by one of three rules (:class:`~pipeline.config.ThresholdSettings`,
:func:`fit_threshold`): a ``contamination`` (the share of rows like the training data to
flag), a ``target_fpr`` (the most validation rows, taken as normal, allowed above it) or a
``fixed_score``. A scoring run may use another cut-off (``scoring.threshold``); its expected
flag rate then comes from the model's validation score quantiles (:func:`share_above`).
"""

from __future__ import annotations

import numpy as np

from pipeline.config import ThresholdSettings

N_REFERENCE_QUANTILES = 1001


def _finite(scores: np.ndarray) -> np.ndarray:
    finite = np.asarray(scores, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        raise ValueError("no finite score to choose a threshold from")
    return finite


def contamination_threshold(scores: np.ndarray, contamination: float) -> float:
    """The ``1 - contamination`` quantile: about that share of such scores lies above it."""
    if not 0 < contamination < 1:
        raise ValueError(f"contamination must be in (0, 1), got {contamination}")
    return float(np.quantile(_finite(scores), 1.0 - contamination))


def fpr_threshold(scores: np.ndarray, target_fpr: float) -> float:
    """The lowest of ``scores`` with at most ``target_fpr`` of them strictly above it."""
    if not 0 < target_fpr < 1:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    ordered = np.sort(_finite(scores))
    allowed = int(np.floor(target_fpr * ordered.size + 1e-9))  # rows allowed above
    return float(ordered[ordered.size - 1 - min(allowed, ordered.size - 1)])


def fit_threshold(validation_scores: np.ndarray, settings: ThresholdSettings) -> float:
    """The model's threshold from its validation scores, by the rule ``settings`` names."""
    if settings.fixed_score is not None:
        return float(settings.fixed_score)
    if settings.target_fpr is not None:
        return fpr_threshold(validation_scores, settings.target_fpr)
    return contamination_threshold(validation_scores, settings.contamination)


def reference_quantiles(scores: np.ndarray, n: int = N_REFERENCE_QUANTILES) -> np.ndarray:
    """A compact sorted summary of a score distribution (``n`` evenly spaced quantiles)."""
    finite = scores[np.isfinite(scores)]
    return np.quantile(finite, np.linspace(0.0, 1.0, n))


def score_percentile(scores: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Percentile (0-100) of each score within the reference distribution."""
    ranks = np.searchsorted(quantiles, scores, side="right")
    return 100.0 * ranks / len(quantiles)


def share_above(quantiles: np.ndarray, cut: float) -> float:
    """The share of a distribution above ``cut``, from its evenly spaced ``quantiles``
    (interpolated between them; 0 above the highest, 1 below the lowest)."""
    quantiles = np.asarray(quantiles, dtype=np.float64)
    if quantiles.size < 2:
        return float("nan")
    levels = np.linspace(0.0, 1.0, quantiles.size)
    # np.interp needs increasing x: where quantiles repeat, the highest level of a value wins
    values, last = np.unique(quantiles[::-1], return_index=True)
    below = np.interp(cut, values, levels[::-1][last], left=0.0, right=1.0)
    return float(1.0 - below)


def expected_flag_rate(
    settings: ThresholdSettings, quantiles: np.ndarray, cut: float, overridden: bool
) -> float:
    """The share of rows like the validation split that ``cut`` flags: the contamination when
    the model's threshold was set by it, else read off the validation score quantiles."""
    if not overridden and settings.target_fpr is None and settings.fixed_score is None:
        return settings.contamination
    return share_above(quantiles, cut)
