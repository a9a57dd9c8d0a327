"""The kubelet's streaming HTTP server: what the API server proxies logs, exec, attach and port-forward to.

    GET       /healthz                                 "ok"
    GET       /containerLogs/{ns}/{pod}/{container}    ?follow&previous&timestamps&tailLines&sinceSeconds
                                                        &sinceTime&limitBytes   (chunked while following)
    GET|POST  /exec/{ns}/{pod}/{container}             ?command=..&command=..&input=1&output=1&error=1&tty=1
                                                        (stdin/stdout/stderr=true are accepted too)
    GET|POST  /attach/{ns}/{pod}/{container}           the same without command
    GET|POST  /portForward/{ns}/{pod}                  SPDY streams carry the ports; WebSocket: ?port=a,b

Every request needs ``Authorization: Bearer <token>`` (401 otherwise); errors are metav1.Status JSON.
Streaming requests are upgrades:

    Upgrade: SPDY/3.1    X-Stream-Protocol-Version negotiated as httpstream.Handshake does (400 when
                         missing, 403 with X-Accepted-Stream-Protocol-Versions when nothing matches),
                         101, then a SPDY session on the raw connection (``upgrade_connection``)
    Upgrade: websocket   the subprotocol negotiated first (400 when nothing matches, which makes kubectl
                         fall back to SPDY), then aiohttp's WebSocketResponse

Run the application with ``handler_cancellation=True``: a ``logs -f`` client that goes away is then
stopped at once (without it, within ``CLIENT_CHECK_INTERVAL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from kubelite.agent.streams import portforward, remotecommand
from kubelite.agent.streams.interface import ExecSession, LogOptions, StreamBackend, StreamError
from kubelite.agent.streams.remotecommand import StreamOptions, negotiate

__all__ = ["UpgradedConnection", "WebSocketConn", "is_websocket", "kubelet_app", "upgrade_connection"]

CLIENT_CHECK_INTERVAL = 1.0
WEBSOCKET_MAX_MESSAGE = 16 * 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _status_response(err: StreamError, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(err.to_status(), status=err.status, headers=headers)


class _RawReader:
    """Every byte after the upgrade, as aiohttp's ``set_parser`` feeds them (``feed_data``/``feed_eof``).

    aiohttp's own StreamReader cannot be used: its flow control pauses the HTTP parser, which asserts
    for upgrades aiohttp does not know (SPDY). This one pauses the transport itself.
    """

    def __init__(self, transport: asyncio.Transport | None, high_water: int = 256 * 1024) -> None:
        self._transport = transport
        self._high_water = high_water
        self._chunks: list[bytes] = []
        self._size = 0
        self._eof = False
        self._paused = False
        self._ready = asyncio.Event()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self._chunks.append(bytes(data))
            self._size += len(data)
            if self._size > self._high_water and not self._paused and self._transport is not None:
                self._paused = True
                self._transport.pause_reading()
            self._ready.set()
        return False, b""

    def feed_eof(self) -> None:
        self._eof = True
        self._ready.set()

    async def read(self) -> bytes:
        """What has arrived (waiting for something), or b"" at the end."""
        while not self._chunks:
            if self._eof:
                return b""
            self._ready.clear()
            await self._ready.wait()
        data, self._chunks, self._size = b"".join(self._chunks), [], 0
        if self._paused and self._transport is not None and not self._transport.is_closing():
            self._paused = False
            self._transport.resume_reading()
        return data


class UpgradedConnection:
    """An HTTP/1.1 connection after ``101 Switching Protocols``: a ``ByteConn``.

    ``response`` is what the handler returns; aiohttp closes the connection after it.
    """

    def __init__(self, request: web.Request, response: web.StreamResponse, reader: _RawReader) -> None:
        self._request = request
        self.response = response
        self._reader = reader

    async def read(self) -> bytes:
        return await self._reader.read()

    async def write(self, data: bytes) -> None:
        await self.response.write(data)

    async def close(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.close()


async def upgrade_connection(
    request: web.Request, headers: Mapping[str, str] | Iterable[tuple[str, str]]
) -> UpgradedConnection:
    """Answer ``101`` with ``headers`` and take the connection over, as WebSocketResponse.prepare does.

    The parser is replaced before the 101 goes out, so no byte the client sends after it can reach
    aiohttp's HTTP parser. Reading pauses the socket while unread data piles up.
    """
    reader = _RawReader(request.transport)
    request.protocol.set_parser(cast(Any, reader))
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    response = web.StreamResponse(status=101, headers=CIMultiDict([("Connection", "Upgrade"), *pairs]))
    response.force_close()
    await response.prepare(request)
    request.protocol.keep_alive(False)
    return UpgradedConnection(request, response, reader)


def is_websocket(request: web.Request) -> bool:
    connection = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    return request.headers.get("Upgrade", "").lower() == "websocket" and "upgrade" in connection


def _is_spdy(request: web.Request) -> bool:
    connection = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    return request.headers.get("Upgrade", "").lower() == "spdy/3.1" and "upgrade" in connection


class WebSocketConn:
    """A ``ByteConn`` over a WebSocket's binary messages (SPDY tunnelled by kubectl >= 1.31)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws

    async def read(self) -> bytes:
        while True:
            msg = await self._ws.receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
            elif msg.type not in (WSMsgType.PING, WSMsgType.PONG):
                return b""

    async def write(self, data: bytes) -> None:
        if self._ws.closed:
            raise ConnectionResetError("the WebSocket is closed")
        await self._ws.send_bytes(data)

    async def close(self) -> None:
        await self._ws.close()


def _offered(request: web.Request, header: str) -> list[str]:
    return [p.strip() for v in request.headers.getall(header, []) for p in v.split(",") if p.strip()]


async def _websocket(request: web.Request, protocol: str) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(
        protocols=(protocol,) if protocol else (), timeout=2.0, max_msg_size=WEBSOCKET_MAX_MESSAGE
    )
    await ws.prepare(request)
    return ws


def _websocket_protocol(request: web.Request, supported: tuple[str, ...]) -> str:
    offered = _offered(request, "Sec-WebSocket-Protocol")
    if not offered:
        return ""  # the v1 binary channel protocol
    chosen = negotiate(offered, supported)
    if chosen is None:
        raise StreamError(
            400,
            "BadRequest",
            f"requested protocol(s) are not supported: {offered}; supports {list(supported)}",
        )
    return chosen


def _spdy_protocol(request: web.Request, supported: tuple[str, ...]) -> str | web.Response:
    offered = _offered(request, "X-Stream-Protocol-Version")
    if not offered:
        raise StreamError(400, "BadRequest", "unable to upgrade: X-Stream-Protocol-Version is required")
    chosen = negotiate(offered, supported)
    if chosen is None:
        err = StreamError(
            403,
            "Forbidden",
            f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
            f"server accepts {list(supported)}",
        )
        return _status_response(err, {"X-Accepted-Stream-Protocol-Versions": ", ".join(supported)})
    return chosen


def _no_upgrade() -> StreamError:
    return StreamError(
        400,
        "BadRequest",
        "unable to upgrade: missing upgrade headers in request: this endpoint speaks SPDY/3.1 or WebSocket",
    )


class _Handlers:
    def __init__(self, backend: StreamBackend) -> None:
        self.backend = backend

    async def exec(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = _names(request, "container")
        command = request.query.getall("command", [])
        if not command:
            raise StreamError(400, "BadRequest", "you must specify at least one command for the container")
        opts = StreamOptions.from_query(request.query)

        def start() -> Awaitable[ExecSession]:
            return self.backend.exec(ns, pod, container, command, tty=opts.tty, stdin=opts.stdin)

        return await _remote_command(request, opts, start)

    async def attach(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = _names(request, "container")
        opts = StreamOptions.from_query(request.query)

        def start() -> Awaitable[ExecSession]:
            return self.backend.attach(ns, pod, container, tty=opts.tty, stdin=opts.stdin)

        return await _remote_command(request, opts, start)

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        ns, pod, _ = _names(request)

        def dial(port: int) -> Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
            return self.backend.port_forward(ns, pod, port)

        if is_websocket(request):
            if portforward.TUNNEL_PROTOCOL in _offered(request, "Sec-WebSocket-Protocol"):
                ws = await _websocket(request, portforward.TUNNEL_PROTOCOL)
                await portforward.serve_spdy(WebSocketConn(ws), dial, target=f"pod {ns}/{pod}")
                return ws
            protocol = _websocket_protocol(request, portforward.WEBSOCKET_PROTOCOLS)
            ports = portforward.parse_ports(
                request.query.getall("port", []) + request.query.getall("ports", [])
            )
            ws = await _websocket(request, protocol)
            await portforward.serve_websocket(ws, protocol, ports, dial, target=f"pod {ns}/{pod}")
            return ws
        if not _is_spdy(request):
            raise _no_upgrade()
        chosen = _spdy_protocol(request, (portforward.SPDY_PROTOCOL,))
        if isinstance(chosen, web.Response):
            return chosen
        conn = await upgrade_connection(request, {"Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": chosen})
        await portforward.serve_spdy(conn, dial, target=f"pod {ns}/{pod}")
        return conn.response

    async def logs(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = _names(request, "container")
        opts = LogOptions.from_query(request.query)
        chunks = self.backend.logs(ns, pod, container, opts)
        try:
            first = await anext(chunks, None)
        except BaseException:
            await _close_iterator(chunks)
            raise
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent, chunk = 0, first
        try:
            while chunk is not None:
                if opts.limit_bytes is not None:
                    chunk = chunk[: max(opts.limit_bytes - sent, 0)]
                if chunk:
                    await response.write(chunk)
                    sent += len(chunk)
                if opts.limit_bytes is not None and sent >= opts.limit_bytes:
                    break
                chunk = await _next_chunk(chunks, request)
        except (ConnectionError, StreamError):
            pass  # the client left, or the log ended badly after it started: end the stream
        finally:
            await _close_iterator(chunks)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response


def _names(request: web.Request, *extra: str) -> tuple[str, str, str]:
    info = request.match_info
    return info["namespace"], info["pod"], info.get(extra[0], "") if extra else ""


async def _remote_command(
    request: web.Request, opts: StreamOptions, start: Callable[[], Awaitable[ExecSession]]
) -> web.StreamResponse:
    if is_websocket(request):
        protocol = _websocket_protocol(request, remotecommand.WEBSOCKET_PROTOCOLS)
        ws = await _websocket(request, protocol)
        await remotecommand.serve_websocket(ws, protocol, opts, start)
        return ws
    if not _is_spdy(request):
        raise _no_upgrade()
    chosen = _spdy_protocol(request, remotecommand.SPDY_PROTOCOLS)
    if isinstance(chosen, web.Response):
        return chosen
    conn = await upgrade_connection(request, {"Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": chosen})
    await remotecommand.serve_spdy(conn, chosen, opts, start)
    return conn.response


async def _next_chunk(chunks: AsyncIterator[bytes], request: web.Request) -> bytes | None:
    """The next chunk, or None at the end of the log or once the client has gone away."""
    pending = asyncio.ensure_future(anext(chunks, None))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=CLIENT_CHECK_INTERVAL)
            if done:
                return pending.result()
            transport = request.transport
            if transport is None or transport.is_closing():
                return None
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending


async def _close_iterator(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def kubelet_app(backend: StreamBackend, *, token: str) -> web.Application:
    """The streaming server's application; ``token`` is the bearer token the API server presents."""
    expected = token.encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        given = auth[7:].strip().encode() if auth[:7].lower() == "bearer " else b""
        if not expected or not given or not hmac.compare_digest(given, expected):
            return _status_response(StreamError(401, "Unauthorized", "Unauthorized"))
        if request.method not in ("GET", "POST"):
            return _status_response(
                StreamError(405, "MethodNotAllowed", f"{request.method} is not allowed here")
            )
        try:
            return await handler(request)
        except StreamError as e:
            return _status_response(e)

    handlers = _Handlers(backend)
    app = web.Application(middlewares=[guard])
    app.router.add_route("*", "/healthz", _healthz)
    app.router.add_route("*", "/containerLogs/{namespace}/{pod}/{container}", handlers.logs)
    app.router.add_route("*", "/exec/{namespace}/{pod}/{container}", handlers.exec)
    app.router.add_route("*", "/attach/{namespace}/{pod}/{container}", handlers.attach)
    app.router.add_route("*", "/portForward/{namespace}/{pod}", handlers.port_forward)
    return app
