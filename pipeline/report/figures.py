"""Every matplotlib figure of the reports and of a training run, and the PNG data-URI helper.

Figures are drawn on the Agg backend (no display on servers and in CI). A column name is shown
as is: ``cost $x^$`` is data, not a TeX formula.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from vae import EpochStats

DPI = 80  # small figures keep a report at a few hundred KB
STATUS_COLOURS = {"ok": "#4477aa", "warn": "#ee9922", "drift": "#cc3311"}


def png_data_uri(fig: Figure) -> str:
    """The figure as a base64 PNG ``data:`` URI; the figure is closed."""
    buffer = io.BytesIO()
    try:
        # no "Software" text chunk: the page holds no URL at all, not even encoded
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _literal(text: str) -> str:
    """A data string (a column name) shown as is: "cost $x^$" is not a TeX formula."""
    return text.replace("$", r"\$")


# -- a training run ---------------------------------------------------------------------------


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
    ax.axvline(
        threshold, color="#cc3311", linewidth=2, label=f"threshold {threshold:.2f}: flagged above"
    )
    flagged = float((finite > threshold).mean()) if finite.size else 0.0
    ax.set_title(f"{title}: {finite.size} rows, {flagged:.2%} above the threshold")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("rows")
    ax.set_yscale("log")
    ax.legend()
    return fig


def column_error_bars(columns: list[str], errors: list[float]) -> Figure:
    """Mean reconstruction error per source column (horizontal bars, largest on top)."""
    height = 1.2 + 0.28 * max(1, len(columns))
    fig, ax = plt.subplots(figsize=(7.5, height), constrained_layout=True)
    order = np.argsort(errors)
    ax.barh([_literal(columns[i]) for i in order], np.asarray(errors)[order], color="#4477aa")
    ax.set_xlabel("mean weighted squared error (validation rows)")
    ax.set_title("reconstruction error per column")
    return fig


def latent_scatter(
    coords: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    explained: tuple[float, float] = (np.nan, np.nan),
) -> Figure:
    """2-D view of latent means, coloured by anomaly score; rows above the threshold circled."""
    fig, ax = plt.subplots(figsize=(6.5, 4.6), constrained_layout=True)
    order = np.argsort(scores)  # anomalous rows drawn last, on top
    points = ax.scatter(
        coords[order, 0], coords[order, 1], c=scores[order], s=8, cmap="viridis", alpha=0.8
    )
    flagged = scores > threshold
    if flagged.any():
        ax.scatter(
            coords[flagged, 0],
            coords[flagged, 1],
            s=40,
            facecolors="none",
            edgecolors="#cc3311",
            linewidths=1.0,
            label=f"above the threshold ({int(flagged.sum())})",
        )
        ax.legend(fontsize=8, loc="best")
    fig.colorbar(points, ax=ax, label="anomaly score")
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of the variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of the variance)")
    ax.set_title("latent means of the validation rows (PCA)")
    return fig


# -- a scoring run ----------------------------------------------------------------------------


def binned_score_histogram(
    edges: np.ndarray,
    counts: np.ndarray,
    threshold: float,
    title: str = "batch scores",
    beyond: tuple[int, int] = (0, 0),
    observed: tuple[float, float] = (np.nan, np.nan),
) -> Figure:
    """An already-binned score histogram (log y) with the threshold marked.

    The x-axis spans the bins that hold rows, and the threshold: the data's range, not the
    range the bins were laid out for. ``beyond`` gives the rows below the first and above the
    last edge, which are counted in the outer bins; ``observed`` the lowest and highest score
    counted. Both are said in the legend.
    """
    fig, ax = plt.subplots(figsize=(7.5, 3.2), constrained_layout=True)
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    ax.hist(edges[:-1], bins=list(edges), weights=counts, color="#4477aa", log=bool(counts.sum()))
    ax.axvline(
        threshold,
        color="#cc3311",
        linewidth=2,
        label=f"threshold {threshold:.2f}: rows to its right are flagged",
    )
    lowest, highest = observed
    below, above = beyond
    if above:
        ax.plot(
            [],
            [],
            " ",
            label=f"the rightmost bar also counts {above} rows scoring above {edges[-1]:.2f}"
            + (f" (up to {highest:.2f})" if np.isfinite(highest) else ""),
        )
    if below:
        ax.plot(
            [],
            [],
            " ",
            label=f"the leftmost bar also counts {below} rows scoring below {edges[0]:.2f}"
            + (f" (down to {lowest:.2f})" if np.isfinite(lowest) else ""),
        )
    total = int(counts.sum())
    held = np.flatnonzero(counts)
    if held.size:
        left = min(edges[held[0]], threshold)
        right = max(edges[held[-1] + 1], threshold)
        pad = 0.03 * max(right - left, 1e-9)
        ax.set_xlim(left - pad, right + pad)
    top = f", highest {highest:.2f}" if total and np.isfinite(highest) else ""
    ax.set_title(f"{title}: {total} rows{top}")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("rows (log scale)")
    if total:
        ax.set_ylim(0.7, max(2.0, counts.max() * 1.5))
    ax.legend(fontsize=8, loc="upper right")  # log counts: the right side is low
    return fig


def psi_bars(
    columns: list[str], psi: list[float], statuses: list[str], warn: float, drift: float
) -> Figure:
    """PSI per column (horizontal bars coloured by status) with the warn and drift lines."""
    height = 1.2 + 0.28 * max(1, len(columns))
    fig, ax = plt.subplots(figsize=(7.5, height), constrained_layout=True)
    order = np.argsort(psi)
    values = np.asarray(psi, dtype=np.float64)[order]
    ax.barh(
        [_literal(columns[i]) for i in order],
        values,
        color=[STATUS_COLOURS.get(statuses[i], "#777777") for i in order],
    )
    ax.axvline(warn, color=STATUS_COLOURS["warn"], linestyle="--", label=f"warn {warn}")
    ax.axvline(drift, color=STATUS_COLOURS["drift"], linestyle="--", label=f"drift {drift}")
    if values.size and values.max() > 5 * drift:
        ax.set_xscale("symlog", linthresh=drift)
    ax.set_xlabel("population stability index (PSI)")
    ax.set_title("drift per column, against the training data")
    ax.legend(fontsize=8, loc="lower right")
    return fig
