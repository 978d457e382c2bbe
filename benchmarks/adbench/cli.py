"""The command line: ``python -m benchmarks.adbench [options]``: the ADBench suite
(``--data``), the categorical suite (``--categorical``), or both in one run (then also
``quality.md``)."""

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

from benchmarks.adbench.data import SEEDS, select_datasets, unknown_names
from benchmarks.adbench.detectors import (
    DETECTORS,
    VAE_NAME,
    build_specs,
    parse_overrides,
    source_hash,
    vae_settings,
)
from benchmarks.adbench.report import (
    SuiteResult,
    evaluate_targets,
    markdown_report,
    plot,
    quality_report,
    summarise,
    timing_machines,
)
from benchmarks.adbench.runner import RunConfig, run
from benchmarks.adbench.suites import Suite, adbench_suite, categorical_suite
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
        description="Unsupervised detection-quality benchmark of vae-anomaly vs PyOD (and AVF) "
        "on ADBench (--data) and on categorical tables (--categorical); at least one of the two.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder with the ADBench .npz files (e.g. ../shared/datasets/adbench)",
    )
    parser.add_argument(
        "--categorical",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder with the categorical .csv tables (e.g. ../shared/datasets/categorical)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--quick",
        action="store_true",
        help="only a few small / medium datasets of each suite",
    )
    which.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="only these datasets, of either suite ('6_cardio' or 'cardio', 'cmc')",
    )
    parser.add_argument(
        "--half",
        choices=("A", "B", "all"),
        default="all",
        help="alphabetical list of each suite, alternating: A = 1st, 3rd, ...; B = 2nd, 4th, ...",
    )
    parser.add_argument(
        "--detectors",
        nargs="+",
        choices=DETECTORS,
        default=list(DETECTORS),
        metavar="NAME",
        help=f"detectors to run (default all: {', '.join(DETECTORS)}; avf: categorical only)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=list(SEEDS),
        help="seeds of the splits (the ADBench protocol uses 1 2 3)",
    )
    parser.add_argument(
        "--model-seeds",
        nargs="+",
        type=int,
        default=None,
        metavar="SEED",
        help="run vae-anomaly once per model seed (training.seed) and report their mean "
        "(default: the settings' seed only)",
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
    args = parser.parse_args(argv)
    if args.data is None and args.categorical is None:
        parser.error("give --data (ADBench), --categorical (categorical tables) or both")
    return args


def _suites(args: argparse.Namespace) -> list[Suite]:
    suites = []
    for option, folder, make in (
        ("--data", args.data, adbench_suite),
        ("--categorical", args.categorical, categorical_suite),
    ):
        if folder is None:
            continue
        resolved = folder.expanduser().resolve()
        if not resolved.is_dir():
            raise SystemExit(f"{option} {folder}: not a folder")
        suites.append(make(resolved))
    return suites


def _datasets(args: argparse.Namespace, suites: list[Suite]) -> dict[str, list[str]]:
    """Each suite's datasets; every ``--only`` name must be in one of the suites."""
    names = {suite.name: suite.list_datasets() for suite in suites}
    if args.only:
        unknown = unknown_names(args.only, *names.values())
        if unknown:
            known = "; ".join(f"{s.label}: {', '.join(names[s.name])}" for s in suites)
            raise SystemExit(f"unknown dataset(s) {unknown}; known: {known}")
    return {
        suite.name: select_datasets(
            names[suite.name], args.only, args.quick, args.half, suite.quick, strict=False
        )
        for suite in suites
    }


def run_suite(
    suite: Suite,
    datasets: list[str],
    detectors: list[str],
    args: argparse.Namespace,
    settings: Any,
    meta: dict[str, Any],
) -> SuiteResult | None:
    """One suite: run, then ``<name>_per_split.csv``, ``_table.csv``, ``.md`` and ``.png``."""
    config = RunConfig(
        suite=suite,
        datasets=datasets,
        seeds=tuple(args.seeds),
        specs=build_specs(detectors, settings, meta["code_hash"], suite.kind, args.model_seeds),
        out_dir=args.out,
        cache_dir=args.cache_dir,
        pyod_version=meta["pyod"],
        reuse_vae=args.reuse_vae,
        refresh_baselines=args.refresh_baselines,
        meta=meta,
    )
    log.info(
        "%s: %d datasets x %d seeds x %d detectors; results -> %s",
        suite.label,
        len(datasets),
        len(config.seeds),
        len(detectors),
        args.out,
    )
    per_split = run(config)
    if per_split.empty:
        log.error("%s: no result", suite.label)
        return None
    summary = summarise(per_split, detectors)
    targets = evaluate_targets(summary, suite.rules, timing_machines(per_split))
    args.out.mkdir(parents=True, exist_ok=True)
    per_split.to_csv(args.out / f"{suite.name}_per_split.csv", index=False)
    summary.table.to_csv(args.out / f"{suite.name}_table.csv", float_format="%.6g")
    report = markdown_report(per_split, summary, targets, meta, suite)
    (args.out / f"{suite.name}.md").write_text(report)
    plot(summary, args.out / f"{suite.name}.png", suite.label)
    print()
    print(report.split("## Per dataset")[0].rstrip())
    print()
    return SuiteResult(suite, per_split, summary, targets)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # the project's log records go into the results, not the console
    setup_logging(log, keep_project_records=True)
    suites = _suites(args)
    datasets = _datasets(args, suites)

    import sklearn
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    detectors = list(dict.fromkeys(args.detectors))
    overrides = parse_overrides(args.vae_set)
    settings = vae_settings(overrides) if VAE_NAME in detectors else None
    model_seeds = list(dict.fromkeys(args.model_seeds)) if args.model_seeds else None
    args.model_seeds = model_seeds
    effective = relevant_settings(settings) if settings is not None else {}
    if model_seeds and effective:
        effective["training"]["seed"] = model_seeds if len(model_seeds) > 1 else model_seeds[0]
    meta: dict[str, Any] = {
        "date": now_iso(),
        "machine": machine_description(),
        "python": platform.python_version(),
        "torch": f"{torch.__version__} ({torch.get_num_threads()} threads)",
        "pyod": package_version("pyod"),
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "command": command_line("benchmarks.adbench", sys.argv[1:] if argv is None else argv),
        "half": args.half,
        "overrides": overrides,
        "settings": effective,
        "code_hash": source_hash(),
        "model_seeds": model_seeds,
    }
    started = time.perf_counter()
    results = []
    for suite in suites:
        chosen = datasets[suite.name]
        suite_detectors = suite.detectors(detectors)
        if not chosen or not suite_detectors:
            log.warning(
                "%s: %s: suite skipped",
                suite.label,
                "no dataset selected" if not chosen else "no detector applies",
            )
            continue
        result = run_suite(suite, chosen, suite_detectors, args, settings, meta)
        if result is not None:
            results.append(result)
    if not results:
        raise SystemExit("no result")
    if len(suites) > 1 and len(results) > 1:
        report = quality_report(results, meta)
        (args.out / "quality.md").write_text(report)
        print(report.split("## Targets")[0].rstrip())
    log.info("done in %.0f s; results in %s", time.perf_counter() - started, args.out)
    return 0
