"""Speed benchmark: file-to-file scoring vs the I/O limit, in-memory scoring and training vs PyOD.

Everything is measured side by side in one run, on the same files and arrays:

1. **Data** (cached in ``--work``, default ``/tmp/vae-anomaly-speed``; regenerated only when
   missing, never written into the repository): synthetic tables of ``--rows`` rows (default 1M
   and 10M) with ``record_id`` (text id), ``num_00..num_19`` (float64, correlated gaussians and
   lognormals, 2 % missing per column) and ``cat_0..cat_4`` (text, 3-30 levels, tied to the same
   latent factors), 0.5 % planted anomalies; generated chunk by chunk (250k rows, one Parquet row
   group each), so the 10M table never holds more than one chunk in memory. Chunks are seeded by
   their first row, so a smaller table is the head of a larger one. A CSV of the smallest table,
   and ADBench's ``11_donors`` (``--data``; 619,326 rows x 10 features) as Parquet
   (``record_id`` + ``f00..f09``).
2. **Models**: one ``AnomalyDetector(Settings())`` (the project's defaults) per table kind,
   trained on a random sample of ``--train-rows`` rows (default 50,000) of the smallest synthetic
   table / of donors, as a user would, saved with ``save`` and loaded with ``load``.
3. **File-to-file** (per file, ``--repeats`` times, each in a fresh subprocess that reports its
   peak RSS, ``VmHWM``; ``ru_maxrss`` from ``os.wait4`` is only kept as a cross-check, since Linux
   carries the parent's peak over subprocess' vfork + exec into it):
   ``pipeline.batch.score_file(detector, ref, input, output_root, run_date, force=True)`` timed
   end to end with the detector already loaded (load time reported separately); then the
   **I/O limit** on the same file: pyarrow alone reads the input batch by batch and writes (and
   fsyncs, as the project does) a Parquet file with the same rows and the same schema as the
   project's ``scored.parquet`` (read from the project's output), filled with dummy values.
   The page cache is warmed with one read of the file first, so both start warm.
4. **In-memory scoring**: a separate table of ``--inmem-rows`` (default 1M) rows x 10 correlated
   gaussian features, no missing values. The project's detector and PyOD's ``VAE()`` (defaults,
   ``verbose=0``) are fitted on the same ``--train-rows`` sample of it; then
   ``detector.score_samples(frame)`` (the public API, from a DataFrame) and
   ``VAE.decision_function(X)`` (the same values as a float64 array) are timed. PyOD is timed on
   200k rows when the full table would take it over ``PYOD_SCORE_BUDGET_S`` per call (reported).
   The project's raw path (``preprocessor_.transform`` + ``vae.score_arrays``) is shown too.
5. **Training throughput**: rows per second per epoch of the training loop, from the fits of 4:
   project ``n_train_rows_ * len(history_) / train_seconds_`` (its loop, validation included),
   PyOD ``rows * epoch_num / seconds`` of its ``train`` loop (timed by wrapping the method);
   the whole ``fit`` call is reported as well.
6. **Peak RSS** of the project's file-to-file scoring of the smallest and the largest synthetic
   Parquet tables, and the ratio.

Medians over ``--repeats``; the ratios are printed against the product targets with PASS / MISS.
For a target that is missed (or with ``--profile``), cProfile's top entries of the part
concerned go to ``<out>/speed_profile.txt``. Results: ``<out>/speed.md`` and ``<out>/speed.json``.

Run from the project root::

    .venv/bin/python -m benchmarks.speed --data ../shared/datasets/adbench
    .venv/bin/python -m benchmarks.speed --data ../shared/datasets/adbench --quick

Benchmark-only dependencies: ``pip install pyod tqdm`` (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import functools
import importlib.metadata
import io
import json
import logging
import math
import os
import platform
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
DEFAULT_OUT = BENCH_DIR / "results"
DEFAULT_WORK = Path(tempfile.gettempdir()) / "vae-anomaly-speed"

GENERATOR_VERSION = 1  # part of the cached files' names: bump when the generator changes
SEED = 20240601
CHUNK_ROWS = 250_000  # generation chunk = Parquet row group of the inputs
IO_ROW_GROUP_ROWS = 262_144  # row groups written by the I/O limit
N_NUMERIC = 20
N_LOGNORMAL = 6  # the last numeric columns are lognormal
CAT_LEVELS = (3, 6, 12, 20, 30)
N_LATENT = 4
MISSING_RATE = 0.02
ANOMALY_RATE = 0.005
NUMERIC_COLUMNS = [f"num_{j:02d}" for j in range(N_NUMERIC)]
CAT_COLUMNS = [f"cat_{k}" for k in range(len(CAT_LEVELS))]
ID_COLUMN = "record_id"

DEFAULT_ROWS = (1_000_000, 10_000_000)
QUICK_ROWS = (100_000, 300_000)
TRAIN_ROWS, QUICK_TRAIN_ROWS = 50_000, 5_000
INMEM_ROWS, QUICK_INMEM_ROWS = 1_000_000, 100_000
INMEM_FEATURES = 10
QUICK_DONORS_ROWS = 100_000
PYOD_FALLBACK_ROWS = 200_000
PYOD_SCORE_BUDGET_S = 120.0  # PyOD scores the whole in-memory table if one call fits in this

# product targets (2 CPU cores, default settings, medians of the repeats)
TARGET_F2F_VS_IO = 0.5  # file-to-file Parquet throughput / I/O-limit throughput
TARGET_INMEM_ROWS_S = 1_000_000.0
TARGET_INMEM_VS_PYOD = 10.0
TARGET_TRAIN_VS_PYOD = 5.0
TARGET_RSS_RATIO = 1.2  # peak RSS scoring the largest table / scoring the smallest

MODEL_NAME, MODEL_VERSION = "vae-anomaly", "1"
# columns of the project's scored.parquet, used until a project output shows the real schema
DEFAULT_SCORE_FIELDS: list[tuple[str, pa.DataType]] = [
    ("anomaly_score", pa.float64()),
    ("recon_error", pa.float64()),
    ("kl", pa.float64()),
    ("score_percentile", pa.float64()),
    ("is_anomaly", pa.int8()),
    ("reasons", pa.string()),
    ("model_name", pa.string()),
    ("model_version", pa.string()),
    ("threshold", pa.float64()),
]
DUMMY_CONSTANTS: dict[str, Any] = {
    "reasons": "",
    "model_name": MODEL_NAME,
    "model_version": MODEL_VERSION,
    "threshold": 1.0,
}
PROJECT_LOGGERS = ("pipeline", "vae")

log = logging.getLogger("benchmarks.speed")


# -- small helpers ---------------------------------------------------------------------------
def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _human(n: float) -> str:
    """1_000_000 -> '1M', 619_326 -> '619k', 300_000 -> '300k'."""
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1_000_000:g}M"
    if n >= 1_000:
        return f"{round(n / 1_000):g}k"
    return str(int(n))


def _proc_status(key: str) -> float:
    """A ``/proc/self/status`` memory line (``VmHWM``, ``VmRSS``) in MiB; NaN if unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return math.nan


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def warm_page_cache(path: Path) -> float:
    """Read the file once (so every timed reader finds it in the page cache); seconds taken."""
    started = time.perf_counter()
    with path.open("rb") as handle:
        while handle.read(16 << 20):
            pass
    return time.perf_counter() - started


# -- data ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticParams:
    """The fixed parts of the synthetic table (same for every chunk)."""

    loadings: np.ndarray  # (N_LATENT, N_NUMERIC)
    noise: float
    location: np.ndarray  # (N_NUMERIC,)
    scale: np.ndarray  # (N_NUMERIC,)
    cat_edges: tuple[np.ndarray, ...]  # per categorical: N(0, 1) quantiles between its levels
    cat_levels: tuple[pa.Array, ...]


@functools.cache
def synthetic_params(seed: int = SEED) -> SyntheticParams:
    from statistics import NormalDist

    rng = np.random.default_rng([seed, 0])
    loadings = rng.normal(0.0, 1.0, size=(N_LATENT, N_NUMERIC))
    loadings /= np.linalg.norm(loadings, axis=0, keepdims=True)  # unit variance from z
    edges = tuple(
        np.array([NormalDist().inv_cdf(i / levels) for i in range(1, levels)])
        for levels in CAT_LEVELS
    )
    names = tuple(
        pa.array([f"c{k}_{i:02d}" for i in range(levels)], type=pa.string())
        for k, levels in enumerate(CAT_LEVELS)
    )
    return SyntheticParams(
        loadings=loadings,
        noise=0.5,
        location=rng.uniform(-50.0, 200.0, N_NUMERIC),
        scale=rng.uniform(0.5, 30.0, N_NUMERIC),
        cat_edges=edges,
        cat_levels=names,
    )


def synthetic_schema() -> pa.Schema:
    return pa.schema(
        [(ID_COLUMN, pa.string())]
        + [(c, pa.float64()) for c in NUMERIC_COLUMNS]
        + [(c, pa.string()) for c in CAT_COLUMNS]
    )


def synthetic_chunk(start: int, n: int, seed: int = SEED) -> pa.Table:
    """Rows ``start .. start + n - 1`` of the synthetic table (seeded by ``start``)."""
    p = synthetic_params(seed)
    rng = np.random.default_rng([seed, 1, start])
    z = rng.standard_normal((n, N_LATENT))
    base = (z @ p.loadings + p.noise * rng.standard_normal((n, N_NUMERIC))) / math.sqrt(
        1 + p.noise**2
    )
    anomalous = np.flatnonzero(rng.random(n) < ANOMALY_RATE)
    m = len(anomalous)
    if m:  # 3 columns of each anomaly shifted by 5-9 standard deviations, either way
        columns = rng.integers(0, N_NUMERIC, size=(m, 3))
        shifts = rng.choice([-1.0, 1.0], size=(m, 3)) * rng.uniform(5.0, 9.0, size=(m, 3))
        np.add.at(base, (np.repeat(anomalous, 3), columns.ravel()), shifts.ravel())
    gauss = N_NUMERIC - N_LOGNORMAL
    values = np.empty_like(base)
    values[:, :gauss] = p.location[:gauss] + p.scale[:gauss] * base[:, :gauss]
    values[:, gauss:] = p.scale[gauss:] * np.exp(0.5 * base[:, gauss:])
    missing = rng.random((n, N_NUMERIC)) < MISSING_RATE
    arrays: list[pa.Array] = [
        pa.array([f"R{i:09d}" for i in range(start, start + n)], type=pa.string())
    ]
    arrays += [
        pa.array(values[:, j], type=pa.float64(), mask=missing[:, j]) for j in range(N_NUMERIC)
    ]
    for k, levels in enumerate(CAT_LEVELS):
        driver = 0.8 * z[:, k % N_LATENT] + 0.6 * rng.standard_normal(n)
        index = np.searchsorted(p.cat_edges[k], driver)
        if m:  # the anomalies' categories are drawn at random, unrelated to their values
            index[anomalous] = rng.integers(0, levels, size=m)
        arrays.append(p.cat_levels[k].take(pa.array(index.astype(np.int32))))
    return pa.Table.from_arrays(arrays, schema=synthetic_schema())


def synthetic_paths(work: Path, rows: int) -> tuple[Path, Path]:
    stem = f"synthetic-v{GENERATOR_VERSION}-{rows}"
    return work / "data" / f"{stem}.parquet", work / "data" / f"{stem}.csv"


def ensure_synthetic(work: Path, rows: int, csv: bool) -> tuple[Path, Path | None, float]:
    """The Parquet (and CSV) files of a ``rows``-row table, generated if missing; (paths, s)."""
    parquet_path, csv_path = synthetic_paths(work, rows)
    wanted = [parquet_path] + ([csv_path] if csv else [])
    missing = [p for p in wanted if not p.exists()]
    if not missing:
        return parquet_path, csv_path if csv else None, 0.0
    log.info("generating %s rows -> %s", f"{rows:,}", ", ".join(p.name for p in missing))
    started = time.perf_counter()
    parquet_path.parent.mkdir(parents=True, exist_ok=True)
    schema = synthetic_schema()
    temps = {p: p.with_name(f".{p.name}.partial") for p in missing}
    pq_writer = pq.ParquetWriter(temps[parquet_path], schema) if parquet_path in temps else None
    csv_writer = pacsv.CSVWriter(temps[csv_path], schema) if csv_path in temps else None
    try:
        for start in range(0, rows, CHUNK_ROWS):
            chunk = synthetic_chunk(start, min(CHUNK_ROWS, rows - start))
            if pq_writer is not None:
                pq_writer.write_table(chunk, row_group_size=CHUNK_ROWS)
            if csv_writer is not None:
                csv_writer.write_table(chunk)
    finally:
        for writer in (pq_writer, csv_writer):
            if writer is not None:
                writer.close()
    for final, temp in temps.items():
        temp.replace(final)
    return parquet_path, csv_path if csv else None, time.perf_counter() - started


def ensure_donors(work: Path, data_dir: Path, rows: int | None) -> tuple[Path, int, float]:
    """ADBench 11_donors' X as Parquet (``record_id`` + ``f00..``); (path, rows, seconds)."""
    source = data_dir / "11_donors.npz"
    with np.load(source, allow_pickle=False) as data:
        x = np.asarray(data["X"], dtype=np.float64)
    if rows is not None:
        x = x[:rows]
    path = work / "data" / f"donors-{len(x)}.parquet"
    if path.exists():
        return path, len(x), 0.0
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f"f{j:02d}" for j in range(x.shape[1])]
    schema = pa.schema([(ID_COLUMN, pa.string())] + [(c, pa.float64()) for c in names])
    temp = path.with_name(f".{path.name}.partial")
    with pq.ParquetWriter(temp, schema) as writer:
        for start in range(0, len(x), CHUNK_ROWS):
            part = x[start : start + CHUNK_ROWS]
            ids = pa.array([f"D{i:09d}" for i in range(start, start + len(part))], pa.string())
            columns = [pa.array(np.ascontiguousarray(part[:, j])) for j in range(x.shape[1])]
            writer.write_table(pa.Table.from_arrays([ids, *columns], schema=schema))
    temp.replace(path)
    return path, len(x), time.perf_counter() - started


def sample_frame(path: Path, n: int, seed: int = SEED) -> Any:
    """A random sample of ``n`` rows of a Parquet table as a DataFrame (rows in file order)."""
    table = pq.read_table(path)
    rng = np.random.default_rng([seed, 2])
    take = np.sort(rng.choice(table.num_rows, size=min(n, table.num_rows), replace=False))
    return table.take(pa.array(take)).to_pandas()


def inmem_array(n: int, seed: int = SEED) -> np.ndarray:
    """``n`` x 10 correlated gaussian features, 0.5 % shifted anomalies, no missing values."""
    rng = np.random.default_rng([seed, 3])
    loadings = rng.normal(0.0, 1.0, size=(3, INMEM_FEATURES))
    loadings /= np.linalg.norm(loadings, axis=0, keepdims=True)
    x = rng.standard_normal((n, 3)) @ loadings + 0.5 * rng.standard_normal((n, INMEM_FEATURES))
    x /= math.sqrt(1.25)
    anomalous = np.flatnonzero(rng.random(n) < ANOMALY_RATE)
    x[anomalous, rng.integers(0, INMEM_FEATURES, size=len(anomalous))] += rng.choice(
        [-6.0, 6.0], size=len(anomalous)
    )
    return np.ascontiguousarray(x)


@dataclass(frozen=True)
class InputFile:
    label: str  # e.g. "synthetic 1M parquet"
    path: Path
    rows: int
    fmt: str  # parquet / csv
    kind: str  # synthetic / donors: which model scores it

    @property
    def size_mib(self) -> float:
        return self.path.stat().st_size / 2**20


# -- child processes (one per file-to-file run: timing and peak RSS) -------------------------
def child_score(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the detector, then score one file with ``pipeline.batch.score_file``."""
    started = time.perf_counter()
    from pipeline.batch import score_file
    from pipeline.detector import AnomalyDetector
    from pipeline.tracking import ModelRef

    imported = time.perf_counter()
    detector = AnomalyDetector.load(spec["model"])
    loaded = time.perf_counter()
    rss_loaded = _proc_status("VmHWM")
    ref = ModelRef(name=MODEL_NAME, version=MODEL_VERSION, run_id="bench", alias="champion")
    output_root = Path(spec["output_root"])

    def run() -> dict[str, Any]:
        return score_file(
            detector, ref, Path(spec["input"]), output_root, spec["run_date"], force=True
        )

    profiler = cProfile.Profile() if spec.get("profile") else None
    t0 = time.perf_counter()
    manifest = profiler.runcall(run) if profiler is not None else run()
    score_s = time.perf_counter() - t0
    if profiler is not None:
        profiler.dump_stats(spec["profile"])
    out_dir = manifest.get("output_dir") or str(
        output_root / spec["run_date"] / Path(spec["input"]).stem
    )
    return {
        "import_s": imported - started,
        "load_s": loaded - imported,
        "score_s": score_s,
        "rss_after_load_mib": rss_loaded,
        "rows_read": manifest.get("rows_read"),
        "rows_scored": manifest.get("rows_scored"),
        "rows_flagged": manifest.get("rows_flagged"),
        "rows_rejected": manifest.get("rows_rejected"),
        "output_dir": out_dir,
    }


def dummy_batch(batch: pa.RecordBatch, schema: pa.Schema, cache: dict[Any, pa.Array]) -> Any:
    """A batch of ``schema`` with the rows of ``batch``: columns of the input copied, float
    scores from the input's first float column, constants (``DUMMY_CONSTANTS``), zero ints."""
    n = batch.num_rows
    names = batch.schema.names
    float_source = next(
        (batch.column(i) for i, f in enumerate(batch.schema) if pa.types.is_floating(f.type)),
        None,
    )
    if float_source is not None:
        float_source = pc.fill_null(float_source, 0.0)
    arrays = []
    for f in schema:
        if f.name in names:
            column = batch.column(names.index(f.name))
            arrays.append(column if column.type == f.type else column.cast(f.type))
        elif (
            f.name not in DUMMY_CONSTANTS
            and pa.types.is_floating(f.type)
            and float_source is not None
        ):
            arrays.append(float_source.cast(f.type))
        else:
            key = (f.name, n)
            if key not in cache:
                if f.name in DUMMY_CONSTANTS:
                    value = pa.scalar(DUMMY_CONSTANTS[f.name]).cast(f.type)
                    cache[key] = pa.repeat(value, n)
                elif pa.types.is_integer(f.type) or pa.types.is_floating(f.type):
                    cache[key] = pa.array(np.zeros(n, dtype=f.type.to_pandas_dtype()))
                elif pa.types.is_boolean(f.type):
                    cache[key] = pa.array(np.zeros(n, dtype=bool))
                elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
                    cache[key] = pa.repeat(pa.scalar("", f.type), n)
                else:
                    cache[key] = pa.nulls(n, f.type)
            arrays.append(cache[key])
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def child_io(spec: dict[str, Any]) -> dict[str, Any]:
    """The I/O limit: pyarrow reads the input and writes a scored-like Parquet file."""
    started = time.perf_counter()
    schema = pq.read_schema(spec["schema"]).remove_metadata()
    path, out = Path(spec["input"]), Path(spec["output"])
    reader: Iterator[pa.RecordBatch]
    if spec["fmt"] == "parquet":
        # pre_buffer=False: with the default (True) pyarrow keeps the compressed bytes of every
        # row group read so far, so memory grows with the file (about its size at the end)
        reader = pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=65_536)
    else:
        reader = iter(
            pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=16 << 20),
                convert_options=pacsv.ConvertOptions(column_types={ID_COLUMN: pa.string()}),
            )
        )
    rows = 0
    cache: dict[Any, pa.Array] = {}
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    with pq.ParquetWriter(out, schema) as writer:
        for batch in reader:
            pending.append(dummy_batch(batch, schema, cache))
            pending_rows += batch.num_rows
            rows += batch.num_rows
            if pending_rows >= IO_ROW_GROUP_ROWS:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=pending_rows)
                pending, pending_rows = [], 0
        if pending:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=pending_rows)
    _fsync(out)
    return {"score_s": time.perf_counter() - started, "rows_read": rows}


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "score": child_score,
    "io": child_io,
}


def child_main(kind: str, raw_spec: str) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    spec = json.loads(raw_spec)
    result = CHILDREN[kind](spec)
    # the peak RSS of this process image: ru_maxrss from wait4 cannot be used, as Linux carries
    # the parent's high-water mark over a vfork + exec (subprocess' default) into the child's
    result["peak_rss_mib"] = _proc_status("VmHWM")
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


class ChildFailedError(RuntimeError):
    """A benchmark subprocess failed (its stderr went to the console)."""


def run_child(kind: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run a child in a fresh interpreter; its result (peak RSS included) and wall time."""
    result_path = work / "child-result.json"
    result_path.unlink(missing_ok=True)
    spec = {**spec, "result": str(result_path)}
    command = [sys.executable, "-m", "benchmarks.speed", "--child", kind, json.dumps(spec)]
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=PROJECT_ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not result_path.exists():
        code = proc.returncode
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        if code == -signal.SIGKILL:
            how += " (out of memory?)"
        raise ChildFailedError(f"{kind} process on {Path(spec['input']).name}: {how}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    # kilobytes on Linux; at least the parent's own peak (see child_main), so only a cross-check
    result["ru_maxrss_mib"] = usage.ru_maxrss / 1024
    result["process_s"] = wall
    return result


# -- measurements ----------------------------------------------------------------------------
@dataclass
class Measurement:
    """One line of the results table: repeated timings of the same work."""

    key: str  # unique, e.g. "f2f:project:synthetic 1M parquet"
    what: str  # what was timed
    data: str  # on which input
    rows: int  # rows of the input
    seconds: list[float] = field(default_factory=list)
    work: list[float] = field(default_factory=list)  # rows processed per repeat (x epochs)
    work_text: str = ""  # how the processed rows are counted, when not just ``rows``
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, seconds: float, work: float | None = None) -> None:
        self.seconds.append(float(seconds))
        self.work.append(float(self.rows if work is None else work))

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds) if self.seconds else math.nan

    @property
    def rows_per_s(self) -> float:
        rates = [w / s for w, s in zip(self.work, self.seconds, strict=True) if s > 0]
        return statistics.median(rates) if rates else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "what": self.what,
            "data": self.data,
            "rows": self.rows,
            "seconds": self.seconds,
            "work": self.work,
            "work_text": self.work_text,
            "median_s": self.median_s,
            "rows_per_s": self.rows_per_s,
            "extra": self.extra,
        }


@dataclass
class Target:
    text: str
    value: float
    needed: float
    higher_is_better: bool = True
    unit: str = "x"  # x (ratio), rows/s
    detail: str = ""  # the numbers the value comes from
    key: str = ""  # the measurement whose profile explains a miss
    error: str = ""  # the run behind the value failed: a miss

    @property
    def met(self) -> bool | None:
        if self.error:
            return False
        if not (math.isfinite(self.value) and math.isfinite(self.needed)):
            return None
        return self.value >= self.needed if self.higher_is_better else self.value <= self.needed

    @property
    def verdict(self) -> str:
        if self.error:
            return "FAIL"
        return {True: "PASS", False: "MISS", None: "n/a"}[self.met]

    def fmt(self, value: float) -> str:
        if not math.isfinite(value):
            return "-"
        return f"{value:,.0f} rows/s" if self.unit == "rows/s" else f"{value:.2f}x"

    @property
    def gap(self) -> str:
        if self.met is not False:
            return ""
        if self.error:
            return self.error
        if self.higher_is_better:
            short = self.needed / self.value
            return f"{self.value / self.needed:.0%} of the target ({short:.2f}x short)"
        return f"{self.value / self.needed:.2f}x the allowed value"

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "value": self.value,
            "needed": self.needed,
            "higher_is_better": self.higher_is_better,
            "met": self.met,
            "detail": self.detail,
            "error": self.error,
        }


class Results:
    def __init__(self) -> None:
        self.items: dict[str, Measurement] = {}
        self.notes: list[str] = []

    def get(self, key: str, what: str, data: str, rows: int, work_text: str = "") -> Measurement:
        if key not in self.items:
            self.items[key] = Measurement(key, what, data, rows, work_text=work_text)
        return self.items[key]

    def find(self, key: str) -> Measurement | None:
        return self.items.get(key)

    def note(self, text: str) -> None:
        log.info("note: %s", text)
        self.notes.append(text)


# -- models ----------------------------------------------------------------------------------
def _settings() -> Any:
    from pipeline.config import Settings

    return Settings()


def train_file_model(kind: str, source: Path, n: int, work: Path, results: Results) -> Path:
    """Fit the default detector on a sample of ``source``; save it under ``work/models``."""
    from pipeline.detector import AnomalyDetector

    frame = sample_frame(source, n)
    started = time.perf_counter()
    detector = AnomalyDetector(_settings()).fit(frame)
    fit_s = time.perf_counter() - started
    directory = work / "models" / kind
    if directory.exists():
        shutil.rmtree(directory)
    detector.save(directory)
    m = results.get(
        f"fit:{kind}",
        "whole `fit` call, vae-anomaly (model for the files)",
        f"{kind} sample of {source.name}",
        len(frame),
    )
    epochs = len(detector.history_)
    m.add(fit_s, detector.n_train_rows_ * epochs)
    m.extra["rows_text"] = f"{detector.n_train_rows_:,} x {epochs} epochs"
    m.extra.update(
        epochs=epochs,
        train_rows=detector.n_train_rows_,
        train_loop_s=detector.train_seconds_,
        threshold=detector.threshold_,
        roles=detector.schema_.to_dict()["roles"],
    )
    log.info(
        "model %s: fit on %d rows in %.1f s (%d epochs) -> %s",
        kind,
        len(frame),
        fit_s,
        len(detector.history_),
        directory,
    )
    return directory


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


def frame_of(x: np.ndarray) -> Any:
    import pandas as pd

    return pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])


def bench_in_memory(
    n_rows: int, n_train: int, repeats: int, results: Results, profile: str
) -> dict[str, cProfile.Profile]:
    """Training throughput and in-memory scoring of the project and PyOD on the same arrays."""
    from pipeline.detector import AnomalyDetector

    x = inmem_array(n_rows)
    rng = np.random.default_rng([SEED, 4])
    x_train = np.ascontiguousarray(x[np.sort(rng.choice(n_rows, n_train, replace=False))])
    frame, frame_train = frame_of(x), frame_of(x_train)
    data = f"gaussian {_human(n_rows)} x {INMEM_FEATURES}"
    train_data = f"sample of {_human(n_train)} x {INMEM_FEATURES}"
    profiles: dict[str, cProfile.Profile] = {}

    # training
    detector: Any = None
    for r in range(repeats):
        started = time.perf_counter()
        detector = AnomalyDetector(_settings()).fit(frame_train)
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

    # in-memory scoring (public API, from a DataFrame)
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
    if profile == "always" or (profile == "auto" and m.rows_per_s < TARGET_INMEM_ROWS_S):
        profiler = cProfile.Profile()
        profiler.runcall(detector.score_samples, frame)
        profiles["in-memory scoring, vae-anomaly `score_samples`"] = profiler

    if pyod_model is not None:
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
        pm = results.get(
            "score:pyod", "in-memory `decision_function` (array), PyOD VAE", data, n_pyod
        )
        if n_pyod < n_rows:
            pm.data = f"first {_human(n_pyod)} rows of {data}"
        for _ in range(repeats):
            started = time.perf_counter()
            pyod_scores = pyod_model.decision_function(x[:n_pyod])
            pm.add(time.perf_counter() - started)
            if len(pyod_scores) != n_pyod:
                raise RuntimeError("pyod: wrong number of scores")
        log.info("score pyod-vae: %.2f s, %s rows/s", pm.median_s, f"{pm.rows_per_s:,.0f}")

    ratio = _ratio(results, "train:project", "train:pyod")
    if profile == "always" or (profile == "auto" and ratio < TARGET_TRAIN_VS_PYOD):
        profiler = cProfile.Profile()
        profiler.runcall(AnomalyDetector(_settings()).fit, frame_train)
        profiles["training, vae-anomaly `fit` on the in-memory sample"] = profiler
    return profiles


def _ratio(results: Results, mine: str, theirs: str) -> float:
    a, b = results.find(mine), results.find(theirs)
    if a is None or b is None or not b.rows_per_s:
        return math.nan
    return a.rows_per_s / b.rows_per_s


# -- file to file ----------------------------------------------------------------------------
def default_scored_schema() -> pa.Schema:
    return pa.schema([(ID_COLUMN, pa.string()), *DEFAULT_SCORE_FIELDS])


def bench_file(
    item: InputFile,
    model_dir: Path,
    repeats: int,
    work: Path,
    run_date: str,
    results: Results,
) -> None:
    """``repeats`` x (project file-to-file, I/O limit) on one file, each in a fresh process."""
    output_root = work / "scored"
    io_out = work / "io-out" / f"{item.path.stem}.parquet"
    io_out.parent.mkdir(parents=True, exist_ok=True)
    schema_path = work / "schemas" / f"{item.kind}.parquet"
    warm_s = warm_page_cache(item.path)
    log.info("%s: %.0f MiB, page cache warmed in %.1f s", item.label, item.size_mib, warm_s)
    project = results.get(
        f"f2f:project:{item.label}", "file-to-file `score_file`, vae-anomaly", item.label, item.rows
    )
    limit = results.get(f"f2f:io:{item.label}", "I/O limit (pyarrow only)", item.label, item.rows)
    project.extra["input_mib"] = limit.extra["input_mib"] = round(item.size_mib, 1)
    failed = False
    for r in range(repeats):
        spec = {
            "model": str(model_dir),
            "input": str(item.path),
            "output_root": str(output_root),
            "run_date": run_date,
        }
        res: dict[str, Any] | None = None
        if not failed:
            try:
                res = run_child("score", spec, work)
            except ChildFailedError as exc:  # recorded: a failure at some size is a result
                failed = True
                project.extra["error"] = str(exc)
                results.note(f"{item.label}: vae-anomaly file-to-file scoring failed: {exc}")
        if res is not None:
            if res.get("rows_read") != item.rows:
                results.note(f"{item.label}: vae-anomaly read {res.get('rows_read')} rows")
            out_dir = Path(res["output_dir"])
            scored_file = out_dir / "scored.parquet"
            if scored_file.exists():
                project.extra["scored_mib"] = round(scored_file.stat().st_size / 2**20, 1)
                if r == 0:  # the I/O limit writes exactly this schema
                    schema = pq.read_schema(scored_file).remove_metadata()
                    schema_path.parent.mkdir(parents=True, exist_ok=True)
                    pq.write_table(schema.empty_table(), schema_path)
            shutil.rmtree(out_dir, ignore_errors=True)
            project.add(res["score_s"])
            for key in ("load_s", "import_s", "peak_rss_mib", "rss_after_load_mib", "process_s"):
                project.extra.setdefault(key + "_all", []).append(res[key])
            project.extra.update(
                rows_scored=res.get("rows_scored"),
                rows_flagged=res.get("rows_flagged"),
                rows_rejected=res.get("rows_rejected"),
            )
        if not schema_path.exists():
            results.note(
                f"no scored.parquet of {item.label}: the I/O limit writes the documented schema"
            )
            schema_path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(default_scored_schema().empty_table(), schema_path)
        io_spec = {
            "input": str(item.path),
            "output": str(io_out),
            "schema": str(schema_path),
            "fmt": item.fmt,
        }
        try:
            io_res = run_child("io", io_spec, work)
        except ChildFailedError as exc:
            limit.extra["error"] = str(exc)
            results.note(f"{item.label}: the I/O limit failed: {exc}")
            break
        finally:
            if io_out.exists():
                limit.extra["output_mib"] = round(io_out.stat().st_size / 2**20, 1)
            io_out.unlink(missing_ok=True)
        limit.add(io_res["score_s"])
        limit.extra.setdefault("peak_rss_mib_all", []).append(io_res["peak_rss_mib"])
        log.info(
            "%s %d/%d: vae-anomaly %s, I/O limit %.1f s",
            item.label,
            r + 1,
            repeats,
            "failed"
            if res is None
            else f"{res['score_s']:.1f} s (load {res['load_s']:.2f} s, "
            f"peak RSS {res['peak_rss_mib']:.0f} MiB)",
            io_res["score_s"],
        )
    for m in (project, limit):
        for key in [k for k in m.extra if k.endswith("_all")]:
            m.extra[key.removesuffix("_all")] = statistics.median(m.extra[key])
    project.extra["schema"] = str(pq.read_schema(schema_path).names)


def profile_file(item: InputFile, model_dir: Path, work: Path, run_date: str) -> pstats.Stats:
    dump = work / "profile-f2f.pstats"
    spec = {
        "model": str(model_dir),
        "input": str(item.path),
        "output_root": str(work / "scored"),
        "run_date": run_date,
        "profile": str(dump),
    }
    res = run_child("score", spec, work)
    shutil.rmtree(res["output_dir"], ignore_errors=True)
    return pstats.Stats(str(dump))


def profile_text(title: str, stats: pstats.Stats | cProfile.Profile) -> str:
    """Top 25 by cumulative time and top 15 by own time, with shortened paths."""
    buffer = io.StringIO()
    if isinstance(stats, cProfile.Profile):
        stats = pstats.Stats(stats, stream=buffer)
    else:
        stats.stream = buffer  # type: ignore[attr-defined]
    buffer.write(f"==== {title}\n\n-- top 25 by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(25)
    buffer.write("\n-- top 15 by own time\n")
    stats.sort_stats("tottime").print_stats(15)
    text = buffer.getvalue()
    for prefix in sorted({str(PROJECT_ROOT) + "/", *_site_dirs()}, key=len, reverse=True):
        text = text.replace(prefix, "")
    return text


def _site_dirs() -> list[str]:
    import site

    return [p + "/" for p in site.getsitepackages()]


# -- targets and report ----------------------------------------------------------------------
def evaluate_targets(results: Results, files: list[InputFile]) -> list[Target]:
    targets: list[Target] = []
    for item in files:
        if item.fmt != "parquet":
            continue
        project = results.find(f"f2f:project:{item.label}")
        limit = results.find(f"f2f:io:{item.label}")
        if project is None or limit is None:
            continue
        targets.append(
            Target(
                f"file-to-file / I/O limit throughput, {item.label}",
                project.rows_per_s / limit.rows_per_s,
                TARGET_F2F_VS_IO,
                detail=f"{_rate(project.rows_per_s)} vs {_rate(limit.rows_per_s)} rows/s",
                key=project.key,
                error=_error(project, limit),
            )
        )
    score = results.find("score:project")
    if score is not None:
        targets.append(
            Target(
                f"in-memory scoring, {INMEM_FEATURES} numeric features",
                score.rows_per_s,
                TARGET_INMEM_ROWS_S,
                unit="rows/s",
                detail=f"{score.rows:,} rows in {score.median_s:.2f} s",
                key=score.key,
            )
        )
        pyod = results.find("score:pyod")
        if pyod is not None:
            targets.append(
                Target(
                    "in-memory scoring vs PyOD VAE",
                    score.rows_per_s / pyod.rows_per_s,
                    TARGET_INMEM_VS_PYOD,
                    detail=f"{score.rows_per_s:,.0f} vs {pyod.rows_per_s:,.0f} rows/s",
                    key=score.key,
                )
            )
    train, pyod_train = results.find("train:project"), results.find("train:pyod")
    if train is not None and pyod_train is not None:
        targets.append(
            Target(
                "training throughput (rows/s per epoch) vs PyOD VAE",
                train.rows_per_s / pyod_train.rows_per_s,
                TARGET_TRAIN_VS_PYOD,
                detail=f"{train.rows_per_s:,.0f} vs {pyod_train.rows_per_s:,.0f} rows/s",
                key=train.key,
            )
        )
    synthetic = sorted(
        (f for f in files if f.kind == "synthetic" and f.fmt == "parquet"), key=lambda f: f.rows
    )
    if len(synthetic) >= 2:
        small = results.find(f"f2f:project:{synthetic[0].label}")
        large = results.find(f"f2f:project:{synthetic[-1].label}")
        if small is not None and large is not None:
            a, b = (
                small.extra.get("peak_rss_mib", math.nan),
                large.extra.get("peak_rss_mib", math.nan),
            )
            targets.append(
                Target(
                    f"peak RSS scoring {_human(synthetic[-1].rows)} / "
                    f"{_human(synthetic[0].rows)} rows (Parquet)",
                    float(b) / float(a),
                    TARGET_RSS_RATIO,
                    higher_is_better=False,
                    detail=f"{_mib(b)} vs {_mib(a)} MiB",
                    key=large.key,
                    error=_error(small, large),
                )
            )
    return targets


def _error(*measurements: Measurement) -> str:
    return "; ".join(
        f"{m.what} on {m.data} failed: {m.extra['error']}"
        for m in measurements
        if m.extra.get("error")
    )


def _rate(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else "-"


def _mib(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, float | int) and math.isfinite(value) else "-"


def _seconds(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _row_ratio(results: Results, m: Measurement) -> tuple[str, str]:
    """(ratio, target) cells of a measurement's table row."""
    kind, _, rest = m.key.partition(":")
    if kind == "f2f" and rest.startswith("project:"):
        label = rest.removeprefix("project:")
        limit = results.find(f"f2f:io:{label}")
        if limit is not None:
            target = f">= {TARGET_F2F_VS_IO:g}" if label.endswith("parquet") else "(none)"
            ratio = m.rows_per_s / limit.rows_per_s
            return (f"{ratio:.2f} of I/O limit" if math.isfinite(ratio) else ""), target
    if m.key == "score:project":
        pyod = _ratio(results, "score:project", "score:pyod")
        cell = f"{pyod:.1f}x PyOD" if math.isfinite(pyod) else ""
        return cell, f">= {TARGET_INMEM_ROWS_S:,.0f} rows/s, >= {TARGET_INMEM_VS_PYOD:g}x PyOD"
    if m.key == "train:project":
        ratio = _ratio(results, "train:project", "train:pyod")
        cell = f"{ratio:.1f}x PyOD" if math.isfinite(ratio) else ""
        return cell, f">= {TARGET_TRAIN_VS_PYOD:g}x PyOD"
    if m.key == "fit:project":
        ratio = _ratio(results, "fit:project", "fit:pyod")
        return (f"{ratio:.1f}x PyOD" if math.isfinite(ratio) else ""), ""
    return "", ""


def _rows_cell(m: Measurement) -> str:
    text = m.extra.get("rows_text")
    return f"{m.rows:,}" if not text else str(text)


def markdown_report(
    results: Results, targets: list[Target], files: list[InputFile], meta: dict[str, Any]
) -> str:
    lines = [
        "# Speed: file-to-file scoring, in-memory scoring, training, memory",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}",
        f"- software: python {meta['python']}, torch {meta['torch']}, pyarrow {meta['pyarrow']}, "
        f"pandas {meta['pandas']}, numpy {meta['numpy']}, pyod {meta['pyod']}",
        f"- command: `{meta['command']}`",
        f"- repeats: {meta['repeats']} (medians shown; every repeat in `speed.json`)",
        f"- vae-anomaly: `Settings()` defaults, effective: `{json.dumps(meta['settings'])}`",
        f"- training sample: {meta['train_rows']:,} random rows of the table "
        "(the file-to-file models: of the smallest synthetic table / of donors)",
        f"- data (cached in `{meta['work']}`): {meta['data']}",
        "",
        "## Targets",
        "",
        "| target | measured | needed | result | from |",
        "|---|---:|---:|---|---|",
    ]
    for t in targets:
        needed = ("<= " if not t.higher_is_better else ">= ") + t.fmt(t.needed)
        result = t.verdict if t.met is not False else f"**MISS**: {t.gap}"
        lines.append(f"| {t.text} | {t.fmt(t.value)} | {needed} | {result} | {t.detail} |")
    if not targets:
        lines.append("| (none measured) | | | | |")
    lines += [
        "",
        "## Measurements",
        "",
        "| measurement | data | rows | median s | rows/s | ratio | target |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for m in results.items.values():
        ratio, target = _row_ratio(results, m)
        lines.append(
            f"| {m.what} | {m.data} | {_rows_cell(m)} | {_seconds(m.median_s)} | "
            f"{_rate(m.rows_per_s)} | {ratio} | {target} |"
        )
    per_file = [
        (f, results.find(f"f2f:project:{f.label}"), results.find(f"f2f:io:{f.label}"))
        for f in files
    ]
    if any(p is not None for _, p, _ in per_file):
        lines += [
            "",
            "## Per file: the scoring process (medians)",
            "",
            "| input | MiB | rows flagged | imports s | detector load s | scoring s | "
            "peak RSS MiB | RSS after load MiB | I/O limit s | I/O limit peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for f, p, io_m in per_file:
            if p is None:
                continue
            e = p.extra
            io_s = _seconds(io_m.median_s) if io_m is not None else "-"
            io_rss = io_m.extra.get("peak_rss_mib") if io_m is not None else None
            lines.append(
                f"| {f.label} | {f.size_mib:,.0f} | {e.get('rows_flagged', '-')} | "
                f"{_seconds(e.get('import_s', math.nan))} | "
                f"{_seconds(e.get('load_s', math.nan))} | {_seconds(p.median_s)} | "
                f"{_mib(e.get('peak_rss_mib'))} | "
                f"{_mib(e.get('rss_after_load_mib'))} | {io_s} | {_mib(io_rss)} |"
            )
    lines += ["", "## What is measured", "", *HOW.strip().splitlines()]
    if results.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results.notes]
    if meta.get("profiles"):
        lines += [
            "",
            "## Where the time goes",
            "",
            f"cProfile of {', '.join(meta['profiles'])}: `{meta['profile_file']}` "
            "(top 25 by cumulative time, top 15 by own time).",
        ]
    missed = [t for t in targets if t.met is False]
    if missed and not meta.get("profiles"):
        lines += ["", "Targets missed: rerun with `--profile` for where the time goes."]
    return "\n".join(lines) + "\n"


HOW = """
- **file-to-file `score_file`**: `pipeline.batch.score_file(detector, ref, input, output_root,
  run_date, force=True)` in a fresh process, with the detector already loaded
  (`AnomalyDetector.load`; imports and load timed separately): hashing, reading, checking,
  preprocessing, scoring, reasons, writing and fsyncing `scored.parquet`, `flagged.csv`,
  `rejected.csv`, `manifest.json`. Peak RSS: that process' `VmHWM` (`/proc/self/status`) at
  its end (not `ru_maxrss` from `wait4`: Linux carries the parent's peak over the vfork + exec).
- **I/O limit**: pyarrow alone, in a fresh process: reads the same input batch by batch
  (`ParquetFile(pre_buffer=False).iter_batches`, `pyarrow.csv.open_csv`) and writes, then
  fsyncs, a Parquet file with the same rows and the same schema as the project's
  `scored.parquet` (read from its output): id columns copied, float columns from an input
  float column, constants otherwise.
  The page cache is warmed with one read of the input before the first run on it.
- **in-memory scoring**: `AnomalyDetector.score_samples(DataFrame)` (the public API, input
  checks and preprocessing included) vs PyOD `VAE().decision_function(float64 array)`, both
  fitted on the same sample of the same table; one untimed warm-up call each.
- **training loop**: rows per second per epoch. vae-anomaly: `n_train_rows_ x len(history_) /
  train_seconds_` (its epoch loop, per-epoch validation included; `validation_fraction` of
  the sample is held out). PyOD: `rows x epoch_num / seconds` of its `train` loop (`fit`
  minus its preprocessing and final scoring). The whole `fit` calls are listed as well,
  counted the same way.
- **peak RSS**: the file-to-file scoring process of the smallest and the largest synthetic
  Parquet tables; the ratio is their peaks (imports and the loaded model included).
"""


# -- entry point -----------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed",
        description="Speed benchmark of vae-anomaly: file-to-file scoring vs the I/O limit, "
        "in-memory scoring and training vs PyOD's VAE, peak memory.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder with the ADBench .npz files, for 11_donors (without it: no donors file)",
    )
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=None,
        help=f"synthetic table sizes (default {' '.join(map(str, DEFAULT_ROWS))}; "
        "the smallest also as CSV and as the model's training source)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="repeats (default 3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"tiny sizes ({' '.join(map(_human, QUICK_ROWS))} rows, in-memory "
        f"{_human(QUICK_INMEM_ROWS)}, training sample {_human(QUICK_TRAIN_ROWS)}, donors "
        f"{_human(QUICK_DONORS_ROWS)}, 1 repeat); results to a temp folder unless --out",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("files", "memory"),
        default=["files", "memory"],
        help="files: file-to-file, I/O limit, RSS; memory: in-memory scoring and training",
    )
    parser.add_argument(
        "--train-rows",
        type=int,
        default=None,
        help=f"training sample rows (default {TRAIN_ROWS:,})",
    )
    parser.add_argument(
        "--inmem-rows",
        type=int,
        default=None,
        help=f"rows of the in-memory scoring table (default {INMEM_ROWS:,})",
    )
    parser.add_argument(
        "--donors-rows", type=int, default=None, help="first rows of donors (default all)"
    )
    parser.add_argument("--no-csv", action="store_true", help="no CSV file-to-file line")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--profile",
        dest="profile",
        action="store_const",
        const="always",
        default="auto",
        help="profile every part (default: only the parts whose target is missed)",
    )
    which.add_argument(
        "--no-profile", dest="profile", action="store_const", const="never", help="no profile"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default benchmarks/results; with --quick a temp folder)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help=f"generated data, models and outputs (default {DEFAULT_WORK})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["--child"]:
        return child_main(raw[1], raw[2])
    args = parse_args(raw)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    quick = args.quick
    sizes = sorted(set(args.rows or (QUICK_ROWS if quick else DEFAULT_ROWS)))
    repeats = args.repeats or (1 if quick else 3)
    train_rows = args.train_rows or (QUICK_TRAIN_ROWS if quick else TRAIN_ROWS)
    inmem_rows = args.inmem_rows or (QUICK_INMEM_ROWS if quick else INMEM_ROWS)
    donors_rows = args.donors_rows or (QUICK_DONORS_ROWS if quick else None)
    if min(sizes) < train_rows or inmem_rows < train_rows:
        raise SystemExit(f"--rows and --inmem-rows must be at least --train-rows ({train_rows})")
    out: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="vae-speed-quick-")) if quick else DEFAULT_OUT
    )
    work: Path = args.work.expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    data_dir = args.data.expanduser().resolve() if args.data else None

    import pandas as pd
    import torch

    from benchmarks.adbench import machine_description, relevant_settings

    run_date = dt.date.today().isoformat()
    meta: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_description(),
        "python": platform.python_version(),
        "torch": f"{torch.__version__} ({torch.get_num_threads()} threads by default)",
        "pyarrow": pa.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "pyod": _version("pyod"),
        "command": " ".join(["python -m benchmarks.speed", *raw]),
        "repeats": repeats,
        "settings": relevant_settings(_settings()),
        "train_rows": train_rows,
        "work": str(work),
        "profiles": [],
    }
    results = Results()
    started = time.perf_counter()

    # data
    files: list[InputFile] = []
    csv_file: InputFile | None = None
    generated: list[str] = []
    if "files" in args.parts:
        for i, n in enumerate(sizes):
            want_csv = i == 0 and not args.no_csv
            parquet_path, csv_path, gen_s = ensure_synthetic(work, n, csv=want_csv)
            if gen_s:
                generated.append(f"synthetic {_human(n)} in {gen_s:.0f} s")
            files.append(
                InputFile(f"synthetic {_human(n)} parquet", parquet_path, n, "parquet", "synthetic")
            )
            if csv_path is not None:
                csv_file = InputFile(f"synthetic {_human(n)} csv", csv_path, n, "csv", "synthetic")
        if data_dir is not None and (data_dir / "11_donors.npz").exists():
            donors_path, n_donors, gen_s = ensure_donors(work, data_dir, donors_rows)
            if gen_s:
                generated.append(f"donors in {gen_s:.0f} s")
            files.append(
                InputFile(
                    f"donors {_human(n_donors)} parquet", donors_path, n_donors, "parquet", "donors"
                )
            )
        else:
            results.note("no donors file: pass --data with 11_donors.npz")
        if csv_file is not None:
            files.append(csv_file)
    meta["data"] = (
        f"synthetic tables of {', '.join(f'{n:,}' for n in sizes)} rows: `{ID_COLUMN}` (text), "
        f"{N_NUMERIC} float64 columns (gaussians and lognormals tied to {N_LATENT} latent "
        f"factors, {MISSING_RATE:.0%} missing each), {len(CAT_LEVELS)} text categoricals "
        f"({min(CAT_LEVELS)}-{max(CAT_LEVELS)} levels), {ANOMALY_RATE:.1%} planted anomalies; "
        f"Parquet row groups of {CHUNK_ROWS:,} rows"
        + (f"; CSV of the {sizes[0]:,}-row table" if csv_file is not None else "")
        + (
            f"; ADBench 11_donors ({next(f.rows for f in files if f.kind == 'donors'):,} "
            "rows x 10 float64 + `record_id`)"
            if any(f.kind == "donors" for f in files)
            else ""
        )
        + f"; in-memory table: {inmem_rows:,} x {INMEM_FEATURES} correlated gaussians"
    )
    if generated:
        log.info("generated: %s", "; ".join(generated))

    # models for the files
    models: dict[str, Path] = {}
    if files:
        models["synthetic"] = train_file_model(
            "synthetic", files[0].path, train_rows, work, results
        )
        donors = [f for f in files if f.kind == "donors"]
        if donors:
            models["donors"] = train_file_model("donors", donors[0].path, train_rows, work, results)

    # file to file
    for item in files:
        bench_file(item, models[item.kind], repeats, work, run_date, results)

    # in memory
    profiles: dict[str, pstats.Stats | cProfile.Profile] = {}
    if "memory" in args.parts:
        try:
            profiles.update(bench_in_memory(inmem_rows, train_rows, repeats, results, args.profile))
        except Exception as exc:  # keep the file results: report what was measured
            log.exception("in-memory part failed")
            results.note(f"in-memory / training part failed: {type(exc).__name__}: {exc}")

    targets = evaluate_targets(results, files)
    if files and (
        args.profile == "always"
        or (
            args.profile == "auto"
            and any(t.met is False and t.key.startswith("f2f:") for t in targets)
        )
    ):
        largest_parquet = min(
            (f for f in files if f.kind == "synthetic" and f.fmt == "parquet"),
            key=lambda f: abs(f.rows - 1_000_000),
        )
        log.info("profiling file-to-file scoring of %s", largest_parquet.label)
        try:
            stats = profile_file(largest_parquet, models["synthetic"], work, run_date)
            title = f"file-to-file `score_file` of {largest_parquet.label}"
            profiles = {title: stats, **profiles}
        except ChildFailedError as exc:
            results.note(f"file-to-file profile failed: {exc}")

    out.mkdir(parents=True, exist_ok=True)
    if profiles:
        text = "\n\n".join(profile_text(title, stats) for title, stats in profiles.items())
        (out / "speed_profile.txt").write_text(text)
        meta["profiles"] = list(profiles)
        meta["profile_file"] = "speed_profile.txt"
    report = markdown_report(results, targets, files, meta)
    (out / "speed.md").write_text(report)
    raw_results = {
        "meta": meta,
        "files": [
            {"label": f.label, "path": str(f.path), "rows": f.rows, "mib": round(f.size_mib, 1)}
            for f in files
        ],
        "measurements": [m.to_dict() for m in results.items.values()],
        "targets": [t.to_dict() for t in targets],
        "notes": results.notes,
    }
    (out / "speed.json").write_text(json.dumps(raw_results, indent=1, default=str))
    print()
    print(report.split("## What is measured")[0].rstrip())
    print()
    for t in targets:
        print(
            f"{t.verdict:4}  {t.text}: {t.fmt(t.value)} (needed "
            f"{'>=' if t.higher_is_better else '<='} {t.fmt(t.needed)}; {t.detail})"
            + (f" -- {t.gap}" if t.gap else "")
        )
    log.info("done in %.0f s; results in %s", time.perf_counter() - started, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
