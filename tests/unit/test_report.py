"""Self-contained HTML reports (pipeline/report/): sections, figures, escaping, no URLs."""

from __future__ import annotations

import base64
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from pipeline.config import Settings
from pipeline.detector import AnomalyDetector
from pipeline.drift import DriftAccumulator, DriftReference, DriftReport
from pipeline.monitoring import ScoreHistogram
from pipeline.report import (
    ScoringReportData,
    figures,
    render_scoring_report,
    render_training_report,
    training_diagnostics,
)
from pipeline.report import training as training_view
from pipeline.report.training import TrainingStop
from pipeline.sample_data import make_table
from pipeline.schema import infer_schema
from tests.conftest import mixed_frame, quick_settings

MALICIOUS = "<script>alert(1)</script>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_SOURCE = re.compile(r'<img [^>]*src="([^"]*)"')


@pytest.fixture(scope="module")
def drift_reports() -> tuple[DriftReport, DriftReport]:
    """(not drifted, drifted) reports of the sample generator's tables."""
    training = make_table(2000, seed=31, anomaly_rate=0.0)
    reference = DriftReference.fit(training, infer_schema(training, Settings().data))
    batch = make_table(1000, seed=32, anomaly_rate=0.0)
    calm = DriftAccumulator(reference).update(batch).result()
    batch["unit_price"] *= 100.0  # cents instead of dollars
    drifted = DriftAccumulator(reference).update(batch).result()
    assert not calm.drifted and drifted.drifted
    return calm, drifted


def scoring_data(drift: DriftReport | None, **changes: object) -> ScoringReportData:
    rng = np.random.default_rng(0)
    histogram = ScoreHistogram.for_threshold(rng.normal(size=2000), threshold=2.3)
    histogram.update(rng.normal(size=10_000)).update(np.array([50.0, 80.0]))
    top = pd.DataFrame(
        {
            "transaction_id": ["T1", "T2", MALICIOUS],
            "anomaly_score": [80.0, 50.0, 9.5],
            "score_percentile": [100.0, 100.0, 99.9],
            "reasons": [
                "amount=9800 (expected ~120, 45%), country=XX (expected US, 30%)",
                f"currency={MALICIOUS} (expected USD, 90%)",
                "hour=3 (expected ~14, 60%)",
            ],
        }
    )
    values: dict[str, object] = {
        "input_name": "batch.csv",
        "model_name": "vae-anomaly",
        "model_version": "7",
        "threshold": 2.3,
        "rows_read": 10_010,
        "rows_scored": 10_002,
        "rows_rejected": 8,
        "rows_flagged": 110,
        "expected_flag_rate": 0.01,
        "histogram": histogram,
        "top_anomalies": top,
        "drift": drift,
        "warnings": [f"extra column {MALICIOUS} ignored"],
        "generated_at": "2025-01-02 03:04 UTC",
    }
    values.update(changes)
    return ScoringReportData(**values)  # type: ignore[arg-type]


def image_sources(html: str) -> list[str]:
    return IMAGE_SOURCE.findall(html)


def assert_self_contained(html: str) -> None:
    lowered = html.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "<script" not in lowered  # no JavaScript at all
    assert "<link" not in lowered and "@import" not in lowered and "url(" not in lowered
    for source in image_sources(html):
        assert source.startswith("data:image/png;base64,")
        png = base64.b64decode(source.split(",", 1)[1], validate=True)
        assert png.startswith(PNG_SIGNATURE)
        assert b"http" not in png  # no URL hidden in the PNG metadata either


def test_scoring_report_sections_and_figures(
    drift_reports: tuple[DriftReport, DriftReport],
) -> None:
    html = render_scoring_report(scoring_data(drift_reports[1]))
    for section in ("summary", "scores", "flag-rate", "top-anomalies", "drift"):
        assert f'id="{section}"' in html
    assert len(image_sources(html)) == 2  # score histogram, PSI per column
    assert_self_contained(html)
    assert "vae-anomaly version 7" in html and "batch.csv" in html
    assert "2025-01-02 03:04 UTC" in html
    # the drift table lists every column with its status
    for column in drift_reports[1].columns:
        assert f"<td>{column.column}</td>" in html
    assert '<td class="status-drift">drift</td>' in html
    assert 50_000 < len(html) < 500_000  # figures embedded, and small


def test_drift_banner_only_when_drifted(drift_reports: tuple[DriftReport, DriftReport]) -> None:
    calm, drifted = drift_reports
    with_drift = render_scoring_report(scoring_data(drifted))
    assert 'id="drift-warning"' in with_drift
    banner = re.search(
        r'<div class="banner banner-drift" id="drift-warning">(.*?)</div>', with_drift
    )
    assert banner and "unit_price" in banner.group(1)
    # the banner comes before the figures
    assert with_drift.index('id="drift-warning"') < with_drift.index('id="scores"')
    # (no score histogram in these two: fewer figures to draw)
    assert 'id="drift-warning"' not in render_scoring_report(scoring_data(calm, histogram=None))
    no_drift_measured = render_scoring_report(scoring_data(None, histogram=None))
    assert 'id="drift-warning"' not in no_drift_measured
    assert "drift was not measured" in no_drift_measured


def test_every_user_string_is_escaped(drift_reports: tuple[DriftReport, DriftReport]) -> None:
    data = scoring_data(
        drift_reports[0], input_name=f"in{MALICIOUS}.csv", details={MALICIOUS: MALICIOUS}
    )
    html = render_scoring_report(data)
    assert MALICIOUS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # in the input name, the details, the id column, a reason and a warning: all escaped
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6
    assert_self_contained(html)


def test_flag_rate_banner(drift_reports: tuple[DriftReport, DriftReport]) -> None:
    calm = drift_reports[0]
    # 110 of 10002 flagged for 1% expected: fine
    assert scoring_data(calm).flag_rate_warning == ""
    assert 'id="flag-rate-warning"' not in render_scoring_report(scoring_data(calm))
    # 4x, and 0.3x the expected share
    assert "more than the expected 1.00%" in scoring_data(calm, rows_flagged=400).flag_rate_warning
    fewer = scoring_data(calm, rows_flagged=30)
    assert "fewer than the expected" in fewer.flag_rate_warning
    assert 'id="flag-rate-warning"' in render_scoring_report(fewer)
    # 3 of 100 rows: too few expected flags (1) to judge
    small = scoring_data(calm, rows_read=100, rows_scored=100, rows_rejected=0, rows_flagged=3)
    assert small.flag_rate_warning == ""


@pytest.fixture(scope="module")
def detector() -> AnomalyDetector:
    return AnomalyDetector(quick_settings()).fit(mixed_frame(400, seed=3))


def test_training_report_renders_with_its_figures(detector: AnomalyDetector) -> None:
    frame = mixed_frame(400, seed=3)
    html = render_training_report(
        detector, frame, input_name="train.csv", model_version="2", details={"run id": "abc"}
    )
    for section in ("summary", "loss", "column-errors", "latent", "validation-scores", "data"):
        assert f'id="{section}"' in html
    # loss curves, per-column error, latent view, validation score histogram
    assert len(image_sources(html)) == 4
    assert_self_contained(html)
    assert "vae-anomaly version 2" in html and "train.csv" in html and "run id" in html
    assert len(html) < 600_000


def test_training_diagnostics(detector: AnomalyDetector) -> None:
    diagnostics = training_diagnostics(detector)
    assert diagnostics is not None
    assert list(diagnostics.column_errors) == detector.schema_.model_columns
    assert all(v >= 0 and np.isfinite(v) for v in diagnostics.column_errors.values())
    n = len(detector.reference_frame_)
    assert diagnostics.rows == n and diagnostics.latent_coords.shape == (n, 2)
    first, second = diagnostics.latent_explained
    assert 0.0 <= second <= first <= 1.0 and first + second <= 1.0 + 1e-9
    # the scores are the detector's own, for the same rows
    assert np.allclose(np.sort(diagnostics.scores), np.sort(detector.validation_scores_))


def test_training_report_without_validation_rows(detector: AnomalyDetector) -> None:
    detector.reference_frame_, kept = pd.DataFrame(), detector.reference_frame_
    try:
        html = render_training_report(detector)
    finally:
        detector.reference_frame_ = kept
    assert "kept no validation rows" in html
    assert len(image_sources(html)) == 1  # the loss curves still


def test_score_histogram_axis_spans_the_data_and_legends_say_what_they_count() -> None:
    edges = np.linspace(-1.4, 14.0, 61)  # laid out for scores up to 14
    histogram = ScoreHistogram(edges).update(np.r_[np.linspace(-1.0, 5.8, 500), -1.46, -1.5])
    figure = figures.binned_score_histogram(
        histogram.edges,
        histogram.counts,
        3.7,
        beyond=(histogram.below, histogram.above),
        observed=(histogram.lowest, histogram.highest),
    )
    try:
        ax = figure.axes[0]
        left, right = ax.get_xlim()
        assert -2.0 < left < -1.4 and 5.8 < right < 7.0  # not to 14
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == [
            "threshold 3.70: rows to its right are flagged",
            "the leftmost bar also counts 2 rows scoring below -1.40 (down to -1.50)",
        ]
        assert ax.get_title() == "batch scores: 502 rows, highest 5.80"
    finally:
        plt.close(figure)


def test_every_scoring_section_says_how_to_read_it(
    drift_reports: tuple[DriftReport, DriftReport],
) -> None:
    data = scoring_data(drift_reports[1], threshold_rule="the model's: contamination 0.01")
    html = render_scoring_report(data)
    sections = re.findall(r'<section id="([\w-]+)">\n<h2>[^<]*</h2>\n<p class="how">', html)
    assert sections == ["scores", "flag-rate", "top-anomalies", "drift"]
    assert "<th>threshold</th><td>2.30 (the model&#39;s: contamination 0.01)</td>" in html
    assert '<td class="num">80.00</td>' in html and '<td class="num">99.9</td>' in html
    assert "about 1.0% of themselves there" in html


def test_training_stop_says_whether_early_stopping_triggered() -> None:
    early = TrainingStop(epochs=37, max_epochs=100, best_epoch=29, patience=8)
    assert early.stopped_early and not early.still_improving and early.warning() == ""
    assert early.text().startswith("37 of at most 100: early stopping triggered")
    limit = TrainingStop(epochs=100, max_epochs=100, best_epoch=100, patience=8)
    assert not limit.stopped_early and limit.still_improving
    assert "early stopping did not trigger" in limit.text()
    assert "still falling" in limit.warning()
    flat = TrainingStop(epochs=100, max_epochs=100, best_epoch=90, patience=8)
    assert not flat.still_improving and flat.warning() == ""


def test_training_report_shows_the_data_path_epochs_and_a_warning(
    detector: AnomalyDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    html = render_training_report(detector, input_name="/data/train/2026-01.csv")
    assert "<th>training data</th><td>/data/train/2026-01.csv</td>" in html
    assert f"of at most {detector.settings.training.max_epochs}: early stopping" in html
    assert "(not recorded)" in render_training_report(detector)
    monkeypatch.setattr(training_view, "training_stop", lambda d: TrainingStop(100, 100, 100, 8))
    warned = render_training_report(detector)
    assert 'id="epochs-warning"' in warned and "still falling" in warned
    assert warned.count('<p class="how">') == 4


def test_training_report_says_how_many_rows_were_trimmed(
    detector: AnomalyDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = detector.n_train_rows_
    monkeypatch.setattr(detector, "trimmed_rows_", 0)
    assert f"<th>training rows</th><td>{rows}</td>" in render_training_report(detector)
    monkeypatch.setattr(detector, "trimmed_rows_", 7)
    expected = f"<th>training rows</th><td>{rows} (7 far-out rows dropped halfway)</td>"
    assert expected in render_training_report(detector)
