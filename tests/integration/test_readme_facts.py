"""The README's sample numbers and its report screenshot match a fresh run of the sample job.

``docs/readme_facts.py`` writes them (README fact blocks, ``docs/readme-facts.json`` with the
screenshot's sha256, ``docs/report-screenshot.png``) from a run of the sample; these tests
redo the run with the session's default detector (trained as ``make run`` trains) and fail
when anything written no longer matches it: after a change to the model or the score, run
``.venv/bin/python docs/readme_facts.py`` and commit what it wrote.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType

from pipeline.detector import AnomalyDetector
from pipeline.outputs import REPORT_FILE, Manifest

STALE = "out of date: run `.venv/bin/python docs/readme_facts.py` and commit what it writes"


def test_readme_numbers_and_screenshot_match_a_fresh_run(
    readme_facts: ModuleType, sample_detector: AnomalyDetector, sample_run: Manifest
) -> None:
    facts = readme_facts.collect_facts(sample_detector, sample_run)
    recorded = json.loads(readme_facts.FACTS_FILE.read_text())
    assert recorded["facts"] == facts, STALE
    readme = readme_facts.README.read_text(encoding="utf-8")
    assert readme_facts.readme_blocks_in(readme) == readme_facts.readme_blocks(facts), STALE
    # the screenshot is the one rendered from the run whose facts were recorded
    assert readme_facts.sha256(readme_facts.SCREENSHOT) == recorded["screenshot_sha256"], STALE
    assert "](docs/report-screenshot.png)" in readme


def test_the_report_states_the_manifests_facts(sample_run: Manifest) -> None:
    html = (Path(sample_run.output_dir) / REPORT_FILE).read_text(encoding="utf-8")
    facts = dict(re.findall(r"<tr><th>([^<]+)</th><td>([^<]*)</td></tr>", html))
    assert facts["input"] == "data/sample/batch.csv" == sample_run.input_path
    assert facts["threshold"] == f"{sample_run.threshold:.2f} (the model&#39;s: contamination 0.01)"
    assert facts["rows read"] == str(sample_run.rows_read)
    assert facts["rows scored"] == str(sample_run.rows_scored)
    flagged_share = sample_run.rows_flagged / sample_run.rows_scored
    assert facts["rows flagged"] == f"{sample_run.rows_flagged} ({flagged_share:.2%})"
    assert facts["expected flag rate"] == f"{sample_run.expected_flag_rate:.2%}"
    assert f"{sample_run.rows_flagged} of {sample_run.rows_scored} scored rows" in html
