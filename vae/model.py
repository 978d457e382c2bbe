"""The VAE: an MLP encoder to a diagonal Gaussian posterior, an MLP decoder back to the inputs.

Shapes: ``x`` is ``(batch, n_features)``; ``mu`` and ``logvar`` are ``(batch, latent_dim)``.
Every hidden layer is ``Linear -> activation`` (a stack of bare ``Linear`` layers would make the
whole network linear, i.e. PCA at best).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of a :class:`VAE`."""

    n_features: int
    hidden_dims: tuple[int, ...] = (64, 32)
    latent_dim: int = 8
    activation: str = "gelu"
    dropout: float = 0.0
    # "fixed": unit decoder variance (loss = squared error); "learned": one log-variance per
    # feature, trained with the ELBO (a calibrated Gaussian decoder), floored at min_variance
    decoder_variance: str = "fixed"
    min_variance: float = 1e-3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VAEConfig:
        values = dict(values)
        values["hidden_dims"] = tuple(values.get("hidden_dims", ()))
        return cls(**values)


def default_architecture(n_features: int) -> dict[str, Any]:
    """The default width rule: hidden layers and latent size grow with the input width.

    ``hidden = clip(2 * n_features, 32, 256)``, two hidden layers ``(hidden, hidden // 2)``,
    ``latent = clip(n_features // 4, 2, 16)``.
    """
    hidden = int(min(256, max(32, 2 * n_features)))
    latent = int(min(16, max(2, n_features // 4)))
    return {"hidden_dims": (hidden, max(16, hidden // 2)), "latent_dim": latent}


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}


def _mlp(sizes: list[int], activation: str, dropout: float) -> nn.Sequential:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), _ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


@dataclass
class VAEOutput:
    recon: torch.Tensor  # (batch, n_features): decoder mean
    mu: torch.Tensor  # (batch, latent_dim)
    logvar: torch.Tensor  # (batch, latent_dim)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class VAE(nn.Module):
    """Gaussian VAE with an MLP encoder and decoder."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        if config.n_features < 1:
            raise ValueError("a VAE needs at least one input feature")
        self.config = config
        hidden = list(config.hidden_dims)
        self.encoder = _mlp([config.n_features, *hidden], config.activation, config.dropout)
        last = hidden[-1] if hidden else config.n_features
        self.fc_mu = nn.Linear(last, config.latent_dim)
        self.fc_logvar = nn.Linear(last, config.latent_dim)
        self.decoder = _mlp(
            [config.latent_dim, *reversed(hidden)], config.activation, config.dropout
        )
        self.fc_out = nn.Linear(hidden[0] if hidden else config.latent_dim, config.n_features)
        if config.decoder_variance not in ("fixed", "learned"):
            raise ValueError(
                f"decoder_variance must be 'fixed' or 'learned', not {config.decoder_variance!r}"
            )
        # log-variance of the Gaussian decoder, per feature (all zeros and frozen when fixed)
        self.decoder_logvar = nn.Parameter(
            torch.zeros(config.n_features), requires_grad=config.decoder_variance == "learned"
        )

    def feature_precision(self) -> torch.Tensor:
        """1 / sigma^2 per feature, shape ``(n_features,)`` (ones for a fixed variance)."""
        floor = torch.log(torch.tensor(self.config.min_variance, device=self.decoder_logvar.device))
        return torch.exp(-torch.maximum(self.decoder_logvar, floor))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)  # (batch, hidden[-1])
        # clamp keeps exp(logvar) finite for wildly out-of-range inputs
        return self.fc_mu(h), self.fc_logvar(h).clamp(-20.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.decoder(z))  # (batch, n_features)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I): a sample that gradients can flow through."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward(self, x: torch.Tensor, sample: bool | None = None) -> VAEOutput:
        """Encode, take z (a sample in training, the mean otherwise), decode.

        ``sample`` defaults to ``self.training``: scoring is deterministic unless asked.
        """
        mu, logvar = self.encode(x)
        use_sample = self.training if sample is None else sample
        z = self.reparameterize(mu, logvar) if use_sample else mu
        return VAEOutput(recon=self.decode(z), mu=mu, logvar=logvar)
