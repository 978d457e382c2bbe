"""The command line: ``python -m benchmarks.speed [options]`` (and the internal
``--child KIND SPEC`` entry of the subprocesses)."""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import logging
import platform
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from benchmarks.common import (
    DEFAULT_OUT,
    command_line,
    default_settings,
    machine_description,
    now_iso,
    package_version,
    relevant_settings,
    setup_logging,
)
from benchmarks.speed.data import InputFile, describe_data, human, input_files
from benchmarks.speed.file_to_file import bench_file, profile_files, train_file_models
from benchmarks.speed.harness import child_main
from benchmarks.speed.in_memory import bench_in_memory
from benchmarks.speed.measurements import Results
from benchmarks.speed.report import evaluate_targets, print_summary, write_outputs

DEFAULT_WORK = Path(tempfile.gettempdir()) / "vae-anomaly-speed"
DEFAULT_ROWS = (1_000_000, 10_000_000)
QUICK_ROWS = (100_000, 300_000)
TRAIN_ROWS, QUICK_TRAIN_ROWS = 50_000, 5_000
INMEM_ROWS, QUICK_INMEM_ROWS = 1_000_000, 100_000
QUICK_DONORS_ROWS = 100_000

log = logging.getLogger("benchmarks.speed")


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
        help=f"tiny sizes ({' '.join(map(human, QUICK_ROWS))} rows, in-memory "
        f"{human(QUICK_INMEM_ROWS)}, training sample {human(QUICK_TRAIN_ROWS)}, donors "
        f"{human(QUICK_DONORS_ROWS)}, 1 repeat); results to a temp folder unless --out",
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


def run_meta(raw: Sequence[str], repeats: int, train_rows: int, work: Path) -> dict[str, Any]:
    """Machine, versions, command and settings of the run (``data`` and profiles come later)."""
    import pandas as pd
    import torch

    return {
        "date": now_iso(),
        "machine": machine_description(),
        "python": platform.python_version(),
        "torch": f"{torch.__version__} ({torch.get_num_threads()} threads by default)",
        "pyarrow": pa.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "pyod": package_version("pyod"),
        "command": command_line("benchmarks.speed", raw),
        "repeats": repeats,
        "settings": relevant_settings(default_settings()),
        "train_rows": train_rows,
        "work": str(work),
        "profiles": [],
    }


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["--child"]:
        return child_main(raw[1], raw[2])
    args = parse_args(raw)
    setup_logging(log)
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

    run_date = dt.date.today().isoformat()
    meta = run_meta(raw, repeats, train_rows, work)
    results = Results()
    started = time.perf_counter()

    files: list[InputFile] = []
    if "files" in args.parts:
        files = input_files(work, sizes, not args.no_csv, data_dir, donors_rows, results)
    meta["data"] = describe_data(sizes, files, inmem_rows)
    models = train_file_models(files, train_rows, work, results)
    for item in files:
        bench_file(item, models[item.kind], repeats, work, run_date, results)

    profiles: dict[str, pstats.Stats | cProfile.Profile] = {}
    if "memory" in args.parts:
        try:
            profiles.update(bench_in_memory(inmem_rows, train_rows, repeats, results, args.profile))
        except Exception as exc:  # keep the file results: report what was measured
            log.exception("in-memory part failed")
            results.note(f"in-memory / training part failed: {type(exc).__name__}: {exc}")

    targets = evaluate_targets(results, files)
    file_profiles = profile_files(files, targets, models, work, run_date, args.profile, results)
    profiles = {**file_profiles, **profiles}

    report = write_outputs(out, results, targets, files, meta, profiles)
    print_summary(report, targets)
    log.info("done in %.0f s; results in %s", time.perf_counter() - started, out)
    return 0
