"""Clients other than the CLI: ``mlflow models predict`` on the product's own sample file gives
the product's scores, and fills ``model_version`` from the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from flows.score import score_flow
from tests.conftest import ROOT

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def test_mlflow_models_predict_on_the_sample_batch_equals_vae_anomaly_score(
    scoring_store: str, tmp_path: Path
) -> None:
    # the product's own scores of data/sample/batch.csv, by the champion
    [manifest] = score_flow(
        inputs=[str(ROOT / "data" / "sample" / "batch.csv")], run_date="2026-04-01"
    )
    product = pd.read_parquet(Path(manifest.output_dir) / "scored.parquet")

    # the exact command a user runs, from the repository root (integer columns such as `hour`
    # arrive as int64 from pandas.read_csv; no model_version param is passed)
    predictions = tmp_path / "predictions.json"
    command = [
        MLFLOW, "models", "predict", "-m", "models:/vae-anomaly@champion",
        "-i", "data/sample/batch.csv", "-t", "csv", "--env-manager", "local",
        "-o", str(predictions),
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": scoring_store}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    predicted = pd.DataFrame(json.loads(predictions.read_text())["predictions"])

    assert len(predicted) == len(product) == 5000
    assert predicted["transaction_id"].tolist() == product["transaction_id"].tolist()
    assert np.array_equal(
        predicted["anomaly_score"].to_numpy(), product["anomaly_score"].to_numpy()
    )
    assert np.array_equal(predicted["is_anomaly"].to_numpy(), product["is_anomaly"].to_numpy())
    flagged = product["is_anomaly"].to_numpy() == 1
    assert flagged.any()

    # the same reasons; a value reads as the file's text in the product's outputs of a CSV
    # (1657.0) and as the number in the pyfunc's (1657), as the README says
    def named(reasons: pd.Series) -> list[str]:
        return reasons.str.replace(r"=[^ ]+ \(", "=_ (", regex=True).tolist()

    assert named(predicted.loc[flagged, "reasons"]) == named(product.loc[flagged, "reasons"])
    # the version the alias resolved to, without the caller passing it
    assert set(predicted["model_version"]) == {manifest.model_version} == {"1"}
    assert (predicted["rejected_reason"] == "").all()


def test_the_signature_accepts_the_integer_columns_pandas_reads(scoring_store: str) -> None:
    mlflow.set_tracking_uri(scoring_store)
    model = mlflow.pyfunc.load_model("models:/vae-anomaly@champion")
    batch = pd.read_csv(ROOT / "data" / "sample" / "batch.csv", nrows=50)
    assert batch["hour"].dtype == np.int64 and batch["quantity"].dtype == np.int64
    as_read = model.predict(batch)
    as_floats = model.predict(batch.astype({"hour": "float64", "quantity": "float64"}))
    assert np.array_equal(as_read["anomaly_score"], as_floats["anomaly_score"])
    # a caller's own version label still wins
    labelled = model.predict(batch, params={"model_version": "release-7"})
    assert set(labelled["model_version"]) == {"release-7"}
    # text in a numeric column rejects that row with a reason (not the whole call)
    dirty = batch.astype({"hour": object})
    dirty.loc[3, "hour"] = "noon"
    out = model.predict(dirty)
    assert out["rejected_reason"].iloc[3] == "column 'hour': value 'noon' is not a number"
    assert (out["rejected_reason"].drop(index=3) == "").all()
