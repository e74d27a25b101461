"""Every table the worker declares gets the bounded RocksDB options from `Settings`."""

from __future__ import annotations

from collections.abc import Callable

import faust

from app import observability
from app.factory import create_app
from app.settings import Settings


def test_every_rocksdb_table_is_bounded(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(
        store="rocksdb://", rocksdb_write_buffer_bytes=3 * 2**20, rocksdb_block_cache_bytes=2**20
    )
    app = create_app(settings)
    tables = [table for table in app.tables.values() if isinstance(table, faust.Table)]
    assert len(tables) == 5
    for table in tables:
        options = table.data.rocksdb_options  # type: ignore[attr-defined]
        assert options.write_buffer_size == 3 * 2**20, table.name
        assert options.max_write_buffer_number == 2
        assert options.block_cache_size == 2**20
    assert observability.of(app).tables.device_panes in tables
    assert any(table.name == "state-by-device" for table in tables)
