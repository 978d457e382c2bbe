"""What every ``vae-anomaly`` command shares: exit codes, one ``error:`` line per failure (the
traceback only with ``-v``), the checks made before any flow or Prefect server starts, the
console's logging, and the printout of a scored file.

Exit codes, for schedulers:

- 0: success (files skipped as already scored included);
- 1: anything else that failed (unreadable file content, missing columns, registry or model
  problems, a refused promotion, an unexpected error);
- 2: bad usage or an input path that does not exist or cannot be read, found before any flow
  or Prefect server starts;
- 3: some files were scored and some failed (``score``).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.outputs import Manifest

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
# a first run creates Prefect's database on the temporary server: on a busy 2-core machine
# that takes longer than Prefect's default 20 s
PREFECT_STARTUP_TIMEOUT_SECONDS = "180"

state = {"verbose": False}


class UsageProblem(ValueError):
    """Bad usage or an input path that cannot be read: exit code 2, before any flow starts."""


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vae-anomaly")
    except PackageNotFoundError:  # pragma: no cover - running from a tree never installed
        return "unknown"


def print_version(value: bool) -> None:
    if value:
        typer.echo(f"vae-anomaly {package_version()}")
        raise typer.Exit()


class _FailuresReportedByTheCli(logging.Filter):
    """Without ``-v``: Prefect's own records of a failed flow or task (ERROR, with the
    traceback) are left out of the console; the command prints one ``error:`` line instead.
    The Prefect API (UI) still receives them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("prefect") and record.levelno >= logging.ERROR)


def quiet_console() -> None:
    """Put the filter on the console handlers (after Prefect configured its logging)."""
    if state["verbose"]:
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _FailuresReportedByTheCli) for f in handler.filters):
            handler.addFilter(_FailuresReportedByTheCli())


def configure_console(verbose: bool, loud: bool) -> None:
    """Logging and warnings of a command: quiet unless ``loud`` (``-v``, or ``serve``)."""
    state["verbose"] = verbose
    # MLflow's advice for other kinds of models (integer columns in a signature, ambiguous local
    # dataset sources) is noise in this tool's output. (Its "add type hints to predict" advice
    # is raised under its own "once" filter and still shows.)
    for advice in (
        r".*Inferred schema contains integer column",
        r".*The specified dataset source can be interpreted in multiple ways",
    ):
        warnings.filterwarnings("ignore", message=advice)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", PREFECT_STARTUP_TIMEOUT_SECONDS
    )
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if loud else "WARNING")
    if not loud:
        # Dask's INFO lines (cluster start, worker restarts) are for the operator of a cluster;
        # a local cluster's HTTP port taken by another cluster is no concern of a scoring run
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
        # MLflow's INFO lines (creating its tables, validating the input example) likewise
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
    logging.basicConfig(
        level=logging.INFO if loud else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # what happens to each file (skipped, progress of long files, counts) is always shown
    logging.getLogger("pipeline.batch").setLevel(logging.INFO)
    if not loud:
        logging.getLogger("distributed").setLevel(logging.ERROR)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


def in_chain(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``exc`` or the first of its causes that is a ``kind`` (MLflow wraps load errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def error_line(exc: BaseException) -> tuple[str, int]:
    """The ``error:`` line and exit code of an exception that ended a command."""
    from pipeline.checksums import ChecksumError
    from pipeline.config import redact
    from pipeline.ingest import InputError
    from pipeline.registry import RegistryError
    from pipeline.schema import SchemaError

    checksum = in_chain(exc, ChecksumError)
    if checksum is not None:
        return (
            f"{checksum}. Re-register the model from its training run, or promote a version "
            "whose files are intact",
            EXIT_FAILED,
        )
    if isinstance(exc, UsageProblem):
        return str(exc), EXIT_USAGE
    text = redact(str(exc).strip())
    if "ephemeral Prefect API server" in text:
        return (
            "the temporary Prefect API server did not start in time (a busy machine, or a "
            "first run creating its database). Run it again, raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (now "
            f"{os.environ.get('PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS', '20')} s), or "
            "point at a running server: `prefect server start`, then "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api",
            EXIT_FAILED,
        )
    known = (InputError, SchemaError, RegistryError, ValueError)
    if isinstance(exc, known) or type(exc).__name__ in ("ScoringError", "PromotionRefused"):
        return text, EXIT_FAILED
    first = text.splitlines()[0] if text else ""
    return (
        f"{type(exc).__name__}: {first} (unexpected; run again with -v for the traceback)",
        EXIT_FAILED,
    )


@contextmanager
def errors() -> Iterator[None]:
    """Turn an exception into one ``error:`` line and its exit code (the traceback with -v)."""
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:
        if state["verbose"]:
            traceback.print_exc(file=sys.stderr)
        message, code = error_line(exc)
        fail(message, code)


def checked_settings(overrides: dict[str, dict[str, Any]] | None = None) -> Settings:
    """The run's settings, checked before any flow starts (bad values: exit code 2)."""
    from pydantic import ValidationError

    from pipeline.config import Settings

    try:
        return Settings().with_overrides(**(overrides or {}))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        ]
        raise UsageProblem("invalid settings: " + "; ".join(problems)) from None
    except ValueError as exc:
        raise UsageProblem(f"invalid settings: {exc}") from None


def readable_file(path: Path, what: str) -> Path:
    """``path`` as an absolute path when it is a readable CSV or Parquet file, else exit 2."""
    from pipeline.ingest import InputError, table_format

    if not path.exists():
        raise UsageProblem(f"{path}: no such file; check the path of the {what}")
    if not path.is_file():
        raise UsageProblem(f"{path}: not a file; pass the {what} (CSV or Parquet)")
    try:
        table_format(path)
    except InputError as exc:
        raise UsageProblem(str(exc)) from None
    if not os.access(path, os.R_OK):
        raise UsageProblem(f"{path}: permission denied; make the {what} readable")
    return path.resolve()


def checked_inputs(inputs: list[str]) -> None:
    """The files to score exist and can be read (paths, globs, folders), else exit 2."""
    from pipeline.inputs import InputError, expand_inputs

    try:
        files = expand_inputs(inputs)
    except InputError as exc:
        raise UsageProblem(str(exc)) from None
    unreadable = [str(f) for f in files if not os.access(f, os.R_OK)]
    if unreadable:
        raise UsageProblem(f"permission denied: {unreadable}; make the input files readable")


def checked_run_date(run_date: str) -> None:
    from datetime import date

    try:
        date.fromisoformat(run_date)
    except ValueError:
        raise UsageProblem(
            f"--run-date {run_date!r} is not a date: use YYYY-MM-DD, e.g. 2026-01-31"
        ) from None


def print_manifest(m: Manifest, top: int) -> None:
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


def run_app(app: typer.Typer) -> NoReturn:
    """The console script ``vae-anomaly``: ``app``, with click's usage errors (an unknown
    option, a value of the wrong type) as one ``error:`` line too (exit code 2)."""
    try:  # typer >= 0.29 carries its own copy of click
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions as click_errors  # type: ignore[no-redef]

    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:  # no command: the help, as before
        typer.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        code = EXIT_USAGE
    except click_errors.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "vae-anomaly"
        typer.secho(
            f"error: {exc.format_message()} (see `{command} --help`)",
            fg=typer.colors.RED,
            err=True,
        )
        code = EXIT_USAGE
    except typer.Abort:
        typer.echo("aborted", err=True)
        code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def print_monitoring(root: Path, last: int) -> None:
    """The monitoring table of the scoring outputs under ``root`` (its ``last`` rows) and the
    paths of their reports."""
    import pandas as pd

    from pipeline.monitoring import MONITORING_FILE, write_monitoring
    from pipeline.outputs import REPORT_FILE

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
