"""Detection quality on the committed sample data, with the default settings."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

COMBINATION_KINDS = ("currency_mismatch", "amount_mismatch")


def test_sample_detection_quality(sample_tables, sample_detector):
    batch, detector = sample_tables[1], sample_detector
    scores = detector.score(batch).scored["anomaly_score"].to_numpy()
    labels = batch["label"].to_numpy()
    assert roc_auc_score(labels, scores) >= 0.95
    normal = labels == 0
    for kind in COMBINATION_KINDS:
        # every value of these rows is normal on its own; only the combination is wrong
        rows = normal | (batch["anomaly_kind"] == kind).to_numpy()
        assert roc_auc_score(labels[rows], scores[rows]) >= 0.85, kind
    # about `contamination` of normal-looking rows are flagged, far more of the planted ones
    flagged = scores > detector.threshold_
    assert flagged[normal].mean() < 0.03
    assert flagged[~normal].mean() > 5 * flagged[normal].mean()
    assert np.isfinite(scores).all()
