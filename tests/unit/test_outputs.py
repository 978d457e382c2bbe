"""The output layout's typed manifest: read back as written, and old manifests still read."""

from __future__ import annotations

import json

from pipeline.monitoring import monitoring_table
from pipeline.outputs import MANIFEST_FILE, Manifest, find_previous

DOCUMENTED_KEYS = [
    "input_path",
    "input_sha256",
    "rows_read",
    "rows_scored",
    "rows_rejected",
    "rows_flagged",
    "model_name",
    "model_version",
    "model_run_id",
    "threshold",
    "started_at",
    "finished_at",
    "outputs",
]


def _old_manifest() -> dict:
    """A manifest as an earlier release wrote it: no flag-rate keys, no drift, an int version."""
    return {
        "input_path": "/landing/batch.csv",
        "input_sha256": "ab" * 32,
        "rows_read": 10,
        "rows_scored": 9,
        "rows_rejected": 1,
        "rows_flagged": 2,
        "model_name": "vae-anomaly",
        "model_version": 3,
        "model_run_id": "r1",
        "threshold": 1.5,
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:01+00:00",
        "outputs": {"scored.parquet": "00"},
    }


def test_a_manifest_is_written_in_the_documented_order_without_where_it_was_found(tmp_path):
    manifest = Manifest.model_validate(_old_manifest()).model_copy(
        update={"output_dir": str(tmp_path), "skipped": True}
    )
    written = json.loads(manifest.to_json())
    assert list(written)[: len(DOCUMENTED_KEYS)] == DOCUMENTED_KEYS
    assert "output_dir" not in written and "skipped" not in written
    assert written["rows_read"] == written["rows_scored"] + written["rows_rejected"]


def test_manifests_of_earlier_releases_are_read_and_found_for_reruns(tmp_path):
    folder = tmp_path / "2026-01-01" / "batch"
    folder.mkdir(parents=True)
    (folder / MANIFEST_FILE).write_text(json.dumps(_old_manifest()))
    (tmp_path / "2026-01-02" / "broken").mkdir(parents=True)
    (tmp_path / "2026-01-02" / "broken" / MANIFEST_FILE).write_text("{not json")
    found = find_previous(tmp_path, "batch", "ab" * 32, "3")
    assert found is not None and found.model_version == "3" and found.output_dir == str(folder)
    assert found.observed_flag_rate == 2 / 9 and found.drift.drifted is False
    table = monitoring_table(tmp_path)  # the unreadable manifest is left out, not fatal
    assert table["input"].tolist() == ["batch.csv"] and table["flag_rate"].tolist() == [2 / 9]
