"""The real flows against a real MLflow SQLite store: train, register, alias, score, reload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.score import score_flow
from flows.train import train_flow
from pipeline.config import Settings
from pipeline.outputs import MANIFEST_FILE
from pipeline.registry import RegistryError, load_detector, resolve_alias
from pipeline.scoring import SCORE_COLUMNS
from pipeline.tracking import TRAINING_REPORT
from tests.integration.conftest import aliases


def test_train_registers_versions_and_aliases(mlflow_store, small_train_csv):
    first = train_flow(data_path=str(small_train_csv))
    second = train_flow(data_path=str(small_train_csv), overrides={"training": {"seed": 7}})
    client = MlflowClient(mlflow_store)
    assert (first["model_version"], second["model_version"]) == ("1", "2")
    # every new version gets challenger; only the very first gets champion
    assert aliases(client, "vae-anomaly") == {"champion": "1", "challenger": "2"}
    version = client.get_model_version("vae-anomaly", "2")
    assert float(version.tags["threshold"]) == pytest.approx(second["threshold"], rel=1e-5)
    assert len(version.tags["training_data_digest"]) == 64
    run = client.get_run(first["model_run_id"])
    assert run.data.params["training.max_epochs"] == "12"
    assert run.data.metrics["threshold"] == pytest.approx(first["threshold"])
    history = client.get_metric_history(first["model_run_id"], "val_loss")
    assert len(history) == first["epochs"]
    assert run.inputs.dataset_inputs[0].dataset.digest
    # the training report: one self-contained HTML artifact with its figures
    report = mlflow.artifacts.load_text(f"runs:/{first['model_run_id']}/{TRAINING_REPORT}")
    assert report.count('src="data:image/png;base64,') >= 4 and "https://" not in report
    assert "latent" in report.lower()


def test_score_flow_by_alias_writes_outputs_and_skips_reruns(
    mlflow_store, small_train_csv, small_batch_csv, tmp_path
):
    train_flow(data_path=str(small_train_csv))
    [manifest] = score_flow(inputs=[str(small_batch_csv)], run_date="2026-01-01")
    out_dir = Path(manifest.output_dir)
    assert out_dir == tmp_path / "scored" / "2026-01-01" / "batch"
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "flagged.csv",
        "manifest.json",
        "rejected.csv",
        "report.html",
        "scored.parquet",
    ]
    saved = json.loads((out_dir / MANIFEST_FILE).read_text())
    assert saved["rows_read"] == saved["rows_scored"] + saved["rows_rejected"] == 400
    assert saved["model_version"] == "1" and saved["model_name"] == "vae-anomaly"
    scored = pd.read_parquet(out_dir / "scored.parquet")
    assert list(scored.columns) == ["transaction_id", *SCORE_COLUMNS]
    assert (scored["model_version"] == "1").all()
    flagged = pd.read_csv(out_dir / "flagged.csv")
    assert len(flagged) == saved["rows_flagged"] == int(scored["is_anomaly"].sum())

    # same input, same model version, a later date: skipped, nothing duplicated
    [again] = score_flow(inputs=[str(small_batch_csv)], run_date="2026-01-02")
    assert again.skipped is True
    assert not (tmp_path / "scored" / "2026-01-02").exists()
    [forced] = score_flow(inputs=[str(small_batch_csv)], run_date="2026-01-02", force=True)
    assert forced.skipped is False
    pd.testing.assert_frame_equal(
        pd.read_parquet(Path(forced.output_dir) / "scored.parquet"), scored
    )


def test_model_loads_by_alias_without_pickle_and_scores_the_same(
    mlflow_store, small_train_csv, small_batch_csv, monkeypatch
):
    train_flow(data_path=str(small_train_csv))
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    settings = Settings()
    ref = resolve_alias(settings, "champion")
    detector = load_detector(ref)
    batch = pd.read_csv(small_batch_csv)
    pyfunc = mlflow.pyfunc.load_model("models:/vae-anomaly@champion")
    model_input = batch.drop(columns=["label", "anomaly_kind", "anomaly_column"])
    model_input = model_input.astype({c: "float64" for c in ("hour", "quantity")})
    predicted = pyfunc.predict(model_input, params={"model_version": ref.version})
    expected = detector.score(batch, model_version=ref.version).scored
    assert len(predicted) == len(batch)
    np.testing.assert_allclose(predicted["anomaly_score"], expected["anomaly_score"], rtol=1e-6)
    assert (predicted["model_version"] == "1").all()
    assert (predicted["rejected_reason"] == "").all()
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    # -1 is the model's threshold; another negative value is a cut-off, not ignored
    lowest = float(expected["anomaly_score"].min())
    assert lowest - 1.0 < 0  # a negative cut-off: what was ignored before
    below_all = pyfunc.predict(model_input, params={"threshold": lowest - 1.0})
    assert below_all["is_anomaly"].all() and (below_all["threshold"] == lowest - 1.0).all()
    model_own = pyfunc.predict(model_input, params={"threshold": -1.0})
    assert (model_own["threshold"] == detector.threshold_).all()


def test_missing_alias_is_a_clear_error(mlflow_store, small_train_csv, small_batch_csv):
    with pytest.raises(RegistryError, match="models:/vae-anomaly@champion"):
        resolve_alias(Settings(), "champion")
    train_flow(data_path=str(small_train_csv))
    with pytest.raises(RegistryError, match="@nightly"):
        score_flow(inputs=[str(small_batch_csv)], alias="nightly")


def test_a_logged_artifact_changed_by_one_byte_is_refused_at_load(
    mlflow_store, small_train_csv, tmp_path
):
    train_flow(data_path=str(small_train_csv))
    logged = list((tmp_path / "mlruns" / "artifacts").rglob("detector/weights.pt"))
    assert len(logged) == 1, logged
    data = bytearray(logged[0].read_bytes())
    data[len(data) // 3] ^= 0x01
    logged[0].write_bytes(bytes(data))
    with pytest.raises(Exception, match=r"weights\.pt.*does not match its recorded sha256"):
        mlflow.pyfunc.load_model("models:/vae-anomaly@champion")


def test_pyfunc_model_imports_without_mlflow_type_hint_warning() -> None:
    # MLflow checks a PythonModel's predict signature when the class is defined, and without
    # a type hint on model_input it prints a warning on every training and loading run
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", "import pipeline.pyfunc_model"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Add type hints" not in done.stderr, done.stderr[-2000:]
