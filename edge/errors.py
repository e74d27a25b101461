"""Errors the edge agent raises on purpose (subclasses of the project's root error)."""

from __future__ import annotations

from edgeml.topics.errors import ConfigError, EdgeMLError

__all__ = ["EdgeConfigError", "EdgeError", "SyncError"]


class EdgeError(EdgeMLError):
    """An operational failure of the edge agent (unreadable database, source, ...)."""


class EdgeConfigError(ConfigError):
    """An edge setting or flag the agent cannot use."""


class SyncError(EdgeError):
    """A forward round did not get every record acknowledged (the rest is retried)."""
