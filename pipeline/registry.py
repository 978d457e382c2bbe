"""MLflow's Model Registry: where the store is, versions by alias, loading, registering.

``ModelRef`` (a resolved version) and the registry errors are importable without MLflow: this
module imports MLflow only inside the functions that talk to it, so the scoring loop
(:mod:`pipeline.batch`) can name a model version without loading the MLflow client.

Aliases: every new version gets the challenger alias; the very first version (or a version
registered when no version holds champion) also gets champion, if it passes the gate's sanity
checks; later only :func:`pipeline.promotion.promote` moves champion. Scoring resolves an
alias once per run.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings, redact

if TYPE_CHECKING:
    from pipeline.detector import AnomalyDetector


class RegistryError(RuntimeError):
    """The registered model or alias asked for does not exist (or the registry is unreachable)."""


class RegistryUnavailableError(RegistryError):
    """The tracking server could not be reached: a retry later may succeed."""


class IncompleteRegistrationError(RegistryError):
    """A version was registered, but a step after it failed. Not retried: a retry would
    register the model again, as a second version."""

    def __init__(self, name: str, version: str, step: str, error: BaseException) -> None:
        detail = redact(_first_line(f"{type(error).__name__}: {error}"))
        super().__init__(
            f"{name} version {version} was registered, but {step} failed ({detail}); not "
            "retried, as that would register the model again: check the version's tags and "
            f"aliases, and make it champion with `vae-anomaly promote {version}` if it should be"
        )
        self.version = version


@dataclass(frozen=True)
class ModelRef:
    """A registered model version resolved from an alias."""

    name: str
    version: str
    run_id: str
    alias: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def describe(self) -> dict[str, Any]:
        """The model's facts as the outputs name them."""
        return {"model_name": self.name, "model_version": self.version, "model_run_id": self.run_id}


@contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Hide MLflow's advice that does not apply here (type hints on predict, int columns)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method")
        warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column")
        yield


def configure(settings: Settings) -> str:
    """Point MLflow at the configured store; create the local SQLite folder if needed."""
    import mlflow

    uri = settings.tracking.resolved_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


_HTTP_SETTINGS = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
# the longest single HTTP attempt within a budget, and the waits between attempts
_ATTEMPT_TIMEOUT_SECONDS = 20.0
_RETRY_WAITS_SECONDS = (1.0, 2.0, 4.0, 8.0)


@contextmanager
def _one_http_attempt(timeout_seconds: float) -> Iterator[None]:
    """MLflow's REST client without its own retries (7 by default, with back-off) and with a
    time limit per request: the caller's budget decides how often to try."""
    saved = {key: os.environ.get(key) for key in _HTTP_SETTINGS}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, round(timeout_seconds)))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _unreachable(detail: str) -> bool:
    return any(
        marker in detail
        for marker in ("Max retries exceeded", "Connection", "timed out", "Read timed out")
    )


def within_budget(settings: Settings, what: str, call: Callable[[], Any]) -> Any:
    """``call()`` (an MLflow request to the configured tracking store) retried while the
    server is unreachable, for at most ``tracking.resolve_timeout_seconds`` in all; then
    :class:`RegistryUnavailableError` saying what to check. Errors other than an unreachable
    server are raised at once (as :class:`RegistryError`). ``what`` starts either message."""
    from mlflow.exceptions import MlflowException

    configure(settings)
    budget_seconds = settings.tracking.resolve_timeout_seconds
    where = redact(settings.tracking.resolved_uri())
    deadline = time.monotonic() + budget_seconds
    waits = iter(_RETRY_WAITS_SECONDS)
    attempts = 0
    while True:
        remaining = deadline - time.monotonic()
        attempts += 1
        try:
            with _one_http_attempt(min(_ATTEMPT_TIMEOUT_SECONDS, max(1.0, remaining))):
                return call()
        except MlflowException as exc:
            detail = redact(_first_line(str(exc)))
            if not _unreachable(detail):
                raise RegistryError(
                    f"{what} at {where}: {detail}; train a model first (vae-anomaly train) "
                    "or set the alias"
                ) from None
            wait = next(waits, _RETRY_WAITS_SECONDS[-1])
            if time.monotonic() + wait >= deadline:
                raise RegistryUnavailableError(
                    f"{what} at {where}: {detail}; check that the tracking server is up and "
                    f"reachable (MLFLOW_TRACKING_URI); gave up after {attempts} attempt(s) "
                    f"within the {budget_seconds:g} s budget "
                    "(VAE_ANOMALY_TRACKING__RESOLVE_TIMEOUT_SECONDS)"
                ) from None
            time.sleep(wait)


def resolve_alias(settings: Settings, alias: str | None = None) -> ModelRef:
    """Resolve ``models:/NAME@alias`` to a version once, with a clear error when it is missing.

    An unreachable tracking server is retried within one time budget
    (``tracking.resolve_timeout_seconds``, 60 s by default), then reported.
    """
    from mlflow import MlflowClient

    name = settings.tracking.registered_model
    alias = alias or settings.tracking.champion_alias
    version = within_budget(
        settings,
        f"cannot resolve models:/{name}@{alias}",
        lambda: MlflowClient().get_model_version_by_alias(name, alias),
    )
    return ModelRef(
        name=name, version=str(version.version), run_id=str(version.run_id), alias=alias
    )


def version_ref(settings: Settings, version: str) -> ModelRef:
    """The registered ``version`` of the configured model (RegistryError when it is missing)."""
    from mlflow import MlflowClient

    name = settings.tracking.registered_model
    try:
        model_version = within_budget(
            settings,
            f"cannot read version {version!r} of {name!r}",
            lambda: MlflowClient().get_model_version(name, str(version)),
        )
    except RegistryUnavailableError:
        raise  # the server is down: not a missing version
    except RegistryError:
        raise RegistryError(f"model {name!r} has no version {version!r}") from None
    return ModelRef(name, str(version), str(model_version.run_id), alias="")


def champion_version(settings: Settings) -> str | None:
    """The version the champion alias points to, None when no version holds it (or the model
    is not registered yet); :class:`RegistryUnavailableError` when the server cannot be
    reached, which must not read as "no champion"."""
    from mlflow import MlflowClient

    try:
        model = within_budget(
            settings,
            "cannot read the registered model",
            lambda: MlflowClient().get_registered_model(settings.tracking.registered_model),
        )
    except RegistryUnavailableError:
        raise
    except RegistryError:
        return None
    version = model.aliases.get(settings.tracking.champion_alias)
    return None if version is None else str(version)


def tracking_reachable(settings: Settings) -> None:
    """Fail early, within ``tracking.resolve_timeout_seconds``, when the tracking server cannot
    be reached (before minutes of training are spent on a model that could not be logged)."""
    from mlflow import MlflowClient

    within_budget(
        settings,
        "cannot reach the MLflow tracking store",
        lambda: MlflowClient().search_experiments(max_results=1),
    )


def load_detector(ref: ModelRef, device: str | None = None) -> AnomalyDetector:
    """Load a registered version through MLflow's pyfunc loader (checksums verified), on
    ``device`` when given (else the saved ``training.device``)."""
    import mlflow

    from vae import pick_device

    with quiet_mlflow():
        model = mlflow.pyfunc.load_model(ref.uri)
    detector: AnomalyDetector = model.unwrap_python_model().detector
    if device is not None:
        target = pick_device(device)
        detector.model_.to(target)
        detector.device_ = str(target)
    return detector


def register_version(
    settings: Settings, model_uri: str, tags: dict[str, str], champion_if_none: bool = True
) -> ModelRef:
    """Register the logged model at ``model_uri`` as a new version with ``tags``; give it the
    challenger alias, and champion when no version holds it (the first version) and
    ``champion_if_none`` (it passed the gate's sanity checks: see
    :func:`pipeline.promotion.new_version_gate`). A failure after the version exists is an
    :class:`IncompleteRegistrationError` (never retried)."""
    import mlflow
    from mlflow import MlflowClient

    name = settings.tracking.registered_model
    version = mlflow.register_model(model_uri, name)
    client = MlflowClient()
    try:
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
        client.set_registered_model_alias(name, settings.tracking.challenger_alias, version.version)
        champion = settings.tracking.champion_alias
        if champion_if_none and champion not in client.get_registered_model(name).aliases:
            client.set_registered_model_alias(name, champion, version.version)
    except Exception as exc:
        raise IncompleteRegistrationError(
            name, str(version.version), "setting its tags and aliases", exc
        ) from exc
    return ModelRef(
        name=name,
        version=str(version.version),
        run_id=str(version.run_id),
        alias=settings.tracking.challenger_alias,
    )
