"""``HttpClient``: the ApiClient contract over HTTPS, for components outside the server process.

    HttpClient.from_kubeconfig(path)
        │  one aiohttp session: TLS verified against the kubeconfig's CA, bearer token,
        │  ``Accept: application/json``, JSON bodies
        ├─ get / create / update / patch / delete   one request each; a non-2xx answer's Status
        │                                            body becomes a StatusError (code, reason,
        │                                            message, details, causes)
        ├─ list                                      pages of ``limit`` (500) joined by ``continue``
        └─ watch                                     ``?watch=true&allowWatchBookmarks=true``; the
                                                     body is read line by line into WatchEvents

Transport failures (connection refused, TLS, a stream cut mid-body, a timed-out request) are
raised as ``StatusError(503, "ServiceUnavailable")`` with a sentence naming the server, so callers
handle one error type. A write that failed that way may or may not have been applied.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import orjson
import yaml

from kubelite.api import errors
from kubelite.api.errors import Cause, StatusError
from kubelite.api.resources import ResourceType
from kubelite.client.interface import ListResult, Obj, PatchType, WatchEvent

if TYPE_CHECKING:
    from kubelite.client.interface import ApiClient

PAGE_SIZE = 500
REQUEST_TIMEOUT = 60.0
PATCH_CONTENT_TYPES: Mapping[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


# --- pieces both clients share ------------------------------------------------------------------


def status_error(status: Any, http_code: int = 0) -> StatusError:
    """A ``Status`` body (as the API sends it) as a StatusError; ``http_code`` fills a missing code."""
    if not isinstance(status, dict):
        status = {}
    code = int(status.get("code") or http_code or 500)
    details = status.get("details") if isinstance(status.get("details"), dict) else {}
    causes = [
        Cause(str(c.get("field", "")), str(c.get("message", "")), str(c.get("reason", "")))
        for c in details.get("causes") or []
        if isinstance(c, dict)
    ]
    return StatusError(
        code,
        str(status.get("reason") or _REASONS.get(code, "")),
        str(status.get("message") or f"the server answered HTTP {code}"),
        group=str(details.get("group", "")),
        kind=str(details.get("kind", "")),
        name=str(details.get("name", "")),
        causes=causes,
        retry_after=int(details.get("retryAfterSeconds") or 0),
    )


def write_target(rt: ResourceType, namespace: str | None, obj: Obj) -> tuple[str | None, str]:
    """(namespace, name) a create or update addresses: an omitted namespace is the object's own."""
    md = obj.get("metadata") if isinstance(obj, dict) else None
    md = md if isinstance(md, dict) else {}
    if not rt.namespaced:
        return None, str(md.get("name") or "")
    if namespace is None:
        namespace = str(md.get("namespace") or "") or None
    return namespace, str(md.get("name") or "")


def delete_options_body(
    propagation_policy: str = "", grace_period_seconds: int | None = None, precondition_uid: str = ""
) -> Obj:
    """The ``DeleteOptions`` a delete sends (only the fields that were asked for)."""
    body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if propagation_policy:
        body["propagationPolicy"] = propagation_policy
    if grace_period_seconds is not None:
        body["gracePeriodSeconds"] = grace_period_seconds
    if precondition_uid:
        body["preconditions"] = {"uid": precondition_uid}
    return body


def resource_path(rt: ResourceType, namespace: str | None, name: str = "", subresource: str = "") -> str:
    """``/api/v1/namespaces/ns/pods/name/status``; cluster-scoped kinds ignore ``namespace``."""
    parts = ["/api", rt.version] if not rt.group else ["/apis", rt.group, rt.version]
    if rt.namespaced and namespace:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(rt.plural)
    if name:
        parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
    return "/".join(parts)


def _selectors(label_selector: str, field_selector: str) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


# --- kubeconfig ---------------------------------------------------------------------------------


def _named(entries: Any, name: str, what: str, path: Path) -> Obj:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            found = entry.get(what)
            return found if isinstance(found, dict) else {}
    raise ValueError(f"kubeconfig {path}: no {what} named {name!r}; check its contexts")


def _ssl_context(cluster: Obj, base: Path) -> ssl.SSLContext | bool:
    if cluster.get("insecure-skip-tls-verify"):
        return False
    if cluster.get("certificate-authority-data"):
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        return ssl.create_default_context(cadata=ca)
    if cluster.get("certificate-authority"):
        return ssl.create_default_context(cafile=str(base / cluster["certificate-authority"]))
    return ssl.create_default_context()


# --- the client ---------------------------------------------------------------------------------


class HttpClient:
    """ApiClient over HTTPS. Create it anywhere; the session opens on first use, ``close()`` ends it."""

    def __init__(
        self,
        server: str,
        *,
        token: str = "",
        ssl_context: ssl.SSLContext | bool = True,
        page_size: int = PAGE_SIZE,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.server = server.rstrip("/")
        self.page_size = page_size
        self._token = token
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | Path,
        *,
        context: str = "",
        page_size: int = PAGE_SIZE,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> HttpClient:
        """The server, CA and bearer token of ``context`` (default: the current context) in ``path``."""
        path = Path(path)
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict):
            raise ValueError(f"kubeconfig {path} is not a YAML mapping")
        ctx_name = context or str(doc.get("current-context") or "")
        if not ctx_name:
            raise ValueError(f"kubeconfig {path} has no current-context; pass context=...")
        ctx = _named(doc.get("contexts"), ctx_name, "context", path)
        cluster = _named(doc.get("clusters"), str(ctx.get("cluster", "")), "cluster", path)
        user = _named(doc.get("users"), str(ctx.get("user", "")), "user", path) if ctx.get("user") else {}
        if not cluster.get("server"):
            raise ValueError(f"kubeconfig {path}: cluster {ctx.get('cluster')!r} has no server address")
        token = str(user.get("token") or "")
        if not token and user.get("tokenFile"):
            token = (path.parent / str(user["tokenFile"])).read_text().strip()
        return cls(
            str(cluster["server"]),
            token=token,
            ssl_context=_ssl_context(cluster, path.parent),
            page_size=page_size,
            request_timeout=request_timeout,
        )

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this HttpClient is closed; make a new one")
        if self._session is None:
            headers = {"Accept": "application/json", "User-Agent": "kubelite-client"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            self._session = aiohttp.ClientSession(
                # A bounded pool: a burst of requests (a node agent writing 100 pod statuses) queues
                # on a few kept-alive connections instead of paying a TLS handshake each.
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=24),
                headers=headers,
                timeout=self._timeout,
                trust_env=False,  # an HTTPS_PROXY meant for the internet must not catch the API server
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _unreachable(self, e: BaseException) -> StatusError:
        what = str(e) or type(e).__name__
        return StatusError(
            503,
            "ServiceUnavailable",
            f"the API server at {self.server} could not be reached ({what}); check that it is running "
            "and that the kubeconfig points at it",
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        try:
            async with self._open().request(
                method, self.server + path, params=params, data=data, headers=headers
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise self._unreachable(e) from e
        try:
            doc = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            doc = None
        if not 200 <= status < 300:
            if isinstance(doc, dict) and doc.get("kind") == "Status":
                raise status_error(doc, status)
            text = raw.decode(errors="replace").strip()[:200]
            raise StatusError(status, _REASONS.get(status, ""), text or f"the server answered HTTP {status}")
        if not isinstance(doc, dict):
            raise errors.internal(f"the server answered {method} {path} with something that is not an object")
        return doc

    # --- reads ----------------------------------------------------------------------------------

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        return await self._request("GET", resource_path(rt, namespace, name))

    async def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> ListResult:
        path = resource_path(rt, namespace)
        params = _selectors(label_selector, field_selector)
        items: list[Obj] = []
        token = ""
        while True:
            page_params = {**params, "limit": str(self.page_size)}
            if token:
                page_params["continue"] = token
            try:
                page = await self._request("GET", path, params=page_params)
            except StatusError as e:
                if e.code != 410 or not token:
                    raise
                # The snapshot the pages came from was compacted: start over in one page, as
                # client-go's pager does.
                page = await self._request("GET", path, params=params)
                items.clear()
                token = ""
            items.extend(page.get("items") or [])
            md = page.get("metadata") or {}
            token = str(md.get("continue") or "")
            if not token:
                return ListResult(items, str(md.get("resourceVersion", "")))

    async def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        params = _selectors(label_selector, field_selector)
        params.update(watch="true", allowWatchBookmarks="true")
        if resource_version:
            params["resourceVersion"] = resource_version
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(timeout_seconds)
        # No total deadline: a watch lives as long as the server keeps it open. With a server-side
        # timeout, a silent connection is given up a little after the server would have ended it.
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self._timeout.total,
            sock_read=None if timeout_seconds is None else timeout_seconds + 30,
        )
        url = self.server + resource_path(rt, namespace)
        try:
            resp = await self._open().get(url, params=params, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise self._unreachable(e) from e
        try:
            if not 200 <= resp.status < 300:
                raw = await resp.read()
                try:
                    doc = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    doc = {"message": raw.decode(errors="replace").strip()[:200]}
                raise status_error(doc, resp.status)
            # One JSON event per line. Read chunks rather than readline(): an object may be larger
            # than aiohttp's line limit.
            pending = bytearray()
            try:
                async for chunk in resp.content.iter_any():
                    pending += chunk
                    if b"\n" not in chunk:
                        continue
                    *lines, rest = bytes(pending).split(b"\n")
                    pending = bytearray(rest)
                    for line in lines:
                        if line.strip():
                            yield _event(line)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                raise self._unreachable(e) from e
            if pending.strip():
                yield _event(bytes(pending))
        finally:
            resp.close()

    # --- writes ---------------------------------------------------------------------------------

    async def create(self, rt: ResourceType, namespace: str | None, obj: Obj) -> Obj:
        ns, _ = write_target(rt, namespace, obj)
        return await self._request("POST", resource_path(rt, ns), body=obj)

    async def update(
        self, rt: ResourceType, namespace: str | None, obj: Obj, *, subresource: str = ""
    ) -> Obj:
        ns, name = write_target(rt, namespace, obj)
        if not name:
            raise errors.bad_request("an update needs the object's metadata.name")
        return await self._request("PUT", resource_path(rt, ns, name, subresource), body=obj)

    async def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: PatchType = "merge",
        subresource: str = "",
    ) -> Obj:
        content_type = PATCH_CONTENT_TYPES.get(patch_type)
        if content_type is None:
            raise ValueError(f"patch_type {patch_type!r}: use one of {', '.join(PATCH_CONTENT_TYPES)}")
        return await self._request(
            "PATCH", resource_path(rt, namespace, name, subresource), body=patch, content_type=content_type
        )

    async def create_subresource(
        self, rt: ResourceType, namespace: str | None, name: str, subresource: str, obj: Obj
    ) -> Obj:
        return await self._request("POST", resource_path(rt, namespace, name, subresource), body=obj)

    async def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str = "",
        grace_period_seconds: int | None = None,
        precondition_uid: str = "",
    ) -> Obj:
        body = delete_options_body(propagation_policy, grace_period_seconds, precondition_uid)
        return await self._request("DELETE", resource_path(rt, namespace, name), body=body)


def _event(line: bytes) -> WatchEvent:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise errors.internal(f"the watch stream carried a line that is not JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("object"), dict):
        raise errors.internal("the watch stream carried an event without an object")
    kind = doc.get("type")
    if kind == "ERROR":
        raise status_error(doc["object"])
    if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
        raise errors.internal(f"the watch stream carried an event of unknown type {kind!r}")
    return WatchEvent(kind, doc["object"])


if TYPE_CHECKING:

    def _implements(client: HttpClient) -> ApiClient:
        return client
