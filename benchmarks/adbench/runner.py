"""Every detector on every split of a suite: fit, score and time, one failure never ending the
run; results cached (``benchmarks/cache/``) and written to ``<suite>_per_split.csv``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmarks.adbench.data import Split
from benchmarks.adbench.detectors import VAE_NAME, DetectorSpec, Model
from benchmarks.adbench.suites import Suite
from benchmarks.common import PROJECT_LOGGERS

PER_SPLIT_COLUMNS = [
    "dataset",
    "seed",
    "detector",
    "model_seed",  # vae-anomaly: training.seed; empty for the baselines
    "roc_auc",
    "pr_auc",
    "fit_s",
    "score_s",
    "error",
    "source",
    "timed_on",  # the machine fit_s / score_s were measured on (a cached result's own)
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
            train, test = spec.prepare(split)  # untimed; fitted on the train part only
            model = spec.make(split)
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
    suite: Suite
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
    """Every detector on every split of the suite; writes the per-split CSV after each
    dataset."""
    suite = config.suite
    baseline_cache = ResultCache(config.cache_dir / "baselines.jsonl")
    vae_cache = ResultCache(config.cache_dir / "vae.jsonl")
    rows: list[dict[str, Any]] = []
    total = len(config.datasets) * len(config.seeds) * len(config.specs)
    done = 0
    for dataset in config.datasets:
        try:
            x, y = suite.load(dataset)
        except Exception as exc:
            log.error("%s: cannot load (%s): skipped", dataset, exc)
            continue
        for seed in config.seeds:
            split = suite.split(dataset, x, y, seed)
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
                timed_on = config.meta.get("machine", "")
                if cached is not None:
                    outcome = Outcome(**{k: cached.get(k, v) for k, v in vars(Outcome()).items()})
                    source = "cache"
                    timed_on = cached.get("machine", "") or "unknown"
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
                                "machine": timed_on,
                            }
                        )
                rows.append(
                    {
                        **base,
                        "detector": spec.name,
                        "model_seed": spec.model_seed,
                        **vars(outcome),
                        "source": source,
                        "timed_on": timed_on,
                    }
                )
                status = (
                    f"ERROR {outcome.error}"
                    if outcome.error
                    else f"roc={outcome.roc_auc:.3f} pr={outcome.pr_auc:.3f} "
                    f"fit={outcome.fit_s:7.2f}s score={outcome.score_s:6.3f}s"
                )
                print(
                    f"[{done:4d}/{total}] {dataset:<18} seed={seed} "
                    f"{spec.label or spec.name:<11} {status}"
                    f"{' (cached)' if source == 'cache' else ''}",
                    flush=True,
                )
        write_per_split(rows, config.out_dir, suite.name)
    return per_split_frame(rows)


def per_split_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=PER_SPLIT_COLUMNS)
    frame["model_seed"] = frame["model_seed"].astype("Int64")
    return frame


def write_per_split(rows: list[dict[str, Any]], out_dir: Path, name: str = "adbench") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    per_split_frame(rows).to_csv(out_dir / f"{name}_per_split.csv", index=False)
