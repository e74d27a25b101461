"""Every table the worker declares gets the bounded RocksDB options from `Settings`."""

from __future__ import annotations

from collections.abc import Callable

import faust

from edgeml.app.factory import build_worker
from edgeml.app.settings import Settings
from edgeml.topics.catalog import ALL_TABLES


def test_every_rocksdb_table_is_bounded(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(
        store="rocksdb://", rocksdb_write_buffer_bytes=3 * 2**20, rocksdb_block_cache_bytes=2**20
    )
    worker = build_worker(settings)
    tables = [table for table in worker.app.tables.values() if isinstance(table, faust.Table)]
    assert len(tables) == 6  # state, four analytics tables, the partials outbox
    for table in tables:
        options = table.data.rocksdb_options  # type: ignore[attr-defined]
        assert options.write_buffer_size == 3 * 2**20, table.name
        assert options.max_write_buffer_number == 2
        assert options.block_cache_size == 2**20
    assert worker.analytics_tables.device_panes in tables
    assert any(table.name == "state-by-device" for table in tables)
    # one catalog: every table the worker declares is named there, and nothing else is
    assert {table.name for table in tables} == {spec.name for spec in ALL_TABLES}
