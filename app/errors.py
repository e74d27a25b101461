"""The project's one root error; packages derive their own one-line subclasses from it."""

from __future__ import annotations

__all__ = ["ConfigError", "EdgeMLError"]


class EdgeMLError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(EdgeMLError):
    """A setting or flag has a value the platform cannot use."""
