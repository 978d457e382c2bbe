"""Detection-quality benchmark on the 33 ADBench classical tabular datasets.

Protocol (ADBench unsupervised setting, Han et al., NeurIPS 2022), for each seed in (1, 2, 3)
and each dataset (``.npz`` with keys ``X``, ``y``; 1 = anomaly):

1. rows < 1,000: resample rows with replacement up to 1,000; rows > 10,000: subsample
   10,000 rows without replacement; both with ``numpy.random.RandomState(seed)``.
2. Stratified 70/30 train/test split: ``train_test_split(stratify=y, random_state=seed)``.
3. ``MinMaxScaler`` fitted on the train part, applied to both parts.
4. Every detector is fitted unsupervised on the (contaminated) train part, labels unseen.
5. The test part is scored (higher = more anomalous): ROC-AUC and PR-AUC
   (``average_precision_score``). Fit and score are timed separately (``time.perf_counter``).

The split is computed once per (dataset, seed) and handed to every detector, so all detectors
see identical data. Per-dataset numbers are the mean over the seeds; the "mean" row is the mean
over the datasets every detector completed (and the total fit / score seconds over them).

Detectors:

- ``vae-anomaly``: this project's :class:`pipeline.detector.AnomalyDetector` with
  ``Settings()`` (its current defaults, environment variables included) plus any
  ``--vae-set section.key=value`` overrides, fitted on a DataFrame with columns ``x0..x{d-1}``.
- ``pyod-vae``: PyOD ``VAE`` with its defaults (``random_state=seed``, ``verbose=0``).
- ``iforest``: PyOD ``IForest`` with its defaults (``random_state=seed``).
- ``ecod``: PyOD ``ECOD`` with its defaults.

Caching (``benchmarks/cache/``): baseline results are appended to ``baselines.jsonl``, keyed by
(dataset, seed, detector, pyod version, detector config, split fingerprint); a rerun only
computes what is missing. ``vae-anomaly`` is always recomputed, but its results are appended to
``vae.jsonl`` keyed by (dataset, seed, effective settings, hash of the ``vae/`` + ``pipeline/``
sources, split fingerprint), and ``--reuse-vae`` takes them from there when all of that matches.
A failing detector does not stop the run: its error is recorded in the results.

Outputs (``--out``, default ``benchmarks/results/``): ``adbench_per_split.csv`` (one row per
dataset x seed x detector), ``adbench_table.csv`` (per dataset, mean over seeds, plus "mean"),
``adbench.md`` (tables, machine, settings and the product targets) and ``adbench.png``.

Rerun from the project root (the data folder is an argument, never hard-coded)::

    .venv/bin/python -m benchmarks.adbench --data ../shared/datasets/adbench
    .venv/bin/python -m benchmarks.adbench --data ../shared/datasets/adbench --quick
    .venv/bin/python -m benchmarks.adbench --data ../shared/datasets/adbench --half A \\
        --vae-set training.beta=0.1 --out /tmp/adbench-beta0.1

Benchmark-only dependencies: ``pip install pyod tqdm`` (the ``bench`` extra).

Modules: ``data`` (datasets, halves, the protocol's splits), ``detectors`` (the four detectors,
``--vae-set`` overrides, cache keys), ``runner`` (fit / score / time every split, the result
cache, ``adbench_per_split.csv``), ``report`` (means, targets, ``adbench.md``, ``adbench.png``)
and ``cli`` (options, the run).
"""
