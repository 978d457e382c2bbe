"""Preprocessing of mixed tables: numeric impute + scale, missing indicators, one-hot categoricals.

Fitting uses scikit-learn's ``ColumnTransformer``. The fitted parameters are then read out into
plain JSON (medians, means, scales, kept categories), and :meth:`TabularPreprocessor.transform`
applies them with vectorised numpy. So the saved model holds no pickled object, scoring needs no
scikit-learn object, and a test checks that both paths give the same matrix.

Skewed numeric columns (|skewness| above ``log_skew`` in training, e.g. money amounts) are
first mapped with the signed log ``sign(x) * log1p(|x|)``: ratios become differences, which an
MLP reconstructs far better, and extreme values (1e308) stay finite. A column holding
magnitudes above 1e100 in training is always logged, so its mean and scale stay finite.
Missing indicators (0/1, not scaled, for numeric columns that had missing values in training)
weigh like one categorical column, so random missingness does not drown the other columns.
Categories are kept per column up to ``max_categories`` (the most frequent); rarer and unseen
categories encode as all zeros (tolerated, not an error). Missing categoricals are the category
``__missing__``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

logger = logging.getLogger(__name__)

MISSING_CATEGORY = "__missing__"
# standardised values are clipped to this magnitude so that extreme inputs (1e308) give large
# but finite errors instead of inf/NaN scores
CLIP = 1e4
# a numeric column with a magnitude above this in training is always signed-logged: squaring
# such values (for the variance) would overflow float64
HUGE = 1e100


_WHOLE_FLOAT = re.compile(r"^(-?\d+)\.0+$")
_PLAIN = (str, bool, int, float, np.bool_, np.integer, np.floating)


def _spelling(text: str) -> str:
    low = text.lower()
    if low in ("true", "false"):
        return low.capitalize()
    return _WHOLE_FLOAT.sub(r"\1", text)


def _canonical(values: pd.Series) -> np.ndarray:
    """Non-missing values as their one spelling, whatever the reader: pandas reads true/false
    as bools and integer codes with gaps as floats (3.0) where pyarrow keeps the text.

    It is called with a column's distinct values: plain values (text, numbers, bools) are
    spelled by ``str``, the same spelling as pandas' string cast at a fraction of its per-call
    cost (a 300-column table calls it 300 times per pass); anything else (bytes, ...) goes
    through pandas' cast first."""
    objects = values.to_numpy(dtype=object)
    if not all(isinstance(v, _PLAIN) for v in objects):
        objects = values.astype(object).astype(str).to_numpy(dtype=object)
    return np.array([_spelling(str(v)) for v in objects], dtype=object)


def _factorized(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, canonical spelling per code); missing values get the last code, whose
    spelling is ``__missing__``. The string work is done once per distinct value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    spellings = np.append(_canonical(pd.Series(uniques, dtype=object)), MISSING_CATEGORY)
    codes = np.asarray(codes, dtype=np.int64)
    codes[codes < 0] = len(spellings) - 1
    return codes, spellings


def categorical_strings(values: pd.Series) -> np.ndarray:
    """Categorical values as ``str`` objects, missing values as ``__missing__``.

    Casting first avoids scikit-learn's ``isnan`` TypeError on all-NaN float columns.
    """
    codes, spellings = _factorized(values)
    return spellings.astype(object)[codes]


def category_codes(values: pd.Series, categories: list[str]) -> np.ndarray:
    """Position of each value's spelling in ``categories`` (-1: not one of them)."""
    codes, spellings = _factorized(values)
    position = {c: i for i, c in enumerate(categories)}
    lookup = np.fromiter((position.get(s, -1) for s in spellings), np.int64, len(spellings))
    return lookup[codes]


def signed_log(values: np.ndarray, columns: list[int] | None = None) -> np.ndarray:
    """``sign(x) * log1p(|x|)`` on the given column positions (all when None); NaN stays NaN."""
    out = np.array(values, dtype=np.float64, copy=True)
    cols = slice(None) if columns is None else columns
    out[:, cols] = np.sign(out[:, cols]) * np.log1p(np.abs(out[:, cols]))
    return out


def numeric_matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The numeric columns as float64, ``(rows, len(columns))``; missing values as NaN."""
    if not columns:
        return np.empty((len(frame), 0), dtype=np.float64)
    return frame[columns].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass
class TabularPreprocessor:
    """Fitted preprocessing; every learned field ends with ``_``."""

    numeric_columns: list[str]
    categorical_columns: list[str]
    max_categories: int = 50
    log_skew: float = 1.0
    log_columns_: list[str] = field(default_factory=list)
    medians_: list[float] = field(default_factory=list)
    indicator_columns_: list[str] = field(default_factory=list)
    means_: list[float] = field(default_factory=list)
    scales_: list[float] = field(default_factory=list)
    categories_: list[list[str]] = field(default_factory=list)
    fitted_: bool = False

    # -- fitting -------------------------------------------------------------------------
    def _kept_categories(self, frame: pd.DataFrame) -> list[list[str]]:
        """Each categorical column's kept categories: by frequency, ties by name; the
        ``max_categories`` most frequent when it has more (with a warning)."""
        kept = []
        for column in self.categorical_columns:
            codes, spellings = _factorized(frame[column])
            per_code = np.bincount(codes, minlength=len(spellings)).tolist()
            counts: dict[str, int] = {}  # per spelling: two readings of a value are one
            for spelling, count in zip(spellings.tolist(), per_code, strict=True):
                if count:
                    counts[spelling] = counts.get(spelling, 0) + count
            if len(counts) <= self.max_categories:  # all kept: the order is a full sort
                kept.append(sorted(counts, key=lambda c: (-counts[c], c)))
            else:
                kept.append(self._most_frequent(column, spellings.astype(object)[codes]))
        return kept

    def _most_frequent(self, column: str, strings: np.ndarray) -> list[str]:
        """The ``max_categories`` most frequent of a column's spellings: the cut (ties at it
        included) is pandas' ``value_counts``, the kept ones ordered by frequency, then name."""
        counts = pd.Series(strings).value_counts(sort=True)
        top = counts.iloc[: self.max_categories]
        ordered = sorted(top.index.tolist(), key=lambda c: (-int(top[c]), str(c)))
        logger.warning(
            "column %r has %d categories; the %d most frequent are modeled, the rest "
            "encode as unknown",
            column,
            len(counts),
            self.max_categories,
        )
        return [str(c) for c in ordered]

    def _skewed_columns(self, frame: pd.DataFrame) -> list[str]:
        """Columns to map with the signed log: skewed ones, and always those with huge values.

        Skewness is computed on each column divided by its largest magnitude (skewness does not
        change with scale), so values near 1e308 do not overflow it to NaN. A column with
        values beyond ``HUGE`` is logged whatever ``log_skew`` says: its variance would
        overflow float64 and leave the scaler with an infinite mean and a NaN scale.
        """
        if not self.numeric_columns:
            return []
        values = frame[self.numeric_columns].astype("float64")
        peak = values.abs().max(skipna=True)
        huge = peak > HUGE
        if self.log_skew <= 0:
            return [c for c in self.numeric_columns if huge[c]]
        with np.errstate(all="ignore"):
            skew = (values / peak.where(peak > 0, 1.0)).skew(skipna=True)
        return [
            c
            for c in self.numeric_columns
            if huge[c] or (np.isfinite(skew[c]) and abs(skew[c]) > self.log_skew)
        ]

    def sklearn_transformer(
        self, categories: list[list[str]], log_columns: list[str] | None = None
    ) -> ColumnTransformer:
        """The scikit-learn ColumnTransformer this preprocessor is fitted with."""
        positions = [self.numeric_columns.index(c) for c in (log_columns or [])]
        numeric = Pipeline(
            [
                ("log", FunctionTransformer(signed_log, kw_args={"columns": positions})),
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
            ]
        )
        categorical = OneHotEncoder(
            categories=[np.array(c, dtype=object) for c in categories],
            handle_unknown="ignore",
            sparse_output=False,
            dtype=np.float64,
        )
        parts: list[tuple[str, Any, list[str]]] = []
        if self.numeric_columns:
            parts.append(("num", numeric, self.numeric_columns))
            parts.append(
                ("missing", MissingIndicator(features="missing-only"), self.numeric_columns)
            )
        if self.categorical_columns:
            parts.append(("cat", categorical, self.categorical_columns))
        return ColumnTransformer(parts, sparse_threshold=0.0, remainder="drop")

    def sklearn_input(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame the ColumnTransformer reads: numeric columns as one float64 block,
        categorical ones as their spellings."""
        # one column-major block, as a frame built column by column holds it (the scaler's
        # sums then run down contiguous columns)
        numeric = pd.DataFrame(
            np.asfortranarray(numeric_matrix(frame, self.numeric_columns)),
            columns=self.numeric_columns,
        )
        if not self.categorical_columns:
            return numeric
        text = {c: categorical_strings(frame[c]) for c in self.categorical_columns}
        return pd.concat([numeric, pd.DataFrame(text)], axis=1)

    def fit(self, frame: pd.DataFrame) -> TabularPreprocessor:
        if not self.numeric_columns and not self.categorical_columns:
            raise ValueError("no column to model: every column is an id, ignored or empty")
        categories = self._kept_categories(frame)
        self.log_columns_ = self._skewed_columns(frame)
        if self.numeric_columns:
            # the categorical part has nothing to learn (its categories are given): only the
            # numeric steps are fitted, on the numeric columns
            numeric_only = replace(self, categorical_columns=[])
            transformer = numeric_only.sklearn_transformer([], self.log_columns_).fit(
                numeric_only.sklearn_input(frame)
            )
            numeric = transformer.named_transformers_["num"]
            imputer: SimpleImputer = numeric.named_steps["impute"]
            scaler: StandardScaler = numeric.named_steps["scale"]
            self.medians_ = [float(v) for v in imputer.statistics_]
            indicator: MissingIndicator = transformer.named_transformers_["missing"]
            self.indicator_columns_ = [self.numeric_columns[i] for i in indicator.features_]
            self.means_ = [float(v) for v in scaler.mean_]
            self.scales_ = [float(v) for v in scaler.scale_]
        self.categories_ = categories
        self.fitted_ = True
        return self

    # -- applying ------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise RuntimeError("this preprocessor is not fitted yet: call fit() first")

    @property
    def feature_sources(self) -> list[str]:
        """For each encoded feature, the source column it comes from."""
        self._check_fitted()
        sources = list(self.numeric_columns) + list(self.indicator_columns_)
        for column, cats in zip(self.categorical_columns, self.categories_, strict=True):
            sources += [column] * len(cats)
        return sources

    @property
    def feature_names(self) -> list[str]:
        self._check_fitted()
        names = list(self.numeric_columns) + [f"{c}__missing" for c in self.indicator_columns_]
        for column, cats in zip(self.categorical_columns, self.categories_, strict=True):
            names += [f"{column}={c}" for c in cats]
        return names

    def categorical_blocks(self) -> list[tuple[int, int]]:
        """The one-hot block ``[start, stop)`` of each categorical column, in column order."""
        self._check_fitted()
        start = len(self.numeric_columns) + len(self.indicator_columns_)
        blocks = []
        for cats in self.categories_:
            blocks.append((start, start + len(cats)))
            start += len(cats)
        return blocks

    @property
    def n_features(self) -> int:
        return len(self.feature_sources)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode ``frame`` (already validated: numeric columns numeric) as float32."""
        return next(self.iter_transform(frame, max(1, len(frame)), reuse=False))

    def iter_transform(
        self, frame: pd.DataFrame, batch_rows: int, reuse: bool = True
    ) -> Iterator[np.ndarray]:
        """Encode ``frame`` in consecutive blocks of ``batch_rows`` rows (float32).

        The numeric work and the category lookups are done once for the whole frame; each
        block is then filled into one small buffer, which stays in the CPU cache. With
        ``reuse`` the same buffer is yielded every time: use a block before asking for the
        next one.
        """
        self._check_fitted()
        n = len(frame)
        k = len(self.numeric_columns)
        values = np.empty((n, 0))
        flags = np.empty((n, 0), dtype=bool)
        if k:
            values = numeric_matrix(frame, self.numeric_columns)
            if self.log_columns_:
                values = signed_log(
                    values, [self.numeric_columns.index(c) for c in self.log_columns_]
                )
            if not values.flags.writeable:  # a view of the frame's data: work on a copy
                values = values.copy()
            missing = np.isnan(values)
            np.copyto(
                values, np.broadcast_to(np.asarray(self.medians_), values.shape), where=missing
            )
            with np.errstate(over="ignore", invalid="ignore"):
                values -= np.asarray(self.means_)
                values /= np.asarray(self.scales_)
            if not np.isfinite(values).all():  # overflow of extreme inputs (1e308)
                np.nan_to_num(values, copy=False, nan=0.0, posinf=CLIP, neginf=-CLIP)
            np.clip(values, -CLIP, CLIP, out=values)
            index = {c: i for i, c in enumerate(self.numeric_columns)}
            flags = missing[:, [index[c] for c in self.indicator_columns_]]
        offset = k + flags.shape[1]
        onehots = []  # (first feature of the column, category code per row; -1: none)
        for column, cats in zip(self.categorical_columns, self.categories_, strict=True):
            onehots.append((offset, category_codes(frame[column], cats)))
            offset += len(cats)
        buffer = np.empty((min(batch_rows, n), self.n_features), dtype=np.float32)
        for start in range(0, max(n, 1), batch_rows):
            stop = min(start + batch_rows, n)
            out = buffer[: stop - start] if reuse else np.empty_like(buffer[: stop - start])
            out.fill(0.0)
            out[:, :k] = values[start:stop]
            out[:, k : k + flags.shape[1]] = flags[start:stop]
            for first, codes in onehots:
                part = codes[start:stop]
                known = np.flatnonzero(part >= 0)
                out[known, first + part[known]] = 1.0
            yield out

    def expected_values(self, recon: np.ndarray) -> dict[str, np.ndarray]:
        """Map decoder outputs ``(n, n_features)`` back to source units, per source column.

        Numeric columns: the reconstruction in the original units. Categoricals: the kept
        category with the largest reconstructed weight.
        """
        self._check_fitted()
        out: dict[str, np.ndarray] = {}
        n_num = len(self.numeric_columns)
        if n_num:
            scaled = recon[:, :n_num]
            for i, column in enumerate(self.numeric_columns):
                value = scaled[:, i] * self.scales_[i] + self.means_[i]
                if column in self.log_columns_:
                    value = np.sign(value) * np.expm1(np.minimum(np.abs(value), 700.0))
                out[column] = value
        start = n_num + len(self.indicator_columns_)
        for column, cats in zip(self.categorical_columns, self.categories_, strict=True):
            block = recon[:, start : start + len(cats)]
            out[column] = np.asarray(cats, dtype=object)[block.argmax(axis=1)]
            start += len(cats)
        return out

    # -- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "numeric_columns": self.numeric_columns,
            "categorical_columns": self.categorical_columns,
            "max_categories": self.max_categories,
            "log_skew": self.log_skew,
            "log_columns_": self.log_columns_,
            "medians_": self.medians_,
            "indicator_columns_": self.indicator_columns_,
            "means_": self.means_,
            "scales_": self.scales_,
            "categories_": self.categories_,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TabularPreprocessor:
        return cls(**values, fitted_=True)
