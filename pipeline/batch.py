"""Score one input file into the output layout, atomically, with a manifest.

Layout: ``<output_root>/<run date>/<input stem>/`` holding ``scored.parquet`` (every scored
row), ``flagged.csv`` (flagged rows, for people), ``rejected.csv`` (rows that could not be
scored, with line and reason) and ``manifest.json`` (written last: its presence marks the
output complete). Each file is written under a temporary name, fsynced and renamed.

Rerun key: (input sha256, model version), looked up in the manifests of every run date: an
input already scored with the same model version is skipped unless ``force`` is set.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.checksums import sha256_file
from pipeline.detector import SCORE_COLUMNS, AnomalyDetector
from pipeline.ingest import InputError, read_for_scoring
from pipeline.tracking import ModelRef

logger = logging.getLogger(__name__)

SCORED_FILE = "scored.parquet"
FLAGGED_FILE = "flagged.csv"
REJECTED_FILE = "rejected.csv"
MANIFEST_FILE = "manifest.json"
INPUT_SUFFIXES = (".csv", ".parquet", ".pq")


def expand_inputs(inputs: list[str] | str) -> list[Path]:
    """Files from a list of paths, globs and folders (a folder means its CSV/Parquet files)."""
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in INPUT_SUFFIXES)
        elif any(ch in item for ch in "*?["):
            base = Path(path.anchor) if path.is_absolute() else Path()
            pattern = str(path.relative_to(path.anchor)) if path.is_absolute() else item
            found += sorted(p for p in base.glob(pattern) if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{item}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise InputError(f"no CSV or Parquet file found in {items}")
    return unique


def _write_atomic(path: Path, write: Callable[[Path], Any]) -> str:
    """Write through ``write(tmp_path)``, fsync, rename over ``path``; return its sha256."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256_file(path)


def _manifests(output_root: Path, stem: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    for manifest in sorted(output_root.glob(f"*/{stem}/{MANIFEST_FILE}")):
        try:
            yield manifest, json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            logger.warning("ignoring unreadable manifest %s", manifest)


def find_previous(
    output_root: Path, stem: str, input_sha256: str, model_version: str
) -> dict[str, Any] | None:
    """The manifest of an earlier complete run on the same input with the same model version."""
    for path, manifest in _manifests(output_root, stem):
        if (
            manifest.get("input_sha256") == input_sha256
            and str(manifest.get("model_version")) == model_version
        ):
            return {**manifest, "manifest_path": str(path)}
    return None


def score_file(
    detector: AnomalyDetector,
    ref: ModelRef,
    input_path: Path,
    output_root: Path,
    run_date: str,
    force: bool = False,
) -> dict[str, Any]:
    """Score ``input_path`` and write its outputs; returns the manifest (``skipped`` if reused)."""
    started = datetime.now(UTC)
    digest = sha256_file(input_path)
    stem = input_path.stem
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
    schema = detector.schema_
    raw = read_for_scoring(
        input_path, string_columns=schema.categorical_columns + schema.id_columns
    )
    out_dir = output_root / run_date / stem
    if raw.frame.empty and not raw.bad_lines and raw.frame.columns.empty:
        scored = pd.DataFrame(columns=[*schema.id_columns, *SCORE_COLUMNS])
        rejected = pd.DataFrame(columns=["line", "reason"])
        warnings: list[str] = [f"{input_path}: empty file"]
    else:
        result = detector.score(
            raw.frame,
            source=str(input_path),
            line_numbers=raw.line_numbers,
            model_name=ref.name,
            model_version=ref.version,
        )
        scored, rejected, warnings = result.scored, result.rejected, result.warnings
        if raw.bad_lines:
            malformed = pd.DataFrame(raw.bad_lines, columns=["line", "reason", "raw_line"])
            rejected = pd.concat([rejected, malformed], ignore_index=True).sort_values(
                "line", kind="stable"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_FILE).unlink(
        missing_ok=True
    )  # an older manifest must not vouch for new files
    flagged = scored[scored["is_anomaly"] == 1].sort_values("anomaly_score", ascending=False)
    outputs = {
        SCORED_FILE: _write_atomic(
            out_dir / SCORED_FILE, lambda p: scored.to_parquet(p, index=False)
        ),
        FLAGGED_FILE: _write_atomic(
            out_dir / FLAGGED_FILE, lambda p: flagged.to_csv(p, index=False)
        ),
        REJECTED_FILE: _write_atomic(
            out_dir / REJECTED_FILE, lambda p: rejected.to_csv(p, index=False)
        ),
    }
    manifest = {
        "input_path": str(input_path),
        "input_sha256": digest,
        "rows_read": int(len(scored) + len(rejected)),
        "rows_scored": len(scored),
        "rows_rejected": len(rejected),
        "rows_flagged": len(flagged),
        "model_name": ref.name,
        "model_version": ref.version,
        "model_run_id": ref.run_id,
        "threshold": float(detector.threshold_),
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "outputs": outputs,
        "warnings": warnings,
    }
    _write_atomic(out_dir / MANIFEST_FILE, lambda p: p.write_text(json.dumps(manifest, indent=1)))
    logger.info(
        "%s: %d rows read, %d scored, %d flagged, %d rejected -> %s",
        input_path,
        manifest["rows_read"],
        manifest["rows_scored"],
        manifest["rows_flagged"],
        manifest["rows_rejected"],
        out_dir,
    )
    return {**manifest, "output_dir": str(out_dir), "skipped": False}
