"""The project's one root error, at the bottom floor so that no layer imports upward for it.

Packages derive their own one-line subclasses next to where they raise them (`ManifestError` in
`models.manifest`, `BrokerError` in `infra.kafka.broker`, ...). `app.errors` re-exports these two
for the CLI, whose `main` turns any `EdgeMLError` into one line on stderr.

`exit_code` is what `edgeml` exits with when the error reaches its `main`: 1 for operational
failures (broker down, unreadable file), 2 for input the user has to change (as usage errors).
"""

from __future__ import annotations

__all__ = ["ConfigError", "EdgeMLError"]


class EdgeMLError(Exception):
    """Root of every error this project raises on purpose."""

    exit_code = 1


class ConfigError(EdgeMLError):
    """A setting or flag has a value the platform cannot use."""

    exit_code = 2
