"""The scheduled batch job: a landing folder scored once per model version, crash-safe, on Dask.

Every test scores with the session's champion (``scoring_store``): no training per test.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)

import flows.score
import pipeline.batch
from flows.score import ScoringError, cached_detector, score_flow
from pipeline.batch import InputChangedError, score_file
from pipeline.config import Settings
from pipeline.inputs import InputError, expand_inputs
from pipeline.outputs import (
    FLAGGED_FILE,
    MANIFEST_FILE,
    SCORED_FILE,
    STAGING_DIR,
    OutputBusyError,
    input_lock,
)
from pipeline.registry import resolve_alias
from pipeline.sample_data import make_table

ID = "transaction_id"


def _landing(folder: Path, seeds: list[int], rows: int = 150) -> Path:
    """CSV files ``batch_<seed>.csv`` with distinct ids; each has one unscorable row."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        table = make_table(rows, seed=seed, anomaly_rate=0.05)
        table["amount"] = table["amount"].astype(object)
        table.loc[3, "amount"] = "not a number"  # rejected with its line, never dropped
        table.to_csv(folder / f"batch_{seed}.csv", index=False)
    return folder


def _input_ids(*folders: Path) -> Counter[str]:
    return Counter(i for f in folders for p in f.glob("*.csv") for i in pd.read_csv(p)[ID])


def _output_ids(root: Path) -> Counter[str]:
    """Ids in every scored.parquet and rejected.csv under ``root``, complete or not."""
    ids: Counter[str] = Counter()
    for scored in root.rglob(SCORED_FILE):
        assert (scored.parent / MANIFEST_FILE).is_file(), f"{scored} looks complete but is not"
        ids.update(pd.read_parquet(scored)[ID])
        ids.update(pd.read_csv(scored.parent / "rejected.csv")[ID])
    return ids


def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def _subflow_parameters(flow_run_id: Any) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        [files_run] = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
            )
        )
    return files_run.parameters


def test_landing_folder_is_scored_once_per_model_version(scoring_store, tmp_path):
    landing = _landing(tmp_path / "landing", [31, 32, 33])
    root = tmp_path / "scored"

    state = score_flow(inputs=[str(landing)], run_date="2026-03-01", return_state=True)
    manifests = state.result()
    assert [m.skipped for m in manifests] == [False, False, False]
    assert sorted(p.name for p in (root / "2026-03-01").iterdir()) == [
        "batch_31",
        "batch_32",
        "batch_33",
    ]
    for m in manifests:
        assert m.rows_read == m.rows_scored + m.rows_rejected == 150
        assert m.rows_rejected == 1 and m.model_version == "1"
    assert _output_ids(root) == _input_ids(landing)  # every row once: scored or rejected

    # the run's artifacts, read back from the Prefect API
    artifacts = _artifacts(state.state_details.flow_run_id)
    summary = artifacts["scoring-summary"].data
    assert "vae-anomaly version 1" in summary and "Duration:" in summary
    first = manifests[0]
    rate = first.rows_flagged / 149
    assert f"| batch_31.csv | 150 | 149 | {first.rows_flagged} | {rate:.2%} | 1 | " in summary
    assert f"| {first.threshold:.2f} | False | `{first.output_dir}/report.html` |" in summary
    top = artifacts["top-anomalies"].data
    top_rows = json.loads(top) if isinstance(top, str) else top
    assert 0 < len(top_rows) <= 20
    assert {r["input"] for r in top_rows} <= {"batch_31.csv", "batch_32.csv", "batch_33.csv"}

    # the next night: same files, same model version -> all skipped, nothing written
    again = score_flow(inputs=[str(landing)], run_date="2026-03-02")
    assert [m.skipped for m in again] == [True, True, True]
    assert not (root / "2026-03-02").exists()

    # a new file lands: only it is scored
    _landing(landing, [34])
    third = score_flow(inputs=[str(landing / "*.csv")], run_date="2026-03-03")
    assert [m.skipped for m in third] == [True, True, True, False]
    assert [p.name for p in (root / "2026-03-03").iterdir()] == ["batch_34"]
    assert _output_ids(root) == _input_ids(landing)


def test_a_crash_mid_run_is_finished_by_the_next_run(scoring_store, tmp_path, monkeypatch):
    landing = _landing(tmp_path / "landing", [41, 42, 43])
    root = tmp_path / "scored"
    monkeypatch.setenv("VAE_ANOMALY_SCORING__FILE_RETRIES", "0")
    publish = pipeline.batch.publish

    def crash_on_second_file(staging: Path, out_dir: Path) -> None:
        if out_dir.name == "batch_42":
            # what a killed process leaves: a complete-looking staging folder, nothing renamed
            shutil.copytree(staging, staging.with_name("0" * 32))
            raise RuntimeError("simulated crash while publishing batch_42")
        publish(staging, out_dir)

    monkeypatch.setattr(pipeline.batch, "publish", crash_on_second_file)
    state = score_flow(inputs=[str(landing)], run_date="2026-03-01", return_state=True)
    assert state.is_failed()
    with pytest.raises(ScoringError, match=r"1 of 3 file\(s\) not scored: .*batch_42\.csv"):
        state.result()
    day1 = root / "2026-03-01"
    assert sorted(p.name for p in day1.iterdir()) == ["batch_41", "batch_43"]
    assert any((root / STAGING_DIR / "batch_42").iterdir())  # leftovers, out of sight

    monkeypatch.setattr(pipeline.batch, "publish", publish)
    rerun = score_flow(inputs=[str(landing)], run_date="2026-03-02")
    assert [(Path(m.input_path).name, m.skipped) for m in rerun] == [
        ("batch_41.csv", True),
        ("batch_42.csv", False),
        ("batch_43.csv", True),
    ]
    assert not (root / STAGING_DIR / "batch_42").exists()
    ids = _output_ids(root)
    assert ids == _input_ids(landing)
    assert set(ids.values()) == {1}


def test_inputs_with_the_same_name_get_their_own_folders(scoring_store, tmp_path):
    landing = tmp_path / "landing"
    _landing(landing / "eu", [51])
    _landing(landing / "us", [52])
    (landing / "us" / "batch_52.csv").rename(landing / "us" / "batch_51.csv")

    manifests = score_flow(inputs=[str(landing / "*" / "batch_51.csv")], run_date="2026-03-01")
    out_dirs = [Path(m.output_dir).name for m in manifests]
    digest = manifests[1].input_sha256
    assert out_dirs == ["batch_51", f"batch_51-{digest[:8]}"]
    assert [Path(m.input_path).parent.name for m in manifests] == ["eu", "us"]
    assert _output_ids(tmp_path / "scored") == _input_ids(landing / "eu", landing / "us")
    again = score_flow(inputs=[str(landing / "*" / "batch_51.csv")], run_date="2026-03-01")
    assert [m.skipped for m in again] == [True, True]
    assert [Path(m.output_dir).name for m in again] == out_dirs


def test_concurrent_runs_on_one_input_score_it_once(scoring_store, tmp_path):
    [path] = _landing(tmp_path / "landing", [61]).glob("*.csv")
    root = tmp_path / "scored"
    ref = resolve_alias(Settings(), "champion")
    detector = cached_detector(scoring_store, ref, "auto")
    start = threading.Barrier(2)
    results: list[Any] = []

    def run(date: str) -> None:
        start.wait()
        results.append(score_file(detector, ref, path, root, date))

    threads = [threading.Thread(target=run, args=(d,)) for d in ("2026-03-01", "2026-03-02")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.skipped for r in results) == [False, True]
    assert len(list(root.glob(f"*/batch_61/{MANIFEST_FILE}"))) == 1

    # a run that cannot get the lock in time fails clearly and writes nothing
    with (
        input_lock(root, "batch_61", timeout_seconds=0),
        pytest.raises(OutputBusyError, match=r"batch_61.*retry later"),
    ):
        score_file(detector, ref, path, root, "2026-03-03", force=True, lock_timeout_seconds=0.3)
    assert not (root / "2026-03-03").exists()


def _stopped_clock(at: datetime) -> type[datetime]:
    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return at

    return Clock


def test_outputs_do_not_depend_on_the_wall_clock(scoring_store, tmp_path, monkeypatch):
    """Same input, model and run date: byte-identical files, whatever the time of day."""
    import pipeline.report.page

    [path] = _landing(tmp_path / "landing", [63], rows=60).glob("*.csv")
    ref = resolve_alias(Settings(), "champion")
    detector = cached_detector(scoring_store, ref, "auto")
    outputs = []
    for minute, root in ((0, "first"), (59, "second")):
        clock = datetime(2026, 3, 1, 23, minute, tzinfo=UTC)
        monkeypatch.setattr(pipeline.report.page, "datetime", _stopped_clock(clock))
        outputs.append(score_file(detector, ref, path, tmp_path / root, "2026-03-01").outputs)
    assert outputs[0] == outputs[1]
    assert set(outputs[0]) >= {SCORED_FILE, FLAGGED_FILE, "report.html"}


def test_landing_folder_picks_complete_files_only(scoring_store, tmp_path, monkeypatch):
    landing = _landing(tmp_path / "landing", [62])
    (landing / ".uploading.csv").write_text("transaction_id\nT1\n")
    (landing / "batch_63.csv.part").write_text("transaction_id\nT2\n")
    assert expand_inputs([str(landing)]) == [landing / "batch_62.csv"]
    assert expand_inputs([str(landing / "*.csv")]) == [landing / "batch_62.csv"]
    # a glob that also matches uploads in progress and notes takes the tables only
    (landing / "notes.txt").write_text("not a table")
    assert expand_inputs([str(landing / "*")]) == [landing / "batch_62.csv"]
    with pytest.raises(InputError, match=r"notes\.txt: unsupported file type '\.txt'"):
        expand_inputs([str(landing / "notes.txt")])  # named explicitly: an error, not skipped
    with pytest.raises(InputError, match="an input path is empty"):
        expand_inputs([""])  # an unset variable must not mean the working directory

    # a file that grows while it is read is not scored (and is retried later)
    path, root = landing / "batch_62.csv", tmp_path / "scored"
    ref = resolve_alias(Settings(), "champion")
    read = pipeline.batch._score_into

    def read_then_append(*args: Any) -> Any:
        frames = read(*args)
        with path.open("a") as out:
            out.write(path.read_text().splitlines()[1] + "\n")
        return frames

    monkeypatch.setattr(pipeline.batch, "_score_into", read_then_append)
    with pytest.raises(
        InputChangedError, match=r"batch_62\.csv: the file changed while it was read"
    ):
        score_file(cached_detector(scoring_store, ref, "auto"), ref, path, root, "2026-03-01")
    assert not (root / "2026-03-01").exists()


def test_dask_executor_writes_the_same_outputs(scoring_store, tmp_path, monkeypatch):
    landing = _landing(tmp_path / "landing", [71, 72, 73], rows=100)
    day = "2026-03-01"  # one partition for both runs, even across midnight
    sequential = score_flow(inputs=[str(landing)], output_root=str(tmp_path / "seq"), run_date=day)
    seen = tmp_path / "workers.txt"  # a file: the task (and this wrapper) reach Dask pickled
    score = flows.score.score_file

    def on_a_dask_worker(*args: Any, **kwargs: Any) -> dict[str, Any]:
        from distributed import get_worker

        with seen.open("a") as out:
            print(get_worker().address, file=out)  # raises outside a Dask worker
        return score(*args, **kwargs)

    monkeypatch.setattr(flows.score, "score_file", on_a_dask_worker)
    hits = cached_detector.cache_info().hits
    dask = {
        "executor": "dask",
        "dask_workers": 1,
        "dask_threads_per_worker": 1,
        "dask_processes": False,
    }
    state = score_flow(
        inputs=[str(landing)],
        output_root=str(tmp_path / "dask"),
        run_date=day,
        overrides={"scoring": dask},
        return_state=True,
    )
    on_dask = state.result()
    assert len(seen.read_text().splitlines()) == 3
    # the flow process and the (threaded) worker share one loaded model: no load per file
    assert cached_detector.cache_info().hits - hits >= 3
    # the files went through a subflow on the Dask runner; the tracking URI (credentials,
    # maybe) is masked among its recorded parameters
    assert _subflow_parameters(state.state_details.flow_run_id)["job"]["tracking_uri"] == "*" * 10
    assert len(on_dask) == len(sequential) == 3
    for seq, dsk in zip(sequential, on_dask, strict=True):
        assert (dsk.input_path, dsk.rows_flagged) == (seq.input_path, seq.rows_flagged)
        # byte-identical files: on one machine a row's numbers do not depend on the thread
        # that scores it nor on torch's thread count (vae/infer.py; tested there)
        assert dsk.outputs == seq.outputs
        pd.testing.assert_frame_equal(
            pd.read_parquet(Path(dsk.output_dir) / SCORED_FILE),
            pd.read_parquet(Path(seq.output_dir) / SCORED_FILE),
        )


def test_missing_alias_fails_the_run_with_a_clear_message(scoring_store, small_batch_csv):
    state = score_flow(inputs=[str(small_batch_csv)], alias="nightly", return_state=True)
    assert state.is_failed()
    assert "cannot resolve models:/vae-anomaly@nightly" in state.message
    assert "train a model first (vae-anomaly train) or set the alias" in state.message


def test_a_run_date_must_be_a_date(scoring_store, small_batch_csv, tmp_path):
    state = score_flow(inputs=[str(small_batch_csv)], run_date="../elsewhere", return_state=True)
    assert state.is_failed()
    assert "run_date '../elsewhere' is not a date: use YYYY-MM-DD" in state.message
    assert not (tmp_path / "scored").exists()


def test_a_hung_registry_call_times_out(scoring_store, small_batch_csv, monkeypatch):
    monkeypatch.setenv("VAE_ANOMALY_SCORING__IO_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("VAE_ANOMALY_SCORING__IO_RETRIES", "0")

    def hang(*args: Any) -> None:
        threading.Event().wait(10)

    monkeypatch.setattr(flows.score, "resolve_alias", hang)
    state = score_flow(inputs=[str(small_batch_csv)], return_state=True)
    assert state.is_failed()
    with pytest.raises(TimeoutError):
        state.result()


def test_run_settings_reach_the_loaded_model_sequential_and_on_dask(scoring_store, tmp_path):
    # Given the registered champion, when a run overrides how to score (one reason per flagged
    # row, chunks of about 64 rows, Monte Carlo scoring), then the file is scored that way in
    # the flow's process and on a Dask worker alike: the run's settings travel with the job;
    # the loaded model does not read its own (or the machine's) settings instead.
    path = tmp_path / "landing" / "batch_71.csv"
    path.parent.mkdir()
    make_table(400, seed=71, anomaly_rate=0.08).to_csv(path, index=False)
    [plain] = score_flow(inputs=[str(path)], output_root=str(tmp_path / "plain"))
    plain_dir = Path(plain.output_dir)
    plain_scored = pd.read_parquet(plain_dir / SCORED_FILE)
    plain_flagged = pd.read_csv(plain_dir / FLAGGED_FILE)
    named = plain_flagged["reasons"].str.count(r"\(expected")
    assert len(plain_flagged) > 0 and named.between(1, 3).all() and (named == 3).any()
    assert pq.ParquetFile(plain_dir / SCORED_FILE).num_row_groups == 1  # one chunk
    runtime = {"top_reasons": 1, "chunk_rows": 64, "mc_samples": 2}
    local_dask = {"dask_workers": 1, "dask_threads_per_worker": 1, "dask_processes": False}
    for executor in ("sequential", "dask"):
        overrides = {"scoring": {**runtime, **local_dask, "executor": executor}}
        [manifest] = score_flow(
            inputs=[str(path)], output_root=str(tmp_path / executor), overrides=overrides
        )
        out = Path(manifest.output_dir)
        flagged = pd.read_csv(out / FLAGGED_FILE)
        assert len(flagged) > 0, executor
        assert (flagged["reasons"].str.count(r"\(expected") == 1).all(), executor
        assert pq.ParquetFile(out / SCORED_FILE).num_row_groups > 1, executor  # chunked
        scored = pd.read_parquet(out / SCORED_FILE)
        assert not np.allclose(scored["recon_error"], plain_scored["recon_error"]), executor
