"""The promotion gate's rules, with detectors whose scores are controlled."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.promotion import gate
from pipeline.scoring import ScoreResult


class FixedScores:
    """Stands in for a detector: returns the given scores, flags above the threshold."""

    def __init__(self, scores: np.ndarray, threshold: float) -> None:
        self.scores = scores
        self.threshold = threshold

    def score(
        self, frame: pd.DataFrame, source: str = "", log_warnings: bool = True
    ) -> ScoreResult:
        scored = pd.DataFrame(
            {"anomaly_score": self.scores, "is_anomaly": (self.scores > self.threshold).astype(int)}
        )
        return ScoreResult(
            scored=scored, rejected=pd.DataFrame(), scored_lines=np.arange(len(scored))
        )


def _reference(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.1).astype(int)
    return pd.DataFrame({"label": labels}), labels, rng


def test_a_sane_candidate_passes_without_labels():
    reference, _, rng = _reference()
    scores = rng.normal(size=1000)
    candidate = FixedScores(scores, np.quantile(scores, 0.99))
    result = gate(candidate, reference.drop(columns="label"), 0.01)  # type: ignore[arg-type]
    assert result.passed, result.failures
    assert 0.005 <= result.metrics["flag_rate"] <= 0.02


def test_flag_rate_outside_the_band_fails():
    reference, _, rng = _reference()
    scores = rng.normal(size=1000)
    candidate = FixedScores(scores, np.quantile(scores, 0.9))  # flags 10% for contamination 1%
    result = gate(candidate, reference, 0.01)  # type: ignore[arg-type]
    assert not result.passed
    assert "flag rate" in result.failures[0]


def test_non_finite_scores_fail():
    reference, _, rng = _reference()
    scores = rng.normal(size=1000)
    threshold = np.quantile(scores, 0.99)
    scores[3] = np.nan
    result = gate(FixedScores(scores, threshold), reference, 0.01)  # type: ignore[arg-type]
    assert not result.passed and any("not finite" in f for f in result.failures)


def test_a_worse_roc_auc_than_the_champion_fails_only_with_labels():
    reference, labels, rng = _reference()
    good = labels * 2.0 + rng.normal(size=1000)
    bad = labels * 0.5 + rng.normal(size=1000)
    champion = FixedScores(good, np.quantile(good, 0.99))
    candidate = FixedScores(bad, np.quantile(bad, 0.99))
    result = gate(candidate, reference, 0.01, champion)  # type: ignore[arg-type]
    assert not result.passed
    assert "below the champion's" in result.failures[-1]
    assert result.metrics["roc_auc"] < result.metrics["champion_roc_auc"] - 0.01
    # the same candidate against itself passes the comparison
    assert gate(candidate, reference, 0.01, candidate).passed  # type: ignore[arg-type]
