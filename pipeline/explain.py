"""Per-row reasons: which source columns explain a row's score, with their share and the
value the model expected.

A column's weight is how much the row's score falls when that column alone takes its most
plausible value: each kept category, or each of ``REASON_QUANTILES`` training quantiles of a
numeric column, is tried in its place (a one-column counterfactual; the fix of an ``amount``
that is not ``quantity x unit_price`` removes the whole score, a change elsewhere does not).
See :meth:`Explainer.explain` for the order and the texts.

The :class:`Explainer` is built when a detector is fitted or loaded: its candidate changes and
the training means of the encoded features come from the held-out training rows then, not
lazily on first use. Every forward pass goes through ``vae.infer`` in fixed windows, so a
row's reasons do not depend on the rows explained with it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.preprocess import TabularPreprocessor
from pipeline.reason_text import expected_text, non_increasing, value_text
from pipeline.schema import TableSchema, check_scoring_frame
from pipeline.scoring import ScoreDefinition
from vae import VAE
from vae.infer import FeatureLoss, feature_errors, kl_array, score_arrays

# numeric values tried per column, and how close two columns' score falls must be to count as
# equally good explanations (then the driving term's shares order them)
REASON_QUANTILES = 7
REASON_TIE = 0.15
REASON_WINDOW = 2048  # rows per forward pass of the reasons (flagged rows, changed copies)
REASON_SEARCH_COLUMNS = 4  # columns searched per row: those with the largest driving share
MIN_REASON_SHARE = 0.01  # a column is named when it explains at least 1% of the summed falls


def _column_sums(per_feature: np.ndarray, group: np.ndarray) -> np.ndarray:
    """``per_feature @ group`` (features summed into their source columns), added one feature
    at a time in a fixed order: unlike a matrix product, whose kernel (and summation order)
    depends on the number of rows, a row's sums do not depend on the other rows."""
    out = np.zeros((per_feature.shape[0], group.shape[1]))
    for feature, column in zip(*np.nonzero(group), strict=True):
        out[:, column] += per_feature[:, feature]
    return out


def _row_totals(values: np.ndarray) -> np.ndarray:
    """Sum of each row, shape ``(n, 1)``, added column by column (see :func:`_column_sums`)."""
    return _column_sums(values, np.ones((values.shape[1], 1)))


def _reason_order(falls: np.ndarray, driving: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Column positions of each row, best explanation first (see :meth:`Explainer.explain`).

    First the present columns whose score fall is within ``REASON_TIE`` of the best present
    one, by their share of the driving term; then the other present columns by fall; then
    the missing ones by fall.
    """
    present = np.where(missing, -np.inf, falls)
    top = present.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    near = ~missing & (falls >= top - REASON_TIE * np.abs(top))
    rank_group = np.where(near, 0, np.where(missing, 2, 1))
    within = np.where(near, -driving, -falls)
    return np.lexsort((within, rank_group), axis=1)


@dataclass(frozen=True)
class Counterfactuals:
    """Per row and column (``(n, n_columns)`` arrays): the score's fall at the column's best
    single change (``-inf`` where not searched), that change (a candidate's index), and the
    lowest and highest candidates around it that restore the row about as well."""

    falls: np.ndarray
    best: np.ndarray
    low: np.ndarray
    high: np.ndarray


class Explainer:
    """The reasons of a fitted detector's rows (see the module notes).

    ``reference`` holds the held-out training rows (raw values; may be empty for a model saved
    without them: then the numeric candidates are standard-normal quantiles and the feature
    means 0); ``window`` is the scoring window, with which the terms passed to
    :meth:`explain` were computed.
    """

    def __init__(
        self,
        model: VAE,
        preprocessor: TabularPreprocessor,
        schema: TableSchema,
        score: ScoreDefinition,
        reference: pd.DataFrame,
        window: int,
        loss: FeatureLoss = FeatureLoss(),
    ) -> None:
        self.model = model
        self.loss = loss  # how the score counts each feature's loss
        self.preprocessor = preprocessor
        self.columns = schema.model_columns
        self.score = score
        self.window = window
        sources = preprocessor.feature_sources
        position = {c: i for i, c in enumerate(self.columns)}
        # (n_features, n_columns): 1 where a feature comes from a column (one-hot groups)
        self.group = np.zeros((len(sources), len(self.columns)))
        self.group[np.arange(len(sources)), [position[s] for s in sources]] = 1.0
        encoded = None
        if not reference.empty:
            encoded = preprocessor.transform(check_scoring_frame(reference, schema).accepted)
        self.feature_means = (
            encoded.mean(axis=0) if encoded is not None else np.zeros(len(sources), np.float32)
        )
        self.owner, self.mask, self.values = self._candidates(encoded)
        self.labels = self._candidate_labels()

    def _candidates(self, reference: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """Every one-column change tried: its column (``owner``), the encoded features it sets
        (``mask``) and their values, one row per change, grouped by column, in order.

        Numeric columns: ``REASON_QUANTILES`` quantiles (2%..98%) of the standardised training
        values (of a standard normal without training rows), missing indicator off;
        categoricals: each kept category.
        """
        pre = self.preprocessor
        n_features = len(pre.feature_sources)
        levels = np.linspace(0.02, 0.98, REASON_QUANTILES)
        normal = np.array([statistics.NormalDist().inv_cdf(q) for q in levels])
        owner: list[int] = []
        changes: list[tuple[np.ndarray, np.ndarray]] = []
        # each column's features, in order (one pass; a wide table has thousands of columns;
        # a dict, not numpy strings, which would drop a name's trailing NUL characters)
        grouped: dict[str, list[int]] = {}
        for position, source in enumerate(pre.feature_sources):
            grouped.setdefault(source, []).append(position)
        of_column = {c: np.array(p, dtype=np.int64) for c, p in grouped.items()}
        numeric = {c: i for i, c in enumerate(pre.numeric_columns)}
        for j, column in enumerate(self.columns):
            features = of_column.get(column, np.empty(0, dtype=np.int64))
            if column in numeric:
                value = numeric[column]  # its feature; then its indicator
                grid = normal if reference is None else np.quantile(reference[:, value], levels)
                settings = [np.r_[level, np.zeros(len(features) - 1)] for level in np.unique(grid)]
            else:
                settings = list(np.eye(len(features)))
            for setting in settings:
                owner.append(j)
                changes.append((features, setting))
        mask = np.zeros((len(changes), n_features), dtype=bool)
        values = np.zeros((len(changes), n_features), dtype=np.float32)
        for i, (features, setting) in enumerate(changes):
            mask[i, features], values[i, features] = True, setting
        return np.array(owner, dtype=np.int64), mask, values

    def _candidate_labels(self) -> np.ndarray:
        """Each candidate change as a person reads it: the number (in the column's units) or
        the category it sets."""
        decoded = self.preprocessor.expected_values(self.values.astype(np.float64))
        labels = np.empty(len(self.owner), dtype=object)
        for j, column in enumerate(self.columns):
            mine = self.owner == j
            labels[mine] = [
                float(v) if isinstance(v, float | np.floating) else str(v)
                for v in decoded[column][mine]
            ]
        return labels

    def explain(
        self,
        rows: pd.DataFrame,
        x: np.ndarray,
        terms: tuple[np.ndarray, np.ndarray] | None,
        top_reasons: int,
    ) -> list[str]:
        """Top source columns of each row's score, with their share and expected value.

        A column's weight is how much the row's score falls when that column alone takes its
        most plausible value: each kept category, or each of ``REASON_QUANTILES`` training
        quantiles of a numeric column, is tried in its place (a one-column counterfactual;
        the fix of an ``amount`` that is not ``quantity x unit_price`` removes the whole
        score, a change elsewhere does not). The share is the column's part of the summed
        falls. Two columns whose falls are within ``REASON_TIE`` of the best one explain the
        row about equally well (a wrong currency is fixed as well by changing the country);
        among those, the one the score's driving term puts first comes first: its share of
        the reconstruction error (precision-weighted squared error, one-hot groups summed
        back to the column) when the reconstruction term drives the score, its share of the
        KL fall when set to its training mean when the KL term does. Missing cells come after
        present values: a missing value is named first only when no present value explains
        the row.

        What is named: only columns whose change lowers the score, at least
        ``MIN_REASON_SHARE`` of the summed falls, at most ``top_reasons`` of them. Shares
        never increase along a row's reasons: where the order above puts a column before one
        with a larger share (a near tie, or a missing cell), both show their mean share.
        Each reason reads ``column=value (expected E, share)``: the value as read
        (:func:`value_text`), E the column's best change as a person writes it
        (:func:`expected_text`: the category; ``about 64``; ``between 40 and 90`` when every
        training quantile in that range restores the row about as well); a column whose
        expected value would read as its own value is not named.
        ``x`` are the encoded (checked) rows; ``terms`` their recon_error and kl, when known.
        """
        columns = self.columns
        driving = self._driving_term_weights(x, terms)
        found = self._counterfactual_falls(x, driving)
        missing = rows[columns].isna().to_numpy()
        order = _reason_order(found.falls, driving, missing)
        positive = np.maximum(found.falls, 0.0)
        total = _row_totals(positive)
        share = np.where(total > 0, positive / np.maximum(total, 1e-12), 0.0)
        # per-row Python is limited to the (few) flagged rows and their few explaining columns
        ranked = np.take_along_axis(share, order, axis=1)
        named = np.unique(order[ranked > 0])
        actual = {columns[j]: rows[columns[j]].to_numpy(dtype=object) for j in named}
        texts = []
        for i in range(len(rows)):
            candidates = order[i][ranked[i] > 0]
            shown = non_increasing([float(share[i, j]) for j in candidates])
            parts: list[str] = []
            for j, part in zip(candidates, shown, strict=True):
                if part < MIN_REASON_SHARE or len(parts) == top_reasons:
                    break
                value = actual[columns[j]][i]
                expected = expected_text(
                    value,
                    self.labels[found.best[i, j]],
                    self.labels[found.low[i, j]],
                    self.labels[found.high[i, j]],
                )
                if expected is not None:
                    parts.append(
                        f"{columns[j]}={value_text(value)} (expected {expected}, {part:.0%})"
                    )
            texts.append(", ".join(parts))
        return texts

    def _driving_term_weights(
        self, x: np.ndarray, terms: tuple[np.ndarray, np.ndarray] | None
    ) -> np.ndarray:
        """Per column, its share of the term that drives each row's score (rows sum to 1).

        Reconstruction-driven rows: the column's part of the reconstruction loss (the
        precision-weighted squared error, the precision ``scaled_elbo``'s feature weights with
        that score; the categorical likelihood with the ``elbo`` and ``tail_max`` scores).
        KL-driven rows (the encoder followed an extreme value instead of failing to
        reconstruct it): how much the KL falls when the column alone is set to its training
        mean.
        """
        losses = feature_errors(self.model, x, REASON_WINDOW, self.loss)
        per_column = _column_sums(losses, self.group)
        if terms is None:
            computed = score_arrays(self.model, x, self.window, loss=self.loss)
            terms = (computed.recon, computed.kl)
        kl_driven = self.score.kl_driven(*terms)
        if kl_driven.any():
            per_column[kl_driven] = self._kl_occlusion(x[kl_driven], terms[1][kl_driven])
        return per_column / np.maximum(_row_totals(per_column), 1e-12)

    def _kl_occlusion(self, x: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Per column: how much each row's KL (``base``) falls when that column is set to its
        training mean (encoded features of the held-out training rows), floored at 0."""
        drops = np.zeros((len(x), self.group.shape[1]))
        for j in range(self.group.shape[1]):
            features = self.group[:, j] > 0
            occluded = x.copy()
            occluded[:, features] = self.feature_means[features]
            drops[:, j] = base - kl_array(self.model, occluded, REASON_WINDOW)
        return np.maximum(drops, 0.0)

    def _window_scores(
        self, x: np.ndarray, rows: np.ndarray, changes: np.ndarray | None = None
    ) -> np.ndarray:
        """Deterministic scores (on ``reason_scale``) of ``x[rows]``, each row changed by
        candidate ``changes`` when given, built and scored ``REASON_WINDOW`` rows at a time
        (the changed copies of many rows never exist at once)."""
        scores = np.empty(len(rows))
        trial = np.empty((REASON_WINDOW, x.shape[1]), dtype=np.float32)
        for start in range(0, len(rows), REASON_WINDOW):
            part = rows[start : start + REASON_WINDOW]
            np.take(x, part, axis=0, out=trial[: len(part)])
            if changes is not None:
                tried = changes[start : start + REASON_WINDOW]
                np.copyto(trial[: len(part)], self.values[tried], where=self.mask[tried])
            terms = score_arrays(self.model, trial[: len(part)], REASON_WINDOW, loss=self.loss)
            scores[start : start + len(part)] = self.score.reason_scale(
                terms.recon, terms.kl, terms.pearson
            )
        return scores

    def _counterfactual_falls(self, x: np.ndarray, driving: np.ndarray) -> Counterfactuals:
        """Per row and column: how much the (deterministic) score falls at the column's best
        single change, which candidate that is (its row in ``mask`` / ``values``), and the
        lowest and highest candidates of the run of neighbouring candidates around it whose
        falls are within ``REASON_TIE`` of the best one (for a numeric column: the range of
        training quantiles that restore the row about as well).

        Only the ``REASON_SEARCH_COLUMNS`` columns with the largest share of the driving term
        are searched (their fall is ``-inf`` elsewhere): the cost per flagged row stays
        bounded on wide tables.
        """
        n, n_columns = len(x), len(self.columns)
        searched = np.zeros((n, n_columns), dtype=bool)
        widest = np.argsort(-driving, axis=1, kind="stable")[:, :REASON_SEARCH_COLUMNS]
        np.put_along_axis(searched, widest, True, axis=1)
        # (row, change) pairs to score, by row, then by candidate (a column's in value order)
        pair_row, pair_candidate = np.nonzero(searched[:, self.owner])
        scores = self._window_scores(x, pair_row, pair_candidate)
        # lowest score per (row, column), and which candidate gives it
        pair_column = self.owner[pair_candidate]
        key = pair_row * n_columns + pair_column
        order = np.lexsort((scores, key))
        firsts = order[np.r_[True, key[order][1:] != key[order][:-1]]] if len(order) else order
        lowest = np.full((n, n_columns), np.inf)
        best = np.zeros((n, n_columns), dtype=np.int64)
        at_row, at_column = pair_row[firsts], pair_column[firsts]
        lowest[at_row, at_column] = scores[firsts]
        best[at_row, at_column] = pair_candidate[firsts]
        base = self._window_scores(x, np.arange(n))
        falls = np.where(searched, base[:, None] - lowest, -np.inf)
        # runs of consecutive candidates of a (row, column) whose fall is near the best one
        top = falls[pair_row, pair_column]
        near = (top > 0) & (base[pair_row] - scores >= (1.0 - REASON_TIE) * top)
        same = np.r_[False, key[1:] == key[:-1]]
        starts = near & ~(same & np.r_[False, near[:-1]])
        ends = near & ~(np.r_[same[1:], False] & np.r_[near[1:], False])
        run = np.cumsum(starts) - 1
        low, high = best.copy(), best.copy()
        in_run = near[firsts]
        winners = run[firsts[in_run]]  # the run of each best change
        low[at_row[in_run], at_column[in_run]] = pair_candidate[np.flatnonzero(starts)[winners]]
        high[at_row[in_run], at_column[in_run]] = pair_candidate[np.flatnonzero(ends)[winners]]
        return Counterfactuals(falls, best, low, high)
