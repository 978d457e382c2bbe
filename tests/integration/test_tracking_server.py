"""Train, register, promote and load by alias against a real ``mlflow server`` over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.score import score_flow
from flows.train import train_flow
from pipeline.config import Settings
from pipeline.promotion import promote
from pipeline.registry import RegistryError, resolve_alias
from tests.integration.conftest import aliases


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An ``mlflow server`` on loopback with a SQLite backend, started once per session."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (root / "server.log").open("w")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def server_store(
    tracking_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    name = f"vae-anomaly-{tmp_path.name}"  # each test its own registered model on the shared server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    monkeypatch.setenv("VAE_ANOMALY_TRACKING__REGISTERED_MODEL", name)
    monkeypatch.setenv("VAE_ANOMALY_TRACKING__EXPERIMENT", name)
    monkeypatch.setenv("VAE_ANOMALY_TRAINING__MAX_EPOCHS", "10")
    monkeypatch.setenv("VAE_ANOMALY_SCORING__OUTPUT_ROOT", str(tmp_path / "scored"))
    yield name
    mlflow.set_tracking_uri(None)


def test_train_register_promote_and_load_over_http(
    server_store, tracking_server, small_train_csv, small_batch_csv, monkeypatch
):
    name = server_store
    first = train_flow(data_path=str(small_train_csv))
    second = train_flow(data_path=str(small_train_csv))
    assert (first["model_version"], second["model_version"]) == ("1", "2")
    client = MlflowClient(tracking_server)
    assert aliases(client, name) == {"champion": "1", "challenger": "2"}
    # artifacts travel through the server (proxied), not through a local path
    assert client.get_run(first["model_run_id"]).info.artifact_uri.startswith("mlflow-artifacts:")

    promote(Settings(), "2")
    assert aliases(client, name)["champion"] == "2"

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    batch = pd.read_csv(small_batch_csv).astype({"hour": "float64", "quantity": "float64"})
    predicted = model.predict(batch.drop(columns=["label", "anomaly_kind", "anomaly_column"]))
    [manifest] = score_flow(inputs=[str(small_batch_csv)], run_date="2026-03-01")
    assert manifest.model_version == "2"
    scored = pd.read_parquet(Path(manifest.output_dir) / "scored.parquet")
    np.testing.assert_allclose(predicted["anomaly_score"], scored["anomaly_score"], rtol=1e-6)


def test_unreachable_server_fails_clearly_after_bounded_retries(monkeypatch):
    port = _free_port()  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:s3cret@127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    # one time budget for the whole resolve (60 s by default), retries included
    monkeypatch.setenv("VAE_ANOMALY_TRACKING__RESOLVE_TIMEOUT_SECONDS", "5")
    started = time.monotonic()
    with pytest.raises(RegistryError) as error:
        resolve_alias(Settings(), "champion")
    assert time.monotonic() - started < 5 + 3  # the budget, and at most one attempt's overrun
    message = str(error.value)
    assert "within the 5 s budget" in message
    assert f"127.0.0.1:{port}" in message and "models:/vae-anomaly@champion" in message
    assert "s3cret" not in message  # credentials never leak into errors
    mlflow.set_tracking_uri(None)
