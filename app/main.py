"""The module-level app for Faust's own CLI: `faust -A app.main worker -l info`."""

from __future__ import annotations

from app.factory import create_app
from app.process import configure_process
from app.settings import Settings

__all__ = ["app", "settings"]

settings = Settings()
configure_process(settings)
app = create_app(settings)
