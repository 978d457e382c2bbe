"""Reading CSV and Parquet tables, with clear errors for unreadable files (which files are
inputs: :mod:`pipeline.inputs`)."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.inputs import InputError, table_format

logger = logging.getLogger(__name__)


OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def _check_delimiter(path: Path, header: list[str]) -> None:
    """A header read as one field that another delimiter splits: the file is not
    comma-separated (a spreadsheet's export with ``;``, a TSV); say so instead of listing every
    trained column as missing."""
    if len(header) != 1:
        return
    for delimiter, name in OTHER_DELIMITERS.items():
        fields = header[0].split(delimiter)
        if len(fields) > 1:
            raise InputError(
                f"{path}: the header looks {name}-separated ({delimiter!r}: "
                f"{len(fields)} fields, {', '.join(repr(f) for f in fields[:4])}"
                f"{', ...' if len(fields) > 4 else ''}); this tool reads comma-separated "
                "CSV: re-export the file with ',' as the delimiter (or as Parquet)"
            )


def _check_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError as exc:
        raise InputError(_not_utf8(path, exc)) from None
    if not header:
        raise InputError(f"{path}: the file is empty (no header line)")
    _check_delimiter(path, header)
    unnamed = [i + 1 for i, name in enumerate(header) if not name.strip()]
    if unnamed:
        raise InputError(
            f"{path}: column(s) {unnamed} have no name in the header (a row index written by "
            "pandas' to_csv?); name every column, or write the file with index=False"
        )
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
        # the missing markers of scoring (MISSING_MARKERS), so both read a cell the same way
        return pd.read_csv(
            path, low_memory=False, na_values=list(MISSING_MARKERS), keep_default_na=False
        )
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: malformed CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(_not_utf8(path, exc)) from None


def _not_utf8(path: Path, exc: UnicodeDecodeError | pa.ArrowInvalid) -> str:
    where = f"{exc.reason} at byte {exc.start}" if isinstance(exc, UnicodeDecodeError) else exc
    return f"{path}: not UTF-8 text ({where}); re-export it as UTF-8"


DEFAULT_CHUNK_ROWS = 262_144


@dataclass
class RawBatch:
    """A table read for scoring: all values as read, plus the lines that could not be parsed."""

    frame: pd.DataFrame
    line_numbers: np.ndarray  # the file line of each row (1 = header)
    bad_lines: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, text)


@dataclass
class ScoringChunk:
    """One chunk of a file read for scoring.

    ``records`` numbers each row: for CSV the record number (the header is record 1, blank lines
    are not records, a quoted value may span lines), for Parquet the row number from 1.
    :func:`record_lines` maps CSV record numbers to physical lines, which only the rejected
    rows need. ``bad`` holds the malformed CSV records met so far that were not yet reported
    (record, reason, raw text).
    """

    frame: pd.DataFrame
    records: np.ndarray
    bad: list[tuple[int, str, str]] = field(default_factory=list)
    # CSV: every field's text exactly as the file held it ("" for an empty field); None for
    # Parquet, whose typed values are what was read
    raw: pa.Table | None = None

    def rows_as_read(self, records: np.ndarray) -> pd.DataFrame:
        """The rows with the given record numbers, every column as read: a CSV field's text
        (``18`` stays ``18``, ``n/a`` stays ``n/a``), a Parquet value as stored."""
        positions = np.searchsorted(self.records, np.asarray(records, dtype=np.int64))
        if self.raw is None:
            return self.frame.iloc[positions].reset_index(drop=True)
        return self.raw.take(pa.array(positions, type=pa.int64())).to_pandas()


# what pyarrow's CSV reader reads as missing by default (checked in a test)
CSV_NULL_VALUES = pa.array(pacsv.ConvertOptions().null_values, type=pa.string())
# also missing, in training and in scoring: "None" and "<NA>" (pandas reads them as missing, so
# training always did) and "-" (a common placeholder for "no value" in exports)
EXTRA_MISSING_MARKERS = ("None", "<NA>", "-")
# every spelling of a missing value in a CSV cell (exact, case-sensitive), for both readers
MISSING_MARKERS = (*CSV_NULL_VALUES.to_pylist(), *EXTRA_MISSING_MARKERS)
_MISSING_MARKERS = pa.array(MISSING_MARKERS, type=pa.string())


def _nulled(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text with the spellings of a missing value (``""``, ``NA``, ``n/a``, ``null``,
    ``None``, ``-``, ...: :data:`MISSING_MARKERS`) as nulls."""
    missing = pc.is_in(values, value_set=_MISSING_MARKERS)
    return pc.if_else(missing, pa.scalar(None, pa.string()), values)


def _numeric_column(values: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """Text parsed as float64 by Arrow; None when some value is not a number."""
    try:
        return pc.cast(pc.utf8_trim_whitespace(values), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _numbers_and_text(values: pd.Series) -> pd.Series:
    """A numeric column with some text: numbers as floats, the other values as their text
    (the scoring checks reject those rows, showing the text). Each value gets the same
    representation whatever else its chunk holds, so chunking never changes an output."""
    stripped = values.astype("string").str.strip()
    numbers = pd.to_numeric(stripped, errors="coerce")
    mixed = numbers.astype("float64").astype(object)
    # spellings of NaN that Arrow's parser reads as a (missing) number stay missing here too
    not_a_number = stripped.str.lower().str.lstrip("+-").str.fullmatch(r"nan(\(.*\))?")
    text = numbers.isna() & values.notna() & ~not_a_number.fillna(False).to_numpy(dtype=bool)
    mixed[text] = values[text].astype(object)
    mixed[values.isna()] = np.nan
    return mixed


def _csv_block_size(path: Path, chunk_rows: int) -> int:
    """Bytes per CSV block for about ``chunk_rows`` rows (estimated from the first MiB)."""
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    per_row = len(head) / max(1, head.count(b"\n"))
    return int(min(1 << 30, max(1 << 14, chunk_rows * per_row)))


def iter_scoring_chunks(
    path: str | Path,
    string_columns: list[str] | None = None,
    numeric_columns: list[str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[ScoringChunk]:
    """Read a CSV or Parquet file for scoring in chunks of about ``chunk_rows`` rows.

    Memory is bounded by the chunk, not the file. Column types are the same in every chunk:
    Parquet keeps the file's schema; CSV values are read as text, and ``numeric_columns``
    (default: every column not in ``string_columns``) are parsed as float64 where the whole
    chunk column is numeric, so ids and categoricals keep leading zeros and an all-empty
    column keeps its type. Malformed CSV lines are reported in ``bad``, not fatal.
    A file with a header and no rows gives one empty chunk with the columns.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if table_format(path) == "parquet":
        yield from _parquet_chunks(path, chunk_rows)
        return
    if path.stat().st_size == 0:
        yield ScoringChunk(pd.DataFrame(), np.empty(0, dtype=np.int64))
        return
    header = _check_header(path)
    text = set(string_columns or [])
    numeric = [c for c in header if c not in text] if numeric_columns is None else numeric_columns
    parse = [c for c in numeric if c in header]
    bad: list[tuple[int, str, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        reason = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        bad.append((int(row.number or -1), reason, row.text))
        return "skip"

    try:  # (the reader parses its first block here: a bad byte in it fails now)
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                use_threads=False, block_size=_csv_block_size(path, chunk_rows)
            ),
            parse_options=pacsv.ParseOptions(
                invalid_row_handler=on_invalid, newlines_in_values=True
            ),
            # every field as text, missing spellings included: the rows as read (rejected.csv,
            # flagged.csv) keep them; the frame to score gets them as nulls (``_nulled``)
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(_csv_error(path, exc)) from None
    # the parser runs ahead of the batches it returns, so every malformed record between the
    # rows of a batch is known when the batch arrives; the rows get the other record numbers
    next_record = 2
    known_bad: list[int] = []
    yielded = False
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as exc:
            raise InputError(_csv_error(path, exc)) from None
        known_bad += [number for number, _, _ in bad]
        reported, bad[:] = list(bad), []
        raw = pa.Table.from_batches([batch])
        table = pa.Table.from_arrays([_nulled(c) for c in raw.columns], names=raw.column_names)
        mixed = []
        for name in parse:
            numbers = _numeric_column(table[name])
            if numbers is None:
                mixed.append(name)
            else:
                table = table.set_column(table.schema.get_field_index(name), name, numbers)
        skip = np.asarray(sorted(b for b in known_bad if b >= next_record), dtype=np.int64)
        span = np.arange(next_record, next_record + batch.num_rows + len(skip), dtype=np.int64)
        records = span[~np.isin(span, skip)][: batch.num_rows]
        if batch.num_rows:
            next_record = int(records[-1]) + 1
        known_bad = [b for b in known_bad if b >= next_record]
        yielded = True
        frame = table.to_pandas()
        for name in mixed:
            frame[name] = _numbers_and_text(frame[name])
        yield ScoringChunk(frame, records, reported, raw)
    if not yielded or bad:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in header})
        yield ScoringChunk(empty, np.empty(0, dtype=np.int64), list(bad))


def _csv_error(path: Path, exc: pa.ArrowInvalid) -> str:
    if "UTF8" in str(exc) or "UTF-8" in str(exc):
        return f"{_not_utf8(path, exc)}; nothing was scored"
    hint = (
        "; a record is longer than the read block: raise scoring.chunk_rows"
        if "straddl" in str(exc)
        else ""
    )
    return f"{path}: malformed CSV ({exc}){hint}; nothing was scored"


_NULLABLE = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[ScoringChunk]:
    def unreadable(exc: Exception) -> InputError:
        return InputError(
            f"{path}: unreadable or truncated Parquet file ({exc}); nothing was scored"
        )

    try:
        # pre_buffer=False: the default keeps every row group read so far in memory
        parquet = pq.ParquetFile(path, pre_buffer=False)
        start = 1
        yielded = False
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            # integers and booleans as pandas' nullable types: a chunk with a missing value
            # keeps the column's type (not float64), so every chunk has the same types
            frame = pa.Table.from_batches([batch]).to_pandas(types_mapper=_NULLABLE.get)
            yield ScoringChunk(frame, np.arange(start, start + len(frame), dtype=np.int64))
            start += len(frame)
            yielded = True
        if not yielded:
            frame = parquet.schema_arrow.empty_table().to_pandas()
            yield ScoringChunk(frame, np.empty(0, dtype=np.int64))
    except (pa.ArrowInvalid, OSError) as exc:
        raise unreadable(exc) from None


def read_for_scoring(
    path: str | Path,
    string_columns: list[str] | None = None,
    numeric_columns: list[str] | None = None,
) -> RawBatch:
    """Read a whole file for scoring (all chunks of :func:`iter_scoring_chunks` together),
    with the physical line of every row and malformed line."""
    path = Path(path)
    chunks = list(iter_scoring_chunks(path, string_columns, numeric_columns))
    frames = [c.frame for c in chunks if len(c.frame)] or [chunks[0].frame]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    records = np.concatenate([c.records for c in chunks])
    bad = [b for c in chunks for b in c.bad]
    if table_format(path) == "parquet":
        return RawBatch(frame=frame.reset_index(drop=True), line_numbers=records)
    lines = record_lines(path, np.concatenate([records, [n for n, _, _ in bad]]))
    return RawBatch(
        frame=frame.reset_index(drop=True),
        line_numbers=lines[: len(records)],
        bad_lines=[
            (int(line), r, t) for line, (_, r, t) in zip(lines[len(records) :], bad, strict=True)
        ],
    )


def record_lines(path: Path, records: np.ndarray) -> np.ndarray:
    """The first physical line (1-based) of each of the given CSV record numbers.

    Record numbers count non-blank records from the header (record 1), as pyarrow's reader
    does; blank lines are skipped and a quoted value may span lines, so record n is not
    always on line n. One streaming pass over the file; memory holds only the answer.
    """
    records = np.asarray(records, dtype=np.int64)
    if records.size == 0:
        return records.copy()
    wanted = np.unique(records)
    found = np.full(wanted.size, -1, dtype=np.int64)
    k = 0
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        number, previous = 0, 0
        for record in reader:
            if record:
                number += 1
                while k < wanted.size and wanted[k] < number:
                    k += 1  # a record the csv module does not see (should not happen)
                if k < wanted.size and wanted[k] == number:
                    found[k] = previous + 1
                    k += 1
                    if k == wanted.size:
                        break
            previous = reader.line_num
    missing = found < 0
    found[missing] = wanted[missing]  # keep the record number when no line was found
    return found[np.searchsorted(wanted, records)]
