"""Issue 6: bad input gives a clear error, a warning, a rejected row with a reason, or a score.

Training cases fit tiny tables for a few epochs; scoring cases share one detector fitted once.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.detector import AnomalyDetector
from pipeline.ingest import InputError, iter_scoring_chunks, read_table
from pipeline.schema import SchemaError
from tests.conftest import mixed_frame, quick_settings

QUICK = {"training": {"max_epochs": 3}}


def _fit(frame: pd.DataFrame, **overrides: dict) -> AnomalyDetector:
    return AnomalyDetector(quick_settings(**{**QUICK, **overrides})).fit(frame)


def _assert_scores_finite(detector: AnomalyDetector, frame: pd.DataFrame) -> None:
    result = detector.score(frame)
    assert len(result.scored) + len(result.rejected) == len(frame)
    assert np.isfinite(result.scored["anomaly_score"]).all()
    assert np.isfinite(result.scored[["recon_error", "kl"]].to_numpy()).all()


@pytest.fixture(scope="module")
def fitted() -> AnomalyDetector:
    return _fit(mixed_frame(150), scoring={"top_reasons": 5})


# -- training data ---------------------------------------------------------------------------
def test_training_on_an_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("")
    with pytest.raises(InputError, match=r"train\.csv: the file is empty"):
        read_table(path)


def test_training_on_a_header_only_file_names_the_minimum(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("x,y,colour\n")
    frame = read_table(path)
    assert len(frame) == 0
    with pytest.raises(ValueError, match="at least 20 rows, got 0"):
        _fit(frame)


@pytest.mark.parametrize("rows", [1, 19])
def test_training_on_too_few_rows_names_the_minimum(rows):
    with pytest.raises(ValueError, match=rf"at least 20 rows, got {rows}.*training\.min_rows"):
        _fit(mixed_frame(rows))


def test_training_min_rows_is_a_setting():
    with pytest.raises(ValueError, match="at least 50 rows, got 30"):
        _fit(mixed_frame(30), training={"min_rows": 50})


def test_a_constant_column_gives_finite_scores():
    frame = mixed_frame(100).assign(constant=7.0, label_text="same")
    detector = _fit(frame)
    assert detector.schema_.roles["constant"] == "numeric"
    _assert_scores_finite(detector, frame)
    _assert_scores_finite(detector, frame.assign(constant=1e6))  # a change is scored, finitely


def test_all_missing_columns_numeric_and_categorical_are_fitted_and_scored(caplog):
    frame = mixed_frame(100).assign(
        empty_num=np.nan, empty_cat=pd.Series([None] * 100, dtype=object)
    )
    with caplog.at_level(logging.WARNING, logger="pipeline.schema"):
        detector = _fit(frame)
    assert "'empty_num' is empty in training: modeled as categorical" in caplog.text
    # an empty column has no type: categorical, so any later value is an unseen category
    assert detector.schema_.roles["empty_num"] == "categorical"
    assert detector.schema_.roles["empty_cat"] == "categorical"
    _assert_scores_finite(detector, frame)
    later = frame.assign(empty_num=3.0, empty_cat="now set")
    _assert_scores_finite(detector, later)
    assert detector.score(later).rejected.empty


def test_an_empty_text_column_of_a_training_csv_does_not_reject_later_text(tmp_path):
    path = tmp_path / "train.csv"
    mixed_frame(100).assign(comment=None).to_csv(path, index=False)
    frame = read_table(path)
    assert frame["comment"].dtype == "float64"  # what the CSV reader makes of it
    detector = _fit(frame)
    result = detector.score(mixed_frame(5).assign(comment=["late", None, "ok", "5", "x"]))
    assert len(result.scored) == 5 and result.rejected.empty


def test_a_distinct_value_per_row_column_is_an_id_with_a_warning(caplog):
    frame = mixed_frame(100).assign(code=[f"c{i}" for i in range(100)])
    with caplog.at_level(logging.WARNING, logger="pipeline.schema"):
        detector = _fit(frame)
    assert detector.schema_.roles["code"] == "id"
    assert "'code' has a distinct value in 100 of 100 rows" in caplog.text
    scored = detector.score(frame.head(5)).scored
    assert scored["code"].tolist() == [f"c{i}" for i in range(5)]  # passed through


def test_only_categorical_columns():
    frame = mixed_frame(100)[["colour", "size"]]
    detector = _fit(frame)
    assert detector.schema_.numeric_columns == []
    _assert_scores_finite(detector, frame)


def test_1600_numeric_columns_fit_and_score():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 1600)), columns=[f"c{i}" for i in range(1600)])
    detector = _fit(frame)
    assert detector.preprocessor_.n_features == 1600
    _assert_scores_finite(detector, frame)


def test_text_in_a_numeric_training_column_is_missing_with_a_warning(tmp_path, caplog):
    # "1,234" (a thousands separator) does not parse: it is text like "n/a", so missing
    frame = mixed_frame(100).drop(columns=["record_id"]).astype({"y": object})
    frame.loc[[1, 2, 3], "y"] = ["12", "n/a", "1,234"]
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="pipeline.schema"):
        detector = _fit(read_table(path))
    assert detector.schema_.roles["y"] == "numeric"
    assert "'y' holds text" in caplog.text
    # "n/a" is read as missing by the CSV reader already; "1,234" is the one non-numeric value
    assert "'y': 1 non-numeric and 0 infinite values treated as missing" in caplog.text
    _assert_scores_finite(detector, frame.drop(index=[2, 3]))


def test_inf_in_training_is_missing_with_a_warning(caplog):
    frame = mixed_frame(100)
    frame.loc[1, "x"] = np.inf
    frame.loc[2, "y"] = -np.inf
    with caplog.at_level(logging.WARNING, logger="pipeline.schema"):
        detector = _fit(frame)
    assert "'x': 0 non-numeric and 1 infinite values treated as missing" in caplog.text
    assert "'y': 0 non-numeric and 1 infinite values treated as missing" in caplog.text
    result = detector.score(frame)
    assert result.rejected["line"].tolist() == [3, 4]  # at scoring time inf is rejected
    assert np.isfinite(result.scored["anomaly_score"]).all()


@pytest.mark.parametrize("where", ["one_row", "whole_column"])
def test_huge_training_values_keep_the_scaling_finite(where):
    frame = mixed_frame(100)
    if where == "one_row":
        frame.loc[[1, 5, 9], "x"] = [1e308, -1e308, 1e308]
    else:
        frame["x"] = 1e308 * np.random.default_rng(1).random(100)
    detector = _fit(frame)
    pre = detector.preprocessor_
    assert "x" in pre.log_columns_  # signed log before the scaler: no overflow
    assert np.isfinite(pre.means_).all() and np.isfinite(pre.scales_).all()
    _assert_scores_finite(detector, frame)
    _assert_scores_finite(detector, frame.assign(x=-1e308, y=1e308))


def test_duplicate_column_names_are_a_clear_error(tmp_path):
    frame = mixed_frame(30)
    frame.columns = ["record_id", "x", "x", "count", "colour", "size"]
    with pytest.raises(SchemaError, match=r"duplicate column names \['x'\]"):
        _fit(frame)
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError, match=r"train\.csv: duplicate column names \['x'\]"):
        read_table(path)


def test_a_non_utf8_training_file_is_a_clear_error(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("colour,x\nrouge,1\ncaf\xe9,2\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"train\.csv: not UTF-8 .* re-export it as UTF-8"):
        read_table(path)


@pytest.mark.parametrize("where", ["first block", "far into the file"])
def test_a_bad_byte_past_the_header_is_the_same_clear_error_in_training_and_scoring(
    tmp_path, where
):
    path = tmp_path / "batch.csv"
    rows = 3 if where == "first block" else 60_000  # past every reader's first buffer
    text = "colour,x\n" + "rouge,1\n" * rows + "caf\xe9,2\n"
    path.write_bytes(text.encode("latin-1"))
    expected = r"batch\.csv: not UTF-8 .*re-export it as UTF-8"
    with pytest.raises(InputError, match=expected):
        read_table(path)
    with pytest.raises(InputError, match=expected):
        list(iter_scoring_chunks(path, chunk_rows=1024))


def test_a_column_without_a_name_is_a_clear_error(tmp_path):
    # pandas' to_csv writes its row index under an empty header name: pandas reads it back as
    # "Unnamed: 0", pyarrow as "": training and scoring would disagree on the columns
    path = tmp_path / "train.csv"
    mixed_frame(20).to_csv(path)
    for read in (read_table, lambda p: list(iter_scoring_chunks(p))):
        with pytest.raises(InputError, match=r"train\.csv: column\(s\) \[1\] have no name"):
            read(path)


# -- scoring data ----------------------------------------------------------------------------
def test_missing_model_columns_are_one_error_naming_each(fitted):
    batch = mixed_frame(10).drop(columns=["y", "size"])
    with pytest.raises(SchemaError, match=r"batch\.csv: missing column\(s\) \['y', 'size'\]"):
        fitted.score(batch, source="batch.csv")


def test_extra_columns_are_ignored_with_a_warning(fitted, caplog):
    batch = mixed_frame(10, seed=3)
    with caplog.at_level(logging.WARNING, logger="pipeline.detector"):
        result = fitted.score(batch.assign(note="x", extra=1.0))
    assert "extra column(s) ['note', 'extra'] ignored" in caplog.text
    assert result.warnings == ["input: extra column(s) ['note', 'extra'] ignored"]
    # the same rows through the same computation: identical by construction
    pd.testing.assert_frame_equal(result.scored, fitted.score(batch).scored)


def test_columns_in_another_order_give_the_same_scores(fitted):
    batch = mixed_frame(20, seed=4)
    shuffled = batch[list(reversed(batch.columns))]
    pd.testing.assert_frame_equal(fitted.score(shuffled).scored, fitted.score(batch).scored)


def test_missing_values_where_training_had_none_are_imputed_and_scored(fitted):
    assert "y" not in fitted.preprocessor_.indicator_columns_  # no missing y in training
    batch = mixed_frame(5, seed=5)
    batch.loc[2, "y"] = np.nan
    result = fitted.score(batch, threshold=-np.inf)  # flag every row to see its reasons
    assert result.rejected.empty and np.isfinite(result.scored["anomaly_score"]).all()
    # top_reasons covers every column here: the imputed value is shown as missing
    assert "y=missing (expected" in result.scored.loc[2, "reasons"]


def test_a_category_never_seen_in_training_is_scored(fitted):
    batch = mixed_frame(5, seed=6).assign(colour="ultraviolet")
    result = fitted.score(batch)
    assert len(result.scored) == 5 and result.rejected.empty
    assert np.isfinite(result.scored["anomaly_score"]).all()


def test_wrong_type_and_inf_are_rejected_with_line_and_reason(fitted):
    batch = mixed_frame(5, seed=7).astype({"x": object, "count": "float64"})
    batch.loc[1, "x"] = "twelve"
    batch.loc[3, "count"] = np.inf
    result = fitted.score(batch)
    assert result.rejected["line"].tolist() == [3, 5]
    assert result.rejected["reason"].tolist() == [
        "column 'x': value 'twelve' is not a number",
        "column 'count': value inf is infinite",
    ]
    assert len(result.scored) == 3


# -- property: any dirty frame is scored or rejected, never a crash or a NaN score -----------
_CELL = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 0.0, -0.0, np.nan, np.inf, -np.inf, None]),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.text(max_size=6),
    st.sampled_from(["red", "S", "1,234", "n/a", "inf", "-inf", "1e309", "true", "", " 3 "]),
    st.booleans(),
)


@st.composite
def dirty_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=0, max_value=12))
    columns = ["record_id", "x", "y", "count", "colour", "size"]
    columns += draw(st.lists(st.sampled_from(["extra", "note", "label"]), unique=True))
    columns = draw(st.permutations(columns))
    data = {}
    for column in columns:
        if draw(st.booleans()):  # a typed column, as a reader would give it
            kind = draw(st.sampled_from(["float64", "int64", "object"]))
            if kind == "float64":
                values = draw(st.lists(st.floats(width=64), min_size=n, max_size=n))
            elif kind == "int64":
                values = draw(st.lists(st.integers(-1000, 1000), min_size=n, max_size=n))
            else:
                values = draw(st.lists(st.text(max_size=4), min_size=n, max_size=n))
            data[column] = pd.Series(values, dtype=kind)
        else:
            data[column] = pd.Series(draw(st.lists(_CELL, min_size=n, max_size=n)), dtype=object)
    return pd.DataFrame(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=dirty_frames())
def test_dirty_frames_are_scored_or_rejected_never_crash(fitted, batch):
    result = fitted.score(batch)
    assert len(result.scored) + len(result.rejected) == len(batch)
    assert np.isfinite(result.scored["anomaly_score"].to_numpy(dtype=np.float64)).all()
    assert (result.rejected["reason"].str.len() > 0).all()
    assert len(result.all_rows()) == len(batch)
