"""The column-wise work of cleaning, checking and encoding done on blocks (a wide table has
thousands of columns) gives exactly what the column-by-column reading gives: the references
below are that reading, written out one column at a time."""

import logging

import numpy as np
import pandas as pd
import pytest

from pipeline.config import DataSettings
from pipeline.explain import Explainer
from pipeline.preprocess import TabularPreprocessor, categorical_strings
from pipeline.schema import (
    SchemaError,
    TableSchema,
    _shown,
    check_scoring_frame,
    clean_training_frame,
    infer_schema,
    to_float,
)


def _messy(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Numbers as floats, ints, nullable ints, text with junk, inf, NaN; bools; categories
    with two spellings of one value, missing cells, and more than 50 values tied at the cut;
    a duplicated index."""
    rng = np.random.default_rng(seed)
    names = np.array([f"v{i:02d}" for i in range(60)])
    frame = pd.DataFrame(
        {
            "f": rng.normal(size=n),
            "i": rng.integers(0, 9, n),
            "nullable": pd.array(
                np.where(rng.random(n) < 0.1, None, rng.integers(0, 5, n)), dtype="Int64"
            ),
            "text": np.where(rng.random(n) < 0.02, "oops", rng.integers(0, 20, n).astype(str)),
            "inf": np.where(rng.random(n) < 0.03, np.inf, rng.lognormal(size=n)),
            "nan": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "flag": rng.random(n) < 0.3,
            "spelled": rng.choice(np.array([1.0, 2.0, "2", "3", None], dtype=object), n),
            "tied": np.tile(names, n // len(names) + 1)[:n],
            "colour": rng.choice(np.array(["red", "blue", None], dtype=object), n),
        }
    )
    for k in range(40):  # width: many plain numeric columns
        frame[f"w{k}"] = rng.normal(size=n) * (k + 1)
    frame.index = np.repeat(np.arange(n // 2), 2)  # every label twice
    return frame


def _schema(frame: pd.DataFrame) -> TableSchema:
    return infer_schema(frame, DataSettings(categorical_columns=["spelled", "tied", "colour"]))


def _clean_by_column(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    out = frame[list(schema.roles)].copy()
    for column in schema.numeric_columns:
        numbers = to_float(out[column])
        out[column] = numbers.mask(np.isinf(numbers.to_numpy()))
    for column in schema.categorical_columns + schema.id_columns:
        out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out


def _check_by_column(frame: pd.DataFrame, schema: TableSchema) -> tuple[pd.DataFrame, dict]:
    typed = frame[list(schema.roles)].copy()
    problems: dict[int, str] = {}
    for column in schema.numeric_columns:
        raw = frame[column]
        numbers = to_float(raw)
        values = numbers.to_numpy()
        not_a_number = (raw.notna() & numbers.isna()).to_numpy()
        for mask, what in ((not_a_number, "is not a number"), (np.isinf(values), "is infinite")):
            for i in np.flatnonzero(mask):
                problems.setdefault(
                    int(i), f"column {column!r}: value {_shown(raw.iloc[i])} {what}"
                )
        typed[column] = numbers
    return typed, problems


def test_the_cleaned_training_frame_is_the_column_by_column_one():
    frame = _messy()
    schema = _schema(frame)
    assert set(schema.numeric_columns) >= {"f", "i", "nullable", "text", "inf", "nan"}
    pd.testing.assert_frame_equal(
        clean_training_frame(frame, schema), _clean_by_column(frame, schema), check_exact=True
    )


def test_a_checked_batch_is_the_column_by_column_one_with_the_first_columns_reason():
    train = _messy()
    schema = _schema(train)
    batch = _messy(seed=1)
    batch.loc[batch.index[3], "f"] = np.inf  # a row with two problems: 'f' comes first
    batch.loc[batch.index[3], "text"] = "junk"
    checked = check_scoring_frame(batch, schema)
    typed, problems = _check_by_column(batch, schema)
    assert len(problems) > 5  # text and inf rows in several columns
    assert problems[3].startswith("column 'f': value inf is infinite")
    bad = np.zeros(len(batch), dtype=bool)
    bad[sorted(problems)] = True
    pd.testing.assert_frame_equal(checked.accepted, typed.loc[~bad], check_exact=True)
    assert checked.rejected["reason"].tolist() == [problems[i] for i in sorted(problems)]
    assert checked.rejected["line"].tolist() == [i + 2 for i in sorted(problems)]


def test_nan_in_an_arrow_float_column_is_a_value_that_is_not_a_number():
    """Arrow keeps NaN apart from a missing cell: a NaN read from Parquet is rejected (as
    the column-by-column check did), a missing cell is not."""
    import pyarrow as pa

    values = pa.array([1.0, float("nan"), None, 2.0])  # NaN stays a value, None is null
    frame = pd.DataFrame({"x": pd.arrays.ArrowExtensionArray(values)})
    schema = TableSchema({"x": "numeric"})
    checked = check_scoring_frame(frame, schema)
    _, problems = _check_by_column(frame, schema)
    assert checked.rejected["reason"].tolist() == list(problems.values())
    assert checked.rejected["line"].tolist() == [3]


def _kept_by_value_counts(pre: TabularPreprocessor, frame: pd.DataFrame) -> list[list[str]]:
    kept = []
    for column in pre.categorical_columns:
        counts = pd.Series(categorical_strings(frame[column])).value_counts(sort=True)
        top = counts.iloc[: pre.max_categories]
        kept.append([str(c) for c in sorted(top.index, key=lambda c: (-int(top[c]), str(c)))])
    return kept


@pytest.mark.parametrize("max_categories", [50, 3, 2])
def test_kept_categories_are_those_of_pandas_value_counts(max_categories, caplog):
    frame = clean_training_frame(_messy(), _schema(_messy()))
    pre = TabularPreprocessor([], ["spelled", "tied", "colour"], max_categories=max_categories)
    with caplog.at_level(logging.WARNING, logger="pipeline.preprocess"):
        kept = pre._kept_categories(frame)
    assert kept == _kept_by_value_counts(pre, frame)
    assert kept[0][0] == "2" and "2.0" not in kept[0]  # 2.0 and "2" are one value, counted once
    assert "'tied' has 60 categories" in caplog.text  # the cut is warned about
    assert len(kept[1]) == min(max_categories, 60)


def test_the_numeric_statistics_are_those_of_the_column_transformer_on_every_column():
    """Fitting only the numeric steps, on one float block, learns the medians, means and
    scales that the whole ColumnTransformer learns from a frame built column by column."""
    frame = _messy()
    schema = _schema(frame)
    clean = clean_training_frame(frame, schema)
    pre = TabularPreprocessor(schema.numeric_columns, schema.categorical_columns).fit(clean)
    data = {c: clean[c].astype("float64") for c in pre.numeric_columns}
    data |= {c: categorical_strings(clean[c]) for c in pre.categorical_columns}
    whole = pre.sklearn_transformer(pre.categories_, pre.log_columns_)
    whole.fit(pd.DataFrame(data, index=clean.index))
    numeric = whole.named_transformers_["num"]
    assert pre.medians_ == [float(v) for v in numeric.named_steps["impute"].statistics_]
    assert pre.means_ == [float(v) for v in numeric.named_steps["scale"].mean_]
    assert pre.scales_ == [float(v) for v in numeric.named_steps["scale"].scale_]
    indicator = whole.named_transformers_["missing"]
    assert pre.indicator_columns_ == [pre.numeric_columns[i] for i in indicator.features_]


def test_each_columns_reason_candidates_set_that_columns_features():
    frame = _messy()
    schema = _schema(frame)
    clean = clean_training_frame(frame, schema)
    pre = TabularPreprocessor(schema.numeric_columns, schema.categorical_columns).fit(clean)
    explainer = Explainer.__new__(Explainer)
    explainer.preprocessor, explainer.columns = pre, schema.model_columns
    owner, mask, _ = explainer._candidates(None)
    for j, column in enumerate(schema.model_columns):
        mine = mask[owner == j]
        assert len(mine) > 0
        assert (mine == np.array([s == column for s in pre.feature_sources])).all(), column
    assert (np.diff(owner) >= 0).all()  # grouped by column, in order


def test_a_batch_holding_a_model_column_twice_is_refused_by_name():
    frame = _messy()
    schema = _schema(frame)
    with pytest.raises(SchemaError, match=r"\['colour'\] appear more than once"):
        check_scoring_frame(pd.concat([frame, frame[["colour"]]], axis=1), schema)
    # a column the model does not read may repeat: it is ignored, as any extra column
    extra = frame[["f"]].rename(columns={"f": "extra"})
    checked = check_scoring_frame(pd.concat([frame, extra, extra], axis=1), schema)
    assert list(checked.accepted.columns) == list(schema.roles)
    assert checked.warnings == ["input: extra column(s) ['extra', 'extra'] ignored"]
