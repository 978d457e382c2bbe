"""What the benchmarks share: paths, logging, the machine and software description, the
effective settings, product targets and markdown helpers.

Only the standard library is imported here at module level: the speed benchmark's scoring
processes import this module, and they time the product's imports themselves.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
DEFAULT_OUT = BENCH_DIR / "results"

PROJECT_LOGGERS = ("pipeline", "vae")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


# -- logging ---------------------------------------------------------------------------------
def basic_logging() -> None:
    """Warnings and errors to the console."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)


def setup_logging(log: logging.Logger, *, keep_project_records: bool = False) -> None:
    """The benchmark's own progress (``log``) at INFO, the project's loggers at WARNING;
    with ``keep_project_records`` the project's records stop at their loggers (collected into
    the results by a handler, not shown on the console)."""
    basic_logging()
    log.setLevel(logging.INFO)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
        if keep_project_records:
            logging.getLogger(name).propagate = False


# -- machine, software, command --------------------------------------------------------------
def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_description() -> str:
    cpu = platform.processor()
    if not cpu or cpu in {"x86_64", "aarch64", "arm64", "i386"}:
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.lower().startswith(("model name", "hardware")):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu or platform.machine()}, {os.cpu_count()} CPU(s), {system}"


def now_iso() -> str:
    """The local time with its offset, to the second (the reports' ``date``)."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def command_line(module: str, args: Sequence[str]) -> str:
    """``python -m <module> <args>``, as recorded in the reports."""
    return " ".join([f"python -m {module}", *args])


# -- the product's settings ------------------------------------------------------------------
def relevant_settings(settings: Any) -> dict[str, Any]:
    """The settings sections that can change scores (tracking and output paths left out)."""
    dumped = settings.model_dump(mode="json")
    dumped.get("scoring", {}).pop("output_root", None)
    return {k: dumped[k] for k in ("data", "model", "training", "scoring") if k in dumped}


def default_settings() -> Any:
    """``Settings()``: the project's current defaults (environment variables included)."""
    from pipeline.config import Settings

    return Settings()


def frame_of(x: Any) -> Any:
    """A 2-d array as the DataFrame vae-anomaly gets: columns ``x0..x{d-1}``."""
    import pandas as pd

    return pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])


# -- targets ---------------------------------------------------------------------------------
@dataclass
class Target:
    """A product target: ``value`` against ``needed`` (``>=``, or ``<=`` when lower is
    better); not measurable (``met`` None) when either is not finite."""

    text: str
    value: float
    needed: float
    higher_is_better: bool = True
    unit: str = "x"  # x (ratio), rows/s, points, s
    detail: str = ""  # the numbers the value comes from
    key: str = ""  # the measurement whose profile explains a miss
    error: str = ""  # the run behind the value failed: a miss
    comparable: bool = True  # False: value and needed were measured apart (met is None)

    @property
    def met(self) -> bool | None:
        if self.error:
            return False
        if not self.comparable:
            return None
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


# -- markdown --------------------------------------------------------------------------------
def md_row(*cells: object) -> str:
    """``| a | b | c |``"""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_header(columns: Sequence[str], align: str) -> list[str]:
    """The header and separator lines of a table; ``align`` has one letter per column,
    ``l`` (left) or ``r`` (right, numbers)."""
    if len(columns) != len(align):
        raise ValueError(f"{len(columns)} columns, {len(align)} alignments")
    separator = "|" + "".join("---:|" if a == "r" else "---|" for a in align)
    return [md_row(*columns), separator]


def fmt_seconds(value: float) -> str:
    """``-`` when not finite, one decimal from 10 s, two below."""
    if not math.isfinite(value):
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
