"""Score one input file into the output layout, atomically, with a manifest.

Layout: ``<output_root>/<run date>/<input stem>/`` holding ``scored.parquet`` (every scored
row), ``flagged.csv`` (flagged rows, for people), ``rejected.csv`` (rows that could not be
scored, with line and reason), ``report.html`` (the run's self-contained report: score
histogram, flag rate against the expected one, top anomalies with reasons, per-column drift
against the training data) and ``manifest.json`` (its presence marks the output complete).
``<output_root>/monitoring.csv`` has one row per scored output (flag rate, drift), rebuilt
from the manifests by :func:`write_monitoring` (the scoring flow calls it once per run).

Streaming: a file is read, scored and written chunk by chunk (``scoring.chunk_rows``), so
memory does not grow with the file; see :func:`_score_into`.

Atomicity: the files are written into a staging folder
(``<output_root>/.staging/<stem>/<hex>/``; each file fsynced, the manifest last) and the
staging folder is renamed into place, so ``<run date>/<stem>/`` either holds a complete output
or does not exist. A crash leaves at most a staging folder, removed by the next run on a file
of that name.

Rerun key: (input sha256, model version), looked up in the manifests of every run date: an
input already scored with the same model version is skipped unless ``force`` is set.

Name collisions: two different inputs with the same stem (``a/orders.csv`` and
``b/orders.csv``, or ``orders.csv`` and ``orders.parquet``) must not share an output folder.
The plain ``<stem>`` folder of a run date belongs to the first input written there; a later
input with other contents goes to ``<stem>-<first 8 hex digits of its sha256>`` of that date.

Concurrency: everything about inputs of one stem (the rerun check, the choice of folder, the
write) happens under an exclusive lock file ``<output_root>/.locks/<stem>.lock`` (``flock``;
released by the kernel when a process dies), so two runs on the same input never both score
it: the second waits and then finds the first one's manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.checksums import sha256_file
from pipeline.detector import SCORE_COLUMNS, AnomalyDetector
from pipeline.drift import DriftAccumulator, DriftReport
from pipeline.ingest import InputError, iter_scoring_chunks, record_lines, table_format
from pipeline.report import ScoreHistogram, ScoringReportData, TopAnomalies, render_scoring_report
from pipeline.tracking import ModelRef

logger = logging.getLogger(__name__)

SCORED_FILE = "scored.parquet"
FLAGGED_FILE = "flagged.csv"
REJECTED_FILE = "rejected.csv"
MANIFEST_FILE = "manifest.json"
REPORT_FILE = "report.html"
MONITORING_FILE = "monitoring.csv"
TOP_IN_REPORT = 20
INPUT_SUFFIXES = (".csv", ".parquet", ".pq")
LOCK_DIR = ".locks"
STAGING_DIR = ".staging"
CONTENT_TAG_LENGTH = 8

DetectorSource = AnomalyDetector | Callable[[], AnomalyDetector]


class OutputBusyError(RuntimeError):
    """Another run holds the lock of an input's outputs for too long; the file was not scored."""


class InputChangedError(RuntimeError):
    """The input changed while it was read (still being written?); it was not scored."""


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _safe_name(stem: str) -> str:
    """``stem`` as a file name of bounded length (lock file, staging folder)."""
    if len(stem) <= 150:
        return stem
    return f"{stem[:100]}-{hashlib.sha256(stem.encode()).hexdigest()}"


def expand_inputs(inputs: list[str] | str) -> list[Path]:
    """Files from a list of paths, globs and folders (a folder means its CSV/Parquet files).

    Hidden files (``.name``) found in folders or by globs are left out: a landing folder's
    uploads in progress should use such a name, or a suffix other than ``.csv``, ``.parquet``
    or ``.pq``, until they are complete.
    """
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    found: list[Path] = []
    for item in items:
        if not str(item).strip():
            raise InputError(
                "an input path is empty (an unset variable?); pass the landing folder, files "
                "or globs to score (for prefect.yaml: set VAE_ANOMALY_LANDING before deploying)"
            )
        path = Path(item)
        if path.is_dir():
            found += sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES and not _is_hidden(p)
            )
        elif any(ch in item for ch in "*?["):
            base = Path(path.anchor) if path.is_absolute() else Path()
            pattern = str(path.relative_to(path.anchor)) if path.is_absolute() else item
            found += sorted(p for p in base.glob(pattern) if p.is_file() and not _is_hidden(p))
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{item}: no such file or folder; check the path or the glob")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise InputError(
            f"no CSV or Parquet file found in {items}; put the batch files there "
            "(.csv, .parquet or .pq) or pass other paths"
        )
    return unique


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, write: Callable[[Path], Any] | None = None) -> str:
    """Write ``path`` through ``write(path)`` (unless written already), fsync it; return its
    sha256."""
    if write is not None:
        write(path)
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
    return sha256_file(path)


@contextmanager
def input_lock(output_root: Path, stem: str, timeout_seconds: float) -> Iterator[Path]:
    """Hold the exclusive lock of the outputs of inputs named ``stem`` (waits up to a limit)."""
    lock_dir = output_root / LOCK_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{_safe_name(stem)}.lock"
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OutputBusyError(
                        f"another run is still scoring a file named {stem!r} into {output_root} "
                        f"(lock {path} held for over {timeout_seconds:g} s); this file was not "
                        "scored: retry later, or raise scoring.lock_timeout_seconds"
                    ) from None
                time.sleep(0.2)
        try:
            yield path
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        logger.warning("ignoring unreadable manifest %s", path)
        return None
    return loaded if isinstance(loaded, dict) else None


def _date_dirs(output_root: Path) -> list[Path]:
    if not output_root.is_dir():
        return []
    return sorted(p for p in output_root.iterdir() if p.is_dir() and not _is_hidden(p))


def _candidate_names(stem: str, input_sha256: str) -> tuple[str, str]:
    """The plain folder name and the content-tagged one used when the plain one is taken."""
    return stem, f"{stem}-{input_sha256[:CONTENT_TAG_LENGTH]}"


def find_previous(
    output_root: Path, stem: str, input_sha256: str, model_version: str
) -> dict[str, Any] | None:
    """The manifest of an earlier complete run on the same input with the same model version."""
    for date_dir in _date_dirs(output_root):
        for name in _candidate_names(stem, input_sha256):
            path = date_dir / name / MANIFEST_FILE
            manifest = _read_manifest(path)
            if (
                manifest is not None
                and manifest.get("input_sha256") == input_sha256
                and str(manifest.get("model_version")) == model_version
            ):
                return {**manifest, "manifest_path": str(path), "output_dir": str(path.parent)}
    return None


MONITORING_COLUMNS = [
    "run_date",
    "input",
    "finished_at",
    "model_name",
    "model_version",
    "rows_scored",
    "rows_flagged",
    "rows_rejected",
    "flag_rate",
    "expected_flag_rate",
    "drifted",
    "max_psi",
    "worst_column",
    "output_dir",
]


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def monitoring_table(output_root: Path) -> pd.DataFrame:
    """One row per scored output under ``output_root`` (flag rate and drift), oldest first.

    Built from the manifests, so it never misses or repeats a run, whatever crashed when.
    """
    rows = []
    for date_dir in _date_dirs(output_root):
        for manifest_path in sorted(date_dir.glob(f"*/{MANIFEST_FILE}")):
            manifest = _read_manifest(manifest_path)
            if manifest is None:
                continue
            drift = manifest.get("drift") or {}
            scored = int(manifest.get("rows_scored", 0))
            rows.append(
                {
                    "run_date": date_dir.name,
                    "input": Path(str(manifest.get("input_path", ""))).name,
                    "finished_at": manifest.get("finished_at", ""),
                    "model_name": manifest.get("model_name", ""),
                    "model_version": str(manifest.get("model_version", "")),
                    "rows_scored": scored,
                    "rows_flagged": int(manifest.get("rows_flagged", 0)),
                    "rows_rejected": int(manifest.get("rows_rejected", 0)),
                    "flag_rate": manifest.get(
                        "flag_rate", manifest.get("rows_flagged", 0) / scored if scored else 0.0
                    ),
                    "expected_flag_rate": manifest.get("expected_flag_rate", float("nan")),
                    "drifted": drift.get("drifted", ""),
                    "max_psi": _number(drift.get("max_psi")),
                    "worst_column": drift.get("worst_column", ""),
                    "output_dir": str(manifest_path.parent),
                }
            )
    table = pd.DataFrame(rows, columns=MONITORING_COLUMNS)
    return table.sort_values(["finished_at", "input"], kind="stable").reset_index(drop=True)


def write_monitoring(output_root: Path, lock_timeout_seconds: float = 600) -> Path:
    """Rewrite ``<output_root>/monitoring.csv`` from the manifests (atomically, under a lock)."""
    path = output_root / MONITORING_FILE
    with input_lock(output_root, ".monitoring", lock_timeout_seconds):
        table = monitoring_table(output_root)
        partial = output_root / f".{MONITORING_FILE}.{uuid.uuid4().hex}"
        try:
            table.to_csv(partial, index=False)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    return path


def output_dir_for(output_root: Path, run_date: str, stem: str, input_sha256: str) -> Path:
    """``<root>/<date>/<stem>``, unless it holds the outputs of other input contents."""
    date_dir = output_root / run_date
    plain, tagged = (date_dir / name for name in _candidate_names(stem, input_sha256))
    owner = _read_manifest(plain / MANIFEST_FILE)
    if owner is None or owner.get("input_sha256") == input_sha256:
        return plain
    logger.warning(
        "%s holds the outputs of %s (other contents, same name): writing to %s",
        plain,
        owner.get("input_path"),
        tagged,
    )
    return tagged


def _staging_root(output_root: Path, stem: str) -> Path:
    return output_root / STAGING_DIR / _safe_name(stem)


def remove_stale_staging(output_root: Path, stem: str) -> bool:
    """Remove staging folders of ``stem`` left by interrupted runs (call under its lock)."""
    staging_root = _staging_root(output_root, stem)
    if not staging_root.is_dir() or not any(staging_root.iterdir()):
        return False
    logger.warning("removing %s, left by an interrupted run", staging_root)
    shutil.rmtree(staging_root, ignore_errors=True)
    return True


def _publish(staging: Path, out_dir: Path) -> None:
    """Rename the complete staging folder to ``out_dir`` (replacing an older output)."""
    _fsync_dir(staging)
    old = None
    if out_dir.exists():
        old = staging.with_name(f"{uuid.uuid4().hex}.old")
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    _fsync_dir(out_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _file_state(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@dataclass
class StreamedScores:
    """What scoring one file in chunks leaves besides ``scored.parquet``: counts, the flagged
    rows (sorted by score, highest first), the rejected rows (by line) and the warnings."""

    rows_read: int
    rows_scored: int
    flagged: pd.DataFrame
    rejected: pd.DataFrame
    histogram: ScoreHistogram
    top: pd.DataFrame
    drift: DriftReport | None
    warnings: list[str] = field(default_factory=list)


def _output_schema(table: pa.Table) -> pa.Schema:
    """The scored file's schema, from its first chunk (an all-missing id column: text)."""
    fields = [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
    return pa.schema(fields, metadata=table.schema.metadata)


def _score_into(
    detector: AnomalyDetector, ref: ModelRef, input_path: Path, scored_path: Path
) -> StreamedScores:
    """Score ``input_path`` chunk by chunk, appending every scored row to ``scored_path``.

    Memory is bounded by ``scoring.chunk_rows`` (plus the flagged and rejected rows, which are
    kept to be sorted): a chunk is read, checked, preprocessed, scored and written before the
    next one is read. Reasons are computed for flagged rows only.
    """
    schema = detector.schema_
    chunks = iter_scoring_chunks(
        input_path,
        string_columns=schema.categorical_columns + schema.id_columns,
        numeric_columns=schema.numeric_columns,
        chunk_rows=detector.settings.scoring.chunk_rows,
    )
    writer: pq.ParquetWriter | None = None
    out_schema: pa.Schema | None = None
    # the report's aggregates, accumulated chunk by chunk (fixed memory)
    histogram = ScoreHistogram.for_threshold(detector.reference_quantiles_, detector.threshold_)
    reference = detector.drift_reference()
    drift = DriftAccumulator(reference) if reference is not None else None
    flagged: list[pd.DataFrame] = []
    rejected: list[pd.DataFrame] = []
    bad: list[tuple[int, str, str]] = []
    warnings: list[str] = []
    rows_read = rows_scored = 0
    started = last_log = time.monotonic()
    total = 0  # rows in the file, when its metadata says (Parquet)
    if table_format(input_path) == "parquet":
        with contextlib.suppress(pa.ArrowInvalid, OSError):  # unreadable: the reader says so
            total = pq.read_metadata(input_path).num_rows
    try:
        for chunk in chunks:
            bad += chunk.bad
            rows_read += len(chunk.frame) + len(chunk.bad)
            if chunk.frame.columns.empty:
                warnings.append(f"{input_path}: empty file")
                continue
            result = detector.score(
                chunk.frame,
                source=str(input_path),
                line_numbers=chunk.records,
                model_name=ref.name,
                model_version=ref.version,
                log_warnings=False,
            )
            for message in result.warnings:
                if message not in warnings:
                    logger.warning(message)
                    warnings.append(message)
            table = pa.Table.from_pandas(result.scored, preserve_index=False)
            if writer is None or out_schema is None:
                out_schema = _output_schema(table)
                writer = pq.ParquetWriter(scored_path, out_schema)
            writer.write_table(table.cast(out_schema))
            rows_scored += len(result.scored)
            histogram.update(result.scored["anomaly_score"].to_numpy())
            if drift is not None and result.accepted is not None:
                drift.update(result.accepted)
            flagged.append(result.scored[result.scored["is_anomaly"] == 1])
            if len(result.rejected):
                rejected.append(result.rejected)
            if time.monotonic() - last_log > 10:  # progress of long files
                last_log = time.monotonic()
                logger.info(
                    "%s: %s rows read%s, %d flagged so far (%.0f rows/s)",
                    input_path,
                    f"{rows_read:,}",
                    f" of {total:,}" if total else "",
                    sum(len(f) for f in flagged),
                    rows_read / (last_log - started),
                )
    finally:
        if writer is not None:
            writer.close()
    no_rows = pd.DataFrame(columns=[*schema.id_columns, *SCORE_COLUMNS])
    if writer is None:  # an empty file: an empty scored table with the output columns
        no_rows.to_parquet(scored_path, index=False)
    if bad:
        rejected.append(pd.DataFrame(bad, columns=["line", "reason", "raw_line"]))
    all_rejected = (
        pd.concat(rejected, ignore_index=True)
        if rejected
        else pd.DataFrame(columns=["line", "reason"])
    )
    if len(all_rejected) and table_format(input_path) == "csv":
        # record numbers -> physical lines (blank lines, quoted newlines): one streaming pass,
        # only when some row was rejected
        all_rejected["line"] = record_lines(input_path, all_rejected["line"].to_numpy())
    all_flagged = (pd.concat(flagged, ignore_index=True) if flagged else no_rows).sort_values(
        "anomaly_score", ascending=False, kind="stable"
    )
    return StreamedScores(
        rows_read=rows_read,
        rows_scored=rows_scored,
        flagged=all_flagged,
        rejected=all_rejected.sort_values("line", kind="stable").reset_index(drop=True),
        histogram=histogram,
        top=TopAnomalies(n=TOP_IN_REPORT).update(all_flagged).frame(),
        drift=drift.result() if drift is not None else None,
        warnings=warnings,
    )


def score_file(
    detector: DetectorSource,
    ref: ModelRef,
    input_path: Path,
    output_root: Path,
    run_date: str,
    force: bool = False,
    lock_timeout_seconds: float = 600,
) -> dict[str, Any]:
    """Score ``input_path`` and write its outputs; returns the manifest (``skipped`` if reused).

    ``detector`` is the loaded detector or a function returning it, called only when the file
    has to be scored (a rerun that skips every file loads no model).
    """
    input_path = Path(input_path)
    stem = input_path.stem
    with input_lock(output_root, stem, lock_timeout_seconds):
        remove_stale_staging(output_root, stem)
        before = _file_state(input_path)
        digest = sha256_file(input_path)
        if not force:
            previous = find_previous(output_root, stem, digest, ref.version)
            if previous is not None:
                logger.info(
                    "skip %s: already scored with %s version %s (%s)",
                    input_path,
                    ref.name,
                    ref.version,
                    previous["manifest_path"],
                )
                return {**previous, "skipped": True}
        started = datetime.now(UTC)
        loaded = detector if isinstance(detector, AnomalyDetector) else detector()
        out_dir = output_dir_for(output_root, run_date, stem, digest)
        staging = _staging_root(output_root, stem) / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            streamed = _score_into(loaded, ref, input_path, staging / SCORED_FILE)
            if _file_state(input_path) != before:
                raise InputChangedError(
                    f"{input_path}: the file changed while it was read (still being written?); "
                    "nothing was written for it: the next attempt or run scores it. Upload "
                    "files under a hidden or temporary name and rename them when complete"
                )
            rows_rejected = len(streamed.rejected)
            if streamed.rows_read != streamed.rows_scored + rows_rejected:
                raise RuntimeError(
                    f"{input_path}: {streamed.rows_read} rows read but {streamed.rows_scored} "
                    f"scored + {rows_rejected} rejected; nothing was written (this is a bug: "
                    "report it)"
                )
            facts = {  # the manifest's keys, in the documented order
                "input_path": str(input_path),
                "input_sha256": digest,
                "rows_read": streamed.rows_read,
                "rows_scored": streamed.rows_scored,
                "rows_rejected": rows_rejected,
                "rows_flagged": len(streamed.flagged),
                "model_name": ref.name,
                "model_version": ref.version,
                "model_run_id": ref.run_id,
                "threshold": float(loaded.threshold_),
                "started_at": started.isoformat(),
            }
            report = ScoringReportData(
                input_name=str(input_path),
                model_name=ref.name,
                model_version=ref.version,
                threshold=float(loaded.threshold_),
                rows_read=streamed.rows_read,
                rows_scored=streamed.rows_scored,
                rows_rejected=rows_rejected,
                rows_flagged=len(streamed.flagged),
                expected_flag_rate=loaded.settings.threshold.contamination,
                histogram=streamed.histogram,
                top_anomalies=streamed.top,
                drift=streamed.drift,
                warnings=streamed.warnings,
                details={"run date": run_date, "model run id": ref.run_id, "sha256": digest},
            )
            manifest = _write_outputs(staging, out_dir, streamed, facts, report)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):  # not empty: leftovers of a crash, for the next run
                staging.parent.rmdir()
    if manifest["drift"]["drifted"]:
        logger.warning("%s: %s", input_path, manifest["drift"]["warning"])
    logger.info(
        "%s: %d rows read, %d scored, %d flagged, %d rejected -> %s",
        input_path,
        manifest["rows_read"],
        manifest["rows_scored"],
        manifest["rows_flagged"],
        manifest["rows_rejected"],
        out_dir,
    )
    return {
        **manifest,
        "manifest_path": str(out_dir / MANIFEST_FILE),
        "output_dir": str(out_dir),
        "skipped": False,
    }


def _drift_summary(drift: DriftReport | None) -> dict[str, Any]:
    """The manifest's drift facts. PSI values are left out when the batch is too small to
    judge (they are mostly sampling noise) or the model kept no training rows to compare."""
    if drift is None:
        note = "no drift reference: the model was saved without its held-out training rows"
        return {"drifted": False, "warning": "", "note": note, "max_psi": None, "psi": {}}
    worst = drift.worst[0] if drift.worst else None
    judged = not drift.note
    return {
        "drifted": drift.drifted,
        "warning": drift.warning,
        "note": drift.note,
        "max_psi": max((c.psi for c in drift.columns), default=0.0) if judged else None,
        "worst_column": worst.column if worst else "",
        "psi": {c.column: c.psi for c in drift.columns} if judged else {},
    }


def _write_outputs(
    staging: Path,
    out_dir: Path,
    streamed: StreamedScores,
    facts: dict[str, Any],
    report: ScoringReportData,
) -> dict[str, Any]:
    """Write the other files next to ``scored.parquet`` in ``staging``, manifest last, and
    rename ``staging`` to ``out_dir``."""
    flagged, rejected = streamed.flagged, streamed.rejected
    outputs = {
        SCORED_FILE: _write_synced(staging / SCORED_FILE),
        FLAGGED_FILE: _write_synced(
            staging / FLAGGED_FILE, lambda p: flagged.to_csv(p, index=False)
        ),
        REJECTED_FILE: _write_synced(
            staging / REJECTED_FILE, lambda p: rejected.to_csv(p, index=False)
        ),
        REPORT_FILE: _write_synced(
            staging / REPORT_FILE,
            lambda p: p.write_text(render_scoring_report(report), encoding="utf-8"),
        ),
    }
    manifest = {
        **facts,
        "finished_at": datetime.now(UTC).isoformat(),
        "outputs": outputs,
        "warnings": streamed.warnings,
        "flag_rate": report.flag_rate,
        "expected_flag_rate": report.expected_flag_rate,
        "flag_rate_warning": report.flag_rate_warning,
        "drift": _drift_summary(streamed.drift),
    }
    _write_synced(staging / MANIFEST_FILE, lambda p: p.write_text(json.dumps(manifest, indent=1)))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _publish(staging, out_dir)
    return manifest
