"""Figures of a training run: loss curves, and the validation score histogram with the threshold."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from vae import EpochStats


def loss_curves(history: list[EpochStats], best_epoch: int) -> Figure:
    """Train and validation loss, with the reconstruction and KL parts, per epoch."""
    epochs = [h.epoch for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    panels = [
        ("loss (negative ELBO)", "train_loss", "val_loss"),
        ("reconstruction term", "train_recon", "val_recon"),
        ("KL term", "train_kl", "val_kl"),
    ]
    for ax, (title, train, val) in zip(axes, panels, strict=True):
        ax.plot(epochs, [getattr(h, train) for h in history], label="train")
        ax.plot(epochs, [getattr(h, val) for h in history], label="validation")
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
    axes[0].legend()
    return fig


def score_histogram(
    scores: np.ndarray, threshold: float, title: str = "validation scores"
) -> Figure:
    """Histogram of anomaly scores with the threshold marked."""
    fig, ax = plt.subplots(figsize=(7, 3.6), constrained_layout=True)
    finite = scores[np.isfinite(scores)]
    ax.hist(finite, bins=min(100, max(10, finite.size // 20)), color="#4477aa")
    ax.axvline(threshold, color="#cc3311", linewidth=2, label=f"threshold {threshold:.4g}")
    flagged = float((finite > threshold).mean()) if finite.size else 0.0
    ax.set_title(f"{title}: {finite.size} rows, {flagged:.2%} above the threshold")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("rows")
    ax.set_yscale("log")
    ax.legend()
    return fig
