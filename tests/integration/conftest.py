"""Expensive real components, started once per test session: the Prefect API (test harness).

Every test gets its own MLflow SQLite store in ``tmp_path`` through ``MLFLOW_TRACKING_URI``, and
quick training settings through ``VAE_ANOMALY_*`` variables (read by the flows' settings).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("VAE_ANOMALY_TRAINING__MAX_EPOCHS", "12")
    monkeypatch.setenv("VAE_ANOMALY_TRAINING__BATCH_SIZE", "128")
    monkeypatch.setenv("VAE_ANOMALY_SCORING__OUTPUT_ROOT", str(tmp_path / "scored"))
    yield uri
    mlflow.set_tracking_uri(None)  # do not leak the store into other tests


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """Alias -> version as strings (the SQLite store gives ints, the REST API strings)."""
    return {
        alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()
    }
