"""Scoring a file in chunks gives exactly the outputs of scoring it whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.batch import score_file
from pipeline.detector import AnomalyDetector
from pipeline.ingest import iter_scoring_chunks
from pipeline.outputs import FLAGGED_FILE, MANIFEST_FILE, REJECTED_FILE, SCORED_FILE
from pipeline.registry import ModelRef
from pipeline.report import render_training_report
from pipeline.sample_data import make_table
from tests.conftest import mixed_frame, quick_settings

REF = ModelRef(name="vae-anomaly", version="3", run_id="r1", alias="champion")
WHOLE = 10**9  # rows per chunk: the whole file in one chunk


@pytest.fixture(scope="module")
def detector() -> AnomalyDetector:
    return AnomalyDetector(quick_settings()).fit(make_table(1500, seed=11))


def _dirty_csv(path: Path) -> Path:
    """A batch with what real exports hold: malformed lines, text and inf in numeric columns,
    blank lines, a quoted value spanning lines, an extra column, missing values."""
    frame = make_table(3000, seed=12, anomaly_rate=0.05).assign(note="ok")
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[[10, 1700], "amount"] = "abc"
    frame.loc[2900, "amount"] = "inf"
    frame.loc[1200, "note"] = "two\nlines"
    lines = frame.to_csv(index=False).split("\n")
    lines.insert(500, "T99,only,three")  # malformed: too few fields
    lines.insert(1500, "")  # blank line
    lines.insert(2500, lines[2500] + ",extra")  # malformed: too many fields
    path.write_text("\n".join(lines))
    return path


def _score(detector: AnomalyDetector, path: Path, root: Path, chunk_rows: int) -> Path:
    detector.settings = detector.settings.with_overrides(scoring={"chunk_rows": chunk_rows})
    manifest = score_file(detector, REF, path, root, "2026-05-01", force=True)
    return Path(manifest.output_dir)


def _same_outputs(whole: Path, chunked: Path) -> None:
    pd.testing.assert_frame_equal(
        pd.read_parquet(whole / SCORED_FILE), pd.read_parquet(chunked / SCORED_FILE)
    )
    assert pq.read_schema(whole / SCORED_FILE) == pq.read_schema(chunked / SCORED_FILE)
    for name in (FLAGGED_FILE, REJECTED_FILE):
        assert (whole / name).read_bytes() == (chunked / name).read_bytes(), name
    facts = [json.loads((d / MANIFEST_FILE).read_text()) for d in (whole, chunked)]
    for key in ("rows_read", "rows_scored", "rows_rejected", "rows_flagged"):
        assert facts[0][key] == facts[1][key], key
    # the Parquet bytes differ by row groups (one per chunk); its rows were compared above


def test_chunked_csv_scoring_equals_whole_file_scoring(detector, tmp_path):
    path = _dirty_csv(tmp_path / "batch.csv")
    assert len(list(iter_scoring_chunks(path, chunk_rows=100))) > 10  # really chunked
    whole = _score(detector, path, tmp_path / "whole", WHOLE)
    chunked = _score(detector, path, tmp_path / "chunked", 100)
    _same_outputs(whole, chunked)
    facts = json.loads((whole / MANIFEST_FILE).read_text())
    assert facts["rows_read"] == 3002 and facts["rows_rejected"] == 5
    assert facts["rows_flagged"] > 0
    rejected = pd.read_csv(whole / REJECTED_FILE)
    # physical lines, after the blank line and the record spanning two lines
    expected = {"abc": [12, 1705], "inf": [2906]}
    for value, lines in expected.items():
        rows = rejected[rejected["reason"].str.contains(f"value '?{value}", regex=True)]
        assert rows["line"].tolist() == lines, value
    assert rejected["line"].is_monotonic_increasing


def test_chunked_parquet_scoring_equals_whole_file_scoring(detector, tmp_path):
    frame = make_table(3000, seed=13, anomaly_rate=0.05)
    path = tmp_path / "batch.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=700)
    whole = _score(detector, path, tmp_path / "whole", WHOLE)
    chunked = _score(detector, path, tmp_path / "chunked", 128)
    _same_outputs(whole, chunked)
    scored = pd.read_parquet(whole / SCORED_FILE)
    assert scored["transaction_id"].tolist() == frame["transaction_id"].tolist()  # order kept
    flagged = scored[scored["is_anomaly"] == 1]
    assert (flagged["reasons"] != "").all() and (
        scored.loc[scored.is_anomaly == 0, "reasons"] == ""
    ).all()


def test_a_rows_outputs_do_not_depend_on_the_rows_scored_with_it(detector):
    # Given one model, when rows are scored alone, in blocks of 7 or 100, or all at once,
    # then each row's outputs (scores, percentile, flag, reasons) are bit-identical: every
    # forward pass has the same shape, so no CPU kernel sums a row in another order because
    # of how many rows came with it. This failed on an AMD EPYC before fixed windows.
    frame = make_table(600, seed=16, anomaly_rate=0.1)
    whole = detector.score(frame).scored
    assert whole["is_anomaly"].sum() >= 5  # the reasons are compared too (measured: 12)
    for size in (7, 100, 16384):
        blocks = [detector.score(frame.iloc[i : i + size]).scored for i in range(0, 600, size)]
        pd.testing.assert_frame_equal(pd.concat(blocks, ignore_index=True), whole)
    alone = sorted({*np.flatnonzero(whole["is_anomaly"]), *range(30)})
    singles = [detector.score(frame.iloc[[i]]).scored for i in alone]
    pd.testing.assert_frame_equal(
        pd.concat(singles, ignore_index=True), whole.iloc[alone].reset_index(drop=True)
    )


def test_every_chunk_has_the_same_column_types(tmp_path):
    # a numeric column whose first chunk is all missing, and ids that look numeric
    rows = (
        ["id,x,c"]
        + [f"{i:05d},,a" for i in range(3000)]
        + [f"{i:05d},{i}.5,b" for i in range(3000)]
    )
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    chunks = list(iter_scoring_chunks(path, ["id", "c"], ["x"], chunk_rows=50))
    assert len(chunks) > 2
    assert {str(c.frame["x"].dtype) for c in chunks} == {"float64"}
    assert all(c.frame["id"].str.startswith("0").all() for c in chunks)
    assert chunks[0].frame["x"].isna().all()  # the first chunk has no number at all
    assert sum(len(c.frame) for c in chunks) == 6000


def test_integer_ids_with_gaps_keep_their_type_in_every_chunk(detector, tmp_path):
    # a Parquet file from another writer (no pandas metadata): int64 ids, one missing in a
    # later chunk; ids near 2**60 are not exact as float64
    frame = make_table(3000, seed=14, anomaly_rate=0.05).drop(columns="transaction_id")
    ids = pa.array([2**60 + i if i != 2100 else None for i in range(3000)], type=pa.int64())
    table = pa.Table.from_pandas(frame, preserve_index=False).add_column(0, "order_id", ids)
    path = tmp_path / "orders.parquet"
    pq.write_table(table.replace_schema_metadata(None), path, row_group_size=500)
    detector = AnomalyDetector(quick_settings(data={"id_columns": ["order_id"]})).fit(
        make_table(1500, seed=11).drop(columns="transaction_id").assign(order_id=np.arange(1500))
    )
    whole = _score(detector, path, tmp_path / "whole", WHOLE)
    chunked = _score(detector, path, tmp_path / "chunked", 128)
    _same_outputs(whole, chunked)
    scored = pq.read_table(chunked / SCORED_FILE)
    assert scored.schema.field("order_id").type == pa.int64()
    assert scored["order_id"].to_pylist() == ids.to_pylist()  # every id exact, in order


def test_nan_spellings_are_missing_whatever_the_chunk_holds(detector, tmp_path):
    frame = make_table(3000, seed=15, anomaly_rate=0.0)
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[100, "amount"] = "NAN"  # Arrow reads it as NaN: a missing value
    frame.loc[2900, "amount"] = "abc"  # makes its chunk's column text
    frame.loc[2901, "amount"] = " Nan"
    path = tmp_path / "batch.csv"
    frame.to_csv(path, index=False)
    whole = _score(detector, path, tmp_path / "whole", WHOLE)
    chunked = _score(detector, path, tmp_path / "chunked", 100)
    _same_outputs(whole, chunked)
    rejected = pd.read_csv(whole / REJECTED_FILE)
    assert rejected["line"].tolist() == [2902]  # only 'abc'; the NaN spellings are missing


def test_reports_without_a_drift_reference_small_batches_and_tex_like_names(tmp_path):
    frame = mixed_frame(400).rename(columns={"x": "cost $x^$"})  # not TeX for matplotlib
    detector = AnomalyDetector(quick_settings()).fit(frame)
    small = tmp_path / "small.csv"
    mixed_frame(20, seed=3).rename(columns={"x": "cost $x^$"}).to_csv(small, index=False)
    manifest = _score(detector, small, tmp_path / "out", WHOLE)
    assert manifest.joinpath("report.html").read_text().count("data:image/png;base64,") >= 2
    assert render_training_report(detector).count("data:image/png;base64,") >= 4
    facts = json.loads((manifest / MANIFEST_FILE).read_text())
    # 20 rows: too few to judge drift, so no PSI is reported (it would be sampling noise)
    assert facts["drift"]["drifted"] is False and facts["drift"]["max_psi"] is None
    assert "too few" in facts["drift"]["note"]

    detector.reference_frame_ = pd.DataFrame()  # a model saved without its held-out rows
    manifest = _score(detector, small, tmp_path / "bare", WHOLE)
    facts = json.loads((manifest / MANIFEST_FILE).read_text())
    assert facts["rows_scored"] == 20 and "no drift reference" in facts["drift"]["note"]
