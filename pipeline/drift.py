"""Per-column drift of a scoring batch against the training data, computed in a streaming way.

A model learns what normal looked like in training; when the data it scores no longer looks
like that (a new currency, prices in cents instead of dollars, a column suddenly empty), its
scores stop meaning what they meant. This module measures, per model column, how far a batch
has moved from the training data, so that a scoring run can say so next to its flags.

Usage (the batch arrives in chunks; memory stays fixed whatever the file size)::

    reference = DriftReference.fit(detector.reference_frame_, detector.schema_)
    accumulator = DriftAccumulator(reference)
    for chunk in chunks:                 # model columns; numeric already float
        accumulator.update(chunk)
    report = accumulator.result()        # DriftReport
    report.drifted, report.warning, report.to_dict()

``DriftReference`` is small and JSON-safe (``to_dict`` / ``from_dict``: bin edges, category
names and integer counts, no pickle), so it can be saved next to a model and loaded with it.
Accumulators of separate partitions can be combined with :meth:`DriftAccumulator.merge`;
counts are integers, so chunked, merged and whole-batch results are exactly equal.

Bins. Numeric column: cut points at the training deciles of the non-missing values (actual data
values, duplicates removed, so a column with few distinct values gets fewer bins); the outer
bins are open-ended (below the first cut, at or above the last), every value bin holds
training rows, and missing values have a bin of their own. Categorical column: the most
frequent training categories (up to ``max_categories``, spelled with
:func:`pipeline.preprocess.categorical_strings` so pandas and pyarrow readings agree), one
"other" bin for the rest and for categories never seen in training, and a missing bin.

Measures, per column:

- ``psi``: population stability index over all bins (missing included),
  ``sum((b - r) * ln(b / r))`` with ``r`` / ``b`` the training / batch shares of each bin,
  each floored at ``EPSILON`` (1e-4) so an empty bin gives a large but finite term;
- ``ks`` (numeric columns only): Kolmogorov-Smirnov statistic between the *binned* CDFs of the
  non-missing values, i.e. the largest absolute difference of the cumulative shares at the bin
  edges (a lower bound of the exact KS statistic, exact at the edges);
- the missing rate in training and in the batch (text that is not a number and inf count as
  missing in numeric columns, as in training; the scoring run feeds only the rows it scored,
  so rows rejected for such values are not part of the batch's drift);
- ``status``: ``drift`` when PSI >= 0.25, ``warn`` when PSI >= 0.1, else ``ok``.

No false alarms on small batches. PSI of two samples from the same distribution is positive
by chance, and grows fast as the batch shrinks: with 50 rows a decile bin is often empty, and
an empty bin alone adds ~0.2-0.7 through the epsilon floor. So (1) a batch with fewer than
``min_rows`` (default 50) rows never gets ``warn`` or ``drift`` (every column is ``ok`` and the
report's ``note`` says why), and (2) in larger batches a column is only raised above ``ok``
when its change is also statistically real: Pearson's chi-square test of homogeneity of the
training and batch bin counts must reject "same distribution" at the 0.1% level
(``significant``). PSI says how large a change is; the test says it is not sampling noise.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.preprocess import MISSING_CATEGORY, categorical_strings, category_codes
from pipeline.schema import TableSchema, to_float

Kind = Literal["numeric", "categorical"]
Status = Literal["ok", "warn", "drift"]

EPSILON = 1e-4  # floor of a bin's share in the PSI (an empty bin gives a finite term)
PSI_WARN = 0.1
PSI_DRIFT = 0.25
MIN_ROWS = 50  # a smaller batch never raises warn / drift
NOISE_Z = 3.09  # one-sided 99.9% normal quantile: the chi-square test is at the 0.1% level
OTHER_BIN = "(other)"
MISSING_BIN = "(missing)"


def numeric_values(values: pd.Series) -> np.ndarray:
    """A column as float64 numbers; text that does not parse and inf become NaN (missing).

    The same reading as training's cleaning (``pipeline.schema.clean_training_frame``).
    """
    numbers = to_float(values).to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    numbers[np.isinf(numbers)] = np.nan
    return numbers


def _chi2_quantile(df: int, z: float = NOISE_Z) -> float:
    """Upper quantile of a chi-square with ``df`` degrees of freedom (Wilson-Hilferty)."""
    if df <= 0:
        return 0.0
    a = 2.0 / (9.0 * df)
    return float(df * max(0.0, 1.0 - a + z * math.sqrt(a)) ** 3)


@dataclass(frozen=True)
class ColumnReference:
    """The training distribution of one column: its bins and the training count in each.

    Numeric: ``edges`` are the cut points; value bin ``i`` holds ``edges[i-1] <= x < edges[i]``
    (open-ended at both ends), so there are ``len(edges) + 1`` value bins, then the missing bin.
    Categorical: ``categories`` then the other bin then the missing bin.
    """

    column: str
    kind: Kind
    counts: list[int]  # training rows per bin, the missing bin last
    edges: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return int(sum(self.counts))

    @property
    def n_bins(self) -> int:
        return len(self.counts)

    def bin_labels(self) -> list[str]:
        """A readable name for each bin, e.g. ``[12.5, 40)``, ``'EUR'``, ``(other)``."""
        if self.kind == "categorical":
            return [repr(c) for c in self.categories] + [OTHER_BIN, MISSING_BIN]
        shown = [f"{e:.4g}" for e in self.edges]
        if not shown:
            return ["all values", MISSING_BIN]
        labels = [f"< {shown[0]}"]
        labels += [f"[{lo}, {hi})" for lo, hi in itertools.pairwise(shown)]
        return [*labels, f">= {shown[-1]}", MISSING_BIN]

    def bin_counts(self, values: pd.Series) -> np.ndarray:
        """Rows of ``values`` per bin (int64, length :attr:`n_bins`), vectorised."""
        if self.kind == "numeric":
            numbers = numeric_values(values)
            missing = np.isnan(numbers)
            positions = np.searchsorted(
                np.asarray(self.edges, dtype=np.float64), numbers[~missing], side="right"
            )
            counts = np.bincount(positions, minlength=len(self.edges) + 1)
            return np.append(counts, missing.sum()).astype(np.int64)
        # spelled as in training (pandas / pyarrow readings agree), once per distinct value
        missing = values.isna().to_numpy()
        codes = category_codes(values, self.categories)[~missing]
        codes[codes < 0] = len(self.categories)  # the other bin
        counts = np.bincount(codes, minlength=len(self.categories) + 1)
        return np.append(counts, missing.sum()).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ColumnReference:
        return cls(
            column=str(values["column"]),
            kind=values["kind"],
            counts=[int(c) for c in values["counts"]],
            edges=[float(e) for e in values.get("edges", [])],
            categories=[str(c) for c in values.get("categories", [])],
        )


def _numeric_reference(column: str, values: pd.Series, n_bins: int) -> ColumnReference:
    numbers = numeric_values(values)
    present = numbers[~np.isnan(numbers)]
    edges: list[float] = []
    if present.size:
        probabilities = np.arange(1, n_bins) / n_bins
        # actual data values ("inverted_cdf"), so every bin [edge_i, edge_i+1) holds rows
        cuts = np.unique(np.quantile(present, probabilities, method="inverted_cdf"))
        # a cut at the minimum would leave the open lower bin empty in training
        edges = [float(e) for e in cuts[cuts > present.min()] if np.isfinite(e)]
    reference = ColumnReference(column, "numeric", counts=[], edges=edges)
    return ColumnReference(
        column, "numeric", counts=reference.bin_counts(values).tolist(), edges=edges
    )


def _categorical_reference(column: str, values: pd.Series, max_categories: int) -> ColumnReference:
    text = categorical_strings(values)
    counts = pd.Series(text[text != MISSING_CATEGORY]).value_counts()
    # by frequency, ties by name: the same reference whatever the row order
    ordered = sorted(counts.items(), key=lambda item: (-int(item[1]), str(item[0])))
    categories = [str(name) for name, _ in ordered[:max_categories]]
    reference = ColumnReference(column, "categorical", counts=[], categories=categories)
    return ColumnReference(
        column,
        "categorical",
        counts=reference.bin_counts(values).tolist(),
        categories=categories,
    )


@dataclass(frozen=True)
class DriftReference:
    """The binned training distribution of every model column (see the module docstring)."""

    columns: list[ColumnReference]

    @property
    def rows(self) -> int:
        return self.columns[0].rows if self.columns else 0

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        schema: TableSchema,
        n_bins: int = 10,
        max_categories: int = 20,
    ) -> DriftReference:
        """Bin the model columns of ``frame`` (training-like rows, raw values).

        ``frame`` is typically ``detector.reference_frame_`` (the held-out validation rows);
        ``schema`` gives the numeric and categorical columns (id columns are left out).
        """
        missing = [c for c in schema.model_columns if c not in frame.columns]
        if missing:
            raise ValueError(f"reference frame lacks the model column(s) {missing}")
        if frame.empty:
            raise ValueError("the reference frame is empty: drift needs training-like rows")
        columns = [_numeric_reference(c, frame[c], n_bins) for c in schema.numeric_columns]
        columns += [
            _categorical_reference(c, frame[c], max_categories) for c in schema.categorical_columns
        ]
        return cls(columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: column names, bin edges, category names and integer counts."""
        return {"columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DriftReference:
        return cls([ColumnReference.from_dict(c) for c in values["columns"]])


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
