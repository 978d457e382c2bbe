"""Training flow: read -> fit -> log to MLflow -> register (challenger; champion if first)."""

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
from pipeline.config import PROJECT_ROOT, Settings
from pipeline.detector import AnomalyDetector
from pipeline.ingest import read_table
from pipeline.progress import epoch_progress
from pipeline.report import loss_curves, render_training_report, score_histogram
from pipeline.report.training import training_stop
from pipeline.tracking import log_training_run

DEFAULT_TRAIN_DATA = str(PROJECT_ROOT / "data" / "sample" / "train.csv")


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

    try:
        ref = log_training_run(detector, frame, data_path, settings, digest, report, figures)
    finally:
        for figure in figures.values():
            plt.close(figure)
    return {
        "model_name": ref.name,
        "model_version": ref.version,
        "model_run_id": ref.run_id,
        "threshold": detector.threshold_,
        "best_epoch": detector.best_epoch_,
        "epochs": len(detector.history_),
        "epochs_warning": training_stop(detector).warning(),
        "rows": len(frame),
    }


@flow(name="vae-anomaly-train")
def train_flow(
    data_path: str = DEFAULT_TRAIN_DATA, overrides: Overrides | None = None
) -> dict[str, Any]:
    """Train a detector on ``data_path`` and register it in the MLflow Model Registry."""
    settings = settings_for_run(overrides)
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
        ),
    )
    return summary
