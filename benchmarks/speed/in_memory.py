"""The ``memory`` part: training throughput and in-memory scoring of vae-anomaly and PyOD's
VAE, fitted on the same sample and scoring the same table."""

from __future__ import annotations

import cProfile
import logging
import math
import time
from typing import Any

import numpy as np

from benchmarks.common import default_settings, frame_of
from benchmarks.speed.data import INMEM_FEATURES, SEED, human, inmem_array
from benchmarks.speed.measurements import Measurement, Results
from benchmarks.speed.report import TARGET_INMEM_ROWS_S, TARGET_TRAIN_VS_PYOD

PYOD_FALLBACK_ROWS = 200_000
PYOD_SCORE_BUDGET_S = 120.0  # PyOD scores the whole in-memory table if one call fits in this

log = logging.getLogger("benchmarks.speed")


class PyodUnavailableError(RuntimeError):
    pass


def make_pyod_vae() -> Any:
    try:
        from pyod.models.vae import VAE
    except ImportError as exc:
        raise PyodUnavailableError(f"pyod is not installed ({exc}): pip install pyod tqdm") from exc
    return VAE(random_state=SEED, verbose=0)


def fit_pyod(x: np.ndarray) -> tuple[Any, float, float]:
    """PyOD's VAE (defaults) fitted on ``x``: (model, fit seconds, training-loop seconds)."""
    model = make_pyod_vae()
    loop: dict[str, float] = {}
    original = model.train

    def timed_train(loader: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(loader)
        finally:
            loop["s"] = time.perf_counter() - t0

    model.train = timed_train  # an instance attribute: times just the epochs
    started = time.perf_counter()
    model.fit(x)
    return model, time.perf_counter() - started, loop.get("s", math.nan)


def bench_in_memory(
    n_rows: int, n_train: int, repeats: int, results: Results, profile: str
) -> dict[str, cProfile.Profile]:
    """Training throughput and in-memory scoring of the project and PyOD on the same arrays."""
    from pipeline.detector import AnomalyDetector

    x = inmem_array(n_rows)
    rng = np.random.default_rng([SEED, 4])
    x_train = np.ascontiguousarray(x[np.sort(rng.choice(n_rows, n_train, replace=False))])
    frame, frame_train = frame_of(x), frame_of(x_train)
    data = f"gaussian {human(n_rows)} x {INMEM_FEATURES}"
    train_data = f"sample of {human(n_train)} x {INMEM_FEATURES}"
    profiles: dict[str, cProfile.Profile] = {}

    detector = train_project(frame_train, n_train, train_data, repeats, results)
    pyod_model = train_pyod(x_train, n_train, train_data, repeats, results)
    m = score_project(detector, frame, n_rows, data, repeats, results)
    if profile == "always" or (profile == "auto" and m.rows_per_s < TARGET_INMEM_ROWS_S):
        profiler = cProfile.Profile()
        profiler.runcall(detector.score_samples, frame)
        profiles["in-memory scoring, vae-anomaly `score_samples`"] = profiler
    if pyod_model is not None:
        score_pyod(pyod_model, x, data, repeats, results)

    ratio = results.ratio("train:project", "train:pyod")
    if profile == "always" or (profile == "auto" and ratio < TARGET_TRAIN_VS_PYOD):
        profiler = cProfile.Profile()
        profiler.runcall(AnomalyDetector(default_settings()).fit, frame_train)
        profiles["training, vae-anomaly `fit` on the in-memory sample"] = profiler
    return profiles


# -- training --------------------------------------------------------------------------------
def train_project(
    frame_train: Any, n_train: int, train_data: str, repeats: int, results: Results
) -> Any:
    """``repeats`` fits of the default detector; the last one."""
    from pipeline.detector import AnomalyDetector

    detector: Any = None
    for r in range(repeats):
        started = time.perf_counter()
        detector = AnomalyDetector(default_settings()).fit(frame_train)
        fit_s = time.perf_counter() - started
        epochs, rows = len(detector.history_), detector.n_train_rows_
        loop = results.get(
            "train:project",
            "training loop, vae-anomaly (`fit`, defaults)",
            train_data,
            n_train,
            work_text="train rows x epochs run",
        )
        loop.add(detector.train_seconds_, rows * epochs)
        loop.extra.update(epochs=epochs, train_rows=rows, best_epoch=detector.best_epoch_)
        loop.extra["rows_text"] = f"{rows:,} x {epochs} epochs"
        whole = results.get(
            "fit:project",
            "whole `fit` call, vae-anomaly",
            train_data,
            n_train,
            "train rows x epochs",
        )
        whole.add(fit_s, rows * epochs)
        whole.extra["rows_text"] = loop.extra["rows_text"]
        log.info(
            "train vae-anomaly %d/%d: %.1f s (loop %.1f s, %d epochs of %d rows)",
            r + 1,
            repeats,
            fit_s,
            detector.train_seconds_,
            epochs,
            rows,
        )
    return detector


def train_pyod(
    x_train: np.ndarray, n_train: int, train_data: str, repeats: int, results: Results
) -> Any:
    """``repeats`` fits of PyOD's VAE; the last one, or None without PyOD (noted)."""
    pyod_model: Any = None
    try:
        for r in range(repeats):
            pyod_model, fit_s, loop_s = fit_pyod(x_train)
            epochs, batch = int(pyod_model.epoch_num), int(pyod_model.batch_size)
            rows = (n_train // batch) * batch  # drop_last=True
            loop = results.get(
                "train:pyod",
                "training loop, PyOD VAE (defaults)",
                train_data,
                n_train,
                work_text="rows x epochs",
            )
            loop.add(loop_s, rows * epochs)
            loop.extra.update(epochs=epochs, batch_size=batch)
            loop.extra["rows_text"] = f"{rows:,} x {epochs} epochs"
            whole = results.get(
                "fit:pyod", "whole `fit` call, PyOD VAE", train_data, n_train, "rows x epochs"
            )
            whole.add(fit_s, rows * epochs)
            whole.extra["rows_text"] = loop.extra["rows_text"]
            log.info(
                "train pyod-vae %d/%d: %.1f s (loop %.1f s, %d epochs)",
                r + 1,
                repeats,
                fit_s,
                loop_s,
                epochs,
            )
    except PyodUnavailableError as exc:
        results.note(f"PyOD comparisons skipped: {exc}")
        pyod_model = None
    return pyod_model


# -- scoring ---------------------------------------------------------------------------------
def score_project(
    detector: Any, frame: Any, n_rows: int, data: str, repeats: int, results: Results
) -> Measurement:
    """The public API (``score_samples`` from a DataFrame), then the raw path as a breakdown."""
    detector.score_samples(frame.iloc[:10_000])  # warm-up, untimed
    m = results.get(
        "score:project", "in-memory `score_samples` (DataFrame), vae-anomaly", data, n_rows
    )
    for _ in range(repeats):
        started = time.perf_counter()
        scores = detector.score_samples(frame)
        m.add(time.perf_counter() - started)
        if len(scores) != n_rows or not np.isfinite(scores).all():
            raise RuntimeError("vae-anomaly: wrong number of scores or non-finite scores")
    log.info("score vae-anomaly: %.2f s, %s rows/s", m.median_s, f"{m.rows_per_s:,.0f}")
    try:  # the raw model path, informative only: learned attributes may change
        from vae import score_arrays

        pre = results.get("score:raw-pre", "  of which `preprocessor_.transform`", data, n_rows)
        raw = results.get("score:raw-vae", "  of which `vae.score_arrays`", data, n_rows)
        for _ in range(repeats):
            started = time.perf_counter()
            features = detector.preprocessor_.transform(frame)
            pre.add(time.perf_counter() - started)
            started = time.perf_counter()
            score_arrays(detector.model_, features, window=detector.settings.scoring.batch_rows)
            raw.add(time.perf_counter() - started)
    except Exception as exc:  # the headline is the public API; this is a breakdown
        results.note(f"raw model path not measured: {type(exc).__name__}: {exc}")
    return m


def score_pyod(pyod_model: Any, x: np.ndarray, data: str, repeats: int, results: Results) -> None:
    """``decision_function`` on the whole table, or on its head when that would take long."""
    n_rows = len(x)
    n_pyod = min(n_rows, PYOD_FALLBACK_ROWS)
    started = time.perf_counter()
    pyod_model.decision_function(x[:n_pyod])  # warm-up and estimate, untimed
    estimate = (time.perf_counter() - started) * n_rows / n_pyod
    if n_rows > n_pyod and estimate <= PYOD_SCORE_BUDGET_S:
        n_pyod = n_rows
    elif n_rows > n_pyod:
        results.note(
            f"PyOD decision_function timed on the first {n_pyod:,} rows of the in-memory "
            f"table, not {n_rows:,}: the whole table would take about {estimate:.0f} s a call"
        )
    pm = results.get("score:pyod", "in-memory `decision_function` (array), PyOD VAE", data, n_pyod)
    if n_pyod < n_rows:
        pm.data = f"first {human(n_pyod)} rows of {data}"
    for _ in range(repeats):
        started = time.perf_counter()
        pyod_scores = pyod_model.decision_function(x[:n_pyod])
        pm.add(time.perf_counter() - started)
        if len(pyod_scores) != n_pyod:
            raise RuntimeError("pyod: wrong number of scores")
    log.info("score pyod-vae: %.2f s, %s rows/s", pm.median_s, f"{pm.rows_per_s:,.0f}")
