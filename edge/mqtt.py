"""An MQTT topic as the agent's sensor source (paho-mqtt, part of the `edge` extra).

`mqtt_messages(...)` is a plain blocking iterator of message payloads (each one platform message:
a reading or a `{"readings": [...]}` envelope), for `ThreadedSource`. The client connects in the
background and reconnects by itself (1-30 s), so an MQTT broker that is down at start or goes away
is waited for, not fatal; every (re)connect subscribes again. Payloads wait in a bounded queue:
when the agent is slower than the sensors, paho's network thread blocks on it and the MQTT
broker holds the rest (with QoS 1 and a persistent session, `client_id` set).

Limit: paho acknowledges a QoS 1 message when the callback returns, before the agent commits its
batch, so a crash loses what is queued in memory (at most `queue_size` messages); the seq marks
of the devices keep what the sensors re-send from being scored twice.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator
from typing import Any

__all__ = ["mqtt_messages"]

log = logging.getLogger("edgeml.edge.mqtt")


def mqtt_messages(
    host: str,
    port: int,
    topic: str,
    *,
    qos: int = 1,
    client_id: str | None = None,
    queue_size: int = 10_000,
) -> Iterator[bytes]:
    import paho.mqtt.client as mqtt

    payloads: queue.Queue[bytes] = queue.Queue(maxsize=queue_size)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or "",
        clean_session=client_id is None,  # a named client keeps its session (and QoS 1 backlog)
    )

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT %s:%d refused the connection: %s", host, port, reason)
            return
        client.subscribe(topic, qos)

    def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, properties: Any) -> None:
        log.info("MQTT subscribed to %s on %s:%d", topic, host, port)

    def on_disconnect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        log.warning("MQTT %s:%d disconnected (%s); reconnecting", host, port, reason)

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        payloads.put(bytes(message.payload))  # blocks when full: back-pressure to the broker

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.reconnect_delay_set(1, 30)
    client.connect_async(host, port)
    client.loop_start()
    try:
        while True:
            yield payloads.get()
    finally:
        client.loop_stop()
        client.disconnect()
