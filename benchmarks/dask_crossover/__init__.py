"""Dask fan-out against sequential scoring, end to end."""
