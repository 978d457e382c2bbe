"""Self-contained HTML reports of a scoring run and of a trained model.

Each report is ONE HTML string: inline CSS, figures embedded as base64 PNG ``data:`` URIs, no
JavaScript and no external URL of any kind, so it renders offline (a mail attachment, an MLflow
artifact, a file in the scoring output folder). Every string that comes from data or users
(input names, column names, values, reasons, warnings) is HTML-escaped.

Scoring report. The caller streams millions of rows, so it passes only small aggregates,
accumulated chunk by chunk with the helpers here::

    histogram = ScoreHistogram.for_threshold(validation_scores, detector.threshold_)
    top = TopAnomalies(n=20)
    drift = DriftAccumulator(DriftReference.fit(detector.reference_frame_, detector.schema_))
    for chunk in chunks:
        result = detector.score(chunk)
        histogram.update(result.scored["anomaly_score"].to_numpy())
        top.update(result.scored)
        drift.update(result_accepted_model_columns)
    html = render_scoring_report(ScoringReportData(
        input_name=..., model_name=..., model_version=..., threshold=...,
        rows_read=..., rows_scored=..., rows_rejected=..., rows_flagged=...,
        expected_flag_rate=settings.threshold.contamination,
        histogram=histogram, top_anomalies=top.frame(), drift=drift.result(),
        warnings=[...],
    ))

Sections (each a ``<section id=...>``): a header with the key facts; warning banners at the top
(``id="drift-warning"`` when drift was detected, ``id="flag-rate-warning"`` when the flagged
share is more than twice or under half the expected one, then the caller's warnings); the
score histogram with the threshold (``scores``); flagged vs expected rate (``flag-rate``); the
top anomalies with their reasons (``top-anomalies``); the drift table and PSI chart (``drift``).

Training report: :func:`render_training_report` reads a fitted
:class:`~pipeline.detector.AnomalyDetector`: loss curves (train / validation, with the
reconstruction and KL parts), reconstruction error per source column, a PCA view of the latent
means of the validation rows coloured by anomaly score, and the validation score histogram
with the threshold. :func:`training_diagnostics` gives the numbers behind those figures (e.g.
to log the per-column errors as metrics).
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt

from pipeline import plots
from pipeline.drift import PSI_DRIFT, PSI_WARN, DriftReport
from pipeline.schema import clean_training_frame

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pipeline.detector import AnomalyDetector

DPI = 80  # small figures keep a report at a few hundred KB
FLAG_RATE_FACTOR = 2.0  # flagged share above 2x or below 0.5x the expected one: a banner
MIN_EXPECTED_FLAGS = 10  # ...only when at least this many flags are expected (else noise)
TOP_COLUMNS = ("anomaly_score", "score_percentile", "reasons")

# -- aggregates a streaming caller accumulates -------------------------------------------------


@dataclass
class ScoreHistogram:
    """Counts of scores in fixed bins; values outside the edges count in the outer bins.

    ``below`` / ``above`` say how many values fell outside the edges (they are also in the
    first / last bin's count). Build it with :meth:`for_threshold`, then :meth:`update` chunk by
    chunk (or :meth:`merge` partial histograms): memory is fixed.
    """

    edges: np.ndarray  # (bins + 1,) increasing
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    below: int = 0
    above: int = 0

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.edges, dtype=np.float64)
        if self.edges.ndim != 1 or self.edges.size < 2 or np.any(np.diff(self.edges) <= 0):
            raise ValueError("histogram edges must be at least 2 strictly increasing numbers")
        if self.counts.size == 0:
            self.counts = np.zeros(self.edges.size - 1, dtype=np.int64)
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if self.counts.size != self.edges.size - 1:
            raise ValueError(f"{self.edges.size} edges need {self.edges.size - 1} counts")

    @classmethod
    def for_threshold(
        cls, validation_scores: np.ndarray, threshold: float, bins: int = 60
    ) -> ScoreHistogram:
        """Edges from the model's validation score range, stretched to show anomalies.

        From the lowest validation score to twice the span up to ``max(highest validation
        score, threshold)``: normal rows fill the left part, scores well above anything seen in
        validation still get bins of their own, and the rest count in the last bin.
        """
        finite = np.asarray(validation_scores, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        low = float(finite.min()) if finite.size else float(threshold) - 1.0
        high = max(float(finite.max()) if finite.size else low, float(threshold))
        span = max(high - low, 1e-9 * max(1.0, abs(high)))
        return cls(np.linspace(low, high + span, bins + 1))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def update(self, scores: np.ndarray) -> ScoreHistogram:
        """Count one chunk of scores (NaN ignored); vectorised."""
        values = np.asarray(scores, dtype=np.float64)
        values = values[~np.isnan(values)]
        self.below += int((values < self.edges[0]).sum())
        self.above += int((values > self.edges[-1]).sum())
        positions = np.searchsorted(self.edges, values, side="right") - 1
        positions = np.clip(positions, 0, self.counts.size - 1)  # outside: the outer bins
        self.counts += np.bincount(positions, minlength=self.counts.size)
        return self

    def merge(self, other: ScoreHistogram) -> ScoreHistogram:
        """Add another histogram with the same edges (e.g. of another partition)."""
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge histograms with different edges")
        self.counts += other.counts
        self.below += other.below
        self.above += other.above
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "below": self.below,
            "above": self.above,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ScoreHistogram:
        return cls(
            np.asarray(values["edges"], dtype=np.float64),
            np.asarray(values["counts"], dtype=np.int64),
            int(values.get("below", 0)),
            int(values.get("above", 0)),
        )


class TopAnomalies:
    """The ``n`` highest-scored rows seen so far, kept across chunks (fixed memory).

    ``update`` takes a scored chunk (the output of ``AnomalyDetector.score(...).scored``);
    only ``columns`` are kept (default: the id columns it finds, then ``anomaly_score``,
    ``score_percentile`` and ``reasons``).
    """

    def __init__(self, n: int = 20, columns: Sequence[str] | None = None) -> None:
        self.n = n
        self.columns = list(columns) if columns is not None else None
        self._rows = pd.DataFrame()

    def update(self, scored: pd.DataFrame) -> TopAnomalies:
        if scored.empty:
            return self
        columns = self.columns
        if columns is None:
            # the id columns come first in the scoring output, before anomaly_score
            position = list(scored.columns).index("anomaly_score")
            ids = list(scored.columns[:position])
            columns = ids + [c for c in TOP_COLUMNS if c in scored.columns]
            self.columns = columns
        best = scored.nlargest(self.n, "anomaly_score")[columns]
        both = best if self._rows.empty else pd.concat([self._rows, best], ignore_index=True)
        self._rows = both.nlargest(self.n, "anomaly_score", keep="first").reset_index(drop=True)
        return self

    def frame(self) -> pd.DataFrame:
        """The kept rows, highest score first."""
        return self._rows.copy()


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
    expected_flag_rate: float  # the contamination the threshold was set for
    histogram: ScoreHistogram | None = None
    top_anomalies: pd.DataFrame | None = None  # up to ~20 rows: ids, score, percentile, reasons
    drift: DriftReport | None = None
    warnings: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)  # more header facts (run id, dates)
    generated_at: str = ""  # shown in the footer; default: now (UTC)

    @property
    def flag_rate(self) -> float:
        return self.rows_flagged / self.rows_scored if self.rows_scored else 0.0

    @property
    def flag_rate_warning(self) -> str:
        """A sentence when the flagged share is far from the expected one, else empty.

        Far: above ``FLAG_RATE_FACTOR`` times or below ``1 / FLAG_RATE_FACTOR`` of the expected
        share; judged only when at least ``MIN_EXPECTED_FLAGS`` flags are expected (with fewer,
        the count is mostly noise).
        """
        expected = self.expected_flag_rate
        if expected <= 0 or self.rows_scored * expected < MIN_EXPECTED_FLAGS:
            return ""
        ratio = self.flag_rate / expected
        if 1 / FLAG_RATE_FACTOR <= ratio <= FLAG_RATE_FACTOR:
            return ""
        direction = "more" if ratio > 1 else "fewer"
        return (
            f"{self.rows_flagged} of {self.rows_scored} rows flagged ({self.flag_rate:.2%}), "
            f"{direction} than the expected {expected:.2%} ({ratio:.1f}x): the batch differs "
            "from the training data, or the threshold no longer fits it."
        )


# -- HTML building blocks ----------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: #222; background: #fff; font-size: 14px; }
main { max-width: 1100px; margin: 0 auto; padding: 16px 24px 40px; }
h1 { font-size: 22px; margin: 8px 0 12px; } h2 { font-size: 17px; margin: 28px 0 8px;
  border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts th { width: 190px; }
.banner { padding: 10px 14px; margin: 10px 0; border-radius: 4px; border-left: 6px solid; }
.banner-drift { background: #fde8e4; border-color: #cc3311; }
.banner-warn { background: #fff3dc; border-color: #ee9922; }
.banner-note { background: #eef3fa; border-color: #4477aa; }
.status-ok { color: #225522; } .status-warn { background: #fff3dc; font-weight: 600; }
.status-drift { background: #fde8e4; color: #a0200a; font-weight: 700; }
img.figure { display: block; max-width: 100%; margin: 8px 0; }
.bar { height: 16px; background: #4477aa; display: inline-block; vertical-align: middle; }
.bar.expected { background: #999; } .muted { color: #666; }
.reasons { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
footer { margin-top: 32px; color: #777; font-size: 12px; }
"""


def _figure(fig: Figure, alt: str) -> str:
    """The figure as an ``<img>`` with a base64 PNG data URI; the figure is closed."""
    buffer = io.BytesIO()
    try:
        # no "Software" text chunk: the page holds no URL at all, not even encoded
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="figure" src="data:image/png;base64,{data}" alt="{escape(alt)}">'


Cell = str | tuple[str, str]  # text, or (text, css class of the cell); text is escaped


def _table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], css: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            text, klass = (cell, "") if isinstance(cell, str) else cell
            attribute = f' class="{escape(klass)}"' if klass else ""
            cells.append(f"<td{attribute}>{escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    klass = f' class="{escape(css)}"' if css else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _facts(items: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in items)
    return f'<table class="facts"><tbody>{rows}</tbody></table>'


def _banner(kind: str, text: str, element_id: str = "") -> str:
    attribute = f' id="{escape(element_id)}"' if element_id else ""
    return f'<div class="banner banner-{escape(kind)}"{attribute}>{escape(text)}</div>'


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}g}"
    return str(value)


def _page(title: str, body: str, generated_at: str) -> str:
    stamp = generated_at or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><main>\n{body}\n<footer>generated {escape(stamp)} by vae-anomaly</footer>"
        "</main></body></html>\n"
    )


# -- the scoring report ------------------------------------------------------------------------


def _share(part: int, whole: int) -> str:
    return f"{part} ({part / whole:.2%})" if whole else str(part)


def _scoring_header(data: ScoringReportData) -> str:
    facts = [
        ("input", data.input_name),
        ("model", f"{data.model_name} version {data.model_version}"),
        ("threshold", f"{data.threshold:.4g}"),
        ("rows read", str(data.rows_read)),
        ("rows scored", str(data.rows_scored)),
        ("rows rejected", _share(data.rows_rejected, data.rows_read)),
        ("rows flagged", _share(data.rows_flagged, data.rows_scored)),
        ("expected flag rate", f"{data.expected_flag_rate:.2%}"),
    ]
    if data.drift is not None:
        facts.append(("drift", "DETECTED" if data.drift.drifted else "none detected"))
    facts += [(str(k), str(v)) for k, v in data.details.items()]
    title = f"Anomaly scoring report: {data.input_name}"
    return f'<header id="summary"><h1>{escape(title)}</h1>{_facts(facts)}</header>'


def _scoring_banners(data: ScoringReportData) -> str:
    banners = []
    if data.drift is not None and data.drift.drifted:
        banners.append(_banner("drift", data.drift.warning, "drift-warning"))
    if data.flag_rate_warning:
        banners.append(_banner("warn", data.flag_rate_warning, "flag-rate-warning"))
    if data.rows_rejected:
        banners.append(
            _banner(
                "note",
                f"{_share(data.rows_rejected, data.rows_read)} rows could not be scored and "
                "were rejected with a reason (see the rejected rows output).",
            )
        )
    banners += [_banner("note", text) for text in data.warnings]
    return "\n".join(banners)


def _scores_section(data: ScoringReportData) -> str:
    hist = data.histogram
    if hist is None or hist.total == 0:
        content = '<p class="muted">no score histogram was recorded for this run.</p>'
    else:
        figure = plots.binned_score_histogram(
            hist.edges, hist.counts, data.threshold, beyond=(hist.below, hist.above)
        )
        content = _figure(figure, "histogram of the anomaly scores with the threshold")
    return f'<section id="scores"><h2>Score distribution</h2>{content}</section>'


def _flag_rate_section(data: ScoringReportData) -> str:
    rates = [("flagged in this batch", data.flag_rate), ("expected", data.expected_flag_rate)]
    top = max(max(r for _, r in rates), 1e-12)
    rows = []
    for (label, rate), css in zip(rates, ("bar", "bar expected"), strict=True):
        width = max(0.5, 100 * rate / top)
        rows.append(
            f"<tr><th>{escape(label)}</th><td class='num'>{rate:.2%}</td>"
            f'<td style="width:420px"><span class="{css}" style="width:{width:.1f}%"></span>'
            "</td></tr>"
        )
    ratio = data.flag_rate / data.expected_flag_rate if data.expected_flag_rate > 0 else math.nan
    text = (
        f"{data.rows_flagged} of {data.rows_scored} scored rows are above the threshold "
        f"({_number(ratio, 3)}x the expected share)."
    )
    return (
        '<section id="flag-rate"><h2>Flagged rate vs expected</h2>'
        f"<p>{escape(text)}</p><table><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _reasons_html(reasons: str) -> str:
    """One reason per line; each escaped."""
    parts = re.split(r"(?<=%\)), ", reasons) if reasons else []
    return "<br>".join(escape(p) for p in parts)


def _top_section(data: ScoringReportData) -> str:
    top = data.top_anomalies
    if top is None or top.empty:
        return (
            '<section id="top-anomalies"><h2>Top anomalies</h2>'
            '<p class="muted">no anomalies to show.</p></section>'
        )
    headers = "".join(f"<th>{escape(str(c))}</th>" for c in top.columns)
    body = []
    for _, row in top.iterrows():
        cells = []
        for column, value in row.items():
            if column == "reasons":
                cells.append(f'<td class="reasons">{_reasons_html(str(value or ""))}</td>')
            elif isinstance(value, float | np.floating):
                digits = 2 if column == "score_percentile" else 4
                cells.append(f'<td class="num">{escape(_number(value, digits + 2))}</td>')
            else:
                missing = pd.api.types.is_scalar(value) and pd.isna(value)
                cells.append(f"<td>{escape('' if missing else str(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    table = f"<table><thead><tr>{headers}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    note = (
        f"The {len(top)} highest-scored flagged rows; reasons name the columns that explain "
        "each score most: how much the score falls when the column alone takes its most "
        "plausible value (shown as expected), and that fall's share of all such falls."
    )
    return (
        f'<section id="top-anomalies"><h2>Top anomalies</h2><p>{escape(note)}</p>{table}</section>'
    )


def drift_table(drift: DriftReport) -> str:
    """The per-column drift table as an HTML ``<table>`` (escaped), worst columns first."""
    order = sorted(drift.columns, key=lambda c: ({"drift": 0, "warn": 1}.get(c.status, 2), -c.psi))
    rows: list[list[Cell]] = [
        [
            c.column,
            c.kind,
            (c.status, f"status-{c.status}"),
            (f"{c.psi:.3f}", "num"),
            ("" if c.ks is None else f"{c.ks:.3f}", "num"),
            (f"{c.missing_rate_reference:.2%}", "num"),
            (f"{c.missing_rate_batch:.2%}", "num"),
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
    return _table(headers, rows)


def _drift_section(data: ScoringReportData) -> str:
    drift = data.drift
    if drift is None:
        return (
            '<section id="drift"><h2>Data drift</h2>'
            '<p class="muted">drift was not measured for this run.</p></section>'
        )
    intro = (
        f"{drift.rows} batch rows against {drift.reference_rows} training (validation) rows. "
        f"PSI >= {PSI_WARN} is a warning, >= {PSI_DRIFT} is drift (only when a chi-square test "
        "also says the change is not sampling noise). KS compares the binned distributions."
    )
    parts = [f"<p>{escape(intro)}</p>"]
    if drift.note:
        parts.append(_banner("note", drift.note))
    if drift.columns:
        figure = plots.psi_bars(
            [c.column for c in drift.columns],
            [c.psi for c in drift.columns],
            [c.status for c in drift.columns],
            PSI_WARN,
            PSI_DRIFT,
        )
        parts.append(_figure(figure, "population stability index per column"))
        parts.append(drift_table(drift))
    return f'<section id="drift"><h2>Data drift</h2>{"".join(parts)}</section>'


def render_scoring_report(data: ScoringReportData) -> str:
    """The HTML report of one scoring run (self-contained; see the module docstring)."""
    body = "\n".join(
        [
            _scoring_header(data),
            _scoring_banners(data),
            _scores_section(data),
            _flag_rate_section(data),
            _top_section(data),
            _drift_section(data),
        ]
    )
    return _page(f"Scoring report: {data.input_name}", body, data.generated_at)


# -- the training report -----------------------------------------------------------------------


@dataclass
class TrainingDiagnostics:
    """The numbers behind the training report's figures, from the validation rows."""

    column_errors: dict[str, float]  # mean precision-weighted squared error per source column
    latent_coords: np.ndarray  # (rows, 2): first two principal components of the latent means
    latent_explained: tuple[float, float]  # share of the latent variance of those components
    scores: np.ndarray  # (rows,) anomaly score of the same rows
    rows: int


def training_diagnostics(
    detector: AnomalyDetector, max_rows: int = 5000, seed: int = 0
) -> TrainingDiagnostics | None:
    """Per-column error, latent PCA and scores of (up to ``max_rows``) validation rows.

    Uses ``detector.reference_frame_`` (the held-out validation rows, raw values); a seeded
    sample of ``max_rows`` keeps it fast for huge training sets. None when the detector kept
    no validation rows (a model saved without them).
    """
    reference = getattr(detector, "reference_frame_", None)
    if reference is None or reference.empty:
        return None
    if len(reference) > max_rows:
        reference = reference.sample(max_rows, random_state=seed)
    clean = clean_training_frame(reference, detector.schema_)
    x = detector.preprocessor_.transform(clean)
    model = detector.model_
    device = next(model.parameters()).device
    with torch.inference_mode():
        inputs = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        mu, _ = model.encode(inputs)
        error = (inputs - model.decode(mu)).pow(2) * model.feature_precision()
        latent = mu.double().cpu().numpy()
        feature_error = error.double().cpu().numpy()
    columns = detector.schema_.model_columns
    sources = np.asarray(detector.preprocessor_.feature_sources)
    column_errors = {c: float(feature_error[:, sources == c].sum(axis=1).mean()) for c in columns}
    centred = latent - latent.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ components[:2].T
    if coords.shape[1] < 2:
        coords = np.column_stack([coords, np.zeros(len(coords))])
    variance = singular**2
    share = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
    explained = (float(share[0]), float(share[1]) if share.size > 1 else 0.0)
    scores = detector._terms(clean)[0]
    return TrainingDiagnostics(column_errors, coords, explained, scores, len(reference))


def _training_facts(detector: AnomalyDetector, input_name: str, model: str) -> str:
    s = detector.settings
    config = detector.vae_config_
    history = detector.history_
    facts = [
        ("model", model),
        ("training data", input_name),
        ("training rows", str(getattr(detector, "n_train_rows_", ""))),
        ("validation rows", str(len(getattr(detector, "reference_frame_", [])))),
        (
            "columns",
            f"{len(detector.schema_.numeric_columns)} numeric, "
            f"{len(detector.schema_.categorical_columns)} categorical, "
            f"{len(detector.schema_.id_columns)} id (passed through)",
        ),
        ("encoded features", str(detector.preprocessor_.n_features)),
        (
            "architecture",
            f"hidden {list(config.hidden_dims)}, latent {config.latent_dim}, "
            f"{config.activation}, decoder variance {config.decoder_variance}",
        ),
        ("epochs", f"{len(history)} run, best {detector.best_epoch_}"),
        ("score", f"{s.scoring.score} (kl weight {s.scoring.kl_weight})"),
        ("threshold", f"{detector.threshold_:.4g} (contamination {s.threshold.contamination})"),
    ]
    seconds = getattr(detector, "train_seconds_", None)
    if seconds is not None:
        facts.append(("training time", f"{seconds:.1f} s on {getattr(detector, 'device_', '')}"))
    return _facts(facts)


def _data_summary(frame: pd.DataFrame, detector: AnomalyDetector) -> str:
    rows: list[list[Cell]] = []
    for column, role in detector.schema_.roles.items():
        if column not in frame.columns:
            continue
        values = frame[column]
        summary = ""
        if role == "numeric":
            numbers = pd.to_numeric(values, errors="coerce")
            summary = (
                f"min {_number(numbers.min())}, median {_number(numbers.median())}, "
                f"max {_number(numbers.max())}"
            )
        elif role == "categorical":
            common = values.astype(str).value_counts().head(3)
            summary = ", ".join(f"{k} ({v / len(values):.0%})" for k, v in common.items())
        rows.append(
            [
                column,
                role,
                (f"{values.isna().mean():.2%}", "num"),
                (str(values.nunique(dropna=True)), "num"),
                summary,
            ]
        )
    return _table(["column", "role", "missing", "distinct", "summary"], rows)


def render_training_report(
    detector: AnomalyDetector,
    frame: pd.DataFrame | None = None,
    *,
    input_name: str = "",
    model_name: str = "",
    model_version: str = "",
    details: dict[str, str] | None = None,
    generated_at: str = "",
) -> str:
    """The HTML report of a fitted detector (self-contained; see the module docstring).

    ``frame``, when given, is the training table: it adds a per-column data summary.
    ``details`` are more header facts (run id, data hash, ...).
    """
    detector._check_fitted()
    name = model_name or detector.settings.tracking.registered_model
    model = f"{name} version {model_version}" if model_version else name
    title = f"Training report: {model}"
    header = _training_facts(detector, input_name or "(not given)", model)
    if details:
        header += _facts([(str(k), str(v)) for k, v in details.items()])
    parts = [f'<header id="summary"><h1>{escape(title)}</h1>{header}</header>']

    loss = _figure(
        plots.loss_curves(detector.history_, detector.best_epoch_),
        "training and validation loss per epoch",
    )
    parts.append(
        '<section id="loss"><h2>Loss curves</h2><p>Mean per-row loss (negative ELBO) and its '
        "reconstruction and KL parts; the weights of the best validation epoch are kept.</p>"
        f"{loss}</section>"
    )
    diagnostics = training_diagnostics(detector)
    if diagnostics is None:
        parts.append(
            '<section id="validation"><h2>Validation rows</h2><p class="muted">this model '
            "kept no validation rows: no per-column error, latent view or score histogram."
            "</p></section>"
        )
    else:
        columns = list(diagnostics.column_errors)
        errors = _figure(
            plots.column_error_bars(columns, list(diagnostics.column_errors.values())),
            "reconstruction error per column",
        )
        parts.append(
            '<section id="column-errors"><h2>Reconstruction error per column</h2><p>'
            "Squared error of the encoded features, weighted by the decoder's precision and "
            f"summed per source column, mean over {diagnostics.rows} validation rows. A column "
            "with a large error is one the model reconstructs poorly."
            f"</p>{errors}</section>"
        )
        latent = _figure(
            plots.latent_scatter(
                diagnostics.latent_coords,
                diagnostics.scores,
                detector.threshold_,
                diagnostics.latent_explained,
            ),
            "latent means of the validation rows",
        )
        parts.append(
            '<section id="latent"><h2>Latent space</h2><p>The latent means of the validation '
            "rows, projected on their first two principal components, coloured by anomaly "
            f"score.</p>{latent}</section>"
        )
        validation = getattr(detector, "validation_scores_", None)
        scores = diagnostics.scores if validation is None else np.asarray(validation)
        histogram = _figure(
            plots.score_histogram(scores, detector.threshold_),
            "validation score histogram with the threshold",
        )
        parts.append(
            '<section id="validation-scores"><h2>Validation scores</h2><p>The threshold is '
            "the 1 - contamination quantile of these scores.</p>"
            f"{histogram}</section>"
        )
    if frame is not None:
        parts.append(
            '<section id="data"><h2>Training data</h2>'
            f"<p>{len(frame)} rows.</p>{_data_summary(frame, detector)}</section>"
        )
    return _page(title, "\n".join(parts), generated_at)
