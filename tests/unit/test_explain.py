"""Per-row reasons: their order, what they name, and the bounded search."""

import re

import numpy as np
import pytest

import pipeline.explain as explain_module
from pipeline.detector import AnomalyDetector
from pipeline.explain import _reason_order
from tests.conftest import mixed_frame, quick_settings


@pytest.fixture(scope="module")
def fitted() -> AnomalyDetector:
    return AnomalyDetector(quick_settings()).fit(mixed_frame(400))


def test_reason_order_ties_go_to_the_driving_term_and_missing_cells_come_last():
    falls = np.array(
        [
            [5.0, 4.6, 1.0, 0.0],  # columns 0 and 1 within 15%: the driving term's share decides
            [5.0, 3.0, 1.0, 0.0],  # column 0 alone explains the row: first whatever the shares
            [5.0, 3.0, 1.0, 0.0],  # column 0 is missing: the best present value comes first
        ]
    )
    driving = np.array([[0.1, 0.7, 0.2, 0.0], [0.1, 0.7, 0.2, 0.0], [0.1, 0.7, 0.2, 0.0]])
    missing = np.zeros_like(falls, dtype=bool)
    missing[2, 0] = True
    order = _reason_order(falls, driving, missing)
    assert order[0].tolist() == [1, 0, 2, 3]
    assert order[1].tolist() == [0, 1, 2, 3]
    assert order[2].tolist() == [1, 2, 3, 0]


def test_reasons_name_the_column_whose_change_restores_the_row(fitted, frame):
    """y is 2x on every training row: a row whose y alone breaks that is explained by y first,
    with an expected value other than its own, shares of at most 100%, in the contract's
    format."""
    rows = frame.dropna().head(3).reset_index(drop=True)
    rows["x"] = [-1.0, 0.0, 1.0]
    rows["y"] = [4.0, -4.0, -4.0]  # 2x would be -2, 0, 2
    reasons = fitted.explain(rows)
    pattern = r"(\w+)=(\S+) \(expected ~?([^,]+), (\d+)%\)"
    for text in reasons:
        parts = list(re.finditer(pattern, text))
        assert len(parts) == 3 and ", ".join(p.group(0) for p in parts) == text, text
        assert parts[0].group(1) == "y", text
        assert sum(int(p.group(4)) for p in parts) <= 101, text
        assert float(parts[0].group(3)) != float(parts[0].group(2)), text


def test_reason_search_is_limited_to_the_columns_with_the_largest_driving_share(
    fitted, frame, monkeypatch
):
    rows = frame.dropna().head(4).reset_index(drop=True)
    x = fitted.preprocessor_.transform(rows)
    n_columns = len(fitted.schema_.model_columns)
    driving = np.tile(np.arange(n_columns, dtype=float), (len(rows), 1))  # last column largest
    monkeypatch.setattr(explain_module, "REASON_SEARCH_COLUMNS", n_columns)
    full, _ = fitted.explainer_._counterfactual_falls(x, driving)
    assert np.isfinite(full).all()
    monkeypatch.setattr(explain_module, "REASON_SEARCH_COLUMNS", 2)
    limited, _ = fitted.explainer_._counterfactual_falls(x, driving)
    assert np.isneginf(limited[:, :-2]).all()
    np.testing.assert_allclose(limited[:, -2:], full[:, -2:])
