"""The console script, through typer's CliRunner (flows run for real under the harness)."""

from __future__ import annotations

from typer.testing import CliRunner

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

    # the report command: the monitoring table across runs, and the training report
    page = tmp_path / "training.html"
    shown = runner.invoke(app, ["report", "--training", str(page)])
    assert shown.exit_code == 0, shown.output
    assert "2026-02-03" in shown.output and "batch.csv" in shown.output
    assert str(out_dir / "report.html") in shown.output
    assert "training report of vae-anomaly version 1" in shown.output
    assert page.read_text().count('src="data:image/png;base64,') >= 4


def test_clear_error_for_a_missing_file(mlflow_store, tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nope.csv"), "--no-progress"])
    assert result.exit_code == 1
    assert "no such file" in result.output
