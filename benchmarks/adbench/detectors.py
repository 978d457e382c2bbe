"""The detectors: vae-anomaly (with ``--vae-set`` overrides, once per model seed), the PyOD
baselines and AVF, built the same way for every split of a suite; the untimed preparation of
their inputs (the ADBench arrays as they are, the categorical tables one-hot encoded for the
PyOD baselines); and what goes into their cache keys."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from benchmarks.adbench.data import Split
from benchmarks.common import PROJECT_ROOT, default_settings, frame_of, relevant_settings

VAE_NAME = "vae-anomaly"
AVF_NAME = "avf"
BASELINES = ("pyod-vae", "iforest", "ecod", AVF_NAME)
DETECTORS = (VAE_NAME, *BASELINES)
CATEGORICAL_ONLY = (AVF_NAME,)  # meaningless on continuous values (every value is rare)

Kind = Literal["numeric", "categorical"]  # what a suite's splits hold
MISSING = "__missing__"  # a missing categorical value as its own value (as the product does)
ONE_HOT = "OneHotEncoder(handle_unknown='ignore') fitted on train, missing as a category"


class Model(Protocol):
    def fit(self, x: Any) -> object: ...

    def decision_function(self, x: Any) -> np.ndarray: ...


def as_is(split: Split) -> tuple[Any, Any]:
    return split.x_train, split.x_test


def as_frames(split: Split) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ADBench arrays as the DataFrames vae-anomaly gets: columns ``x0..x{d-1}``."""
    return frame_of(split.x_train), frame_of(split.x_test)


def _with_missing(frame: pd.DataFrame) -> np.ndarray:
    return frame.astype(object).fillna(MISSING).to_numpy()


def one_hot(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Text tables -> dense float one-hot arrays, the encoder fitted on the train part only;
    a test value unseen in training encodes as all zeros in its column."""
    from sklearn.preprocessing import OneHotEncoder

    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)
    train = encoder.fit_transform(_with_missing(split.x_train))
    test = encoder.transform(_with_missing(split.x_test))
    return np.ascontiguousarray(train), np.ascontiguousarray(test)


@dataclass(frozen=True)
class DetectorSpec:
    """How to build, feed and describe one detector."""

    name: str
    make: Callable[[Split], Model]  # a fresh, unfitted model for this split
    config: str  # goes into the cache key: change it and cached results are not reused
    # untimed preparation of the (train, test) inputs; anything fitted is fitted on train only
    prepare: Callable[[Split], tuple[Any, Any]] = as_is
    info: Callable[[Model], str] = lambda _model: ""
    model_seed: int | None = None  # vae-anomaly: its training.seed
    label: str = ""  # how the progress lines name it (default: the name)


class AVF:
    """Attribute Value Frequency (Koufakou et al. 2007): minus the mean over columns of the log
    of the value's relative frequency in the train part; a value unseen in training (missing
    included) counts as frequency 1/(n+1). Missing is a value of its own. Deterministic."""

    def fit(self, frame: pd.DataFrame) -> AVF:
        n = len(frame)
        self.columns_ = list(frame.columns)
        self.log_unseen_ = float(np.log(1.0 / (n + 1)))
        self.log_freq_ = {
            c: np.log(frame[c].astype(object).fillna(MISSING).value_counts() / n)
            for c in self.columns_
        }
        return self

    def decision_function(self, frame: pd.DataFrame) -> np.ndarray:
        logs = np.column_stack(
            [
                frame[c].astype(object).fillna(MISSING).map(self.log_freq_[c]).to_numpy(float)
                for c in self.columns_
            ]
        )
        logs[np.isnan(logs)] = self.log_unseen_  # values not seen in training
        return -logs.mean(axis=1)


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
        schema = getattr(det, "schema_", None)
        if schema is not None and (schema.categorical_columns or schema.id_columns):
            # the roles the product gave the columns (the categorical suite declares them all)
            parts.append(
                f"roles: categorical={len(schema.categorical_columns)} "
                f"numeric={len(schema.numeric_columns)} id={len(schema.id_columns)}"
            )
            pre = getattr(det, "preprocessor_", None)
            if pre is not None:
                parts.append(f"features={pre.n_features}")
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


def with_model_seed(settings: Any, seed: int) -> Any:
    """The settings with ``training.seed`` set (unchanged when it already is ``seed``)."""
    if settings.training.seed == seed:
        return settings
    return settings.with_overrides(training={"seed": seed})


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


def applicable(names: Sequence[str], kind: Kind) -> list[str]:
    """The detectors of ``names`` that run on a suite of this kind (AVF: categorical only)."""
    return [n for n in names if kind == "categorical" or n not in CATEGORICAL_ONLY]


def _vae_spec(settings: Any, code: str, kind: Kind, label: str) -> DetectorSpec:
    config = f"settings={short_hash(relevant_settings(settings))} code={code}"
    if kind == "categorical":
        config += " data.categorical_columns=all"

    def make(split: Split) -> Model:
        if kind == "numeric":
            return ProjectDetector(settings)
        # the table as a user has it: text columns, every one declared categorical
        columns = [str(c) for c in split.x_train.columns]
        return ProjectDetector(settings.with_overrides(data={"categorical_columns": columns}))

    return DetectorSpec(
        VAE_NAME,
        make=make,
        config=config,
        prepare=as_frames if kind == "numeric" else as_is,
        info=lambda m: m.describe() if isinstance(m, ProjectDetector) else "",
        model_seed=int(settings.training.seed),
        label=label,
    )


def build_specs(
    names: Sequence[str],
    settings: Any,
    code: str,
    kind: Kind = "numeric",
    model_seeds: Sequence[int] | None = None,
) -> list[DetectorSpec]:
    """The specs of one suite; vae-anomaly once per model seed (default: the settings' own)."""
    specs: list[DetectorSpec] = []
    # the PyOD baselines get arrays: as they are (ADBench), one-hot encoded (categorical)
    prepare = as_is if kind == "numeric" else one_hot
    suffix = "" if kind == "numeric" else f" on {ONE_HOT}"
    for name in names:
        if name == VAE_NAME:
            seeds = list(model_seeds) if model_seeds else [int(settings.training.seed)]
            for seed in dict.fromkeys(seeds):
                label = VAE_NAME if len(seeds) == 1 else f"{VAE_NAME}@{seed}"
                specs.append(_vae_spec(with_model_seed(settings, seed), code, kind, label))
        elif name == "pyod-vae":

            def make_vae(split: Split) -> Model:
                from pyod.models.vae import VAE

                return VAE(random_state=split.seed, verbose=0)

            config = "VAE(random_state=seed, verbose=0)" + suffix
            specs.append(DetectorSpec(name, make_vae, config, prepare))
        elif name == "iforest":

            def make_iforest(split: Split) -> Model:
                from pyod.models.iforest import IForest

                return IForest(random_state=split.seed)

            specs.append(
                DetectorSpec(name, make_iforest, "IForest(random_state=seed)" + suffix, prepare)
            )
        elif name == "ecod":

            def make_ecod(_split: Split) -> Model:
                from pyod.models.ecod import ECOD

                return ECOD()

            specs.append(DetectorSpec(name, make_ecod, "ECOD()" + suffix, prepare))
        elif name == AVF_NAME:
            if kind != "categorical":
                raise SystemExit(f"{AVF_NAME} runs on the categorical suite only")
            specs.append(DetectorSpec(name, lambda _split: AVF(), "AVF(missing=own value)"))
        else:
            raise SystemExit(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    return specs
