"""MLflow tracking: log a training run (params, losses, data, report, the model) and a
scheduled scoring run (flag rate, drift, reports). The registry side (versions, aliases,
loading) is :mod:`pipeline.registry`; reports arrive rendered (HTML, figures)."""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import tempfile
from collections.abc import Callable
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import AnyType, ColSpec, Schema

from pipeline.config import PROJECT_ROOT, Settings
from pipeline.detector import AnomalyDetector
from pipeline.registry import ModelRef, configure, quiet_mlflow, register_version

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pipeline.outputs import Manifest

logger = logging.getLogger(__name__)
TRAINING_REPORT = "reports/training_report.html"

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
CODE_PATHS = [str(PROJECT_ROOT / "vae"), str(PROJECT_ROOT / "pipeline")]
REQUIREMENTS = [
    "torch",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "pydantic",
    "pydantic-settings",
    "mlflow",
]


def pip_requirements() -> list[str]:
    """The model's requirements, pinned to the versions in use (local version tags dropped)."""
    return [f"{name}=={package_version(name).split('+')[0]}" for name in REQUIREMENTS]


def ensure_experiment(settings: Settings, name: str | None = None) -> str:
    """The experiment id; a new experiment on a SQLite store keeps artifacts beside the DB."""
    uri = configure(settings)
    name = name or settings.tracking.experiment
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location))


def _git_commit() -> str:
    if not (PROJECT_ROOT / ".git").exists():  # an installed package: no checkout of its own
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _model_frame(detector: AnomalyDetector, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns, typed as the signature declares them."""
    schema = detector.schema_
    sample = frame[list(schema.roles)].head(5).copy()
    for column in schema.numeric_columns:
        sample[column] = pd.to_numeric(sample[column], errors="coerce").astype("float64")
    for column in schema.categorical_columns + schema.id_columns:
        sample[column] = (
            sample[column].astype(object).where(sample[column].notna(), None).astype(str)
        )
    return sample


def _numbers_of_any_type(signature: ModelSignature, numeric_columns: list[str]) -> ModelSignature:
    """The signature with the numeric input columns of any type (required, as before).

    Declared ``double``, MLflow refuses the ``int64`` that ``pandas.read_csv`` gives for a
    column of whole numbers (``hour``) before the model sees it ("Can not safely convert int64
    to float64"), so ``mlflow models predict -i file.csv`` failed on the training file's own
    layout. The model reads any number (and rejects a row whose value is not a number, with a
    reason), so the signature leaves the type to it.
    """
    inputs = signature.inputs
    if inputs is None:
        return signature
    numeric = set(numeric_columns)
    columns = [
        ColSpec(AnyType(), spec.name, required=spec.required) if spec.name in numeric else spec
        for spec in inputs.inputs
    ]
    return ModelSignature(
        inputs=Schema(columns), outputs=signature.outputs, params=signature.params
    )


def log_training_run(
    detector: AnomalyDetector,
    frame: pd.DataFrame,
    data_path: str,
    settings: Settings,
    data_digest: str,
    report: Callable[[str], str],
    figures: dict[str, Figure],
    champion_if_none: bool = True,
) -> ModelRef:
    """Log params, per-epoch losses, threshold, data, figures (artifact path -> figure), the
    training report (``report(run_id)``: its HTML) and the model; register a new version
    (:func:`pipeline.registry.register_version`; ``champion_if_none``: it may become champion
    when no version is)."""
    experiment_id = ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(settings.flat_params())
        mlflow.log_params(
            {
                "data.path": data_path,
                "data.rows": len(frame),
                "model.n_features": detector.vae_config_.n_features,
                "model.hidden_dims_used": str(detector.vae_config_.hidden_dims),
                "model.latent_dim_used": detector.vae_config_.latent_dim,
            }
        )
        for epoch in detector.history_:
            metrics = {k: v for k, v in epoch.to_dict().items() if k not in ("epoch", "seconds")}
            mlflow.log_metrics(
                {k: v for k, v in metrics.items() if np.isfinite(v)}, step=epoch.epoch
            )
        scores = detector.validation_scores_
        mlflow.log_metrics(
            {
                "threshold": detector.threshold_,
                "best_epoch": detector.best_epoch_,
                "train_seconds": detector.train_seconds_,
                "trimmed_rows": detector.trimmed_rows_,
                **{f"val_score_q{q}": float(np.quantile(scores, q / 100)) for q in (50, 90, 99)},
            }
        )
        for name, figure in figures.items():
            mlflow.log_figure(figure, name)
        mlflow.log_text(report(run.info.run_id), TRAINING_REPORT)
        dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
            frame, source=data_path, name=Path(data_path).name, digest=data_digest[:32]
        )
        mlflow.log_input(dataset, context="training")
        example = _model_frame(detector, frame)
        output = detector.score(example).all_rows()
        with quiet_mlflow():
            signature = infer_signature(
                example, output, params={"threshold": -1.0, "mc_samples": 0, "model_version": ""}
            )
        signature = _numbers_of_any_type(signature, detector.schema_.numeric_columns)
        with tempfile.TemporaryDirectory() as tmp, quiet_mlflow():
            saved = detector.save(Path(tmp) / "detector")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_FILE),
                artifacts={"detector": str(saved)},
                code_paths=CODE_PATHS,
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
            )
        run_id = run.info.run_id
    tags = {
        "training_data_digest": data_digest,
        "threshold": f"{detector.threshold_:.6g}",
        "git_commit": _git_commit(),
        "best_epoch": str(detector.best_epoch_),
        "best_val_loss": f"{detector.history_[detector.best_epoch_ - 1].val_loss:.6g}",
        "val_score_q99": f"{float(np.quantile(detector.validation_scores_, 0.99)):.6g}",
    }
    ref = register_version(settings, info.model_uri, tags, champion_if_none)
    logger.info("registered %s version %s (run %s)", ref.name, ref.version, run_id)
    return ref


def training_data_path(run_id: str) -> str:
    """The training data path a training run logged (param ``data.path``; "" if none)."""
    try:
        return str(MlflowClient().get_run(run_id).data.params.get("data.path", ""))
    except MlflowException:
        logger.warning("cannot read the training run %s: its data path is not shown", run_id)
        return ""


def scoring_experiment(settings: Settings) -> str:
    """The experiment of scoring runs: ``<experiment>-scoring`` (training runs stay apart)."""
    return f"{settings.tracking.experiment}-scoring"


def log_scoring_run(
    settings: Settings,
    ref: ModelRef,
    run_date: str,
    manifests: list[Manifest],
    attachments: list[tuple[Path, str]],
) -> str:
    """Log one scheduled scoring run: flag rate and drift as metrics, reports as artifacts.

    One MLflow run per flow run, in :func:`scoring_experiment`, so that a creeping change
    (flag rate, PSI per column) shows up across runs in MLflow's charts. ``attachments`` are
    (file, artifact folder) pairs ("" for the run's root); missing files are skipped. Returns
    the run id.
    """
    experiment_id = ensure_experiment(settings, scoring_experiment(settings))
    scored = sum(m.rows_scored for m in manifests)
    flagged = sum(m.rows_flagged for m in manifests)
    psi: dict[str, float] = {}
    for manifest in manifests:
        for column, value in manifest.drift.psi.items():
            psi[column] = max(psi.get(column, 0.0), value)
    with (
        quiet_mlflow(),
        mlflow.start_run(experiment_id=experiment_id, run_name=f"score-{run_date}") as run,
    ):
        mlflow.set_tags(
            {
                "run_type": "scoring",
                "model_name": ref.name,
                "model_version": ref.version,
                "model_alias": ref.alias,
                "run_date": run_date,
            }
        )
        mlflow.log_params({"files": len(manifests), "model_version": ref.version})
        mlflow.log_metrics(
            {
                "rows_scored": scored,
                "rows_flagged": flagged,
                "rows_rejected": sum(m.rows_rejected for m in manifests),
                "flag_rate": flagged / scored if scored else 0.0,
                "drifted_files": sum(m.drift.drifted for m in manifests),
                "max_psi": max(psi.values(), default=0.0),
                **{f"psi.{_metric_name(c)}": v for c, v in psi.items()},
            }
        )
        for path, folder in attachments:
            if path.is_file():
                mlflow.log_artifact(str(path), folder or None)
    return str(run.info.run_id)


def _metric_name(column: str) -> str:
    """A column name as an MLflow metric key: letters, digits, ``_ - .`` only; a name that had
    other characters gets a short hash of the original, so two columns never share a key."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", column)[:180]
    if safe == column:
        return safe
    return f"{safe}-{hashlib.sha256(column.encode()).hexdigest()[:8]}"
