"""Self-contained HTML reports of a scoring run and of a trained model.

Each report is ONE HTML string: inline CSS, figures embedded as base64 PNG ``data:`` URIs, no
JavaScript and no external URL of any kind, so it renders offline (a mail attachment, an MLflow
artifact, a file in the scoring output folder). The pages are Jinja2 templates (``templates/``)
rendered with autoescaping: every string that comes from data or users (input names, column
names, values, reasons, warnings) is HTML-escaped by the template engine.

- :mod:`pipeline.report.scoring`: :class:`ScoringReportData` (small aggregates a streaming
  caller accumulates with :mod:`pipeline.monitoring`) and :func:`render_scoring_report`;
- :mod:`pipeline.report.training`: :func:`render_training_report` of a fitted
  :class:`~pipeline.detector.AnomalyDetector`, and :func:`training_diagnostics`, the numbers
  behind its figures (e.g. to log the per-column errors as metrics);
- :mod:`pipeline.report.figures`: every matplotlib figure, and the PNG data-URI helper;
- :mod:`pipeline.report.page`: the values templates show, number formats, the environment.

A scoring run::

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
        expected_flag_rate=settings.threshold.contamination,  # or threshold.share_above(...)
        histogram=histogram, top_anomalies=top.frame(), drift=drift.result(),
        warnings=[...],
    ))
"""

from __future__ import annotations

from pipeline.report.figures import loss_curves, score_histogram
from pipeline.report.scoring import ScoringReportData, render_scoring_report
from pipeline.report.training import (
    TrainingDiagnostics,
    render_training_report,
    training_diagnostics,
)

__all__ = [
    "ScoringReportData",
    "TrainingDiagnostics",
    "loss_curves",
    "render_scoring_report",
    "render_training_report",
    "score_histogram",
    "training_diagnostics",
]
