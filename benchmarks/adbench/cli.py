"""The command line: ``python -m benchmarks.adbench [options]``."""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.adbench.data import QUICK, SEEDS, list_datasets, select_datasets
from benchmarks.adbench.detectors import (
    DETECTORS,
    VAE_NAME,
    build_specs,
    parse_overrides,
    source_hash,
    vae_settings,
)
from benchmarks.adbench.report import evaluate_targets, markdown_report, plot, summarise
from benchmarks.adbench.runner import RunConfig, run
from benchmarks.common import (
    BENCH_DIR,
    DEFAULT_OUT,
    command_line,
    machine_description,
    now_iso,
    package_version,
    relevant_settings,
    setup_logging,
)

DEFAULT_CACHE = BENCH_DIR / "cache"

log = logging.getLogger("benchmarks.adbench")


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
    # the project's log records go into the results, not the console
    setup_logging(log, keep_project_records=True)
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
    pyod_version = package_version("pyod")
    datasets = select_datasets(list_datasets(data_dir), args.only, args.quick, args.half)
    if not datasets:
        raise SystemExit("no dataset selected")
    meta: dict[str, Any] = {
        "date": now_iso(),
        "machine": machine_description(),
        "python": platform.python_version(),
        "torch": f"{torch.__version__} ({torch.get_num_threads()} threads)",
        "pyod": pyod_version,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "command": command_line("benchmarks.adbench", sys.argv[1:] if argv is None else argv),
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
