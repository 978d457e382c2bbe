import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from pipeline.config import PROJECT_ROOT, Settings, ThresholdSettings
from pipeline.ingest import (
    CSV_NULL_VALUES,
    InputError,
    iter_scoring_chunks,
    read_for_scoring,
    read_table,
)
from pipeline.threshold import (
    contamination_threshold,
    expected_flag_rate,
    fit_threshold,
    fpr_threshold,
    reference_quantiles,
    score_percentile,
    share_above,
)


def test_env_overrides_nested_settings(monkeypatch):
    monkeypatch.setenv("VAE_ANOMALY_TRAINING__MAX_EPOCHS", "7")
    monkeypatch.setenv("VAE_ANOMALY_THRESHOLD__CONTAMINATION", "0.05")
    settings = Settings()
    assert settings.training.max_epochs == 7
    assert settings.threshold.contamination == 0.05
    assert settings.with_overrides(training={"max_epochs": 3}).training.max_epochs == 3


def test_tracking_uri_is_absolute(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert (
        Settings().tracking.resolved_uri() == f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///rel/mlflow.db")
    monkeypatch.chdir(tmp_path)
    # a relative sqlite path would give each working directory its own database
    assert Settings().tracking.resolved_uri() == f"sqlite:///{tmp_path / 'rel' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert Settings().tracking.resolved_uri() == "http://127.0.0.1:5000"


def test_threshold_is_the_contamination_quantile():
    scores = np.arange(1000, dtype=float)
    cut = contamination_threshold(scores, 0.01)
    assert (scores > cut).sum() == 10
    with pytest.raises(ValueError):
        contamination_threshold(scores, 0.0)
    q = reference_quantiles(scores)
    pct = score_percentile(np.array([-1.0, 500.0, 5000.0]), q)
    assert pct[0] == 0 and 49 < pct[1] < 51 and pct[2] == 100


def test_empty_and_header_only_csv(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        read_table(empty)
    assert read_for_scoring(empty).frame.empty
    header = tmp_path / "header.csv"
    header.write_text("a,b\n")
    assert len(read_table(header)) == 0


def test_duplicate_headers_and_non_utf8_are_clear_errors(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(InputError, match="duplicate column names"):
        read_table(dup)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("name,v\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_table(latin)


def test_malformed_lines_are_kept_aside_with_line_numbers(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c\n1,2,x\n3,4\n5,6,y\n7,8,z,9\n10,11,w\n")
    raw = read_for_scoring(path, string_columns=["c"])
    assert raw.frame["a"].tolist() == [1, 5, 10]
    assert raw.line_numbers.tolist() == [2, 4, 6]
    assert [line for line, _, _ in raw.bad_lines] == [3, 5]


def test_truncated_parquet_is_a_clear_error(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": list(range(1000))}), path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated"):
        read_for_scoring(path)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "t.xlsx"
    path.write_text("x")
    with pytest.raises(InputError, match="unsupported"):
        read_table(path)
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "ok.parquet")
    assert len(read_table(tmp_path / "ok.parquet")) == 1


def test_three_threshold_rules_from_the_validation_scores():
    scores = np.arange(1000, dtype=float)
    default = fit_threshold(scores, ThresholdSettings())
    assert default == contamination_threshold(scores, 0.01)
    # a target FPR: the lowest cut with at most that share of the scores above it
    for fpr in (0.005, 0.02, 0.0005):
        cut = fit_threshold(scores, ThresholdSettings(target_fpr=fpr))
        assert (scores > cut).mean() <= fpr
        assert (scores >= cut).mean() > fpr  # one step lower would flag too many
    assert fit_threshold(scores, ThresholdSettings(fixed_score=3.5)) == 3.5
    tied = np.r_[np.zeros(990), np.ones(10)]  # ties never let more than the target above
    assert (tied > fpr_threshold(tied, 0.005)).mean() <= 0.005
    with pytest.raises(ValueError, match="target_fpr"):
        fpr_threshold(scores, 1.5)
    with pytest.raises(ValueError, match="no finite score"):
        fpr_threshold(np.array([np.nan]), 0.01)


def test_threshold_settings_take_one_rule(monkeypatch):
    assert ThresholdSettings().rule == "contamination 0.01"
    assert ThresholdSettings(target_fpr=0.005).rule == "target FPR 0.005 on the validation split"
    assert ThresholdSettings(fixed_score=3).rule == "fixed score 3"
    with pytest.raises(ValueError, match=r"at most one of threshold\.target_fpr"):
        ThresholdSettings(target_fpr=0.01, fixed_score=3.0)
    monkeypatch.setenv("VAE_ANOMALY_THRESHOLD__TARGET_FPR", "0.002")
    monkeypatch.setenv("VAE_ANOMALY_SCORING__THRESHOLD", "4.5")
    settings = Settings()
    assert settings.threshold.target_fpr == 0.002 and settings.scoring.threshold == 4.5


def test_expected_flag_rate_of_a_threshold():
    scores = np.random.default_rng(0).normal(size=20_000)
    quantiles = reference_quantiles(scores)
    for cut in (-1.0, 0.0, 1.5, 2.5):
        assert share_above(quantiles, cut) == pytest.approx((scores > cut).mean(), abs=2e-3)
    assert share_above(quantiles, 100.0) == 0.0 and share_above(quantiles, -100.0) == 1.0
    assert share_above(np.zeros(11), 0.0) == 0.0  # every value at the cut: none above it
    rules = ThresholdSettings()
    # the model's own contamination threshold: the contamination; anything else: measured
    assert expected_flag_rate(rules, quantiles, 2.33, overridden=False) == 0.01
    assert expected_flag_rate(rules, quantiles, 0.0, overridden=True) == pytest.approx(0.5, 0.01)
    fixed = ThresholdSettings(fixed_score=1.5)
    assert expected_flag_rate(fixed, quantiles, 1.5, overridden=False) == pytest.approx(
        (scores > 1.5).mean(), abs=2e-3
    )


def test_csv_fields_are_kept_as_read_and_missing_spellings_are_missing(tmp_path):
    path = tmp_path / "batch.csv"
    path.write_text("id,x,c\nA,18,red\nB,n/a,NA\nC,1e5,\nD,012.50,blue\n")
    [chunk] = iter_scoring_chunks(path, string_columns=["id", "c"], numeric_columns=["x"])
    # the frame to score: numbers parsed, every spelling of a missing value missing
    assert chunk.frame["x"].tolist()[::2] == [18.0, 100000.0]
    assert chunk.frame["x"].isna().tolist() == [False, True, False, False]
    assert chunk.frame["c"].isna().tolist() == [False, True, True, False]
    # the rows as read, by record number (the header is record 1)
    as_read = chunk.rows_as_read(np.array([5, 2, 3]))
    assert as_read.to_dict("list") == {
        "id": ["D", "A", "B"],
        "x": ["012.50", "18", "n/a"],
        "c": ["blue", "red", "NA"],
    }
    assert chunk.rows_as_read(np.array([4])).iloc[0].tolist() == ["C", "1e5", ""]
    # pyarrow's own list of missing spellings is the one applied
    assert set(CSV_NULL_VALUES.to_pylist()) == set(pacsv.ConvertOptions().null_values)


def test_parquet_rows_as_read_are_the_stored_values(tmp_path):
    path = tmp_path / "batch.parquet"
    pd.DataFrame({"id": ["A", "B", "C"], "n": pd.array([1, None, 3], dtype="Int64")}).to_parquet(
        path
    )
    [chunk] = iter_scoring_chunks(path)
    as_read = chunk.rows_as_read(np.array([3, 2]))
    assert as_read["id"].tolist() == ["C", "B"]
    assert as_read["n"].iloc[0] == 3 and pd.isna(as_read["n"].iloc[1])
