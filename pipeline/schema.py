"""Column roles (id / numeric / categorical), checks of incoming tables, and row rejection.

Training data is cleaned leniently (unparseable numbers and inf become missing, with a
warning); scoring data is checked strictly: a row with a value the model cannot read is
rejected with its line number and a reason, the other rows go on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.config import DataSettings

logger = logging.getLogger(__name__)

Role = Literal["id", "numeric", "categorical"]
NUMERIC_PARSE_SHARE = 0.95
_ID_NAME = re.compile(r"(^id$|_id$|^id_|uuid|guid)", re.IGNORECASE)
# ISO 8601 dates and date-times: 2026-01-31, 2026-01-31 13:45, 2026-01-31T13:45:07.123+01:00
_ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)
DATE_SHARE = 0.95  # a text column is a date column when this share of its values is a date


class SchemaError(ValueError):
    """The table does not fit the model (missing columns, no usable column, ...)."""


@dataclass(frozen=True)
class TableSchema:
    """The columns a model was trained with, and the role of each."""

    roles: dict[str, Role]

    @property
    def id_columns(self) -> list[str]:
        return [c for c, r in self.roles.items() if r == "id"]

    @property
    def numeric_columns(self) -> list[str]:
        return [c for c, r in self.roles.items() if r == "numeric"]

    @property
    def categorical_columns(self) -> list[str]:
        return [c for c, r in self.roles.items() if r == "categorical"]

    @property
    def model_columns(self) -> list[str]:
        return self.numeric_columns + self.categorical_columns

    def to_dict(self) -> dict[str, Any]:
        return {"roles": dict(self.roles)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TableSchema:
        return cls(roles=dict(values["roles"]))


def _parse_share(values: pd.Series) -> float:
    present = values.dropna()
    if present.empty:
        return 0.0
    parsed = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
    return float(parsed.notna().mean())


def _holds_dates(values: pd.Series) -> bool:
    """A column of dates or date-times: a datetime type (Parquet) or ISO 8601 text."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    present = values.dropna()
    if present.empty:
        return False
    sample = present.iloc[:: max(1, len(present) // 2000)].astype(str).str.strip()
    return float(sample.str.fullmatch(_ISO_DATE).mean()) >= DATE_SHARE


def infer_schema(frame: pd.DataFrame, settings: DataSettings) -> TableSchema:
    """Decide the role of every column of a training table (ignored columns are left out)."""
    duplicated = [c for c in frame.columns[frame.columns.duplicated()]]
    if duplicated:
        raise SchemaError(f"duplicate column names {duplicated}: rename them so each is unique")
    roles: dict[str, Role] = {}
    forced_categorical = set(settings.categorical_columns or ())
    unknown = (set(settings.id_columns) | forced_categorical) - set(frame.columns)
    if unknown:
        raise SchemaError(f"configured columns not in the table: {sorted(unknown)}")
    n_rows = len(frame)
    for column in frame.columns:
        name = str(column)
        if name in settings.ignore_columns:
            continue
        values = frame[column]
        if name in settings.id_columns:
            roles[name] = "id"
        elif name in forced_categorical or pd.api.types.is_bool_dtype(values):
            roles[name] = "categorical"
        elif not values.notna().any():
            # a CSV reader types an all-empty column as float: modeled as numeric, later text
            # in it would reject whole rows; as a categorical any later value is just unseen
            logger.warning(
                "column %r is empty in training: modeled as categorical (every later value "
                "encodes as an unseen category)",
                name,
            )
            roles[name] = "categorical"
        elif _holds_dates(values):
            # as a category every later date would be unseen (and drift in every batch)
            logger.warning(
                "column %r holds dates: passed through like an id column, not modeled; to "
                "model a date, add what matters about it (hour, weekday, days since an event) "
                "as columns of their own",
                name,
            )
            roles[name] = "id"
        elif (
            pd.api.types.is_integer_dtype(values)
            and _ID_NAME.search(name)
            and values.nunique(dropna=True) == values.notna().sum() > 1
        ):
            logger.warning(
                "integer column %r looks like an id (named so, all distinct): passed through, "
                "not modeled",
                name,
            )
            roles[name] = "id"
        elif pd.api.types.is_numeric_dtype(values):
            roles[name] = "numeric"
        elif _parse_share(values) >= NUMERIC_PARSE_SHARE:
            logger.warning(
                "column %r holds text but %.0f%%+ of it parses as numbers: modeled as numeric, "
                "the rest treated as missing",
                name,
                100 * NUMERIC_PARSE_SHARE,
            )
            roles[name] = "numeric"
        else:
            distinct = values.nunique(dropna=True)
            id_like = n_rows >= 20 and distinct > settings.id_like_unique_ratio * n_rows
            if id_like or (_ID_NAME.search(name) and distinct == values.notna().sum()):
                if not settings.id_columns and not _ID_NAME.search(name):
                    logger.warning(
                        "column %r has a distinct value in %d of %d rows: treated as an id column "
                        "(passed through, not modeled)",
                        name,
                        distinct,
                        n_rows,
                    )
                roles[name] = "id"
            else:
                roles[name] = "categorical"
    schema = TableSchema(roles)
    if not schema.model_columns:
        raise SchemaError(
            "no column to model: every column is an id or ignored "
            f"(columns: {list(map(str, frame.columns))})"
        )
    return schema


def clean_training_frame(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Numeric columns as float64 (text and inf become missing, with a warning).

    Raises :class:`SchemaError` when the table has no variation: every row holds the same
    values in every model column (a model of it would flag every real row).
    """
    selected = frame[list(schema.roles)]
    columns = schema.numeric_columns
    numbers = _numeric_block(selected, columns)
    values = numbers.to_numpy(dtype=np.float64, copy=True)
    infinite = np.isinf(values)
    if columns:
        bad_text = (selected[columns].notna().to_numpy() & np.isnan(values)).sum(axis=0).tolist()
        for column, text, inf in zip(columns, bad_text, infinite.sum(axis=0).tolist(), strict=True):
            if text or inf:
                logger.warning(
                    "training column %r: %d non-numeric and %d infinite values treated as missing",
                    column,
                    text,
                    inf,
                )
    values[infinite] = np.nan
    others = {
        column: selected[column].astype(object).where(selected[column].notna(), None)
        for column in schema.categorical_columns + schema.id_columns
    }
    out = _assembled(selected, values, columns, others)
    _check_variation(out, schema)
    return out


def _check_variation(clean: pd.DataFrame, schema: TableSchema) -> None:
    columns = schema.model_columns
    if len(clean) > 1 and all(clean[c].nunique(dropna=False) <= 1 for c in columns):
        shown = ", ".join(f"{c}={_shown(clean[c].iloc[0])}" for c in columns[:6])
        raise SchemaError(
            f"the training data has no variation: all {len(clean)} rows hold the same values "
            f"in every model column ({shown}{', ...' if len(columns) > 6 else ''}); a model of "
            "it would flag every real row. Train on a sample of real records"
        )


def _is_number_dtype(values: pd.Series | Any) -> bool:
    """A number type (a Series or a dtype): numeric and not bool."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _numeric_block(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The columns as one float64 frame: those typed as numbers cast as one block (a wide
    table has thousands; one cast per column costs more than the numbers), text parsed
    column by column (:func:`to_float`)."""
    dtypes = frame.dtypes
    typed = [c for c in columns if _is_number_dtype(dtypes[c])]
    block = frame[typed].astype("float64")
    if len(typed) == len(columns):
        return block
    return pd.DataFrame(
        {c: (block[c] if c in block else to_float(frame[c])).to_numpy() for c in columns},
        index=frame.index,
        columns=columns,
    )


def _assembled(
    frame: pd.DataFrame, numbers: np.ndarray, columns: list[str], others: dict[str, pd.Series]
) -> pd.DataFrame:
    """``frame``'s columns in their order and its index: ``columns`` from the float64 matrix
    ``numbers`` (one block, not one per column), the rest from ``others`` (column -> values,
    their dtypes kept)."""
    # assembled on positions, so that a duplicated index is never aligned
    rows = pd.RangeIndex(len(frame))
    parts = [pd.DataFrame(numbers, index=rows, columns=columns, copy=False)]
    if others:
        parts.append(pd.DataFrame({c: v.reset_index(drop=True) for c, v in others.items()}))
    out = pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]
    out = out[list(frame.columns)]
    out.index = frame.index
    return out


def to_float(values: pd.Series) -> pd.Series:
    """A column as float64: numbers as they are, text parsed (stripped), the rest NaN."""
    if _is_number_dtype(values):
        return values.astype("float64")
    return pd.to_numeric(values.astype("string").str.strip(), errors="coerce").astype("float64")


def _shown(value: Any) -> str:
    """A raw value as shown in a rejection reason: ``'n/a'``, ``inf`` (not ``np.float64(inf)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _near_names(missing: list[str], present: list[str]) -> str:
    """The file's columns that differ from a missing trained column only by case or
    surrounding spaces, as a hint (``"column 'Amount ' is 'amount' ...; "``), else ``""``."""

    def key(name: str) -> str:
        return name.strip().casefold()

    by_key: dict[str, list[str]] = {}
    for name in present:
        by_key.setdefault(key(name), []).append(name)
    hints = [
        f"the file's column {found!r} differs from the trained {name!r} only by case or spaces"
        for name in missing
        for found in by_key.get(key(name), [])
    ]
    return "; ".join(hints) + ": rename it to the trained name; " if hints else ""


@dataclass
class CheckedBatch:
    """A scoring batch split into rows that can be scored and rows rejected with reasons."""

    accepted: pd.DataFrame  # model columns typed, id columns untouched
    accepted_lines: np.ndarray  # line number (1 = header) of each accepted row
    rejected: pd.DataFrame  # columns: line, reason, then the raw values
    warnings: list[str] = field(default_factory=list)


def check_scoring_frame(
    frame: pd.DataFrame,
    schema: TableSchema,
    source: str = "input",
    line_numbers: np.ndarray | None = None,
    ignored: tuple[str, ...] = (),
) -> CheckedBatch:
    """Check a batch against the training schema; reject the rows that cannot be scored.

    Raises :class:`SchemaError` (naming every missing column) when columns are missing, and
    when a model column appears more than once (which of the two to score is not knowable).
    """
    missing = [c for c in schema.roles if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{source}: missing column(s) {missing} (the model was trained with them); "
            + _near_names(missing, [str(c) for c in frame.columns])
            + "add them to the file or retrain the model without them"
        )
    repeated = set(frame.columns[frame.columns.duplicated()])
    twice = [c for c in schema.roles if c in repeated]
    if twice:
        raise SchemaError(
            f"{source}: column(s) {twice} appear more than once; rename or drop the copies so "
            "each model column is present once"
        )
    extra = [str(c) for c in frame.columns if c not in schema.roles and c not in ignored]
    warnings = []
    if extra:
        warnings.append(f"{source}: extra column(s) {extra} ignored")
    lines = (
        np.arange(2, len(frame) + 2, dtype=np.int64)
        if line_numbers is None
        else np.asarray(line_numbers, dtype=np.int64)
    )
    selected = frame[list(schema.roles)]
    columns = schema.numeric_columns
    values = _numeric_block(selected, columns).to_numpy(dtype=np.float64, copy=True)
    # a value present in the batch that did not parse: text, or NaN where NaN is not missing
    not_a_number = selected[columns].notna().to_numpy(dtype=bool) & np.isnan(values)
    infinite = np.isinf(values)
    problems: dict[int, str] = {}  # row position -> the first reason it cannot be scored
    # only the columns with a problem (few) are visited, in column order: a row's reason is
    # that of its first such column
    for j in np.flatnonzero(not_a_number.any(axis=0) | infinite.any(axis=0)):
        column, raw = columns[j], selected[columns[j]]
        for mask, what in (
            (not_a_number[:, j], "is not a number"),
            (infinite[:, j], "is infinite"),
        ):
            for i in np.flatnonzero(mask):  # few: only the rows that cannot be scored
                problems.setdefault(
                    int(i), f"column {column!r}: value {_shown(raw.iloc[i])} {what}"
                )
    numeric = set(columns)
    others = {c: selected[c] for c in schema.roles if c not in numeric}
    typed = _assembled(selected, values, columns, others) if columns else selected.copy()
    if not problems:  # the common case: no row rejected, no copy of the batch
        rejected = frame.iloc[:0].copy()
        rejected.insert(0, "reason", pd.Series(dtype=object))
        rejected.insert(0, "line", pd.Series(dtype=np.int64))
        return CheckedBatch(
            accepted=typed, accepted_lines=lines, rejected=rejected, warnings=warnings
        )
    bad = np.zeros(len(frame), dtype=bool)
    positions = np.fromiter(sorted(problems), dtype=np.int64, count=len(problems))
    bad[positions] = True
    rejected = frame.loc[bad].copy()
    rejected.insert(0, "reason", [problems[int(i)] for i in positions])
    rejected.insert(0, "line", lines[bad])
    return CheckedBatch(
        accepted=typed.loc[~bad], accepted_lines=lines[~bad], rejected=rejected, warnings=warnings
    )
