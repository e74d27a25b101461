"""Process-wide set-up of a worker, before Faust makes its event loop."""

from __future__ import annotations

import logging

from edgeml.app.settings import Settings

__all__ = ["configure_process"]


def configure_process(settings: Settings) -> None:
    """The event loop policy (`Settings.event_loop`) and the floor of the Kafka/Faust loggers
    (`Settings.library_log_level`). Call it where Faust's CLI imports the app module: the
    worker makes its loop after that import."""
    if settings.event_loop == "uvloop":
        import mode.loop

        mode.loop.use("uvloop")
    for library in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(library).setLevel(settings.library_log_level)
