"""The API server's HTTP application: authentication, error mapping and routing.

request ─► auth (bearer token) ─► parse path ─┬─ /healthz /livez /readyz /version
                                              ├─ /api /apis ... discovery (plain or aggregated)
                                              ├─ /openapi/v2 /openapi/v3[/...]
                                              └─ resource ─► ResourceHandler ─► Rest ─► Storage
any StatusError ─► a Kubernetes Status body with its HTTP code
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from kubelite.api import errors
from kubelite.api.patchmeta import openapi_patch_extensions
from kubelite.api.resources import INDEX, ResourceIndex
from kubelite.apiserver import codec, discovery, nodeproxy
from kubelite.apiserver.fieldvalidation import FieldValidator
from kubelite.apiserver.handlers import ResourceHandler
from kubelite.apiserver.openapi import OpenAPIDocuments
from kubelite.apiserver.openapi_pb import PROTOBUF_V2_CONTENT_TYPE, OpenAPIV2Protobuf, wants_protobuf
from kubelite.apiserver.requestinfo import parse_request_path
from kubelite.apiserver.rest import Rest

log = logging.getLogger("kubelite.apiserver")

PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
KUBERNETES_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0+kubelite",
    "gitCommit": "kubelite",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "python",
    "compiler": "cpython",
    "platform": "linux/amd64",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_response(err: errors.StatusError) -> web.Response:
    resp = web.Response(body=orjson.dumps(err.to_status()), status=err.code, content_type="application/json")
    if err.retry_after:
        resp.headers["Retry-After"] = str(err.retry_after)
    return resp


@dataclass(slots=True)
class AppState:
    rest: Rest
    tokens: dict[str, str]
    server_address: str
    index: ResourceIndex = INDEX
    bookmark_interval: float = 60.0
    ready: bool = False
    warm_up: Callable[[], object] | None = None
    """Builds the OpenAPI documents and field validator; the server runs it in a thread at start."""


def build_app(state: AppState) -> web.Application:
    openapi = OpenAPIDocuments(extra_field_extensions=openapi_patch_extensions)
    v2_protobuf = OpenAPIV2Protobuf(openapi.v2)
    validators: list[FieldValidator] = []

    def field_validator() -> FieldValidator:
        if not validators:
            validators.append(FieldValidator(orjson.loads(openapi.v2())["definitions"]))
        return validators[0]

    resources = ResourceHandler(state.rest, state.bookmark_interval, field_validator)
    state.warm_up = lambda: (openapi.warm(), field_validator(), v2_protobuf.body())
    # Token comparison in constant time, on bytes.
    tokens = [t.encode() for t in state.tokens]

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path not in PUBLIC_PATHS:
                auth = request.headers.get("Authorization", "")
                given = auth[7:].strip().encode() if auth[:7].lower() == "bearer " else b""
                if not given or not any(hmac.compare_digest(given, t) for t in tokens):
                    raise errors.unauthorized()
            return await handler(request)
        except errors.StatusError as e:
            return status_response(e)
        except web.HTTPRequestEntityTooLarge:
            return status_response(errors.too_large(codec.MAX_REQUEST_BODY))
        except web.HTTPException:
            raise
        except Exception as e:  # the last line of defence: a Status, never a stack trace
            log.exception("internal error serving %s %s", request.method, request.path)
            return status_response(errors.internal(f"{type(e).__name__}: {e}"))

    async def dispatch(request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in PUBLIC_PATHS:
            if path == "/readyz" and not state.ready:
                return web.Response(text="not ready", status=503)
            return web.Response(text="ok")
        if path == "/version":
            return _json(KUBERNETES_VERSION)
        if path.startswith("/openapi/"):
            return _openapi(openapi, v2_protobuf, request)
        info = parse_request_path(path)
        if info.is_resource:
            rt = state.index.resource(info.group, info.version, info.resource)
            if rt is None:
                raise errors.StatusError(404, "NotFound", "the server could not find the requested resource")
            return await resources.handle(request, info, rt)
        return _discovery(state, request)

    app = web.Application(middlewares=[guard], client_max_size=codec.MAX_REQUEST_BODY + 1)
    nodeproxy.install(app, state.rest, token=next(iter(state.tokens), ""))  # the first token is the admin's

    async def on_shutdown(_: web.Application) -> None:
        resources.stop_watches()

    app.on_shutdown.append(on_shutdown)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def _json(obj: Any, content_type: str = "application/json") -> web.Response:
    resp = web.Response(body=orjson.dumps(obj))
    resp.headers["Content-Type"] = content_type
    return resp


def _discovery(state: AppState, request: web.Request) -> web.Response:
    if request.method != "GET":
        raise errors.method_not_allowed()
    parts = [p for p in request.path.strip("/").split("/") if p]
    if not parts:
        return _json(
            {
                "paths": sorted(
                    {
                        "/api",
                        "/apis",
                        "/healthz",
                        "/livez",
                        "/readyz",
                        "/version",
                        "/openapi/v2",
                        "/openapi/v3",
                    }
                )
            }
        )
    index = state.index
    if parts in (["api"], ["apis"]):
        fmt = codec.negotiate(request.headers.get("Accept", ""), allow_discovery=True)
        if fmt.discovery:
            resp = _json(
                discovery.aggregated(index, legacy=parts == ["api"], version=fmt.discovery),
                discovery.discovery_content_type(fmt.discovery),
            )
            resp.headers["Vary"] = "Accept"
            return resp
        doc = (
            discovery.api_versions(state.server_address)
            if parts == ["api"]
            else discovery.api_group_list(index)
        )
        return _json(doc)
    found: dict[str, Any] | None = None
    if len(parts) == 2 and parts[0] == "api":
        found = discovery.api_resource_list(index, "", parts[1])
    elif len(parts) == 2 and parts[0] == "apis":
        found = discovery.api_group(index, parts[1])
    elif len(parts) == 3 and parts[0] == "apis":
        found = discovery.api_resource_list(index, parts[1], parts[2])
    if found is None:
        raise errors.StatusError(404, "NotFound", "the server could not find the requested resource")
    return _json(found)


def _openapi(docs: OpenAPIDocuments, v2_protobuf: OpenAPIV2Protobuf, request: web.Request) -> web.Response:
    path = request.path
    if path == "/openapi/v2":
        # kubectl <= 1.29 and client-go discovery ask for the gnostic protobuf form.
        if wants_protobuf(request.headers.get("Accept", "")):
            resp = web.Response(body=v2_protobuf.body())
            resp.headers["Content-Type"] = PROTOBUF_V2_CONTENT_TYPE
            resp.headers["ETag"] = v2_protobuf.etag()
            return resp
        return web.Response(body=docs.v2(), content_type="application/json")
    if path == "/openapi/v3":
        return web.Response(body=docs.v3_index(), content_type="application/json")
    if path.startswith("/openapi/v3/"):
        body = docs.v3(path[len("/openapi/v3/") :])
        if body is not None:
            return web.Response(body=body, content_type="application/json")
    raise errors.StatusError(404, "NotFound", "the server could not find the requested resource")
