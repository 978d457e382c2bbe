"""Thresholds and calibrated scores: pure functions of score arrays."""

from __future__ import annotations

import numpy as np

N_REFERENCE_QUANTILES = 1001


def contamination_threshold(scores: np.ndarray, contamination: float) -> float:
    """The ``1 - contamination`` quantile: about that share of such scores lies above it."""
    if not 0 < contamination < 1:
        raise ValueError(f"contamination must be in (0, 1), got {contamination}")
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        raise ValueError("no finite score to choose a threshold from")
    return float(np.quantile(finite, 1.0 - contamination))


def reference_quantiles(scores: np.ndarray, n: int = N_REFERENCE_QUANTILES) -> np.ndarray:
    """A compact sorted summary of a score distribution (``n`` evenly spaced quantiles)."""
    finite = scores[np.isfinite(scores)]
    return np.quantile(finite, np.linspace(0.0, 1.0, n))


def score_percentile(scores: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Percentile (0-100) of each score within the reference distribution."""
    ranks = np.searchsorted(quantiles, scores, side="right")
    return 100.0 * ranks / len(quantiles)
