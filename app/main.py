"""The module-level app for Faust's own CLI: `faust -A app.main worker -l info`."""

from __future__ import annotations

import logging

from app.factory import create_app
from app.settings import Settings

__all__ = ["app", "settings"]

settings = Settings()
for _library in ("aiokafka", "faust", "mode", "kafka"):
    logging.getLogger(_library).setLevel(settings.library_log_level)
app = create_app(settings)
