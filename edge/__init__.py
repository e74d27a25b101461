"""The edge agent: scores readings on the device with the worker's own `ReadingPipeline`, keeps
every output in a durable SQLite outbox while the cloud is unreachable, and forwards it to the
platform's Kafka topics when it is back (`edgeml edge run`, docs/edge.md).

Faust-free and app-free (import contract `edge-standalone`): it needs the core plus the `edge`
extra (aiokafka, aiohttp, paho-mqtt, pydantic-settings). The pieces, one per module: `settings`
(`EdgeSettings`), `db` (the SQLite file and its transactions), `state` (per-device state),
`outbox` (bounded store-and-forward), `records` (what a scored batch writes), `runner` (one batch:
score + commit), `sources` (and `mqtt`), `backoff`, `sync` (the Kafka forwarder), `alerts`,
`metrics`, `web`, `agent` (composes them).
"""
