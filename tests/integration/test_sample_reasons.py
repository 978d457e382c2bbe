"""The reasons an analyst reads in ``flagged.csv`` of the sample batch (default model): no
filler, values as the file wrote them, shares in order, and the same however the file is split.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.batch import score_file
from pipeline.config import ScoringSettings
from pipeline.detector import AnomalyDetector
from pipeline.outputs import FLAGGED_FILE, Manifest
from pipeline.registry import ModelRef

REASON = re.compile(
    r"(?P<column>[^=, ]+)=(?P<value>[^ ]+) \(expected (?P<expected>about (?P<about>\S+)|"
    r"between (?P<low>\S+) and (?P<high>\S+)|[^,()]+), (?P<share>\d+)%\)"
)
TOP_REASONS = ScoringSettings().top_reasons


def _flagged(manifest: Manifest) -> pd.DataFrame:
    return pd.read_csv(Path(manifest.output_dir) / FLAGGED_FILE, dtype=str, keep_default_na=False)


def _parts(text: str) -> list[re.Match[str]]:
    parts = list(REASON.finditer(text))
    assert ", ".join(p.group(0) for p in parts) == text, text  # nothing else in the text
    return parts


def test_every_flagged_row_has_reasons_without_filler(sample_run: Manifest) -> None:
    flagged = _flagged(sample_run)
    assert len(flagged) == sample_run.rows_flagged > 0
    for _, row in flagged.iterrows():
        parts = _parts(row["reasons"])
        where = f"{row['transaction_id']}: {row['reasons']}"
        assert 1 <= len(parts) <= TOP_REASONS, where
        shares = [int(p["share"]) for p in parts]
        assert min(shares) >= 1, where  # no 0% reason
        assert shares == sorted(shares, reverse=True), where  # in order of share
        assert len({p["column"] for p in parts}) == len(parts), where
        for p in parts:
            value, expected = p["value"], p["expected"]
            # the value as the file held it (the input column next to the reasons)
            assert value == (row[p["column"]] or "missing"), where
            assert expected != value, where  # never "expected" what the row holds
            if p["about"] is not None and value != "missing":
                assert float(p["about"]) != float(value), where
            if p["low"] is not None and value != "missing":
                assert not float(p["low"]) <= float(value) <= float(p["high"]), where


def test_reasons_and_scores_do_not_depend_on_how_the_file_is_split(
    sample_run: Manifest,
    sample_detector: AnomalyDetector,
    tmp_path: Path,
) -> None:
    # Given the sample batch scored whole, when it is scored as three files of about 1,667
    # rows, then every row gets the same score, flag and reasons
    text = Path(sample_run.input_path)
    batch = pd.read_csv(text, dtype=str, keep_default_na=False)
    ref = ModelRef(name="vae-anomaly", version="1", run_id="split", alias="champion")
    parts = []
    for i, rows in enumerate((batch.iloc[:1667], batch.iloc[1667:3334], batch.iloc[3334:])):
        path = tmp_path / "landing" / f"part{i}.csv"
        path.parent.mkdir(exist_ok=True)
        rows.to_csv(path, index=False)
        manifest = score_file(sample_detector, ref, path, tmp_path / "out", "2026-01-01")
        assert manifest.rows_scored == len(rows)
        parts.append(_flagged(manifest))
    split = pd.concat(parts).set_index("transaction_id").sort_index()
    whole = _flagged(sample_run).set_index("transaction_id").sort_index()
    assert split.index.tolist() == whole.index.tolist()  # the same rows flagged
    columns = ["anomaly_score", "recon_error", "kl", "score_percentile", "reasons"]
    pd.testing.assert_frame_equal(split[columns], whole[columns])


@pytest.mark.parametrize(
    ("kind", "column"),
    [("currency_mismatch", ("currency", "country")), ("distance_spike", ("distance_km",))],
)
def test_planted_columns_are_named_with_a_value_that_restores_the_row(
    sample_run: Manifest, kind: str, column: tuple[str, ...]
) -> None:
    flagged = _flagged(sample_run)
    rows = flagged[flagged["anomaly_kind"] == kind]
    assert len(rows) > 0
    firsts = [_parts(text)[0] for text in rows["reasons"]]
    named = [p for p in firsts if p["column"] in column]
    assert len(named) >= 0.8 * len(rows)
    if kind == "distance_spike":  # any normal distance fixes a spike: a range below the value
        assert all(p["high"] is not None and float(p["high"]) < float(p["value"]) for p in named)
