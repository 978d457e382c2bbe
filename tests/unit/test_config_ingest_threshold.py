import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import PROJECT_ROOT, Settings
from pipeline.ingest import InputError, read_for_scoring, read_table
from pipeline.threshold import contamination_threshold, reference_quantiles, score_percentile


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
