"""The ``vae-anomaly`` command line: each command starts one flow or calls one pipeline function.

Errors are one ``error:`` line each, with the exit codes of :mod:`flows._cli_support`
(0 success, 1 failed, 2 bad usage or unreadable input path, 3 some files failed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flows._cli_support import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    UsageProblem,
    checked_inputs,
    checked_run_date,
    checked_settings,
    configure_console,
    errors,
    fail,
    print_manifest,
    print_monitoring,
    print_version,
    quiet_console,
    readable_file,
    run_app,
)

if TYPE_CHECKING:
    from pipeline.outputs import Manifest

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "app", "run"]

app = typer.Typer(
    name="vae-anomaly",
    help="Anomaly detection for tabular data with a VAE, tracked in MLflow, run by Prefect.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="more logging, and tracebacks of errors")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=print_version, is_eager=True, help="print the version, exit"
        ),
    ] = False,
) -> None:
    # a served scheduled job logs its runs at INFO (they reach the Prefect UI); commands are quiet
    configure_console(verbose, loud=verbose or ctx.invoked_subcommand == "serve")


@app.command()
def train(
    data: Annotated[
        Path | None,
        typer.Argument(
            help="training table (CSV or Parquet); default: data/sample/train.csv of the home "
            "($VAE_ANOMALY_HOME, else the working directory; `vae-anomaly demo` writes it)"
        ),
    ] = None,
    max_epochs: Annotated[int | None, typer.Option(help="most training epochs")] = None,
    contamination: Annotated[
        float | None,
        typer.Option(
            help="share of rows like the training data to flag: the threshold is that "
            "quantile of the validation scores (default 0.01)"
        ),
    ] = None,
    target_fpr: Annotated[
        float | None,
        typer.Option(
            help="instead: the most validation rows (taken as normal) allowed above the "
            "threshold, e.g. 0.005"
        ),
    ] = None,
    fixed_score: Annotated[
        float | None, typer.Option(help="instead: this anomaly score is the threshold")
    ] = None,
    id_column: Annotated[
        list[str] | None, typer.Option("--id-column", help="id column (repeatable)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Train a detector, log it to MLflow and register a new model version."""
    from pipeline.config import sample_path

    overrides: dict[str, dict[str, Any]] = {
        "training": {"max_epochs": max_epochs, "progress_bar": progress},
        "threshold": {
            "contamination": contamination,
            "target_fpr": target_fpr,
            "fixed_score": fixed_score,
        },
        "data": {"id_columns": tuple(id_column) if id_column else None},
    }
    with errors():
        if data is None and not sample_path("train.csv").is_file():
            raise UsageProblem(
                f"no training table given and no sample at {sample_path('train.csv')}: pass "
                "the table to train on, or run `vae-anomaly demo` to write the sample files"
            )
        path = readable_file(data or sample_path("train.csv"), "training table")
        checked_settings(overrides)
        from flows.train import train_flow

        quiet_console()
        summary = train_flow(data_path=str(path), overrides=overrides)
    typer.echo(
        f"registered {summary['model_name']} version {summary['model_version']} "
        f"(run {summary['model_run_id']}): {summary['rows']} rows, {summary['epochs']} epochs "
        f"(best {summary['best_epoch']}), threshold {summary['threshold']:.2f}"
    )


@app.command()
def score(
    inputs: Annotated[
        list[str] | None, typer.Argument(help="files, globs or folders to score")
    ] = None,
    alias: Annotated[
        str | None, typer.Option(help="registry alias to score with (default: champion)")
    ] = None,
    output_root: Annotated[Path | None, typer.Option(help="root of the output folders")] = None,
    run_date: Annotated[
        str | None, typer.Option(help="output partition (default: today, UTC)")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="rescore inputs already scored by this model version")
    ] = False,
    top: Annotated[int, typer.Option(help="flagged records to show")] = 10,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="flag rows scoring above this, instead of the model's threshold (this run "
            "only; outputs made with another threshold are rescored)"
        ),
    ] = None,
) -> None:
    """Score files with the registered model (by alias) and write scored/flagged outputs."""
    from pipeline.config import sample_path

    overrides = {"scoring": {"threshold": threshold}} if threshold is not None else None
    manifests: list[Manifest] = []
    with errors():
        if not inputs and not sample_path("batch.csv").is_file():
            raise UsageProblem(
                f"no input given and no sample batch at {sample_path('batch.csv')}: pass the "
                "files, globs or folders to score, or run `vae-anomaly demo` to write the "
                "sample files"
            )
        targets = list(inputs) if inputs else [str(sample_path("batch.csv"))]
        checked_inputs(targets)
        if run_date is not None:
            checked_run_date(run_date)
        checked_settings(overrides)
        from flows.score import ScoringError, score_flow

        quiet_console()
        try:
            manifests = score_flow(
                inputs=targets,
                alias=alias,
                output_root=str(output_root.resolve()) if output_root else None,
                run_date=run_date,
                force=force,
                overrides=overrides,
            )
        except ScoringError as exc:
            if not exc.manifests:
                raise
            for m in exc.manifests:  # the files that were scored (or skipped) are reported
                print_manifest(m, top)
            fail(str(exc), EXIT_PARTIAL)
    for m in manifests:
        print_manifest(m, top)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="model version to make champion")],
    reference: Annotated[
        Path | None, typer.Option(help="reference batch (default: the version's validation split)")
    ] = None,
    force: Annotated[bool, typer.Option(help="promote even if the gate fails")] = False,
    reason: Annotated[str | None, typer.Option(help="why --force was needed (recorded)")] = None,
) -> None:
    """Move the champion alias to VERSION if it passes the promotion gate."""
    with errors():
        if force and not (reason and reason.strip()):
            raise UsageProblem("--force needs a --reason: it is recorded on the model version")
        if reference is not None:
            reference = readable_file(reference, "reference batch")
        from pipeline.promotion import promote as promote_version

        done = promote_version(checked_settings(), version, reference, force=force, reason=reason)
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in done.gate.metrics.items())
    state = "FORCED past a failed gate" if done.forced else "gate passed"
    typer.echo(
        f"champion -> version {done.version} (was {done.previous_champion}); {state}: {metrics}"
    )
    for failure in done.gate.failures:
        typer.echo(f"  gate failure: {failure}")


@app.command()
def history(
    last: Annotated[int, typer.Option(help="how many of the latest decisions to show")] = 20,
) -> None:
    """Promotion decisions (promoted, forced, refused, first versions), oldest first: when,
    which version, who, the previous champion, the reason and the gate's figures."""
    import pandas as pd

    from pipeline.promotion_history import promotion_history

    with errors():
        table = promotion_history(checked_settings()).tail(last)
    if table.empty:
        typer.echo("no promotion decision recorded yet")
        return
    figures = [c for c in table.columns if pd.api.types.is_float_dtype(table[c])]
    shown = table.assign(
        **{c: table[c].map(lambda v: "" if pd.isna(v) else f"{v:.4g}") for c in figures}
    ).fillna("")
    with pd.option_context("display.width", 240, "display.max_columns", 30):
        typer.echo(shown.to_string(index=False))


@app.command()
def serve(
    inputs: Annotated[
        list[str],
        typer.Argument(help="landing folder(s), files or globs scored on every run"),
    ],
    cron: Annotated[
        str, typer.Option(help="when to score (cron: minute hour day month weekday)")
    ] = "0 2 * * *",
    timezone: Annotated[str, typer.Option(help="time zone of the cron schedules")] = "UTC",
    alias: Annotated[
        str | None, typer.Option(help="registry alias to score with (default: champion)")
    ] = None,
    output_root: Annotated[Path | None, typer.Option(help="root of the output folders")] = None,
    train_data: Annotated[
        Path | None, typer.Option(help="training table of the retraining deployment")
    ] = None,
    train_cron: Annotated[
        str | None, typer.Option(help="when to retrain (cron); default: no retraining")
    ] = None,
    executor: Annotated[
        str | None, typer.Option(help="sequential or dask (default: scoring.executor)")
    ] = None,
    dask_address: Annotated[
        str | None, typer.Option(help="Dask scheduler address (implies --executor dask)")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="most flow runs at the same time (default: no limit)")
    ] = None,
) -> None:
    """Serve the scoring flow on a cron schedule (and retraining on its own) until stopped."""
    if executor not in (None, "sequential", "dask"):
        fail(f"--executor {executor!r}: use 'sequential' or 'dask'", EXIT_USAGE)
    from flows.serve import build_deployments, serve_deployments

    scoring: dict[str, Any] = {}
    if dask_address:
        scoring = {"executor": "dask", "dask_address": dask_address}
    elif executor:
        scoring = {"executor": executor}
    try:
        deployments = build_deployments(
            inputs,
            score_cron=cron,
            timezone=timezone,
            alias=alias,
            output_root=str(output_root) if output_root else None,
            overrides={"scoring": scoring} if scoring else None,
            train_data=str(train_data) if train_data else None,
            train_cron=train_cron,
        )
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    for deployment in deployments:
        schedules = ", ".join(
            f"cron '{s.schedule.cron}' ({s.schedule.timezone})"  # type: ignore[union-attr]
            for s in deployment.schedules or []
        )
        typer.echo(f"{deployment.flow_name}/{deployment.name}: {schedules}")
    with errors():
        serve_deployments(deployments, limit=limit)


@app.command()
def report(
    output_root: Annotated[
        Path | None, typer.Option(help="root of the scoring outputs (default: scoring.output_root)")
    ] = None,
    last: Annotated[int, typer.Option(help="how many of the latest scored files to list")] = 20,
    training: Annotated[
        Path | None,
        typer.Option(help="also write the training report of the alias's model to this file"),
    ] = None,
    alias: Annotated[str | None, typer.Option(help="registry alias (default: champion)")] = None,
) -> None:
    """Flag rate and drift across scoring runs (monitoring table), and the report files."""
    with errors():
        settings = checked_settings()
    root = output_root or settings.scoring.output_root
    if training is not None:
        from pipeline.registry import load_detector, resolve_alias
        from pipeline.report import render_training_report
        from pipeline.tracking import training_data_path

        with errors():
            ref = resolve_alias(settings, alias)
            detector = load_detector(ref, settings.training.device)
        training.parent.mkdir(parents=True, exist_ok=True)
        training.write_text(
            render_training_report(
                detector,
                input_name=training_data_path(ref.run_id),
                model_name=ref.name,
                model_version=ref.version,
                details={"run id": ref.run_id},
            ),
            encoding="utf-8",
        )
        typer.echo(f"training report of {ref.name} version {ref.version}: {training}")
    if not root.is_dir():
        fail(f"no scoring outputs under {root}: run `vae-anomaly score` first")
    print_monitoring(root, last)


@app.command()
def show(
    alias: Annotated[str | None, typer.Option(help="registry alias (default: champion)")] = None,
) -> None:
    """Show which model version an alias points to."""
    from pipeline.registry import resolve_alias

    with errors():
        typer.echo(json.dumps(resolve_alias(checked_settings(), alias).describe(), indent=1))


@app.command()
def demo(
    overwrite: Annotated[bool, typer.Option(help="replace sample files that exist")] = False,
) -> None:
    """Write the sample tables (data/sample/train.csv and batch.csv) into the home, for a
    first run: `vae-anomaly train`, then `vae-anomaly score`."""
    from pipeline.config import home, sample_path
    from pipeline.sample_data import write_sample

    with errors():
        folder = sample_path("train.csv").parent
        written = write_sample(folder, overwrite=overwrite)
    for path in written:
        typer.echo(f"wrote {path}")
    if not written:
        typer.echo(f"the sample files are already in {folder} (--overwrite replaces them)")
    typer.echo(
        f"home: {home()} (MLflow store mlruns/, outputs data/scored/). Next: "
        "vae-anomaly train, then vae-anomaly score"
    )


def run() -> None:
    """The console script ``vae-anomaly``: ``app``, with click's usage errors (an unknown
    option, a value of the wrong type) as one ``error:`` line too (exit code 2)."""
    run_app(app)


if __name__ == "__main__":
    run()
