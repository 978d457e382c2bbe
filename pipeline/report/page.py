"""The plain values the templates show, the number formats, and the Jinja2 environment.

Views (:mod:`pipeline.report.scoring`, :mod:`pipeline.report.training`) turn their inputs into
these small frozen records; the templates under ``templates/`` lay them out. The environment
autoescapes every value, so a string from data or users (an input name, a column name, a
value, a reason, a warning) is never written as markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined
from matplotlib.figure import Figure

from pipeline.report.figures import png_data_uri


@dataclass(frozen=True)
class Cell:
    """A table cell: its lines (shown one per line) and an optional CSS class."""

    lines: tuple[str, ...]
    css: str = ""


def cell(text: str, css: str = "") -> Cell:
    return Cell((text,), css)


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell | str]]) -> Table:
    """A table; a plain string is a cell without a class."""
    return Table(
        tuple(headers),
        tuple(tuple(c if isinstance(c, Cell) else cell(c) for c in row) for row in rows),
    )


@dataclass(frozen=True)
class Banner:
    """A coloured box: ``kind`` is drift, warn or note; ``element_id`` an optional HTML id."""

    kind: str
    text: str
    element_id: str = ""


@dataclass(frozen=True)
class Image:
    """A figure as a base64 PNG ``data:`` URI, with its alternative text."""

    uri: str
    alt: str


def image(fig: Figure, alt: str) -> Image:
    """The figure embedded in the page (the figure is closed)."""
    return Image(png_data_uri(fig), alt)


Facts = tuple[tuple[str, str], ...]  # (name, value) rows of a header table


def number(value: Any, digits: int = 4) -> str:
    """A number as shown in a table: floats to ``digits`` significant digits, NaN empty."""
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}g}"
    return str(value)


def score_text(value: float) -> str:
    """An anomaly score or threshold as shown to people: two decimals (``3.70``)."""
    return "" if math.isnan(value) else f"{value:.2f}"


def share(part: int, whole: int) -> str:
    """``part (share of whole)``, or ``part`` alone when ``whole`` is 0."""
    return f"{part} ({part / whole:.2%})" if whole else str(part)


def stamp(generated_at: str) -> str:
    """The footer's time: as given, else now (UTC)."""
    return generated_at or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@cache
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("pipeline.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> str:
    """One self-contained HTML page from ``templates/<template>``."""
    return environment().get_template(template).render(**context)
