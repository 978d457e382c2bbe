"""Promotion: move the ``champion`` alias to a version, behind a gate that needs no labels.

The gate scores a reference batch (by default the validation split saved with the candidate
at training time, or a file the user names) and requires:

1. every row scored, every score finite, and not every row given the same score;
2. a flag rate within ``[0.5, 2] x`` the expected one: the configured contamination (or target
   FPR; with a fixed score, the share of the version's validation rows above it);
3. where a champion exists, without labels: the reference rows are about as likely under the
   candidate as under the champion. The median over the rows of the candidate's negative
   ELBO minus the champion's (:func:`reference_nll`, nats per row) must not exceed
   ``MAX_NLL_EXCESS_PER_FEATURE`` (0.25) nats per encoded feature. On the sample table a
   model trained for 5, 10 or 20 epochs exceeds the champion by 52-63 nats per row (ROC-AUC
   0.79-0.82 against 0.99), retrained models of the same quality (other seeds, new draws of
   the data) differ by -6 to +2 nats; the limit there is 8.75 (35 features). The agreement of
   the two rankings and the overlap of their top 1% do not separate those cases
   (benchmarks/results/gate.md);
4. where the reference has a ``label`` column and a champion exists: the candidate's ROC-AUC on
   the reference is not more than 0.01 below the champion's on the same rows.

The very first version of a model becomes champion only if it passes rules 1 and 2 on its own
validation split (:func:`new_version_gate`). ``force`` overrides a failed gate; the reason is
recorded. Every decision (promoted, forced, refused, a first version made champion or not)
is kept as one MLflow run in the experiment ``<experiment>-promotions``: who, when, which
version, the decision, the reason, the failures and the gate's figures
(:mod:`pipeline.promotion_history`); the version's tags show the latest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from pipeline.config import Settings
from pipeline.detector import AnomalyDetector
from pipeline.ingest import read_table
from pipeline.promotion_history import actor, record_decision
from pipeline.registry import (
    ModelRef,
    RegistryError,
    RegistryUnavailableError,
    load_detector,
    resolve_alias,
    version_ref,
)
from pipeline.scoring import ScoreResult
from pipeline.threshold import share_above
from vae.infer import score_arrays

logger = logging.getLogger(__name__)

FLAG_RATE_BAND = (0.5, 2.0)
MAX_AUC_DROP = 0.01
MAX_NLL_EXCESS_PER_FEATURE = 0.25
LABEL_COLUMN = "label"


class PromotionRefused(RuntimeError):
    """The candidate failed the gate (and ``force`` was not given)."""


@dataclass
class GateResult:
    passed: bool
    failures: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def _flag_rate_and_scores(result: ScoreResult) -> tuple[float, np.ndarray, int]:
    scores = result.scored["anomaly_score"].to_numpy(dtype=np.float64)
    rate = float(result.scored["is_anomaly"].mean()) if len(scores) else float("nan")
    return rate, scores, len(result.rejected)


def gate(
    candidate: AnomalyDetector,
    reference: pd.DataFrame,
    contamination: float,
    champion: AnomalyDetector | None = None,
) -> GateResult:
    """Check ``candidate`` on ``reference``; see the module docstring for the rules. Each model
    scores the reference once (the champion only when a rule needs it)."""
    failures: list[str] = []
    metrics: dict[str, float] = {}
    if len(reference) == 0:
        return GateResult(False, ["the reference batch has no rows"], metrics)
    candidate_result = candidate.score(reference, source="reference batch")
    rate, scores, n_rejected = _flag_rate_and_scores(candidate_result)

    @cache
    def champion_result() -> ScoreResult:
        # called only with a champion; its warnings about the reference repeat the candidate's
        assert champion is not None
        return champion.score(reference, source="reference batch", log_warnings=False)

    metrics.update({"reference_rows": float(len(reference)), "flag_rate": rate})
    if n_rejected:
        failures.append(f"{n_rejected} reference row(s) could not be scored")
    if not np.isfinite(scores).all():
        failures.append(f"{int((~np.isfinite(scores)).sum())} score(s) are not finite")
    elif len(scores) > 1 and float(np.ptp(scores)) == 0.0:
        failures.append(
            f"every reference row gets the same score ({scores[0]:.4g}): the model does not "
            "tell rows apart (was it trained on rows without variation?)"
        )
    low, high = FLAG_RATE_BAND[0] * contamination, FLAG_RATE_BAND[1] * contamination
    if not low <= rate <= high:
        failures.append(
            f"flag rate {rate:.4f} on the reference is outside [{low:.4f}, {high:.4f}] "
            f"({FLAG_RATE_BAND[0]}-{FLAG_RATE_BAND[1]} x contamination {contamination})"
        )
    if (
        isinstance(candidate, AnomalyDetector)  # a scorer without a likelihood is not compared
        and isinstance(champion, AnomalyDetector)
        and not n_rejected
        and np.isfinite(scores).all()
    ):
        _compare_likelihoods(
            candidate, candidate_result, champion, champion_result(), failures, metrics
        )
    labels = _labels(reference, n_rejected) if np.isfinite(scores).all() else None
    if labels is not None and champion is not None:
        auc = float(roc_auc_score(labels, scores))
        _, champion_scores, champion_rejected = _flag_rate_and_scores(champion_result())
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


def _compare_likelihoods(
    candidate: AnomalyDetector,
    candidate_result: ScoreResult,
    champion: AnomalyDetector,
    champion_result: ScoreResult,
    failures: list[str],
    metrics: dict[str, float],
) -> None:
    """Rule 3: the reference rows must be about as likely under the candidate as under the
    champion (needs no labels). ``*_result``: each model's scores of the reference."""
    width = candidate.vae_config_.n_features
    if (
        candidate.schema_.roles != champion.schema_.roles
        or width != champion.vae_config_.n_features
    ):
        failures.append(
            "the champion models other columns or encodes them otherwise: the two models' "
            "likelihoods cannot be compared; compare them by hand (--reference FILE with a "
            "label column) or use --force"
        )
        return
    candidate_nll = likelihood_bound(candidate, candidate_result)
    champion_nll = likelihood_bound(champion, champion_result)
    if len(champion_nll) != len(candidate_nll):
        failures.append(
            "the champion cannot score every reference row; compare by hand or use --force"
        )
        return
    excess = float(np.median(candidate_nll - champion_nll))
    limit = MAX_NLL_EXCESS_PER_FEATURE * width
    metrics.update(
        {
            "nll_median": float(np.median(candidate_nll)),
            "champion_nll_median": float(np.median(champion_nll)),
            "nll_excess": excess,
            "nll_excess_limit": limit,
        }
    )
    if excess > limit:
        failures.append(
            f"the reference rows are less likely under this version than under the champion: "
            f"its negative ELBO is {excess:.1f} nats per row above the champion's (median), "
            f"more than the {limit:.1f} allowed ({MAX_NLL_EXCESS_PER_FEATURE} x {width} "
            "features); an undertrained or broken model?"
        )


def expected_flag_rate(settings: Settings, detector: AnomalyDetector) -> float:
    """The flag rate a version should have on rows like its validation split, by the
    configured rule: the contamination or target FPR; with a fixed score, the share of the
    version's validation rows above its threshold."""
    rules = settings.threshold
    if rules.fixed_score is not None:
        return share_above(detector.reference_quantiles_, detector.threshold_)
    return rules.target_fpr or rules.contamination


def new_version_gate(detector: AnomalyDetector, settings: Settings) -> GateResult:
    """What a new version must pass to become champion when there is none (the first version):
    the gate's sanity checks (rules 1 and 2) on its own validation split."""
    return gate(detector, detector.reference_frame_, expected_flag_rate(settings, detector))


def reference_nll(detector: AnomalyDetector, reference: pd.DataFrame) -> np.ndarray:
    """Per reference row, the model's bound on ``-log p(row)`` in nats
    (:func:`likelihood_bound` of the model's scores of ``reference``)."""
    result = detector.score(reference, source="reference batch", log_warnings=False)
    return likelihood_bound(detector, result)


def likelihood_bound(detector: AnomalyDetector, result: ScoreResult) -> np.ndarray:
    """Per scored row of ``result`` (``detector``'s scores of a batch), the model's bound on
    ``-log p(row)`` in nats (the negative ELBO with the KL at its full weight, from the latent
    mean): ``recon_error / 2 + sum(log sigma^2) / 2 + kl``, plus ``sum(log scale)`` of the
    standardised numeric features, so that two models whose encodings scale the same columns
    differently are compared in the columns' own units. The constant ``n log(2 pi) / 2`` of a
    Gaussian feature is left out (the same for two models of the same columns). Rows that
    cannot be scored are left out.

    A ``scaled_elbo`` model's ``recon_error`` weighs each feature by its training variance,
    not by the decoder's likelihood: its bound is computed anew from the decoder, with the
    categorical likelihood of its one-hot blocks, as for ``elbo`` and ``tail_max`` (the
    other scores of tables of categories), so that models are compared on one bound whatever
    their score."""
    kl = result.scored["kl"].to_numpy(dtype=np.float64)
    loss = detector.likelihood_loss()
    if loss is detector.feature_loss_:
        recon = result.scored["recon_error"].to_numpy(dtype=np.float64)
    else:
        if result.accepted is None:
            raise ValueError("the likelihood bound of a scaled_elbo model needs its scored rows")
        x = detector.preprocessor_.transform(result.accepted)
        window = detector.settings.scoring.batch_rows
        recon = score_arrays(detector.model_, x, window, loss=loss).recon
    precision = detector.model_.feature_precision().detach().cpu().numpy().astype(np.float64)
    gaussian = loss.gaussian_features(precision.size)  # the rest: -2 log p of one-hot blocks
    log_variances = float(-np.log(precision[gaussian]).sum())
    log_scales = float(np.log(np.asarray(detector.preprocessor_.scales_, dtype=np.float64)).sum())
    return recon / 2 + log_variances / 2 + kl + log_scales


def agreement(
    candidate_scores: np.ndarray, champion_scores: np.ndarray, top: int
) -> dict[str, float]:
    """How alike two models rank the same rows: Spearman's rank correlation of the scores and
    the overlap (Jaccard) of their ``top`` highest-scored rows."""
    rho = float(pd.Series(candidate_scores).rank().corr(pd.Series(champion_scores).rank()))
    top = max(1, min(top, len(candidate_scores)))
    first = set(np.argsort(-candidate_scores, kind="stable")[:top].tolist())
    second = set(np.argsort(-champion_scores, kind="stable")[:top].tolist())
    return {"rank_agreement": rho, "top_overlap": len(first & second) / len(first | second)}


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
    """Move the champion alias to ``version`` if it passes the gate (or ``force`` with a reason).

    The decision, a refusal included, is recorded (:mod:`pipeline.promotion_history`)."""
    if force and not (reason and reason.strip()):
        raise ValueError("--force needs a --reason: it is recorded on the model version")
    name = settings.tracking.registered_model
    candidate = load_detector(version_ref(settings, version), settings.training.device)
    reference = read_table(reference_path) if reference_path else candidate.reference_frame_
    try:
        current: ModelRef | None = resolve_alias(settings, settings.tracking.champion_alias)
    except RegistryUnavailableError:
        raise  # a server that is down is not "no champion": the gate would skip its rules
    except RegistryError:
        current = None
    champion = (
        load_detector(current, settings.training.device)
        if current and current.version != str(version)
        else None
    )
    # the flag rate expected of a version: the configured rule's
    result = gate(candidate, reference, expected_flag_rate(settings, candidate), champion)
    for failure in result.failures:
        logger.info("gate: %s", failure)
    previous = current.version if current else None
    reference_name = str(reference_path) if reference_path else "the version's validation split"
    if not result.passed and not force:
        record_decision(settings, str(version), "refused", result, previous, reference_name)
        raise PromotionRefused(
            f"version {version} of {name!r} failed the promotion gate: "
            + "; ".join(result.failures)
            + ". Train a better version, or promote it anyway with --force --reason TEXT"
        )
    client = MlflowClient()
    client.set_registered_model_alias(name, settings.tracking.champion_alias, str(version))
    tags: dict[str, Any] = {
        "promoted_at": datetime.now(UTC).isoformat(),
        "promoted_by": actor(),
        "promotion_gate": "passed" if result.passed else "forced",
        **{f"gate_{k}": f"{v:.6g}" for k, v in result.metrics.items()},
    }
    if not result.passed:
        tags["forced_reason"] = reason
        tags["gate_failures"] = "; ".join(result.failures)[:5000]
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))
    decision = "promoted" if result.passed else "forced"
    record_decision(settings, str(version), decision, result, previous, reference_name, reason)
    return Promotion(
        version=str(version),
        previous_champion=previous,
        gate=result,
        forced=not result.passed,
    )
