"""The console script, through typer's CliRunner (flows run for real under the harness)."""

from __future__ import annotations

from typer.testing import CliRunner

import flows.train
from flows.cli import app

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "score", "promote", "serve", "report", "show"):
        assert command in result.output


def test_train_then_score_from_the_command_line(
    mlflow_store, small_train_csv, small_batch_csv, tmp_path
):
    trained = runner.invoke(
        app, ["train", str(small_train_csv), "--no-progress", "--max-epochs", "5"]
    )
    assert trained.exit_code == 0, trained.output
    assert "registered vae-anomaly version 1" in trained.output
    scored = runner.invoke(app, ["score", str(small_batch_csv), "--run-date", "2026-02-03"])
    assert scored.exit_code == 0, scored.output
    assert "rows read 400" in scored.output and "flagged" in scored.output
    out_dir = tmp_path / "scored" / "2026-02-03" / "batch"
    assert (out_dir / "manifest.json").is_file()
    assert f"report: {out_dir / 'report.html'}" in scored.output
    # a run's own threshold: the file is scored again (not reused), flagging more rows
    lower = runner.invoke(
        app, ["score", str(small_batch_csv), "--run-date", "2026-02-04", "--threshold", "-5"]
    )
    assert lower.exit_code == 0, lower.output
    assert "scored with vae-anomaly version 1" in lower.output
    assert "rows read 400, scored 400, flagged 400, rejected 0 (threshold -5.00)" in lower.output

    # the report command: the monitoring table across runs, and the training report
    page = tmp_path / "training.html"
    shown = runner.invoke(app, ["report", "--training", str(page)])
    assert shown.exit_code == 0, shown.output
    assert "2026-02-03" in shown.output and "batch.csv" in shown.output
    assert str(out_dir / "report.html") in shown.output
    assert "training report of vae-anomaly version 1" in shown.output
    html = page.read_text()
    assert html.count('src="data:image/png;base64,') >= 4
    assert f"<th>training data</th><td>{small_train_csv}</td>" in html  # from the MLflow run
    assert "of at most 5: early stopping" in html


def test_train_takes_one_threshold_rule(mlflow_store, small_train_csv, monkeypatch):
    both = runner.invoke(
        app,
        [
            "train",
            str(small_train_csv),
            "--no-progress",
            "--target-fpr",
            "0.01",
            "--fixed-score",
            "3",
        ],
    )
    assert both.exit_code == 2  # bad usage, found before any flow starts
    assert "at most one of threshold.target_fpr and threshold.fixed_score" in both.output
    # each option reaches the training flow's threshold settings
    seen: list[dict] = []

    def train_flow(data_path: str, overrides: dict) -> dict:
        seen.append(overrides["threshold"])
        summary = {"model_name": "m", "model_version": "1", "model_run_id": "r", "rows": 1}
        return {**summary, "epochs": 1, "best_epoch": 1, "threshold": 3.0}

    monkeypatch.setattr(flows.train, "train_flow", train_flow)
    for option, value in (("--contamination", 0.04), ("--target-fpr", 0.005), ("--fixed-score", 3)):
        done = runner.invoke(app, ["train", str(small_train_csv), option, str(value)])
        assert done.exit_code == 0, done.output
    assert seen == [
        {"contamination": 0.04, "target_fpr": None, "fixed_score": None},
        {"contamination": None, "target_fpr": 0.005, "fixed_score": None},
        {"contamination": None, "target_fpr": None, "fixed_score": 3.0},
    ]


def test_clear_error_for_a_missing_file(mlflow_store, tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nope.csv"), "--no-progress"])
    assert result.exit_code == 2  # an input path that does not exist: before any flow starts
    assert "no such file" in result.output
