"""The training side of drift: the bins of every model column and the training counts in
each (see :mod:`pipeline.drift` for the bins' definition)."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.preprocess import MISSING_CATEGORY, categorical_strings, category_codes
from pipeline.schema import TableSchema, to_float

Kind = Literal["numeric", "categorical"]
OTHER_BIN = "(other)"
MISSING_BIN = "(missing)"


def numeric_values(values: pd.Series) -> np.ndarray:
    """A column as float64 numbers; text that does not parse and inf become NaN (missing).

    The same reading as training's cleaning (``pipeline.schema.clean_training_frame``).
    """
    numbers = to_float(values).to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    numbers[np.isinf(numbers)] = np.nan
    return numbers


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
