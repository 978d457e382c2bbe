"""The reasons of flagged rows point to the columns that were planted wrong (committed sample data).

The sample batch plants anomalies of four kinds and records the column(s) each one altered
(``anomaly_column``). Reasons rank columns by how much the score falls when the column alone
takes its most plausible value (``AnomalyDetector.explain``), and the first column named in
``reasons`` (``amount=256.0 (expected between 25 and 87, 30%), quantity=4 (...)``) sends an
analyst to a column.

A distance spike breaks one column: the first reason names it. The two relationship kinds
break a relation between columns, and the first reason names a column of that relation for at
least 80% of the flagged rows of the kind and 90% of its higher-scored half (flagged or not):

- ``currency_mismatch`` (the currency of another country): ``currency`` or ``country``. The
  data cannot tell a wrong currency from a wrong country (the generator draws the country and
  derives the currency; ``GB / EUR`` is as much a ``DE`` row with a wrong country), and which of
  the two comes first is a coin toss between model seeds: ``currency`` first for 22, 6 and 13
  of the 25 higher-scored rows with seeds 42, 43 and 44 (benchmarks/RESULTS.md, sixth round).
- ``amount_mismatch`` (amount is not quantity x unit price): ``amount``, ``unit_price`` or
  ``quantity``. Here the planted column is the more plausible one (the unit price that would
  make the row whole is 4-5x the merchant's usual one), and ``amount`` is the most named column
  for more than half of the higher-scored rows (17-19 of 25 over those seeds).

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
MIN_UPPER_HALF_SHARE = 0.90
TOP_COLUMN = r"^\s*([^=,]+?)="  # the column of the first reason
RELATION = {  # the columns of the relation (or the one column) each kind breaks
    "currency_mismatch": ["currency", "country"],
    "distance_spike": ["distance_km"],
    "amount_mismatch": ["amount", "unit_price", "quantity"],
}
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


def _upper_half_top_reasons(
    sample_tables: tuple[pd.DataFrame, pd.DataFrame], detector: AnomalyDetector, kind: str
) -> tuple[pd.Series, str]:
    """The first reason of each row of ``kind`` that scores at least the kind's median."""
    batch = sample_tables[1]
    rows = batch[batch["anomaly_kind"] == kind]
    scores = detector.score_samples(rows)
    upper = rows[scores >= pd.Series(scores).median()]
    top = pd.Series(detector.explain(upper)).str.extract(TOP_COLUMN, expand=False)
    return top, f"{kind}: top reasons of {len(upper)} rows {top.value_counts().to_dict()}"


@pytest.mark.parametrize(("kind", "planted"), [(k, RELATION[k][0]) for k in RELATION])
def test_top_reason_names_the_broken_relation(
    scored_sample: pd.DataFrame, kind: str, planted: str
) -> None:
    top, measured = _top_reasons(scored_sample, kind, planted)
    assert top.isin(RELATION[kind]).mean() >= MIN_TOP_REASON_SHARE, measured


@pytest.mark.parametrize("kind", list(RELATION))
def test_top_reason_of_the_higher_scored_half_of_each_kind(
    sample_tables: tuple[pd.DataFrame, pd.DataFrame],
    sample_detector: AnomalyDetector,
    kind: str,
) -> None:
    # flagged or not: the 25 rows of the kind that score at least its median (measured on the
    # committed batch with seeds 42, 43 and 44: 100% for each kind)
    top, measured = _upper_half_top_reasons(sample_tables, sample_detector, kind)
    assert top.isin(RELATION[kind]).mean() >= MIN_UPPER_HALF_SHARE, measured


def test_an_amount_mismatch_is_blamed_on_the_amount_first(
    sample_tables: tuple[pd.DataFrame, pd.DataFrame], sample_detector: AnomalyDetector
) -> None:
    # of the relation's columns the planted one is the plausible culprit: the most named
    top, measured = _upper_half_top_reasons(sample_tables, sample_detector, "amount_mismatch")
    counts = top.value_counts()
    assert counts.index[0] == "amount" and counts["amount"] > len(top) / 2, measured


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
