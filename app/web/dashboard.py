"""The dashboard page: `GET /dashboard` (static HTML + plain JS + canvas, no build step, no
CDN), its files under `GET /static/`. It reads the JSON views and `/alerts/stream`."""

from __future__ import annotations

from pathlib import Path

import faust
from faust.web import Request, Response, View

__all__ = ["STATIC", "register"]

STATIC = Path(__file__).resolve().parent.parent / "static"


def register(app: faust.App) -> None:
    page = (STATIC / "dashboard.html").read_text()

    @app.page("/dashboard", name="dashboard")
    class Dashboard(View):
        async def get(self, request: Request) -> Response:
            return self.html(page)

    @app.page("/dashboard/", name="dashboard-slash")
    class DashboardSlash(Dashboard):
        pass

    app.web.add_static("/static/", STATIC)
