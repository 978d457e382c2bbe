"""Shared pieces of the flows: per-run settings and the retry policy of I/O tasks."""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun

from pipeline.checksums import ChecksumError
from pipeline.config import Settings
from pipeline.ingest import InputError
from pipeline.schema import SchemaError
from pipeline.tracking import RegistryError, RegistryUnavailableError

Overrides = dict[str, dict[str, Any]]

# errors that another attempt cannot fix: fail at once instead of retrying
PERMANENT_ERRORS = (InputError, SchemaError, RegistryError, ChecksumError, FileNotFoundError)


def settings_for_run(overrides: Overrides | None = None) -> Settings:
    """``Settings()`` from the environment, with ``{"section": {"field": value}}`` applied."""
    return Settings().with_overrides(**(overrides or {}))


def retry_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry an I/O task unless it failed with an error that a retry cannot fix."""
    try:
        state.result()
    except RegistryUnavailableError:
        return True  # the server may be back on the next attempt
    except PERMANENT_ERRORS:
        return False
    except Exception:
        return True
    return True
