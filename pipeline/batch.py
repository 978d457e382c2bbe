"""Score one input file into its output folder, chunk by chunk, with a manifest.

Streaming: a file is read, scored and written chunk by chunk (``scoring.chunk_rows``), so
memory does not grow with the file; see :func:`_score_into`. The output layout, the manifest,
staging and publish, the rerun lookup and the lock are :mod:`pipeline.outputs`; the report's
aggregates and ``monitoring.csv`` are :mod:`pipeline.monitoring`.

How to run (``chunk_rows``, ``batch_rows``, ``mc_samples``, ``top_reasons``) is the
``scoring`` argument of :func:`score_file`: the run's settings, not the loaded model's.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.checksums import sha256_file
from pipeline.config import ScoringSettings
from pipeline.detector import AnomalyDetector
from pipeline.drift import DriftAccumulator, DriftReport
from pipeline.ingest import ScoringChunk, iter_scoring_chunks, record_lines, table_format
from pipeline.monitoring import ScoreHistogram, TopAnomalies, drift_reference, drift_summary
from pipeline.outputs import (
    FLAGGED_FILE,
    MANIFEST_FILE,
    REJECTED_FILE,
    REPORT_FILE,
    SCORED_FILE,
    Manifest,
    find_previous,
    input_lock,
    output_dir_for,
    publish,
    remove_stale_staging,
    staging_root,
    write_synced,
)
from pipeline.reason_text import values_as_read
from pipeline.registry import ModelRef
from pipeline.report import ScoringReportData, render_scoring_report
from pipeline.scoring import SCORE_COLUMNS
from pipeline.threshold import expected_flag_rate

logger = logging.getLogger(__name__)

TOP_IN_REPORT = 20

DetectorSource = AnomalyDetector | Callable[[], AnomalyDetector]


class InputChangedError(RuntimeError):
    """The input changed while it was read (still being written?); it was not scored."""


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


def _unique_name(name: str, taken: set[str]) -> str:
    while name in taken:
        name = f"input_{name}"
    return name


def with_inputs(scored: pd.DataFrame, as_read: pd.DataFrame, id_columns: list[str]) -> pd.DataFrame:
    """``scored`` (id and score columns) followed by the input columns of the same rows as
    read, id columns left out (they lead already); an input column named like an output
    column is prefixed ``input_``."""
    inputs = as_read.drop(columns=[c for c in id_columns if c in as_read.columns])
    taken = {str(c) for c in scored.columns}
    inputs.columns = [_unique_name(str(c), taken) for c in inputs.columns]
    return pd.concat([scored.reset_index(drop=True), inputs.reset_index(drop=True)], axis=1)


def _rejected_as_read(rejected: pd.DataFrame, chunk: ScoringChunk) -> pd.DataFrame:
    """Rejected rows: ``line`` (the record number, for now), ``reason``, then every field as
    read (a CSV field's text, not the value parsed from it)."""
    as_read = chunk.rows_as_read(rejected["line"].to_numpy())
    return pd.concat([rejected[["line", "reason"]].reset_index(drop=True), as_read], axis=1)


def _score_into(
    detector: AnomalyDetector,
    ref: ModelRef,
    input_path: Path,
    scored_path: Path,
    options: ScoringSettings,
) -> StreamedScores:
    """Score ``input_path`` chunk by chunk, appending every scored row to ``scored_path``.

    Memory is bounded by ``scoring.chunk_rows`` (plus the flagged and rejected rows, which are
    kept to be sorted): a chunk is read, checked, preprocessed, scored and written before the
    next one is read. Reasons are computed for flagged rows only. Flagged rows (and, with
    ``scoring.scored_input_columns``, every scored row) carry the input columns as read;
    rejected rows carry every field as read.
    """
    schema = detector.schema_
    cut = detector.threshold_ if options.threshold is None else float(options.threshold)
    chunks = iter_scoring_chunks(
        input_path,
        string_columns=schema.categorical_columns + schema.id_columns,
        numeric_columns=schema.numeric_columns,
        chunk_rows=options.chunk_rows,
    )
    writer: pq.ParquetWriter | None = None
    out_schema: pa.Schema | None = None
    # the report's aggregates, accumulated chunk by chunk (fixed memory)
    histogram = ScoreHistogram.for_threshold(detector.reference_quantiles_, cut)
    reference = drift_reference(detector)
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
                threshold=options.threshold,
                log_warnings=False,
                scoring=options,
            )
            for message in result.warnings:
                if message not in warnings:
                    logger.warning(message)
                    warnings.append(message)
            scored, lines = result.scored, result.scored_lines
            flags = scored["is_anomaly"].to_numpy() == 1
            flagged_read = chunk.rows_as_read(lines[flags])
            if chunk.raw is not None and flags.any() and result.accepted is not None:
                # the reasons' numbers as the file wrote them (76.0, not 76)
                scored.loc[flags, "reasons"] = values_as_read(
                    scored.loc[flags, "reasons"].tolist(),
                    result.accepted.iloc[np.flatnonzero(flags)],
                    flagged_read,
                    schema.numeric_columns,
                )
            if options.scored_input_columns:
                scored = with_inputs(scored, chunk.rows_as_read(lines), schema.id_columns)
                flagged.append(scored[flags])
            else:
                flagged.append(with_inputs(scored[flags], flagged_read, schema.id_columns))
            table = pa.Table.from_pandas(scored, preserve_index=False)
            if writer is None or out_schema is None:
                out_schema = _output_schema(table)
                writer = pq.ParquetWriter(scored_path, out_schema)
            writer.write_table(table.cast(out_schema))
            rows_scored += len(result.scored)
            histogram.update(result.scored["anomaly_score"].to_numpy())
            if drift is not None and result.accepted is not None:
                drift.update(result.accepted)
            if len(result.rejected):
                rejected.append(_rejected_as_read(result.rejected, chunk))
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
    scoring: ScoringSettings | None = None,
) -> Manifest:
    """Score ``input_path`` and write its outputs; returns the manifest (``skipped`` if reused).

    ``detector`` is the loaded detector or a function returning it, called only when the file
    has to be scored (a rerun that skips every file loads no model). ``scoring``: how to run
    (default: the detector's settings); its ``threshold``, when set, replaces the model's for
    this run, and an earlier output made with another cut-off is not reused.
    """
    input_path = Path(input_path)
    stem = input_path.stem
    with input_lock(output_root, stem, lock_timeout_seconds):
        remove_stale_staging(output_root, stem)
        before = _file_state(input_path)
        digest = sha256_file(input_path)
        override = scoring.threshold if scoring is not None else None
        if not force:
            previous = find_previous(output_root, stem, digest, ref.version, override)
            if previous is not None:
                logger.info(
                    "skip %s: already scored with %s version %s (%s)",
                    input_path,
                    ref.name,
                    ref.version,
                    previous.manifest_path,
                )
                return previous.model_copy(update={"skipped": True})
        started = datetime.now(UTC)
        loaded = detector if isinstance(detector, AnomalyDetector) else detector()
        options = scoring or loaded.settings.scoring.model_copy(update={"threshold": None})
        cut = loaded.threshold_ if options.threshold is None else float(options.threshold)
        rules = loaded.settings.threshold
        expected_rate = expected_flag_rate(
            rules, loaded.reference_quantiles_, cut, options.threshold is not None
        )
        rule = (
            "set for this run (scoring.threshold)"
            if options.threshold is not None
            else f"the model's: {rules.rule}"
        )
        out_dir = output_dir_for(output_root, run_date, stem, digest)
        staging = staging_root(output_root, stem) / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            streamed = _score_into(loaded, ref, input_path, staging / SCORED_FILE, options)
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
            report = ScoringReportData(
                input_name=str(input_path),
                model_name=ref.name,
                model_version=ref.version,
                threshold=cut,
                threshold_rule=rule,
                rows_read=streamed.rows_read,
                rows_scored=streamed.rows_scored,
                rows_rejected=rows_rejected,
                rows_flagged=len(streamed.flagged),
                expected_flag_rate=expected_rate,
                histogram=streamed.histogram,
                top_anomalies=streamed.top,
                drift=streamed.drift,
                warnings=streamed.warnings,
                details={"run date": run_date, "model run id": ref.run_id, "sha256": digest},
                # no wall-clock time (manifest.json has it): the outputs are a function of
                # the input, the model and the run date, so reruns and executors agree
                generated_at=f"for run date {run_date}",
            )
            manifest = Manifest(
                input_path=str(input_path),
                input_sha256=digest,
                rows_read=streamed.rows_read,
                rows_scored=streamed.rows_scored,
                rows_rejected=rows_rejected,
                rows_flagged=len(streamed.flagged),
                model_name=ref.name,
                model_version=ref.version,
                model_run_id=ref.run_id,
                threshold=cut,
                threshold_override=options.threshold,
                started_at=started.isoformat(),
                warnings=streamed.warnings,
                flag_rate=report.flag_rate,
                expected_flag_rate=report.expected_flag_rate,
                flag_rate_warning=report.flag_rate_warning,
                drift=drift_summary(streamed.drift),
            )
            manifest = _write_outputs(staging, out_dir, streamed, manifest, report)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):  # not empty: leftovers of a crash, for the next run
                staging.parent.rmdir()
    if manifest.drift.drifted:
        logger.warning("%s: %s", input_path, manifest.drift.warning)
    logger.info(
        "%s: %d rows read, %d scored, %d flagged, %d rejected -> %s",
        input_path,
        manifest.rows_read,
        manifest.rows_scored,
        manifest.rows_flagged,
        manifest.rows_rejected,
        out_dir,
    )
    return manifest.model_copy(
        update={"manifest_path": str(out_dir / MANIFEST_FILE), "output_dir": str(out_dir)}
    )


def _write_outputs(
    staging: Path,
    out_dir: Path,
    streamed: StreamedScores,
    manifest: Manifest,
    report: ScoringReportData,
) -> Manifest:
    """Write the other files next to ``scored.parquet`` in ``staging``, manifest last, and
    rename ``staging`` to ``out_dir``."""
    flagged, rejected = streamed.flagged, streamed.rejected
    outputs = {
        SCORED_FILE: write_synced(staging / SCORED_FILE),
        FLAGGED_FILE: write_synced(
            staging / FLAGGED_FILE, lambda p: flagged.to_csv(p, index=False)
        ),
        REJECTED_FILE: write_synced(
            staging / REJECTED_FILE, lambda p: rejected.to_csv(p, index=False)
        ),
        REPORT_FILE: write_synced(
            staging / REPORT_FILE,
            lambda p: p.write_text(render_scoring_report(report), encoding="utf-8"),
        ),
    }
    manifest = manifest.model_copy(
        update={"finished_at": datetime.now(UTC).isoformat(), "outputs": outputs}
    )
    text = manifest.to_json()
    write_synced(staging / MANIFEST_FILE, lambda p: p.write_text(text))
    publish(staging, out_dir)
    return manifest
