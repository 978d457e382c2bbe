"""The scoring report: what a scoring run passes (:class:`ScoringReportData`) and its view.

Sections (each a ``<section id=...>``): a header with the key facts; warning banners at the top
(``id="drift-warning"`` when drift was detected, ``id="flag-rate-warning"`` when the flagged
share is more than twice or under half the expected one, then the caller's warnings); the
score histogram with the threshold (``scores``); flagged vs expected rate (``flag-rate``); the
top anomalies with their reasons (``top-anomalies``); the drift table and PSI chart (``drift``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.drift import PSI_DRIFT, PSI_WARN, DriftReport
from pipeline.monitoring import ScoreHistogram, flag_rate, flag_rate_warning
from pipeline.report import figures
from pipeline.report.page import (
    Banner,
    Cell,
    Facts,
    Image,
    Table,
    cell,
    image,
    number,
    render,
    score_text,
    share,
    stamp,
    table,
)


@dataclass
class ScoringReportData:
    """Everything a scoring report shows: small, already-aggregated values only."""

    input_name: str
    model_name: str
    model_version: str
    threshold: float
    rows_read: int
    rows_scored: int
    rows_rejected: int
    rows_flagged: int
    expected_flag_rate: float  # the share of rows like the validation split above it
    histogram: ScoreHistogram | None = None
    top_anomalies: pd.DataFrame | None = None  # up to ~20 rows: ids, score, percentile, reasons
    drift: DriftReport | None = None
    warnings: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)  # more header facts (run id, dates)
    generated_at: str = ""  # shown in the footer; default: now (UTC)
    threshold_rule: str = ""  # how the threshold was set, e.g. "the model's: contamination 0.01"

    @property
    def flag_rate(self) -> float:
        return flag_rate(self.rows_flagged, self.rows_scored)

    @property
    def flag_rate_warning(self) -> str:
        """A sentence when the flagged share is far from the expected one, else empty
        (the rule: :func:`pipeline.monitoring.flag_rate_warning`)."""
        return flag_rate_warning(self.rows_flagged, self.rows_scored, self.expected_flag_rate)


@dataclass(frozen=True)
class RateBar:
    label: str
    rate: str
    css: str
    width: str  # percent of the bar cell


@dataclass(frozen=True)
class TopView:
    note: str
    table: Table | None


@dataclass(frozen=True)
class DriftView:
    intro: str
    note: Banner | None
    chart: Image | None
    table: Table | None


@dataclass(frozen=True)
class ScoringPage:
    title: str
    heading: str
    facts: Facts
    banners: tuple[Banner, ...]
    histogram: Image | None
    flag_rate_text: str
    bars: tuple[RateBar, ...]
    top: TopView | None
    drift: DriftView | None
    generated_at: str
    expected_rate: str


def _facts(data: ScoringReportData) -> Facts:
    facts = [
        ("input", data.input_name),
        ("model", f"{data.model_name} version {data.model_version}"),
        (
            "threshold",
            score_text(data.threshold)
            + (f" ({data.threshold_rule})" if data.threshold_rule else ""),
        ),
        ("rows read", str(data.rows_read)),
        ("rows scored", str(data.rows_scored)),
        ("rows rejected", share(data.rows_rejected, data.rows_read)),
        ("rows flagged", share(data.rows_flagged, data.rows_scored)),
        ("expected flag rate", f"{data.expected_flag_rate:.2%}"),
    ]
    if data.drift is not None:
        facts.append(("drift", "DETECTED" if data.drift.drifted else "none detected"))
    facts += [(str(k), str(v)) for k, v in data.details.items()]
    return tuple(facts)


def _banners(data: ScoringReportData) -> tuple[Banner, ...]:
    banners = []
    if data.drift is not None and data.drift.drifted:
        banners.append(Banner("drift", data.drift.warning, "drift-warning"))
    if data.flag_rate_warning:
        banners.append(Banner("warn", data.flag_rate_warning, "flag-rate-warning"))
    if data.rows_rejected:
        rejected = share(data.rows_rejected, data.rows_read)
        banners.append(
            Banner(
                "note",
                f"{rejected} rows could not be scored and were rejected with a reason "
                "(see the rejected rows output).",
            )
        )
    banners += [Banner("note", text) for text in data.warnings]
    return tuple(banners)


def _histogram(data: ScoringReportData) -> Image | None:
    hist = data.histogram
    if hist is None or hist.total == 0:
        return None
    figure = figures.binned_score_histogram(
        hist.edges,
        hist.counts,
        data.threshold,
        beyond=(hist.below, hist.above),
        observed=(hist.lowest, hist.highest),
    )
    return image(figure, "histogram of the anomaly scores with the threshold")


def _bars(data: ScoringReportData) -> tuple[RateBar, ...]:
    rates = [("flagged in this batch", data.flag_rate), ("expected", data.expected_flag_rate)]
    top = max(max(r for _, r in rates), 1e-12)
    return tuple(
        RateBar(label, f"{rate:.2%}", css, f"{max(0.5, 100 * rate / top):.1f}")
        for (label, rate), css in zip(rates, ("bar", "bar expected"), strict=True)
    )


def _flag_rate_text(data: ScoringReportData) -> str:
    ratio = data.flag_rate / data.expected_flag_rate if data.expected_flag_rate > 0 else math.nan
    return (
        f"{data.rows_flagged} of {data.rows_scored} scored rows are above the threshold "
        f"({number(ratio, 3)}x the expected share)."
    )


def _reasons(reasons: str) -> tuple[str, ...]:
    """One reason per line."""
    return tuple(re.split(r"(?<=%\)), ", reasons)) if reasons else ()


def _top_cell(column: Any, value: Any) -> Cell:
    if column == "reasons":
        return Cell(_reasons(str(value or "")), "reasons")
    if isinstance(value, float | np.floating):
        if column == "score_percentile":
            return cell("" if math.isnan(value) else f"{value:.1f}", "num")
        if column == "anomaly_score":
            return cell(score_text(float(value)), "num")
        return cell(number(value), "num")
    missing = pd.api.types.is_scalar(value) and pd.isna(value)
    return cell("" if missing else str(value))


def _top(data: ScoringReportData) -> TopView | None:
    top = data.top_anomalies
    if top is None or top.empty:
        return None
    rows = [
        [_top_cell(column, value) for column, value in row.items()] for _, row in top.iterrows()
    ]
    note = (
        f"The {len(top)} highest-scored flagged rows (all of them are in flagged.csv, with "
        "every input column). Each reason names a column, its value in the row, the value "
        "the model expected instead, and its share: how much of the score that one change "
        "would remove, against the other columns' changes. Start with the first column."
    )
    return TopView(note, table([str(c) for c in top.columns], rows))


def drift_table(drift: DriftReport) -> Table:
    """The per-column drift table, worst columns first."""
    order = sorted(drift.columns, key=lambda c: ({"drift": 0, "warn": 1}.get(c.status, 2), -c.psi))
    rows: list[list[Cell | str]] = [
        [
            c.column,
            c.kind,
            cell(c.status, f"status-{c.status}"),
            cell(f"{c.psi:.3f}", "num"),
            cell("" if c.ks is None else f"{c.ks:.3f}", "num"),
            cell(f"{c.missing_rate_reference:.2%}", "num"),
            cell(f"{c.missing_rate_batch:.2%}", "num"),
            c.largest_change,
        ]
        for c in order
    ]
    headers = [
        "column",
        "kind",
        "status",
        "PSI",
        "KS (binned)",
        "missing (training)",
        "missing (batch)",
        "largest change (training -> batch)",
    ]
    return table(headers, rows)


def _drift(data: ScoringReportData) -> DriftView | None:
    drift = data.drift
    if drift is None:
        return None
    intro = (
        f"{drift.rows} batch rows against {drift.reference_rows} training (validation) rows. "
        f"PSI >= {PSI_WARN} is a warning, >= {PSI_DRIFT} is drift (only when a chi-square test "
        "also says the change is not sampling noise). KS compares the binned distributions."
    )
    note = Banner("note", drift.note) if drift.note else None
    if not drift.columns:
        return DriftView(intro, note, None, None)
    chart = figures.psi_bars(
        [c.column for c in drift.columns],
        [c.psi for c in drift.columns],
        [c.status for c in drift.columns],
        PSI_WARN,
        PSI_DRIFT,
    )
    return DriftView(
        intro,
        note,
        image(chart, "population stability index per column"),
        drift_table(drift),
    )


def scoring_page(data: ScoringReportData) -> ScoringPage:
    """The plain values the scoring report shows."""
    return ScoringPage(
        title=f"Scoring report: {data.input_name}",
        heading=f"Anomaly scoring report: {data.input_name}",
        facts=_facts(data),
        banners=_banners(data),
        histogram=_histogram(data),
        flag_rate_text=_flag_rate_text(data),
        bars=_bars(data),
        top=_top(data),
        drift=_drift(data),
        generated_at=stamp(data.generated_at),
        expected_rate=f"{data.expected_flag_rate:.1%}",
    )


def render_scoring_report(data: ScoringReportData) -> str:
    """The HTML report of one scoring run (self-contained; see :mod:`pipeline.report`)."""
    return render("scoring.html", page=scoring_page(data))
