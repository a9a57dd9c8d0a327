"""The subresources a node agent serves, the API server's half: pods/log, exec, attach, portforward,
proxy and nodes/proxy.

    kubectl ─► ResourceHandler ─► nodeproxy.serve ─► NodeProxy
      1. resolve (pure, as kube-apiserver's pod strategy does):
           pod ─► container: the one named (400 "container X is not valid for pod P"), else the only
                  one (400 "a container name must be specified for pod P, choose one of: [a b]")
               ─► spec.nodeName (400 "pod P does not have a host assigned"; logs of such a pod are
                  empty, as in Kubernetes) ─► Node ─► status.addresses (InternalIP first) and
                  status.daemonEndpoints.kubeletEndpoint.Port (10250 when unset)
           the kubelet's path and query: /exec/NS/POD/C?command=..&input=1&output=1&error=1&tty=1, ...
      2. forward to http://ADDRESS:PORT with the API server's bearer token:
           upgrade requests (SPDY/3.1, WebSocket) ─► one TCP connection; the agent's answer is
             relayed: a 101 switches the client's connection too and bytes are spliced both ways
             until either side ends (the protocols are the agent's business, as with
             UpgradeAwareHandler); any other answer is returned as it is
           plain requests (logs, proxy) ─► aiohttp client; the body streams back chunk by chunk
    pods/NAME[:PORT]/proxy/PATH  ─► http://PODIP:PORT/PATH (PORT: the first declared containerPort, else 80;
                                    the client's Authorization header is not passed on)
    nodes/NAME[:PORT]/proxy/PATH ─► the agent's /PATH
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from kubelite.agent.streams import UpgradedConnection, is_websocket, upgrade_connection
from kubelite.api import errors
from kubelite.api.resources import INDEX, ResourceType
from kubelite.apiserver.requestinfo import RequestInfo
from kubelite.apiserver.rest import Rest

__all__ = [
    "SUBRESOURCES",
    "NodeProxy",
    "Target",
    "install",
    "kubelet_endpoint",
    "kubelet_query",
    "pick_container",
    "serve",
]

SUBRESOURCES = frozenset({"log", "exec", "attach", "portforward", "proxy"})
DEFAULT_KUBELET_PORT = 10250
ADDRESS_PREFERENCE = ("InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS", "Hostname")
HOP_BY_HOP = frozenset(
    h.lower()
    for h in ("Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
              "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length")
)  # fmt: skip
CONNECT_TIMEOUT = 10.0
HEAD_TIMEOUT = 30.0
LINGER = 10.0
MAX_ERROR_BODY = 1024 * 1024
PODS = INDEX.by_kind[("v1", "Pod")]
NODES = INDEX.by_kind[("v1", "Node")]
Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: ``http://host:port`` + ``path_qs``; ``token`` the bearer to present."""

    host: str
    port: int
    path_qs: str
    token: str = ""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path_qs}"


# --- pure resolution ----------------------------------------------------------------------------------


def _container_names(pod: Obj) -> list[str]:
    spec = pod.get("spec") or {}
    return [
        str(c.get("name", ""))
        for key in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(key) or []
    ]


def pick_container(pod: Obj, wanted: str) -> str:
    """The container a log/exec/attach request is for (kube-apiserver's validateContainer)."""
    name = pod["metadata"]["name"]
    if wanted:
        if wanted not in _container_names(pod):
            raise errors.bad_request(f"container {wanted} is not valid for pod {name}")
        return wanted
    containers = (pod.get("spec") or {}).get("containers") or []
    if len(containers) == 1:
        return str(containers[0].get("name", ""))
    if not containers:
        raise errors.bad_request(f"a container name must be specified for pod {name}")
    choices = " ".join(_container_names(pod))
    raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: [{choices}]")


def kubelet_endpoint(node: Obj) -> tuple[str, int]:
    """The agent's address (InternalIP preferred) and port (daemonEndpoints, else 10250)."""
    status = node.get("status") or {}
    by_type: dict[str, str] = {}
    for entry in status.get("addresses") or []:
        by_type.setdefault(str(entry.get("type", "")), str(entry.get("address", "")))
    address = next((by_type[t] for t in ADDRESS_PREFERENCE if by_type.get(t)), "")
    if not address:
        raise errors.StatusError(
            503,
            "ServiceUnavailable",
            f"node {node['metadata']['name']} reports no address in status.addresses: its agent has not "
            "registered yet; wait for the node to become Ready",
        )
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 0
    return address, int(port) or DEFAULT_KUBELET_PORT


def _flag(query: Mapping[str, str], name: str) -> bool:
    return str(query.get(name, "")).lower() in ("true", "1")


def _int_param(query: Mapping[str, str], name: str) -> str | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise errors.bad_request(f'{name}: Invalid value: "{text}": must be an integer') from None
    if value < 0:
        raise errors.bad_request(f"{name}: Invalid value: {value}: must be greater than or equal to 0")
    return str(value)


def kubelet_query(sub: str, query: Any) -> list[tuple[str, str]]:
    """The kubelet's query for a subresource request (kube-apiserver's streamParams / LogLocation)."""
    out: list[tuple[str, str]] = []
    if sub == "log":
        for name in ("follow", "previous", "timestamps"):
            if _flag(query, name):
                out.append((name, "true"))
        for name in ("sinceSeconds", "tailLines", "limitBytes"):
            if (value := _int_param(query, name)) is not None:
                out.append((name, value))
        if query.get("sinceTime"):
            out.append(("sinceTime", str(query["sinceTime"])))
        return out
    if sub in ("exec", "attach"):
        for api_name, kubelet_name in (
            ("stdin", "input"),
            ("stdout", "output"),
            ("stderr", "error"),
            ("tty", "tty"),
        ):
            if _flag(query, api_name):
                out.append((kubelet_name, "1"))
        if sub == "exec":
            out += [("command", c) for c in query.getall("command", [])]
        return out
    if sub == "portforward":
        ports = [p for value in query.getall("ports", []) for p in str(value).split(",") if p]
        if ports:
            out.append(("port", ",".join(ports)))
    return out


def _split_name(text: str) -> tuple[str, str, str]:
    """``[scheme:]name[:port]`` (utilnet.SplitSchemeNamePort) → (scheme, name, port)."""
    parts = text.split(":")
    if len(parts) == 3 and parts[0] in ("http", "https"):
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 1:
        return "", parts[0], ""
    raise errors.bad_request(f'invalid request "{text}": write NAME, NAME:PORT or SCHEME:NAME:PORT')


def _pod_proxy_target(pod: Obj, port: str, tail: str, query_string: str) -> Target:
    if not port:
        declared = [p.get("containerPort") for c in (pod.get("spec") or {}).get("containers") or []
                    for p in c.get("ports") or []]  # fmt: skip
        port = str(declared[0]) if declared else "80"
    ip = (pod.get("status") or {}).get("podIP") or ""
    if not ip:
        raise errors.StatusError(
            503,
            "ServiceUnavailable",
            f"pod {pod['metadata']['name']} has no IP address yet; wait until it runs",
        )
    if not _proxyable(ip):
        raise errors.bad_request("address not allowed")  # as kube-apiserver: no loopback, link-local, ...
    if not port.isdigit():
        port = _named_port(pod, port)
    return Target(ip, int(port), _path(tail, query_string))


def _proxyable(ip: str) -> bool:
    """Go's IP.IsGlobalUnicast: the API server never proxies to its own loopback or link-local peers."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not (addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified
                or addr == ipaddress.IPv4Address("255.255.255.255"))  # fmt: skip


def _named_port(pod: Obj, name: str) -> str:
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == name:
                return str(p.get("containerPort"))
    raise errors.bad_request(f"pod {pod['metadata']['name']} has no port named {name}")


def _path(tail: str, query_string: str) -> str:
    path = tail if tail.startswith("/") else "/" + tail
    return path + (f"?{query_string}" if query_string else "")


def _proxy_tail(raw_path: str, info: RequestInfo) -> str:
    """What follows ``.../NAME/proxy`` in the raw path (slashes and escapes kept as sent)."""
    path = raw_path.split("?", 1)[0]
    marker = f"/{info.name}/proxy"
    at = path.find(marker)
    return path[at + len(marker) :] if at >= 0 else "/" + "/".join(info.rest)


# --- forwarding ---------------------------------------------------------------------------------------


def _forwardable(headers: Iterable[tuple[str, str]], *, drop: Iterable[str] = ()) -> list[tuple[str, str]]:
    dropped = HOP_BY_HOP | {d.lower() for d in drop}
    return [(k, v) for k, v in headers if k.lower() not in dropped]


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, CIMultiDict[str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"the node agent answered with something that is not HTTP: {lines[0]!r}")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.add(name.strip(), value.strip())
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        body = b""
        while len(body) < MAX_ERROR_BODY:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            body += await reader.readexactly(size + 2)
            body = body[:-2]
        return body
    if (length := headers.get("Content-Length")) is not None:
        return await reader.readexactly(min(int(length), MAX_ERROR_BODY))
    return await reader.read(MAX_ERROR_BODY)


async def _splice(
    client: UpgradedConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    async def up() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await client.read():
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

    async def down() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(256 * 1024):
                await client.write(data)

    to_agent, to_client = asyncio.create_task(up()), asyncio.create_task(down())
    try:
        await asyncio.wait({to_agent, to_client}, return_when=asyncio.FIRST_COMPLETED)
        if not to_client.done():
            # The client is done sending: give the agent a bounded time to finish its answer.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LINGER):
                    await to_client
    finally:
        for task in (to_agent, to_client):
            task.cancel()
        await asyncio.gather(to_agent, to_client, return_exceptions=True)


def _unreachable(what: str, target: Target, err: BaseException) -> errors.StatusError:
    errno = getattr(err, "errno", None) or getattr(getattr(err, "os_error", None), "errno", None)
    reason = os.strerror(errno).lower() if errno else (str(err) or type(err).__name__)
    hint = "; is its `kubelite agent` running?" if what.startswith("the agent") else ""
    return errors.StatusError(
        503,
        "ServiceUnavailable",
        f"error trying to reach {what} at {target.host}:{target.port}: {reason}{hint}",
    )


class NodeProxy:
    """Resolves and forwards the agent-served subresources (see the module docstring)."""

    def __init__(self, rest: Rest, token: str) -> None:
        self.rest = rest
        self.token = token
        self._client: aiohttp.ClientSession | None = None

    def client(self) -> aiohttp.ClientSession:
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=None),
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _node_target(self, node_name: str, path_qs: str, port: str = "") -> Target:
        node = await self.rest.get(NODES, "", node_name)
        host, kubelet_port = kubelet_endpoint(node)
        return Target(host, int(port) if port.isdigit() else kubelet_port, path_qs, self.token)

    async def serve(self, request: web.Request, info: RequestInfo, rt: ResourceType) -> web.StreamResponse:
        sub, query = info.subresource, request.query
        if rt.kind == "Node":
            _, name, port = _split_name(info.name)
            target = await self._node_target(
                name, _path(_proxy_tail(request.raw_path, info), request.query_string), port
            )
            return await self._plain(request, target, f"the agent of node {name}")
        if sub == "proxy":
            _, name, port = _split_name(info.name)
            pod = await self.rest.get(PODS, info.namespace, name)
            target = _pod_proxy_target(pod, port, _proxy_tail(request.raw_path, info), request.query_string)
            return await self._plain(request, target, f"pod {name}", pass_auth=False)
        pod = await self.rest.get(PODS, info.namespace, info.name)
        container = pick_container(pod, str(query.get("container", ""))) if sub != "portforward" else ""
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        if not node_name:
            if sub == "log":
                return web.Response(body=b"", content_type="text/plain")  # as kube-apiserver: no logs yet
            raise errors.bad_request(f"pod {info.name} does not have a host assigned")
        kubelet_path = {"log": "containerLogs", "portforward": "portForward"}.get(sub, sub)
        parts = [kubelet_path, info.namespace, info.name] + ([container] if container else [])
        params = kubelet_query(sub, query)
        path_qs = (
            "/" + "/".join(quote(p, safe="") for p in parts) + (f"?{urlencode(params)}" if params else "")
        )
        target = await self._node_target(node_name, path_qs)
        what = f"the agent of node {node_name}"
        if sub == "log":
            if request.method != "GET":
                raise errors.method_not_allowed()
            return await self._plain(request, target, what)
        if not (is_websocket(request) or "upgrade" in request.headers.get("Connection", "").lower()):
            raise errors.bad_request("Upgrade request required")
        return await self._upgrade(request, target, what)

    async def _plain(
        self, request: web.Request, target: Target, what: str, *, pass_auth: bool = True
    ) -> web.StreamResponse:
        headers = _forwardable(request.headers.items(), drop=("Authorization", "Accept-Encoding"))
        if pass_auth and target.token:
            headers.append(("Authorization", f"Bearer {target.token}"))
        body = request.content if request.body_exists else None
        try:
            upstream = await self.client().request(  # the path stays as the client escaped it
                request.method,
                URL(target.url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise _unreachable(what, target, e) from None
        try:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in _forwardable(upstream.headers.items(), drop=("Date", "Server")):
                response.headers.add(name, value)
            if upstream.headers.get("Content-Length") is not None:
                response.content_length = int(upstream.headers["Content-Length"])
            await response.prepare(request)
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            return response
        finally:
            if upstream.content.at_eof():
                upstream.release()
            else:
                upstream.close()  # a follower that left: a half-read connection must not be reused

    async def _upgrade(self, request: web.Request, target: Target, what: str) -> web.StreamResponse:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(target.host, target.port)
        except (OSError, TimeoutError) as e:
            raise _unreachable(what, target, e) from None
        try:
            lines = [f"{request.method} {target.path_qs} HTTP/1.1", f"Host: {target.host}:{target.port}"]
            lines += [f"{k}: {v}" for k, v in _forwardable(request.headers.items(), drop=("Authorization",))]
            lines += [f"Authorization: Bearer {target.token}", "Connection: Upgrade"]
            lines.append(f"Upgrade: {request.headers.get('Upgrade', '')}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            try:
                await writer.drain()
                async with asyncio.timeout(HEAD_TIMEOUT):
                    status, reason, headers = await _read_head(reader)
                    if status != 101:
                        body = await _read_body(reader, headers)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
                raise _unreachable(what, target, e) from None
            if status != 101:
                return web.Response(
                    status=status,
                    reason=reason or None,
                    body=body,
                    content_type=headers.get("Content-Type", "text/plain").split(";")[0],
                )
            relayed = _forwardable(headers.items(), drop=("Date", "Server"))
            relayed.append(("Upgrade", headers.get("Upgrade", "")))
            client = await upgrade_connection(request, relayed)
            await _splice(client, reader, writer)
            return client.response
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


NODE_PROXY: web.AppKey[NodeProxy] = web.AppKey("kubelite.nodeproxy", NodeProxy)


def install(app: web.Application, rest: Rest, token: str) -> None:
    """Make ``serve`` work for requests to ``app``; the proxy's HTTP client closes with the app."""
    proxy = NodeProxy(rest, token)
    app[NODE_PROXY] = proxy

    async def close(_: web.Application) -> None:
        await proxy.close()

    app.on_cleanup.append(close)


async def serve(request: web.Request, info: RequestInfo, rt: ResourceType) -> web.StreamResponse:
    """Serve a pods/{log,exec,attach,portforward,proxy} or nodes/proxy request."""
    proxy = request.config_dict.get(NODE_PROXY)
    if proxy is None:
        raise errors.StatusError(
            503,
            "ServiceUnavailable",
            f"{rt.plural}/{info.subresource} is not available in this API server (no node proxy installed)",
        )
    return await proxy.serve(request, info, rt)
