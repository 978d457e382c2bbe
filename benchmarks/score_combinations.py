"""How the two terms of a numeric table's score become one (RESULTS.md, fourteenth round).

The default (``log_max``) scores a row by the larger of ``z(log recon)`` and ``z(log kl)``,
each standardised by the training rows: Tippett's combination, which reads the stronger of two
pieces of evidence and ignores the other. Two combinations that also count the weaker one,
set before the runs:

- ``lse``: ``log(exp(z_r) + exp(z_k))``, a soft maximum (at most ``log 2`` above the max, when
  the two agree);
- ``fisher``: Fisher's method on the two terms' normal tails, ``-log P(Z > z_r) - log P(Z > z_k)``
  (the logged terms of normal rows are close to normal: third round): a row moderately unusual
  in both terms counts as much as one extreme in one.

Rule set before the runs: a combination replaces ``log_max`` only if, on the mean of model seeds
42/43/44, it raises both ROC-AUC and PR-AUC on both ADBench halves and does not lower the sample
table's (``data/sample``, batch against train) on any seed.

One fit of the default detector per split and model seed (cached under the code hash in
``--cache``: its test and training rows' two z's), every combination computed on it.

    python -m benchmarks.score_combinations --data ../shared/datasets/adbench
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmarks.adbench.data import half_of
from benchmarks.adbench.detectors import as_frames, source_hash
from benchmarks.adbench.suites import adbench_suite
from benchmarks.common import machine_description, md_header, md_row
from benchmarks.ensembles import SPLIT_SEEDS

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
COMBINATIONS = {
    "max (`log_max`, the default)": lambda zr, zk: np.maximum(zr, zk),
    "lse (soft maximum)": np.logaddexp,
    "fisher (sum of the normal tails' -log p)": lambda zr, zk: -norm.logsf(zr) - norm.logsf(zk),
}


def _fit(task: tuple[str, Path, str, int, int, Path]) -> Path:
    """Fit the default on one split (or the sample table); cache the test rows' two z's."""
    kind, data, dataset, split_seed, model_seed, cache = task
    out = cache / f"{dataset}_{split_seed}_{model_seed}.npz"
    if out.exists():
        return out
    import torch

    from pipeline.config import Settings
    from pipeline.detector import AnomalyDetector
    from pipeline.ingest import read_table
    from pipeline.schema import check_scoring_frame

    torch.set_num_threads(1)
    if kind == "sample":
        train, test = read_table(SAMPLE / "train.csv"), read_table(SAMPLE / "batch.csv")
        y = test["label"].to_numpy()
    else:
        suite = adbench_suite(data)
        x, labels = suite.load(dataset)
        split = suite.split(dataset, x, labels, split_seed)
        (train, test), y = as_frames(split), split.y_test
    settings = Settings().with_overrides(training={"seed": model_seed})
    detector = AnomalyDetector(settings).fit(train)
    checked = check_scoring_frame(test, detector.schema_)
    assert checked.rejected.empty, f"{dataset}: {len(checked.rejected)} rows rejected"
    _, recon, kl = detector._terms(checked.accepted, detector.settings.scoring)
    z_recon, z_kl = detector.score_definition_.standardized(recon, kl)
    np.savez(out, z_recon=z_recon, z_kl=z_kl, y=y)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the ADBench .npz folder")
    parser.add_argument("--model-seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache/combinations"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    names = adbench_suite(args.data).list_datasets()
    code = source_hash()
    cache = args.cache / code
    cache.mkdir(parents=True, exist_ok=True)
    tasks = [("sample", args.data, "sample", 0, s, cache) for s in args.model_seeds] + [
        ("numeric", args.data, name, split, seed, cache)
        for seed in args.model_seeds
        for name in names
        for split in SPLIT_SEEDS
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        paths = list(pool.map(_fit, tasks, chunksize=1))
    print(f"{len(tasks)} fits in {time.perf_counter() - started:.0f} s")
    rows = []
    for task, path in zip(tasks, paths, strict=True):
        fit = np.load(path)
        for combination, combine in COMBINATIONS.items():
            score = combine(fit["z_recon"], fit["z_kl"])
            rows.append(
                {
                    "combination": combination,
                    "model_seed": task[4],
                    "dataset": task[2],
                    "split": task[3],
                    "roc_auc": roc_auc_score(fit["y"], score) * 100,
                    "pr_auc": average_precision_score(fit["y"], score) * 100,
                }
            )
    frame = pd.DataFrame(rows)
    numeric, sample = frame[frame.dataset != "sample"], frame[frame.dataset == "sample"]
    per = numeric.groupby(["combination", "model_seed", "dataset"], sort=False)[
        ["roc_auc", "pr_auc"]
    ].mean()
    halves = {f"half {h}": set(half_of(names, h)) for h in "AB"}
    seeds = args.model_seeds
    lines = [
        "# How the two terms of a numeric table's score become one (ADBench, sample table)",
        "",
        "- command: `python -m benchmarks.score_combinations --data <adbench folder>`",
        f"- code hash: {code} (`vae/`, `pipeline/`; the fits' cache folder)",
        f"- machine: {machine_description()}; split seeds 1-3; one fit of the default per split "
        "and model seed, every combination scored on it; ROC-AUC % / PR-AUC %",
        "",
        *md_header(
            ["combination", "33 ADBench", *[f"seed {s}" for s in seeds], *halves, "sample"],
            "ll" + "r" * (len(seeds) + len(halves) + 1),
        ),
    ]
    for combination in COMBINATIONS:
        part = per.loc[combination]
        by_seed = part.groupby("model_seed").mean()
        by_half = [part[part.index.isin(h, level="dataset")].mean() for h in halves.values()]
        on_sample = sample[sample.combination == combination]
        lines.append(
            md_row(
                combination,
                f"{by_seed.roc_auc.mean():.2f} / {by_seed.pr_auc.mean():.2f}",
                *[f"{r:.2f} / {p:.2f}" for r, p in by_seed.itertuples(index=False)],
                *[f"{h.roc_auc:.2f} / {h.pr_auc:.2f}" for h in by_half],
                ", ".join(f"{r:.2f} / {p:.1f}" for r, p in on_sample[["roc_auc", "pr_auc"]].values),
            )
        )
    roc = per.roc_auc.groupby(["dataset", "combination"], sort=False).mean().unstack()
    pr = per.pr_auc.groupby(["dataset", "combination"], sort=False).mean().unstack()
    lines += ["", "ROC-AUC / PR-AUC per dataset (mean of seeds and splits):", ""]
    lines += md_header(["dataset", *roc.columns], "l" + "r" * len(roc.columns))
    lines += [
        md_row(d, *[f"{r:.1f} / {p:.1f}" for r, p in zip(roc.loc[d], pr.loc[d], strict=True)])
        for d in roc.index
    ]
    text = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "score_combinations.md").write_text(text + "\n")
    frame.to_csv(args.out / "score_combinations_per_split.csv", index=False)
    print(text)


if __name__ == "__main__":
    main()
