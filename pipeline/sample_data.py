"""The sample card-transaction tables: ``data/sample/train.csv`` and ``batch.csv``.

The table mixes numeric and categorical columns, has missing values, an id column and a few
percent of planted anomalies of several kinds. Two kinds are invisible to any single-column
range check: every value is normal on its own, only the combination is wrong.

Label columns (ignored by training and scoring, used by tests and reports):
- ``label``: 1 for a planted anomaly, else 0;
- ``anomaly_kind``: the kind planted (empty for normal rows);
- ``anomaly_column``: the column(s) altered, joined by ``+`` where more than one was
  (``extreme_price`` rescales ``unit_price`` and, to keep it consistent, ``amount``).

Shipped with the package so that an installed ``vae-anomaly demo`` writes the same files as
the repository's ``data/generate_sample.py`` (same generator, same seeds, same bytes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COUNTRY_CURRENCY = {
    "US": "USD",
    "GB": "GBP",
    "DE": "EUR",
    "FR": "EUR",
    "JP": "JPY",
    "CA": "CAD",
    "BR": "BRL",
    "IN": "INR",
}
COUNTRY_WEIGHTS = [0.40, 0.12, 0.10, 0.08, 0.08, 0.08, 0.07, 0.07]
# merchant category -> (share, median unit price, log-sd, mean quantity, busy hours centre)
MERCHANTS = {
    "grocery": (0.28, 6.0, 0.45, 4.0, 17),
    "fuel": (0.14, 45.0, 0.30, 1.0, 8),
    "restaurants": (0.18, 22.0, 0.40, 2.0, 20),
    "electronics": (0.07, 180.0, 0.55, 1.0, 15),
    "clothing": (0.11, 35.0, 0.45, 2.0, 14),
    "pharmacy": (0.10, 12.0, 0.40, 2.0, 11),
    "travel": (0.05, 260.0, 0.50, 1.0, 10),
    "online_services": (0.07, 15.0, 0.35, 1.0, 21),
}
CHANNELS = {"pos": 0.55, "online": 0.30, "mobile": 0.15}
ANOMALY_KINDS = ("extreme_price", "distance_spike", "currency_mismatch", "amount_mismatch")
COMBINATION_KINDS = ("currency_mismatch", "amount_mismatch")


def _normal_rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    countries = rng.choice(list(COUNTRY_CURRENCY), size=n, p=COUNTRY_WEIGHTS)
    names = list(MERCHANTS)
    shares = np.array([MERCHANTS[m][0] for m in names])
    merchants = rng.choice(names, size=n, p=shares / shares.sum())
    median_price = np.array([MERCHANTS[m][1] for m in merchants])
    log_sd = np.array([MERCHANTS[m][2] for m in merchants])
    mean_qty = np.array([MERCHANTS[m][3] for m in merchants])
    busy_hour = np.array([MERCHANTS[m][4] for m in merchants])

    unit_price = np.round(median_price * np.exp(rng.normal(0.0, log_sd)), 2)
    quantity = 1 + rng.poisson(mean_qty - 1.0)
    amount = np.round(quantity * unit_price, 2)
    hour = np.mod(np.round(rng.normal(busy_hour, 2.5)), 24).astype(int)
    channel = rng.choice(list(CHANNELS), size=n, p=list(CHANNELS.values()))
    distance = np.round(rng.gamma(2.0, 4.0, size=n) * np.where(channel == "pos", 1.0, 3.0), 1)
    age = np.clip(np.round(rng.normal(42, 13, size=n)), 18, 90)

    frame = pd.DataFrame(
        {
            "country": countries,
            "currency": [COUNTRY_CURRENCY[c] for c in countries],
            "merchant_category": merchants,
            "channel": channel,
            "hour": hour,
            "quantity": quantity,
            "unit_price": unit_price,
            "amount": amount,
            "distance_km": distance,
            "customer_age": age,
        }
    )
    return frame


def _plant(rng: np.random.Generator, frame: pd.DataFrame, kind: str, rows: np.ndarray) -> None:
    """Alter ``rows`` of ``frame`` in place to make anomalies of ``kind``."""
    idx = frame.index[rows]
    if kind == "extreme_price":
        # a unit price 15-40x the usual one for the merchant (amount stays consistent)
        factor = rng.uniform(15.0, 40.0, size=len(idx))
        frame.loc[idx, "unit_price"] = np.round(frame.loc[idx, "unit_price"] * factor, 2)
        frame.loc[idx, "amount"] = np.round(
            frame.loc[idx, "quantity"] * frame.loc[idx, "unit_price"], 2
        )
        column = "unit_price+amount"
    elif kind == "distance_spike":
        frame.loc[idx, "distance_km"] = np.round(rng.uniform(800.0, 9000.0, size=len(idx)), 1)
        column = "distance_km"
    elif kind == "currency_mismatch":
        # a currency that exists in the data, but not the one of the row's country
        current = frame.loc[idx, "currency"].to_numpy()
        options = sorted(set(COUNTRY_CURRENCY.values()))
        frame.loc[idx, "currency"] = [
            rng.choice([c for c in options if c != cur]) for cur in current
        ]
        column = "currency"
    elif kind == "amount_mismatch":
        # amount is not quantity x unit price, yet within the normal range of amounts
        factor = rng.choice([0.2, 0.25, 4.0, 5.0], size=len(idx))
        frame.loc[idx, "amount"] = np.round(frame.loc[idx, "amount"] * factor, 2)
        column = "amount"
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}")
    frame.loc[idx, "label"] = 1
    frame.loc[idx, "anomaly_kind"] = kind
    frame.loc[idx, "anomaly_column"] = column


def make_table(n_rows: int, seed: int, anomaly_rate: float = 0.03) -> pd.DataFrame:
    """Return ``n_rows`` transactions with about ``anomaly_rate`` planted anomalies."""
    rng = np.random.default_rng(seed)
    frame = _normal_rows(rng, n_rows)
    frame["label"] = 0
    frame["anomaly_kind"] = ""
    frame["anomaly_column"] = ""

    n_anomalies = round(n_rows * anomaly_rate)
    chosen = rng.choice(n_rows, size=n_anomalies, replace=False)
    for kind, rows in zip(ANOMALY_KINDS, np.array_split(chosen, len(ANOMALY_KINDS)), strict=True):
        _plant(rng, frame, kind, rows)

    # missing values, as real exports have them (never in the planted column of an anomaly)
    for column, rate in (("customer_age", 0.05), ("distance_km", 0.03), ("channel", 0.01)):
        missing = (rng.random(n_rows) < rate) & (frame["anomaly_column"] != column).to_numpy()
        frame.loc[missing, column] = np.nan

    frame.insert(0, "transaction_id", [f"T{seed:02d}{i:07d}" for i in range(n_rows)])
    return frame


SAMPLE_TRAIN_ROWS, SAMPLE_TRAIN_SEED = 20000, 1
SAMPLE_BATCH_ROWS, SAMPLE_BATCH_SEED, SAMPLE_BATCH_ANOMALY_RATE = 5000, 2, 0.04


def write_sample(folder: Path, overwrite: bool = False) -> list[Path]:
    """Write ``train.csv`` and ``batch.csv`` into ``folder``; existing files are kept unless
    ``overwrite``. Returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "train.csv": lambda: make_table(SAMPLE_TRAIN_ROWS, seed=SAMPLE_TRAIN_SEED),
        "batch.csv": lambda: make_table(
            SAMPLE_BATCH_ROWS, seed=SAMPLE_BATCH_SEED, anomaly_rate=SAMPLE_BATCH_ANOMALY_RATE
        ),
    }
    written = []
    for name, table in tables.items():
        path = folder / name
        if path.exists() and not overwrite:
            continue
        table().to_csv(path, index=False)
        written.append(path)
    return written
