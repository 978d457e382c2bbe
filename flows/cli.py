"""The ``vae-anomaly`` command line: each command starts one flow or calls one pipeline function."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from pipeline.outputs import Manifest

app = typer.Typer(
    name="vae-anomaly",
    help="Anomaly detection for tabular data with a VAE, tracked in MLflow, run by Prefect.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="more logging")] = False,
) -> None:
    # a served scheduled job logs its runs at INFO (they reach the Prefect UI); commands are quiet
    loud = verbose or ctx.invoked_subcommand == "serve"
    # MLflow's advice for other kinds of models (integer columns in a signature, ambiguous local
    # dataset sources) is noise in this tool's output. (Its "add type hints to predict" advice
    # is raised under its own "once" filter and still shows.)
    for advice in (
        r".*Inferred schema contains integer column",
        r".*The specified dataset source can be interpreted in multiple ways",
    ):
        warnings.filterwarnings("ignore", message=advice)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if loud else "WARNING")
    logging.basicConfig(
        level=logging.INFO if loud else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # what happens to each file (skipped, progress of long files, counts) is always shown
    logging.getLogger("pipeline.batch").setLevel(logging.INFO)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="training table (CSV or Parquet)")] = Path(
        "data/sample/train.csv"
    ),
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
    from flows.train import train_flow
    from pipeline.ingest import InputError
    from pipeline.schema import SchemaError

    overrides: dict[str, dict[str, Any]] = {
        "training": {"max_epochs": max_epochs, "progress_bar": progress},
        "threshold": {
            "contamination": contamination,
            "target_fpr": target_fpr,
            "fixed_score": fixed_score,
        },
        "data": {"id_columns": tuple(id_column) if id_column else None},
    }
    try:
        summary = train_flow(data_path=str(data.resolve()), overrides=overrides)
    except (InputError, SchemaError, ValueError) as exc:
        _fail(str(exc))
        return
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
    from flows.score import DEFAULT_BATCH, ScoringError, score_flow
    from pipeline.ingest import InputError
    from pipeline.registry import RegistryError
    from pipeline.schema import SchemaError

    try:
        manifests = score_flow(
            inputs=inputs or [DEFAULT_BATCH],
            alias=alias,
            output_root=str(output_root.resolve()) if output_root else None,
            run_date=run_date,
            force=force,
            overrides={"scoring": {"threshold": threshold}} if threshold is not None else None,
        )
    except (InputError, SchemaError, RegistryError, ScoringError, ValueError) as exc:
        _fail(str(exc))
        return
    for m in manifests:
        _print_manifest(m, top)


def _print_manifest(m: Manifest, top: int) -> None:
    import pandas as pd

    from pipeline.outputs import FLAGGED_FILE, REPORT_FILE

    out_dir = Path(m.output_dir)
    state = "already scored, skipped" if m.skipped else "scored"
    typer.echo(
        f"\n{m.input_path}: {state} with {m.model_name} version {m.model_version}\n"
        f"  rows read {m.rows_read}, scored {m.rows_scored}, flagged {m.rows_flagged}, "
        f"rejected {m.rows_rejected} (threshold {m.threshold:.2f})\n  outputs: {out_dir}"
    )
    if m.drift.drifted:
        typer.secho(f"  WARNING {m.drift.warning}", fg=typer.colors.YELLOW)
    if (out_dir / REPORT_FILE).is_file():
        typer.echo(f"  report: {out_dir / REPORT_FILE}")
    flagged_path = out_dir / FLAGGED_FILE
    if top > 0 and m.rows_flagged and flagged_path.is_file():
        flagged = pd.read_csv(flagged_path, nrows=top, dtype=str, keep_default_na=False)
        # the id columns and what explains each row (flagged.csv also has the input columns)
        ids = list(flagged.columns[: list(flagged.columns).index("anomaly_score")])
        shown = flagged[[*ids, "anomaly_score", "score_percentile", "reasons"]].assign(
            anomaly_score=flagged["anomaly_score"].astype(float).map("{:.2f}".format),
            score_percentile=flagged["score_percentile"].astype(float).map("{:.1f}".format),
        )
        with pd.option_context("display.max_colwidth", 160, "display.width", 240):
            typer.echo(f"  top {len(flagged)} flagged records (all in {flagged_path}):")
            typer.echo(shown.to_string(index=False))


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
    from pipeline.config import Settings
    from pipeline.promotion import PromotionRefused
    from pipeline.promotion import promote as promote_version
    from pipeline.registry import RegistryError

    try:
        done = promote_version(Settings(), version, reference, force=force, reason=reason)
    except (PromotionRefused, RegistryError, ValueError) as exc:
        _fail(str(exc))
        return
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in done.gate.metrics.items())
    state = "FORCED past a failed gate" if done.forced else "gate passed"
    typer.echo(
        f"champion -> version {done.version} (was {done.previous_champion}); {state}: {metrics}"
    )
    for failure in done.gate.failures:
        typer.echo(f"  gate failure: {failure}")


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
    from flows.serve import build_deployments, serve_deployments

    if executor not in (None, "sequential", "dask"):
        _fail(f"--executor {executor!r}: use 'sequential' or 'dask'")
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
        _fail(str(exc))
        return
    for deployment in deployments:
        schedules = ", ".join(
            f"cron '{s.schedule.cron}' ({s.schedule.timezone})"  # type: ignore[union-attr]
            for s in deployment.schedules or []
        )
        typer.echo(f"{deployment.flow_name}/{deployment.name}: {schedules}")
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
    import pandas as pd

    from pipeline.config import Settings
    from pipeline.monitoring import MONITORING_FILE, write_monitoring
    from pipeline.outputs import REPORT_FILE

    settings = Settings()
    root = output_root or settings.scoring.output_root
    if training is not None:
        from pipeline.registry import RegistryError, load_detector, resolve_alias
        from pipeline.report import render_training_report
        from pipeline.tracking import training_data_path

        try:
            ref = resolve_alias(settings, alias)
            detector = load_detector(ref, settings.training.device)
        except RegistryError as exc:
            _fail(str(exc))
            return
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
        _fail(f"no scoring outputs under {root}: run `vae-anomaly score` first")
        return
    table = pd.read_csv(write_monitoring(root)).tail(last)
    if table.empty:
        typer.echo(f"no scored files under {root} yet")
        return
    shown = table.assign(
        flag_rate=(100 * table["flag_rate"]).map("{:.2f}%".format),
        expected=(100 * table["expected_flag_rate"]).map("{:.2f}%".format),
        max_psi=table["max_psi"].map("{:.3f}".format),
        drift=table["drifted"].map({True: "DRIFT", False: "ok"}).fillna("n/a"),
    )
    columns = ["run_date", "input", "model_version", "rows_scored", "rows_flagged"]
    columns += ["flag_rate", "expected", "drift", "max_psi", "worst_column"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        typer.echo(shown[columns].to_string(index=False))
    typer.echo(f"\nmonitoring table: {root / MONITORING_FILE}")
    typer.echo("reports:")
    for folder in table["output_dir"]:
        typer.echo(f"  {Path(folder) / REPORT_FILE}")


@app.command()
def show(
    alias: Annotated[str | None, typer.Option(help="registry alias (default: champion)")] = None,
) -> None:
    """Show which model version an alias points to."""
    from pipeline.config import Settings
    from pipeline.registry import RegistryError, resolve_alias

    try:
        typer.echo(json.dumps(resolve_alias(Settings(), alias).describe(), indent=1))
    except RegistryError as exc:
        _fail(str(exc))


if __name__ == "__main__":
    app()
