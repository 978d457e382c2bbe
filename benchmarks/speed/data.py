"""The inputs: synthetic tables (Parquet, CSV), ADBench's donors as Parquet, training samples
and the in-memory table; generated into ``--work`` once and reused while the files exist."""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmarks.speed.measurements import Results

GENERATOR_VERSION = 1  # part of the cached files' names: bump when the generator changes
SEED = 20240601
CHUNK_ROWS = 250_000  # generation chunk = Parquet row group of the inputs
N_NUMERIC = 20
N_LOGNORMAL = 6  # the last numeric columns are lognormal
CAT_LEVELS = (3, 6, 12, 20, 30)
N_LATENT = 4
MISSING_RATE = 0.02
ANOMALY_RATE = 0.005
NUMERIC_COLUMNS = [f"num_{j:02d}" for j in range(N_NUMERIC)]
CAT_COLUMNS = [f"cat_{k}" for k in range(len(CAT_LEVELS))]
ID_COLUMN = "record_id"
INMEM_FEATURES = 10

log = logging.getLogger("benchmarks.speed")


def human(n: float) -> str:
    """1_000_000 -> '1M', 619_326 -> '619k', 300_000 -> '300k'."""
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1_000_000:g}M"
    if n >= 1_000:
        return f"{round(n / 1_000):g}k"
    return str(int(n))


# -- synthetic tables ------------------------------------------------------------------------
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


# -- donors ----------------------------------------------------------------------------------
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


# -- the files of a run ----------------------------------------------------------------------
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


def input_files(
    work: Path,
    sizes: list[int],
    csv: bool,
    data_dir: Path | None,
    donors_rows: int | None,
    results: Results,
) -> list[InputFile]:
    """The synthetic Parquet tables (smallest first), donors, then the CSV of the smallest
    table; generated where missing."""
    files: list[InputFile] = []
    csv_file: InputFile | None = None
    generated: list[str] = []
    for i, n in enumerate(sizes):
        want_csv = i == 0 and csv
        parquet_path, csv_path, gen_s = ensure_synthetic(work, n, csv=want_csv)
        if gen_s:
            generated.append(f"synthetic {human(n)} in {gen_s:.0f} s")
        files.append(
            InputFile(f"synthetic {human(n)} parquet", parquet_path, n, "parquet", "synthetic")
        )
        if csv_path is not None:
            csv_file = InputFile(f"synthetic {human(n)} csv", csv_path, n, "csv", "synthetic")
    if data_dir is not None and (data_dir / "11_donors.npz").exists():
        donors_path, n_donors, gen_s = ensure_donors(work, data_dir, donors_rows)
        if gen_s:
            generated.append(f"donors in {gen_s:.0f} s")
        files.append(
            InputFile(
                f"donors {human(n_donors)} parquet", donors_path, n_donors, "parquet", "donors"
            )
        )
    else:
        results.note("no donors file: pass --data with 11_donors.npz")
    if csv_file is not None:
        files.append(csv_file)
    if generated:
        log.info("generated: %s", "; ".join(generated))
    return files


def describe_data(sizes: list[int], files: list[InputFile], inmem_rows: int) -> str:
    """The data line of the report."""
    return (
        f"synthetic tables of {', '.join(f'{n:,}' for n in sizes)} rows: `{ID_COLUMN}` (text), "
        f"{N_NUMERIC} float64 columns (gaussians and lognormals tied to {N_LATENT} latent "
        f"factors, {MISSING_RATE:.0%} missing each), {len(CAT_LEVELS)} text categoricals "
        f"({min(CAT_LEVELS)}-{max(CAT_LEVELS)} levels), {ANOMALY_RATE:.1%} planted anomalies; "
        f"Parquet row groups of {CHUNK_ROWS:,} rows"
        + (f"; CSV of the {sizes[0]:,}-row table" if any(f.fmt == "csv" for f in files) else "")
        + (
            f"; ADBench 11_donors ({next(f.rows for f in files if f.kind == 'donors'):,} "
            "rows x 10 float64 + `record_id`)"
            if any(f.kind == "donors" for f in files)
            else ""
        )
        + f"; in-memory table: {inmem_rows:,} x {INMEM_FEATURES} correlated gaussians"
    )


# -- samples and the in-memory table ---------------------------------------------------------
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
