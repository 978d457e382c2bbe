"""Means over seeds and datasets, the product targets, ``adbench.md`` and ``adbench.png``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.adbench.data import short_name
from benchmarks.adbench.detectors import BASELINES, VAE_NAME
from benchmarks.common import Target, fmt_seconds, md_header, md_row

# product targets, in points (1 point = 0.01 of ROC-AUC / PR-AUC)
TARGET_ROC_OVER_BEST_PEER = 1.0
TARGET_ROC_OVER_PYOD_VAE = 3.0
TARGET_PR_OVER_BEST_PEER = 2.0
TARGET_FIT_TIME_RATIO = 1 / 5


@dataclass
class Summary:
    table: pd.DataFrame  # index: datasets + "mean"; columns <detector>_<metric>
    detectors: list[str]
    common: list[str]  # datasets every detector completed on every seed (the mean's base)
    incomplete: dict[str, list[str]]  # detector -> datasets with an error on some seed


def summarise(per_split: pd.DataFrame, detectors: Sequence[str]) -> Summary:
    """Mean over seeds per dataset; the "mean" row over the datasets all detectors completed."""
    ok = per_split[per_split["error"].fillna("") == ""]
    datasets = list(dict.fromkeys(per_split["dataset"]))
    n_seeds = per_split.groupby("dataset")["seed"].nunique()
    counts = ok.groupby(["dataset", "detector"]).size()
    incomplete: dict[str, list[str]] = {}
    for det in detectors:
        bad = [d for d in datasets if counts.get((d, det), 0) < n_seeds[d]]
        if bad:
            incomplete[det] = bad
    common = [d for d in datasets if not any(d in v for v in incomplete.values())]

    grouped = ok.groupby(["dataset", "detector"])
    means = grouped[["roc_auc", "pr_auc"]].mean()
    sums = grouped[["fit_s", "score_s"]].sum()
    table = pd.DataFrame(index=pd.Index(datasets, name="dataset"))
    for det in detectors:
        for metric, source in (
            ("roc_auc", means),
            ("pr_auc", means),
            ("fit_s", sums),
            ("score_s", sums),
        ):
            values = {}
            for d in datasets:
                complete = d not in incomplete.get(det, [])
                values[d] = float(source.loc[(d, det), metric]) if complete else math.nan
            table[f"{det}_{metric}"] = pd.Series(values)
    totals: dict[str, float] = {}
    for det in detectors:
        base = table.loc[common]
        totals[f"{det}_roc_auc"] = base[f"{det}_roc_auc"].mean() if common else math.nan
        totals[f"{det}_pr_auc"] = base[f"{det}_pr_auc"].mean() if common else math.nan
        totals[f"{det}_fit_s"] = base[f"{det}_fit_s"].sum() if common else math.nan
        totals[f"{det}_score_s"] = base[f"{det}_score_s"].sum() if common else math.nan
    table.loc["mean"] = pd.Series(totals)
    return Summary(table, list(detectors), common, incomplete)


def mean_values(summary: Summary) -> dict[str, float]:
    """The "mean" row as plain floats."""
    row = summary.table.loc["mean"].astype(float)
    return {str(k): float(row[k]) for k in row.index}


def evaluate_targets(summary: Summary) -> list[Target]:
    """The product's targets, from the "mean" row (in points: 1 point = 0.01)."""
    mean = mean_values(summary)
    dets = summary.detectors
    peers = [d for d in BASELINES if d in dets]
    targets: list[Target] = []

    def points(det: str, metric: str) -> float:
        return 100.0 * float(mean[f"{det}_{metric}"])

    if VAE_NAME not in dets:
        return targets
    vae_roc, vae_pr = points(VAE_NAME, "roc_auc"), points(VAE_NAME, "pr_auc")
    if peers:
        best_roc = max(peers, key=lambda d: points(d, "roc_auc"))
        best_pr = max(peers, key=lambda d: points(d, "pr_auc"))
        targets.append(
            Target(
                f"ROC-AUC(vae-anomaly) >= best peer ({best_roc}) + {TARGET_ROC_OVER_BEST_PEER:g}",
                vae_roc,
                points(best_roc, "roc_auc") + TARGET_ROC_OVER_BEST_PEER,
                unit="points",
            )
        )
    if "pyod-vae" in dets:
        targets.append(
            Target(
                f"ROC-AUC(vae-anomaly) >= pyod-vae + {TARGET_ROC_OVER_PYOD_VAE:g}",
                vae_roc,
                points("pyod-vae", "roc_auc") + TARGET_ROC_OVER_PYOD_VAE,
                unit="points",
            )
        )
    if peers:
        targets.append(
            Target(
                f"PR-AUC(vae-anomaly) >= best peer ({best_pr}) + {TARGET_PR_OVER_BEST_PEER:g}",
                vae_pr,
                points(best_pr, "pr_auc") + TARGET_PR_OVER_BEST_PEER,
                unit="points",
            )
        )
    if "pyod-vae" in dets:
        vae_fit = float(mean[f"{VAE_NAME}_fit_s"])
        limit = float(mean["pyod-vae_fit_s"]) * TARGET_FIT_TIME_RATIO
        targets.append(
            Target(
                f"total fit time(vae-anomaly) <= 1/{round(1 / TARGET_FIT_TIME_RATIO)} "
                "of pyod-vae's",
                vae_fit,
                limit,
                higher_is_better=False,
                unit="s",
            )
        )
    return targets


def _pct(value: float) -> str:
    return "error" if not math.isfinite(value) else f"{100 * value:.1f}"


def markdown_report(
    per_split: pd.DataFrame, summary: Summary, targets: list[Target], meta: dict[str, Any]
) -> str:
    t, dets = summary.table, summary.detectors
    seeds = sorted(per_split["seed"].unique().tolist())
    overrides = json.dumps(meta["overrides"]) if meta["overrides"] else "none"
    lines = [
        "# ADBench detection quality (unsupervised protocol)",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}",
        f"- software: python {meta['python']}, torch {meta['torch']}, pyod {meta['pyod']}, "
        f"scikit-learn {meta['sklearn']}, numpy {meta['numpy']}",
        f"- command: `{meta['command']}`",
        f"- datasets: {len(t) - 1} (half: {meta['half']}), seeds: {seeds}; "
        "protocol: <1,000 rows resampled up to 1,000, >10,000 subsampled to 10,000, "
        "stratified 70/30 split, MinMaxScaler fitted on train, unsupervised fit on the "
        "contaminated train part",
        f"- vae-anomaly overrides: `{overrides}` (code hash {meta['code_hash']})",
        f"- vae-anomaly effective settings: `{json.dumps(meta['settings'])}`",
        "- baselines: PyOD defaults (`VAE(random_state=seed, verbose=0)`, "
        "`IForest(random_state=seed)`, `ECOD()`); cached results keep the timings measured when "
        "they were computed",
        "",
        f"## Mean over {len(summary.common)} datasets x {len(seeds)} seeds",
        "",
        *md_header(
            ["detector", "ROC-AUC %", "PR-AUC %", "fit s (total)", "score s (total)"], "lrrrr"
        ),
    ]
    mean = mean_values(summary)
    for det in dets:
        lines.append(
            md_row(
                det,
                _pct(mean[f"{det}_roc_auc"]),
                _pct(mean[f"{det}_pr_auc"]),
                fmt_seconds(mean[f"{det}_fit_s"]),
                fmt_seconds(mean[f"{det}_score_s"]),
            )
        )
    if summary.incomplete:
        lines += [
            "",
            "Left out of the mean (a detector failed on some seed): "
            + "; ".join(f"{det}: {', '.join(ds)}" for det, ds in summary.incomplete.items()),
        ]
    if targets:
        lines += ["", "## Targets", "", *md_header(["target", "value", "needed", "met"], "lrrl")]
        for tg in targets:
            fmt = (lambda v: f"{v:.1f} s") if tg.unit == "s" else (lambda v: f"{v:.1f}")
            met = "n/a" if tg.met is None else ("yes" if tg.met else "**no**")
            lines.append(md_row(tg.text, fmt(tg.value), fmt(tg.needed), met))
        if set(BASELINES) - set(dets):
            lines += [
                "",
                f"(targets measured against the peers in this run only: "
                f"{', '.join(d for d in BASELINES if d in dets) or 'none'})",
            ]
    info = per_split.groupby("dataset").first()
    lines += [
        "",
        "## Per dataset (mean over seeds, %)",
        "",
        *md_header(
            [
                "dataset",
                "rows",
                "dims",
                "anomaly %",
                *(f"{d} {m}" for d in dets for m in ("ROC", "PR")),
            ],
            "lrrr" + "rr" * len(dets),
        ),
    ]
    for dataset in t.index.drop("mean"):
        row = info.loc[dataset]
        rate = 100 * row["test_anomalies"] / row["n_test"]
        cells = []
        best_roc = max((t.loc[dataset, f"{d}_roc_auc"] for d in dets), key=_nan_low)
        for d in dets:
            roc, pr = t.loc[dataset, f"{d}_roc_auc"], t.loc[dataset, f"{d}_pr_auc"]
            bold = math.isfinite(roc) and roc == best_roc and len(dets) > 1
            cells.append(f"**{_pct(roc)}**" if bold else _pct(roc))
            cells.append(_pct(pr))
        lines.append(
            md_row(dataset, int(row["n_rows"]), int(row["n_features"]), f"{rate:.1f}", *cells)
        )
    errors = per_split[per_split["error"].fillna("") != ""]
    lines += ["", "## Errors", ""]
    if errors.empty:
        lines.append("none")
    else:
        for _, e in errors.iterrows():
            lines.append(f"- {e['dataset']} seed {e['seed']} {e['detector']}: `{e['error']}`")
    warned = per_split["warnings"].fillna("") != ""
    vae_warn = per_split[(per_split["detector"] == VAE_NAME) & warned]
    if not vae_warn.empty:
        lines += ["", "## vae-anomaly warnings (first seed of each dataset)", ""]
        for _, w in vae_warn.groupby("dataset").first().iterrows():
            lines.append(f"- {w.name}: {w['warnings']}")
    return "\n".join(lines) + "\n"


def _nan_low(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def plot(summary: Summary, path: Path) -> None:
    """Left: mean ROC-AUC / PR-AUC per detector; right: per-dataset ROC-AUC, vae vs best peer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, dets = summary.table, summary.detectors
    peers = [d for d in dets if d != VAE_NAME]
    fig, axes = plt.subplots(
        1, 2 if VAE_NAME in dets and peers else 1, figsize=(13, 5.5), squeeze=False
    )
    ax = axes[0, 0]
    positions = np.arange(len(dets))
    mean = mean_values(summary)
    for offset, metric, label in ((-0.2, "roc_auc", "ROC-AUC"), (0.2, "pr_auc", "PR-AUC")):
        values = [100 * mean[f"{d}_{metric}"] for d in dets]
        bars = ax.bar(positions + offset, values, width=0.4, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(positions, dets)
    ax.set_ylabel("% (mean over datasets and seeds)")
    ax.set_title(f"Mean over {len(summary.common)} ADBench datasets")
    ax.set_ylim(0, 110)
    ax.legend(loc="upper right", ncol=2)
    if axes.shape[1] > 1:
        ax = axes[0, 1]
        rows = t.drop(index="mean")
        peer_best = rows[[f"{p}_roc_auc" for p in peers]].max(axis=1)
        mine = rows[f"{VAE_NAME}_roc_auc"]
        ax.scatter(100 * peer_best, 100 * mine, s=18)
        for name in rows.index:
            if math.isfinite(mine[name]) and math.isfinite(peer_best[name]):
                ax.annotate(
                    short_name(name),
                    (100 * peer_best[name], 100 * mine[name]),
                    fontsize=7,
                    xytext=(3, 2),
                    textcoords="offset points",
                )
        low = float(np.nanmin([100 * peer_best.min(), 100 * mine.min(), 50.0]))
        ax.plot([low, 100], [low, 100], color="grey", linewidth=0.8, linestyle="--")
        ax.set_xlabel("best peer ROC-AUC % (" + ", ".join(peers) + ")")
        ax.set_ylabel(f"{VAE_NAME} ROC-AUC %")
        ax.set_title("Per dataset (above the line: vae-anomaly wins)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
