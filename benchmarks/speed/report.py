"""The product targets and the outputs: ``speed.md``, ``speed.json``, ``speed_profile.txt``
and the summary on the console."""

from __future__ import annotations

import cProfile
import io
import json
import math
import pstats
from pathlib import Path
from typing import Any

from benchmarks.common import PROJECT_ROOT, Target, fmt_seconds, md_header, md_row
from benchmarks.speed.data import INMEM_FEATURES, InputFile, human
from benchmarks.speed.measurements import Measurement, Results

# product targets (2 CPU cores, default settings, medians of the repeats)
TARGET_F2F_VS_IO = 0.5  # file-to-file Parquet throughput / I/O-limit throughput
TARGET_INMEM_ROWS_S = 1_000_000.0
TARGET_INMEM_VS_PYOD = 10.0
TARGET_TRAIN_VS_PYOD = 5.0
TARGET_RSS_RATIO = 1.2  # peak RSS scoring the largest table / scoring the smallest


# -- targets ---------------------------------------------------------------------------------
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
                detail=f"{fmt_rate(project.rows_per_s)} vs {fmt_rate(limit.rows_per_s)} rows/s",
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
                    f"peak RSS scoring {human(synthetic[-1].rows)} / "
                    f"{human(synthetic[0].rows)} rows (Parquet)",
                    float(b) / float(a),
                    TARGET_RSS_RATIO,
                    higher_is_better=False,
                    detail=f"{fmt_mib(b)} vs {fmt_mib(a)} MiB",
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


# -- cells -----------------------------------------------------------------------------------
def fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else "-"


def fmt_mib(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, float | int) and math.isfinite(value) else "-"


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
        pyod = results.ratio("score:project", "score:pyod")
        cell = f"{pyod:.1f}x PyOD" if math.isfinite(pyod) else ""
        return cell, f">= {TARGET_INMEM_ROWS_S:,.0f} rows/s, >= {TARGET_INMEM_VS_PYOD:g}x PyOD"
    if m.key == "train:project":
        ratio = results.ratio("train:project", "train:pyod")
        cell = f"{ratio:.1f}x PyOD" if math.isfinite(ratio) else ""
        return cell, f">= {TARGET_TRAIN_VS_PYOD:g}x PyOD"
    if m.key == "fit:project":
        ratio = results.ratio("fit:project", "fit:pyod")
        return (f"{ratio:.1f}x PyOD" if math.isfinite(ratio) else ""), ""
    return "", ""


def _rows_cell(m: Measurement) -> str:
    text = m.extra.get("rows_text")
    return f"{m.rows:,}" if not text else str(text)


# -- speed.md --------------------------------------------------------------------------------
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
        *md_header(["target", "measured", "needed", "result", "from"], "lrrll"),
    ]
    for t in targets:
        needed = ("<= " if not t.higher_is_better else ">= ") + t.fmt(t.needed)
        result = t.verdict if t.met is not False else f"**MISS**: {t.gap}"
        lines.append(md_row(t.text, t.fmt(t.value), needed, result, t.detail))
    if not targets:
        lines.append("| (none measured) | | | | |")
    lines += [
        "",
        "## Measurements",
        "",
        *md_header(
            ["measurement", "data", "rows", "median s", "rows/s", "ratio", "target"], "llrrrll"
        ),
    ]
    for m in results.items.values():
        ratio, target = _row_ratio(results, m)
        lines.append(
            md_row(
                m.what,
                m.data,
                _rows_cell(m),
                fmt_seconds(m.median_s),
                fmt_rate(m.rows_per_s),
                ratio,
                target,
            )
        )
    per_file = [
        (f, results.find(f"f2f:project:{f.label}"), results.find(f"f2f:io:{f.label}"))
        for f in files
    ]
    if any(p is not None for _, p, _ in per_file):
        lines += ["", "## Per file: the scoring process (medians)", ""]
        lines += md_header(
            [
                "input",
                "MiB",
                "rows flagged",
                "imports s",
                "detector load s",
                "scoring s",
                "peak RSS MiB",
                "RSS after load MiB",
                "I/O limit s",
                "I/O limit peak RSS MiB",
            ],
            "lrrrrrrrrr",
        )
        for f, p, io_m in per_file:
            if p is None:
                continue
            e = p.extra
            io_s = fmt_seconds(io_m.median_s) if io_m is not None else "-"
            io_rss = io_m.extra.get("peak_rss_mib") if io_m is not None else None
            lines.append(
                md_row(
                    f.label,
                    f"{f.size_mib:,.0f}",
                    e.get("rows_flagged", "-"),
                    fmt_seconds(e.get("import_s", math.nan)),
                    fmt_seconds(e.get("load_s", math.nan)),
                    fmt_seconds(p.median_s),
                    fmt_mib(e.get("peak_rss_mib")),
                    fmt_mib(e.get("rss_after_load_mib")),
                    io_s,
                    fmt_mib(io_rss),
                )
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


# -- speed_profile.txt -----------------------------------------------------------------------
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


# -- writing ---------------------------------------------------------------------------------
def write_outputs(
    out: Path,
    results: Results,
    targets: list[Target],
    files: list[InputFile],
    meta: dict[str, Any],
    profiles: dict[str, pstats.Stats | cProfile.Profile],
) -> str:
    """``speed_profile.txt`` (when profiled), ``speed.md``, ``speed.json``; the report."""
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
    return report


def print_summary(report: str, targets: list[Target]) -> None:
    """The report's tables and one line per target, with PASS / MISS."""
    print()
    print(report.split("## What is measured")[0].rstrip())
    print()
    for t in targets:
        print(
            f"{t.verdict:4}  {t.text}: {t.fmt(t.value)} (needed "
            f"{'>=' if t.higher_is_better else '<='} {t.fmt(t.needed)}; {t.detail})"
            + (f" -- {t.gap}" if t.gap else "")
        )
