"""Answers that span every worker: a listing gathered from the owner of each partition.

Single keys go through Faust's table router (`app.table_route`): the request is forwarded to
the worker that owns the key's partition. A listing (every device, every site) has no single
owner, so `gather` asks each owner for the partitions it owns (per the assignment every
member received in the last rebalance) and concatenates the answers. It never answers
partially: when a partition has no owner, or an owner does not answer or no longer owns what
it was asked for, the caller gets `ServiceUnavailable` (503) and may retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import faust
import orjson
from faust.web.exceptions import ServiceUnavailable
from yarl import URL

__all__ = ["LOCAL_SCOPE", "gather", "owned_partitions", "partition_owners", "same_worker"]

LOCAL_SCOPE = "local"  # ?scope=local&partitions=0,2: answer for these partitions only


def same_worker(a: str | URL, b: str | URL) -> bool:
    ua, ub = URL(str(a)), URL(str(b))
    return (ua.host, ua.port) == (ub.host, ub.port)


def partition_owners(app: faust.App, table: faust.types.TableT) -> dict[str, set[int]]:
    """Worker URL -> the table's partitions it owns (active), from the assignment."""
    topic = table.changelog_topic.get_topic_name()
    metadata = app.router.table_metadata(table.name)
    owners: dict[str, set[int]] = {}
    for url, topics in metadata.items():
        partitions = set(topics.get(topic, ()))
        if partitions:
            owners[url] = partitions
    return owners


def owned_partitions(app: faust.App, table: faust.types.TableT) -> set[int]:
    own = app.conf.canonical_url
    return {
        p
        for url, parts in partition_owners(app, table).items()
        if same_worker(url, own)
        for p in parts
    }


async def gather(
    app: faust.App,
    request: Any,
    table: faust.types.TableT,
    partitions: int,
    local: Callable[[set[int]], list[dict[str, Any]]],
    *,
    field: str,
    path: str | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 5.0,
) -> list[dict[str, Any]]:
    """Items from every owner of `table`'s partitions: `local(parts)` here, the same path
    (or `path`) with `?scope=local&partitions=...` on the other workers (their JSON list
    `field`)."""
    query = request.query
    if query.get("scope") == LOCAL_SCOPE:
        asked = {int(p) for p in query.get("partitions", "").split(",") if p}
        if not asked <= owned_partitions(app, table):
            raise ServiceUnavailable("rebalancing: this worker no longer owns those partitions")
        return local(asked)
    owners = partition_owners(app, table)
    covered = set().union(*owners.values()) if owners else set()
    missing = set(range(partitions)) - covered
    if missing:
        raise ServiceUnavailable(f"rebalancing: no owner yet for partition(s) {sorted(missing)}")
    own = app.conf.canonical_url
    items: list[dict[str, Any]] = []
    remote: list[tuple[str, set[int]]] = []
    for url, parts in owners.items():
        if same_worker(url, own):
            items.extend(local(parts))
        else:
            remote.append((url, parts))

    async def ask(url: str, parts: set[int]) -> list[dict[str, Any]]:
        params = {k: v for k, v in query.items() if k not in ("scope", "partitions")}
        params |= {"scope": LOCAL_SCOPE, "partitions": ",".join(map(str, sorted(parts)))}
        target = URL(url).with_path(path or request.path).with_query(params)
        try:
            async with app.http_client.get(
                target, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                body = await response.read()
                status = response.status
        except Exception as exc:
            raise ServiceUnavailable(f"worker {url} did not answer: {exc}") from None
        if status != 200:
            raise ServiceUnavailable(f"worker {url} answered {status}")
        return list(orjson.loads(body)[field])

    for answer in await asyncio.gather(*(ask(url, parts) for url, parts in remote)):
        items.extend(answer)
    return items
