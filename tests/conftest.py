"""Shared fixtures: small synthetic mixed tables and quick settings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
ROOT = Path(__file__).resolve().parents[1]

from pipeline.config import Settings  # noqa: E402
from pipeline.detector import AnomalyDetector  # noqa: E402
from pipeline.sample_data import make_table  # noqa: E402


def quick_settings(**overrides: dict) -> Settings:
    """Settings that train in well under a second on tiny tables."""
    base = {"training": {"max_epochs": 15, "patience": 5, "batch_size": 64}}
    for section, values in overrides.items():
        base.setdefault(section, {}).update(values)
    return Settings().with_overrides(**base)


def mixed_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A small mixed-type table with missing values and an id column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "record_id": [f"R{i:05d}" for i in range(n)],
            "x": x,
            "y": 2 * x + rng.normal(scale=0.1, size=n),
            "count": rng.poisson(3, size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n),
            "size": rng.choice(["S", "M", "L"], size=n, p=[0.5, 0.3, 0.2]),
        }
    )
    frame.loc[rng.random(n) < 0.05, "x"] = np.nan
    frame.loc[rng.random(n) < 0.05, "colour"] = np.nan
    return frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return mixed_frame()


@pytest.fixture(scope="session")
def sample_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The committed sample data (train, batch)."""
    return (
        pd.read_csv(ROOT / "data" / "sample" / "train.csv"),
        pd.read_csv(ROOT / "data" / "sample" / "batch.csv"),
    )


@pytest.fixture(scope="session")
def sample_detector(sample_tables: tuple[pd.DataFrame, pd.DataFrame]) -> AnomalyDetector:
    """The default detector (``Settings()``) fitted on the sample train table, once per session.

    For tests that only score with it: they must not change it.
    """
    return AnomalyDetector(Settings()).fit(sample_tables[0])


@pytest.fixture
def small_train_csv(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    make_table(1500, seed=11).to_csv(path, index=False)
    return path


@pytest.fixture
def small_batch_csv(tmp_path: Path) -> Path:
    path = tmp_path / "batch.csv"
    make_table(400, seed=12, anomaly_rate=0.05).to_csv(path, index=False)
    return path
