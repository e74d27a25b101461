"""Analytics JSON views over the analytics tables (see `agents.analytics`).

- `GET /analytics/devices[?site=S]`: every device (gathered from every worker): labels,
  watermark, totals over the retained windows, its newest tumbling window.
- `GET /analytics/devices/{id}?window=tumbling|hopping[&last=N]`: one device's windows,
  answered by the worker that owns the device (Faust's table router forwards the request).
- `GET /analytics/sites`, `GET /analytics/sites/{site}?window=...`: the same for sites.
- `GET /analytics/fleet?window=...`: the whole fleet's windows and the list of sites.

The body is the same whichever worker is asked; the header `X-Edgeml-Worker` says which one
answered.
"""

from __future__ import annotations

from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from edgeml.agents.analytics import AnalyticsStores, PaneTables, TablePaneStore, local_heads
from edgeml.app.settings import Settings
from edgeml.app.web.cluster import gather
from edgeml.models.analytics import FLEET_KEY, AnalyticsWindows, head_summary, key_view
from edgeml.topics.analytics import AnalyticsTables

__all__ = ["json_response", "register"]


def json_response(
    view: View, value: Any, *, status: int = 200, worker: str | None = None
) -> Response:
    response = view.bytes(
        orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY),
        content_type="application/json",
        status=status,
    )
    if worker is not None:
        response.headers["X-Edgeml-Worker"] = worker
    return response


def _last(request: Request) -> int | None:
    raw = request.query.get("last")
    if raw is None:
        return None
    if not raw.isdigit():
        raise ValueError(f"last must be a whole number of windows, got {raw!r}")
    return int(raw)


def register(
    app: faust.App,
    settings: Settings,
    tables: AnalyticsTables,
    stores: AnalyticsStores,
    windows: AnalyticsWindows,
) -> None:
    devices = stores.devices.store()
    sites = stores.sites.store()
    partitions = settings.topic_partitions
    worker = settings.web_url()
    token = settings.web_token.get_secret_value() if settings.web_token else None
    forward = {"Authorization": f"Bearer {token}"} if token else {}
    layout = {
        "tumbling_s": windows.tumbling_s,
        "hopping_s": windows.hopping_s,
        "hop_s": windows.hop_s,
        "retention_s": windows.retention_s,
        "pane_s": windows.pane_s,
    }

    def listing(
        heads: PaneTables, store: TablePaneStore, name: str, parts: set[int], site: str
    ) -> list[dict[str, Any]]:
        out = []
        for key, head in local_heads(heads.heads, parts):
            if key == FLEET_KEY or (site and head.site != site):
                continue
            summary = head_summary(store, key, head, windows)
            out.append({name: summary.pop("key"), **summary})
        return out

    def one(view: View, request: Request, store: TablePaneStore, key: str, name: str) -> Response:
        try:
            body = key_view(store, key, request.query.get("window", "tumbling"), windows,
                            last=_last(request))  # fmt: skip
        except ValueError as exc:
            return json_response(view, {"error": str(exc)}, status=400, worker=worker)
        if body is None:
            return json_response(view, {"error": f"no data for {name} {key!r}"}, status=404,
                                 worker=worker)  # fmt: skip
        return json_response(view, {name: body.pop("key"), **body}, worker=worker)

    async def gathered(
        request: Request,
        scope: PaneTables,
        name: str,
        field: str,
        path: str | None = None,
    ) -> list[dict[str, Any]]:
        site = request.query.get("site", "")
        store = scope.store()
        items = await gather(
            app, request, scope.heads.table, partitions,
            lambda parts: listing(scope, store, name, parts, site),
            field=field, path=path, headers=forward,
        )  # fmt: skip
        items.sort(key=lambda item: str(item[name]))
        return items

    @app.page("/analytics/devices", name="analytics-devices")
    class DeviceList(View):
        async def get(self, request: Request) -> Response:
            items = await gathered(request, stores.devices, "device_id", "devices")
            return json_response(
                self, {"devices": items, "count": len(items), "windows": layout}, worker=worker
            )

    @app.table_route(table=tables.device_heads, match_info="device_id")
    async def device_windows(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
        return one(view, request, devices, request.match_info["device_id"], "device_id")

    @app.page("/analytics/devices/{device_id}", name="analytics-device")
    class DeviceWindows(View):
        get = device_windows

    @app.page("/analytics/sites", name="analytics-sites")
    class SiteList(View):
        async def get(self, request: Request) -> Response:
            items = await gathered(request, stores.sites, "site", "sites")
            return json_response(
                self, {"sites": items, "count": len(items), "windows": layout}, worker=worker
            )

    @app.table_route(table=tables.site_heads, match_info="site")
    async def site_windows(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
        return one(view, request, sites, request.match_info["site"], "site")

    @app.page("/analytics/sites/{site}", name="analytics-site")
    class SiteWindows(View):
        get = site_windows

    @app.table_route(table=tables.site_heads, exact_key=FLEET_KEY)
    async def fleet(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            body = key_view(sites, FLEET_KEY, request.query.get("window", "tumbling"), windows,
                            last=_last(request))  # fmt: skip
        except ValueError as exc:
            return json_response(view, {"error": str(exc)}, status=400, worker=worker)
        if body is None:  # nothing scored yet
            body = {"key": FLEET_KEY, "totals": None, "windows": [], "watermark": None}
        for field in ("key", "site", "device_type"):
            body.pop(field, None)
        body["sites"] = await gathered(
            request, stores.sites, "site", "sites", path="/analytics/sites"
        )
        return json_response(view, body, worker=worker)

    @app.page("/analytics/fleet", name="analytics-fleet")
    class Fleet(View):
        get = fleet
