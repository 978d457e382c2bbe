"""How a reason reads: the value as the input held it, the expected value as a person writes it
(``about 64``, ``between 40 and 90``, a category), shares that never increase along a row.
The search that finds the reasons is :mod:`pipeline.explain`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pipeline.preprocess import MISSING_CATEGORY


def _number(value: float) -> str:
    """A number in full, as the shortest decimal that reads back as the same float: 99999,
    12.4, 0.000123 (never ``1e+05`` or ``18.0``); scientific only beyond 1e15 or below 1e-5."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1e15 or abs(value) < 1e-5:
        return np.format_float_scientific(value, trim="-")
    return np.format_float_positional(value, trim="-")


def _rounded(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits, written as a person would: 15000, 1.1."""
    return _number(float(f"{value:.{digits}g}"))


def value_text(value: Any) -> str:
    """A cell as read: ``missing``, a number in full (:func:`_number`), else its text."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return _number(float(value))
    return str(value)


def _about(expected: float, value: float) -> str | None:
    """``about X``: the expected number to 2 significant digits, or more where 2 would write
    it like the row's own value; None when it cannot be told apart from the value."""
    for digits in range(2, 7):
        text = _rounded(expected, digits)
        if math.isnan(value) or text != _rounded(value, digits):
            return f"about {text}"
    return None


def expected_text(value: Any, best: Any, low: Any, high: Any) -> str | None:
    """What the model expected instead of ``value``, as a person writes it; None when it
    would read as the value itself (such a column is not named).

    Categories: the best category (``missing`` for the missing category). Numbers: ``about
    X`` for the best training quantile, or ``between L and H`` when every quantile from L to
    H lowers the score about as much (and the value lies outside that range).
    """
    if not isinstance(best, float | np.floating):
        shown = "missing" if best is None or best == MISSING_CATEGORY else str(best)
        return None if shown == value_text(value) else shown
    number = math.nan if value is None or pd.isna(value) else float(value)
    if low < high and not low <= number <= high:
        low_text, high_text = _rounded(low, 2), _rounded(high, 2)
        if low_text != high_text:
            return f"between {low_text} and {high_text}"
    return _about(float(best), number)


def values_as_read(
    reasons: list[str], checked: pd.DataFrame, as_read: pd.DataFrame, columns: list[str]
) -> list[str]:
    """``reasons`` of some rows with their numeric values written as the input file held them
    (``customer_age=76.0`` where the file says ``76.0``): for each of ``columns`` present in a
    row's text, its reason's ``column=value (expected `` is rewritten with the row's text in
    ``as_read`` (rows aligned with ``checked``, the checked values the reasons were made from).
    Missing cells stay ``missing``."""
    out = list(reasons)
    for column in columns:
        if column not in as_read.columns or column not in checked.columns:
            continue
        read = as_read[column].to_numpy(dtype=object)
        values = checked[column].to_numpy(dtype=object)
        for i, text in enumerate(out):
            raw = read[i]
            if f"{column}=" not in text or not isinstance(raw, str) or pd.isna(values[i]):
                continue
            old = f"{column}={value_text(values[i])} (expected "
            new = f"{column}={raw.strip()} (expected "
            if text.startswith(old):
                text = new + text[len(old) :]
            out[i] = text.replace(f", {old}", f", {new}")
    return out


def non_increasing(shares: list[float]) -> list[float]:
    """The closest non-increasing sequence (pool adjacent violators): where the order puts a
    column before one with a larger share, both get their mean share."""
    blocks: list[list[float]] = []  # [sum, count] of pooled neighbours
    for share in shares:
        blocks.append([share, 1.0])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] < blocks[-1][0] * blocks[-2][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    return [total / count for total, count in blocks for _ in range(int(count))]
