"""`SqliteStateStore`: the `StateStore` of `ReadingPipeline` over the agent's SQLite file.

`save` only buffers the encoded state; `write_pending()` writes the batch's states inside the
batch transaction (with its outbox rows, `edge.runner`), and `committed()` / `discard()` follow
the transaction's outcome. So the file never holds a state whose outputs are missing, and a
restart resumes every detector exactly where its last committed batch left it (the states
round-trip through `DeviceState.to_bytes` exactly: the same future scores).

A bounded LRU of committed encoded states spares the SELECT for active devices; `load` always
decodes, as the worker's table does, so a codec defect shows here as after a restart.

>>> from edgeml.edge.db import connect, transaction
>>> from edgeml.models.scoring import Scorer
>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as tmp:
...     store = SqliteStateStore(connect(pathlib.Path(tmp) / "edge.db"))
...     store.save("dev-1", Scorer().new_state("dev-1"), 0)
...     with transaction(store.conn):
...         written = store.write_pending()
...     store.committed()
...     again = SqliteStateStore(store.conn)
...     again.load("dev-1", 0).device_id, again.load("dev-2", 0)
('dev-1', None)
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict

from edgeml.models.state import DeviceState

__all__ = ["SqliteStateStore"]


class SqliteStateStore:
    """Device id -> `DeviceState` in the `device_state` table (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, cache_devices: int = 10_000) -> None:
        self.conn = conn
        self.cache_devices = cache_devices
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._pending: dict[str, bytes] = {}

    def load(self, device_id: str, origin: int) -> DeviceState | None:
        raw = self._pending.get(device_id)
        if raw is None:
            raw = self._cache.get(device_id)
            if raw is not None:
                self._cache.move_to_end(device_id)
            else:
                row = self.conn.execute(
                    "SELECT state FROM device_state WHERE device_id = ?", (device_id,)
                ).fetchone()
                raw = None if row is None else bytes(row[0])
        return DeviceState.from_bytes(raw) if raw else None

    def save(self, device_id: str, state: DeviceState, origin: int) -> None:
        self._pending[device_id] = state.to_bytes()

    def write_pending(self) -> int:
        """Write the buffered states (inside the batch transaction); returns how many."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO device_state (device_id, state) VALUES (?, ?)",
            list(self._pending.items()),
        )
        return len(self._pending)

    def committed(self) -> None:
        """The transaction committed: the buffered states are now the committed ones."""
        cache = self._cache
        for device_id, raw in self._pending.items():
            cache[device_id] = raw
            cache.move_to_end(device_id)
        self._pending.clear()
        while len(cache) > self.cache_devices:
            cache.popitem(last=False)

    def discard(self) -> None:
        """The transaction rolled back: forget the buffered states (the file has the old)."""
        self._pending.clear()

    def devices(self) -> int:
        row = self.conn.execute("SELECT COUNT(*) FROM device_state").fetchone()
        return int(row[0])
