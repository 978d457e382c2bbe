"""Which files are inputs: CSV and Parquet files from paths, globs and folders."""

from __future__ import annotations

from pathlib import Path

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


def _table_file(path: Path) -> bool:
    """A visible CSV or Parquet file (what a folder or a glob contributes)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in SUFFIXES


def expand_inputs(inputs: list[str] | str) -> list[Path]:
    """Files from a list of paths, globs and folders (a folder or a glob means the CSV and
    Parquet files among its matches; a file named explicitly must be one).

    Hidden files (``.name``) found in folders or by globs are left out: a landing folder's
    uploads in progress should use such a name, or a suffix other than ``.csv``, ``.parquet``
    or ``.pq``, until they are complete.
    """
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    found: list[Path] = []
    for item in items:
        if not str(item).strip():
            raise InputError(
                "an input path is empty (an unset variable?); pass the landing folder, files "
                "or globs to score (for prefect.yaml: set VAE_ANOMALY_LANDING before deploying)"
            )
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if _table_file(p))
        elif any(ch in item for ch in "*?["):
            base = Path(path.anchor) if path.is_absolute() else Path()
            pattern = str(path.relative_to(path.anchor)) if path.is_absolute() else item
            found += sorted(p for p in base.glob(pattern) if _table_file(p))
        elif path.is_file():
            table_format(path)  # a file named explicitly must be one: else say so now
            found.append(path)
        else:
            raise InputError(f"{item}: no such file or folder; check the path or the glob")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise InputError(
            f"no CSV or Parquet file found in {items}; put the batch files there "
            "(.csv, .parquet or .pq) or pass other paths"
        )
    return unique
