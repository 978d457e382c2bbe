"""The reasons of flagged rows name the column that was planted wrong (committed sample data).

The sample batch plants anomalies of four kinds and records the column(s) each one altered
(``anomaly_column``). For every kind planted in a single column, the first column named in
``reasons`` (``amount=256.0 (expected between 25 and 87, 30%), quantity=4 (...)``) is that column for at
least 80% of the flagged rows of the kind: an analyst reading the reasons is sent to the right
column. The same holds for at least 70% of the higher-scored half of each kind, flagged or not
(how many rows of a kind the 1% threshold lets through depends on the score definition).
Reasons rank columns by how much the score falls when the column alone takes its most
plausible value (``AnomalyDetector.explain``).

``extreme_price`` is planted in two columns: it rescales ``unit_price`` and ``amount``
together. For the merchants whose training rows always have quantity 1, ``unit_price ==
amount`` in every training row, and changing the merchant category alone (fuel -> travel)
makes such a row normal while changing either price column alone does not: the model names
``merchant_category`` first. The check that the first reason is one of the two planted
columns is kept as a strict expected failure, so that a fix is noticed.
"""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.detector import AnomalyDetector

MIN_TOP_REASON_SHARE = 0.80
# at the default 1% threshold the batch flags one amount mismatch (the kind's other 49 rows
# score below the threshold); the check of the upper half of every kind below does not depend
# on how many rows of a kind the threshold lets through
MIN_FLAGGED_PER_KIND = 1
MIN_UPPER_HALF_SHARE = 0.70
TOP_COLUMN = r"^\s*([^=,]+?)="  # the column of the first reason
TWO_COLUMNS = (
    "a wrong merchant category explains these rows with one change, a wrong price does not "
    "(see the module docstring)"
)


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


def _top_reasons(scored: pd.DataFrame, kind: str, planted: str) -> tuple[pd.Series, str]:
    rows = scored[scored["anomaly_kind"] == kind]
    assert (rows["anomaly_column"] == planted).all()
    flagged = rows[rows["is_anomaly"] == 1]
    top = flagged["reasons"].str.extract(TOP_COLUMN, expand=False)
    measured = f"{kind}: top reasons of {len(flagged)} flagged rows {top.value_counts().to_dict()}"
    assert len(flagged) >= MIN_FLAGGED_PER_KIND, measured
    return top, measured


@pytest.mark.parametrize(
    ("kind", "column"),
    [
        ("currency_mismatch", "currency"),
        ("distance_spike", "distance_km"),
        ("amount_mismatch", "amount"),
    ],
)
def test_top_reason_is_the_planted_column(
    scored_sample: pd.DataFrame, kind: str, column: str
) -> None:
    top, measured = _top_reasons(scored_sample, kind, column)
    assert (top == column).mean() >= MIN_TOP_REASON_SHARE, measured


@pytest.mark.parametrize(
    ("kind", "column"),
    [
        ("currency_mismatch", "currency"),
        ("distance_spike", "distance_km"),
        ("amount_mismatch", "amount"),
    ],
)
def test_top_reason_of_the_higher_scored_half_of_each_kind(
    sample_tables: tuple[pd.DataFrame, pd.DataFrame],
    sample_detector: AnomalyDetector,
    kind: str,
    column: str,
) -> None:
    # flagged or not: the 25 rows of the kind that score at least its median (measured on
    # the committed batch: currency 88%, distance_km 100%, amount 76%)
    batch = sample_tables[1]
    rows = batch[batch["anomaly_kind"] == kind]
    scores = sample_detector.score_samples(rows)
    upper = rows[scores >= pd.Series(scores).median()]
    top = pd.Series(sample_detector.explain(upper)).str.extract(TOP_COLUMN, expand=False)
    measured = f"{kind}: top reasons of {len(upper)} rows {top.value_counts().to_dict()}"
    assert (top == column).mean() >= MIN_UPPER_HALF_SHARE, measured


def test_every_kind_but_one_is_planted_in_a_single_column(scored_sample: pd.DataFrame) -> None:
    planted = scored_sample[scored_sample["anomaly_kind"] != ""]
    columns = planted.groupby("anomaly_kind")["anomaly_column"].unique().to_dict()
    assert {kind: list(values) for kind, values in columns.items()} == {
        "amount_mismatch": ["amount"],
        "currency_mismatch": ["currency"],
        "distance_spike": ["distance_km"],
        "extreme_price": ["unit_price+amount"],
    }


@pytest.mark.xfail(strict=True, reason=TWO_COLUMNS)
def test_two_column_kind_names_one_of_its_columns(scored_sample: pd.DataFrame) -> None:
    top, measured = _top_reasons(scored_sample, "extreme_price", "unit_price+amount")
    assert top.isin(["unit_price", "amount"]).mean() >= MIN_TOP_REASON_SHARE, measured
