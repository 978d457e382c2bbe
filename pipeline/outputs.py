"""The outputs of a scored file: layout, manifest, staging and publish, rerun lookup, lock.

Layout: ``<output_root>/<run date>/<input stem>/`` holding ``scored.parquet`` (every scored
row), ``flagged.csv`` (flagged rows, for people: with every input column as read),
``rejected.csv`` (rows that could not be scored, with line, reason and their raw text),
``report.html`` (the run's self-contained report) and ``manifest.json`` (its presence marks the
output complete; :class:`Manifest`).

Atomicity: the files are written into a staging folder
(``<output_root>/.staging/<stem>/<hex>/``; each file fsynced, the manifest last) and the
staging folder is renamed into place (:func:`publish`), so ``<run date>/<stem>/`` either holds
a complete output or does not exist. A crash leaves at most a staging folder, removed by the
next run on a file of that name (:func:`remove_stale_staging`).

Rerun key: (input sha256, model version, scoring-time threshold), looked up in the manifests
of every run date (:func:`find_previous`): an input already scored with the same model version
(and the same ``scoring.threshold``, usually none) is skipped unless ``force`` is set.

Name collisions: two different inputs with the same stem (``a/orders.csv`` and
``b/orders.csv``, or ``orders.csv`` and ``orders.parquet``) must not share an output folder.
The plain ``<stem>`` folder of a run date belongs to the first input written there; a later
input with other contents goes to ``<stem>-<first 8 hex digits of its sha256>`` of that date.

Concurrency: everything about inputs of one stem (the rerun check, the choice of folder, the
write) happens under an exclusive lock file ``<output_root>/.locks/<stem>.lock``
(:func:`input_lock`, ``filelock``: an ``flock`` released by the kernel when a process dies),
so two runs on the same input never both score it: the second waits and then finds the
first one's manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock
from pydantic import BaseModel, ConfigDict, Field

from pipeline.checksums import sha256_file

logger = logging.getLogger(__name__)

SCORED_FILE = "scored.parquet"
FLAGGED_FILE = "flagged.csv"
REJECTED_FILE = "rejected.csv"
MANIFEST_FILE = "manifest.json"
REPORT_FILE = "report.html"
LOCK_DIR = ".locks"
STAGING_DIR = ".staging"
CONTENT_TAG_LENGTH = 8


class OutputBusyError(RuntimeError):
    """Another run holds the lock of an input's outputs for too long; the file was not scored."""


class DriftSummary(BaseModel):
    """The manifest's drift facts. PSI values are left out (``max_psi`` None, ``psi`` empty)
    when the batch is too small to judge or the model kept no training rows to compare."""

    model_config = ConfigDict(extra="ignore")

    drifted: bool = False
    warning: str = ""
    note: str = ""
    max_psi: float | None = None
    worst_column: str = ""
    psi: dict[str, float] = Field(default_factory=dict)


class Manifest(BaseModel):
    """``manifest.json`` of one scored file, in the documented key order.

    Reads the manifests already on disk (keys added later default; unknown keys ignored).
    ``output_dir``, ``manifest_path`` and ``skipped`` say where it was found and whether the
    file was skipped as already scored: they are not written to the file.
    """

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    input_path: str
    input_sha256: str
    rows_read: int
    rows_scored: int
    rows_rejected: int
    rows_flagged: int
    model_name: str
    model_version: str
    model_run_id: str = ""
    threshold: float
    started_at: str = ""
    finished_at: str = ""
    outputs: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    flag_rate: float | None = None
    expected_flag_rate: float | None = None
    flag_rate_warning: str = ""
    threshold_override: float | None = None  # the run's scoring.threshold; None: the model's
    drift: DriftSummary = Field(default_factory=DriftSummary)
    output_dir: str = Field(default="", exclude=True)
    manifest_path: str = Field(default="", exclude=True)
    skipped: bool = Field(default=False, exclude=True)

    @property
    def observed_flag_rate(self) -> float:
        """The flagged share of the scored rows (from the counts when an old manifest lacks
        ``flag_rate``)."""
        if self.flag_rate is not None:
            return self.flag_rate
        return self.rows_flagged / self.rows_scored if self.rows_scored else 0.0

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1)

    @classmethod
    def read(cls, path: Path) -> Manifest | None:
        """The manifest at ``path`` (with where it was found), None if absent or unreadable."""
        try:
            loaded = json.loads(path.read_text())
            manifest = cls.model_validate(loaded)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # JSONDecodeError and ValidationError are ValueErrors
            logger.warning("ignoring unreadable manifest %s", path)
            return None
        return manifest.model_copy(
            update={"output_dir": str(path.parent), "manifest_path": str(path)}
        )


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def safe_name(stem: str) -> str:
    """``stem`` as a file name of bounded length (lock file, staging folder)."""
    if len(stem) <= 150:
        return stem
    return f"{stem[:100]}-{hashlib.sha256(stem.encode()).hexdigest()}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, write: Callable[[Path], Any] | None = None) -> str:
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
    path = lock_dir / f"{safe_name(stem)}.lock"
    # one lock file per stem, kept (not deleted on release: a deleted file could let a waiting
    # process and a new one lock two different files of the same name)
    lock = filelock.FileLock(
        path, timeout=timeout_seconds, thread_local=False, preserve_lock_file=True
    )
    try:
        lock.acquire(poll_interval=0.2)
    except filelock.Timeout:
        raise OutputBusyError(
            f"another run is still scoring a file named {stem!r} into {output_root} "
            f"(lock {path} held for over {timeout_seconds:g} s); this file was not "
            "scored: retry later, or raise scoring.lock_timeout_seconds"
        ) from None
    try:
        yield path
    finally:
        lock.release()


def date_dirs(output_root: Path) -> list[Path]:
    """The run-date folders under ``output_root``, oldest first."""
    if not output_root.is_dir():
        return []
    return sorted(p for p in output_root.iterdir() if p.is_dir() and not is_hidden(p))


def _candidate_names(stem: str, input_sha256: str) -> tuple[str, str]:
    """The plain folder name and the content-tagged one used when the plain one is taken."""
    return stem, f"{stem}-{input_sha256[:CONTENT_TAG_LENGTH]}"


def find_previous(
    output_root: Path,
    stem: str,
    input_sha256: str,
    model_version: str,
    threshold_override: float | None = None,
) -> Manifest | None:
    """The manifest of an earlier complete run on the same input with the same model version
    and the same scoring-time threshold (None: the model's own)."""
    for date_dir in date_dirs(output_root):
        for name in _candidate_names(stem, input_sha256):
            manifest = Manifest.read(date_dir / name / MANIFEST_FILE)
            if (
                manifest is not None
                and manifest.input_sha256 == input_sha256
                and manifest.model_version == model_version
                and manifest.threshold_override == threshold_override
            ):
                return manifest
    return None


def all_manifests(output_root: Path) -> Iterator[tuple[str, Manifest]]:
    """(run date, manifest) of every complete output under ``output_root``."""
    for date_dir in date_dirs(output_root):
        for path in sorted(date_dir.glob(f"*/{MANIFEST_FILE}")):
            manifest = Manifest.read(path)
            if manifest is not None:
                yield date_dir.name, manifest


def output_dir_for(output_root: Path, run_date: str, stem: str, input_sha256: str) -> Path:
    """``<root>/<date>/<stem>``, unless it holds the outputs of other input contents."""
    date_dir = output_root / run_date
    plain, tagged = (date_dir / name for name in _candidate_names(stem, input_sha256))
    owner = Manifest.read(plain / MANIFEST_FILE)
    if owner is None or owner.input_sha256 == input_sha256:
        return plain
    logger.warning(
        "%s holds the outputs of %s (other contents, same name): writing to %s",
        plain,
        owner.input_path,
        tagged,
    )
    return tagged


def staging_root(output_root: Path, stem: str) -> Path:
    return output_root / STAGING_DIR / safe_name(stem)


def remove_stale_staging(output_root: Path, stem: str) -> bool:
    """Remove staging folders of ``stem`` left by interrupted runs (call under its lock)."""
    root = staging_root(output_root, stem)
    if not root.is_dir() or not any(root.iterdir()):
        return False
    logger.warning("removing %s, left by an interrupted run", root)
    shutil.rmtree(root, ignore_errors=True)
    return True


def publish(staging: Path, out_dir: Path) -> None:
    """Rename the complete staging folder to ``out_dir`` (replacing an older output)."""
    fsync_dir(staging)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if out_dir.exists():
        old = staging.with_name(f"{uuid.uuid4().hex}.old")
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    fsync_dir(out_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_atomically(path: Path, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` through a temporary name in its folder and rename it into place."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
