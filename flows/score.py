"""Batch scoring flow: resolve the alias once -> load -> score each file -> write outputs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows._settings import Overrides, retry_transient, settings_for_run
from pipeline.batch import FLAGGED_FILE, expand_inputs, score_file
from pipeline.config import PROJECT_ROOT, Settings
from pipeline.detector import AnomalyDetector
from pipeline.tracking import ModelRef, load_detector, resolve_alias

DEFAULT_BATCH = str(PROJECT_ROOT / "data" / "sample" / "batch.csv")


@task(
    retries=3,
    retry_delay_seconds=[2, 5, 15],
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def resolve_model(settings: Settings, alias: str) -> ModelRef:
    return resolve_alias(settings, alias)


@task(
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def load_model(ref: ModelRef) -> AnomalyDetector:
    return load_detector(ref)


@task(cache_policy=NO_CACHE)
def score_one_file(
    detector: AnomalyDetector,
    ref: ModelRef,
    path: Path,
    output_root: Path,
    run_date: str,
    force: bool,
) -> dict[str, Any]:
    return score_file(detector, ref, path, output_root, run_date, force=force)


def _summary_markdown(ref: ModelRef, manifests: list[dict[str, Any]], seconds: float) -> str:
    lines = [
        f"## Scored with {ref.name} version {ref.version} (alias `{ref.alias}`)\n",
        "| input | rows read | scored | flagged | rejected | threshold | skipped |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in manifests:
        lines.append(
            f"| {Path(m['input_path']).name} | {m['rows_read']} | {m['rows_scored']} | "
            f"{m['rows_flagged']} | {m['rows_rejected']} | {m['threshold']:.4g} | {m['skipped']} |"
        )
    lines.append(f"\nDuration: {seconds:.1f} s")
    return "\n".join(lines)


@flow(name="vae-anomaly-score")
def score_flow(
    inputs: list[str] | str = DEFAULT_BATCH,
    alias: str = "champion",
    output_root: str | None = None,
    run_date: str | None = None,
    force: bool = False,
    overrides: Overrides | None = None,
) -> list[dict[str, Any]]:
    """Score files (paths, globs or folders) with ``models:/NAME@alias``, resolved once."""
    started = datetime.now(UTC)
    logger = get_run_logger()
    settings = settings_for_run(overrides)
    root = Path(output_root) if output_root else settings.scoring.output_root
    date = run_date or started.date().isoformat()
    files = expand_inputs(inputs)
    ref = resolve_model(settings, alias)
    logger.info("models:/%s@%s -> version %s", ref.name, alias, ref.version)
    detector = load_model(ref)
    manifests = [score_one_file(detector, ref, path, root, date, force) for path in files]
    seconds = (datetime.now(UTC) - started).total_seconds()
    create_markdown_artifact(
        key="scoring-summary", markdown=_summary_markdown(ref, manifests, seconds)
    )
    top = _top_anomalies(manifests)
    if top:
        create_table_artifact(key="top-anomalies", table=top)
    return manifests


def _top_anomalies(manifests: list[dict[str, Any]], n: int = 20) -> list[dict[str, Any]]:
    import pandas as pd

    frames = []
    for m in manifests:
        flagged = Path(m.get("output_dir") or Path(m["manifest_path"]).parent) / FLAGGED_FILE
        if flagged.is_file() and m["rows_flagged"]:
            frames.append(pd.read_csv(flagged, nrows=n).assign(input=Path(m["input_path"]).name))
    if not frames:
        return []
    top = pd.concat(frames).sort_values("anomaly_score", ascending=False).head(n)
    return top.astype(str).to_dict(orient="records")  # type: ignore[return-value]
