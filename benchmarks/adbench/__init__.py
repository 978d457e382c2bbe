"""Detection-quality benchmark on two suites: the 33 ADBench classical tabular datasets
(``--data``, numeric ``.npz``) and 7 real categorical tables (``--categorical``, ``.csv`` of
text columns plus ``label``); either, or both in one run.

Protocol (ADBench unsupervised setting, Han et al., NeurIPS 2022), for each seed in (1, 2, 3)
and each dataset (1 = anomaly):

1. rows < 1,000: resample rows with replacement up to 1,000; rows > 10,000: subsample
   10,000 rows without replacement; both with ``numpy.random.RandomState(seed)``.
2. Stratified 70/30 train/test split: ``train_test_split(stratify=y, random_state=seed)``.
3. ADBench: ``MinMaxScaler`` fitted on the train part, applied to both parts. Categorical:
   every column read as text (``pd.read_csv(dtype=str, keep_default_na=False)``, an empty
   cell is missing), ``label`` split off; no scaling.
4. Every detector is fitted unsupervised on the (contaminated) train part, labels unseen.
5. The test part is scored (higher = more anomalous): ROC-AUC and PR-AUC
   (``average_precision_score``). Fit and score are timed separately (``time.perf_counter``).

The split is computed once per (dataset, seed) and handed to every detector, so all detectors
see identical data. Per-dataset numbers are the mean over the seeds (and vae-anomaly's model
seeds); the "mean" row is the mean over the datasets every detector completed (and the total
fit / score seconds over them).

Detectors:

- ``vae-anomaly``: this project's :class:`pipeline.detector.AnomalyDetector` with
  ``Settings()`` (its current defaults, environment variables included) plus any
  ``--vae-set section.key=value`` overrides, once per ``--model-seeds`` seed
  (``training.seed``; default: the settings' own). ADBench: fitted on a DataFrame with columns
  ``x0..x{d-1}``. Categorical: on the DataFrame of text columns, every column declared
  categorical (``data.categorical_columns``).
- ``pyod-vae``: PyOD ``VAE`` with its defaults (``random_state=seed``, ``verbose=0``).
- ``iforest``: PyOD ``IForest`` with its defaults (``random_state=seed``).
- ``ecod``: PyOD ``ECOD`` with its defaults.
- ``avf`` (categorical only): attribute value frequency (Koufakou et al. 2007), minus the mean
  over columns of the log frequency of the row's value in the train part (unseen: 1/(n+1);
  missing a value of its own).

On the categorical suite the PyOD baselines get a one-hot encoding fitted on the train part
(``OneHotEncoder(handle_unknown="ignore")``, dense, missing a category of its own), prepared
untimed like vae-anomaly's DataFrame.

Caching (``benchmarks/cache/``): baseline results are appended to ``baselines.jsonl``, keyed by
(dataset, seed, detector, pyod version, detector config, split fingerprint); the categorical
configs name the encoding, so the suites never share an entry; a rerun only computes what is
missing. ``vae-anomaly`` is always recomputed, but its results are appended to ``vae.jsonl``
keyed by (dataset, seed, effective settings with the model seed, hash of the ``vae/`` +
``pipeline/`` sources, split fingerprint), and ``--reuse-vae`` takes them from there when all of
that matches. A failing detector does not stop the run: its error is recorded in the results.

Outputs (``--out``, default ``benchmarks/results/``), per suite (``adbench``, ``categorical``):
``<suite>_per_split.csv`` (one row per dataset x seed x detector, x model seed for vae-anomaly),
``<suite>_table.csv`` (per dataset, mean over seeds, plus "mean"), ``<suite>.md`` (tables,
machine, settings, "vae-anomaly by model seed" with ``--model-seeds``, the suite's product
targets) and ``<suite>.png``; with both suites, ``quality.md`` (the mean tables side by side,
vae-anomaly vs iforest wins / losses on ROC-AUC over every dataset, every target).

Rerun from the project root (the data folders are arguments, never hard-coded)::

    .venv/bin/python -m benchmarks.adbench --data ../shared/datasets/adbench \\
        --categorical ../shared/datasets/categorical
    .venv/bin/python -m benchmarks.adbench --data ../shared/datasets/adbench --quick
    .venv/bin/python -m benchmarks.adbench --categorical ../shared/datasets/categorical \\
        --model-seeds 42 43 44 --out /tmp/categorical-seeds
    .venv/bin/python -m benchmarks.adbench --data ../shared/datasets/adbench --half A \\
        --vae-set training.beta=0.1 --out /tmp/adbench-beta0.1

Benchmark-only dependencies: ``pip install pyod tqdm`` (the ``bench`` extra).

Modules: ``data`` (datasets of both suites, halves, the protocol's splits), ``detectors`` (the
detectors, the one-hot preparation, ``--vae-set`` overrides, model seeds, cache keys),
``suites`` (what differs between the two suites: data, detectors, targets, report texts),
``runner`` (fit / score / time every split, the result cache, ``<suite>_per_split.csv``),
``report`` (means, targets, ``<suite>.md``, ``<suite>.png``, ``quality.md``) and ``cli``
(options, the run).
"""
