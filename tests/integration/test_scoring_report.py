"""Every scoring run writes a report, watches drift and feeds the monitoring table and MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient

from flows.score import score_flow
from pipeline.config import Settings
from pipeline.monitoring import MONITORING_FILE
from pipeline.outputs import REPORT_FILE
from pipeline.sample_data import make_table
from pipeline.tracking import scoring_experiment

IMAGE = '<img class="figure" src="data:image/png;base64,'


def _batch(folder: Path, name: str, seed: int, shift: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    table = make_table(1500, seed=seed, anomaly_rate=0.01)
    if shift:  # an export that changed: amounts in cents, one currency for every country
        table["amount"] = table["amount"] * 100
        table["currency"] = "EUR"
    path = folder / f"{name}.csv"
    table.to_csv(path, index=False)
    return path


def test_drift_is_reported_on_a_shifted_batch_only(scoring_store, tmp_path, caplog, monkeypatch):
    # scoring runs of this test only (other tests score with the same session store)
    monkeypatch.setenv("VAE_ANOMALY_TRACKING__EXPERIMENT", f"drift-{tmp_path.name}")
    landing = tmp_path / "landing"
    normal = _batch(landing, "normal", seed=21)
    [quiet] = score_flow(inputs=[str(normal)], run_date="2026-04-01")
    shifted = _batch(landing, "shifted", seed=22, shift=True)
    [loud] = score_flow(inputs=[str(shifted)], run_date="2026-04-02")

    # the manifests say it, naming the shifted columns
    assert quiet.drift.drifted is False and quiet.drift.warning == ""
    assert loud.drift.drifted is True
    assert "amount" in loud.drift.warning and "currency" in loud.drift.warning
    assert loud.drift.psi["amount"] >= 0.25 and quiet.drift.max_psi < 0.1
    assert "data drift" in caplog.text and "shifted.csv" in caplog.text

    # the reports: self-contained HTML with their figures, the banner only when drifted
    for manifest, drifted in ((quiet, False), (loud, True)):
        html = (Path(manifest.output_dir) / REPORT_FILE).read_text()
        assert manifest.outputs[REPORT_FILE]  # checksummed like the other outputs
        assert html.count(IMAGE) >= 2 and "http://" not in html and "https://" not in html
        assert ('id="drift-warning"' in html) is drifted
        for section in ('id="scores"', 'id="flag-rate"', 'id="top-anomalies"', 'id="drift"'):
            assert section in html

    # the monitoring table: one row per scored file, across runs
    root = Path(quiet.output_dir).parents[1]
    table = pd.read_csv(root / MONITORING_FILE)
    assert table["input"].tolist() == ["normal.csv", "shifted.csv"]
    assert table["drifted"].tolist() == [False, True]
    assert table["worst_column"].iloc[1] in {"amount", "currency"}
    assert table["flag_rate"].iloc[0] == quiet.rows_flagged / quiet.rows_scored

    # MLflow: one scoring run per flow run, flag rate and PSI as metrics, the report attached
    mlflow.set_tracking_uri(scoring_store)
    experiment = MlflowClient().get_experiment_by_name(scoring_experiment(Settings()))
    runs = mlflow.search_runs([experiment.experiment_id], order_by=["start_time ASC"])
    assert runs["tags.run_date"].tolist() == ["2026-04-01", "2026-04-02"]
    assert runs["metrics.drifted_files"].tolist() == [0, 1]
    assert runs["metrics.psi.amount"].iloc[1] >= 0.25 > runs["metrics.psi.amount"].iloc[0]
    assert runs["metrics.flag_rate"].iloc[0] == quiet.rows_flagged / quiet.rows_scored
    artifacts = MlflowClient().list_artifacts(runs["run_id"].iloc[1], "outputs/shifted")
    assert {Path(a.path).name for a in artifacts} == {REPORT_FILE, "manifest.json"}
    saved = json.loads((Path(loud.output_dir) / "manifest.json").read_text())
    assert saved["drift"] == loud.drift.model_dump()
