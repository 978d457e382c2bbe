"""The MSE ELBO, per record.

For a Gaussian decoder with unit variance, ``-log p(x|z)`` is, up to a constant and a factor
1/2, the squared error *summed* over features; the KL divergence of ``N(mu, sigma^2)`` from
``N(0, I)`` is summed over latent dimensions. Loss per record = recon + beta * KL.

With a learned decoder variance (one sigma^2 per feature) the reconstruction term is the full
Gaussian negative log-likelihood ``0.5 * sum((x - r)^2 / sigma^2 + log sigma^2)``: features that
cannot be predicted get a large sigma^2 and weigh less, predictable ones weigh more.

Averaging the squared error over features instead (``reduction='mean'``) shrinks the
reconstruction term by ``n_features`` against the KL term: with beta = 1 the KL wins, every
latent dimension collapses to the prior and the decoder outputs the data mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def reconstruction_error(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Squared error per feature, shape ``(batch, n_features)``."""
    return (x - recon).pow(2)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per record, shape ``(batch,)``."""
    return 0.5 * torch.sum(mu.pow(2) + logvar.exp() - 1.0 - logvar, dim=1)


@dataclass
class ElboTerms:
    recon_per_feature: torch.Tensor  # (batch, n_features), weighted by the decoder precision
    recon: torch.Tensor  # (batch,): summed over features
    kl: torch.Tensor  # (batch,)
    log_precision: torch.Tensor | None = None  # (n_features,) when the variance is learned

    def loss(
        self, beta: float, feature_reduction: str = "sum", weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean over the batch of recon + beta * KL (the negative ELBO, up to constants).

        ``weights`` (per record, mean 1; see :func:`influence_weights`) make it a weighted mean.
        ``feature_reduction="mean"`` averages the squared error over features instead of
        summing it: kept only to show (and test) the posterior collapse it causes.
        """
        if self.log_precision is not None:
            # Gaussian NLL with learned variance: 0.5 * sum((x - r)^2 / s^2 + log s^2)
            recon = 0.5 * (self.recon - self.log_precision.sum())
        elif feature_reduction == "sum":
            recon = self.recon
        elif feature_reduction == "mean":
            recon = self.recon_per_feature.mean(dim=1)
        else:
            raise ValueError(
                f"feature_reduction must be 'sum' or 'mean', not {feature_reduction!r}"
            )
        per_record = recon + beta * self.kl
        return (per_record if weights is None else per_record * weights).mean()


def influence_weights(terms: ElboTerms, beta: float, fraction: float) -> torch.Tensor:
    """Bounded influence of the records a model fits worst (weights per record, mean 1, no
    gradient).

    A record's loss ``l = recon + beta * kl`` is compared with its batch: with ``m`` the
    median and ``c`` the ``1 - fraction`` quantile, a record above ``c`` gets the weight
    ``(c - m) / (l - m)``, so its excess over the median counts as if it were at the cut; the
    others get 1. Anomalies in the training rows then pull the model no harder than the
    ordinary worst-fitted rows, while no record is dropped (a record fitted better later gets
    its full weight back). Like a Huber loss on the record's loss.
    """
    with torch.no_grad():
        loss = terms.recon + beta * terms.kl
        middle, cut = _median_and_quantile(loss, 1.0 - fraction)
        capped = (cut - middle).clamp_min(0) / (loss - middle).clamp_min(1e-12)
        weights = torch.where(loss > cut, capped, torch.ones_like(loss))
        return weights / weights.mean()


def _median_and_quantile(values: torch.Tensor, q: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values.median(), torch.quantile(values, q))`` of a 1-D tensor from one sort.

    The same numbers as the two calls (the lower median; the quantile interpolated linearly
    between the sorted values around rank ``q * (n - 1)``, that rank computed in the values'
    dtype as torch computes it), in a fifth of the time: ``torch.quantile`` spends about 90 us
    on a batch's 256 losses, a tenth of a small network's training step. A tensor with a NaN
    goes through torch's own functions (their NaN rules).
    """
    ordered = values.sort().values
    n = ordered.shape[0]
    if n == 0 or torch.isnan(ordered[-1]):
        return values.median(), torch.quantile(values, q)
    rank = torch.tensor(q, dtype=values.dtype, device=values.device) * (n - 1)
    below = rank.long()
    above = rank.ceil().long()
    cut = torch.lerp(
        ordered[below].reshape(1), ordered[above].reshape(1), (rank - below).reshape(1)
    )
    return ordered[(n - 1) // 2], cut.reshape(())


def elbo_terms(
    x: torch.Tensor,
    recon: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    precision: torch.Tensor | None = None,
) -> ElboTerms:
    """Per-record ELBO terms; ``precision`` (1 / sigma^2 per feature) for a learned variance."""
    per_feature = reconstruction_error(x, recon)
    if precision is not None:
        per_feature = per_feature * precision
    return ElboTerms(
        recon_per_feature=per_feature,
        recon=per_feature.sum(dim=1),
        kl=kl_divergence(mu, logvar),
        log_precision=None if precision is None else torch.log(precision),
    )
