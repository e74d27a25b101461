"""The demo hello agent, for tests only: it echoes greetings back, upper-cased.

It proves the worker round trip (broker -> Faust agent -> broker) in the smallest form. It used
to live in `agents/` and be registered by every production worker, where its `hello-in` /
`hello-out` topics were created at start and a rebalance followed ~5 min later (issue #10); now
only the tests that need it register it.

`python tests/agents/hello_agent.py worker -l info` runs the platform worker (the same app as
`edgeml worker`, `Settings()` from the environment) with this agent added.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import faust

__all__ = ["GREETINGS", "REPLIES", "register"]

GREETINGS = "hello-in"
REPLIES = "hello-out"


def register(app: faust.App, greetings: str, replies: str) -> faust.types.AgentT:
    """Add `say_hello` to `app`: reads `greetings`, writes b"HELLO " + upper-cased to
    `replies` (broker-side topic names, prefix included), keeping the key."""
    greetings_topic = app.topic(greetings, value_serializer="raw")
    replies_topic = app.topic(replies, value_serializer="raw")

    @app.agent(greetings_topic, name="say_hello")
    async def say_hello(stream: faust.StreamT[bytes]) -> AsyncIterator[bytes]:
        async for event in stream.events():
            reply = b"HELLO " + bytes(event.value).upper()
            await replies_topic.send(key=event.key, value=reply)
            yield reply

    return say_hello


def _main() -> None:
    # What `faust -A edgeml.app.main worker` does (`app.main`), plus this agent.
    from edgeml.app.factory import create_app
    from edgeml.app.process import configure_process
    from edgeml.app.settings import Settings

    settings = Settings()
    configure_process(settings)
    app = create_app(settings)
    register(app, settings.topic(GREETINGS), settings.topic(REPLIES))
    app.main()


if __name__ == "__main__":
    _main()
