"""One preset for the flows' I/O tasks (reading inputs, talking to MLflow, writing outputs):
retries with delays, a time limit, and the rule that tells a transient error from one that
another attempt cannot fix. Pure compute (fitting) gets no preset: it is not retried."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from pipeline.checksums import ChecksumError
from pipeline.ingest import InputError
from pipeline.registry import RegistryError, RegistryUnavailableError
from pipeline.schema import SchemaError

F = TypeVar("F", bound=Callable[..., Any])

# errors that another attempt cannot fix: fail at once instead of retrying
PERMANENT_ERRORS = (InputError, SchemaError, RegistryError, ChecksumError, FileNotFoundError)
RETRY_DELAYS_SECONDS: list[float] = [2, 10, 30]


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


def io_task(*, timeout_seconds: float | None, retries: int = 3) -> Callable[[F], Any]:
    """``@task`` for I/O: ``retries`` attempts after the first, 2, 10 then 30 s apart, only
    for transient errors; ``timeout_seconds`` per attempt (None: none). A run applies its
    settings' values with ``.with_options(timeout_seconds=..., retries=...)``."""
    return task(
        retries=retries,
        retry_delay_seconds=RETRY_DELAYS_SECONDS,
        retry_condition_fn=retry_transient,
        timeout_seconds=timeout_seconds,
        cache_policy=NO_CACHE,
    )
