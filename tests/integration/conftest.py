"""Expensive real components, started once per test session: the Prefect API (test harness).

Every test gets its own MLflow SQLite store in ``tmp_path`` through ``MLFLOW_TRACKING_URI``, and
quick training settings through ``VAE_ANOMALY_*`` variables (read by the flows' settings).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import mlflow
import pytest
from mlflow import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from pipeline.detector import AnomalyDetector
from pipeline.outputs import Manifest
from tests.conftest import ROOT, mixed_frame, quick_settings


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> AnomalyDetector:
    """A quickly trained model of ``mixed_frame``, saved to disk and loaded back as scoring
    loads it (no MLflow); one per test module."""
    fitted = AnomalyDetector(quick_settings(training={"max_epochs": 3})).fit(mixed_frame(150))
    folder = tmp_path_factory.mktemp("model") / "m"
    fitted.save(folder)
    return AnomalyDetector.load(folder)


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


@pytest.fixture(scope="session")
def champion_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store holding one quickly trained version (the champion), trained once per session.

    For tests that only score: they must not register versions into it.
    """
    from flows.train import train_flow
    from pipeline.sample_data import make_table

    root = tmp_path_factory.mktemp("champion")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    train_csv = root / "train.csv"
    make_table(1500, seed=11).to_csv(train_csv, index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("VAE_ANOMALY_TRAINING__MAX_EPOCHS", "6")
        patch.setenv("VAE_ANOMALY_TRAINING__BATCH_SIZE", "128")
        train_flow(data_path=str(train_csv))
    mlflow.set_tracking_uri(None)
    return uri


@pytest.fixture
def scoring_store(
    mlflow_store: str, champion_store: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """``mlflow_store``'s settings (outputs in ``tmp_path / "scored"``), scoring with the
    session's champion instead of training a model per test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", champion_store)
    yield champion_store
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def readme_facts() -> ModuleType:
    """``docs/readme_facts.py``, the script that writes the README's sample numbers."""
    spec = importlib.util.spec_from_file_location("readme_facts", ROOT / "docs" / "readme_facts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def sample_run(
    readme_facts: ModuleType,
    sample_detector: AnomalyDetector,
    tmp_path_factory: pytest.TempPathFactory,
) -> Manifest:
    """The sample batch scored by ``score_file`` with the session's default detector, as
    ``make run`` scores it (the outputs of the README's numbers). For tests that only read it."""
    root = tmp_path_factory.mktemp("sample-run")
    manifest: Manifest = readme_facts.score_sample(sample_detector, root / "scored", "2026-01-01")
    return manifest
