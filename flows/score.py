"""Batch scoring flow: resolve the alias once -> load -> score each file -> write outputs.

Files are scored one after another in the flow's process (``scoring.executor="sequential"``,
the default) or fanned out to a Dask cluster (``"dask"``: prefect-dask's ``DaskTaskRunner``,
connected to ``scoring.dask_address`` or to a local cluster started for the run). Either way
the per-file tasks receive a path and the model reference, never a frame or the model: each
process loads the model itself, once (:func:`cached_detector`).

A file that fails does not stop the others: the run scores every file it can, writes its
artifacts, then fails naming the files that were not scored; the next run scores them (the
files already done are skipped).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import mlflow
from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner
from pydantic import SecretStr

from flows._settings import Overrides, settings_for_run
from flows._tasks import io_task
from pipeline.batch import score_file
from pipeline.config import ScoringSettings, Settings, redact, sample_path
from pipeline.detector import AnomalyDetector
from pipeline.inputs import expand_inputs
from pipeline.monitoring import MONITORING_FILE, write_monitoring
from pipeline.outputs import FLAGGED_FILE, MANIFEST_FILE, REPORT_FILE, Manifest, OutputBusyError
from pipeline.registry import ModelRef, load_detector, resolve_alias
from pipeline.tracking import log_scoring_run

SAMPLE_BATCH = "batch.csv"  # the default input: <home>/data/sample/batch.csv (vae-anomaly demo)
# the tasks' time limits by default; each run applies its settings' values (with_options)
_LIMITS = ScoringSettings()


class ScoringError(RuntimeError):
    """Some input files could not be scored; the message names each one and why.

    ``manifests``: the files of the run that were scored or skipped (the CLI reports them and
    exits with code 3 when there are any).
    """

    def __init__(self, message: str, manifests: list[Manifest] | None = None) -> None:
        super().__init__(message)
        self.manifests: list[Manifest] = list(manifests or [])


@dataclass(frozen=True)
class ScoringJob:
    """What every per-file task needs: small and picklable (shipped to Dask workers).

    The tracking URI may hold credentials: as a ``SecretStr`` it shows as ``**********`` among
    the run's parameters in the Prefect API and UI.
    """

    ref: ModelRef
    tracking_uri: SecretStr
    output_root: str
    run_date: str
    force: bool
    scoring: ScoringSettings  # how to run: chunk and batch sizes, reasons, Monte Carlo, lock
    device: str


@dataclass(frozen=True)
class FileOutcome:
    """The manifest of one input file, or why it could not be scored."""

    path: str
    manifest: Manifest | None
    error: str | None


@functools.lru_cache(maxsize=4)
def cached_detector(tracking_uri: str, ref: ModelRef, device: str) -> AnomalyDetector:
    """The detector of ``ref`` from the registry at ``tracking_uri``, loaded once per process."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return load_detector(ref, device)


@io_task(timeout_seconds=_LIMITS.io_timeout_seconds)
def list_inputs(inputs: list[str] | str) -> list[str]:
    """The files to score (paths, globs and folders expanded)."""
    return [str(path) for path in expand_inputs(inputs)]


@io_task(timeout_seconds=_LIMITS.io_timeout_seconds)
def resolve_model(settings: Settings, alias: str | None) -> ModelRef:
    """``models:/NAME@alias`` -> a version, once per run (RegistryError when missing)."""
    return resolve_alias(settings, alias)


@io_task(timeout_seconds=_LIMITS.io_timeout_seconds)
def load_model(tracking_uri: str, ref: ModelRef, device: str) -> str:
    """Load the model in the flow's process (checksums verified): a broken model fails early."""
    detector = cached_detector(tracking_uri, ref, device)
    return f"{ref.uri} (threshold {detector.threshold_:.2f})"


@task(cache_policy=NO_CACHE)
def log_run(
    settings: Settings, ref: ModelRef, run_date: str, manifests: list[Manifest], root: Path
) -> str:
    """Log this run's flag rate, drift and reports to MLflow (the scoring experiment)."""
    attachments = [(root / MONITORING_FILE, "")]
    for manifest in manifests:
        folder = Path(manifest.output_dir)
        attachments += [
            (folder / name, f"outputs/{folder.name}") for name in (REPORT_FILE, MANIFEST_FILE)
        ]
    return log_scoring_run(settings, ref, run_date, manifests, attachments)


@io_task(timeout_seconds=None, retries=2)
def score_one_file(path: str, job: ScoringJob) -> Manifest:
    """Score one file into its output folder (skipped if already scored by this version).

    Its time limit (``scoring.file_timeout_seconds``) is set where it runs in the flow's thread
    (:func:`score_files_in_turn`), not on Dask, where a worker thread cannot be interrupted.
    """
    return score_file(
        functools.partial(
            cached_detector, job.tracking_uri.get_secret_value(), job.ref, job.device
        ),
        job.ref,
        Path(path),
        Path(job.output_root),
        job.run_date,
        force=job.force,
        lock_timeout_seconds=job.scoring.lock_timeout_seconds,
        scoring=job.scoring,
    )


def dask_task_runner(scoring: ScoringSettings) -> TaskRunner[Any]:
    """prefect-dask's runner: the cluster at ``dask_address``, else a local one for the run."""
    from prefect_dask import DaskTaskRunner

    if scoring.dask_address:
        return DaskTaskRunner(address=scoring.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": scoring.dask_workers,
            "threads_per_worker": scoring.dask_threads_per_worker,
            "processes": scoring.dask_processes,
            "dashboard_address": None,
        }
    )


def score_files_in_turn(
    files: list[str], job: ScoringJob, timeout_seconds: float, retries: int
) -> list[FileOutcome]:
    """Score ``files`` one after another in the calling flow's thread (``executor="sequential"``).

    In the flow's own thread a time limit can interrupt a blocked read; one outcome per file,
    failures included.
    """
    scorer = score_one_file.with_options(timeout_seconds=timeout_seconds, retries=retries)
    states = [scorer(path, job, return_state=True) for path in files]
    return [_outcome(path, state) for path, state in zip(files, states, strict=True)]


@flow(name="vae-anomaly-score-files")
def score_files_on_dask(files: list[str], job: ScoringJob, retries: int = 2) -> list[FileOutcome]:
    """Map ``files`` to the Dask cluster of this subflow's task runner; one outcome per file.

    No time limit here: a Dask worker thread cannot be interrupted in a blocked read.
    """
    futures = score_one_file.with_options(retries=retries).map(files, unmapped(job))
    wait(futures)
    return [_outcome(path, future.state) for path, future in zip(files, futures, strict=True)]


def _outcome(path: str, state: State[Any]) -> FileOutcome:
    if state.is_completed():
        return FileOutcome(path, state.result(), None)
    return FileOutcome(path, None, _failure_message(state))


def _failure_message(state: State[Any]) -> str:
    error = state.result(raise_on_failure=False)
    if isinstance(error, BaseException):
        text = str(error).strip().splitlines()
        return redact(f"{type(error).__name__}: {text[0] if text else ''}")
    return str(state.message or state.name)


def _run_date(explicit: str | None) -> str:
    """The output partition: explicit, else the UTC date the run was scheduled for."""
    if explicit:
        try:
            return date.fromisoformat(explicit).isoformat()
        except ValueError:
            raise ValueError(
                f"run_date {explicit!r} is not a date: use YYYY-MM-DD, e.g. 2026-01-31"
            ) from None
    scheduled: datetime = flow_run.scheduled_start_time
    return scheduled.astimezone(UTC).date().isoformat()


@flow(name="vae-anomaly-score")
def score_flow(
    inputs: list[str] | str | None = None,
    alias: str | None = None,
    output_root: str | None = None,
    run_date: str | None = None,
    force: bool = False,
    overrides: Overrides | None = None,
) -> list[Manifest]:
    """Score files (paths, globs or folders) with ``models:/NAME@alias``, resolved once.

    ``inputs`` defaults to the home's sample batch (``data/sample/batch.csv``).
    Writes ``<output_root>/<run date>/<input stem>/`` per file; a file already scored with the
    resolved model version (on any date) is skipped unless ``force``. Raises
    :class:`ScoringError` after scoring the other files when some files fail.
    """
    started = datetime.now(UTC)
    logger = get_run_logger()
    settings = settings_for_run(overrides)
    scoring = settings.scoring
    io_options: dict[str, Any] = {
        "timeout_seconds": scoring.io_timeout_seconds,
        "retries": scoring.io_retries,
    }
    root = Path(output_root) if output_root else scoring.output_root
    partition = _run_date(run_date)
    files = list_inputs.with_options(**io_options)(
        inputs if inputs is not None else str(sample_path(SAMPLE_BATCH))
    )
    # one time budget for the whole resolve (tracking.resolve_timeout_seconds), spent inside
    # resolve_alias: no task retries on top of it
    ref = resolve_model.with_options(timeout_seconds=scoring.io_timeout_seconds, retries=0)(
        settings, alias
    )
    logger.info("models:/%s@%s -> version %s", ref.name, ref.alias, ref.version)
    tracking_uri = settings.tracking.resolved_uri()
    device = settings.training.device
    load_model.with_options(**io_options)(tracking_uri, ref, device)
    job = ScoringJob(
        ref=ref,
        tracking_uri=SecretStr(tracking_uri),
        output_root=str(root.resolve()),
        run_date=partition,
        force=force,
        scoring=scoring,
        device=device,
    )
    logger.info("%d file(s) to score with executor %s", len(files), scoring.executor)
    if scoring.executor == "dask":
        outcomes = score_files_on_dask.with_options(task_runner=dask_task_runner(scoring))(
            files, job, scoring.file_retries
        )
    else:
        outcomes = score_files_in_turn(
            files, job, scoring.file_timeout_seconds, scoring.file_retries
        )
    manifests = [o.manifest for o in outcomes if o.manifest is not None]
    failures = [o for o in outcomes if o.error is not None]
    fresh = [m for m in manifests if not m.skipped]
    for manifest in fresh:
        if manifest.drift.drifted:
            logger.warning("%s: %s", Path(manifest.input_path).name, manifest.drift.warning)
    mlflow_run = ""
    if fresh:  # the monitoring table across runs, rebuilt from the manifests once per run
        try:
            write_monitoring(root, scoring.lock_timeout_seconds)
        except (OSError, OutputBusyError) as exc:  # rebuilt complete by the next run
            logger.warning("monitoring.csv not updated: %s", exc)
        try:
            # no retry: a retry after the MLflow run was created would log it twice
            mlflow_run = log_run.with_options(
                timeout_seconds=scoring.io_timeout_seconds, retries=0
            )(settings, ref, partition, fresh, root)
        except Exception as exc:  # the outputs are written; a tracking outage must not fail
            logger.warning(
                "the scoring run was not logged to MLflow (%s): %s",
                redact(settings.tracking.resolved_uri()),
                redact(str(exc)),
            )
    seconds = (datetime.now(UTC) - started).total_seconds()
    create_markdown_artifact(
        key="scoring-summary",
        markdown=_summary_markdown(ref, manifests, failures, seconds, mlflow_run),
    )
    top = _top_anomalies(manifests)
    if top:
        create_table_artifact(key="top-anomalies", table=top)
    if failures:
        raise ScoringError(
            f"{len(failures)} of {len(outcomes)} file(s) not scored: "
            + "; ".join(f"{o.path}: {o.error}" for o in failures)
            + ". Fix them (or wait for a transient error to pass) and run again: "
            "files already scored are skipped",
            manifests,
        )
    return manifests


def _drift_cell(manifest: Manifest) -> str:
    drift = manifest.drift
    if drift.drifted:
        return f"**DRIFT** ({drift.worst_column}, PSI {drift.max_psi or 0:.2f})"
    if drift.max_psi is None:
        return "not judged"
    return f"ok (max PSI {drift.max_psi:.2f})"


def _summary_markdown(
    ref: ModelRef,
    manifests: list[Manifest],
    failures: list[FileOutcome],
    seconds: float,
    mlflow_run: str = "",
) -> str:
    lines = [
        f"## Scored with {ref.name} version {ref.version} (alias `{ref.alias}`)\n",
        "| input | rows read | scored | flagged | flag rate | rejected | drift | threshold "
        "| skipped | report |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in manifests:
        rate = m.rows_flagged / m.rows_scored if m.rows_scored else 0.0
        report = Path(m.output_dir) / REPORT_FILE
        lines.append(
            f"| {Path(m.input_path).name} | {m.rows_read} | {m.rows_scored} | "
            f"{m.rows_flagged} | {rate:.2%} | {m.rows_rejected} | {_drift_cell(m)} | "
            f"{m.threshold:.2f} | {m.skipped} | `{report}` |"
        )
    drifted = [m for m in manifests if m.drift.drifted]
    if drifted:
        lines.append("\n**Data drift:**\n")
        lines += [f"- {Path(m.input_path).name}: {m.drift.warning}" for m in drifted]
    fresh = [m for m in manifests if not m.skipped]
    lines.append(
        f"\nScored {len(fresh)} file(s) now: {sum(m.rows_read for m in fresh)} rows read, "
        f"{sum(m.rows_flagged for m in fresh)} flagged, "
        f"{sum(m.rows_rejected for m in fresh)} rejected; "
        f"{len(manifests) - len(fresh)} skipped (already scored with this version)."
    )
    if failures:
        lines.append(f"\n**{len(failures)} file(s) not scored:**\n")
        lines += [f"- `{o.path}`: {o.error}" for o in failures]
    if mlflow_run:
        lines.append(f"\nMLflow scoring run: `{mlflow_run}` (flag rate and PSI as metrics)")
    lines.append(f"\nDuration: {seconds:.1f} s")
    return "\n".join(lines)


def _top_anomalies(manifests: list[Manifest], n: int = 20) -> list[dict[str, Any]]:
    """The ``n`` highest-scored flagged rows of the files scored in this run."""
    import pandas as pd

    frames = []
    for m in manifests:
        flagged = Path(m.output_dir) / FLAGGED_FILE
        if not m.skipped and m.rows_flagged and flagged.is_file():
            frames.append(pd.read_csv(flagged, nrows=n).assign(input=Path(m.input_path).name))
    if not frames:
        return []
    top = pd.concat(frames).sort_values("anomaly_score", ascending=False).head(n)
    return top.astype(str).to_dict(orient="records")  # type: ignore[return-value]
