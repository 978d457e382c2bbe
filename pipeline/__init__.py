"""Tabular anomaly detection around the VAE: settings, ingest, preprocessing, detector, MLflow."""
