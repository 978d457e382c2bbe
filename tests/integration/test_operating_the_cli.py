"""Operating the command line without reading a traceback: the version, the sample files of a
first run, one ``error:`` line per failure, exit codes a scheduler can tell apart, a time
budget for an unreachable tracking server, the hint when Prefect's server does not start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

import flows.score
from flows.cli import EXIT_FAILED, EXIT_PARTIAL, EXIT_USAGE, app
from flows.train import train_flow
from pipeline.sample_data import make_table

runner = CliRunner()
CLI = str(Path(sys.executable).with_name("vae-anomaly"))


def _no_flow(*args: object, **kwargs: object) -> None:
    raise AssertionError("the flow must not start for a usage error")


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("vae-anomaly 0.")


def test_a_first_run_in_an_empty_home_is_told_to_write_the_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAE_ANOMALY_HOME", raising=False)
    monkeypatch.setattr(flows.score, "score_flow", _no_flow)
    for command in (["score"], ["train", "--no-progress"]):
        missing = runner.invoke(app, command)
        assert missing.exit_code == EXIT_USAGE, missing.output
        assert "run `vae-anomaly demo`" in missing.output
    written = runner.invoke(app, ["demo"])
    assert written.exit_code == 0, written.output
    assert (tmp_path / "data" / "sample" / "train.csv").is_file()
    assert (tmp_path / "data" / "sample" / "batch.csv").is_file()


def test_usage_errors_exit_2_before_any_flow_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(flows.score, "score_flow", _no_flow)
    empty, files = tmp_path / "empty", tmp_path / "files"
    empty.mkdir()
    files.mkdir()
    good = files / "good.csv"
    good.write_text("a,b\n1,2\n")
    cases = [
        (["score", str(tmp_path / "typo.csv")], "typo.csv: no such file or folder"),
        (["score", str(empty)], "no CSV or Parquet file found"),
        (["score", str(good), "--run-date", "yesterday"], "--run-date 'yesterday' is not a date"),
        (["train", str(tmp_path / "typo.csv")], "no such file"),
        (["train", __file__], "unsupported file type '.py'"),
        (["promote", "1", "--force"], "--force needs a --reason"),
        (["serve", str(tmp_path), "--executor", "spark"], "use 'sequential' or 'dask'"),
    ]
    for command, text in cases:
        result = runner.invoke(app, command)
        assert result.exit_code == EXIT_USAGE, (command, result.output)
        assert result.output.count("error: ") == 1, result.output
        if text:
            assert text in result.output, result.output
    # an unreadable file
    locked = files / "locked.csv"
    locked.write_text("a,b\n1,2\n")
    locked.chmod(0)
    if not os.access(locked, os.R_OK):  # root reads everything
        result = runner.invoke(app, ["score", str(locked)])
        assert result.exit_code == EXIT_USAGE and "permission denied" in result.output


def test_some_files_scored_and_some_failed_exits_3(scoring_store, small_batch_csv, tmp_path):
    broken = tmp_path / "semicolons.csv"
    make_table(50, seed=5).to_csv(broken, index=False, sep=";")
    result = runner.invoke(
        app, ["score", str(small_batch_csv), str(broken), "--run-date", "2026-03-01", "--top", "0"]
    )
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "batch.csv: scored with vae-anomaly version 1" in result.output  # the good file
    assert result.output.count("error: ") == 1
    assert "1 of 2 file(s) not scored" in result.output
    assert "the header looks semicolon-separated" in result.output
    # every file failed: exit 1
    alone = runner.invoke(app, ["score", str(broken), "--run-date", "2026-03-01"])
    assert alone.exit_code == EXIT_FAILED, alone.output
    # the good file again: skipped as already scored, which is a success
    again = runner.invoke(app, ["score", str(small_batch_csv), "--run-date", "2026-03-01"])
    assert again.exit_code == 0 and "already scored, skipped" in again.output


def test_an_unreachable_tracking_server_gives_the_message_within_the_budget(
    mlflow_store, small_batch_csv, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("VAE_ANOMALY_TRACKING__RESOLVE_TIMEOUT_SECONDS", "3")
    result = runner.invoke(app, ["score", str(small_batch_csv)])
    assert result.exit_code == EXIT_FAILED, result.output
    assert result.output.count("error: ") == 1
    assert "cannot resolve models:/vae-anomaly@champion at http://127.0.0.1:9" in result.output
    assert "check that the tracking server is up" in result.output


def test_a_prefect_server_that_does_not_start_says_what_to_do(
    small_batch_csv, tmp_path, monkeypatch
):
    def times_out(**kwargs: object) -> None:
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")

    monkeypatch.setattr(flows.score, "score_flow", times_out)
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    result = runner.invoke(app, ["score", str(small_batch_csv)])
    assert result.exit_code == EXIT_FAILED
    assert result.output.count("error: ") == 1
    assert "PREFECT_API_URL" in result.output and "prefect server start" in result.output
    # the startup timeout the command gives the temporary server (Prefect's default is 20 s)
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "180"


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed console script in a process of its own (its real stderr: logging
    included), against the test session's Prefect API."""
    full_env = {**os.environ, **env, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    return subprocess.run(
        [CLI, *args], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _clis(
    calls: list[list[str]], env: dict[str, str], cwd: Path
) -> list[subprocess.CompletedProcess[str]]:
    """:func:`_cli` for several argument lists at once (each in a process of its own, run
    side by side: each process spends seconds importing before it fails)."""
    full_env = {**os.environ, **env, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    running = [
        (
            args,
            subprocess.Popen(
                [CLI, *args],
                env=full_env,
                cwd=cwd,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ),
        )
        for args in calls
    ]
    done = []
    try:
        for args, process in running:
            out, err = process.communicate(timeout=300)
            done.append(subprocess.CompletedProcess([CLI, *args], process.returncode, out, err))
    finally:
        for _, process in running:
            if process.poll() is None:
                process.kill()
    return done


def test_a_tampered_model_and_a_typo_each_print_one_error_line(
    mlflow_store, small_train_csv, tmp_path
):
    typo, wrong = _clis(
        [
            ["score", str(tmp_path / "typo.csv")],
            ["score", str(tmp_path / "typo.csv"), "--top", "x"],
        ],
        {},
        tmp_path,
    )
    assert typo.returncode == EXIT_USAGE
    assert typo.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'typo.csv'}: no such file or folder; check the path or the glob"
    ]
    # click's own usage errors (an option's value of the wrong type) too
    assert wrong.returncode == EXIT_USAGE
    assert len(wrong.stderr.strip().splitlines()) == 1
    assert wrong.stderr.startswith("error: Invalid value for '--top'")
    train_flow(data_path=str(small_train_csv))
    [weights] = (tmp_path / "mlruns").rglob("weights.pt")
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    batch = tmp_path / "batch.csv"
    make_table(100, seed=3).to_csv(batch, index=False)
    env = {"MLFLOW_TRACKING_URI": mlflow_store}
    # and -v shows the traceback as well
    refused, verbose = _clis([["score", str(batch)], ["-v", "score", str(batch)]], env, tmp_path)
    assert refused.returncode == EXIT_FAILED, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, refused.stderr
    assert (
        "model file 'weights.pt'" in errors[0] and "does not match its recorded sha256" in errors[0]
    )
    assert "Traceback" not in refused.stderr and len(refused.stderr.splitlines()) <= 3
    assert verbose.returncode == EXIT_FAILED and "Traceback" in verbose.stderr
    assert shutil.which(CLI)
