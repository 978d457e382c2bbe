"""Detection-quality benchmark on the 33 ADBench classical tabular datasets.

Protocol (ADBench unsupervised setting, Han et al., NeurIPS 2022), for each seed in (1, 2, 3)
and each dataset (``.npz`` with keys ``X``, ``y``; 1 = anomaly):

1. rows < 1,000: resample rows with replacement up to 1,000; rows > 10,000: subsample
   10,000 rows without replacement; both with ``numpy.random.RandomState(seed)``.
2. Stratified 70/30 train/test split: ``train_test_split(stratify=y, random_state=seed)``.
3. ``MinMaxScaler`` fitted on the train part, applied to both parts.
4. Every detector is fitted unsupervised on the (contaminated) train part, labels unseen.
5. The test part is scored (higher = more anomalous): ROC-AUC and PR-AUC
   (``average_precision_score``). Fit and score are timed separately (``time.perf_counter``).

The split is computed once per (dataset, seed) and handed to every detector, so all detectors
see identical data. Per-dataset numbers are the mean over the seeds; the "mean" row is the mean
over the datasets every detector completed (and the total fit / score seconds over them).

Detectors:

- ``vae-anomaly``: this project's :class:`pipeline.detector.AnomalyDetector` with
  ``Settings()`` (its current defaults, environment variables included) plus any
  ``--vae-set section.key=value`` overrides, fitted on a DataFrame with columns ``x0..x{d-1}``.
- ``pyod-vae``: PyOD ``VAE`` with its defaults (``random_state=seed``, ``verbose=0``).
- ``iforest``: PyOD ``IForest`` with its defaults (``random_state=seed``).
- ``ecod``: PyOD ``ECOD`` with its defaults.

Caching (``benchmarks/cache/``): baseline results are appended to ``baselines.jsonl``, keyed by
(dataset, seed, detector, pyod version, detector config, split fingerprint); a rerun only
computes what is missing. ``vae-anomaly`` is always recomputed, but its results are appended to
``vae.jsonl`` keyed by (dataset, seed, effective settings, hash of the ``vae/`` + ``pipeline/``
sources, split fingerprint), and ``--reuse-vae`` takes them from there when all of that matches.
A failing detector does not stop the run: its error is recorded in the results.

Outputs (``--out``, default ``benchmarks/results/``): ``adbench_per_split.csv`` (one row per
dataset x seed x detector), ``adbench_table.csv`` (per dataset, mean over seeds, plus "mean"),
``adbench.md`` (tables, machine, settings and the product targets) and ``adbench.png``.

Rerun from the project root (the data folder is an argument, never hard-coded)::

    .venv/bin/python -m benchmarks.adbench --data ../shared/datasets/adbench
    .venv/bin/python -m benchmarks.adbench --data ../shared/datasets/adbench --quick
    .venv/bin/python -m benchmarks.adbench --data ../shared/datasets/adbench --half A \\
        --vae-set training.beta=0.1 --out /tmp/adbench-beta0.1

Benchmark-only dependencies: ``pip install pyod tqdm`` (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
DEFAULT_OUT = BENCH_DIR / "results"
DEFAULT_CACHE = BENCH_DIR / "cache"

SEEDS = (1, 2, 3)
MIN_ROWS, MAX_ROWS = 1_000, 10_000
TEST_SIZE = 0.3
QUICK = ("4_breastw", "6_cardio", "14_glass", "29_Pima", "38_thyroid", "44_Wilt")

VAE_NAME = "vae-anomaly"
BASELINES = ("pyod-vae", "iforest", "ecod")
DETECTORS = (VAE_NAME, *BASELINES)

# product targets, in points (1 point = 0.01 of ROC-AUC / PR-AUC)
TARGET_ROC_OVER_BEST_PEER = 1.0
TARGET_ROC_OVER_PYOD_VAE = 3.0
TARGET_PR_OVER_BEST_PEER = 2.0
TARGET_FIT_TIME_RATIO = 1 / 5

PROJECT_LOGGERS = ("pipeline", "vae")
PER_SPLIT_COLUMNS = [
    "dataset",
    "seed",
    "detector",
    "roc_auc",
    "pr_auc",
    "fit_s",
    "score_s",
    "error",
    "source",
    "n_rows",
    "n_features",
    "n_train",
    "n_test",
    "test_anomalies",
    "split",
    "info",
    "warnings",
]

log = logging.getLogger("benchmarks.adbench")


# -- data ------------------------------------------------------------------------------------
def short_name(stem: str) -> str:
    """``"22_magic.gamma"`` -> ``"magic.gamma"`` (the ADBench number prefix dropped)."""
    prefix, sep, rest = stem.partition("_")
    return rest if sep and prefix.isdigit() else stem


def list_datasets(data_dir: Path) -> list[str]:
    """Dataset stems in the folder, alphabetical by name (case-insensitive, prefix dropped)."""
    stems = [p.stem for p in data_dir.glob("*.npz")]
    if not stems:
        raise SystemExit(f"no .npz dataset in {data_dir}")
    return sorted(stems, key=lambda s: (short_name(s).casefold(), s))


def half_of(datasets: Sequence[str], half: str) -> list[str]:
    """Two fixed halves of the alphabetical list, alternating: A = 1st, 3rd, ...; B = 2nd, ..."""
    if half == "all":
        return list(datasets)
    start = {"A": 0, "B": 1}[half]
    return list(datasets[start::2])


def select_datasets(
    all_names: Sequence[str], only: Sequence[str] | None, quick: bool, half: str
) -> list[str]:
    """The datasets of this run, in the alphabetical order; ``--only`` accepts either name form."""
    chosen = half_of(all_names, half)
    wanted = list(only) if only else (list(QUICK) if quick else None)
    if wanted is None:
        return chosen
    lookup: dict[str, str] = {}
    for stem in all_names:
        lookup[stem.casefold()] = stem
        lookup[short_name(stem).casefold()] = stem
    unknown = [w for w in wanted if w.casefold() not in lookup]
    if unknown:
        raise SystemExit(f"unknown dataset(s) {unknown}; known: {', '.join(all_names)}")
    keep = {lookup[w.casefold()] for w in wanted}
    return [s for s in chosen if s in keep]


def load_dataset(data_dir: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(data_dir / f"{stem}.npz", allow_pickle=False) as data:
        x = np.asarray(data["X"], dtype=np.float64)
        y = np.asarray(data["y"]).astype(np.int64).ravel()
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"{stem}: X {x.shape} and y {y.shape} do not match")
    return x, y


@dataclass(frozen=True)
class Split:
    """One (dataset, seed) split, min-max scaled with training statistics."""

    dataset: str
    seed: int
    n_rows: int  # rows of the original dataset
    x_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    fingerprint: str  # sha1 of the arrays: a cached result is only reused for the same split

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def make_split(dataset: str, x: np.ndarray, y: np.ndarray, seed: int) -> Split:
    """Steps 1-3 of the ADBench protocol (resample / subsample, stratified split, min-max)."""
    rng = np.random.RandomState(seed)
    n = len(y)
    if n < MIN_ROWS:
        rows = rng.choice(n, MIN_ROWS, replace=True)
    elif n > MAX_ROWS:
        rows = rng.choice(n, MAX_ROWS, replace=False)
    else:
        rows = np.arange(n)
    xs, ys = x[rows], y[rows]
    x_train, x_test, _, y_test = train_test_split(
        xs, ys, test_size=TEST_SIZE, stratify=ys, shuffle=True, random_state=seed
    )
    scaler = MinMaxScaler().fit(x_train)
    x_train = np.ascontiguousarray(scaler.transform(x_train))
    x_test = np.ascontiguousarray(scaler.transform(x_test))
    digest = hashlib.sha1()
    for part in (x_train, x_test, np.ascontiguousarray(y_test)):
        digest.update(part.tobytes())
    return Split(dataset, seed, n, x_train, x_test, np.asarray(y_test), digest.hexdigest()[:16])


# -- detectors -------------------------------------------------------------------------------
class Model(Protocol):
    def fit(self, x: Any) -> object: ...

    def decision_function(self, x: Any) -> np.ndarray: ...


def _identity(x: np.ndarray) -> Any:
    return x


@dataclass(frozen=True)
class DetectorSpec:
    """How to build, feed and describe one detector."""

    name: str
    make: Callable[[int], Model]  # seed -> a fresh, unfitted model
    config: str  # goes into the cache key: change it and cached results are not reused
    prepare: Callable[[np.ndarray], Any] = _identity  # untimed conversion of the input
    info: Callable[[Model], str] = lambda _model: ""


def frame_of(x: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])


class ProjectDetector:
    """``AnomalyDetector`` with the ``fit`` / ``decision_function`` interface of the baselines."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.detector: Any = None

    def fit(self, frame: pd.DataFrame) -> ProjectDetector:
        from pipeline.detector import AnomalyDetector

        self.detector = AnomalyDetector(self.settings).fit(frame)
        return self

    def decision_function(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.detector.score_samples(frame), dtype=np.float64)

    def describe(self) -> str:
        det = self.detector
        if det is None:
            return ""
        parts = []
        history = getattr(det, "history_", None)
        if history is not None:
            parts.append(f"epochs={len(history)}")
        if hasattr(det, "best_epoch_"):
            parts.append(f"best_epoch={det.best_epoch_}")
        config = getattr(det, "vae_config_", None)
        if config is not None:
            parts.append(f"hidden={list(config.hidden_dims)} latent={config.latent_dim}")
        return " ".join(parts)


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["training.beta=0.1", "model.hidden_dims=[64,32]"]`` -> ``{"training": {...}, ...}``.

    Values are read as JSON when they parse (numbers, booleans, lists), else kept as text.
    """
    sections: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            raise SystemExit(f"--vae-set expects section.key=value, got {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        sections.setdefault(section, {})[name] = value
    return sections


def vae_settings(overrides: dict[str, dict[str, Any]]) -> Any:
    """``Settings()`` (read now, so the project's current defaults) with the overrides applied."""
    from pipeline.config import Settings

    settings = Settings()
    return settings.with_overrides(**overrides) if overrides else settings


def relevant_settings(settings: Any) -> dict[str, Any]:
    """The settings sections that can change scores (tracking and output paths left out)."""
    dumped = settings.model_dump(mode="json")
    dumped.get("scoring", {}).pop("output_root", None)
    return {k: dumped[k] for k in ("data", "model", "training", "scoring") if k in dumped}


def source_hash(root: Path = PROJECT_ROOT) -> str:
    """sha1 of the project's model code (``vae/``, ``pipeline/``): part of the vae cache key."""
    digest = hashlib.sha1()
    for package in ("vae", "pipeline"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def short_hash(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def build_specs(names: Sequence[str], settings: Any, code: str) -> list[DetectorSpec]:
    specs: list[DetectorSpec] = []
    for name in names:
        if name == VAE_NAME:
            config = f"settings={short_hash(relevant_settings(settings))} code={code}"
            specs.append(
                DetectorSpec(
                    VAE_NAME,
                    make=lambda _seed: ProjectDetector(settings),
                    config=config,
                    prepare=frame_of,
                    info=lambda m: m.describe() if isinstance(m, ProjectDetector) else "",
                )
            )
        elif name == "pyod-vae":

            def make_vae(seed: int) -> Model:
                from pyod.models.vae import VAE

                return VAE(random_state=seed, verbose=0)

            specs.append(DetectorSpec(name, make_vae, "VAE(random_state=seed, verbose=0)"))
        elif name == "iforest":

            def make_iforest(seed: int) -> Model:
                from pyod.models.iforest import IForest

                return IForest(random_state=seed)

            specs.append(DetectorSpec(name, make_iforest, "IForest(random_state=seed)"))
        elif name == "ecod":

            def make_ecod(_seed: int) -> Model:
                from pyod.models.ecod import ECOD

                return ECOD()

            specs.append(DetectorSpec(name, make_ecod, "ECOD()"))
        else:
            raise SystemExit(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    return specs


# -- running ---------------------------------------------------------------------------------
class _Collect(logging.Handler):
    """Keeps the project's log records (shown in the results, not on the console)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def _summarise(messages: Iterable[str], limit: int = 3, width: int = 200) -> str:
    unique = list(dict.fromkeys(m.replace("\n", " ")[:width] for m in messages))
    more = f" (+{len(unique) - limit} more)" if len(unique) > limit else ""
    return " | ".join(unique[:limit]) + more


@dataclass
class Outcome:
    roc_auc: float = math.nan
    pr_auc: float = math.nan
    fit_s: float = math.nan
    score_s: float = math.nan
    error: str = ""
    info: str = ""
    warnings: str = ""


def run_detector(spec: DetectorSpec, split: Split) -> Outcome:
    """Fit on the train part, score the test part, time both; never raises."""
    outcome = Outcome()
    collector = _Collect()
    loggers = [logging.getLogger(n) for n in PROJECT_LOGGERS]
    for lg in loggers:
        lg.addHandler(collector)
    model: Model | None = None
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train, test = spec.prepare(split.x_train), spec.prepare(split.x_test)
            model = spec.make(split.seed)
            start = time.perf_counter()
            model.fit(train)
            outcome.fit_s = time.perf_counter() - start
            start = time.perf_counter()
            scores = np.asarray(model.decision_function(test), dtype=np.float64).ravel()
            outcome.score_s = time.perf_counter() - start
        if scores.shape != split.y_test.shape:
            raise ValueError(f"{scores.shape[0]} scores for {split.y_test.shape[0]} test rows")
        bad = int((~np.isfinite(scores)).sum())
        if bad:
            raise ValueError(f"{bad} non-finite score(s) out of {len(scores)}")
        outcome.roc_auc = float(roc_auc_score(split.y_test, scores))
        outcome.pr_auc = float(average_precision_score(split.y_test, scores))
    except Exception as exc:  # record and go on: one failure must not end the run
        outcome.error = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]
    finally:
        for lg in loggers:
            lg.removeHandler(collector)
    if model is not None:
        try:
            outcome.info = spec.info(model)
        except Exception:  # the description is a nicety
            outcome.info = ""
    outcome.warnings = _summarise(
        [*collector.messages, *(f"{w.category.__name__}: {w.message}" for w in caught)]
    )
    return outcome


class ResultCache:
    """Append-only JSON-lines cache of per-split results (the last line of a key wins)."""

    KEY = ("dataset", "seed", "detector", "version", "config", "split")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[tuple[str, ...], dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    self.entries[self.key(record)] = record
                except (json.JSONDecodeError, KeyError):
                    log.warning("%s: unreadable line skipped", path)

    @classmethod
    def key(cls, record: dict[str, Any]) -> tuple[str, ...]:
        return tuple(str(record[k]) for k in cls.KEY)

    def get(self, record: dict[str, Any]) -> dict[str, Any] | None:
        return self.entries.get(self.key(record))

    def put(self, record: dict[str, Any]) -> None:
        self.entries[self.key(record)] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")


@dataclass
class RunConfig:
    data_dir: Path
    datasets: list[str]
    seeds: tuple[int, ...]
    specs: list[DetectorSpec]
    out_dir: Path
    cache_dir: Path
    pyod_version: str
    reuse_vae: bool
    refresh_baselines: bool
    meta: dict[str, Any] = field(default_factory=dict)


def run(config: RunConfig) -> pd.DataFrame:
    """Every detector on every split; writes the per-split CSV after each dataset."""
    baseline_cache = ResultCache(config.cache_dir / "baselines.jsonl")
    vae_cache = ResultCache(config.cache_dir / "vae.jsonl")
    rows: list[dict[str, Any]] = []
    total = len(config.datasets) * len(config.seeds) * len(config.specs)
    done = 0
    for dataset in config.datasets:
        try:
            x, y = load_dataset(config.data_dir, dataset)
        except Exception as exc:
            log.error("%s: cannot load (%s): skipped", dataset, exc)
            continue
        for seed in config.seeds:
            split = make_split(dataset, x, y, seed)
            base = {
                "dataset": dataset,
                "seed": seed,
                "n_rows": split.n_rows,
                "n_features": split.n_features,
                "n_train": len(split.x_train),
                "n_test": len(split.x_test),
                "test_anomalies": int(split.y_test.sum()),
                "split": split.fingerprint,
            }
            for spec in config.specs:
                done += 1
                is_vae = spec.name == VAE_NAME
                cache = vae_cache if is_vae else baseline_cache
                version = config.meta.get("code_hash", "") if is_vae else config.pyod_version
                key = {
                    "dataset": dataset,
                    "seed": seed,
                    "detector": spec.name,
                    "version": version,
                    "config": spec.config,
                    "split": split.fingerprint,
                }
                use_cache = config.reuse_vae if is_vae else not config.refresh_baselines
                cached = cache.get(key) if use_cache else None
                if cached is not None:
                    outcome = Outcome(**{k: cached.get(k, v) for k, v in vars(Outcome()).items()})
                    source = "cache"
                else:
                    outcome = run_detector(spec, split)
                    source = "computed"
                    if not outcome.error:
                        cache.put(
                            {
                                **key,
                                **vars(outcome),
                                "pyod_version": config.pyod_version,
                                "computed_at": dt.datetime.now().isoformat(timespec="seconds"),
                                "machine": config.meta.get("machine", ""),
                            }
                        )
                rows.append({**base, "detector": spec.name, **vars(outcome), "source": source})
                status = (
                    f"ERROR {outcome.error}"
                    if outcome.error
                    else f"roc={outcome.roc_auc:.3f} pr={outcome.pr_auc:.3f} "
                    f"fit={outcome.fit_s:7.2f}s score={outcome.score_s:6.3f}s"
                )
                print(
                    f"[{done:4d}/{total}] {dataset:<18} seed={seed} {spec.name:<11} {status}"
                    f"{' (cached)' if source == 'cache' else ''}",
                    flush=True,
                )
        write_per_split(rows, config.out_dir)
    return per_split_frame(rows)


def per_split_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=PER_SPLIT_COLUMNS)


def write_per_split(rows: list[dict[str, Any]], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    per_split_frame(rows).to_csv(out_dir / "adbench_per_split.csv", index=False)


# -- summaries -------------------------------------------------------------------------------
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


@dataclass
class Target:
    text: str
    value: float
    needed: float
    met: bool | None  # None: not measurable in this run
    unit: str = "points"


def evaluate_targets(summary: Summary) -> list[Target]:
    """The product's targets, from the "mean" row (in points: 1 point = 0.01)."""
    mean = mean_values(summary)
    dets = summary.detectors
    peers = [d for d in BASELINES if d in dets]
    targets: list[Target] = []

    def points(det: str, metric: str) -> float:
        return 100.0 * float(mean[f"{det}_{metric}"])

    def check(text: str, value: float, needed: float, ok: bool | None = None) -> Target:
        measurable = math.isfinite(value) and math.isfinite(needed)
        met = (value >= needed if ok is None else ok) if measurable else None
        return Target(text, value, needed, met)

    if VAE_NAME not in dets:
        return targets
    vae_roc, vae_pr = points(VAE_NAME, "roc_auc"), points(VAE_NAME, "pr_auc")
    if peers:
        best_roc = max(peers, key=lambda d: points(d, "roc_auc"))
        best_pr = max(peers, key=lambda d: points(d, "pr_auc"))
        targets.append(
            check(
                f"ROC-AUC(vae-anomaly) >= best peer ({best_roc}) + {TARGET_ROC_OVER_BEST_PEER:g}",
                vae_roc,
                points(best_roc, "roc_auc") + TARGET_ROC_OVER_BEST_PEER,
            )
        )
    if "pyod-vae" in dets:
        targets.append(
            check(
                f"ROC-AUC(vae-anomaly) >= pyod-vae + {TARGET_ROC_OVER_PYOD_VAE:g}",
                vae_roc,
                points("pyod-vae", "roc_auc") + TARGET_ROC_OVER_PYOD_VAE,
            )
        )
    if peers:
        targets.append(
            check(
                f"PR-AUC(vae-anomaly) >= best peer ({best_pr}) + {TARGET_PR_OVER_BEST_PEER:g}",
                vae_pr,
                points(best_pr, "pr_auc") + TARGET_PR_OVER_BEST_PEER,
            )
        )
    if "pyod-vae" in dets:
        vae_fit = float(mean[f"{VAE_NAME}_fit_s"])
        limit = float(mean["pyod-vae_fit_s"]) * TARGET_FIT_TIME_RATIO
        target = check(
            f"total fit time(vae-anomaly) <= 1/{round(1 / TARGET_FIT_TIME_RATIO)} of pyod-vae's",
            vae_fit,
            limit,
            vae_fit <= limit,
        )
        target.unit = "s"
        targets.append(target)
    return targets


def _pct(value: float) -> str:
    return "error" if not math.isfinite(value) else f"{100 * value:.1f}"


def _sec(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


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
        "| detector | ROC-AUC % | PR-AUC % | fit s (total) | score s (total) |",
        "|---|---:|---:|---:|---:|",
    ]
    mean = mean_values(summary)
    for det in dets:
        lines.append(
            f"| {det} | {_pct(mean[f'{det}_roc_auc'])} | {_pct(mean[f'{det}_pr_auc'])} | "
            f"{_sec(mean[f'{det}_fit_s'])} | {_sec(mean[f'{det}_score_s'])} |"
        )
    if summary.incomplete:
        lines += [
            "",
            "Left out of the mean (a detector failed on some seed): "
            + "; ".join(f"{det}: {', '.join(ds)}" for det, ds in summary.incomplete.items()),
        ]
    if targets:
        lines += ["", "## Targets", "", "| target | value | needed | met |", "|---|---:|---:|---|"]
        for tg in targets:
            fmt = (lambda v: f"{v:.1f} s") if tg.unit == "s" else (lambda v: f"{v:.1f}")
            met = "n/a" if tg.met is None else ("yes" if tg.met else "**no**")
            lines.append(f"| {tg.text} | {fmt(tg.value)} | {fmt(tg.needed)} | {met} |")
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
        "| dataset | rows | dims | anomaly % | "
        + " | ".join(f"{d} ROC | {d} PR" for d in dets)
        + " |",
        "|---|---:|---:|---:|" + "---:|---:|" * len(dets),
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
            f"| {dataset} | {int(row['n_rows'])} | {int(row['n_features'])} | "
            f"{rate:.1f} | " + " | ".join(cells) + " |"
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


# -- entry point -----------------------------------------------------------------------------
def machine_description() -> str:
    cpu = platform.processor()
    if not cpu or cpu in {"x86_64", "aarch64", "arm64", "i386"}:
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.lower().startswith(("model name", "hardware")):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu or platform.machine()}, {os.cpu_count()} CPU(s), {system}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.adbench",
        description="ADBench unsupervised detection-quality benchmark of vae-anomaly vs PyOD.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder with the ADBench .npz files (e.g. ../shared/datasets/adbench)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--quick",
        action="store_true",
        help=f"only a few small / medium datasets: {', '.join(QUICK)}",
    )
    which.add_argument(
        "--only", nargs="+", metavar="NAME", help="only these datasets ('6_cardio' or 'cardio')"
    )
    parser.add_argument(
        "--half",
        choices=("A", "B", "all"),
        default="all",
        help="alphabetical list, alternating: A = 1st, 3rd, ...; B = 2nd, 4th, ...",
    )
    parser.add_argument(
        "--detectors",
        nargs="+",
        choices=DETECTORS,
        default=list(DETECTORS),
        metavar="NAME",
        help=f"detectors to run (default all: {', '.join(DETECTORS)})",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=list(SEEDS),
        help="seeds (the ADBench protocol uses 1 2 3)",
    )
    parser.add_argument(
        "--vae-set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a vae-anomaly setting, e.g. training.max_epochs=50 "
        "(repeatable; values parsed as JSON when possible)",
    )
    parser.add_argument(
        "--reuse-vae",
        action="store_true",
        help="reuse cached vae-anomaly results (same settings, code and split)",
    )
    parser.add_argument(
        "--refresh-baselines", action="store_true", help="recompute the baselines even when cached"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="results folder (default benchmarks/results)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help="cache folder (default benchmarks/cache)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's own choice)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    for name in PROJECT_LOGGERS:  # the project's log records go into the results, not the console
        logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger(name).propagate = False
    data_dir = args.data.expanduser().resolve()
    if not data_dir.is_dir():
        raise SystemExit(f"--data {args.data}: not a folder")

    import sklearn
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    detectors = list(dict.fromkeys(args.detectors))
    overrides = parse_overrides(args.vae_set)
    settings = vae_settings(overrides) if VAE_NAME in detectors else None
    code = source_hash()
    pyod_version = _version("pyod")
    datasets = select_datasets(list_datasets(data_dir), args.only, args.quick, args.half)
    if not datasets:
        raise SystemExit("no dataset selected")
    meta: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_description(),
        "python": platform.python_version(),
        "torch": f"{torch.__version__} ({torch.get_num_threads()} threads)",
        "pyod": pyod_version,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "command": " ".join(["python -m benchmarks.adbench", *sys.argv[1:]])
        if argv is None
        else " ".join(["python -m benchmarks.adbench", *argv]),
        "half": args.half,
        "overrides": overrides,
        "settings": relevant_settings(settings) if settings is not None else {},
        "code_hash": code,
    }
    config = RunConfig(
        data_dir=data_dir,
        datasets=datasets,
        seeds=tuple(args.seeds),
        specs=build_specs(detectors, settings, code),
        out_dir=args.out,
        cache_dir=args.cache_dir,
        pyod_version=pyod_version,
        reuse_vae=args.reuse_vae,
        refresh_baselines=args.refresh_baselines,
        meta=meta,
    )
    log.info(
        "%d datasets x %d seeds x %d detectors; results -> %s",
        len(datasets),
        len(config.seeds),
        len(detectors),
        args.out,
    )
    started = time.perf_counter()
    per_split = run(config)
    if per_split.empty:
        raise SystemExit("no result")
    summary = summarise(per_split, detectors)
    targets = evaluate_targets(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    per_split.to_csv(args.out / "adbench_per_split.csv", index=False)
    summary.table.to_csv(args.out / "adbench_table.csv", float_format="%.6g")
    report = markdown_report(per_split, summary, targets, meta)
    (args.out / "adbench.md").write_text(report)
    plot(summary, args.out / "adbench.png")
    print()
    print(report.split("## Per dataset")[0].rstrip())
    log.info("done in %.0f s; results in %s", time.perf_counter() - started, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
