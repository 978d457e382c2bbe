"""Inference passes of a fitted VAE, shaped so that a row's numbers depend on that row alone;
and the score scaling.

A CPU's matrix kernels choose their code path, and so the order in which they sum, by the
shape of the product and by where each row lies in memory. Measured on an AMD EPYC (MKL
2024.2): a row gave other last bits when scored alone or in a block of 7 rows than in a
block of 16,384, and, inside one block shape, when it sat 1, 2 or 3 rows further down
(``Linear(35, 8)``: a row of 35 floats starts on another 16-byte boundary, and products with
fewer than 12 outputs, such as the latent layers, use a kernel that depends on it). So a
file scored in chunks of 100 rows got other scores than the same file scored whole.

Two rules remove both causes:

- **one shape**: every forward pass sees a batch of exactly ``window`` rows (the last window
  of an input padded with zero rows, whose outputs are dropped), ``window`` rounded up to a
  multiple of :data:`ROW_ALIGN` rows;
- **one alignment**: every layer works on widths padded with zeros to a multiple of
  :data:`LANE` floats (64 bytes: an AVX-512 vector, a cache line), its weights and bias
  padded with zeros (:class:`PaddedVAE`), so each row of every activation starts on a 64-byte
  boundary and every product has at least 16 outputs. A padded unit computes exactly 0 (zero
  weights and bias; each activation maps 0 to 0) and adds exactly 0 to every sum.

Every row then goes through the same instructions wherever it sits in a window and whatever
rows share it, so its numbers are bit-identical across chunkings, block sizes and positions
(``tests/unit/test_loss_and_model.py`` scores rows alone, in blocks of 7, 100 and 16,384,
and shifted by 1 to 7 rows, and asserts equality; so does ``tests/unit/test_streaming.py``
for whole detector outputs, reasons included).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vae.loss import kl_divergence
from vae.model import VAE

ROW_ALIGN = 64  # rows: a multiple of every kernel's row panel and of the vector widths
LANE = 16  # floats per padded width unit: 64 bytes
DEFAULT_WINDOW = 4096
CATEGORY_FLOOR = 1e-3  # the smallest class probability read from the decoder's output

Blocks = Sequence[tuple[int, int]]  # one-hot blocks [start, stop) of the encoded features

Step = tuple[torch.Tensor, torch.Tensor] | nn.Module  # a padded (weight, bias) or activation


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


def aligned_window(rows: int) -> int:
    """``rows`` rounded up to a multiple of :data:`ROW_ALIGN` (at least one panel)."""
    if rows < 1:
        raise ValueError(f"an inference window needs at least 1 row, got {rows}")
    return _round_up(rows, ROW_ALIGN)


def as_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """A float32 tensor of the 2-D array ``x`` on ``device``."""
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array (rows, features), got shape {x.shape}")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)


def _padded_linear(layer: nn.Linear, width_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's weight ``(out, in)`` and bias, zero-padded to ``(out rounded up, width_in)``."""
    out, inp = layer.weight.shape
    weight = layer.weight.new_zeros(_round_up(out, LANE), width_in)
    weight[:out, :inp] = layer.weight
    bias = layer.weight.new_zeros(weight.shape[0])
    if layer.bias is not None:
        bias[:out] = layer.bias
    return weight, bias


def _padded_stack(layers: nn.Sequential, width: int) -> tuple[list[Step], int]:
    steps: list[Step] = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            weight, bias = _padded_linear(layer, width)
            steps.append((weight, bias))
            width = weight.shape[0]
        elif not isinstance(layer, nn.Dropout):  # dropout is the identity at inference
            steps.append(layer)  # an activation: maps 0 to 0
    return steps, width


def _run(steps: list[Step], h: torch.Tensor) -> torch.Tensor:
    for step in steps:
        h = torch.nn.functional.linear(h, *step) if isinstance(step, tuple) else step(h)
    return h


@dataclass(frozen=True, eq=False)
class FeatureLoss:
    """How each encoded feature's reconstruction loss is counted (:meth:`PaddedVAE.feature_loss`).

    ``categories``: the one-hot blocks ``[start, stop)`` scored by their categorical
    likelihood, ``-2 log p`` of the observed category; every other feature: its squared error
    times ``precision`` (per feature), the decoder's learned precision when None.
    """

    categories: Blocks = ()
    precision: np.ndarray | None = None

    def __post_init__(self) -> None:
        blocks = tuple((int(a), int(b)) for a, b in self.categories)
        object.__setattr__(self, "categories", blocks)  # a caller's list stays its own

    def gaussian_features(self, n_features: int) -> np.ndarray:
        """Mask of the features scored by their squared error (outside ``categories``)."""
        mask = np.ones(n_features, dtype=bool)
        for start, stop in self.categories:
            mask[start:stop] = False
        return mask


class PaddedVAE:
    """A fitted :class:`VAE`'s inference passes on zero-padded widths (see the module notes).

    Built from the model's current weights (cheap: a copy of a few small matrices);
    ``loss`` says how :meth:`feature_loss` counts each feature.
    ``encode`` / ``decode`` take and give padded tensors, ``(rows, padded width)`` with the
    real units first; the padding columns of an input must be 0, and those of every output
    are 0. It mirrors ``VAE.encode`` (latent mean, clamped log-variance) and ``VAE.decode``;
    a test checks that both agree to float32 rounding.
    """

    def __init__(self, model: VAE, loss: FeatureLoss = FeatureLoss()) -> None:
        self.n_features = model.config.n_features
        self.width = _round_up(self.n_features, LANE)
        with torch.no_grad():
            self.encoder, hidden = _padded_stack(model.encoder, self.width)
            self.fc_mu = _padded_linear(model.fc_mu, hidden)
            self.fc_logvar = _padded_linear(model.fc_logvar, hidden)
            self.decoder, hidden = _padded_stack(model.decoder, self.fc_mu[0].shape[0])
            self.fc_out = _padded_linear(model.fc_out, hidden)
            self.precision = self.fc_out[1].new_zeros(self.width)
            if loss.precision is None:
                self.precision[: self.n_features] = model.feature_precision()
            else:  # the weights of a scaled score
                self.precision[: self.n_features] = torch.as_tensor(
                    loss.precision, dtype=self.precision.dtype, device=self.precision.device
                )
        self.device = model.fc_out.weight.device
        self._categorical_blocks(loss.categories)

    def _categorical_blocks(self, categories: Blocks) -> None:
        """Index tensors of the one-hot blocks scored by the categorical likelihood."""
        self.blocks = tuple(categories)  # int pairs already (FeatureLoss makes them so)
        if not self.blocks:
            return
        columns = np.concatenate([np.arange(a, b) for a, b in self.blocks])
        block_of = np.concatenate([np.full(b - a, i) for i, (a, b) in enumerate(self.blocks)])
        self.block_columns = torch.from_numpy(columns).to(self.device)
        self.block_ids = torch.from_numpy(block_of).to(self.device)
        self.block_first = torch.tensor([a for a, _ in self.blocks], device=self.device)
        self.not_in_block = torch.ones(self.width, device=self.device)
        self.not_in_block[self.block_columns] = 0.0

    def observed_probability(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Per row and one-hot block, the decoder's probability of the observed category,
        shape ``(rows, n_blocks)``.

        The decoder's output is what the MSE training makes an estimate of the class
        probabilities: each output clipped to ``[CATEGORY_FLOOR, 1]``, one more class for the
        categories the encoding does not keep (``1 - sum``, clipped alike), normalised to sum
        to 1.
        """
        rows, n_blocks = x.shape[0], len(self.blocks)

        def per_block(values: torch.Tensor) -> torch.Tensor:
            out = values.new_zeros(rows, n_blocks)
            return out.index_add_(1, self.block_ids, values)  # in feature order, per row

        output = recon[:, self.block_columns]
        observed = x[:, self.block_columns]
        clipped = output.clamp(CATEGORY_FLOOR, 1.0)
        other = (1.0 - per_block(output)).clamp(CATEGORY_FLOOR, 1.0)
        seen = per_block(observed) > 0.5
        chosen = torch.where(seen, per_block(clipped * observed), other)
        return chosen / (per_block(clipped) + other)

    def feature_loss(
        self, x: torch.Tensor, recon: torch.Tensor, probability: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per row and (padded) feature, the reconstruction loss, shape ``(rows, width)``.

        Numeric features: the squared error times the decoder's precision (twice the Gaussian
        negative log-likelihood, up to a constant). One-hot blocks, when given: twice the
        categorical negative log-likelihood of the observed category, ``-2 log p``, placed on
        the block's first feature (0 on the others), ``p`` from
        :meth:`observed_probability` (or ``probability``, its value when already computed).
        Unlike the squared error of a one-hot block (at most 2), ``-log p`` keeps growing as
        the observed category gets rarer.
        """
        loss = (x - recon).pow(2) * self.precision
        if not self.blocks:
            return loss
        if probability is None:
            probability = self.observed_probability(x, recon)
        loss = loss * self.not_in_block
        loss[:, self.block_first] = -2.0 * torch.log(probability)
        return loss

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = _run(self.encoder, x)
        mu = torch.nn.functional.linear(h, *self.fc_mu)
        return mu, torch.nn.functional.linear(h, *self.fc_logvar).clamp(-20.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(_run(self.decoder, z), *self.fc_out)

    def windows(self, x: np.ndarray, window: int) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``(start, stop, batch)`` over the rows of ``x``: ``batch`` always has
        ``aligned_window(window)`` rows and the padded width, rows ``start:stop`` of ``x``
        first, then zero rows; every padding column is 0."""
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected an array of shape (rows, {self.n_features}), got {x.shape}")
        size = aligned_window(window)
        # torch's CPU allocator aligns to 64 bytes (numpy's only to 16): every window's rows
        # lie the same way in memory
        batch = torch.zeros(size, self.width)
        buffer = batch.numpy()  # the same memory
        for start in range(0, x.shape[0], size):
            part = x[start : start + size]
            buffer[: len(part), : self.n_features] = part
            buffer[len(part) :] = 0.0
            # on the CPU the batch is the buffer: its outputs are copied out before the next
            yield start, start + len(part), batch.to(self.device)


@dataclass
class Scores:
    # (n,) the reconstruction loss (:class:`FeatureLoss`), summed over the features
    recon: np.ndarray
    kl: np.ndarray  # (n,)
    # (n,) with one-hot blocks scored by their likelihood: Pearson's chi-square of the observed
    # categories against the decoder's class probabilities, the sum over blocks of 1/p - 1
    pearson: np.ndarray | None = None


def _numpy(values: torch.Tensor, rows: int) -> np.ndarray:
    return values[:rows].double().cpu().numpy()


def score_arrays(
    model: VAE,
    x: np.ndarray,
    window: int = DEFAULT_WINDOW,
    mc_samples: int = 0,
    seed: int = 0,
    loss: FeatureLoss = FeatureLoss(),
) -> Scores:
    """Per-record reconstruction error and KL, in windows of ``window`` rows.

    The reconstruction error is :meth:`PaddedVAE.feature_loss` summed over the features, each
    counted as ``loss`` says (with one-hot blocks scored by the categorical likelihood,
    ``pearson`` holds each row's Pearson chi-square of those blocks, ``1/p - 1`` summed, ``p``
    from :meth:`PaddedVAE.observed_probability`). Deterministic by default (the decoder is
    fed the latent mean): a row's numbers do not depend on the other rows of ``x``. With
    ``mc_samples > 0`` both are averaged over that many posterior samples, seeded once per
    call: a row's noise then depends on its position in ``x``.
    """
    model.eval()
    net = PaddedVAE(model, loss)
    recon = np.empty(x.shape[0], dtype=np.float64)
    kl = np.empty(x.shape[0], dtype=np.float64)
    pearson = np.empty(x.shape[0], dtype=np.float64) if net.blocks else None

    def losses(
        batch: torch.Tensor, decoded: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not net.blocks:
            return net.feature_loss(batch, decoded).sum(1), None
        probability = net.observed_probability(batch, decoded)
        loss = net.feature_loss(batch, decoded, probability).sum(1)
        return loss, (1.0 / probability - 1.0).sum(1)

    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        if mc_samples > 0:
            torch.manual_seed(seed)  # inside fork_rng: the caller's random state is kept
        for start, stop, batch in net.windows(x, window):
            mu, logvar = net.encode(batch)
            chi: torch.Tensor | None
            if mc_samples > 0:
                err = torch.zeros(batch.shape[0], device=batch.device)
                chi = torch.zeros_like(err) if net.blocks else None
                for _ in range(mc_samples):
                    decoded = net.decode(VAE.reparameterize(mu, logvar))
                    sample_err, sample_chi = losses(batch, decoded)
                    err += sample_err
                    if chi is not None and sample_chi is not None:
                        chi += sample_chi
                err /= mc_samples
                if chi is not None:
                    chi /= mc_samples
            else:
                err, chi = losses(batch, net.decode(mu))
            recon[start:stop] = _numpy(err, stop - start)
            kl[start:stop] = _numpy(kl_divergence(mu, logvar), stop - start)
            if pearson is not None:
                assert chi is not None  # computed with the blocks
                pearson[start:stop] = _numpy(chi, stop - start)
    return Scores(recon=recon, kl=kl, pearson=pearson)


def kl_array(model: VAE, x: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """Per-record KL of the posterior from the prior: the encoder alone (no decoding)."""
    model.eval()
    net = PaddedVAE(model)
    out = np.empty(x.shape[0], dtype=np.float64)
    with torch.inference_mode():
        for start, stop, batch in net.windows(x, window):
            out[start:stop] = _numpy(kl_divergence(*net.encode(batch)), stop - start)
    return out


def reconstruct(model: VAE, x: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """The decoder mean for the latent mean of each row, shape ``(n, n_features)``."""
    model.eval()
    net = PaddedVAE(model)
    out = np.empty(x.shape, dtype=np.float64)
    with torch.inference_mode():
        for start, stop, batch in net.windows(x, window):
            recon = net.decode(net.encode(batch)[0])[:, : net.n_features]
            out[start:stop] = _numpy(recon, stop - start)
    return out


def latent_means(model: VAE, x: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """The posterior mean of each row, shape ``(n, latent_dim)``."""
    model.eval()
    net = PaddedVAE(model)
    out = np.empty((x.shape[0], model.config.latent_dim), dtype=np.float64)
    with torch.inference_mode():
        for start, stop, batch in net.windows(x, window):
            mu = net.encode(batch)[0][:, : model.config.latent_dim]
            out[start:stop] = _numpy(mu, stop - start)
    return out


def feature_errors(
    model: VAE,
    x: np.ndarray,
    window: int = DEFAULT_WINDOW,
    loss: FeatureLoss = FeatureLoss(),
) -> np.ndarray:
    """Per row and feature, the reconstruction loss from the latent mean
    (:meth:`PaddedVAE.feature_loss`): shape ``(n, n_features)``; rows sum to ``recon``."""
    model.eval()
    net = PaddedVAE(model, loss)
    out = np.empty(x.shape, dtype=np.float64)
    with torch.inference_mode():
        for start, stop, batch in net.windows(x, window):
            error = net.feature_loss(batch, net.decode(net.encode(batch)[0]))
            out[start:stop] = _numpy(error[:, : net.n_features], stop - start)
    return out


@dataclass(frozen=True)
class LogScale:
    """Standardisation of the log of a non-negative term: ``z = (log(v + eps) - mean) / std``,
    ``eps`` a thousandth of the term's median (a term of 0 stays finite), ``std`` floored."""

    eps: float
    mean: float
    std: float

    @staticmethod
    def fit(values: np.ndarray) -> LogScale:
        eps = max(1e-3 * float(np.median(values)), 1e-12) if len(values) else 1e-12
        logged = np.log(values + eps)
        return LogScale(eps, float(logged.mean()), float(logged.std()))

    def z(self, values: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # a NaN term stays NaN
            return (np.log(values + self.eps) - self.mean) / max(self.std, 1e-6)
