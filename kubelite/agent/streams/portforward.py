"""port-forward, the kubelet's side: SPDY (also tunnelled in a WebSocket) and the WebSocket channels.

SPDY/3.1 "portforward.k8s.io"       per forwarded connection the client opens two streams with the
                                    same ``requestID`` header: ``streamType: error`` and
                                    ``streamType: data``, each with a ``port`` header. Once both are
                                    there the pod's port is dialled and bytes flow both ways; a
                                    failure is written as text on the error stream. When either
                                    side is done, both streams are closed (kubectl waits for that).
WebSocket "SPDY/3.1+portforward.k8s.io"  the same SPDY session, carried in binary messages
                                    (kubectl >= 1.31; the API server does not translate it here)
WebSocket "v4.channel.k8s.io" / ""  ``?ports=a,b``: channel 2i is port i's data, 2i+1 its errors;
                                    each channel first carries the port (uint16, little endian)
                                    (the official Python client's ``portforward``)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from kubelite.agent.streams.interface import ByteConn, StreamError
from kubelite.agent.streams.remotecommand import QueueSource, WsSender, close_websocket, receive_channels
from kubelite.agent.streams.spdy import Headers, SpdySession, SpdyStream

__all__ = [
    "SPDY_PROTOCOL",
    "TUNNEL_PROTOCOL",
    "WEBSOCKET_PROTOCOLS",
    "Dialer",
    "check_stream_headers",
    "parse_ports",
    "serve_spdy",
    "serve_websocket",
]

SPDY_PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
WEBSOCKET_PROTOCOLS = ("v4.channel.k8s.io", "v4.base64.channel.k8s.io")
PAIR_TIMEOUT = 30.0
CHUNK = 32 * 1024

Dialer = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
"""Opens a connection to a port of the pod; raises StreamError or OSError."""


def _header(headers: Headers, name: str) -> str:
    return next((v for n, v in headers if n.lower() == name.lower()), "")


def check_stream_headers(headers: Headers) -> str | None:
    """Why a new port-forward stream is refused (None: accepted), as the kubelet checks it."""
    port = _header(headers, "port")
    if not port:
        return '"port" header is required'
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f'unable to parse "{port}" as a port'
    if _header(headers, "streamType") not in ("error", "data"):
        return f'invalid stream type "{_header(headers, "streamType")}"'
    return None


def parse_ports(values: Sequence[str]) -> list[int]:
    """The ``ports`` query parameters of a WebSocket port-forward; StreamError(400) when invalid."""
    ports: list[int] = []
    for value in values:
        for text in value.split(","):
            if not text.strip().isdigit() or not 0 < int(text) < 65536:
                raise StreamError(400, "BadRequest", f'unable to parse "{text}" as a port')
            ports.append(int(text))
    if not ports:
        raise StreamError(400, "BadRequest", 'query parameter "ports" is required')
    return ports


async def _copy_to_writer(read: Callable[[], Awaitable[bytes]], writer: asyncio.StreamWriter) -> None:
    try:
        while data := await read():
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _copy_from_reader(reader: asyncio.StreamReader, write: Callable[[bytes], Awaitable[None]]) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(CHUNK):
            await write(data)


def _failure(port: int, target: str, err: BaseException) -> str:
    if isinstance(err, StreamError):
        return err.message  # the back end's words are for the user already
    reason = os.strerror(err.errno).lower() if isinstance(err, OSError) and err.errno else str(err)
    return f"error forwarding port {port} to {target}: {reason}"


async def _forward(
    port: int,
    target: str,
    dial: Dialer,
    read: Callable[[], Awaitable[bytes]],
    write: Callable[[bytes], Awaitable[None]],
    report: Callable[[str], Awaitable[None]],
) -> None:
    """Dial ``port`` and copy both ways until the pod's side ends, or the client's side ends and the
    pod's answer is complete."""
    try:
        reader, writer = await dial(port)
    except (StreamError, OSError) as e:
        await report(_failure(port, target, e))
        return
    try:
        upstream = asyncio.create_task(_copy_to_writer(read, writer))
        await _copy_from_reader(reader, write)
        upstream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upstream
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


@dataclass(slots=True)
class _Pair:
    request_id: str
    data: SpdyStream | None = None
    error: SpdyStream | None = None
    complete: asyncio.Event = field(default_factory=asyncio.Event)


async def _serve_pair(pair: _Pair, dial: Dialer, target: str) -> None:
    data, error = pair.data, pair.error
    assert data is not None and error is not None

    async def report(message: str) -> None:
        with contextlib.suppress(ConnectionError):
            await error.write(message.encode())

    try:
        await _forward(int(data.header("port")), target, dial, data.read, data.write, report)
    finally:
        await data.close()
        await error.close()


async def _expire(pair: _Pair, pairs: dict[str, _Pair]) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(PAIR_TIMEOUT):
            await pair.complete.wait()
            return
    pairs.pop(pair.request_id, None)
    for stream in (pair.error, pair.data):
        if stream is not None:
            with contextlib.suppress(ConnectionError):
                await stream.write(f"timed out waiting for the streams of request {pair.request_id}".encode())
            await stream.close()


async def serve_spdy(conn: ByteConn, dial: Dialer, *, target: str = "the pod") -> None:
    """Serve port-forward streams on ``conn`` (an upgraded connection or a SPDY tunnel) until it ends.

    ``target`` names the pod in error messages ("pod NS/NAME")."""
    session = SpdySession(conn, server=True, check=check_stream_headers)
    session.start()
    pairs: dict[str, _Pair] = {}
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        while (stream := await session.accept()) is not None:
            kind = stream.header("streamType")
            # Clients older than 1.6 send no requestID: pair by stream id as the kubelet does.
            request_id = stream.header("requestID") or str(stream.id - (2 if kind == "data" else 0))
            pair = pairs.get(request_id)
            if pair is None:
                pair = pairs[request_id] = _Pair(request_id)
                spawn(_expire(pair, pairs))
            if getattr(pair, kind) is not None:
                await stream.write(f"{kind} stream already assigned for request {request_id}".encode())
                await stream.close()
                continue
            setattr(pair, kind, stream)
            if pair.data is not None and pair.error is not None:
                pair.complete.set()
                pairs.pop(request_id, None)
                spawn(_serve_pair(pair, dial, target))
    finally:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()


async def serve_websocket(
    ws: web.WebSocketResponse, protocol: str, ports: Sequence[int], dial: Dialer, *, target: str = "the pod"
) -> None:
    """The WebSocket channel protocol: one connection per requested port, for the connection's life."""
    b64 = "base64" in protocol
    send = WsSender(ws, b64).send
    sources = {2 * i: QueueSource() for i in range(len(ports))}
    receiver = asyncio.create_task(receive_channels(ws, b64, sources, v5=False))
    try:
        for i, port in enumerate(ports):
            prefix = struct.pack("<H", port)
            await send(2 * i, prefix)
            await send(2 * i + 1, prefix)
        await asyncio.gather(
            *(_forward_channel(i, port, target, dial, sources[2 * i], send) for i, port in enumerate(ports))
        )
    except (ConnectionError, OSError):
        pass
    finally:
        await close_websocket(ws, receiver)


async def _forward_channel(
    index: int,
    port: int,
    target: str,
    dial: Dialer,
    source: QueueSource,
    send: Callable[[int, bytes], Awaitable[None]],
) -> None:
    async def write(data: bytes) -> None:
        for i in range(0, len(data), CHUNK):
            await send(2 * index, data[i : i + CHUNK])

    async def report(message: str) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await send(2 * index + 1, message.encode())

    await _forward(port, target, dial, source.read, write, report)
