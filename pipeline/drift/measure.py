"""The batch side of drift: bin counts accumulated chunk by chunk, PSI, KS and the
chi-square test per column, and the report (see :mod:`pipeline.drift` for the measures)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.drift.reference import ColumnReference, DriftReference, Kind

Status = Literal["ok", "warn", "drift"]

EPSILON = 1e-4  # floor of a bin's share in the PSI (an empty bin gives a finite term)
PSI_WARN = 0.1
PSI_DRIFT = 0.25
MIN_ROWS = 50  # a smaller batch never raises warn / drift
NOISE_Z = 3.09  # one-sided 99.9% normal quantile: the chi-square test is at the 0.1% level


def _chi2_quantile(df: int, z: float = NOISE_Z) -> float:
    """Upper quantile of a chi-square with ``df`` degrees of freedom (Wilson-Hilferty)."""
    if df <= 0:
        return 0.0
    a = 2.0 / (9.0 * df)
    return float(df * max(0.0, 1.0 - a + z * math.sqrt(a)) ** 3)


@dataclass(frozen=True)
class ColumnDrift:
    """How far one column of a batch moved from training."""

    column: str
    kind: Kind
    psi: float
    ks: float | None  # numeric only: KS statistic of the binned CDFs
    missing_rate_reference: float
    missing_rate_batch: float
    status: Status
    chi2: float  # Pearson chi-square statistic of training vs batch bin counts
    significant: bool  # chi2 above its 99.9% quantile: the change is not sampling noise
    largest_change: str  # the bin whose share moved most, e.g. "'EUR': 10.0% -> 41.2%"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    """Per-column drift of one batch; ``drifted`` when any column is at ``drift``."""

    rows: int
    reference_rows: int
    columns: list[ColumnDrift]
    min_rows: int = MIN_ROWS

    @property
    def drifted(self) -> bool:
        return any(c.status == "drift" for c in self.columns)

    @property
    def worst(self) -> list[ColumnDrift]:
        """Columns at ``drift`` or ``warn``, highest PSI first."""
        raised = [c for c in self.columns if c.status != "ok"]
        return sorted(raised, key=lambda c: (c.status != "drift", -c.psi))

    @property
    def note(self) -> str:
        """Why the statuses may say less than the numbers (small batch), else empty."""
        if self.rows < self.min_rows:
            return (
                f"only {self.rows} rows: too few to judge drift (at least {self.min_rows} "
                "needed), no column is flagged"
            )
        return ""

    @property
    def warning(self) -> str:
        """A sentence naming the drifted columns (worst first); empty when not drifted."""
        if not self.drifted:
            return ""
        drifted = [c for c in self.worst if c.status == "drift"]
        named = ", ".join(f"{c.column} (PSI {c.psi:.2f}; {c.largest_change})" for c in drifted[:5])
        more = f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""
        return (
            f"data drift: {len(drifted)} of {len(self.columns)} columns differ from the "
            f"training data: {named}{more}. Scores and flags of this batch may not mean what "
            "they meant in training; check the source, or retrain on recent data."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for a run manifest."""
        return {
            "rows": self.rows,
            "reference_rows": self.reference_rows,
            "min_rows": self.min_rows,
            "drifted": self.drifted,
            "warning": self.warning,
            "note": self.note,
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DriftReport:
        return cls(
            rows=int(values["rows"]),
            reference_rows=int(values["reference_rows"]),
            min_rows=int(values.get("min_rows", MIN_ROWS)),
            columns=[ColumnDrift(**c) for c in values["columns"]],
        )


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(len(counts))


def _homogeneity_chi2(first: np.ndarray, second: np.ndarray) -> tuple[float, int]:
    """Pearson's chi-square statistic of two count vectors over the same bins, and its dof."""
    pooled = first + second
    occupied = pooled > 0
    n_first, n_second = int(first.sum()), int(second.sum())
    if n_first == 0 or n_second == 0 or occupied.sum() < 2:
        return 0.0, 0
    total = n_first + n_second
    expected_first = pooled[occupied] * (n_first / total)
    expected_second = pooled[occupied] * (n_second / total)
    chi2 = np.sum((first[occupied] - expected_first) ** 2 / expected_first) + np.sum(
        (second[occupied] - expected_second) ** 2 / expected_second
    )
    return float(chi2), int(occupied.sum()) - 1


def _column_drift(
    reference: ColumnReference, counts: np.ndarray, rows: int, min_rows: int
) -> ColumnDrift:
    ref_counts = np.asarray(reference.counts, dtype=np.int64)
    r, b = _shares(ref_counts), _shares(counts)
    r_floor, b_floor = np.maximum(r, EPSILON), np.maximum(b, EPSILON)
    psi = float(np.sum((b_floor - r_floor) * np.log(b_floor / r_floor))) if rows else 0.0
    ks = None
    if reference.kind == "numeric":
        # binned CDFs of the non-missing values
        ref_values, batch_values = _shares(ref_counts[:-1]), _shares(counts[:-1])
        if ref_values.sum() > 0 and batch_values.sum() > 0:
            ks = float(np.max(np.abs(np.cumsum(ref_values) - np.cumsum(batch_values))))
        else:
            ks = 0.0
    chi2, df = _homogeneity_chi2(ref_counts, counts)
    significant = chi2 > _chi2_quantile(df)
    status: Status = "ok"
    if rows >= min_rows and significant:
        status = "drift" if psi >= PSI_DRIFT else "warn" if psi >= PSI_WARN else "ok"
    moved = int(np.argmax(np.abs(b - r)))
    label = reference.bin_labels()[moved]
    return ColumnDrift(
        column=reference.column,
        kind=reference.kind,
        psi=psi,
        ks=ks,
        missing_rate_reference=float(r[-1]),
        missing_rate_batch=float(b[-1]),
        status=status,
        chi2=chi2,
        significant=bool(significant),
        largest_change=f"{label}: {r[moved]:.1%} -> {b[moved]:.1%}",
    )


class DriftAccumulator:
    """Bin counts of a batch, added chunk by chunk; :meth:`result` gives the report.

    Memory is one small integer array per column, whatever the number of rows.
    """

    def __init__(self, reference: DriftReference, min_rows: int = MIN_ROWS) -> None:
        self.reference = reference
        self.min_rows = min_rows
        self.rows = 0
        self.counts = {c.column: np.zeros(c.n_bins, dtype=np.int64) for c in reference.columns}

    def update(self, frame: pd.DataFrame) -> DriftAccumulator:
        """Add one chunk: a DataFrame holding (at least) the model columns."""
        missing = [c.column for c in self.reference.columns if c.column not in frame.columns]
        if missing:
            raise ValueError(f"chunk lacks the model column(s) {missing}")
        for column in self.reference.columns:
            self.counts[column.column] += column.bin_counts(frame[column.column])
        self.rows += len(frame)
        return self

    def merge(self, other: DriftAccumulator) -> DriftAccumulator:
        """Add the counts of another accumulator over the same reference (e.g. a partition)."""
        if other.reference != self.reference:
            raise ValueError("cannot merge drift counts made against different references")
        for column, counts in other.counts.items():
            self.counts[column] += counts
        self.rows += other.rows
        return self

    def result(self) -> DriftReport:
        """The drift of everything added so far."""
        columns = [
            _column_drift(c, self.counts[c.column], self.rows, self.min_rows)
            for c in self.reference.columns
        ]
        return DriftReport(
            rows=self.rows,
            reference_rows=self.reference.rows,
            columns=columns,
            min_rows=self.min_rows,
        )
