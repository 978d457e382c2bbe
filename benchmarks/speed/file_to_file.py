"""The ``files`` part: a model per table kind, then per file the project's ``score_file`` and
the I/O limit, each repeat in fresh processes (see ``harness``)."""

from __future__ import annotations

import logging
import pstats
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from benchmarks.common import Target, default_settings
from benchmarks.speed.data import InputFile, sample_frame
from benchmarks.speed.harness import (
    ChildFailedError,
    default_scored_schema,
    run_child,
    warm_page_cache,
)
from benchmarks.speed.measurements import Results

log = logging.getLogger("benchmarks.speed")


# -- models ----------------------------------------------------------------------------------
def train_file_model(kind: str, source: Path, n: int, work: Path, results: Results) -> Path:
    """Fit the default detector on a sample of ``source``; save it under ``work/models``."""
    from pipeline.detector import AnomalyDetector

    frame = sample_frame(source, n)
    started = time.perf_counter()
    detector = AnomalyDetector(default_settings()).fit(frame)
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


def train_file_models(
    files: list[InputFile], n: int, work: Path, results: Results
) -> dict[str, Path]:
    """The synthetic tables' model (sampled from the first, the smallest) and donors'."""
    models: dict[str, Path] = {}
    if files:
        models["synthetic"] = train_file_model("synthetic", files[0].path, n, work, results)
        donors = [f for f in files if f.kind == "donors"]
        if donors:
            models["donors"] = train_file_model("donors", donors[0].path, n, work, results)
    return models


# -- file to file ----------------------------------------------------------------------------
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


# -- profile ---------------------------------------------------------------------------------
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


def profile_files(
    files: list[InputFile],
    targets: list[Target],
    models: dict[str, Path],
    work: Path,
    run_date: str,
    profile: str,
    results: Results,
) -> dict[str, pstats.Stats]:
    """cProfile of the file-to-file scoring of the synthetic Parquet table nearest 1M rows,
    with ``--profile`` or (by default) when a file-to-file target is missed."""
    if not files or not (
        profile == "always"
        or (profile == "auto" and any(t.met is False and t.key.startswith("f2f:") for t in targets))
    ):
        return {}
    largest_parquet = min(
        (f for f in files if f.kind == "synthetic" and f.fmt == "parquet"),
        key=lambda f: abs(f.rows - 1_000_000),
    )
    log.info("profiling file-to-file scoring of %s", largest_parquet.label)
    try:
        stats = profile_file(largest_parquet, models["synthetic"], work, run_date)
    except ChildFailedError as exc:
        results.note(f"file-to-file profile failed: {exc}")
        return {}
    return {f"file-to-file `score_file` of {largest_parquet.label}": stats}
