"""What an analyst reads in a scored file's folder: flagged rows with their input values as
read, rejected rows with their raw text, and a run's own threshold (``score_file``, a saved
model on disk, no MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.batch import score_file
from pipeline.config import ScoringSettings
from pipeline.outputs import FLAGGED_FILE, MANIFEST_FILE, REJECTED_FILE, REPORT_FILE, SCORED_FILE
from pipeline.registry import ModelRef
from pipeline.scoring import SCORE_COLUMNS
from tests.conftest import mixed_frame

REF = ModelRef(name="analyst", version="1", run_id="r1", alias="champion")
DATE = "2026-03-04"
HEADER = "record_id,x,y,count,colour,size"
INPUTS = ["x", "y", "count", "colour", "size"]  # the input columns besides the id
LINES = [
    HEADER,
    "R1,0.10,0.2,3,red,S",  # 2: "0.10" and "3" as the file holds them
    "R2,twelve,0.2,18,red,S",  # 3: rejected: its count stays "18", not 18.0
    "R3,n/a,0.2,3,blue,L",  # 4: x missing (scored), shown as "n/a"
    "R4,-1e308,1e308,2,green,M",  # 5: extreme values, written as the file wrote them
    "R5,0.1,0.2,3,red",  # 6: too few fields: rejected with the raw line
    "R6,0.3,,4,,S",  # 7: empty fields
]
EVERY_ROW = ScoringSettings(threshold=-1e9)  # a cut-off below every score: every row flagged


@pytest.fixture
def dirty_csv(tmp_path: Path) -> Path:
    path = tmp_path / "landing" / "dirty.csv"
    path.parent.mkdir()
    path.write_text("\n".join(LINES) + "\n")
    return path


def _read_text(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_flagged_rows_carry_their_input_values_as_read(detector, dirty_csv, tmp_path):
    manifest = score_file(detector, REF, dirty_csv, tmp_path / "out", DATE, scoring=EVERY_ROW)
    out = Path(manifest.output_dir)
    flagged = _read_text(out / FLAGGED_FILE)
    # the contract's columns, then every other input column of the row
    assert list(flagged.columns) == ["record_id", *SCORE_COLUMNS, *INPUTS]
    by_id = flagged.set_index("record_id")[INPUTS]
    assert by_id.loc["R1"].tolist() == ["0.10", "0.2", "3", "red", "S"]
    assert by_id.loc["R3"].tolist() == ["n/a", "0.2", "3", "blue", "L"]
    assert by_id.loc["R4"].tolist() == ["-1e308", "1e308", "2", "green", "M"]
    assert by_id.loc["R6"].tolist() == ["0.3", "", "4", "", "S"]
    # the score columns as before: the scored file holds the same rows, without the inputs
    scored = pd.read_parquet(out / SCORED_FILE)
    assert list(scored.columns) == ["record_id", *SCORE_COLUMNS]
    assert sorted(scored["record_id"]) == sorted(flagged["record_id"])


def test_rejected_rows_keep_the_raw_text_of_each_field(detector, dirty_csv, tmp_path):
    manifest = score_file(detector, REF, dirty_csv, tmp_path / "out", DATE)
    rejected = _read_text(Path(manifest.output_dir) / REJECTED_FILE)
    assert rejected["line"].tolist() == ["3", "6"]
    assert rejected.iloc[0][["record_id", *INPUTS]].tolist() == [
        "R2",
        "twelve",
        "0.2",
        "18",
        "red",
        "S",
    ]
    assert rejected["reason"].iloc[0] == "column 'x': value 'twelve' is not a number"
    assert rejected["raw_line"].tolist() == ["", LINES[5]]


def test_scored_parquet_carries_the_inputs_when_asked(detector, dirty_csv, tmp_path):
    options = ScoringSettings(scored_input_columns=True, chunk_rows=2)  # and across chunks
    manifest = score_file(detector, REF, dirty_csv, tmp_path / "out", DATE, scoring=options)
    scored = pd.read_parquet(Path(manifest.output_dir) / SCORED_FILE)
    assert list(scored.columns) == ["record_id", *SCORE_COLUMNS, *INPUTS]
    assert scored.set_index("record_id").loc["R3", "x"] == "n/a"


def test_parquet_inputs_are_shown_as_stored_and_clashing_names_are_prefixed(detector, tmp_path):
    batch = mixed_frame(40, seed=5).assign(reasons="from the input", note=7)
    path = tmp_path / "batch.parquet"
    batch.to_parquet(path, index=False)
    manifest = score_file(detector, REF, path, tmp_path / "out", DATE, scoring=EVERY_ROW)
    flagged = pd.read_csv(Path(manifest.output_dir) / FLAGGED_FILE)
    assert list(flagged.columns)[len(SCORE_COLUMNS) + 1 :] == [
        "x",
        "y",
        "count",
        "colour",
        "size",
        "input_reasons",
        "note",
    ]
    assert (flagged["input_reasons"] == "from the input").all() and (flagged["note"] == 7).all()
    mine = flagged.set_index("record_id").loc[batch["record_id"], "count"]
    assert mine.tolist() == batch["count"].tolist()


def test_a_run_threshold_replaces_the_models_and_is_not_reused(detector, tmp_path):
    path = tmp_path / "batch.csv"
    mixed_frame(300, seed=6).to_csv(path, index=False)
    root = tmp_path / "out"
    plain = score_file(detector, REF, path, root, DATE)
    assert plain.threshold == detector.threshold_ and plain.threshold_override is None
    assert plain.expected_flag_rate == detector.settings.threshold.contamination

    cut = float(
        np.quantile(pd.read_parquet(Path(plain.output_dir) / SCORED_FILE)["anomaly_score"], 0.9)
    )
    low = score_file(
        detector, REF, path, root, "2026-03-05", scoring=ScoringSettings(threshold=cut)
    )
    assert not low.skipped  # scored before with the model's threshold: not reused
    assert (low.threshold, low.threshold_override) == (cut, cut)
    assert low.rows_flagged == 30  # the 10% above the 90% quantile
    saved = json.loads((Path(low.output_dir) / MANIFEST_FILE).read_text())
    assert saved["threshold_override"] == cut
    scored = pd.read_parquet(Path(low.output_dir) / SCORED_FILE)
    assert (scored["threshold"] == cut).all()
    assert (scored["is_anomaly"] == (scored["anomaly_score"] > cut)).all()
    # the expected rate of that cut comes from the model's validation scores (30 rows here:
    # read off their quantiles, within two rows)
    validation = detector.score_samples(detector.reference_frame_)
    share = float((validation > cut).mean())
    assert low.expected_flag_rate == pytest.approx(share, abs=2 / len(validation))
    report = (Path(low.output_dir) / REPORT_FILE).read_text()
    assert f"{cut:.2f} (set for this run (scoring.threshold))" in report

    again = score_file(
        detector, REF, path, root, "2026-03-06", scoring=ScoringSettings(threshold=cut)
    )
    assert again.skipped and again.output_dir == low.output_dir  # the same cut: reused
    back = score_file(detector, REF, path, root, "2026-03-07")  # the model's threshold again
    assert back.skipped and back.output_dir == plain.output_dir
