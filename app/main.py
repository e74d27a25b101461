"""The module-level app for Faust's own CLI: `faust -A edgeml.app.main worker -l info`.

The worker's imports run without the optional imports no worker uses
(`process.skipping_optional_imports`: river's scikit-learn helper, ~6 MB of RSS)."""

from __future__ import annotations

from edgeml.app.process import configure_process, freeze_startup_heap, skipping_optional_imports
from edgeml.app.settings import Settings

with skipping_optional_imports():
    from edgeml.app.factory import create_app

__all__ = ["app", "settings"]

settings = Settings()
configure_process(settings)
app = create_app(settings)
freeze_startup_heap(settings)
