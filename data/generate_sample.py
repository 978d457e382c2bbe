"""Generate the sample card-transaction tables in ``data/sample/``.

The generator is :mod:`pipeline.sample_data` (shipped with the package: an installed
``vae-anomaly demo`` writes the same files); this script is its command line.

Usage::

    python data/generate_sample.py            # writes data/sample/train.csv and batch.csv
    python data/generate_sample.py --rows 5000 --seed 3 --out some.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.sample_data import (
    SAMPLE_BATCH_ANOMALY_RATE,
    SAMPLE_BATCH_ROWS,
    SAMPLE_BATCH_SEED,
    SAMPLE_TRAIN_ROWS,
    SAMPLE_TRAIN_SEED,
    make_table,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.out is not None:
        make_table(args.rows or 5000, args.seed or 0).to_csv(args.out, index=False)
        return
    here = Path(__file__).resolve().parent / "sample"
    here.mkdir(parents=True, exist_ok=True)
    make_table(args.rows or SAMPLE_TRAIN_ROWS, seed=args.seed or SAMPLE_TRAIN_SEED).to_csv(
        here / "train.csv", index=False
    )
    make_table(
        SAMPLE_BATCH_ROWS, seed=SAMPLE_BATCH_SEED, anomaly_rate=SAMPLE_BATCH_ANOMALY_RATE
    ).to_csv(here / "batch.csv", index=False)


if __name__ == "__main__":
    main()
