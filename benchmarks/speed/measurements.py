"""What a run collects: one ``Measurement`` per line of the results table, in ``Results``."""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("benchmarks.speed")


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

    def ratio(self, mine: str, theirs: str) -> float:
        """Throughput of measurement ``mine`` over ``theirs``; NaN when either is missing."""
        a, b = self.find(mine), self.find(theirs)
        if a is None or b is None or not b.rows_per_s:
            return math.nan
        return a.rows_per_s / b.rows_per_s
