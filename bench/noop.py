"""System B, Faust's own floor: a no-op agent that forwards each message's bytes.

    EDGEML_APP_ID=... EDGEML_TOPIC_PREFIX=... python -m bench.noop worker -l info

Configured exactly like the real worker (same `Settings`, input topic declaration, acks,
linger, partitions, `take_events` batch size and wait) and sends the way `agents.publish` does
(one `producer.send` per record, the batch's acknowledgements awaited together), so the
difference between B and the full pipeline C is our per-reading work and state, not plumbing.
Output topic: `<prefix>noop-out`. No tables.
"""

from __future__ import annotations

import asyncio
from typing import cast

import faust

from edgeml.app.process import configure_process, freeze_startup_heap
from edgeml.app.settings import Settings
from edgeml.topics.declare import declare_topics

__all__ = ["OUTPUT", "app", "create_noop_app"]

OUTPUT = "noop-out"


def create_noop_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        datadir=str(settings.data_dir),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        producer_acks=-1,
        producer_linger=settings.producer_linger_ms / 1000.0,
        autodiscover=False,
    )
    readings = declare_topics(app, settings.topic_layout()).readings
    output = settings.topic(OUTPUT)

    @app.agent(readings, name="pass_through")
    async def pass_through(stream: faust.StreamT[bytes]) -> None:
        concrete = cast(faust.Stream, stream)
        producer = app.producer
        async for events in concrete.take_events(
            settings.batch_max, within=settings.batch_within_s
        ):
            pending = [
                await producer.send(output, e.message.key, e.message.value, None, None, None)
                for e in events
            ]
            if pending:
                await asyncio.gather(*pending)

    return app


settings = Settings()
configure_process(settings)  # the worker's loop and log floors: B differs from C only in work
app = create_noop_app(settings)
freeze_startup_heap(settings)

if __name__ == "__main__":
    app.main()
