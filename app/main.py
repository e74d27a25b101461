"""The module-level app for Faust's own CLI: `faust -A edgeml.app.main worker -l info`."""

from __future__ import annotations

from edgeml.app.factory import create_app
from edgeml.app.process import configure_process
from edgeml.app.settings import Settings

__all__ = ["app", "settings"]

settings = Settings()
configure_process(settings)
app = create_app(settings)
