"""Fresh processes for the file-to-file runs (timing and peak RSS), and the two kinds of child:
``score`` (the project's ``score_file``) and ``io`` (the I/O limit: pyarrow alone).

A child is ``python -m benchmarks.speed --child KIND SPEC`` started from the project root; it
writes its result (JSON) to the file named in the spec.
"""

from __future__ import annotations

import cProfile
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmarks.common import PROJECT_ROOT, basic_logging
from benchmarks.speed.data import ID_COLUMN

IO_ROW_GROUP_ROWS = 262_144  # row groups written by the I/O limit
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


def default_scored_schema() -> pa.Schema:
    return pa.schema([(ID_COLUMN, pa.string()), *DEFAULT_SCORE_FIELDS])


# -- memory, files ---------------------------------------------------------------------------
def proc_status(key: str) -> float:
    """A ``/proc/self/status`` memory line (``VmHWM``, ``VmRSS``) in MiB; NaN if unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return math.nan


def fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def warm_page_cache(path: Path) -> float:
    """Read the file once (so every timed reader finds it in the page cache); seconds taken."""
    started = time.perf_counter()
    with path.open("rb") as handle:
        while handle.read(16 << 20):
            pass
    return time.perf_counter() - started


# -- the children ----------------------------------------------------------------------------
def child_score(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the detector, then score one file with ``pipeline.batch.score_file``."""
    started = time.perf_counter()
    from pipeline.batch import score_file
    from pipeline.detector import AnomalyDetector
    from pipeline.registry import ModelRef

    imported = time.perf_counter()
    detector = AnomalyDetector.load(spec["model"])
    loaded = time.perf_counter()
    rss_loaded = proc_status("VmHWM")
    ref = ModelRef(name=MODEL_NAME, version=MODEL_VERSION, run_id="bench", alias="champion")
    output_root = Path(spec["output_root"])

    def run() -> Any:  # a pipeline.outputs.Manifest
        return score_file(
            detector, ref, Path(spec["input"]), output_root, spec["run_date"], force=True
        )

    profiler = cProfile.Profile() if spec.get("profile") else None
    t0 = time.perf_counter()
    manifest = profiler.runcall(run) if profiler is not None else run()
    score_s = time.perf_counter() - t0
    if profiler is not None:
        profiler.dump_stats(spec["profile"])
    out_dir = manifest.output_dir or str(output_root / spec["run_date"] / Path(spec["input"]).stem)
    return {
        "import_s": imported - started,
        "load_s": loaded - imported,
        "score_s": score_s,
        "rss_after_load_mib": rss_loaded,
        "rows_read": manifest.rows_read,
        "rows_scored": manifest.rows_scored,
        "rows_flagged": manifest.rows_flagged,
        "rows_rejected": manifest.rows_rejected,
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
    fsync(out)
    return {"score_s": time.perf_counter() - started, "rows_read": rows}


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "score": child_score,
    "io": child_io,
}


def child_main(kind: str, raw_spec: str) -> int:
    """The ``--child KIND SPEC`` entry: run the child, write its result file."""
    basic_logging()
    spec = json.loads(raw_spec)
    result = CHILDREN[kind](spec)
    # the peak RSS of this process image: ru_maxrss from wait4 cannot be used, as Linux carries
    # the parent's high-water mark over a vfork + exec (subprocess' default) into the child's
    result["peak_rss_mib"] = proc_status("VmHWM")
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


# -- the parent's side -----------------------------------------------------------------------
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
