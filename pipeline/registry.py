"""MLflow's Model Registry: where the store is, versions by alias, loading, registering.

``ModelRef`` (a resolved version) and the registry errors are importable without MLflow: this
module imports MLflow only inside the functions that talk to it, so the scoring loop
(:mod:`pipeline.batch`) can name a model version without loading the MLflow client.

Aliases: every new version gets the challenger alias; the very first version (or a version
registered when no version holds champion) also gets champion; later only
:func:`pipeline.promotion.promote` moves champion. Scoring resolves an alias once per run.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
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


def resolve_alias(settings: Settings, alias: str | None = None) -> ModelRef:
    """Resolve ``models:/NAME@alias`` to a version once, with a clear error when it is missing."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(settings)
    name = settings.tracking.registered_model
    alias = alias or settings.tracking.champion_alias
    try:
        version = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        detail = redact(_first_line(str(exc)))
        unreachable = "Max retries exceeded" in detail or "Connection" in detail
        hint = (
            "check that the tracking server is up and reachable (MLFLOW_TRACKING_URI)"
            if unreachable
            else "train a model first (vae-anomaly train) or set the alias"
        )
        error = RegistryUnavailableError if unreachable else RegistryError
        where = redact(settings.tracking.resolved_uri())
        raise error(f"cannot resolve models:/{name}@{alias} at {where}: {detail}; {hint}") from None
    return ModelRef(
        name=name, version=str(version.version), run_id=str(version.run_id), alias=alias
    )


def version_ref(settings: Settings, version: str) -> ModelRef:
    """The registered ``version`` of the configured model (RegistryError when it is missing)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(settings)
    name = settings.tracking.registered_model
    try:
        model_version = MlflowClient().get_model_version(name, str(version))
    except MlflowException:
        raise RegistryError(f"model {name!r} has no version {version!r}") from None
    return ModelRef(name, str(version), str(model_version.run_id), alias="")


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


def register_version(settings: Settings, model_uri: str, tags: dict[str, str]) -> ModelRef:
    """Register the logged model at ``model_uri`` as a new version with ``tags``; give it the
    challenger alias, and champion when it is the first version or no version holds it (a
    retried registration after a failure between registering and setting the alias)."""
    import mlflow
    from mlflow import MlflowClient

    name = settings.tracking.registered_model
    version = mlflow.register_model(model_uri, name)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    client.set_registered_model_alias(name, settings.tracking.challenger_alias, version.version)
    champion = settings.tracking.champion_alias
    if int(version.version) == 1 or champion not in client.get_registered_model(name).aliases:
        client.set_registered_model_alias(name, champion, version.version)
    return ModelRef(
        name=name,
        version=str(version.version),
        run_id=str(version.run_id),
        alias=settings.tracking.challenger_alias,
    )
