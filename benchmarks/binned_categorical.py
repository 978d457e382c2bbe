"""A check of the scores of all-categorical tables on tables they were not chosen on: the ADBench
sets (up to 40 columns) with every column binned into categories, scored by ``scaled_elbo`` (the
default), ``elbo`` and ``tail_max`` on the same fits (the score does not change training).

Each column is cut at quantiles of the train part: ``--bins tails`` at 1, 5, 25, 50, 75, 95 and
99% (rare bins at both ends, as an age or amount range would have), ``--bins quintiles`` at 20,
40, 60 and 80% (every bin a fifth of the rows: an extreme value looks like any other top-fifth
value, so the anomalies' signal is mostly gone). Split seed 1, train parts subsampled to 5,000
rows; the mean over datasets per model seed, and per ADBench half.

    python -m benchmarks.binned_categorical --data ../shared/datasets/adbench --bins tails
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.adbench.data import half_of, list_datasets, load_dataset, make_split
from benchmarks.common import machine_description, md_header, md_row

CUTS = {"tails": [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99], "quintiles": [0.2, 0.4, 0.6, 0.8]}
MAX_COLUMNS, MAX_TRAIN_ROWS = 40, 5000


def binned(x: np.ndarray, train: np.ndarray, cuts: list[float]) -> pd.DataFrame:
    """Each column of ``x`` as the text name of its bin, cut at quantiles of ``train``."""
    columns = {}
    for j in range(x.shape[1]):
        edges = np.unique(np.quantile(train[:, j], cuts))
        columns[f"c{j}"] = np.char.add("b", np.digitize(x[:, j], edges).astype(str))
    return pd.DataFrame(columns)


def run_one(task: tuple[Path, str, int, str]) -> list[dict]:
    data, name, model_seed, bins = task
    import torch
    from sklearn.metrics import average_precision_score, roc_auc_score

    from pipeline.config import Settings
    from pipeline.detector import AnomalyDetector
    from pipeline.scoring import ScoreDefinition, ScoreStats, tail_views
    from vae.infer import score_arrays

    torch.set_num_threads(1)
    x, y = load_dataset(data, name)
    split = make_split(name, x, y, 1)
    x_train = split.x_train
    if x_train.shape[1] > MAX_COLUMNS:
        return []
    if len(x_train) > MAX_TRAIN_ROWS:
        rows = np.random.RandomState(0).choice(len(x_train), MAX_TRAIN_ROWS, replace=False)
        x_train = x_train[rows]
    train = binned(x_train, x_train, CUTS[bins])
    test = binned(split.x_test, x_train, CUTS[bins])
    settings = Settings().with_overrides(
        training={"seed": model_seed}, data={"categorical_columns": list(train.columns)}
    )
    started = time.perf_counter()
    detector = AnomalyDetector(settings).fit(train)
    fit_s = time.perf_counter() - started
    assert detector.settings.scoring.score == "scaled_elbo"
    # the other two scores from the same fit, as the product defines them: the decoder's terms
    # with the categorical likelihood (the negative ELBO's loss), and tail_max's training scales
    likelihood = detector.likelihood_loss()
    on_train = score_arrays(
        detector.model_, detector.preprocessor_.transform(train), loss=likelihood
    )
    on_test = score_arrays(detector.model_, detector.preprocessor_.transform(test), loss=likelihood)
    assert on_train.pearson is not None
    kl_weight = detector.settings.scoring.kl_weight
    views = tail_views(on_train.recon, on_train.kl, on_train.pearson, kl_weight)
    stats = ScoreStats.of(on_train.recon, on_train.kl, views)
    scores = {
        "scaled_elbo": detector.score_samples(test),
        **{
            kind: ScoreDefinition(kind, kl_weight, stats).combine(
                on_test.recon, on_test.kl, on_test.pearson
            )
            for kind in ("elbo", "tail_max")
        },
    }
    return [
        {
            "dataset": name,
            "model_seed": model_seed,
            "score": score,
            "roc_auc": roc_auc_score(split.y_test, values),
            "pr_auc": average_precision_score(split.y_test, values),
            "fit_s": fit_s,
        }
        for score, values in scores.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the ADBench .npz folder")
    parser.add_argument("--bins", choices=sorted(CUTS), default="tails")
    parser.add_argument("--model-seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    names = list_datasets(args.data)
    tasks = [(args.data, name, seed, args.bins) for seed in args.model_seeds for name in names]
    rows: list[dict] = []
    with ProcessPoolExecutor(args.workers) as pool:
        for result in pool.map(run_one, tasks, chunksize=1):
            rows += result
    frame = pd.DataFrame(rows)
    half_a = set(half_of(names, "A"))
    frame["half"] = ["A" if n in half_a else "B" for n in frame["dataset"]]
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / f"binned_{args.bins}_per_split.csv", index=False)
    seeds = sorted(frame["model_seed"].unique())
    lines = [
        f"# Binned ADBench tables ({args.bins}), {frame['dataset'].nunique()} datasets",
        "",
        f"- command: `python -m benchmarks.binned_categorical --data <adbench> --bins {args.bins}`",
        f"- machine: {machine_description()}; split seed 1; means over datasets, %",
        "",
        *md_header(
            [
                "score",
                "ROC (mean of seeds)",
                "PR",
                *[f"seed {s}" for s in seeds],
                "half A",
                "half B",
            ],
            "lrr" + "r" * len(seeds) + "rr",
        ),
    ]
    for score, part in frame.groupby("score"):
        per_seed = part.groupby("model_seed")[["roc_auc", "pr_auc"]].mean() * 100
        per_half = part.groupby("half")[["roc_auc", "pr_auc"]].mean() * 100
        cells = [f"{r:.2f} / {p:.2f}" for r, p in per_seed.itertuples(index=False)]
        halves = [f"{r:.2f} / {p:.2f}" for r, p in per_half.itertuples(index=False)]
        lines.append(
            md_row(
                score,
                f"{per_seed.roc_auc.mean():.2f}",
                f"{per_seed.pr_auc.mean():.2f}",
                *cells,
                *halves,
            )
        )
    text = "\n".join(lines)
    (args.out / f"binned_{args.bins}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
