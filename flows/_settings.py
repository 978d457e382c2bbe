"""The settings of one flow run: built once at the entry point and passed down."""

from __future__ import annotations

from typing import Any

from pipeline.config import Settings

Overrides = dict[str, dict[str, Any]]


def settings_for_run(overrides: Overrides | None = None) -> Settings:
    """``Settings()`` from the environment, with ``{"section": {"field": value}}`` applied."""
    return Settings().with_overrides(**(overrides or {}))
