"""Progress bars for long work (training epochs) shown on the command line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

from vae import EpochStats


@contextmanager
def epoch_progress(
    max_epochs: int, enabled: bool = True
) -> Iterator[Callable[[EpochStats], None] | None]:
    """A per-epoch callback that advances a tqdm bar (None when disabled)."""
    if not enabled:
        yield None
        return
    bar = tqdm(total=max_epochs, desc="training", unit="epoch", leave=True)

    def on_epoch(stats: EpochStats) -> None:
        bar.update(1)
        bar.set_postfix(train=f"{stats.train_loss:.3f}", val=f"{stats.val_loss:.3f}")

    try:
        yield on_epoch
    finally:
        bar.close()
