"""Speed benchmark: file-to-file scoring vs the I/O limit, in-memory scoring and training vs PyOD.

Everything is measured side by side in one run, on the same files and arrays:

1. **Data** (cached in ``--work``, default ``/tmp/vae-anomaly-speed``; regenerated only when
   missing, never written into the repository): synthetic tables of ``--rows`` rows (default 1M
   and 10M) with ``record_id`` (text id), ``num_00..num_19`` (float64, correlated gaussians and
   lognormals, 2 % missing per column) and ``cat_0..cat_4`` (text, 3-30 levels, tied to the same
   latent factors), 0.5 % planted anomalies; generated chunk by chunk (250k rows, one Parquet row
   group each), so the 10M table never holds more than one chunk in memory. Chunks are seeded by
   their first row, so a smaller table is the head of a larger one. A CSV of the smallest table,
   and ADBench's ``11_donors`` (``--data``; 619,326 rows x 10 features) as Parquet
   (``record_id`` + ``f00..f09``).
2. **Models**: one ``AnomalyDetector(Settings())`` (the project's defaults) per table kind,
   trained on a random sample of ``--train-rows`` rows (default 50,000) of the smallest synthetic
   table / of donors, as a user would, saved with ``save`` and loaded with ``load``.
3. **File-to-file** (per file, ``--repeats`` times, each in a fresh subprocess that reports its
   peak RSS, ``VmHWM``; ``ru_maxrss`` from ``os.wait4`` is only kept as a cross-check, since Linux
   carries the parent's peak over subprocess' vfork + exec into it):
   ``pipeline.batch.score_file(detector, ref, input, output_root, run_date, force=True)`` timed
   end to end with the detector already loaded (load time reported separately); then the
   **I/O limit** on the same file: pyarrow alone reads the input batch by batch and writes (and
   fsyncs, as the project does) a Parquet file with the same rows and the same schema as the
   project's ``scored.parquet`` (read from the project's output), filled with dummy values.
   The page cache is warmed with one read of the file first, so both start warm.
4. **In-memory scoring**: a separate table of ``--inmem-rows`` (default 1M) rows x 10 correlated
   gaussian features, no missing values. The project's detector and PyOD's ``VAE()`` (defaults,
   ``verbose=0``) are fitted on the same ``--train-rows`` sample of it; then
   ``detector.score_samples(frame)`` (the public API, from a DataFrame) and
   ``VAE.decision_function(X)`` (the same values as a float64 array) are timed. PyOD is timed on
   200k rows when the full table would take it over ``PYOD_SCORE_BUDGET_S`` per call (reported).
   The project's raw path (``preprocessor_.transform`` + ``vae.score_arrays``) is shown too.
5. **Training throughput**: rows per second per epoch of the training loop, from the fits of 4:
   project ``n_train_rows_ * len(history_) / train_seconds_`` (its loop, validation included),
   PyOD ``rows * epoch_num / seconds`` of its ``train`` loop (timed by wrapping the method);
   the whole ``fit`` call is reported as well.
6. **Peak RSS** of the project's file-to-file scoring of the smallest and the largest synthetic
   Parquet tables, and the ratio.

Medians over ``--repeats``; the ratios are printed against the product targets with PASS / MISS.
For a target that is missed (or with ``--profile``), cProfile's top entries of the part
concerned go to ``<out>/speed_profile.txt``. Results: ``<out>/speed.md`` and ``<out>/speed.json``.

Run from the project root::

    .venv/bin/python -m benchmarks.speed --data ../shared/datasets/adbench
    .venv/bin/python -m benchmarks.speed --data ../shared/datasets/adbench --quick

Benchmark-only dependencies: ``pip install pyod tqdm`` (the ``bench`` extra).

Modules: ``data`` (synthetic tables, donors, samples, the in-memory table), ``harness`` (the
subprocesses: ``--child score|io``, peak RSS, wall time), ``measurements`` (what a run
collects), ``file_to_file`` and ``in_memory`` (the two ``--parts``), ``report`` (targets,
``speed.md``, ``speed.json``, profiles) and ``cli`` (options, the run).
"""
