"""`TopicLayout`: the few deployment values the topic and table declarations need.

The narrow config of the bottom floor (as quix-streams hands `ConnectionConfig` down instead of
its app settings): `topics/` never imports `app.settings`, the app builds one with
`Settings.topic_layout()` and passes it to `topics.declare` and `topics.analytics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from edgeml.topics.catalog import TopicSpec

__all__ = ["TopicLayout"]


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """Where the catalog's names land on a broker: the name prefix, the default partition count
    and replication of every topic and table, and the store options of every table.

    Usually built by the app (`Settings.topic_layout()`); tests build one directly:

    >>> from edgeml.topics.catalog import MODEL_REGISTRY, READINGS
    >>> layout = TopicLayout(prefix="t1-", partitions=8)
    >>> layout.topic_name(READINGS), layout.partitions_of(READINGS)
    ('t1-sensor-readings', 8)
    >>> layout.partitions_of(MODEL_REGISTRY)  # the catalog fixes this one at 1
    1
    """

    prefix: str = ""
    partitions: int = 4
    replication: int = 1
    # Options for `app.Table(options=...)` (RocksDB memtable and block cache sizes; the memory
    # store ignores them). Read-only, and left out of the hash, so the layout stays a value.
    table_options: Mapping[str, int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.replication < 1:
            raise ValueError(
                f"partitions and replication must be >= 1, got {self.partitions}, "
                f"{self.replication}"
            )
        object.__setattr__(self, "table_options", MappingProxyType(dict(self.table_options)))

    def topic_name(self, spec: TopicSpec) -> str:
        """The broker-side name of a catalog topic (with the prefix)."""
        return f"{self.prefix}{spec.name}"

    def partitions_of(self, spec: TopicSpec) -> int:
        """The catalog's fixed partition count for `spec`, else the layout's default."""
        return spec.partitions or self.partitions
