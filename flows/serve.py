"""Deployments with cron schedules: nightly scoring of a landing folder, optional retraining.

:func:`build_deployments` makes the deployments (it contacts nothing, so tests can call it);
:func:`serve_deployments` serves them from this process with ``prefect.serve``, which polls the
Prefect API for due runs and runs each one in a subprocess. Schedules stay active when the
serving process stops (``pause_on_shutdown=False``): runs due while it is down wait as
``Late`` and start when it is back. ``prefect.yaml`` at the repository root declares the same
deployments for a Prefect server with a work pool.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Schedule

from flows._settings import Overrides
from flows.score import score_flow
from flows.train import train_flow
from pipeline.config import Settings

SCORE_DEPLOYMENT = "nightly"
TRAIN_DEPLOYMENT = "retrain"
DEFAULT_SCORE_CRON = "0 2 * * *"
DEFAULT_TIMEZONE = "UTC"
TAGS = ["vae-anomaly"]


def cron_schedule(expression: str, timezone: str, option: str) -> Schedule:
    """A Prefect cron schedule, or a ValueError that names the option and the expected form."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"--timezone {timezone!r} is not an IANA time zone; use e.g. 'UTC' or 'Europe/Paris'"
        ) from None
    try:
        return Cron(expression, timezone=timezone)
    except ValueError as exc:
        raise ValueError(
            f"{option} {expression!r} is not a valid cron expression ({exc}); use five fields "
            "'minute hour day-of-month month day-of-week', e.g. '0 2 * * *' (02:00 every day)"
        ) from None


def _absolute_inputs(inputs: list[str] | str) -> list[str]:
    """Inputs as absolute paths or globs; a plain path must exist (a typo fails at once)."""
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    if not items:
        raise ValueError("no inputs: pass the landing folder (or files, or globs) to score")
    resolved = []
    for item in items:
        path = Path(item).expanduser().absolute()
        if not any(ch in item for ch in "*?[") and not path.exists():
            raise ValueError(
                f"{item}: no such file or folder; create the landing folder or fix the path"
            )
        resolved.append(str(path))
    return resolved


def _sync(to_deployment: Callable[..., Any]) -> Callable[..., RunnerDeployment]:
    """``Flow.to_deployment`` called from sync code (its async twin returns a coroutine)."""

    def call(*args: Any, **kwargs: Any) -> RunnerDeployment:
        deployment = to_deployment(*args, **kwargs)
        if not isinstance(deployment, RunnerDeployment):  # pragma: no cover - async caller
            raise TypeError("build_deployments must be called from synchronous code")
        return deployment

    return call


def build_deployments(
    inputs: list[str] | str,
    *,
    score_cron: str = DEFAULT_SCORE_CRON,
    timezone: str = DEFAULT_TIMEZONE,
    alias: str | None = None,
    output_root: str | None = None,
    overrides: Overrides | None = None,
    train_data: str | None = None,
    train_cron: str | None = None,
    train_overrides: Overrides | None = None,
) -> list[RunnerDeployment]:
    """The scoring deployment (always) and the retraining deployment (with ``train_cron``).

    ``vae-anomaly-score/nightly`` scores ``inputs`` (landing folders, files or globs) with
    ``models:/NAME@alias`` on ``score_cron``; ``vae-anomaly-train/retrain`` trains on
    ``train_data`` on ``train_cron`` (the new version becomes ``challenger``; ``champion`` moves
    only by promotion). Each deployment runs at most once at a time.
    """
    score_schedule = cron_schedule(score_cron, timezone, "--cron")
    score_parameters: dict[str, Any] = {
        "inputs": _absolute_inputs(inputs),
        "alias": alias or Settings().tracking.champion_alias,
        "output_root": str(Path(output_root).expanduser().absolute()) if output_root else None,
        "overrides": overrides or None,
    }
    deployments = [
        _sync(score_flow.to_deployment)(
            SCORE_DEPLOYMENT,
            schedules=[score_schedule],
            parameters=score_parameters,
            concurrency_limit=1,
            description=(
                f"Score new files in {', '.join(score_parameters['inputs'])} with "
                f"models:/<registered model>@{alias or 'champion'}; "
                "files already scored are skipped."
            ),
            tags=[*TAGS, "scoring"],
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
    ]
    if (train_cron is None) != (train_data is None):
        raise ValueError(
            "retraining needs both --train-cron and --train-data (or neither, for no retraining)"
        )
    if train_cron is not None and train_data is not None:
        train_path = Path(train_data).expanduser().absolute()
        if not train_path.is_file():
            raise ValueError(f"{train_data}: no such file; pass the training table to retrain on")
        deployments.append(
            _sync(train_flow.to_deployment)(
                TRAIN_DEPLOYMENT,
                schedules=[cron_schedule(train_cron, timezone, "--train-cron")],
                parameters={"data_path": str(train_path), "overrides": train_overrides or None},
                concurrency_limit=1,
                description=(
                    f"Retrain on {train_path} and register a new version as challenger "
                    "(champion moves only by promotion)."
                ),
                tags=[*TAGS, "training"],
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments


def serve_deployments(deployments: list[RunnerDeployment], limit: int | None = None) -> None:
    """Serve ``deployments`` until interrupted; their schedules stay active afterwards."""
    from prefect import serve

    serve(*deployments, pause_on_shutdown=False, limit=limit)
