"""A scoring report renders in a real headless browser, offline, with every figure loaded.

Needs a ``chromium`` binary (``.ci/install_chromium.sh`` installs Debian's package; ``make test``
runs it first). Without one the tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.detector import AnomalyDetector
from pipeline.drift import DriftAccumulator, DriftReference
from pipeline.monitoring import ScoreHistogram, TopAnomalies
from pipeline.report import ScoringReportData, render_scoring_report
from tests.conftest import mixed_frame, quick_settings

WINDOW = (1280, 2400)
TIMEOUT_S = 60
# --headless is the new headless mode in current Chromium (checked with 156)
FLAGS = [
    "--headless",
    "--no-sandbox",  # root in containers / CI
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# test-only: counts the images the browser decoded, once the page has loaded
COUNT_IMAGES = """<script>
window.addEventListener("load", function () {
  var loaded = 0;
  for (var i = 0; i < document.images.length; i++) {
    var image = document.images[i];
    if (image.complete && image.naturalWidth > 0) loaded++;
  }
  document.title = "images-loaded:" + loaded + "/" + document.images.length;
});
</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        message = "no chromium on PATH: run .ci/install_chromium.sh (as root) to install it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scoring report of small real data: a quick detector, a drifted batch, real reasons."""
    detector = AnomalyDetector(quick_settings()).fit(mixed_frame(600, seed=0))
    batch = mixed_frame(400, seed=1)
    batch.loc[:40, "x"] += 6.0  # anomalies to show
    batch.loc[:200, "size"] = "L"  # and drift
    batch.loc[3, "colour"] = "<b>purple</b>"
    result = detector.score(batch)
    scores = result.scored["anomaly_score"].to_numpy()
    histogram = ScoreHistogram.for_threshold(detector.validation_scores_, detector.threshold_)
    drift = DriftAccumulator(DriftReference.fit(detector.reference_frame_, detector.schema_))
    for chunk in np.array_split(np.arange(len(batch)), 3):  # as a streaming caller would
        histogram.update(scores[chunk])
        drift.update(batch.iloc[chunk])
    data = ScoringReportData(
        input_name="batch.csv",
        model_name="vae-anomaly",
        model_version="1",
        threshold=detector.threshold_,
        rows_read=result.rows_read,
        rows_scored=len(result.scored),
        rows_rejected=len(result.rejected),
        rows_flagged=int(result.scored["is_anomaly"].sum()),
        expected_flag_rate=detector.settings.threshold.contamination,
        histogram=histogram,
        top_anomalies=TopAnomalies(20).update(result.scored).frame(),
        drift=drift.result(),
    )
    assert data.drift is not None and data.drift.drifted  # the banner is on the page
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_scoring_report(data), encoding="utf-8")
    return path


def run_chromium(binary: str, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = page.parent / f"profile-{len(list(page.parent.glob('profile-*')))}"
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_screenshot_is_not_blank(chromium: str, report: Path) -> None:
    shot = report.parent / "report.png"
    done = run_chromium(
        chromium, report, f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}"
    )
    assert shot.exists(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    with Image.open(shot) as image:
        assert image.size == WINDOW
        pixels = np.asarray(image.convert("RGB"))
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # text, figures, banners: not a blank or one-colour page
    not_white = (pixels < 240).any(axis=2).mean()
    assert not_white > 0.03
    # the red drift banner (#fde8e4 background) is drawn
    banner = np.all(np.abs(pixels.astype(int) - (0xFD, 0xE8, 0xE4)) <= 2, axis=2)
    assert banner.sum() > 1000


def test_every_figure_loads_in_the_browser(chromium: str, report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    figures = html.count('<img class="figure" src="data:image/png;base64,')
    assert figures == html.count("<img ") == 2  # the score histogram and the PSI chart
    probe = report.with_name("probe.html")
    probe.write_text(html.replace("</body>", f"{COUNT_IMAGES}</body>"), encoding="utf-8")
    done = run_chromium(chromium, probe, "--dump-dom")
    title = re.search(r"<title>images-loaded:(\d+)/(\d+)</title>", done.stdout)
    assert title, f"no count in the page title (exit {done.returncode}): {done.stderr[-2000:]}"
    assert (int(title.group(1)), int(title.group(2))) == (figures, figures)
