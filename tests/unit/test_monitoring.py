"""Streaming aggregates of a scoring run and the flag-rate rule (pipeline/monitoring.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.monitoring import ScoreHistogram, TopAnomalies, flag_rate_warning


def test_score_histogram_streams_and_counts_outliers_in_the_outer_bins() -> None:
    rng = np.random.default_rng(1)
    validation = rng.normal(size=500)
    inside = rng.uniform(validation.min(), validation.max(), size=3000)
    scores = np.concatenate([inside, [-100.0, 1e9, np.nan]])
    whole = ScoreHistogram.for_threshold(validation, threshold=2.5).update(scores)
    assert whole.edges[0] == validation.min() and whole.edges[-1] > validation.max()
    assert whole.total == 3002  # NaN ignored, the two outliers counted
    assert (whole.below, whole.above) == (1, 1)
    assert whole.counts[0] >= 1 and whole.counts[-1] >= 1
    chunked = ScoreHistogram.for_threshold(validation, threshold=2.5)
    for part in np.array_split(scores, 7):
        chunked.update(part)
    assert np.array_equal(chunked.counts, whole.counts)
    merged = ScoreHistogram(whole.edges).update(scores[:1000])
    merged.merge(ScoreHistogram(whole.edges).update(scores[1000:]))
    assert np.array_equal(merged.counts, whole.counts)
    restored = ScoreHistogram.from_dict(whole.to_dict())
    assert np.array_equal(restored.counts, whole.counts) and restored.above == 1
    # the data's own range, whatever the bins: for the figure's axis and legend
    for histogram in (whole, chunked, merged, restored):
        assert (histogram.lowest, histogram.highest) == (-100.0, 1e9)
    empty = ScoreHistogram(whole.edges)
    assert ScoreHistogram.from_dict(empty.to_dict()).highest == -np.inf
    assert ScoreHistogram.from_dict({"edges": [0, 1], "counts": [3]}).lowest == np.inf  # old


def test_top_anomalies_keeps_the_highest_rows_across_chunks() -> None:
    rng = np.random.default_rng(2)
    scored = pd.DataFrame(
        {
            "record_id": [f"R{i}" for i in range(500)],
            "anomaly_score": rng.normal(size=500),
            "recon_error": 0.0,
            "score_percentile": 50.0,
            "reasons": "",
        }
    )
    top = TopAnomalies(n=10)
    for part in np.array_split(np.arange(500), 9):
        top.update(scored.iloc[part])
    expected = scored.nlargest(10, "anomaly_score")
    kept = top.frame()
    assert list(kept.columns) == ["record_id", "anomaly_score", "score_percentile", "reasons"]
    assert kept["record_id"].tolist() == expected["record_id"].tolist()


def test_flag_rate_warning_rule() -> None:
    # 110 of 10002 flagged for 1% expected: fine; 4x and 0.3x: a sentence
    assert flag_rate_warning(110, 10_002, 0.01) == ""
    assert "more than the expected 1.00%" in flag_rate_warning(400, 10_002, 0.01)
    assert "fewer than the expected" in flag_rate_warning(30, 10_002, 0.01)
    # 3 of 100 rows: too few expected flags (1) to judge; no expected rate: nothing to judge
    assert flag_rate_warning(3, 100, 0.01) == ""
    assert flag_rate_warning(500, 10_002, 0.0) == ""
