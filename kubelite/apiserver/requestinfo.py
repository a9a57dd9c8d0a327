"""Parse a request path into what it addresses, like apiserver's RequestInfoFactory.

    /api/v1/namespaces/{ns}/{resource}/{name}/{subresource}/...
    /apis/{group}/{version}/namespaces/{ns}/{resource}/{name}/{subresource}/...
    /apis/{group}/{version}/{cluster-scoped resource}/{name}
    /api/v1/namespaces/{name}            (the namespace object itself)

Pure: no I/O; the dispatcher in ``app.py`` routes on the result.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestInfo:
    is_resource: bool
    path: str
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    rest: tuple[str, ...] = ()
    """Path parts after the subresource (used by proxy: /proxy/some/path)."""
    legacy_watch: bool = False


def parse_request_path(path: str) -> RequestInfo:
    """Split ``path`` into a RequestInfo; ``is_resource`` is False for discovery and other paths."""
    raw = path.split("?", 1)[0]
    parts = raw.strip("/").split("/")
    if not parts or parts[0] not in ("api", "apis"):
        return RequestInfo(False, raw)
    if parts[0] == "api":
        if len(parts) < 3:
            return RequestInfo(False, raw)
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return RequestInfo(False, raw)
        group, version, rest = parts[1], parts[2], parts[3:]
    legacy_watch = False
    if rest and rest[0] == "watch":
        legacy_watch = True
        rest = rest[1:]
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces":
        if len(rest) == 2:
            # /api/v1/namespaces/{name}: the Namespace object itself.
            return RequestInfo(
                True, raw, group, version, "", "namespaces", rest[1], legacy_watch=legacy_watch
            )
        if len(rest) >= 3 and rest[2] in ("status", "finalize") and len(rest) == 3:
            return RequestInfo(
                True, raw, group, version, "", "namespaces", rest[1], rest[2], legacy_watch=legacy_watch
            )
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return RequestInfo(False, raw)
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    tail = tuple(rest[3:])
    return RequestInfo(True, raw, group, version, namespace, resource, name, sub, tail, legacy_watch)
