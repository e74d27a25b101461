"""The root error, re-exported for the app layer: it lives in `topics.errors`, the bottom floor,
so that `models/`, `agents/` and `infra/` raise subclasses of it without importing the app."""

from __future__ import annotations

from edgeml.topics.errors import ConfigError, EdgeMLError

__all__ = ["ConfigError", "EdgeMLError"]
