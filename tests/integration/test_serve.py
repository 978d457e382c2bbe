"""Scheduled deployments: built with cron schedules, served, triggered through the Prefect API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import get_client
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL
from prefect.utilities.templating import apply_values
from typer.testing import CliRunner

from flows.cli import app
from flows.serve import build_deployments
from pipeline.outputs import MANIFEST_FILE
from pipeline.sample_data import make_table

ROOT = Path(__file__).resolve().parents[2]


def _cron(deployment: Any) -> list[tuple[str, str]]:
    return [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules]


def test_build_deployments_with_schedules_and_parameters(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    train = tmp_path / "train.csv"
    train.write_text("a\n1\n")

    [score] = build_deployments([str(landing)])
    assert (score.flow_name, score.name) == ("vae-anomaly-score", "nightly")
    assert _cron(score) == [("0 2 * * *", "UTC")]
    assert score.parameters == {
        "inputs": [str(landing)],
        "alias": "champion",
        "output_root": None,
        "overrides": None,
    }
    assert score.concurrency_limit == 1
    assert score.entrypoint == "flows.score.score_flow"

    score, retrain = build_deployments(
        str(landing / "*.csv"),
        score_cron="30 1 * * 1-5",
        timezone="Europe/Paris",
        alias="challenger",
        output_root=str(tmp_path / "out"),
        overrides={"scoring": {"executor": "dask", "dask_address": "tcp://10.0.0.5:8786"}},
        train_data=str(train),
        train_cron="0 3 * * 0",
    )
    assert _cron(score) == [("30 1 * * 1-5", "Europe/Paris")]
    assert score.parameters["inputs"] == [str(landing / "*.csv")]
    assert score.parameters["alias"] == "challenger"
    assert score.parameters["output_root"] == str(tmp_path / "out")
    assert score.parameters["overrides"]["scoring"]["dask_address"] == "tcp://10.0.0.5:8786"
    assert (retrain.flow_name, retrain.name) == ("vae-anomaly-train", "retrain")
    assert _cron(retrain) == [("0 3 * * 0", "Europe/Paris")]
    assert retrain.parameters == {"data_path": str(train), "overrides": None}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"score_cron": "every night"}, "--cron 'every night' is not a valid cron"),
        ({"score_cron": "0 25 * * *"}, "--cron '0 25 \\* \\* \\*' is not a valid cron"),
        ({"timezone": "Mars/Olympus"}, "--timezone 'Mars/Olympus' is not an IANA time zone"),
        ({"train_cron": "0 3 * * 0"}, "needs both --train-cron and --train-data"),
        ({"inputs": ["/no/such/landing"]}, "/no/such/landing: no such file or folder"),
    ],
)
def test_build_deployments_refuses_bad_settings(tmp_path, kwargs, message):
    arguments: dict[str, Any] = {"inputs": [str(tmp_path)], **kwargs}
    with pytest.raises(ValueError, match=message):
        build_deployments(**arguments)


def test_serve_command_keeps_schedules_active_on_shutdown(tmp_path, monkeypatch):
    import prefect

    served: dict[str, Any] = {}

    def fake_serve(*deployments: Any, **kwargs: Any) -> None:
        served.update(deployments=deployments, **kwargs)

    monkeypatch.setattr(prefect, "serve", fake_serve)
    train = tmp_path / "train.csv"
    train.write_text("a\n1\n")
    result = CliRunner().invoke(
        app,
        [
            "serve",
            str(tmp_path),
            "--cron",
            "*/15 * * * *",
            "--train-data",
            str(train),
            "--train-cron",
            "0 4 * * 6",
            "--dask-address",
            "tcp://scheduler:8786",
            "--limit",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "vae-anomaly-score/nightly: cron '*/15 * * * *' (UTC)" in result.output
    assert "vae-anomaly-train/retrain: cron '0 4 * * 6' (UTC)" in result.output
    assert served["pause_on_shutdown"] is False
    assert served["limit"] == 2
    score, retrain = served["deployments"]
    assert score.parameters["overrides"] == {
        "scoring": {"executor": "dask", "dask_address": "tcp://scheduler:8786"}
    }
    assert retrain.parameters["data_path"] == str(train)

    bad = CliRunner().invoke(app, ["serve", str(tmp_path), "--cron", "nightly"])
    assert bad.exit_code == 2  # bad usage (README, "Errors and exit codes")
    assert "--cron 'nightly' is not a valid cron expression" in bad.output


def test_prefect_yaml_entrypoints_import_and_schedules_parse(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_ANOMALY_LANDING", str(tmp_path / "landing"))
    monkeypatch.setenv("VAE_ANOMALY_TRAIN_DATA", str(tmp_path / "train.csv"))
    raw = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    PrefectYamlModel.model_validate(raw)  # the shape `prefect deploy` accepts
    config = apply_values(raw, {})  # {{ $VAR }} read from the environment, as prefect deploy does
    deployments = {d["name"]: d for d in config["deployments"]}
    assert set(deployments) == {"nightly", "retrain"}
    flow_names = {}
    for name, deployment in deployments.items():
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        flow_names[name] = flow.name
        flow.validate_parameters(deployment["parameters"])  # names and types fit the flow
        for schedule in deployment["schedules"]:
            Cron(schedule["cron"], timezone=schedule["timezone"])  # raises when invalid
        assert deployment["work_pool"]["name"] == "vae-anomaly"
        assert deployment["concurrency_limit"] == 1
    assert flow_names == {"nightly": "vae-anomaly-score", "retrain": "vae-anomaly-train"}
    assert deployments["nightly"]["schedules"][0]["cron"] == "0 2 * * *"
    assert deployments["nightly"]["parameters"]["inputs"] == [str(tmp_path / "landing")]
    assert deployments["retrain"]["parameters"]["data_path"] == str(tmp_path / "train.csv")


def _wait_for_deployment(name: str, process: subprocess.Popen[str], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"serve exited early: {process.communicate()[0]}")
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:
                time.sleep(0.5)
    pytest.fail(f"{name} was not registered within {seconds} s")


def test_served_scoring_deployment_runs_when_triggered(scoring_store, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    make_table(120, seed=81).to_csv(landing / "batch_81.csv", index=False)
    out = tmp_path / "served"
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    command = [sys.executable, "-m", "flows.cli", "serve", str(landing)]
    command += ["--cron", "0 0 1 1 *", "--output-root", str(out)]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for_deployment("vae-anomaly-score/nightly", process, 90)
        flow_run = run_deployment(
            "vae-anomaly-score/nightly",
            parameters={"run_date": "2026-04-01"},
            timeout=120,
            poll_interval=1,
        )
        assert flow_run.state is not None
        assert flow_run.state.is_completed(), flow_run.state
        assert (out / "2026-04-01" / "batch_81" / MANIFEST_FILE).is_file()
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("vae-anomaly-score/nightly")
    assert not deployment.paused, output  # the schedule survives the serving process
    assert [s.active for s in deployment.schedules] == [True]
