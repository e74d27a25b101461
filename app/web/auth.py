"""Optional bearer token on every endpoint but `/health` (`EDGEML_WEB_TOKEN`).

A client sends `Authorization: Bearer <token>`. Browsers cannot add that header to page loads
or to an `EventSource`, so `?access_token=<token>` is accepted too and answered with an
HttpOnly, SameSite=Strict cookie that the dashboard's later requests carry. Requests routed
between workers forward the caller's headers (Faust's router) or carry the token themselves.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web

__all__ = ["COOKIE", "PUBLIC_PATHS", "bearer_middleware", "token_of"]

COOKIE = "edgeml_token"
PUBLIC_PATHS = frozenset({"/health"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_of(request: web.Request) -> tuple[str | None, bool]:
    """The token a request carries, and whether it came in the query string."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    if "access_token" in request.query:
        return request.query["access_token"], True
    return request.cookies.get(COOKIE), False


def bearer_middleware(
    token: str, public: Collection[str] = PUBLIC_PATHS
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """An aiohttp middleware refusing requests without `token` (401), except `public` paths."""
    expected = token.encode()

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in public:
            return await handler(request)
        given, from_query = token_of(request)
        if given is None or not hmac.compare_digest(given.encode(), expected):
            return web.json_response(
                {"error": "a bearer token is required (Authorization: Bearer <token>)"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="edgeml"'},
            )
        response = await handler(request)
        if from_query and isinstance(response, web.Response):
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
        return response

    return require_token
