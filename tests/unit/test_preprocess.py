import numpy as np
import pandas as pd

from pipeline.preprocess import TabularPreprocessor
from pipeline.schema import clean_training_frame, infer_schema
from tests.conftest import quick_settings


def _fitted(frame):
    schema = infer_schema(frame, quick_settings().data)
    clean = clean_training_frame(frame, schema)
    pre = TabularPreprocessor(schema.numeric_columns, schema.categorical_columns).fit(clean)
    return schema, clean, pre


def test_roles_of_a_mixed_table(frame):
    schema, _, _ = _fitted(frame)
    assert schema.id_columns == ["record_id"]
    assert schema.numeric_columns == ["x", "y", "count"]
    assert schema.categorical_columns == ["colour", "size"]


def test_json_transform_equals_the_sklearn_column_transformer(frame):
    _, clean, pre = _fitted(frame)
    transformer = pre.sklearn_transformer(pre.categories_, pre.log_columns_)
    expected = transformer.fit(pre.sklearn_input(clean)).transform(pre.sklearn_input(clean))
    np.testing.assert_allclose(pre.transform(clean), expected, rtol=1e-5, atol=1e-5)
    assert pre.transform(clean).dtype == np.float32
    assert not np.isnan(pre.transform(clean)).any()


def test_missing_values_are_imputed_and_indicated(frame):
    _, clean, pre = _fitted(frame)
    assert pre.indicator_columns_ == ["x"]
    x = pre.transform(clean)
    names = pre.feature_names
    missing = clean["x"].isna().to_numpy()
    assert (x[:, names.index("x__missing")] == missing).all()
    assert "colour=__missing__" in names


def test_unknown_and_all_missing_categories_encode_as_zeros(frame):
    _, clean, pre = _fitted(frame)
    batch = clean.head(3).copy()
    batch["colour"] = ["purple", "red", "orange"]
    batch["size"] = np.nan  # an all-NaN (float) categorical column must not crash the encoder
    x = pre.transform(batch)
    names = pre.feature_names
    colour = [i for i, n in enumerate(names) if n.startswith("colour=")]
    assert x[0, colour].sum() == 0 and x[1, colour].sum() == 1
    size = [i for i, n in enumerate(names) if n.startswith("size=")]
    assert x[:, size].sum() == 0


def test_skewed_columns_are_log_mapped_and_expected_values_come_back_in_units():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": np.exp(rng.normal(3, 1.2, 500)), "z": rng.normal(size=500)})
    pre = TabularPreprocessor(["amount", "z"], []).fit(frame)
    assert pre.log_columns_ == ["amount"]
    x = pre.transform(frame).astype(np.float64)
    back = pre.expected_values(x)
    np.testing.assert_allclose(back["amount"], frame["amount"], rtol=1e-4)
    np.testing.assert_allclose(back["z"], frame["z"], rtol=1e-4, atol=1e-5)


def test_extreme_values_stay_finite():
    frame = pd.DataFrame({"v": np.linspace(0, 10, 100)})
    pre = TabularPreprocessor(["v"], []).fit(frame)
    x = pre.transform(pd.DataFrame({"v": [1e308, -1e308, 5.0]}))
    assert np.isfinite(x).all()


def test_round_trip_through_json(frame):
    import json

    _, clean, pre = _fitted(frame)
    again = TabularPreprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    np.testing.assert_array_equal(again.transform(clean), pre.transform(clean))
