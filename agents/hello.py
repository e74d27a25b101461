"""A hello agent: echoes greetings back, upper-cased. Proves the worker round-trip works."""

from __future__ import annotations

from collections.abc import AsyncIterator

import faust

from app.settings import Settings

__all__ = ["register"]


def register(app: faust.App, settings: Settings) -> faust.types.AgentT:
    greetings_topic = app.topic(settings.topic("hello-in"), value_serializer="raw")
    replies_topic = app.topic(settings.topic("hello-out"), value_serializer="raw")

    @app.agent(greetings_topic, name="say_hello")
    async def say_hello(stream: faust.StreamT[bytes]) -> AsyncIterator[bytes]:
        async for event in stream.events():
            reply = b"HELLO " + bytes(event.value).upper()
            await replies_topic.send(key=event.key, value=reply)
            yield reply

    return say_hello
