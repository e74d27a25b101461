"""The durable outbox: what the agent produced and has not yet had acknowledged by Kafka.

Three streams, in the order they are given up when the outbox is full: `readings` (raw
readings, optional), `predictions`, `alerts` (alerts are the last to drop). Every record has a
unique id per stream (`uid`: `device_id:seq` for readings and predictions, `alert_id:state` for
alerts, whose seq is the incident's opening one) and is stored once (a second copy is ignored).

Bounds, applied as a record is added:

- bytes: the stored record bytes (key + value + uid) never exceed `max_bytes`. A record that
  does not fit first takes room from the *lower* streams (their oldest rows), then, when its own
  stream's policy is `drop-oldest`, from its own stream's oldest rows; with `reject-new` (or
  when even that is not enough) the new record is refused. A lower stream never takes room from
  a higher one: predictions never push out alerts. Room is only taken when it suffices, so a
  refused record evicts nothing. The SQLite file is larger than the bound (row and index
  overhead, the WAL: docs/edge.md gives the measured factor).
- age: `expire()` drops rows added more than the stream's `max_age_s` ago (wall time).

Rows being sent (`fetch`ed and not yet marked or released) are never evicted nor expired: a row
Kafka acknowledged must not also be counted as dropped. Every drop is counted by stream and
reason (`full_evicted`, `full_rejected`, `too_large`, `expired`, `duplicate_id`) in the
`counters` table, in the same transaction as the change, so after any crash
`added = backlog + sent + evicted + expired` holds for each stream.

All methods but `fetch`, the read-only ones and `reload` run inside the caller's transaction
(`edge.db.transaction`); after a rollback call `reload()` (the in-memory totals and counters
are then ahead of the file).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = [
    "DROP_REASONS",
    "STREAMS",
    "OnFull",
    "Outbox",
    "OutboxLimits",
    "OutboxRecord",
    "PendingRow",
    "Stream",
    "StreamPolicy",
]

Stream = Literal["readings", "predictions", "alerts"]
OnFull = Literal["reject-new", "drop-oldest"]
STREAMS: tuple[Stream, ...] = ("readings", "predictions", "alerts")  # first given up first
_RANK = {stream: rank for rank, stream in enumerate(STREAMS)}
DROP_REASONS = ("full_evicted", "full_rejected", "too_large", "expired", "duplicate_id")
_EVICT_CHUNK = 256


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    """What a full outbox does with a new record of this stream, and how long rows are kept."""

    on_full: OnFull = "drop-oldest"
    max_age_s: float | None = None

    def __post_init__(self) -> None:
        if self.on_full not in ("reject-new", "drop-oldest"):
            raise ValueError(f"on_full must be 'reject-new' or 'drop-oldest', got {self.on_full!r}")


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """The outbox's byte bound and one policy per stream (missing ones: the default policy)."""

    max_bytes: int
    policies: Mapping[str, StreamPolicy] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")
        unknown = set(self.policies) - set(STREAMS)
        if unknown:
            raise ValueError(f"unknown streams {sorted(unknown)}; valid: {', '.join(STREAMS)}")
        object.__setattr__(self, "policies", MappingProxyType(dict(self.policies)))

    def policy(self, stream: str) -> StreamPolicy:
        return self.policies.get(stream) or StreamPolicy()


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One record to keep until it is acknowledged."""

    stream: Stream
    device_id: str
    seq: int
    uid: str
    key: bytes
    value: bytes
    event_ts: float

    @property
    def size(self) -> int:
        return len(self.key) + len(self.value) + len(self.uid)


@dataclass(frozen=True, slots=True)
class PendingRow:
    """One unsent row as the forwarder reads it (`id` is the send order)."""

    id: int
    stream: Stream
    device_id: str
    seq: int
    uid: str
    key: bytes
    value: bytes
    event_ts: float
    size: int


class Outbox:
    """The bounded outbox over the agent's connection (see the module docstring). Created once
    per process by the agent; tests build one over a fresh `edge.db.connect(tmp_path / ...)`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        limits: OutboxLimits,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self.limits = limits
        self._clock = clock
        self.rows: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.counters: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._inflight_upto = 0  # rows with id <= this are being sent
        self._inflight_bytes: dict[str, int] = {}
        self.reload()

    # --- reading ------------------------------------------------------------------------------
    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def count(self, name: str) -> int:
        return self.counters.get(name, 0)

    def drops(self) -> dict[tuple[str, str], int]:
        """(stream, reason) -> records dropped so far (all time, persisted)."""
        out: dict[tuple[str, str], int] = {}
        for name, value in self.counters.items():
            kind, _, rest = name.partition(":")
            if kind == "drop":
                stream, _, reason = rest.partition(":")
                out[(stream, reason)] = value
        return out

    def oldest_age_s(self, stream: str) -> float | None:
        """Wall seconds since the oldest unsent row of `stream` was added (None: empty)."""
        row = self.conn.execute(
            "SELECT MIN(created_at) FROM outbox WHERE stream = ?", (stream,)
        ).fetchone()
        return None if row[0] is None else max(self._clock() - float(row[0]), 0.0)

    def reload(self) -> None:
        """Totals and counters from the file (at start, and after a rolled-back transaction)."""
        self.rows = dict.fromkeys(STREAMS, 0)
        self.bytes = dict.fromkeys(STREAMS, 0)
        for stream, rows, size in self.conn.execute(
            "SELECT stream, COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox GROUP BY stream"
        ):
            self.rows[stream], self.bytes[stream] = int(rows), int(size)
        self.counters = {
            str(name): int(value)
            for name, value in self.conn.execute("SELECT name, value FROM counters")
        }
        self._dirty.clear()

    # --- writing (inside the caller's transaction) --------------------------------------------
    def add(self, record: OutboxRecord) -> bool:
        """Store `record` within the bounds; False when it was dropped (counted)."""
        stream = record.stream
        size = record.size
        self._bump(f"offered:{stream}")
        if size > self.limits.max_bytes:
            self._bump(f"drop:{stream}:too_large")
            return False
        need = self.total_bytes + size - self.limits.max_bytes
        if need > 0 and not self._make_room(stream, need):
            self._bump(f"drop:{stream}:full_rejected")
            return False
        cursor = self.conn.execute(
            "INSERT OR IGNORE INTO outbox (stream, device_id, seq, uid, key, value, event_ts,"
            " created_at, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stream,
                record.device_id,
                record.seq,
                record.uid,
                record.key,
                record.value,
                record.event_ts,
                self._clock(),
                size,
            ),
        )
        if cursor.rowcount == 0:  # the same uid is still waiting: the first copy is kept
            self._bump(f"drop:{stream}:duplicate_id")
            return False
        self.rows[stream] += 1
        self.bytes[stream] += size
        self._bump(f"added:{stream}")
        return True

    def expire(self) -> int:
        """Drop rows older than their stream's `max_age_s`; returns how many (counted)."""
        now = self._clock()
        dropped = 0
        for stream in STREAMS:
            max_age = self.limits.policy(stream).max_age_s
            if max_age is None or self.rows[stream] == 0:
                continue
            where = "stream = ? AND created_at < ? AND id > ?"
            args = (stream, now - max_age, self._inflight_upto)
            rows, size = self.conn.execute(
                f"SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox WHERE {where}", args
            ).fetchone()
            if rows:
                self.conn.execute(f"DELETE FROM outbox WHERE {where}", args)
                self.rows[stream] -= int(rows)
                self.bytes[stream] -= int(size)
                self._bump(f"drop:{stream}:expired", int(rows))
                dropped += int(rows)
        return dropped

    def mark_sent(self, rows: Iterable[PendingRow]) -> int:
        """Delete rows Kafka acknowledged (counted as sent); ends the in-flight window."""
        done = list(rows)
        self.conn.executemany("DELETE FROM outbox WHERE id = ?", [(row.id,) for row in done])
        for row in done:
            self.rows[row.stream] -= 1
            self.bytes[row.stream] -= row.size
            self._bump(f"sent:{row.stream}")
        self.release()
        return len(done)

    def persist(self) -> None:
        """Write the changed counters (inside the transaction whose changes they count)."""
        if self._dirty:
            self.conn.executemany(
                "INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)",
                [(name, self.counters[name]) for name in sorted(self._dirty)],
            )
            self._dirty.clear()

    # --- sending ------------------------------------------------------------------------------
    def fetch(self, limit: int) -> list[PendingRow]:
        """The oldest `limit` unsent rows in send order; they stay in flight (protected from
        eviction and expiry) until `mark_sent` or `release`."""
        rows = [
            PendingRow(int(i), s, d, int(q), u, bytes(k), bytes(v), float(t), int(b))
            for i, s, d, q, u, k, v, t, b in self.conn.execute(
                "SELECT id, stream, device_id, seq, uid, key, value, event_ts, bytes"
                " FROM outbox ORDER BY id LIMIT ?",
                (limit,),
            )
        ]
        self._inflight_bytes = dict.fromkeys(STREAMS, 0)
        for row in rows:
            self._inflight_bytes[row.stream] += row.size
        self._inflight_upto = rows[-1].id if rows else 0
        return rows

    def release(self) -> None:
        """End the in-flight window without marking anything sent."""
        self._inflight_upto = 0
        self._inflight_bytes = {}

    # --- internals ----------------------------------------------------------------------------
    def _bump(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by
        self._dirty.add(name)

    def _victims(self, stream: Stream) -> list[Stream]:
        lower = [s for s in STREAMS if _RANK[s] < _RANK[stream]]
        if self.limits.policy(stream).on_full == "drop-oldest":
            lower.append(stream)
        return lower

    def _make_room(self, stream: Stream, need: int) -> bool:
        victims = self._victims(stream)
        inflight = self._inflight_bytes
        if sum(self.bytes[v] - inflight.get(v, 0) for v in victims) < need:
            return False
        for victim in victims:
            while need > 0 and self.bytes[victim] - inflight.get(victim, 0) > 0:
                freed = self._evict_oldest(victim, need)
                if freed == 0:  # no evictable row left (cannot happen while totals agree)
                    break
                need -= freed
            if need <= 0:
                break
        return True

    def _evict_oldest(self, stream: str, need: int) -> int:
        """Delete the fewest oldest evictable rows of `stream` that free `need` bytes (or all
        of its evictable rows); returns the bytes freed."""
        freed = 0
        ids: list[tuple[int]] = []
        for row_id, size in self.conn.execute(
            "SELECT id, bytes FROM outbox WHERE stream = ? AND id > ? ORDER BY id LIMIT ?",
            (stream, self._inflight_upto, _EVICT_CHUNK),
        ):
            ids.append((int(row_id),))
            freed += int(size)
            if freed >= need:
                break
        if not ids:
            return 0
        self.conn.executemany("DELETE FROM outbox WHERE id = ?", ids)
        self.rows[stream] -= len(ids)
        self.bytes[stream] -= freed
        self._bump(f"drop:{stream}:full_evicted", len(ids))
        return freed
