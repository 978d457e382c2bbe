"""What a scoring run watches: score histogram, top anomalies and the flag-rate rule
(accumulated chunk by chunk), the drift summary of a file, and ``monitoring.csv`` across runs.

A caller streams millions of rows, so it keeps only small aggregates with fixed memory::

    histogram = ScoreHistogram.for_threshold(validation_scores, detector.threshold_)
    top = TopAnomalies(n=20)
    for chunk in chunks:
        result = detector.score(chunk)
        histogram.update(result.scored["anomaly_score"].to_numpy())
        top.update(result.scored)
    warning = flag_rate_warning(rows_flagged, rows_scored, settings.threshold.contamination)

The scoring report (:mod:`pipeline.report`) shows them. ``<output_root>/monitoring.csv`` has
one row per scored output (flag rate, drift), rebuilt from the manifests by
:func:`write_monitoring` (the scoring flow calls it once per run).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.drift import DriftReference, DriftReport
from pipeline.outputs import DriftSummary, all_manifests, input_lock, write_atomically

if TYPE_CHECKING:
    from pipeline.detector import AnomalyDetector

FLAG_RATE_FACTOR = 2.0  # flagged share above 2x or below 0.5x the expected one: a warning
MIN_EXPECTED_FLAGS = 10  # ...only when at least this many flags are expected (else noise)
TOP_COLUMNS = ("anomaly_score", "score_percentile", "reasons")


def flag_rate(rows_flagged: int, rows_scored: int) -> float:
    """The flagged share of the scored rows (0 when none were scored)."""
    return rows_flagged / rows_scored if rows_scored else 0.0


def flag_rate_warning(rows_flagged: int, rows_scored: int, expected_rate: float) -> str:
    """A sentence when the flagged share is far from the expected one, else empty.

    Far: above ``FLAG_RATE_FACTOR`` times or below ``1 / FLAG_RATE_FACTOR`` of the expected
    share; judged only when at least ``MIN_EXPECTED_FLAGS`` flags are expected (with fewer,
    the count is mostly noise).
    """
    if expected_rate <= 0 or rows_scored * expected_rate < MIN_EXPECTED_FLAGS:
        return ""
    rate = flag_rate(rows_flagged, rows_scored)
    ratio = rate / expected_rate
    if 1 / FLAG_RATE_FACTOR <= ratio <= FLAG_RATE_FACTOR:
        return ""
    direction = "more" if ratio > 1 else "fewer"
    return (
        f"{rows_flagged} of {rows_scored} rows flagged ({rate:.2%}), "
        f"{direction} than the expected {expected_rate:.2%} ({ratio:.1f}x): the batch differs "
        "from the training data, or the threshold no longer fits it."
    )


@dataclass
class ScoreHistogram:
    """Counts of scores in fixed bins; values outside the edges count in the outer bins.

    ``below`` / ``above`` say how many values fell outside the edges (they are also in the
    first / last bin's count); ``lowest`` / ``highest`` are the extreme values counted (for a
    figure's axis and legend: the data's range, not the bins'). Build it with
    :meth:`for_threshold`, then :meth:`update` chunk by chunk (or :meth:`merge` partial
    histograms): memory is fixed.
    """

    edges: np.ndarray  # (bins + 1,) increasing
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    below: int = 0
    above: int = 0
    lowest: float = math.inf
    highest: float = -math.inf

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
        if values.size:
            self.lowest = min(self.lowest, float(values.min()))
            self.highest = max(self.highest, float(values.max()))
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
        self.lowest = min(self.lowest, other.lowest)
        self.highest = max(self.highest, other.highest)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "below": self.below,
            "above": self.above,
            "lowest": self.lowest if self.total else None,
            "highest": self.highest if self.total else None,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ScoreHistogram:
        return cls(
            np.asarray(values["edges"], dtype=np.float64),
            np.asarray(values["counts"], dtype=np.int64),
            int(values.get("below", 0)),
            int(values.get("above", 0)),
            math.inf if values.get("lowest") is None else float(values["lowest"]),
            -math.inf if values.get("highest") is None else float(values["highest"]),
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


# -- drift: the reference of a loaded model, and the manifest's summary -------------------------
_drift_references: weakref.WeakKeyDictionary[
    AnomalyDetector, tuple[pd.DataFrame, DriftReference]
] = weakref.WeakKeyDictionary()


def drift_reference(detector: AnomalyDetector) -> DriftReference | None:
    """Per-column bins of the detector's held-out training rows, for drift monitoring (built
    once per detector and reference); None for a model saved without those rows."""
    frame = detector.reference_frame_
    if frame.empty:
        return None
    cached = _drift_references.get(detector)
    if cached is None or cached[0] is not frame:
        cached = (frame, DriftReference.fit(frame, detector.schema_))
        _drift_references[detector] = cached
    return cached[1]


def drift_summary(drift: DriftReport | None) -> DriftSummary:
    """The manifest's drift facts. PSI values are left out when the batch is too small to
    judge (they are mostly sampling noise) or the model kept no training rows to compare."""
    if drift is None:
        note = "no drift reference: the model was saved without its held-out training rows"
        return DriftSummary(note=note)
    worst = drift.worst[0] if drift.worst else None
    judged = not drift.note
    return DriftSummary(
        drifted=drift.drifted,
        warning=drift.warning,
        note=drift.note,
        max_psi=max((c.psi for c in drift.columns), default=0.0) if judged else None,
        worst_column=worst.column if worst else "",
        psi={c.column: c.psi for c in drift.columns} if judged else {},
    )


# -- monitoring.csv: one row per scored output, across runs ------------------------------------
MONITORING_FILE = "monitoring.csv"
MONITORING_COLUMNS = [
    "run_date",
    "input",
    "finished_at",
    "model_name",
    "model_version",
    "rows_scored",
    "rows_flagged",
    "rows_rejected",
    "flag_rate",
    "expected_flag_rate",
    "drifted",
    "max_psi",
    "worst_column",
    "output_dir",
]


def monitoring_table(output_root: Path) -> pd.DataFrame:
    """One row per scored output under ``output_root`` (flag rate and drift), oldest first.

    Built from the manifests, so it never misses or repeats a run, whatever crashed when.
    """
    rows = []
    for run_date, manifest in all_manifests(output_root):
        drift = manifest.drift
        rows.append(
            {
                "run_date": run_date,
                "input": Path(manifest.input_path).name,
                "finished_at": manifest.finished_at,
                "model_name": manifest.model_name,
                "model_version": manifest.model_version,
                "rows_scored": manifest.rows_scored,
                "rows_flagged": manifest.rows_flagged,
                "rows_rejected": manifest.rows_rejected,
                "flag_rate": manifest.observed_flag_rate,
                "expected_flag_rate": (
                    float("nan")
                    if manifest.expected_flag_rate is None
                    else manifest.expected_flag_rate
                ),
                "drifted": drift.drifted,
                "max_psi": float("nan") if drift.max_psi is None else drift.max_psi,
                "worst_column": drift.worst_column,
                "output_dir": manifest.output_dir,
            }
        )
    table = pd.DataFrame(rows, columns=MONITORING_COLUMNS)
    return table.sort_values(["finished_at", "input"], kind="stable").reset_index(drop=True)


def write_monitoring(output_root: Path, lock_timeout_seconds: float = 600) -> Path:
    """Rewrite ``<output_root>/monitoring.csv`` from the manifests (atomically, under a lock)."""
    with input_lock(output_root, ".monitoring", lock_timeout_seconds):
        table = monitoring_table(output_root)
        return write_atomically(
            output_root / MONITORING_FILE, lambda p: table.to_csv(p, index=False)
        )
