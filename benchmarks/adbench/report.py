"""Means over seeds (and model seeds) and datasets, a suite's product targets, its markdown
report and plot (``adbench.md`` / ``.png``, ``categorical.md`` / ``.png``), and ``quality.md``
(both suites side by side)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from benchmarks.adbench.data import short_name
from benchmarks.adbench.detectors import BASELINES, VAE_NAME
from benchmarks.common import Target, fmt_seconds, md_header, md_row

if TYPE_CHECKING:
    from benchmarks.adbench.suites import Suite


@dataclass(frozen=True)
class TargetRules:
    """A suite's product targets, in points (1 point = 0.01 of ROC-AUC / PR-AUC)."""

    roc_over_best_peer: float
    pr_over_best_peer: float
    roc_over_pyod_vae: float | None = None  # None: no such target
    fit_time_ratio: float = 1 / 5  # total fit time(vae) <= this x pyod-vae's


@dataclass
class Summary:
    table: pd.DataFrame  # index: datasets + "mean"; columns <detector>_<metric>
    detectors: list[str]
    common: list[str]  # datasets every detector completed on every seed (the mean's base)
    incomplete: dict[str, list[str]]  # detector -> datasets with an error on some seed


def model_seed_counts(per_split: pd.DataFrame, detectors: Sequence[str]) -> dict[str, int]:
    """Model seeds per detector (vae-anomaly with ``--model-seeds``; else 1). A per-split
    frame without a ``model_seed`` column (written before it existed) has one of each."""
    counts = dict.fromkeys(detectors, 1)
    if "model_seed" in per_split.columns:
        for det in detectors:
            seeds = per_split.loc[per_split["detector"] == det, "model_seed"].dropna()
            counts[det] = max(1, int(seeds.nunique()))
    return counts


def summarise(per_split: pd.DataFrame, detectors: Sequence[str]) -> Summary:
    """Mean over seeds (and model seeds) per dataset, fit / score seconds summed over the seeds
    (mean over the model seeds); the "mean" row over the datasets all detectors completed."""
    ok = per_split[per_split["error"].fillna("") == ""]
    datasets = list(dict.fromkeys(per_split["dataset"]))
    n_seeds = per_split.groupby("dataset")["seed"].nunique()
    n_models = model_seed_counts(per_split, detectors)
    counts = ok.groupby(["dataset", "detector"]).size()
    incomplete: dict[str, list[str]] = {}
    for det in detectors:
        bad = [d for d in datasets if counts.get((d, det), 0) < n_seeds[d] * n_models[det]]
        if bad:
            incomplete[det] = bad
    common = [d for d in datasets if not any(d in v for v in incomplete.values())]

    grouped = ok.groupby(["dataset", "detector"])
    means = grouped[["roc_auc", "pr_auc"]].mean()
    sums = grouped[["fit_s", "score_s"]].sum()
    table = pd.DataFrame(index=pd.Index(datasets, name="dataset"))
    for det in detectors:
        for metric, source, scale in (
            ("roc_auc", means, 1.0),
            ("pr_auc", means, 1.0),
            ("fit_s", sums, 1.0 / n_models[det]),
            ("score_s", sums, 1.0 / n_models[det]),
        ):
            values = {}
            for d in datasets:
                complete = d not in incomplete.get(det, [])
                values[d] = float(source.loc[(d, det), metric]) * scale if complete else math.nan
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


def by_model_seed(per_split: pd.DataFrame, summary: Summary) -> pd.DataFrame:
    """vae-anomaly per model seed over the mean's datasets: mean ROC-AUC / PR-AUC (over seeds,
    then datasets) and total fit seconds; index: the model seeds. Empty without the column."""
    columns = ["roc_auc", "pr_auc", "fit_s"]
    if "model_seed" not in per_split.columns or VAE_NAME not in summary.detectors:
        return pd.DataFrame(columns=columns)
    rows = per_split[
        (per_split["detector"] == VAE_NAME)
        & per_split["dataset"].isin(summary.common)
        & (per_split["error"].fillna("") == "")
    ].dropna(subset=["model_seed"])
    if rows.empty:
        return pd.DataFrame(columns=columns)
    grouped = rows.groupby(["model_seed", "dataset"])
    per_dataset = grouped[["roc_auc", "pr_auc"]].mean().join(grouped[["fit_s"]].sum())
    out = per_dataset.groupby(level="model_seed").agg(
        roc_auc=("roc_auc", "mean"), pr_auc=("pr_auc", "mean"), fit_s=("fit_s", "sum")
    )
    out.index = out.index.astype(int)
    return out


def mean_values(summary: Summary) -> dict[str, float]:
    """The "mean" row as plain floats."""
    row = summary.table.loc["mean"].astype(float)
    return {str(k): float(row[k]) for k in row.index}


def timing_machines(per_split: pd.DataFrame) -> dict[str, list[str]]:
    """Detector -> the machines its fit times were measured on (cached baselines keep the
    machine of the run that computed them); empty for a per-split frame without ``timed_on``."""
    if "timed_on" not in per_split.columns:
        return {}
    timed = per_split.dropna(subset=["timed_on"])
    return {d: sorted(set(group["timed_on"])) for d, group in timed.groupby("detector")}


def evaluate_targets(
    summary: Summary, rules: TargetRules, timed_on: dict[str, list[str]] | None = None
) -> list[Target]:
    """A suite's product targets, from the "mean" row (in points: 1 point = 0.01).

    ``timed_on`` (:func:`timing_machines`): when vae-anomaly's and pyod-vae's fit times were
    not all measured on one machine, the fit-time target is not measurable here (``n/a``, the
    machines named): the ratio of times taken on different machines says nothing."""
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
                f"ROC-AUC(vae-anomaly) >= best peer ({best_roc}) + {rules.roc_over_best_peer:g}",
                vae_roc,
                points(best_roc, "roc_auc") + rules.roc_over_best_peer,
                unit="points",
            )
        )
    if "pyod-vae" in dets and rules.roc_over_pyod_vae is not None:
        targets.append(
            Target(
                f"ROC-AUC(vae-anomaly) >= pyod-vae + {rules.roc_over_pyod_vae:g}",
                vae_roc,
                points("pyod-vae", "roc_auc") + rules.roc_over_pyod_vae,
                unit="points",
            )
        )
    if peers:
        targets.append(
            Target(
                f"PR-AUC(vae-anomaly) >= best peer ({best_pr}) + {rules.pr_over_best_peer:g}",
                vae_pr,
                points(best_pr, "pr_auc") + rules.pr_over_best_peer,
                unit="points",
            )
        )
    if "pyod-vae" in dets:
        vae_fit = float(mean[f"{VAE_NAME}_fit_s"])
        limit = float(mean["pyod-vae_fit_s"]) * rules.fit_time_ratio
        text = f"total fit time(vae-anomaly) <= 1/{round(1 / rules.fit_time_ratio)} of pyod-vae's"
        machines = {d: (timed_on or {}).get(d, []) for d in (VAE_NAME, "pyod-vae")}
        comparable = len(set(machines[VAE_NAME]) | set(machines["pyod-vae"])) <= 1
        if not comparable:
            text += (
                f" (not comparable: pyod-vae timed on {'; '.join(machines['pyod-vae'])},"
                f" vae-anomaly on {'; '.join(machines[VAE_NAME])}; `--refresh-baselines` times"
                " both in one run)"
            )
        targets.append(
            Target(text, vae_fit, limit, higher_is_better=False, unit="s", comparable=comparable)
        )
    return targets


def _pct(value: float) -> str:
    return "error" if not math.isfinite(value) else f"{100 * value:.1f}"


def _target_cells(tg: Target) -> list[str]:
    """value, needed, met of a target as the reports show them."""
    if tg.unit == "s":
        shown = [f"{tg.value:.1f} s", f"{tg.needed:.1f} s"]
    elif tg.unit == "count":
        shown = [f"{tg.value:g}", f"{tg.needed:g}"]
    else:
        shown = [f"{tg.value:.1f}", f"{tg.needed:.1f}"]
    met = "n/a" if tg.met is None else ("yes" if tg.met else "**no**")
    return [*shown, met]


def model_seed_lines(table: pd.DataFrame) -> list[str]:
    """The "vae-anomaly by model seed" table (``by_model_seed``) and its mean row."""
    lines = [*md_header(["model seed", "ROC-AUC %", "PR-AUC %", "fit s (total)"], "lrrr")]
    for seed, row in table.iterrows():
        lines.append(
            md_row(seed, _pct(row["roc_auc"]), _pct(row["pr_auc"]), fmt_seconds(row["fit_s"]))
        )
    if len(table) > 1:
        lines.append(
            md_row(
                "mean (used for the targets)",
                _pct(table["roc_auc"].mean()),
                _pct(table["pr_auc"].mean()),
                fmt_seconds(table["fit_s"].mean()),
            )
        )
    return lines


def markdown_report(
    per_split: pd.DataFrame,
    summary: Summary,
    targets: list[Target],
    meta: dict[str, Any],
    suite: Suite,
) -> str:
    t, dets = summary.table, summary.detectors
    seeds = sorted(per_split["seed"].unique().tolist())
    overrides = json.dumps(meta["overrides"]) if meta["overrides"] else "none"
    lines = [
        f"# {suite.title}",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}",
        f"- software: python {meta['python']}, torch {meta['torch']}, pyod {meta['pyod']}, "
        f"scikit-learn {meta['sklearn']}, numpy {meta['numpy']}",
        f"- command: `{meta['command']}`",
        f"- datasets: {len(t) - 1} (half: {meta['half']}), seeds: {seeds}; "
        f"protocol: {suite.protocol}",
        f"- vae-anomaly overrides: `{overrides}` (code hash {meta['code_hash']})",
    ]
    if meta.get("model_seeds"):
        lines.append(
            f"- vae-anomaly model seeds (`training.seed`): {meta['model_seeds']}; its numbers "
            "are the mean over them"
        )
    if suite.vae_input:
        lines.append(f"- vae-anomaly input: {suite.vae_input}")
    lines += [
        f"- vae-anomaly effective settings: `{json.dumps(meta['settings'])}`",
        f"- baselines: {suite.baselines}",
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
    if meta.get("model_seeds"):
        lines += [
            "",
            "## vae-anomaly by model seed",
            "",
            *model_seed_lines(by_model_seed(per_split, summary)),
        ]
    if targets:
        lines += ["", "## Targets", "", *md_header(["target", "value", "needed", "met"], "lrrl")]
        for tg in targets:
            lines.append(md_row(tg.text, *_target_cells(tg)))
        if set(suite.peers) - set(dets):
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


@dataclass
class SuiteResult:
    """What one suite's run produced (the inputs of ``quality.md``)."""

    suite: Suite
    per_split: pd.DataFrame
    summary: Summary
    targets: list[Target]


@dataclass
class WinLoss:
    """vae-anomaly against one peer on per-dataset ROC-AUC (the tables' 0.1 point)."""

    peer: str
    wins: list[str]
    losses: list[str]
    ties: list[str]

    @property
    def target(self) -> Target:
        return Target(
            f"ROC-AUC per dataset, vae-anomaly vs {self.peer}: wins >= losses + 1 "
            f"({len(self.wins)} won, {len(self.losses)} lost, {len(self.ties)} tied)",
            float(len(self.wins)),
            float(len(self.losses) + 1),
            unit="count",
        )


def win_loss(results: Sequence[SuiteResult], peer: str = "iforest") -> WinLoss | None:
    """Per dataset of every suite, mean ROC-AUC of vae-anomaly vs the peer, compared as the
    tables show them (0.1 point); datasets where either failed are left out."""
    out = WinLoss(peer, [], [], [])
    found = False
    for result in results:
        t = result.summary.table
        if f"{VAE_NAME}_roc_auc" not in t or f"{peer}_roc_auc" not in t:
            continue
        found = True
        for dataset in t.index.drop("mean"):
            mine, theirs = t.loc[dataset, f"{VAE_NAME}_roc_auc"], t.loc[dataset, f"{peer}_roc_auc"]
            if not (math.isfinite(mine) and math.isfinite(theirs)):
                continue
            a, b = round(1000 * mine), round(1000 * theirs)
            name = f"{dataset} ({result.suite.label})"
            (out.wins if a > b else out.losses if a < b else out.ties).append(name)
    return out if found else None


def quality_report(results: Sequence[SuiteResult], meta: dict[str, Any]) -> str:
    """``quality.md``: the suites' mean tables side by side, vae-anomaly vs iforest per
    dataset over every table, and every target of every suite."""
    dets = list(dict.fromkeys(d for r in results for d in r.summary.detectors))
    heads = ["detector"]
    for r in results:
        n = len(r.summary.common)
        heads += [f"{r.suite.label} ({n}) ROC %", "PR %", "fit s"]
    lines = [
        "# Detection quality: " + " and ".join(r.suite.label for r in results),
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}",
        f"- command: `{meta['command']}`",
        "- details: " + ", ".join(f"`{r.suite.name}.md`" for r in results),
        "",
        "## Mean per suite (over its datasets x seeds; fit s: total)",
        "",
        *md_header(heads, "l" + "rrr" * len(results)),
    ]
    for det in dets:
        cells: list[str] = [det]
        for r in results:
            if det in r.summary.detectors:
                mean = mean_values(r.summary)
                cells += [
                    _pct(mean[f"{det}_roc_auc"]),
                    _pct(mean[f"{det}_pr_auc"]),
                    fmt_seconds(mean[f"{det}_fit_s"]),
                ]
            else:
                cells += ["-", "-", "-"]
        lines.append(md_row(*cells))
    if meta.get("model_seeds"):
        lines += ["", "## vae-anomaly by model seed", ""]
        for r in results:
            table = by_model_seed(r.per_split, r.summary)
            if not table.empty:
                lines += [f"{r.suite.label}:", "", *model_seed_lines(table), ""]
        lines.pop()
    score = win_loss(results)
    lines += ["", "## vae-anomaly vs iforest, ROC-AUC per dataset (all suites)", ""]
    if score is None:
        lines.append("n/a (vae-anomaly or iforest not in the run)")
    else:
        lines += [
            f"- won ({len(score.wins)}): {', '.join(score.wins) or 'none'}",
            f"- lost ({len(score.losses)}): {', '.join(score.losses) or 'none'}",
            f"- tied at 0.1 point ({len(score.ties)}): {', '.join(score.ties) or 'none'}",
        ]
    lines += [
        "",
        "## Targets",
        "",
        *md_header(["suite", "target", "value", "needed", "met"], "llrrl"),
    ]
    for r in results:
        for tg in r.targets:
            lines.append(md_row(r.suite.label, tg.text, *_target_cells(tg)))
    if score is not None:
        lines.append(md_row("all", score.target.text, *_target_cells(score.target)))
    return "\n".join(lines) + "\n"


def plot(summary: Summary, path: Path, label: str = "ADBench") -> None:
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
    for offset, metric, name in ((-0.2, "roc_auc", "ROC-AUC"), (0.2, "pr_auc", "PR-AUC")):
        values = [100 * mean[f"{d}_{metric}"] for d in dets]
        bars = ax.bar(positions + offset, values, width=0.4, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(positions, dets)
    ax.set_ylabel("% (mean over datasets and seeds)")
    ax.set_title(f"Mean over {len(summary.common)} {label} datasets")
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
