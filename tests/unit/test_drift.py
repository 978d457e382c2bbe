"""Per-column drift of a batch against the training data (pipeline/drift.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Settings
from pipeline.drift import DriftAccumulator, DriftReference, DriftReport
from pipeline.sample_data import make_table
from pipeline.schema import TableSchema, infer_schema


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    return make_table(4000, seed=21, anomaly_rate=0.0)


@pytest.fixture(scope="module")
def schema(training: pd.DataFrame) -> TableSchema:
    return infer_schema(training, Settings().data)


@pytest.fixture(scope="module")
def reference(training: pd.DataFrame, schema: TableSchema) -> DriftReference:
    return DriftReference.fit(training, schema)


@pytest.fixture
def batch() -> pd.DataFrame:
    """Drawn like the training data (another seed)."""
    return make_table(3000, seed=22, anomaly_rate=0.0)


def drift_of(reference: DriftReference, frame: pd.DataFrame) -> DriftReport:
    return DriftAccumulator(reference).update(frame).result()


def by_column(report: DriftReport) -> dict[str, str]:
    return {c.column: c.status for c in report.columns}


def test_reference_bins(reference: DriftReference, schema: TableSchema) -> None:
    columns = {c.column: c for c in reference.columns}
    assert set(columns) == set(schema.model_columns)  # the id column is left out
    amount = columns["amount"]
    assert amount.kind == "numeric" and len(amount.edges) == 9  # deciles: 10 value bins
    assert min(amount.counts[:-1]) > 0  # every value bin holds training rows
    assert columns["quantity"].n_bins < amount.n_bins  # few distinct values, fewer bins
    channel = columns["channel"]
    assert channel.categories == ["pos", "online", "mobile"]  # by frequency
    assert channel.counts[-1] > 0  # the generator leaves ~1% of channels missing
    assert channel.rows == 4000


def test_batch_like_training_is_not_drifted(reference: DriftReference, batch: pd.DataFrame) -> None:
    report = drift_of(reference, batch)
    assert report.rows == 3000
    assert not report.drifted
    assert report.warning == ""
    assert set(by_column(report).values()) == {"ok"}
    assert max(c.psi for c in report.columns) < 0.05
    assert max(c.ks for c in report.columns if c.ks is not None) < 0.05


def test_shifted_numeric_column_drifts_and_is_named(
    reference: DriftReference, training: pd.DataFrame, batch: pd.DataFrame
) -> None:
    # given a numeric column moved by 2 standard deviations
    batch["distance_km"] = batch["distance_km"] + 2 * training["distance_km"].std()
    # when
    report = drift_of(reference, batch)
    # then only that column drifts, and the warning names it
    assert report.drifted
    statuses = by_column(report)
    assert statuses["distance_km"] == "drift"
    assert {s for c, s in statuses.items() if c != "distance_km"} == {"ok"}
    assert "distance_km" in report.warning
    shifted = next(c for c in report.columns if c.column == "distance_km")
    assert shifted.ks is not None and shifted.ks > 0.5


def test_changed_category_mix_drifts(reference: DriftReference, batch: pd.DataFrame) -> None:
    batch["channel"] = np.where(np.arange(len(batch)) % 4 == 0, "pos", "mobile")  # 25% / 75%
    report = drift_of(reference, batch)
    assert report.drifted
    assert by_column(report)["channel"] == "drift"
    assert report.worst[0].column == "channel"
    assert "channel" in report.warning and "'mobile'" in report.warning


def test_unseen_category_counts_in_the_other_bin(
    reference: DriftReference, batch: pd.DataFrame
) -> None:
    batch.loc[batch.index[:600], "currency"] = "XBT"  # 20% of a currency never seen
    report = drift_of(reference, batch)
    currency = next(c for c in report.columns if c.column == "currency")
    assert currency.status == "drift"
    assert currency.largest_change.startswith("(other): 0.0% -> 20.0%")


def test_missing_values(reference: DriftReference, batch: pd.DataFrame) -> None:
    # given a column never missing in training, 30% missing here; an all-missing categorical
    batch.loc[batch.index[::3], "amount"] = np.nan
    batch["country"] = None
    batch["hour"] = batch["hour"].astype(float)
    batch.loc[batch.index[:30], "hour"] = np.inf  # inf counts as missing, as in training
    report = drift_of(reference, batch)
    columns = {c.column: c for c in report.columns}
    amount = columns["amount"]
    assert amount.missing_rate_reference == 0.0
    assert amount.missing_rate_batch == pytest.approx(1 / 3, abs=1e-3)
    assert amount.status == "drift"
    assert amount.largest_change.startswith("(missing)")
    assert columns["country"].missing_rate_batch == 1.0
    assert columns["country"].status == "drift"
    assert columns["hour"].missing_rate_batch == pytest.approx(0.01)
    # the rate of a column missing as often as in training is no drift
    age = columns["customer_age"]
    assert 0.03 < age.missing_rate_reference < 0.07 and age.status == "ok"
    assert np.isfinite([c.psi for c in report.columns]).all()


def test_chunked_and_merged_equal_whole(reference: DriftReference, batch: pd.DataFrame) -> None:
    batch.loc[batch.index[:400], "unit_price"] *= 10  # something to measure
    whole = drift_of(reference, batch).to_dict()
    chunked = DriftAccumulator(reference)
    for chunk in np.array_split(np.arange(len(batch)), [1, 100, 101, 1700]):
        chunked.update(batch.iloc[chunk])
    assert chunked.rows == len(batch)
    assert chunked.result().to_dict() == whole  # exactly, not approximately
    first, second = DriftAccumulator(reference), DriftAccumulator(reference)
    first.update(batch.iloc[:1234])
    second.update(batch.iloc[1234:])
    assert first.merge(second).result().to_dict() == whole


def test_json_round_trip(reference: DriftReference, batch: pd.DataFrame) -> None:
    restored = DriftReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert restored == reference
    batch["channel"] = "online"
    report = drift_of(restored, batch)
    assert report.to_dict() == drift_of(reference, batch).to_dict()
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["drifted"] is True and "channel" in as_json["warning"]
    assert DriftReport.from_dict(as_json) == report


def test_small_batch_raises_no_alarm(reference: DriftReference, batch: pd.DataFrame) -> None:
    # even a badly shifted batch of 30 rows is too small to judge
    small = batch.iloc[:30].copy()
    small["distance_km"] += 1000.0
    report = drift_of(reference, small)
    assert not report.drifted and report.warning == ""
    assert "too few" in report.note
    assert max(c.psi for c in report.columns) > 0.25  # the numbers are still reported
    # and random batches of 60-200 rows drawn like training raise no alarm either
    rng = np.random.default_rng(0)
    for size in (60, 100, 200):
        for _ in range(5):
            rows = rng.choice(len(batch), size=size, replace=False)
            sample = drift_of(reference, batch.iloc[rows])
            assert set(by_column(sample).values()) == {"ok"}, (size, sample.worst)


def test_reader_spellings_agree() -> None:
    # given training read by pandas (bools, float codes) and a batch read by pyarrow (text)
    training = pd.DataFrame({"flag": [True, False] * 200, "code": [1.0, 2.0, np.nan, 3.0] * 100})
    schema = TableSchema({"flag": "categorical", "code": "categorical"})
    batch = pd.DataFrame({"flag": ["true", "false"] * 100, "code": ["1", "2", None, "3"] * 50})
    report = drift_of(DriftReference.fit(training, schema), batch)
    assert max(c.psi for c in report.columns) < 1e-9


def test_numeric_text_chunk_is_parsed(reference: DriftReference, batch: pd.DataFrame) -> None:
    as_text = batch.astype({"hour": str})
    assert drift_of(reference, as_text).to_dict() == drift_of(reference, batch).to_dict()


def test_chunk_without_a_model_column_is_refused(
    reference: DriftReference, batch: pd.DataFrame
) -> None:
    with pytest.raises(ValueError, match="amount"):
        DriftAccumulator(reference).update(batch.drop(columns="amount"))
