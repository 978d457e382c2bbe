"""Training flow: read -> fit -> log to MLflow -> register (challenger; champion if there is
none and the version passes the gate's sanity checks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows._settings import Overrides, settings_for_run
from flows._tasks import io_task
from pipeline.checksums import sha256_file
from pipeline.config import Settings, sample_path
from pipeline.detector import AnomalyDetector
from pipeline.ingest import read_table
from pipeline.progress import epoch_progress
from pipeline.promotion import GateResult, new_version_gate
from pipeline.promotion_history import record_decision
from pipeline.registry import IncompleteRegistrationError, champion_version, tracking_reachable
from pipeline.report import loss_curves, render_training_report, score_histogram
from pipeline.report.training import training_stop
from pipeline.tracking import log_training_run

SAMPLE_TRAIN = "train.csv"  # the default table: <home>/data/sample/train.csv (vae-anomaly demo)


# time limits of the I/O tasks (reading the table, logging to MLflow); none on fitting
READ_TIMEOUT_SECONDS = 900
MLFLOW_TIMEOUT_SECONDS = 900


@io_task(timeout_seconds=READ_TIMEOUT_SECONDS, retries=2)
def read_training_table(path: str) -> pd.DataFrame:
    return read_table(path)


@task(cache_policy=NO_CACHE)
def fit_detector(frame: pd.DataFrame, settings: Settings) -> AnomalyDetector:
    logger = get_run_logger()
    with epoch_progress(
        settings.training.max_epochs, enabled=settings.training.progress_bar
    ) as on_epoch:
        detector = AnomalyDetector(settings).fit(frame, on_epoch=on_epoch)
    warning = training_stop(detector).warning()
    if warning:
        logger.warning(warning)
    logger.info(
        "fitted: %d epochs (best %d) in %.1fs on %s, threshold %.4g",
        len(detector.history_),
        detector.best_epoch_,
        detector.train_seconds_,
        detector.device_,
        detector.threshold_,
    )
    return detector


@io_task(timeout_seconds=MLFLOW_TIMEOUT_SECONDS, retries=2)
def log_and_register(
    detector: AnomalyDetector, frame: pd.DataFrame, data_path: str, settings: Settings
) -> dict[str, Any]:
    digest = sha256_file(Path(data_path))
    figures = {
        "plots/loss_curves.png": loss_curves(detector.history_, detector.best_epoch_),
        "plots/score_histogram.png": score_histogram(
            detector.validation_scores_, detector.threshold_
        ),
    }

    def report(run_id: str) -> str:
        return render_training_report(
            detector,
            frame,
            input_name=data_path,
            details={"data sha256": digest, "run id": run_id},
        )

    had_champion = champion_version(settings) is not None
    # a version becomes champion by itself only when there is none, and only if it is sane
    sanity = GateResult(passed=True) if had_champion else new_version_gate(detector, settings)
    try:
        ref = log_training_run(
            detector, frame, data_path, settings, digest, report, figures, sanity.passed
        )
    finally:
        for figure in figures.values():
            plt.close(figure)
    refused = ""
    if not had_champion:
        try:  # the version exists now: a retry of this task would register a second one
            became = champion_version(settings) == ref.version
            decision = "champion (first version)" if became else "not champion (first version)"
            record_decision(settings, ref.version, decision, sanity, None, "its validation split")
        except Exception as exc:
            raise IncompleteRegistrationError(
                ref.name, ref.version, "recording the champion decision", exc
            ) from exc
        if not became and not sanity.passed:
            refused = (
                f"version {ref.version} is not champion: it failed the gate's sanity checks on "
                f"its validation split ({'; '.join(sanity.failures)}). Fix the training data "
                f"and train again, or `vae-anomaly promote {ref.version} --force --reason ...`"
            )
            get_run_logger().warning(refused)
    return {
        "model_name": ref.name,
        "model_version": ref.version,
        "model_run_id": ref.run_id,
        "threshold": detector.threshold_,
        "best_epoch": detector.best_epoch_,
        "epochs": len(detector.history_),
        "epochs_warning": training_stop(detector).warning(),
        "rows": len(frame),
        "champion_refused": refused,
    }


@flow(name="vae-anomaly-train")
def train_flow(data_path: str | None = None, overrides: Overrides | None = None) -> dict[str, Any]:
    """Train a detector on ``data_path`` (default: the home's ``data/sample/train.csv``) and
    register it in the MLflow Model Registry."""
    settings = settings_for_run(overrides)
    data_path = data_path or str(sample_path(SAMPLE_TRAIN))
    # an unreachable tracking server fails now, not after the training
    tracking_reachable(settings)
    frame = read_training_table(data_path)
    detector = fit_detector(frame, settings)
    summary = log_and_register(detector, frame, data_path, settings)
    create_markdown_artifact(
        key="training-summary",
        markdown=(
            f"## Trained {summary['model_name']} version {summary['model_version']}\n\n"
            f"| rows | epochs (best) | threshold | run |\n|---|---|---|---|\n"
            f"| {summary['rows']} | {summary['epochs']} ({summary['best_epoch']}) | "
            f"{summary['threshold']:.2f} | {summary['model_run_id']} |\n"
            + (f"\n**Warning:** {summary['epochs_warning']}\n" if summary["epochs_warning"] else "")
            + (
                f"\n**Not champion:** {summary['champion_refused']}\n"
                if summary["champion_refused"]
                else ""
            )
        ),
    )
    return summary
