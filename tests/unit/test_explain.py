"""Per-row reasons: their order, what they name, and the bounded search."""

import re

import numpy as np
import pandas as pd
import pytest

import pipeline.explain as explain_module
from pipeline.detector import AnomalyDetector
from pipeline.explain import _reason_order
from pipeline.reason_text import expected_text, non_increasing, value_text, values_as_read
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


REASON = re.compile(r"(\w+)=(\S+) \(expected (about \S+|between \S+ and \S+|\w+), (\d+)%\)")


def test_reasons_name_the_column_whose_change_restores_the_row(fitted, frame):
    """y is 2x on every training row: a row whose y alone breaks that is explained by y first,
    with an expected value other than its own, at most 3 reasons of at least 1% each, shares
    that never increase, in the contract's format."""
    rows = frame.dropna().head(3).reset_index(drop=True)
    rows["x"] = [-1.0, 0.0, 1.0]
    rows["y"] = [4.0, -4.0, -4.0]  # 2x would be -2, 0, 2
    reasons = fitted.explain(rows)
    for text, y in zip(reasons, rows["y"], strict=True):
        parts = list(REASON.finditer(text))
        assert 1 <= len(parts) <= 3 and ", ".join(p.group(0) for p in parts) == text, text
        assert parts[0].group(1) == "y" and parts[0].group(2) == f"{y:g}", text
        shares = [int(p.group(4)) for p in parts]
        assert min(shares) >= 1 and sum(shares) <= 101 and shares == sorted(shares)[::-1], text
        assert parts[0].group(3) not in (f"about {y:g}", "missing"), text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (99999.0, "99999"),  # not 1e+05
        (18.0, "18"),  # not 18.0
        (12.4, "12.4"),
        (0.1 + 0.2, "0.30000000000000004"),  # as read: every digit the float holds
        (-0.0, "0"),
        (1e20, "1e+20"),
        (0.000001234, "1.234e-06"),
        (np.int64(3), "3"),
        (np.nan, "missing"),
        (None, "missing"),
        ("GBP", "GBP"),
        (True, "True"),
    ],
)
def test_values_are_written_as_read(value, text):
    assert value_text(value) == text


@pytest.mark.parametrize(
    ("value", "best", "low", "high", "text"),
    [
        (16870.0, 14640.0, 14640.0, 14640.0, "about 15000"),
        (15000.0, 14640.0, 14640.0, 14640.0, "about 14600"),  # more digits than the value's
        (1.0987, 1.098, 1.098, 1.098, "about 1.098"),
        (64.2, 64.2, 64.2, 64.2, None),  # reads as the value itself: not named
        (4352.4, 4.4, 1.098, 66.31, "between 1.1 and 66"),
        (np.nan, 4.4, 1.098, 66.31, "between 1.1 and 66"),
        (20.0, 4.4, 1.098, 66.31, "about 4.4"),  # the value lies in the range: the best value
        (0.0, -0.0004, -0.0004, -0.0004, "about -0.0004"),
        ("GBP", "JPY", "JPY", "JPY", "JPY"),
        ("GBP", "GBP", "GBP", "GBP", None),
        ("pos", "__missing__", "__missing__", "__missing__", "missing"),
    ],
)
def test_expected_values_are_written_as_a_person_would(value, best, low, high, text):
    assert expected_text(value, best, low, high) == text


def test_shares_never_increase_along_the_reasons():
    assert non_increasing([0.6, 0.3, 0.1]) == [0.6, 0.3, 0.1]
    assert non_increasing([0.49, 0.51, 0.0]) == pytest.approx([0.5, 0.5, 0.0])
    assert non_increasing([0.3, 0.1, 0.5]) == pytest.approx([0.3, 0.3, 0.3])
    assert sum(non_increasing([0.2, 0.5, 0.3])) == pytest.approx(1.0)


def test_reason_search_is_limited_to_the_columns_with_the_largest_driving_share(
    fitted, frame, monkeypatch
):
    rows = frame.dropna().head(4).reset_index(drop=True)
    x = fitted.preprocessor_.transform(rows)
    n_columns = len(fitted.schema_.model_columns)
    driving = np.tile(np.arange(n_columns, dtype=float), (len(rows), 1))  # last column largest
    monkeypatch.setattr(explain_module, "REASON_SEARCH_COLUMNS", n_columns)
    full = fitted.explainer_._counterfactual_falls(x, driving).falls
    assert np.isfinite(full).all()
    monkeypatch.setattr(explain_module, "REASON_SEARCH_COLUMNS", 2)
    limited = fitted.explainer_._counterfactual_falls(x, driving).falls
    assert np.isneginf(limited[:, :-2]).all()
    np.testing.assert_allclose(limited[:, -2:], full[:, -2:])


def test_the_expected_range_surrounds_the_best_change_of_the_same_column(fitted, frame):
    rows = frame.dropna().head(6).reset_index(drop=True)
    rows["y"] = [5.0, -5.0, 3.0, -3.0, 8.0, -8.0]
    explainer = fitted.explainer_
    x = fitted.preprocessor_.transform(rows)
    n_columns = len(fitted.schema_.model_columns)
    found = explainer._counterfactual_falls(x, np.ones((len(rows), n_columns)))
    explained = np.isfinite(found.falls) & (found.falls > 0)
    assert explained.any()
    numeric = set(fitted.preprocessor_.numeric_columns)
    for i, j in zip(*np.nonzero(explained), strict=True):
        low, best, high = found.low[i, j], found.best[i, j], found.high[i, j]
        assert explainer.owner[[low, best, high]].tolist() == [j, j, j]
        assert low <= best <= high
        if fitted.schema_.model_columns[j] in numeric:  # candidates in value order
            assert explainer.labels[low] <= explainer.labels[best] <= explainer.labels[high]


def test_reasons_show_numbers_as_the_file_wrote_them():
    reasons = [
        "amount=76 (expected about 51, 60%), discount_amount=5 (expected about 0, 40%)",
        "amount=missing (expected about 51, 100%)",
        "",
    ]
    checked = pd.DataFrame({"amount": [76.0, np.nan, 1.0], "discount_amount": [5.0, 0.0, 0.0]})
    as_read = pd.DataFrame({"amount": ["76.0", "n/a", "1"], "discount_amount": [" 5.00", "0", "0"]})
    assert values_as_read(reasons, checked, as_read, ["amount", "discount_amount"]) == [
        "amount=76.0 (expected about 51, 60%), discount_amount=5.00 (expected about 0, 40%)",
        "amount=missing (expected about 51, 100%)",  # a missing cell stays missing
        "",
    ]
