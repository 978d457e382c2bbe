"""Ensembles of the default detector, measured on the benchmark's own splits (RESULTS.md,
twelfth round): are several fits better than one?

- ``--members seeds``: the default fit (model seed ``s``) and ``K - 1`` more on every column,
  model seeds ``10 s + 1`` .. ``10 s + K - 1``.
- ``--members features`` (feature bagging, Lazarevic & Kumar 2005): ``K`` fits, each on a
  random subset of ``ceil(d / 2)`` .. ``d - 1`` of the ``d`` columns (model seeds
  ``10 s`` .. ``10 s + K - 1``), with and without the default fit as one more member.
- ``--members betas`` (thirteenth round): not an ensemble but a choice per split. Each
  ``--betas`` candidate is fitted twice (model seeds ``s`` and ``10 s + 1``; at the default's
  own beta these are the default's fit and its first seed member), and the beta whose two fits
  rank the training rows most alike (Spearman's correlation; or the share of their top 5% in
  common) is chosen; its seed-``s`` fit is scored; or the beta whose seed-``s`` fit's training
  scores have the longest upper tail (:func:`tail_separation`). Also each beta on every table
  and, as a bound, the best beta per split by the test labels. The choices go to
  ``results/ensembles_<suite>_betas_choices.csv``.

Every fit's test and training scores are kept in ``--cache`` (one ``.npz`` per fit, under the
hash of the model code, ``vae/`` and ``pipeline/``: a rerun at the same code reuses them), so
every combination is computed from the same fits: the mean of the members' raw scores, of
their z-scores (each member standardised by its own training rows' scores), and of their
training-row ranks; for feature bagging also the default's z-score and the members' mean
z-score, half each. Means over datasets of the split means, per model seed;
ADBench also per half. The default's fit reproduces the committed quality tables.

    python -m benchmarks.ensembles --categorical ../shared/datasets/categorical --members seeds
    python -m benchmarks.ensembles --data ../shared/datasets/adbench --members features
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.adbench.data import half_of
from benchmarks.adbench.detectors import as_frames, as_is, source_hash
from benchmarks.adbench.suites import Suite, adbench_suite, categorical_suite
from benchmarks.common import machine_description, md_header, md_row

DEFAULT = -1  # the member index of the default fit (model seed s, every column)
SPLIT_SEEDS = (1, 2, 3)


def column_subset(d: int, model_seed: int, member: int) -> np.ndarray:
    """The columns feature-bagged member ``member`` sees: ``ceil(d / 2)`` to ``d - 1`` of them,
    drawn from the model seed and the member (every column when ``d <= 2``)."""
    rng = np.random.default_rng([model_seed, member, 7])
    size = int(rng.integers(-(-d // 2), d)) if d > 2 else d
    return np.sort(rng.choice(d, size, replace=False))


def _suite(kind: str, data: Path) -> Suite:
    return adbench_suite(data) if kind == "numeric" else categorical_suite(data)


def fit_member(task: tuple[str, Path, str, int, int, str, int, Path]) -> Path:
    """Fit one member on one split; its scores go to a ``.npz`` in the cache."""
    kind, data, dataset, split_seed, model_seed, members, member, cache = task
    tag = "default" if member == DEFAULT else f"{members}_{member}"  # one default fit for both
    out = cache / f"{kind}_{dataset}_{split_seed}_{model_seed}_{tag}.npz"
    if out.exists():
        return out
    import torch

    from pipeline.config import Settings
    from pipeline.detector import AnomalyDetector

    torch.set_num_threads(1)
    suite = _suite(kind, data)
    x, y = suite.load(dataset)
    split = suite.split(dataset, x, y, split_seed)
    # as the quality benchmark feeds vae-anomaly: ADBench arrays as frames, tables as read
    train, test = (as_frames if kind == "numeric" else as_is)(split)
    columns = list(train.columns)
    if member == DEFAULT or members == "seeds" or members.startswith("beta"):
        keep, seed = columns, model_seed if member in (DEFAULT, 0) else 10 * model_seed + member
    else:
        keep = [columns[i] for i in column_subset(len(columns), model_seed, member)]
        seed = 10 * model_seed + member
    overrides: dict[str, dict] = {"training": {"seed": seed}}
    if members.startswith("beta"):
        overrides["training"]["beta"] = float(members.removeprefix("beta"))
    if kind == "categorical":
        overrides["data"] = {"categorical_columns": keep}
    settings = Settings().with_overrides(**overrides)
    started = time.perf_counter()
    detector = AnomalyDetector(settings).fit(train[keep])
    fit_s = time.perf_counter() - started
    np.savez(
        out,
        test=detector.score_samples(test[keep]),
        train=detector.score_samples(train[keep]),
        y=split.y_test,
        fit_s=fit_s,
    )
    return out


def combinations(members: str, k: int) -> dict[str, tuple[list[int], str]]:
    """Name -> (member indices, how the scores are combined)."""
    if members == "seeds":
        out = {"1 (the default)": ([DEFAULT], "raw")}
        for size in range(2, k + 1):
            for how in ("raw", "z", "rank"):
                out[f"{size}, mean of {how} scores"] = ([DEFAULT, *range(1, size)], how)
        return out
    return {
        "the default (every column)": ([DEFAULT], "raw"),
        "one member on a subset": ([0], "raw"),
        f"{k} members": (list(range(k)), "z"),
        f"the default and the {k} members": ([DEFAULT, *range(k)], "z"),
        "half the default, half the members' mean": ([DEFAULT, *range(k)], "half"),
    }


def _z(fit: dict[str, np.ndarray]) -> np.ndarray:
    return (fit["test"] - fit["train"].mean()) / (fit["train"].std() + 1e-12)


def combine(fits: list[dict[str, np.ndarray]], how: str) -> np.ndarray:
    """The members' test scores as one: mean of raw scores, of z-scores, of training-row
    ranks, or ``half``: the first member's z-score and the others' mean z-score, half each."""
    if how == "raw":
        return np.mean([f["test"] for f in fits], axis=0)
    if how == "z":
        return np.mean([_z(f) for f in fits], axis=0)
    if how == "half":
        return 0.5 * _z(fits[0]) + 0.5 * np.mean([_z(f) for f in fits[1:]], axis=0)
    return np.mean(
        [np.searchsorted(np.sort(f["train"]), f["test"]) / len(f["train"]) for f in fits], axis=0
    )


def split_row(
    name: str, seed: int, dataset: str, split: int, y: np.ndarray, score: np.ndarray, fit_s: float
) -> dict[str, object]:
    """One line of ``_per_split.csv``: a combination's ROC-AUC and PR-AUC (%) on one split."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {
        "ensemble": name,
        "model_seed": seed,
        "dataset": dataset,
        "split": split,
        "roc_auc": roc_auc_score(y, score) * 100,
        "pr_auc": average_precision_score(y, score) * 100,
        "fit_s": fit_s,
    }


def beta_fit(beta: float, default_beta: float, member: int) -> tuple[str, int]:
    """The (members, member) key of the fit at ``beta`` with model seed ``s`` (member 0) or
    ``10 s + 1`` (member 1); at the default's own beta these are the default's fit and its
    first seed member, so no fit is made twice."""
    if beta == default_beta:
        return ("seeds", 1) if member else ("seeds", DEFAULT)
    return f"beta{beta:g}", member


def stability(a: np.ndarray, b: np.ndarray, how: str) -> float:
    """How alike two fits rank the training rows: Spearman's correlation of their scores, or
    the share of the top 5% of rows that the two fits have in common (rows tied at the cut
    taken in row order, so on a table of few distinct scores the share is partly chance)."""
    if how == "spearman":
        from scipy.stats import spearmanr

        return float(spearmanr(a, b).statistic)
    top = max(1, round(0.05 * len(a)))
    first_a, first_b = np.argsort(-a, kind="stable")[:top], np.argsort(-b, kind="stable")[:top]
    return len(set(first_a) & set(first_b)) / top


def tail_separation(train: np.ndarray) -> float:
    """How far the top 1% of training rows stand out: ``(q99 - q50) / (q75 - q25)``."""
    q25, q50, q75, q99 = np.quantile(train, [0.25, 0.5, 0.75, 0.99])
    return float((q99 - q50) / max(q75 - q25, 1e-12))


def selections(betas: list[float]) -> list[str]:
    return [
        "beta auto (the default)",
        *[f"beta {b:g} on every table" for b in betas],
        "chosen by rank stability (Spearman)",
        "chosen by top-5% overlap",
        "chosen by the training scores' tail (one fit each)",
        "mean z-score of the betas' fits (one fit each)",
        "best beta per split (labels: a bound)",
    ]


def beta_rows(
    fits: dict, names: list[str], seeds: list[int], betas: list[float], default_beta: float
):
    """Per split and model seed: the default, each beta, and the beta chosen per split by the
    stability of the two fits' training-row ranking (the chosen beta's seed-``s`` fit is
    scored; its cost is all the candidates' fits), or by how far the top 1% of the seed-``s``
    fit's training scores stand out (:func:`tail_separation`; one fit per candidate); and,
    not a choice, the mean z-score of the candidates' seed-``s`` fits (an ensemble over beta)."""
    from sklearn.metrics import roc_auc_score

    rows, chosen = [], []
    for seed in seeds:
        for dataset in names:
            for split in SPLIT_SEEDS:
                pair = {
                    b: [fits[(dataset, split, seed, *beta_fit(b, default_beta, j))] for j in (0, 1)]
                    for b in betas
                }
                y = pair[betas[0]][0]["y"]
                roc = {b: roc_auc_score(y, p[0]["test"]) * 100 for b, p in pair.items()}
                pick = {
                    how: max(
                        betas,
                        key=lambda b, h=how: stability(pair[b][0]["train"], pair[b][1]["train"], h),
                    )
                    for how in ("spearman", "top")
                }
                pick["tail"] = max(betas, key=lambda b: tail_separation(pair[b][0]["train"]))
                chosen += [(seed, dataset, split, how, b) for how, b in pick.items()]
                every = sum(float(f["fit_s"]) for p in pair.values() for f in p)
                once = sum(float(p[0]["fit_s"]) for p in pair.values())
                default = fits[(dataset, split, seed, "seeds", DEFAULT)]
                picked = [
                    (default, float(default["fit_s"])),
                    *[(pair[b][0], float(pair[b][0]["fit_s"])) for b in betas],
                    (pair[pick["spearman"]][0], every),
                    (pair[pick["top"]][0], every),
                    (pair[pick["tail"]][0], once),
                    ({"test": combine([p[0] for p in pair.values()], "z")}, once),
                    (pair[max(betas, key=roc.get)][0], once),
                ]
                rows += [
                    split_row(name, seed, dataset, split, y, fit["test"], fit_s)
                    for name, (fit, fit_s) in zip(selections(betas), picked, strict=True)
                ]
    return rows, pd.DataFrame(chosen, columns=["model_seed", "dataset", "split", "by", "beta"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", type=Path, help="the ADBench .npz folder")
    where.add_argument("--categorical", type=Path, help="the categorical .csv folder")
    parser.add_argument("--members", choices=["seeds", "features", "betas"], required=True)
    parser.add_argument("--size", type=int, default=3, help="members per ensemble (K)")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.1, 0.5, 1.0])
    parser.add_argument("--model-seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache/ensembles"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    kind, data = ("numeric", args.data) if args.data else ("categorical", args.categorical)
    suite = _suite(kind, data)
    names = suite.list_datasets()
    keys: list[tuple[str, int]] = [("seeds", DEFAULT)]
    if args.members == "seeds":
        keys += [("seeds", m) for m in range(1, args.size)]
    elif args.members == "features":
        keys += [("features", m) for m in range(args.size)]
    else:
        from pipeline.training_setup import DISCRETE_BETA, NUMERIC_BETA

        default_beta = DISCRETE_BETA if kind == "categorical" else NUMERIC_BETA
        keys = sorted({beta_fit(b, default_beta, j) for b in args.betas for j in (0, 1)} | {*keys})
    code = source_hash()
    cache = args.cache / code  # a fit is reused only by the code that made it
    cache.mkdir(parents=True, exist_ok=True)
    tasks = [
        (kind, data, name, split, seed, members, member, cache)
        for seed in args.model_seeds
        for name in names
        for split in SPLIT_SEEDS
        for members, member in keys
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        paths = list(pool.map(fit_member, tasks, chunksize=1))
    print(f"{len(tasks)} fits in {time.perf_counter() - started:.0f} s")
    fits = {task[2:7]: dict(np.load(path)) for task, path in zip(tasks, paths, strict=True)}
    chosen, plan = None, combinations(args.members, args.size) if args.members != "betas" else {}
    if args.members == "betas":
        rows, chosen = beta_rows(fits, names, args.model_seeds, args.betas, default_beta)
        order = selections(args.betas)
    else:
        rows, order = [], list(plan)
    for name, (members, how) in plan.items():
        for seed in args.model_seeds:
            for dataset in names:
                for split in SPLIT_SEEDS:
                    used = [
                        fits[(dataset, split, seed, "seeds" if m == DEFAULT else args.members, m)]
                        for m in members
                    ]
                    fit_s = sum(float(f["fit_s"]) for f in used)
                    rows.append(
                        split_row(
                            name, seed, dataset, split, used[0]["y"], combine(used, how), fit_s
                        )
                    )
    frame = pd.DataFrame(rows)
    per = frame.groupby(["ensemble", "model_seed", "dataset"], sort=False).agg(
        roc_auc=("roc_auc", "mean"), pr_auc=("pr_auc", "mean"), fit_s=("fit_s", "sum")
    )
    halves = {f"half {h}": set(half_of(names, h)) for h in "AB"} if args.data else {}
    seeds = args.model_seeds
    betas = " ".join(f"{b:g}" for b in args.betas)
    lines = [
        f"# Ensembles of the default ({suite.label}, {args.members}, K = {args.size})"
        if args.members != "betas"
        else f"# Beta chosen per split by the stability of the ranking ({suite.label})",
        "",
        f"- command: `python -m benchmarks.ensembles --{'data' if args.data else 'categorical'}"
        f" <folder> --members {args.members}"
        + (f" --size {args.size}`" if args.members != "betas" else f" --betas {betas}`"),
        f"- code hash: {code} (`vae/`, `pipeline/`; the fits' cache folder)",
        f"- machine: {machine_description()}; split seeds 1-3; means over {len(names)} "
        "datasets, ROC-AUC % / PR-AUC %; fit: the members' fit time summed, per model seed"
        + ("" if args.members != "betas" else " (a choice costs every candidate's two fits)"),
        "",
        *md_header(
            ["ensemble", "mean of seeds", *[f"seed {s}" for s in seeds], *halves, "fit s"],
            "ll" + "r" * (len(seeds) + len(halves)) + "r",
        ),
    ]
    for name in order:
        part = per.loc[name]
        by_seed = part.groupby("model_seed")[["roc_auc", "pr_auc"]].mean()
        by_half = [
            part[part.index.get_level_values("dataset").isin(h)][["roc_auc", "pr_auc"]].mean()
            for h in halves.values()
        ]
        lines.append(
            md_row(
                name,
                f"{by_seed.roc_auc.mean():.2f} / {by_seed.pr_auc.mean():.2f}",
                *[f"{r:.2f} / {p:.2f}" for r, p in by_seed.itertuples(index=False)],
                *[f"{h.roc_auc:.2f} / {h.pr_auc:.2f}" for h in by_half],
                f"{part.groupby('model_seed').fit_s.sum().mean():.0f}",
            )
        )
    if chosen is not None:
        counts = chosen.groupby(["by", "beta"]).size().unstack("beta", fill_value=0)
        lines += ["", "Splits (x model seeds) on which each beta was chosen:", ""]
        lines += md_header(
            ["by", *[f"beta {b:g}" for b in counts.columns]], "l" + "r" * len(counts.columns)
        )
        lines += [md_row(by, *values) for by, values in counts.iterrows()]
    roc = per.roc_auc.groupby(["dataset", "ensemble"], sort=False).mean().unstack("ensemble")
    lines += ["", "ROC-AUC per dataset (mean of seeds and splits):", ""]
    lines += md_header(["dataset", *roc.columns], "l" + "r" * len(roc.columns))
    lines += [md_row(d, *[f"{v:.1f}" for v in values]) for d, values in roc.iterrows()]
    text = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"ensembles_{suite.name}_{args.members}"
    (args.out / f"{stem}.md").write_text(text + "\n")
    frame.to_csv(args.out / f"{stem}_per_split.csv", index=False)
    if chosen is not None:
        chosen.to_csv(args.out / f"{stem}_choices.csv", index=False)
    print(text)


if __name__ == "__main__":
    main()
