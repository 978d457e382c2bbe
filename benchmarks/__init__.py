"""Benchmarks of the product (not part of the installed package): see ``benchmarks/README.md``."""
