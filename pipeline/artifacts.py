"""A fitted detector on disk, without pickled Python objects, checked at load.

Files of a saved detector: ``weights.pt`` (the torch state dict, loaded with
``weights_only=True``), ``preprocess.json`` (the fitted encoding), ``detector.json`` (settings,
architecture, schema, threshold, score statistics, training history), ``reference.parquet``
(the held-out training rows: drift reference and reasons' candidates) and ``checksums.json``
(sha256 of each file, verified before anything is read).

What a loaded model keeps from training is what defines it: data roles, encoding,
architecture and weights, the score definition (``scoring.score``, ``scoring.kl_weight``) and
the threshold. How to run it (inference batch size, Monte Carlo samples, reasons, outputs,
device) is not taken from the saved settings: the caller passes it (``score(scoring=...)``,
``load(device=...)``); the loaded settings hold the defaults.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from pipeline.checksums import verify_checksums, write_checksums
from pipeline.config import ScoringSettings, Settings
from pipeline.preprocess import TabularPreprocessor
from pipeline.schema import TableSchema
from pipeline.scoring import ScoreStats
from vae import VAE, EpochStats, VAEConfig, pick_device

if TYPE_CHECKING:
    from pipeline.detector import AnomalyDetector

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"
PREPROCESS_FILE = "preprocess.json"
DETECTOR_FILE = "detector.json"
REFERENCE_FILE = "reference.parquet"
# every file a model needs: the checksum manifest must vouch for each of them
MODEL_FILES = (WEIGHTS_FILE, PREPROCESS_FILE, DETECTOR_FILE, REFERENCE_FILE)


@dataclass
class SavedDetector:
    """The learned state of a detector read back from disk."""

    settings: Settings
    schema: TableSchema
    preprocessor: TabularPreprocessor
    vae_config: VAEConfig
    model: VAE
    threshold: float
    score_stats: ScoreStats
    reference_quantiles: np.ndarray
    best_epoch: int
    n_train_rows: int
    trimmed_rows: int
    history: list[EpochStats]
    device: str
    reference_frame: pd.DataFrame


def metadata(detector: AnomalyDetector) -> dict[str, Any]:
    """The JSON document ``detector.json`` of a fitted detector."""
    return {
        "format_version": FORMAT_VERSION,
        "settings": detector.settings.public_dump(),
        "vae_config": detector.vae_config_.to_dict(),
        "schema": detector.schema_.to_dict(),
        "threshold": detector.threshold_,
        # without an empty "tails" or "precision" (only tail_max and scaled_elbo have them):
        # earlier releases read the file
        "score_stats": {
            k: v
            for k, v in dataclasses.asdict(detector.score_stats_).items()
            if k not in ("tails", "precision") or v
        },
        "reference_quantiles": detector.reference_quantiles_.tolist(),
        "best_epoch": detector.best_epoch_,
        "n_train_rows": detector.n_train_rows_,
        "trimmed_rows": detector.trimmed_rows_,
        "history": [h.to_dict() for h in detector.history_],
    }


def save(detector: AnomalyDetector, directory: str | Path) -> Path:
    """Write a fitted detector's files (see the module notes) to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in detector.model_.state_dict().items()}
    torch.save(state, directory / WEIGHTS_FILE)
    preprocess = json.dumps(detector.preprocessor_.to_dict(), indent=1)
    (directory / PREPROCESS_FILE).write_text(preprocess)
    (directory / DETECTOR_FILE).write_text(json.dumps(metadata(detector), indent=1))
    detector.reference_frame_.to_parquet(directory / REFERENCE_FILE, index=False)
    write_checksums(directory)
    return directory


def loaded_settings(saved: Settings) -> Settings:
    """The settings of a loaded model: the saved ones, with the scoring options at their
    defaults except the score definition, and no tracking URI (that of the training machine,
    credentials redacted, means nothing here)."""
    scoring = ScoringSettings(score=saved.scoring.score, kl_weight=saved.scoring.kl_weight)
    tracking = saved.tracking.model_copy(update={"uri": None})
    return saved.model_copy(update={"scoring": scoring, "tracking": tracking})


def read(directory: str | Path, device: str | None = None) -> SavedDetector:
    """Read a detector written by :func:`save`, refusing any file whose checksum differs.

    ``device``: where the model goes (default: the saved ``training.device``, ``auto`` =
    CUDA when available).
    """
    directory = Path(directory)
    verify_checksums(directory, MODEL_FILES)
    meta = json.loads((directory / DETECTOR_FILE).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{directory}: model format {meta.get('format_version')} is not supported "
            f"(this version reads {FORMAT_VERSION})"
        )
    settings = loaded_settings(Settings.model_validate(meta["settings"]))
    vae_config = VAEConfig.from_dict(meta["vae_config"])
    target = pick_device(device or settings.training.device)
    model = VAE(vae_config)
    model.load_state_dict(
        torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    )
    reference = directory / REFERENCE_FILE
    return SavedDetector(
        settings=settings,
        schema=TableSchema.from_dict(meta["schema"]),
        preprocessor=TabularPreprocessor.from_dict(
            json.loads((directory / PREPROCESS_FILE).read_text())
        ),
        vae_config=vae_config,
        model=model.to(target).eval(),
        threshold=float(meta["threshold"]),
        score_stats=ScoreStats(**meta["score_stats"]),
        reference_quantiles=np.asarray(meta["reference_quantiles"]),
        best_epoch=int(meta["best_epoch"]),
        n_train_rows=int(meta["n_train_rows"]),
        trimmed_rows=int(meta.get("trimmed_rows", 0)),
        history=[EpochStats(**{**h, "epoch": int(h["epoch"])}) for h in meta["history"]],
        device=str(target),
        reference_frame=pd.read_parquet(reference) if reference.exists() else pd.DataFrame(),
    )
