"""The promotion history: every decision on a version (promoted, forced, refused, a first
version made champion or not) kept as one MLflow run of the experiment
``<experiment>-promotions``, never overwritten: who, when, which version, the decision, the
reason, the gate's failures and figures.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from pipeline.config import Settings

if TYPE_CHECKING:
    from pipeline.promotion import GateResult

logger = logging.getLogger(__name__)


def actor() -> str:
    """Who decides: ``$VAE_ANOMALY_ACTOR`` (a CI job, a service), else ``user@host``."""
    named = os.environ.get("VAE_ANOMALY_ACTOR", "").strip()
    if named:
        return named
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def history_experiment(settings: Settings) -> str:
    """The experiment holding one run per promotion decision: ``<experiment>-promotions``."""
    return f"{settings.tracking.experiment}-promotions"


def record_decision(
    settings: Settings,
    version: str,
    decision: str,
    result: GateResult,
    previous_champion: str | None,
    reference: str,
    reason: str | None = None,
) -> str | None:
    """Keep one decision on ``version`` (``promoted``, ``forced``, ``refused``, ``champion
    (first version)``, ``not champion (first version)``) as an MLflow run of
    :func:`history_experiment`: who, when (the run's start), the previous champion, the
    reference, the reason, the gate's failures (tags) and figures (metrics). Append-only: a
    later decision never overwrites it. Returns the run id (None when it could not be
    logged: the decision stands, a warning says so)."""
    import mlflow

    from pipeline.tracking import ensure_experiment

    try:
        experiment_id = ensure_experiment(settings, history_experiment(settings))
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=f"{decision} v{version}"
        ) as run:
            mlflow.set_tags(
                {
                    "run_type": "promotion",
                    "model_name": settings.tracking.registered_model,
                    "model_version": version,
                    "decision": decision,
                    "decided_by": actor(),
                    "previous_champion": previous_champion or "",
                    "reference": reference,
                    "reason": reason or "",
                    "gate_failures": "; ".join(result.failures)[:5000],
                }
            )
            finite = {k: v for k, v in result.metrics.items() if np.isfinite(v)}
            if finite:
                mlflow.log_metrics(finite)
        return str(run.info.run_id)
    except Exception as exc:  # the decision is made; its record must not undo it
        logger.warning("the promotion decision was not recorded in MLflow: %s", exc)
        return None


HISTORY_COLUMNS = ["decided_at", "model_version", "decision", "decided_by", "previous_champion"]


def promotion_history(settings: Settings) -> pd.DataFrame:
    """Every recorded decision, oldest first: when, version, decision, who, the previous
    champion, the reason, the failures, and the gate's figures (``gate_<name>`` columns)."""
    import mlflow

    from pipeline.registry import configure

    configure(settings)
    experiment = mlflow.get_experiment_by_name(history_experiment(settings))
    if experiment is None:
        return pd.DataFrame(columns=[*HISTORY_COLUMNS, "reason", "gate_failures"])
    runs = MlflowClient().search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time ASC"], max_results=10000
    )
    rows = []
    for run in runs:
        tags = run.data.tags
        rows.append(
            {
                "decided_at": datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(
                    timespec="seconds"
                ),
                "model_version": tags.get("model_version", ""),
                "decision": tags.get("decision", ""),
                "decided_by": tags.get("decided_by", ""),
                "previous_champion": tags.get("previous_champion", ""),
                "reason": tags.get("reason", ""),
                "gate_failures": tags.get("gate_failures", ""),
                **{f"gate_{k}": v for k, v in run.data.metrics.items()},
            }
        )
    return pd.DataFrame(rows)
