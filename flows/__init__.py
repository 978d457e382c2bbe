"""Prefect flows and the ``vae-anomaly`` command line: thin orchestration over ``pipeline``."""
