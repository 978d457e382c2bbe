"""Reading CSV and Parquet tables, with clear errors for unreadable files."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class InputError(ValueError):
    """An input file cannot be read; the message names the file and what to do."""


def table_format(path: Path) -> str:
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise InputError(
            f"{path}: unsupported file type {path.suffix!r}; use .csv or .parquet"
        ) from None


def _check_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-export it as UTF-8"
        ) from None
    if not header:
        raise InputError(f"{path}: the file is empty (no header line)")
    duplicated = sorted(name for name, n in Counter(header).items() if n > 1)
    if duplicated:
        raise InputError(f"{path}: duplicate column names {duplicated}; make every header unique")
    return header


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a whole CSV or Parquet file (for training)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if table_format(path) == "parquet":
        try:
            return pq.read_table(path).to_pandas()
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: unreadable Parquet file ({exc})") from None
    _check_header(path)
    try:
        return pd.read_csv(path, low_memory=False)
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: malformed CSV ({exc})") from None


@dataclass
class RawBatch:
    """A table read for scoring: all values as read, plus the lines that could not be parsed."""

    frame: pd.DataFrame
    line_numbers: np.ndarray  # the file line of each row (1 = header)
    bad_lines: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, text)


def read_for_scoring(path: str | Path, string_columns: list[str] | None = None) -> RawBatch:
    """Read a whole file for scoring; malformed CSV lines are kept aside, not fatal.

    CSV values are read with pyarrow, with ``string_columns`` (ids, categoricals) kept as text
    so that an all-empty column keeps its type; numeric columns are checked later.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if table_format(path) == "parquet":
        try:
            frame = pq.read_table(path).to_pandas()
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(
                f"{path}: unreadable or truncated Parquet file ({exc}); nothing was scored"
            ) from None
        return RawBatch(frame=frame, line_numbers=np.arange(1, len(frame) + 1, dtype=np.int64))
    if path.stat().st_size == 0:
        return RawBatch(frame=pd.DataFrame(), line_numbers=np.empty(0, dtype=np.int64))
    header = _check_header(path)
    bad: list[tuple[int, str, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append(
            (
                int(row.number or -1),
                f"expected {row.expected_columns} fields, found {row.actual_columns}",
                row.text,
            )
        )
        return "skip"

    def read(text_columns: list[str]) -> pa.Table:
        bad.clear()
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(
                invalid_row_handler=on_invalid, newlines_in_values=True
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in text_columns}, strings_can_be_null=True
            ),
        )

    try:
        table = read([c for c in (string_columns or []) if c in header])
    except pa.ArrowInvalid:
        # a numeric-looking column with text in some row: read every column as text instead
        table = read(header)
    frame = table.to_pandas()
    starts = record_lines(path)
    bad_records = {number for number, _, _ in bad}
    data_records = [k for k in range(2, len(starts) + 1) if k not in bad_records]
    if len(data_records) != len(frame):  # should not happen; keep record positions then
        logger.warning("%s: could not map rows to lines; 'line' is the record number", path)
        lines = np.arange(2, len(frame) + 2, dtype=np.int64)
    else:
        lines = starts[np.asarray(data_records, dtype=np.int64) - 1]
    bad_lines = [(int(starts[n - 1]) if 0 < n <= len(starts) else n, r, t) for n, r, t in bad]
    return RawBatch(frame=frame, line_numbers=lines, bad_lines=bad_lines)


def record_lines(path: Path) -> np.ndarray:
    """The first physical line of every non-blank CSV record, header included (1-based).

    Blank lines are skipped and a quoted value may span lines, as in the CSV readers, so the
    n-th record is not always on line n.
    """
    starts: list[int] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        previous = 0
        for record in reader:
            if record:
                starts.append(previous + 1)
            previous = reader.line_num
    return np.asarray(starts, dtype=np.int64)
