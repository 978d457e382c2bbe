"""Scoring a file in chunks gives exactly the outputs of scoring it whole."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from generate_sample import make_table

from pipeline.batch import FLAGGED_FILE, MANIFEST_FILE, REJECTED_FILE, SCORED_FILE, score_file
from pipeline.detector import AnomalyDetector
from pipeline.ingest import iter_scoring_chunks
from pipeline.tracking import ModelRef
from tests.conftest import quick_settings

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
    return Path(manifest["output_dir"])


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
