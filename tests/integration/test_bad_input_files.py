"""Issue 6, files: bad scoring files through ``score_file`` (no MLflow: a saved model on disk)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.batch import score_file
from pipeline.ingest import InputError
from pipeline.outputs import FLAGGED_FILE, MANIFEST_FILE, REJECTED_FILE, SCORED_FILE
from pipeline.registry import ModelRef
from pipeline.schema import SchemaError
from tests.conftest import mixed_frame

REF = ModelRef(name="bad-input", version="1", run_id="r1", alias="champion")
DATE = "2026-01-02"
HEADER = "record_id,x,y,count,colour,size"


def _outputs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and ".locks" not in p.parts]


def test_a_dirty_csv_rejects_bad_rows_with_line_and_reason(detector, tmp_path):
    lines = [
        HEADER,
        "R1,0.1,0.2,3,red,S",  # 2: fine
        "R2,twelve,0.2,3,red,S",  # 3: text in a numeric column
        "R3,0.1,0.2,inf,red,M",  # 4: inf in a numeric column
        "R4,0.1,0.2,3,red,S,surplus",  # 5: too many fields
        "R5,0.1,0.2,3",  # 6: too few fields
        "R6,0.1,,3,blue,L",  # 7: missing y (training had none): imputed, scored
        "R7,0.1,0.2,3,ultraviolet,M",  # 8: unseen category: scored
        "R8,-1e308,1e308,2,green,S",  # 9: extreme but finite: scored
    ]
    path = tmp_path / "dirty.csv"
    path.write_text("\n".join(lines) + "\n")
    manifest = score_file(detector, REF, path, tmp_path / "out", DATE)
    assert manifest.rows_read == 8
    assert manifest.rows_read == manifest.rows_scored + manifest.rows_rejected
    assert (manifest.rows_scored, manifest.rows_rejected) == (4, 4)
    out = Path(manifest.output_dir)
    scored = pd.read_parquet(out / SCORED_FILE)
    assert scored["record_id"].tolist() == ["R1", "R6", "R7", "R8"]
    assert np.isfinite(scored["anomaly_score"]).all()
    rejected = pd.read_csv(out / REJECTED_FILE)
    assert rejected["line"].tolist() == [3, 4, 5, 6]
    reasons = rejected["reason"].tolist()
    assert reasons[0] == "column 'x': value 'twelve' is not a number"
    assert reasons[1] == "column 'count': value inf is infinite"
    assert reasons[2] == "expected 6 fields, found 7"
    assert reasons[3] == "expected 6 fields, found 4"
    assert rejected["raw_line"].tolist()[2:] == [lines[4], lines[5]]
    # the file holds the manifest returned, without where it was found (output_dir, ...)
    assert json.loads((out / MANIFEST_FILE).read_text()) == manifest.model_dump(mode="json")


def test_a_missing_model_column_writes_nothing(detector, tmp_path):
    path = tmp_path / "batch.csv"
    mixed_frame(20, seed=2).drop(columns=["y", "size"]).to_csv(path, index=False)
    root = tmp_path / "out"
    with pytest.raises(SchemaError, match=r"batch\.csv: missing column\(s\) \['y', 'size'\]"):
        score_file(detector, REF, path, root, DATE)
    assert not (root / DATE).exists()
    assert _outputs(root) == []


def test_extra_and_reordered_columns_score_the_same(detector, tmp_path):
    batch = mixed_frame(30, seed=3)
    plain, messy = tmp_path / "a" / "batch.csv", tmp_path / "b" / "batch.csv"
    plain.parent.mkdir()
    messy.parent.mkdir()
    batch.to_csv(plain, index=False)
    batch[list(reversed(batch.columns))].assign(note="hi").to_csv(messy, index=False)
    first = score_file(detector, REF, plain, tmp_path / "out_a", DATE)
    second = score_file(detector, REF, messy, tmp_path / "out_b", DATE)
    assert second.warnings == [f"{messy}: extra column(s) ['note'] ignored"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(Path(first.output_dir) / SCORED_FILE),
        pd.read_parquet(Path(second.output_dir) / SCORED_FILE),
    )


def test_an_empty_file_gives_empty_outputs_and_a_manifest(detector, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    manifest = score_file(detector, REF, path, tmp_path / "out", DATE)
    assert (manifest.rows_read, manifest.rows_scored, manifest.rows_rejected) == (0, 0, 0)
    assert manifest.warnings == [f"{path}: empty file"]
    out = Path(manifest.output_dir)
    assert pd.read_parquet(out / SCORED_FILE).empty
    assert pd.read_csv(out / FLAGGED_FILE).empty and pd.read_csv(out / REJECTED_FILE).empty


def test_a_truncated_parquet_is_a_clear_error_and_writes_nothing(detector, tmp_path):
    path = tmp_path / "batch.parquet"
    pq.write_table(pa.Table.from_pandas(mixed_frame(200, seed=4)), path)
    path.write_bytes(path.read_bytes()[:-200])
    root = tmp_path / "out"
    with pytest.raises(InputError, match=r"batch\.parquet: unreadable or truncated Parquet"):
        score_file(detector, REF, path, root, DATE)
    assert _outputs(root) == []
