"""The README's numbers for the sample data and its report screenshot, from a fresh run.

Usage (from the repository root)::

    .venv/bin/python docs/readme_facts.py           # rewrite README.md's fact blocks,
                                                    # docs/report-screenshot.png (chromium)
                                                    # and docs/readme-facts.json
    .venv/bin/python docs/readme_facts.py --check   # a fresh run; exit 1 when README.md or
                                                    # docs/readme-facts.json disagree with it

It runs the job of ``make run`` without MLflow and Prefect: the default settings (every
``VAE_ANOMALY_*`` variable is ignored) train on ``data/sample/train.csv`` exactly as
``vae-anomaly train`` does, and :func:`pipeline.batch.score_file` scores
``data/sample/batch.csv`` into a temporary folder as ``vae-anomaly score`` does. The README's
fact blocks (between ``<!-- facts:NAME -->`` and ``<!-- /facts:NAME -->``) are written from
that run, and the report of the run is rendered to ``docs/report-screenshot.png`` by headless
Chromium. ``docs/readme-facts.json`` records the facts and the screenshot's sha256.

``tests/integration/test_readme_facts.py`` scores the sample batch with the test session's
default detector and fails when the README, the JSON or the screenshot do not match that run:
after a change to the model or the score, run this script and commit what it wrote.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages
    sys.path.insert(0, str(ROOT))

from pipeline.batch import score_file  # noqa: E402
from pipeline.config import ScoringSettings, Settings, ThresholdSettings  # noqa: E402
from pipeline.detector import AnomalyDetector  # noqa: E402
from pipeline.ingest import read_table  # noqa: E402
from pipeline.outputs import FLAGGED_FILE, REPORT_FILE, SCORED_FILE, Manifest  # noqa: E402
from pipeline.registry import ModelRef  # noqa: E402
from pipeline.threshold import fit_threshold, share_above  # noqa: E402

README = ROOT / "README.md"
FACTS_FILE = ROOT / "docs" / "readme-facts.json"
SCREENSHOT = ROOT / "docs" / "report-screenshot.png"
TRAIN = Path("data/sample/train.csv")  # relative to ROOT: the report shows this name
BATCH = Path("data/sample/batch.csv")
REF = ModelRef(name="vae-anomaly", version="1", run_id="(docs/readme_facts.py)", alias="champion")
WINDOW = (1200, 1800)
KINDS = ("amount_mismatch", "currency_mismatch", "distance_spike", "extreme_price")
# a block: its name, its text, the indentation of its end marker (a block in a list item)
BLOCK = re.compile(r"<!-- facts:(\w+) -->\n(.*?)([ ]*)<!-- /facts:\1 -->", re.DOTALL)
# the threshold choices shown in the README: (how to ask for it, the threshold settings)
CHOICES: list[tuple[str, dict[str, float]]] = [
    ("`--contamination 0.01` (the default)", {"contamination": 0.01}),
    ("`--contamination 0.04`", {"contamination": 0.04}),
    ("`--target-fpr 0.005`", {"target_fpr": 0.005}),
    ("`--target-fpr 0.02`", {"target_fpr": 0.02}),
    ("`--fixed-score 3` (or `score --threshold 3`)", {"fixed_score": 3.0}),
    ("`--fixed-score 2.5` (or `score --threshold 2.5`)", {"fixed_score": 2.5}),
]


def default_settings() -> Settings:
    """``Settings()`` as a fresh shell would build it: no ``VAE_ANOMALY_*`` variable."""
    for name in [n for n in os.environ if n.startswith("VAE_ANOMALY_")]:
        del os.environ[name]
    return Settings()


def fit_sample_detector() -> AnomalyDetector:
    """The detector ``vae-anomaly train data/sample/train.csv`` fits (default settings)."""
    return AnomalyDetector(default_settings()).fit(read_table(ROOT / TRAIN))


def score_sample(detector: AnomalyDetector, output_root: Path, run_date: str) -> Manifest:
    """Score ``data/sample/batch.csv`` as ``vae-anomaly score`` does, into ``output_root``
    (the input is named relative to the repository, as the README shows it)."""
    previous = Path.cwd()
    os.chdir(ROOT)
    try:
        return score_file(
            detector, REF, BATCH, output_root, run_date, force=True, scoring=ScoringSettings()
        )
    finally:
        os.chdir(previous)


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.2%}" if whole else "0%"


def collect_facts(detector: AnomalyDetector, manifest: Manifest) -> dict[str, Any]:
    """The README's numbers, from a scoring run of the sample batch and its detector."""
    out = Path(manifest.output_dir)
    batch = pd.read_csv(ROOT / BATCH)
    scored = pd.read_parquet(out / SCORED_FILE)
    if manifest.rows_rejected or len(scored) != len(batch):
        raise RuntimeError(f"the sample batch should score every row: {manifest}")
    scores = scored["anomaly_score"].to_numpy()
    kind = batch["anomaly_kind"].fillna("").to_numpy()
    planted = kind != ""
    flagged = pd.read_csv(out / FLAGGED_FILE, dtype=str, keep_default_na=False)

    def caught(cut: float) -> dict[str, Any]:
        above = scores > cut
        return {
            "threshold": f"{cut:.2f}",
            "validation_share": f"{share_above(detector.reference_quantiles_, cut):.1%}",
            "flagged": int(above.sum()),
            "planted": int((above & planted).sum()),
            "normal": int((above & ~planted).sum()),
            "by_kind": {k: int((above & (kind == k)).sum()) for k in KINDS},
        }

    choices = []
    for name, values in CHOICES:
        cut = fit_threshold(detector.validation_scores_, ThresholdSettings(**values))
        choices.append({"choice": name, **caught(cut)})
    by_kind_auc = {
        k: f"{roc_auc_score(kind[(kind == k) | ~planted] == k, scores[(kind == k) | ~planted]):.2f}"
        for k in KINDS
    }
    currency = flagged[flagged["anomaly_kind"] == "currency_mismatch"]
    amount = flagged[flagged["anomaly_kind"] == "amount_mismatch"]
    return {
        "rows_scored": manifest.rows_scored,
        "rows_flagged": manifest.rows_flagged,
        "flag_rate": _share(manifest.rows_flagged, manifest.rows_scored),
        "threshold": f"{manifest.threshold:.2f}",
        "highest_score": f"{scores.max():.2f}",
        "planted": int(planted.sum()),
        "normal": int((~planted).sum()),
        "planted_by_kind": {k: int((kind == k).sum()) for k in KINDS},
        "roc_auc_by_kind": by_kind_auc,
        "default": caught(manifest.threshold),
        "choices": choices,
        "examples": [
            {"what": what, "id": rows["transaction_id"].iloc[0], "reasons": rows["reasons"].iloc[0]}
            for what, rows in (
                ("the highest-scored row", flagged),
                ("a currency that does not match the country", currency),
                ("an amount that is not quantity x unit price", amount),
            )
            if len(rows)
        ],
    }


def readme_blocks(facts: dict[str, Any]) -> dict[str, str]:
    """The text of each README fact block (each ends with a newline)."""
    default = facts["default"]
    report = textwrap.fill(
        f"The screenshot is the report of `make run` on the sample batch: {facts['rows_scored']} "
        f"rows scored, {facts['rows_flagged']} ({facts['flag_rate']}) above the threshold "
        f"{facts['threshold']}, the highest score {facts['highest_score']}; "
        f"{default['planted']} of the {facts['planted']} planted anomalies are among the "
        f"flagged rows. `docs/readme_facts.py` makes it, and these numbers, from a fresh run; "
        "a test fails when they no longer match one.",
        width=99,
        break_on_hyphens=False,
    )
    kinds = " | ".join(f"{k.replace('_', ' ')} (of {facts['planted_by_kind'][k]})" for k in KINDS)
    rows = [
        f"| `vae-anomaly train` | threshold | validation rows above it | flagged (of "
        f"{facts['rows_scored']}) | planted anomalies flagged (of {facts['planted']}) | "
        f"normal rows flagged (of {facts['normal']}) | {kinds} |",
        "|---" * (6 + len(KINDS)) + "|",
    ]
    for c in facts["choices"]:
        by_kind = " | ".join(str(c["by_kind"][k]) for k in KINDS)
        rows.append(
            f"| {c['choice']} | {c['threshold']} | {c['validation_share']} | {c['flagged']} | "
            f"{c['planted']} | {c['normal']} | {by_kind} |"
        )
    auc = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in facts["roc_auc_by_kind"].items())
    thresholds = "\n".join(rows) + (
        f"\n\nROC-AUC of each kind against the normal rows (how well the score ranks them, "
        f"whatever the threshold): {auc}.\n"
    )
    # a list inside the README's list item on reasons
    reasons = "".join(f"  - {e['what']}, {e['id']}: `{e['reasons']}`\n" for e in facts["examples"])
    return {"report": report + "\n", "thresholds": thresholds, "reasons": reasons}


def readme_with(text: str, blocks: dict[str, str]) -> str:
    """``text`` with each fact block replaced; every block must be present."""
    missing = set(blocks) - set(m.group(1) for m in BLOCK.finditer(text))
    if missing:
        raise ValueError(f"README.md lacks the fact block(s) {sorted(missing)}")
    return BLOCK.sub(
        lambda m: (
            f"<!-- facts:{m.group(1)} -->\n{blocks.get(m.group(1), m.group(2))}"
            f"{m.group(3)}<!-- /facts:{m.group(1)} -->"
        ),
        text,
    )


def readme_blocks_in(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in BLOCK.finditer(text)}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("no chromium on PATH: run .ci/install_chromium.sh (as root) first")
    return binary


def screenshot(page: Path, png: Path) -> None:
    """Render ``page`` in headless Chromium to ``png`` (``WINDOW`` pixels, the page's top)."""
    profile = Path(tempfile.mkdtemp(prefix="readme-facts-chromium-"))
    try:
        done = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                f"--screenshot={png}",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if not png.is_file():
        raise SystemExit(f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; write nothing")
    args = parser.parse_args(argv)
    detector = fit_sample_detector()
    with tempfile.TemporaryDirectory(prefix="readme-facts-") as tmp:
        run_date = datetime.now(UTC).date().isoformat()
        manifest = score_sample(detector, Path(tmp) / "scored", run_date)
        facts = collect_facts(detector, manifest)
        blocks = readme_blocks(facts)
        text = README.read_text(encoding="utf-8")
        if args.check:
            recorded = json.loads(FACTS_FILE.read_text())
            stale = [
                name for name, block in blocks.items() if readme_blocks_in(text).get(name) != block
            ]
            if recorded.get("facts") != facts:
                stale.append(str(FACTS_FILE.relative_to(ROOT)))
            if recorded.get("screenshot_sha256") != sha256(SCREENSHOT):
                stale.append(str(SCREENSHOT.relative_to(ROOT)))
            if stale:
                print(f"out of date: {stale}; run: .venv/bin/python docs/readme_facts.py")
                return 1
            print("README.md, docs/readme-facts.json and the screenshot match a fresh run")
            return 0
        screenshot(Path(manifest.output_dir) / REPORT_FILE, SCREENSHOT)
        README.write_text(readme_with(text, blocks), encoding="utf-8")
        FACTS_FILE.write_text(
            json.dumps({"facts": facts, "screenshot_sha256": sha256(SCREENSHOT)}, indent=1) + "\n"
        )
    print(json.dumps(facts, indent=1))
    print(f"wrote {README}, {SCREENSHOT} and {FACTS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
