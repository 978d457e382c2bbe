"""Measure the promotion gate's label-free comparisons on the sample table.

A champion (default settings) and challengers: the same data with other seeds (as good), a new
draw of the same distribution (a retrain on next month's data, as good), and the same data with
a few epochs (undertrained). Each challenger is compared with the champion on the same
reference rows without labels (the median per-row excess of the challenger's negative ELBO
over the champion's, Spearman's rank agreement of the scores, overlap of the top 1% rows) and,
for the truth, with labels (ROC-AUC). References: 1,000 rows of the sample batch (4% planted
anomalies, labels hidden from the criteria) and the challenger's own validation split.

    .venv/bin/python -m benchmarks.gate [--out benchmarks/results/gate.md]

About 10 minutes on 2 cores (eight trainings on 20,000 rows).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from benchmarks.common import (
    DEFAULT_OUT,
    PROJECT_ROOT,
    basic_logging,
    machine_description,
    md_header,
    md_row,
)
from pipeline.config import Settings
from pipeline.detector import AnomalyDetector
from pipeline.promotion import agreement, reference_nll
from pipeline.sample_data import make_table

LABELS = ["label", "anomaly_kind", "anomaly_column"]
CHALLENGERS = {
    # name: (training seed of the model, data seed or None for the sample, max epochs, expected)
    "same data, seed 43": (43, None, 100, "as good"),
    "same data, seed 44": (44, None, 100, "as good"),
    "new data draw, seed 42": (42, 7, 100, "as good"),
    "new data draw, seed 43": (43, 8, 100, "as good"),
    "5 epochs": (42, None, 5, "undertrained"),
    "5 epochs, seed 43": (43, None, 5, "undertrained"),
    "10 epochs": (42, None, 10, "undertrained"),
    "20 epochs": (42, None, 20, "borderline"),
}


def fit(seed: int, data_seed: int | None, epochs: int) -> tuple[AnomalyDetector, float]:
    if data_seed is None:
        frame = pd.read_csv(PROJECT_ROOT / "data" / "sample" / "train.csv")
    else:
        frame = make_table(20000, seed=data_seed)
    settings = Settings().with_overrides(training={"seed": seed, "max_epochs": epochs})
    started = time.perf_counter()
    detector = AnomalyDetector(settings).fit(frame)
    return detector, time.perf_counter() - started


def compare(
    candidate: AnomalyDetector, champion: AnomalyDetector, reference: pd.DataFrame
) -> dict[str, float]:
    rows = reference.drop(columns=[c for c in LABELS if c in reference])
    cand = candidate.score(rows, log_warnings=False).scored["anomaly_score"].to_numpy()
    champ = champion.score(rows, log_warnings=False).scored["anomaly_score"].to_numpy()
    excess = reference_nll(candidate, rows) - reference_nll(champion, rows)
    top = max(10, round(0.01 * len(rows)))
    out = {
        "nll_excess_median": float(np.median(excess)),
        "nll_excess_mean": float(np.mean(np.clip(excess, -50, 50))),
        **agreement(cand, champ, top),
    }
    if "label" in reference and reference["label"].nunique() == 2:
        out["roc_auc"] = float(roc_auc_score(reference["label"], cand))
        out["champion_roc_auc"] = float(roc_auc_score(reference["label"], champ))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "gate.md")
    args = parser.parse_args()
    basic_logging()
    batch = pd.read_csv(PROJECT_ROOT / "data" / "sample" / "batch.csv")
    reference = batch.sample(1000, random_state=0).reset_index(drop=True)
    champion, seconds = fit(42, None, 100)
    print(f"champion: {len(champion.history_)} epochs, {seconds:.0f} s", flush=True)
    rows = []
    for name, (seed, data_seed, epochs, expected) in CHALLENGERS.items():
        candidate, seconds = fit(seed, data_seed, epochs)
        on_batch = compare(candidate, champion, reference)
        on_own = compare(candidate, champion, candidate.reference_frame_)
        row = {
            "challenger": name,
            "expected": expected,
            "epochs run": len(candidate.history_),
            **{f"batch {k}": v for k, v in on_batch.items()},
            **{f"own split {k}": v for k, v in on_own.items()},
        }
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    lines = [
        "# Promotion gate: label-free comparisons of a challenger with the champion",
        "",
        f"`python -m benchmarks.gate` on {machine_description()}; champion: default settings, "
        "seed 42, on `data/sample/train.csv`. Reference rows: 1,000 rows of "
        "`data/sample/batch.csv` (4% planted anomalies; labels used only for the ROC-AUC "
        "columns) and the challenger's own validation split (4,000 rows).",
        "",
        "`nll_excess_median`: median over the reference rows of the challenger's negative ELBO "
        "minus the champion's (nats per row; > 0: the challenger finds the rows less likely). "
        "`rank_agreement`: Spearman's rho of the two models' scores. `top_overlap`: Jaccard "
        "overlap of the two models' top 1% (at least 10) rows.",
        "",
        *md_header(list(table.columns), "lll" + "r" * (len(table.columns) - 3)),
        *[
            md_row(*(f"{v:.3f}" if isinstance(v, float) else v for v in record))
            for record in table.itertuples(index=False)
        ],
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
