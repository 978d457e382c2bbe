"""Promotion through the real registry: the gate, refusals, --force with a recorded reason."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.train import train_flow
from pipeline.config import Settings
from pipeline.promotion import PromotionRefused, promote
from pipeline.registry import IncompleteRegistrationError
from tests.integration.conftest import aliases

runner = CliRunner()


def test_promote_moves_champion_when_the_gate_passes(mlflow_store, small_train_csv):
    train_flow(data_path=str(small_train_csv))
    train_flow(data_path=str(small_train_csv))  # same data and seed: an equally good model
    done = promote(Settings(), "2")
    client = MlflowClient(mlflow_store)
    assert aliases(client, "vae-anomaly")["champion"] == "2"
    assert done.previous_champion == "1" and not done.forced
    tags = client.get_model_version("vae-anomaly", "2").tags
    assert tags["promotion_gate"] == "passed"
    assert "gate_roc_auc" in tags and "gate_champion_roc_auc" in tags  # the sample has labels


def test_a_failing_version_is_refused_with_the_reason_and_force_is_recorded(
    mlflow_store, small_train_csv
):
    train_flow(data_path=str(small_train_csv))
    # a threshold made for 20% contamination flags far more than the configured 1%
    train_flow(data_path=str(small_train_csv), overrides={"threshold": {"contamination": 0.2}})
    with pytest.raises(PromotionRefused, match="flag rate"):
        promote(Settings(), "2")
    refused = runner.invoke(app, ["promote", "2"])
    assert refused.exit_code == 1 and "failed the promotion gate" in refused.output
    client = MlflowClient(mlflow_store)
    assert aliases(client, "vae-anomaly")["champion"] == "1"

    no_reason = runner.invoke(app, ["promote", "2", "--force"])
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output  # bad usage
    forced = runner.invoke(
        app, ["promote", "2", "--force", "--reason", "incident 42: flag rate accepted"]
    )
    assert forced.exit_code == 0, forced.output
    assert "FORCED" in forced.output
    tags = client.get_model_version("vae-anomaly", "2").tags
    assert tags["promotion_gate"] == "forced"
    assert tags["forced_reason"] == "incident 42: flag rate accepted"
    assert aliases(client, "vae-anomaly")["champion"] == "2"


def test_unknown_version_is_a_clear_error(mlflow_store, small_train_csv):
    train_flow(data_path=str(small_train_csv))
    result = runner.invoke(app, ["promote", "9"])
    assert result.exit_code == 1 and "no version '9'" in result.output


def test_a_failure_after_registering_is_not_retried_into_a_second_version(
    mlflow_store, small_train_csv, monkeypatch
):
    # the task that logs and registers is retried on transient errors; once the version exists,
    # a retry would register the model again: a failure setting its aliases must stop there
    from mlflow.exceptions import MlflowException

    def blip(*args, **kwargs):
        raise MlflowException("Connection refused (the server restarted)")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", blip)
    with pytest.raises(IncompleteRegistrationError, match=r"version 1 was registered, but"):
        train_flow(data_path=str(small_train_csv))
    versions = MlflowClient(mlflow_store).search_model_versions("name='vae-anomaly'")
    assert [v.version for v in versions] == [1]


def test_a_failure_while_logging_is_retried_and_leaves_the_attempt_failed(
    mlflow_store, small_train_csv, monkeypatch
):
    # before a version exists, a transient error is retried: the interrupted run stays FAILED
    # as the record of that attempt, the retry logs a new run, and one version is registered
    import mlflow
    from mlflow.exceptions import MlflowException

    real, calls = mlflow.log_text, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException("Connection refused (the server restarted)")
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow, "log_text", flaky)
    result = train_flow(data_path=str(small_train_csv))
    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name(Settings().tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])
    assert [run.info.status for run in runs] == ["FAILED", "FINISHED"]
    assert result["model_run_id"] == runs[1].info.run_id
    versions = client.search_model_versions("name='vae-anomaly'")
    assert [v.version for v in versions] == [1]
    assert aliases(client, "vae-anomaly")["champion"] == "1"
