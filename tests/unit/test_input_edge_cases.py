"""Edge cases of reading and scoring found in review: each once produced a wrong result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Settings, redact
from pipeline.detector import AnomalyDetector
from pipeline.ingest import read_for_scoring, read_table
from pipeline.preprocess import _canonical, categorical_strings
from pipeline.schema import infer_schema
from tests.conftest import mixed_frame, quick_settings


def test_all_rows_without_id_columns_keeps_every_row():
    frame = mixed_frame(200).drop(columns=["record_id"])
    detector = AnomalyDetector(quick_settings(training={"max_epochs": 3})).fit(frame)
    batch = frame.head(4).astype({"y": "float64"}).copy()
    batch.loc[2, "y"] = np.inf
    out = detector.score(batch).all_rows()
    assert len(out) == 4
    assert out["rejected_reason"].astype(bool).tolist() == [False, False, True, False]
    assert (
        np.isnan(out.loc[2, "anomaly_score"])
        and np.isfinite(out.loc[[0, 1, 3], "anomaly_score"]).all()
    )


def test_categories_are_spelled_the_same_by_both_readers():
    # pandas reads true/false as bools and integer codes with gaps as floats; pyarrow keeps text
    trained = categorical_strings(pd.Series([True, False, 3.0, np.nan], dtype=object))
    scored = categorical_strings(pd.Series(["true", "FALSE", "3", None], dtype=object))
    assert trained.tolist() == scored.tolist() == ["True", "False", "3", "__missing__"]


def test_a_utf8_bom_does_not_rename_the_first_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffcust_id,v\n00123,1.5\n00456,2.5\n".encode())
    raw = read_for_scoring(path, string_columns=["cust_id"])
    assert list(raw.frame.columns) == ["cust_id", "v"]
    assert raw.frame["cust_id"].tolist() == ["00123", "00456"]  # ids keep their zeros
    assert list(read_table(path).columns) == ["cust_id", "v"]


def test_line_numbers_survive_blank_lines_and_quoted_newlines(tmp_path):
    path = tmp_path / "lines.csv"
    path.write_text('a,b,c\n1,2,x\n\n3,4\n5,6,"multi\nline"\n7,8,z,9\n10,11,w\n')
    raw = read_for_scoring(path, string_columns=["c"])
    assert raw.frame["a"].tolist() == [1, 5, 10]
    assert raw.line_numbers.tolist() == [2, 5, 8]
    assert [line for line, _, _ in raw.bad_lines] == [4, 7]


def test_an_integer_id_column_is_not_modeled():
    frame = mixed_frame(100).drop(columns=["record_id"]).assign(order_id=np.arange(100, 200))
    schema = infer_schema(frame, Settings().data)
    assert schema.roles["order_id"] == "id"
    assert schema.roles["count"] == "numeric"  # an ordinary integer column stays a feature


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:s3cret@host:5000/x", "http://***@host:5000/x"),
        ("postgresql://u:p@ss@db/mlflow", "postgresql://***@db/mlflow"),
        ("see https://token@host/api failed", "see https://***@host/api failed"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        (
            "postgresql://db.internal/mlflow?user=u&password=s3cr3t&sslmode=require",
            "postgresql://db.internal/mlflow?user=u&password=***&sslmode=require",
        ),
        (
            "cannot resolve at https://h/x?api_key=AbC123 (timeout)",
            "cannot resolve at https://h/x?api_key=*** (timeout)",
        ),
        ("https://h/x?X-Amz-Signature=abc;Token=t", "https://h/x?X-Amz-Signature=***;Token=***"),
    ],
)
def test_redact_removes_credentials(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "name",
    [
        *("accessToken", "AWSAccessKeyId", "x-amz-security-token", "client_secret", "apiKey"),
        *("sig", "APIKEY", "pwd", "private_key", "sessionkey", "X-Amz-Credential", "refresh_token"),
    ],
)
def test_redact_masks_every_spelling_of_a_secret_parameter(name):
    assert redact(f"https://h/x?a=1&{name}=S3cr3t&b=2") == f"https://h/x?a=1&{name}=***&b=2"


def test_redact_keeps_parameters_whose_names_only_contain_a_secret_word():
    # "keyword" holds "key", "design" holds "sig": the message keeps what the user needs
    text = "https://h/x?keyword=vae&design=a&monkey=1&author=me&passage=p&sv=2020"
    assert redact(text) == text


def test_credentials_never_reach_params_or_the_model_files(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_ANOMALY_TRACKING__URI", "postgresql://u:pw@db/mlflow")
    settings = quick_settings(training={"max_epochs": 2})
    assert "pw" not in str(settings.flat_params())
    detector = AnomalyDetector(settings).fit(mixed_frame(100))
    detector.save(tmp_path / "m")
    assert "u:pw" not in (tmp_path / "m" / "detector.json").read_text()


def test_distinct_values_are_spelled_as_pandas_string_cast_spells_them():
    # Given a column's distinct values of every plain kind (the fast path) and one with bytes
    # (pandas' path), when they are spelled, then each is pandas' str cast of it, with
    # true/false capitalised and a whole number's ".0" dropped, as before the fast path
    values = [1.0, 3.0, 2.5, -4.0, 1e20, 0.1, np.float32(2.0), np.int64(7), True, np.bool_(False)]
    values += ["TRUE", "fAlse", "3.000", "-2.0", " 3.0", "3.0 ", "x", -0.0, float("inf"), 10**30]
    expected = ["1", "3", "2.5", "-4", "1e+20", "0.1", "2", "7", "True", "False"]
    expected += ["True", "False", "3", "-2", " 3.0", "3.0 ", "x", "-0", "inf", str(10**30)]
    assert list(_canonical(pd.Series(values, dtype=object))) == expected
    with_bytes = pd.Series([b"by", 2.0, "true"], dtype=object)
    assert list(_canonical(with_bytes)) == ["by", "2", "True"]
    assert list(_canonical(pd.Series([], dtype=object))) == []
