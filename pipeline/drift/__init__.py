"""Per-column drift of a scoring batch against the training data, computed in a streaming way.

A model learns what normal looked like in training; when the data it scores no longer looks
like that (a new currency, prices in cents instead of dollars, a column suddenly empty), its
scores stop meaning what they meant. This module measures, per model column, how far a batch
has moved from the training data, so that a scoring run can say so next to its flags.

Usage (the batch arrives in chunks; memory stays fixed whatever the file size)::

    reference = DriftReference.fit(detector.reference_frame_, detector.schema_)
    accumulator = DriftAccumulator(reference)
    for chunk in chunks:                 # model columns; numeric already float
        accumulator.update(chunk)
    report = accumulator.result()        # DriftReport
    report.drifted, report.warning, report.to_dict()

``DriftReference`` is small and JSON-safe (``to_dict`` / ``from_dict``: bin edges, category
names and integer counts, no pickle), so it can be saved next to a model and loaded with it.
Accumulators of separate partitions can be combined with :meth:`DriftAccumulator.merge`;
counts are integers, so chunked, merged and whole-batch results are exactly equal.

Bins. Numeric column: cut points at the training deciles of the non-missing values (actual data
values, duplicates removed, so a column with few distinct values gets fewer bins); the outer
bins are open-ended (below the first cut, at or above the last), every value bin holds
training rows, and missing values have a bin of their own. Categorical column: the most
frequent training categories (up to ``max_categories``, spelled with
:func:`pipeline.preprocess.categorical_strings` so pandas and pyarrow readings agree), one
"other" bin for the rest and for categories never seen in training, and a missing bin.

Measures, per column:

- ``psi``: population stability index over all bins (missing included),
  ``sum((b - r) * ln(b / r))`` with ``r`` / ``b`` the training / batch shares of each bin,
  each floored at ``EPSILON`` (1e-4) so an empty bin gives a large but finite term;
- ``ks`` (numeric columns only): Kolmogorov-Smirnov statistic between the *binned* CDFs of the
  non-missing values, i.e. the largest absolute difference of the cumulative shares at the bin
  edges (a lower bound of the exact KS statistic, exact at the edges);
- the missing rate in training and in the batch (text that is not a number and inf count as
  missing in numeric columns, as in training; the scoring run feeds only the rows it scored,
  so rows rejected for such values are not part of the batch's drift);
- ``status``: ``drift`` when PSI >= 0.25, ``warn`` when PSI >= 0.1, else ``ok``.

No false alarms on small batches. PSI of two samples from the same distribution is positive
by chance, and grows fast as the batch shrinks: with 50 rows a decile bin is often empty, and
an empty bin alone adds ~0.2-0.7 through the epsilon floor. So (1) a batch with fewer than
``min_rows`` (default 50) rows never gets ``warn`` or ``drift`` (every column is ``ok`` and the
report's ``note`` says why), and (2) in larger batches a column is only raised above ``ok``
when its change is also statistically real: Pearson's chi-square test of homogeneity of the
training and batch bin counts must reject "same distribution" at the 0.1% level
(``significant``). PSI says how large a change is; the test says it is not sampling noise.
"""

from __future__ import annotations

from pipeline.drift.measure import (
    EPSILON,
    MIN_ROWS,
    PSI_DRIFT,
    PSI_WARN,
    ColumnDrift,
    DriftAccumulator,
    DriftReport,
)
from pipeline.drift.reference import (
    MISSING_BIN,
    OTHER_BIN,
    ColumnReference,
    DriftReference,
    numeric_values,
)

__all__ = [
    "EPSILON",
    "MIN_ROWS",
    "MISSING_BIN",
    "OTHER_BIN",
    "PSI_DRIFT",
    "PSI_WARN",
    "ColumnDrift",
    "ColumnReference",
    "DriftAccumulator",
    "DriftReference",
    "DriftReport",
    "numeric_values",
]
