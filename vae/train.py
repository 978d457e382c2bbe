"""The fit loop: seeded, device-aware, with early stopping on a validation split.

No tracking library is imported here: per-epoch numbers go out through a callback.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from vae.infer import LogScale, as_tensor, score_arrays
from vae.loss import elbo_terms, influence_weights
from vae.model import VAE, VAEConfig
from vae.optim import Adam


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for :func:`fit_vae`."""

    max_epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    beta: float = 1.0
    patience: int = 10
    min_delta: float = 1e-4
    seed: int = 42
    device: str = "auto"
    feature_reduction: str = "sum"
    # at the start of epoch trim_epoch, drop the trim_fraction of training (and validation)
    # rows that the model finds most anomalous so far, and train on the rest (0: no trimming);
    # an early stop due before trim_epoch trims at that point instead, and training goes on
    trim_fraction: float = 0.0
    trim_epoch: int = 0
    # with trim_fence k > 0, only the rows beyond the far-out fence Q3 + k * IQR of that score
    # are dropped, trim_fraction of them at most (a table without far-out rows loses none)
    trim_fence: float = 0.0
    # from epoch downweight_epoch on, the downweight_fraction of each batch's rows with the
    # highest loss count with bounded weight (vae.loss.influence_weights; 0: all rows equal)
    downweight_fraction: float = 0.0
    downweight_epoch: int = 10
    # the weights validated and kept are an exponential moving average of the optimiser's
    # iterates over about this many epochs (0: the last iterate; see _WeightAverage)
    average_epochs: float = 0.0
    # CPU threads for training; small MLP steps gain nothing from intra-op threads, and spinning
    # threads collapse when another process shares the cores (measured: 0.23 s vs 14 s)
    cpu_threads: int = 1


@dataclass(frozen=True)
class EpochStats:
    """Mean per-record losses of one epoch (validation ones are NaN without a validation set)."""

    epoch: int
    train_loss: float
    train_recon: float
    train_kl: float
    val_loss: float
    val_recon: float
    val_kl: float
    seconds: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass
class TrainResult:
    model: VAE
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    trimmed_rows: int = 0
    kept_rows: np.ndarray | None = None  # positions of the training rows kept by trimming
    device: str = "cpu"
    train_seconds: float = 0.0


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cpu`` / ``cuda[:n]`` are taken as given."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} asked for, but CUDA is not available here")
    return device


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Use ``n`` torch CPU threads inside the block (0 = leave as is), then restore."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _WeightAverage:
    """An exponential moving average of the model's weights over up to ``epochs`` epochs.

    Adam's last iterate jitters around the minimum it has found, by as much as one step of
    the learning rate moves it; the average of the iterates lies nearer the middle (Polyak
    averaging, as in SWA and the EMA weights of many generative models). A detector ranks its
    rarest rows by fine details of the decoder's output, which this jitter moves from one fit
    to the next.

    The decay at step ``t`` (counted from the start or the last :meth:`restart`) is
    ``min(1 - 1 / (epochs * steps per epoch), (1 + t) / (10 + t))``: the second term lets the
    initial weights soon stop counting, and it holds the window to about a ninth of the steps
    since the (re)start, so the full ``epochs`` window is reached only ``9 * epochs`` epochs
    after it (the default fit: 100 epochs, a restart at trimming, epoch 50, when it drops a
    row, ``epochs`` 5: a window of 5 epochs from epoch 95 on, 4 epochs at epoch 86; without a
    restart the full window is reached at epoch 45). A window under one step
    (``epochs * steps per epoch < 1``) keeps the iterate itself (decay 0).
    """

    def __init__(self, model: VAE, epochs: float, steps_per_epoch: int) -> None:
        self.model = copy.deepcopy(model)
        self.epochs = epochs
        self._params: list[torch.Tensor] = list(self.model.parameters())
        self._source: list[torch.Tensor] = list(model.parameters())
        self.restart(steps_per_epoch)

    def restart(self, steps_per_epoch: int) -> None:
        """Start again from the model's current weights (after trimming, whose earlier
        iterates fitted the trimmed rows too), with ``steps_per_epoch`` steps to an epoch."""
        with torch.no_grad():
            torch._foreach_copy_(self._params, self._source)
        self.decay = max(0.0, 1.0 - 1.0 / (self.epochs * max(1, steps_per_epoch)))
        self.steps = 0

    def update(self) -> None:
        """Move the average towards the model's weights after an optimiser step."""
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        with torch.no_grad():
            torch._foreach_lerp_(self._params, self._source, 1.0 - decay)


def _precision(model: VAE) -> torch.Tensor | None:
    return model.feature_precision() if model.config.decoder_variance == "learned" else None


def _evaluate(
    model: VAE, x: torch.Tensor, config: TrainConfig, batch_size: int, switch_mode: bool = True
) -> tuple[float, float, float]:
    """Mean loss (as trained), recon and KL per record, with the latent mean (deterministic);
    ``switch_mode`` puts the model in eval mode first (it matters with dropout only)."""
    if switch_mode:
        model.eval()
    loss_total = recon_total = kl_total = 0.0
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            batch = x[start : start + batch_size]
            out = model(batch, sample=False)
            terms = elbo_terms(batch, out.recon, out.mu, out.logvar, _precision(model))
            loss_total += float(terms.loss(config.beta, config.feature_reduction)) * batch.shape[0]
            recon_total += float(terms.recon.sum())
            kl_total += float(terms.kl.sum())
    n = max(1, x.shape[0])
    return loss_total / n, recon_total / n, kl_total / n


def fit_vae(
    x_train: np.ndarray,
    x_val: np.ndarray | None,
    vae_config: VAEConfig,
    config: TrainConfig,
    on_epoch: Callable[[EpochStats], Any] | None = None,
) -> TrainResult:
    """Fit a VAE with Adam on mini-batches; stop when the validation loss stops improving.

    The weights of the best validation epoch are restored at the end. Without a validation
    set, the training loss is watched instead.
    """
    if x_train.shape[0] < 2:
        raise ValueError("training needs at least 2 rows")
    if x_train.shape[1] != vae_config.n_features:
        raise ValueError(
            f"training data has {x_train.shape[1]} features, "
            f"the model expects {vae_config.n_features}"
        )
    with cpu_threads(config.cpu_threads):
        return _fit(x_train, x_val, vae_config, config, on_epoch)


def _fit(
    x_train: np.ndarray,
    x_val: np.ndarray | None,
    vae_config: VAEConfig,
    config: TrainConfig,
    on_epoch: Callable[[EpochStats], Any] | None,
) -> TrainResult:
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    model = VAE(vae_config).to(device)
    # Adam's fused kernel updates all parameters in one call (same numbers as the per-tensor
    # loop, about 25% less time per step for these small networks on CPU), called directly
    optimizer = Adam(model.parameters(), config.learning_rate, config.weight_decay)
    xt = as_tensor(x_train, device)
    xv = as_tensor(x_val, device) if x_val is not None and len(x_val) > 0 else None
    n = xt.shape[0]
    batch_size = max(1, min(config.batch_size, n))

    result = TrainResult(model=model, device=str(device))
    best_loss = math.inf
    epochs_without_gain = 0
    downweighting = config.downweight_fraction > 0
    trim_epoch = config.trim_epoch if config.trim_fraction > 0 else 0
    steps = -(-n // batch_size)  # per epoch
    average = _WeightAverage(model, config.average_epochs, steps) if config.average_epochs else None
    kept = model if average is None else average.model  # the weights validated and kept
    # the best epoch's weights, copied in place into tensors allocated once (a deep copy of
    # the state dict each improving epoch cost about 0.4 ms, a tenth of a small table's epoch)
    kept_state = list(kept.state_dict().values())  # views of the weights, updated in place
    best_state = {name: value.clone() for name, value in kept.state_dict().items()}
    best_values = list(best_state.values())
    # the modes only switch dropout (sampling is asked for explicitly): without dropout,
    # setting them each epoch is a walk over every module for nothing
    switch_modes = any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    started = time.perf_counter()
    for epoch in range(1, config.max_epochs + 1):
        t0 = time.perf_counter()
        if epoch == trim_epoch:
            keep_train, cutoff = _untrimmed(
                model, xt, config.trim_fraction, None, config.trim_fence
            )
            result.trimmed_rows = int((~keep_train).sum())
            result.kept_rows = np.flatnonzero(keep_train)
            if result.trimmed_rows:  # a trim that drops no row changes nothing
                xt = xt[torch.from_numpy(keep_train).to(device)]
                n = xt.shape[0]
                if average is not None:
                    average.restart(-(-n // batch_size))
                if xv is not None:
                    keep_val = _untrimmed(model, xv, 0.0, cutoff)[0]
                    if keep_val.any():  # a validation set trimmed away entirely stays whole
                        xv = xv[torch.from_numpy(keep_val).to(device)]
                # the epochs before trimming fitted the anomalies too: only later ones compete
                best_loss = math.inf
        if switch_modes:
            model.train()
        order = torch.randperm(n, generator=generator).to(device)
        sums = np.zeros(3)
        for start in range(0, n, batch_size):
            batch = xt[order[start : start + batch_size]]
            out = model(batch, sample=True)
            terms = elbo_terms(batch, out.recon, out.mu, out.logvar, _precision(model))
            weights = None
            # (a quantile of a handful of rows says little: batches under 8 rows count equally)
            if downweighting and epoch >= config.downweight_epoch and batch.shape[0] >= 8:
                weights = influence_weights(terms, config.beta, config.downweight_fraction)
            loss = terms.loss(config.beta, config.feature_reduction, weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update()
            rows = batch.shape[0]
            sums += np.array(
                [
                    float(loss.detach()) * rows,
                    float(terms.recon.detach().sum()),
                    float(terms.kl.detach().sum()),
                ]
            )
        train_loss, train_recon, train_kl = (sums / n).tolist()
        if xv is not None:
            val_loss, val_recon, val_kl = _evaluate(kept, xv, config, 8192, switch_modes)
        else:
            val_loss = val_recon = val_kl = math.nan
        stats = EpochStats(
            epoch,
            train_loss,
            train_recon,
            train_kl,
            val_loss,
            val_recon,
            val_kl,
            time.perf_counter() - t0,
        )
        result.history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"training diverged at epoch {epoch} (loss {train_loss}); "
                "lower the learning rate or check the input for extreme values"
            )
        watched = val_loss if xv is not None else train_loss
        improved = math.isinf(best_loss) or watched < best_loss - config.min_delta * max(
            1.0, abs(best_loss)
        )
        if improved:
            best_loss = watched
            with torch.no_grad():
                torch._foreach_copy_(best_values, kept_state)
            result.best_epoch = epoch
            epochs_without_gain = 0
        else:
            epochs_without_gain += 1
            if epochs_without_gain >= config.patience:
                if epoch < trim_epoch:
                    # stopping now would skip trimming: trim at the next epoch and go on (the
                    # far-out rows a converged model still fits worst are the ones to drop)
                    trim_epoch, epochs_without_gain = epoch + 1, 0
                    continue
                result.stopped_early = True
                break
    model.load_state_dict(best_state)
    model.eval()
    result.train_seconds = time.perf_counter() - started
    return result


def _untrimmed(
    model: VAE,
    x: torch.Tensor,
    fraction: float,
    cutoff: tuple[LogScale, LogScale, float] | None,
    fence: float = 0.0,
) -> tuple[np.ndarray, tuple[LogScale, LogScale, float]]:
    """Mask of the rows of ``x`` kept by trimming the ``fraction`` that score highest, by
    ``max(z(log recon), z(log kl))`` with the rows' own statistics (the detector's default
    score), and that cutoff (the two scales and the score limit), which ``cutoff`` reapplies.

    With ``fence`` k > 0 the limit is never below Tukey's fence ``Q3 + k * IQR`` of the
    scores (k = 3: his "far out"), so only far-out rows go, ``fraction`` of them at most."""
    model.eval()
    terms = score_arrays(model, x.cpu().numpy())
    if cutoff is None:
        recon_scale, kl_scale = LogScale.fit(terms.recon), LogScale.fit(terms.kl)
    else:
        recon_scale, kl_scale, limit = cutoff
    score = np.maximum(recon_scale.z(terms.recon), kl_scale.z(terms.kl))
    if cutoff is None:
        limit = float(np.quantile(score, 1.0 - fraction))
        if fence > 0:
            q1, q3 = np.quantile(score, [0.25, 0.75])
            limit = max(limit, float(q3 + fence * (q3 - q1)))
    return score <= limit, (recon_scale, kl_scale, limit)
