"""The promotion gate without labels: an undertrained challenger is refused, a retrained one
of the same quality passes; no version becomes champion by itself without passing the gate's
sanity checks; every decision is kept in the promotion history."""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from flows.cli import app
from flows.train import train_flow
from pipeline.config import Settings
from pipeline.detector import AnomalyDetector
from pipeline.promotion import gate
from pipeline.promotion_history import promotion_history
from pipeline.sample_data import make_table
from tests.integration.conftest import aliases

runner = CliRunner()
LABELS = ["label", "anomaly_kind", "anomaly_column"]


def test_an_undertrained_challenger_is_refused_and_a_retrained_one_passes_without_labels(
    sample_detector: AnomalyDetector, sample_tables: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    # given the default champion of the sample and 1,000 unlabelled rows of the sample batch
    train, batch = sample_tables
    reference = batch.sample(1000, random_state=0).drop(columns=LABELS).reset_index(drop=True)
    undertrained = AnomalyDetector(Settings().with_overrides(training={"max_epochs": 5})).fit(train)
    retrained = AnomalyDetector(Settings().with_overrides(training={"seed": 43})).fit(train)

    # when each is gated against the champion on the same rows, without labels
    refused = gate(undertrained, reference, 0.01, sample_detector)
    passed = gate(retrained, reference, 0.01, sample_detector)

    # then only the undertrained one fails, on the likelihood of the reference rows
    assert not refused.passed
    assert any(
        "less likely under this version than under the champion" in f for f in refused.failures
    )
    assert refused.metrics["nll_excess"] > refused.metrics["nll_excess_limit"]
    assert passed.metrics["nll_excess"] < passed.metrics["nll_excess_limit"]
    assert passed.passed, passed.failures
    # the truth, with the labels the gate did not see: the undertrained model ranks worse
    labels = batch.loc[batch.sample(1000, random_state=0).index, "label"].to_numpy()
    auc = {
        name: roc_auc_score(labels, model.score_samples(reference))
        for name, model in (("under", undertrained), ("re", retrained), ("champ", sample_detector))
    }
    assert auc["under"] < auc["champ"] - 0.05 and abs(auc["re"] - auc["champ"]) < 0.02


def test_a_version_that_fails_the_sanity_checks_never_becomes_champion(
    mlflow_store, tmp_path, small_train_csv
):
    # 120 rows: a validation split of 24 rows cannot hold a flag rate near 1%
    tiny = tmp_path / "tiny.csv"
    make_table(120, seed=4).to_csv(tiny, index=False)
    trained = runner.invoke(app, ["train", str(tiny), "--no-progress"])
    assert trained.exit_code == 0, trained.output
    client = MlflowClient(mlflow_store)
    assert aliases(client, "vae-anomaly") == {"challenger": "1"}  # registered, not champion
    scored = runner.invoke(app, ["score", str(small_train_csv)])
    assert scored.exit_code == 1 and "cannot resolve models:/vae-anomaly@champion" in scored.output

    # a sane version becomes champion (there is none yet)
    train_flow(data_path=str(small_train_csv))
    assert aliases(client, "vae-anomaly") == {"champion": "2", "challenger": "2"}

    # every decision is kept, oldest first, with who decided and the gate's figures
    forced = runner.invoke(app, ["promote", "1", "--force", "--reason", "tiny pilot, by hand"])
    assert forced.exit_code == 0, forced.output
    history = promotion_history(Settings())
    assert history["decision"].tolist() == [
        "not champion (first version)",
        "champion (first version)",
        "forced",
    ]
    assert history["model_version"].tolist() == ["1", "2", "1"]
    assert history["decided_by"].str.len().gt(0).all()
    assert "flag rate" in history["gate_failures"].iloc[0]
    assert history["reason"].iloc[2] == "tiny pilot, by hand"
    assert history["previous_champion"].iloc[2] == "2"
    assert np.isfinite(history["gate_flag_rate"]).all()
    shown = runner.invoke(app, ["history"])
    assert shown.exit_code == 0 and "forced" in shown.output and "tiny pilot" in shown.output


def test_refusals_are_kept_and_not_overwritten(mlflow_store, small_train_csv):
    train_flow(data_path=str(small_train_csv))
    train_flow(data_path=str(small_train_csv), overrides={"threshold": {"contamination": 0.2}})
    for _ in range(2):
        refused = runner.invoke(app, ["promote", "2"])
        assert refused.exit_code == 1 and refused.output.count("error: ") == 1
    decisions = promotion_history(Settings())["decision"].tolist()
    assert decisions == ["champion (first version)", "refused", "refused"]
