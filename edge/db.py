"""The agent's one SQLite file: schema, WAL mode, and the transaction every batch commits in.

One file holds the device states, the outbox, the drop/sent counters and the source position, so
a batch's state writes and its output rows commit in ONE transaction: after a crash (kill -9,
power cut) either both are there or neither, and the batch is scored again from the restored
state. WAL mode lets readers (the web server's metrics, a test, `sqlite3` on the box) read
while the agent writes, and makes a commit one append to the log.

Durability per commit: `synchronous=NORMAL` in WAL mode survives a process crash but may lose
the last commits on a power cut (they are then re-scored from the older state, so nothing is
duplicated); a batch that raised an alert commits with `synchronous=FULL` (the WAL is fsynced
before COMMIT returns), so an alert reported locally is on disk first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["connect", "get_meta", "set_meta", "transaction"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS device_state (
    device_id TEXT PRIMARY KEY,
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the send order (per device: scoring order)
    stream TEXT NOT NULL,
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    uid TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    event_ts REAL NOT NULL,
    created_at REAL NOT NULL,
    bytes INTEGER NOT NULL,
    UNIQUE (stream, uid)
);
CREATE INDEX IF NOT EXISTS outbox_by_stream ON outbox (stream, id);
CREATE INDEX IF NOT EXISTS outbox_by_age ON outbox (stream, created_at);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating) the agent's database in WAL mode. Autocommit mode
    (`isolation_level=None`): every write goes through `transaction`, never an implicit one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")  # an outside reader holding a lock briefly
    conn.executescript(_SCHEMA)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, *, durable: bool = False) -> Iterator[None]:
    """One write transaction; rolled back when the block raises. `durable`: fsync the WAL
    before COMMIT returns (module docstring)."""
    if durable:
        conn.execute("PRAGMA synchronous=FULL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        if durable:
            conn.execute("PRAGMA synchronous=NORMAL")


def get_meta(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, name: str, value: str) -> None:
    """Write one meta value (inside the caller's transaction)."""
    conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))
