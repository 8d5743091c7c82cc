"""fal's server-proxy protocol: ``ANY /api/fal/proxy`` with the real target in ``x-fal-target-url``, so
that a web app using the stock ``@fal-ai/client`` with ``fal.config({proxyUrl: ".../api/fal/proxy"})``
talks to this service.

The contract:

- The key is checked first, as on every route (:func:`~bgone.service.auth.require_key`), and the client's
  ``Authorization`` goes on to the route that answers.
- The target is resolved by :func:`bgone.service.proxy_targets.resolve_target`: only fal's hosts, https, and
  only the endpoints this service serves; anything else is a 400 ``invalid_proxy_target``.
- The answer is the route's own: the request is dispatched inside this process, to this same ASGI app,
  with the path, query and method of the resolved route and the client's headers and body (less
  ``x-fal-target-url``, and less ``origin``: CORS is answered once, for the proxy request). Every message
  the route sends (status, headers, each body chunk, server-sent events as they are produced) goes straight
  back to the client. Validation, 422s, status codes, ``x-fal-request-id``, the body-size limit and the
  metrics are the route's own.

Nothing is ever fetched: this module has no HTTP client, and a target only ever names a route of this app.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from bgone.errors import ProxyTargetError
from bgone.service.auth import require_key
from bgone.service.proxy_targets import ProxyTarget, resolve_target

__all__ = ["DISPATCHED", "PROXY_PATH", "TARGET_HEADER", "dispatch", "router"]

PROXY_PATH = "/api/fal/proxy"
TARGET_HEADER = "x-fal-target-url"
DISPATCHED = "bgone.proxy_dispatched"  # scope key: this proxy request was answered by a route of its own
_DROPPED_HEADERS = {TARGET_HEADER.encode(), b"origin"}
# The connection's own facts, kept for the dispatched request; the routing facts are replaced.
_SCOPE_KEYS = ("type", "asgi", "http_version", "scheme", "server", "client", "root_path", "extensions", "state")
_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]

router = APIRouter(tags=["proxy"])

Scope = dict[str, Any]


async def dispatch(app: Any, scope: Scope, receive: Any, send: Any) -> None:
    """Run ``scope`` through ``app`` (this service) in this process: the only way a target is answered."""
    await app(scope, receive, send)


def inner_scope(scope: Scope, target: ProxyTarget) -> Scope:
    """The scope of the request the route sees: ``target``'s method, path and query, under the same root as
    the proxy, with the client's headers less the target and the origin."""
    prefix = scope["path"].removesuffix(PROXY_PATH)  # the app's mount point, when the server adds it
    path = prefix + target.path
    inner = {key: scope[key] for key in _SCOPE_KEYS if key in scope}
    inner.update(
        method=target.method,
        path=path,
        raw_path=path.encode(),
        query_string=target.query.encode("ascii"),
        headers=[(name, value) for name, value in scope["headers"] if name.lower() not in _DROPPED_HEADERS],
    )
    return inner


class _Dispatched(Response):
    """A response that is the resolved route's own: its messages are sent on as the route sends them."""

    def __init__(self, target: ProxyTarget) -> None:
        super().__init__()
        self.target = target

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        inner = inner_scope(scope, self.target)
        scope[DISPATCHED] = True  # the route's own request is counted in the metrics; this one is not
        await dispatch(scope["app"], inner, receive, send)


async def fal_proxy(request: Request) -> Response:
    """fal's server proxy: the route named by ``x-fal-target-url`` (one of fal's URLs that this server
    answers), dispatched in this process. Refused targets are 400 ``invalid_proxy_target``."""
    targets = request.headers.getlist(TARGET_HEADER)
    if len(targets) > 1:
        raise ProxyTargetError("send one x-fal-target-url header, not several")
    return _Dispatched(resolve_target(targets[0] if targets else None, request.method))


for _method in _METHODS:  # one route per method: each its own OpenAPI operation
    router.add_api_route(
        PROXY_PATH,
        fal_proxy,
        methods=[_method],
        dependencies=[Depends(require_key)],
        operation_id=f"fal_proxy_{_method.lower()}",
    )
