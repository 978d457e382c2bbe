"""Promotion: move the ``champion`` alias to a version, behind a gate that needs no labels.

The gate scores a reference batch (by default the validation split saved with the candidate
at training time, or a file the user names) and requires:

1. every row scored, every score finite;
2. a flag rate within ``[0.5, 2] x`` the configured contamination (or target FPR, when set);
3. where the reference has a ``label`` column and a champion exists: the candidate's ROC-AUC on
   the reference is not more than 0.01 below the champion's on the same rows.

``force`` overrides a failed gate; the reason is recorded as a tag on the version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from pipeline.config import Settings
from pipeline.detector import AnomalyDetector
from pipeline.ingest import read_table
from pipeline.registry import ModelRef, RegistryError, load_detector, resolve_alias, version_ref

logger = logging.getLogger(__name__)

FLAG_RATE_BAND = (0.5, 2.0)
MAX_AUC_DROP = 0.01
LABEL_COLUMN = "label"


class PromotionRefused(RuntimeError):
    """The candidate failed the gate (and ``force`` was not given)."""


@dataclass
class GateResult:
    passed: bool
    failures: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def _flag_rate_and_scores(
    detector: AnomalyDetector, reference: pd.DataFrame
) -> tuple[float, np.ndarray, int]:
    result = detector.score(reference, source="reference batch")
    scores = result.scored["anomaly_score"].to_numpy(dtype=np.float64)
    rate = float(result.scored["is_anomaly"].mean()) if len(scores) else float("nan")
    return rate, scores, len(result.rejected)


def gate(
    candidate: AnomalyDetector,
    reference: pd.DataFrame,
    contamination: float,
    champion: AnomalyDetector | None = None,
) -> GateResult:
    """Check ``candidate`` on ``reference``; see the module docstring for the rules."""
    failures: list[str] = []
    metrics: dict[str, float] = {}
    if len(reference) == 0:
        return GateResult(False, ["the reference batch has no rows"], metrics)
    rate, scores, n_rejected = _flag_rate_and_scores(candidate, reference)
    metrics.update({"reference_rows": float(len(reference)), "flag_rate": rate})
    if n_rejected:
        failures.append(f"{n_rejected} reference row(s) could not be scored")
    if not np.isfinite(scores).all():
        failures.append(f"{int((~np.isfinite(scores)).sum())} score(s) are not finite")
    low, high = FLAG_RATE_BAND[0] * contamination, FLAG_RATE_BAND[1] * contamination
    if not low <= rate <= high:
        failures.append(
            f"flag rate {rate:.4f} on the reference is outside [{low:.4f}, {high:.4f}] "
            f"({FLAG_RATE_BAND[0]}-{FLAG_RATE_BAND[1]} x contamination {contamination})"
        )
    labels = _labels(reference, n_rejected) if np.isfinite(scores).all() else None
    if labels is not None and champion is not None:
        auc = float(roc_auc_score(labels, scores))
        _, champion_scores, champion_rejected = _flag_rate_and_scores(champion, reference)
        if champion_rejected:
            failures.append(
                "the champion cannot score the reference batch; compare by hand or use --force"
            )
        else:
            champion_auc = float(roc_auc_score(labels, champion_scores))
            metrics.update({"roc_auc": auc, "champion_roc_auc": champion_auc})
            if auc < champion_auc - MAX_AUC_DROP:
                failures.append(
                    f"ROC-AUC {auc:.4f} on the reference is more than {MAX_AUC_DROP} below the "
                    f"champion's {champion_auc:.4f}"
                )
    elif labels is not None:
        metrics["roc_auc"] = float(roc_auc_score(labels, scores))
    return GateResult(not failures, failures, metrics)


def _labels(reference: pd.DataFrame, n_rejected: int) -> np.ndarray | None:
    if LABEL_COLUMN not in reference or n_rejected:
        return None
    labels = pd.to_numeric(reference[LABEL_COLUMN], errors="coerce")
    if labels.isna().any() or labels.nunique() < 2:
        return None
    return labels.to_numpy(dtype=int)


@dataclass
class Promotion:
    version: str
    previous_champion: str | None
    gate: GateResult
    forced: bool


def promote(
    settings: Settings,
    version: str,
    reference_path: str | Path | None = None,
    force: bool = False,
    reason: str | None = None,
) -> Promotion:
    """Move the champion alias to ``version`` if it passes the gate (or ``force`` with a reason)."""
    if force and not (reason and reason.strip()):
        raise ValueError("--force needs a --reason: it is recorded on the model version")
    name = settings.tracking.registered_model
    candidate = load_detector(version_ref(settings, version), settings.training.device)
    reference = read_table(reference_path) if reference_path else candidate.reference_frame_
    try:
        current: ModelRef | None = resolve_alias(settings, settings.tracking.champion_alias)
    except RegistryError:
        current = None
    champion = (
        load_detector(current, settings.training.device)
        if current and current.version != str(version)
        else None
    )
    rules = settings.threshold  # the flag rate expected of a version: the configured rule's
    result = gate(candidate, reference, rules.target_fpr or rules.contamination, champion)
    for failure in result.failures:
        logger.warning("gate: %s", failure)
    if not result.passed and not force:
        raise PromotionRefused(
            f"version {version} of {name!r} failed the promotion gate: "
            + "; ".join(result.failures)
        )
    client = MlflowClient()
    client.set_registered_model_alias(name, settings.tracking.champion_alias, str(version))
    tags: dict[str, Any] = {
        "promoted_at": datetime.now(UTC).isoformat(),
        "promotion_gate": "passed" if result.passed else "forced",
        **{f"gate_{k}": f"{v:.6g}" for k, v in result.metrics.items()},
    }
    if not result.passed:
        tags["forced_reason"] = reason
        tags["gate_failures"] = "; ".join(result.failures)[:5000]
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))
    return Promotion(
        version=str(version),
        previous_champion=current.version if current else None,
        gate=result,
        forced=not result.passed,
    )
