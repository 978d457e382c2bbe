"""The detectors: vae-anomaly (with ``--vae-set`` overrides) and the PyOD baselines, built
the same way for every split; and what goes into their cache keys."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from benchmarks.common import PROJECT_ROOT, default_settings, frame_of, relevant_settings

VAE_NAME = "vae-anomaly"
BASELINES = ("pyod-vae", "iforest", "ecod")
DETECTORS = (VAE_NAME, *BASELINES)


class Model(Protocol):
    def fit(self, x: Any) -> object: ...

    def decision_function(self, x: Any) -> np.ndarray: ...


def _identity(x: np.ndarray) -> Any:
    return x


@dataclass(frozen=True)
class DetectorSpec:
    """How to build, feed and describe one detector."""

    name: str
    make: Callable[[int], Model]  # seed -> a fresh, unfitted model
    config: str  # goes into the cache key: change it and cached results are not reused
    prepare: Callable[[np.ndarray], Any] = _identity  # untimed conversion of the input
    info: Callable[[Model], str] = lambda _model: ""


class ProjectDetector:
    """``AnomalyDetector`` with the ``fit`` / ``decision_function`` interface of the baselines."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.detector: Any = None

    def fit(self, frame: pd.DataFrame) -> ProjectDetector:
        from pipeline.detector import AnomalyDetector

        self.detector = AnomalyDetector(self.settings).fit(frame)
        return self

    def decision_function(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.detector.score_samples(frame), dtype=np.float64)

    def describe(self) -> str:
        det = self.detector
        if det is None:
            return ""
        parts = []
        history = getattr(det, "history_", None)
        if history is not None:
            parts.append(f"epochs={len(history)}")
        if hasattr(det, "best_epoch_"):
            parts.append(f"best_epoch={det.best_epoch_}")
        config = getattr(det, "vae_config_", None)
        if config is not None:
            parts.append(f"hidden={list(config.hidden_dims)} latent={config.latent_dim}")
        return " ".join(parts)


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["training.beta=0.1", "model.hidden_dims=[64,32]"]`` -> ``{"training": {...}, ...}``.

    Values are read as JSON when they parse (numbers, booleans, lists), else kept as text.
    """
    sections: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            raise SystemExit(f"--vae-set expects section.key=value, got {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        sections.setdefault(section, {})[name] = value
    return sections


def vae_settings(overrides: dict[str, dict[str, Any]]) -> Any:
    """``Settings()`` (read now, so the project's current defaults) with the overrides applied."""
    settings = default_settings()
    return settings.with_overrides(**overrides) if overrides else settings


def source_hash(root: Path = PROJECT_ROOT) -> str:
    """sha1 of the project's model code (``vae/``, ``pipeline/``): part of the vae cache key."""
    digest = hashlib.sha1()
    for package in ("vae", "pipeline"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def short_hash(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def build_specs(names: Sequence[str], settings: Any, code: str) -> list[DetectorSpec]:
    specs: list[DetectorSpec] = []
    for name in names:
        if name == VAE_NAME:
            config = f"settings={short_hash(relevant_settings(settings))} code={code}"
            specs.append(
                DetectorSpec(
                    VAE_NAME,
                    make=lambda _seed: ProjectDetector(settings),
                    config=config,
                    prepare=frame_of,
                    info=lambda m: m.describe() if isinstance(m, ProjectDetector) else "",
                )
            )
        elif name == "pyod-vae":

            def make_vae(seed: int) -> Model:
                from pyod.models.vae import VAE

                return VAE(random_state=seed, verbose=0)

            specs.append(DetectorSpec(name, make_vae, "VAE(random_state=seed, verbose=0)"))
        elif name == "iforest":

            def make_iforest(seed: int) -> Model:
                from pyod.models.iforest import IForest

                return IForest(random_state=seed)

            specs.append(DetectorSpec(name, make_iforest, "IForest(random_state=seed)"))
        elif name == "ecod":

            def make_ecod(_seed: int) -> Model:
                from pyod.models.ecod import ECOD

                return ECOD()

            specs.append(DetectorSpec(name, make_ecod, "ECOD()"))
        else:
            raise SystemExit(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    return specs
