"""The reasons of flagged rows name the column that was planted wrong (committed sample data).

The sample batch plants anomalies of several kinds, each recorded with one column
(``anomaly_column``). For the flagged rows of each kind, the first column named in
``reasons`` (``amount=9800 (expected ~120, 45%), country=XX (...)``) should be the planted one
for at least 80% of them: an analyst reading the reasons is sent to the right column.

Met for ``currency_mismatch`` (a categorical combination) and ``distance_spike`` (an extreme
value the latent code follows: KL-driven, explained by KL occlusion). Not met, and kept as
strict expected failures so that a fix is noticed:

- ``extreme_price`` rescales ``unit_price`` *and* ``amount`` together; for the merchants whose
  training rows always have quantity 1, ``unit_price == amount`` in every training row, so the
  data cannot tell the two apart, and the model explains the row as another merchant
  ("merchant_category=fuel (expected travel)"), which every attribution tried also found
  (benchmarks/RESULTS.md lists them);
- ``amount_mismatch``: only 1-2 rows of the kind are flagged at the 1% threshold, and their
  top reason is a categorical column.
"""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.detector import AnomalyDetector

MIN_TOP_REASON_SHARE = 0.80
MIN_FLAGGED_PER_KIND = 2
TOP_COLUMN = r"^\s*([^=,]+?)="  # the column of the first reason
NOT_MET = "the model attributes these rows to another column (see the module docstring)"


@pytest.fixture(scope="module")
def scored_sample(
    sample_tables: tuple[pd.DataFrame, pd.DataFrame], sample_detector: AnomalyDetector
) -> pd.DataFrame:
    """The sample batch with its scoring output, scored by the session's default detector."""
    batch = sample_tables[1]
    result = sample_detector.score(batch)
    assert result.rejected.empty  # every sample row is scorable, so rows line up with batch
    labels = batch[["anomaly_kind", "anomaly_column"]].fillna("").reset_index(drop=True)
    return pd.concat([labels, result.scored[["is_anomaly", "reasons"]]], axis=1)


@pytest.mark.parametrize(
    ("kind", "column"),
    [
        ("currency_mismatch", "currency"),
        ("distance_spike", "distance_km"),
        pytest.param(
            "extreme_price", "unit_price", marks=pytest.mark.xfail(strict=True, reason=NOT_MET)
        ),
        pytest.param(
            "amount_mismatch", "amount", marks=pytest.mark.xfail(strict=True, reason=NOT_MET)
        ),
    ],
)
def test_top_reason_is_the_planted_column(
    scored_sample: pd.DataFrame, kind: str, column: str
) -> None:
    planted = scored_sample[scored_sample["anomaly_kind"] == kind]
    assert (planted["anomaly_column"] == column).all()
    flagged = planted[planted["is_anomaly"] == 1]
    top = flagged["reasons"].str.extract(TOP_COLUMN, expand=False)
    measured = f"{kind}: top reasons of {len(flagged)} flagged rows {top.value_counts().to_dict()}"
    assert len(flagged) >= MIN_FLAGGED_PER_KIND, measured
    assert (top == column).mean() >= MIN_TOP_REASON_SHARE, measured
