"""The variational autoencoder, in pure torch (no pandas, scikit-learn, MLflow or Prefect)."""

from vae.infer import FeatureLoss, LogScale, Scores, kl_array, reconstruct, score_arrays
from vae.loss import ElboTerms, elbo_terms, kl_divergence, reconstruction_error
from vae.model import VAE, VAEConfig, default_architecture
from vae.train import EpochStats, TrainConfig, TrainResult, fit_vae, pick_device

__all__ = [
    "VAE",
    "ElboTerms",
    "EpochStats",
    "FeatureLoss",
    "LogScale",
    "Scores",
    "TrainConfig",
    "TrainResult",
    "VAEConfig",
    "default_architecture",
    "elbo_terms",
    "fit_vae",
    "kl_array",
    "kl_divergence",
    "pick_device",
    "reconstruct",
    "reconstruction_error",
    "score_arrays",
]
