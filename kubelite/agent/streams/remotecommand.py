"""exec and attach (the remotecommand protocols), the kubelet's side, over SPDY and over WebSocket.

    SPDY/3.1   X-Stream-Protocol-Version v4 / v3 / v2 / channel.k8s.io. The client opens one stream per
               ``streamType`` header: error, stdin, stdout, stderr, resize (v3+, with a TTY).
    WebSocket  subprotocol v5 / v4 / channel.k8s.io (binary) or [v4.]base64.channel.k8s.io (text).
               Each message is one write; its first byte is the channel: 0 stdin, 1 stdout, 2 stderr,
               3 error, 4 resize. v5 adds the client's half-close: [255, channel].

Both end in ``run_command``: wait (bounded) for the first terminal size when there is a TTY, start the
command, pump stdin / stdout / stderr / resize, wait for the exit, drain the output, then write the
exit status on the error stream. v4 and v5 write a metav1.Status JSON there (Success, or Failure with
reason NonZeroExitCode and the exit code in ``details.causes``: kubectl exits with that code); v1-v3
write the failure message as text and nothing on success. If the client goes away first, the command
is killed.

The server never sends v5 CLOSE signals: client-go's WebSocket reader does not know channel 255 and
would log every one; the end of the output is the end of the connection, as with the kubelet.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from kubelite.agent.streams.interface import (
    INITIAL_TERMINAL_SIZE,
    ByteConn,
    ExecSession,
    StdinWriter,
    StreamError,
    TerminalSize,
)
from kubelite.agent.streams.spdy import SpdySession, SpdyStream

__all__ = [
    "SPDY_PROTOCOLS",
    "WEBSOCKET_PROTOCOLS",
    "QueueSource",
    "StreamOptions",
    "WsSender",
    "close_websocket",
    "exit_status",
    "negotiate",
    "receive_channels",
    "serve_spdy",
    "serve_websocket",
]

SPDY_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
WEBSOCKET_PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
)
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
CLOSE_SIGNAL = 255
STREAM_CREATION_TIMEOUT = 30.0
FIRST_SIZE_WAIT = 1.0
"""How long a TTY command waits for the client's first window size before it starts anyway."""
OUTPUT_DRAIN_TIMEOUT = 5.0
"""After the exit, how long output may still arrive (a background child may hold the pipes)."""
CHUNK = 32 * 1024

Starter = Callable[[], Awaitable[ExecSession]]


@dataclass(frozen=True, slots=True)
class StreamOptions:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> StreamOptions:
        """The kubelet's parameters (input/output/error/tty=1) or the API's (stdin/stdout/stderr=true)."""

        def flag(*names: str) -> bool:
            return any(query.get(n, "").lower() in ("1", "true") for n in names)

        tty = flag("tty")
        opts = cls(flag("input", "stdin"), flag("output", "stdout"), flag("error", "stderr") and not tty, tty)
        if not (opts.stdin or opts.stdout or opts.stderr):
            raise StreamError(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr")
        return opts


def negotiate(offered: Iterable[str], supported: Sequence[str]) -> str | None:
    """The first protocol in the client's order that the server supports (httpstream.Handshake)."""
    wanted = [p.strip() for value in offered for p in value.split(",") if p.strip()]
    return next((p for p in wanted if p in supported), None)


def exit_status(code: int) -> dict[str, Any]:
    """The metav1.Status a finished command reports on the error stream."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


class _Source(Protocol):
    async def read(self) -> bytes: ...


class _Sink(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


@dataclass(slots=True)
class _Streams:
    error: _Sink
    structured: bool
    """v4+: a metav1.Status JSON on the error stream; v1-v3: the failure message as text."""
    stdin: _Source | None = None
    stdout: _Sink | None = None
    stderr: _Sink | None = None
    resize: _Source | None = None


async def _write_status(streams: _Streams, status: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        if streams.structured:
            await streams.error.write(json.dumps(status).encode())
        elif status.get("status") != "Success":
            await streams.error.write(str(status.get("message", "")).encode())
        await streams.error.close()


async def _read_sizes(source: _Source, sizes: asyncio.Queue[TerminalSize]) -> None:
    """Terminal sizes from the resize stream: JSON objects ``{"Width": w, "Height": h}`` in a row."""
    decoder, buf = json.JSONDecoder(), ""
    while chunk := await source.read():
        buf += chunk.decode(errors="replace")
        while buf.strip():
            try:
                obj, end = decoder.raw_decode(buf.lstrip())
            except ValueError:
                break  # an incomplete object: wait for more
            buf = buf.lstrip()[end:]
            if isinstance(obj, dict):
                lower = {str(k).lower(): v for k, v in obj.items()}
                with contextlib.suppress(TypeError, ValueError):
                    sizes.put_nowait(TerminalSize(int(lower.get("width", 0)), int(lower.get("height", 0))))


async def _pump_out(reader: asyncio.StreamReader | None, sink: _Sink | None) -> None:
    if reader is None:
        return
    while chunk := await reader.read(CHUNK):
        if sink is not None:
            try:
                await sink.write(chunk)
            except (ConnectionError, OSError):
                sink = None  # keep reading, so the command never blocks on a full pipe


async def _pump_in(source: _Source | None, writer: StdinWriter | None) -> None:
    try:
        if source is None:
            return
        while data := await source.read():
            if writer is not None:
                writer.write(data)
                await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        if writer is not None:
            writer.close()  # EOF for a command reading stdin


async def _apply_sizes(session: ExecSession, sizes: asyncio.Queue[TerminalSize]) -> None:
    while True:
        size = await sizes.get()
        session.resize(size.width, size.height)


async def run_command(start: Starter, streams: _Streams, *, tty: bool, disconnected: asyncio.Event) -> None:
    """Start the command and serve it until it exits (see the module docstring)."""
    sizes: asyncio.Queue[TerminalSize] = asyncio.Queue()
    helpers: list[asyncio.Task[Any]] = []
    if streams.resize is not None:
        helpers.append(asyncio.create_task(_read_sizes(streams.resize, sizes)))
    try:
        first: TerminalSize | None = None
        if tty and streams.resize is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_SIZE_WAIT):
                    first = await sizes.get()
        size_for_start = INITIAL_TERMINAL_SIZE.set(first)
        try:
            session = await start()
        except StreamError as e:
            await _write_status(streams, e.to_status())
            return
        except OSError as e:
            what = f"{e.strerror}: {e.filename}" if e.strerror and e.filename else str(e)
            error = StreamError(500, "InternalError", f"error executing command in container: {what}")
            await _write_status(streams, error.to_status())
            return
        finally:
            INITIAL_TERMINAL_SIZE.reset(size_for_start)
        await _serve_session(session, streams, first, sizes, helpers, disconnected)
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)


async def _serve_session(
    session: ExecSession,
    streams: _Streams,
    first: TerminalSize | None,
    sizes: asyncio.Queue[TerminalSize],
    helpers: list[asyncio.Task[Any]],
    disconnected: asyncio.Event,
) -> None:
    finished = False
    try:
        if first is not None:
            session.resize(first.width, first.height)
        helpers.append(asyncio.create_task(_apply_sizes(session, sizes)))
        helpers.append(asyncio.create_task(_pump_in(streams.stdin, session.stdin)))
        outputs = [
            asyncio.create_task(_pump_out(session.stdout, streams.stdout)),
            asyncio.create_task(_pump_out(session.stderr, streams.stderr)),
        ]
        helpers.extend(outputs)
        exited = asyncio.create_task(session.wait())
        gone = asyncio.create_task(disconnected.wait())
        helpers += [exited, gone]
        await asyncio.wait({exited, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            return  # the client went away: the finally kills the command
        code = exited.result()
        finished = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(OUTPUT_DRAIN_TIMEOUT):
                await asyncio.gather(*outputs)
        for sink in (streams.stdout, streams.stderr):
            if sink is not None:
                with contextlib.suppress(ConnectionError, OSError):
                    await sink.close()
        await _write_status(streams, exit_status(code))
    finally:
        if not finished:
            await session.kill()


# --- SPDY ------------------------------------------------------------------------------------------


async def serve_spdy(conn: ByteConn, protocol: str, opts: StreamOptions, start: Starter) -> None:
    """Serve one exec/attach over an upgraded connection that now speaks SPDY/3.1."""
    session = SpdySession(conn, server=True)
    session.start()
    try:
        by_type = await _accept_streams(session, protocol, opts)
        if by_type is None:
            return
        streams = _Streams(
            error=by_type["error"],
            structured=protocol == "v4.channel.k8s.io",
            stdin=by_type.get("stdin"),
            stdout=by_type.get("stdout"),
            stderr=by_type.get("stderr"),
            resize=by_type.get("resize"),
        )
        await run_command(start, streams, tty=opts.tty, disconnected=session.closed)
        if "stdin" in by_type:
            await by_type["stdin"].close()  # client-go waits for our side of stdin to close
    finally:
        await session.close()


async def _accept_streams(
    session: SpdySession, protocol: str, opts: StreamOptions
) -> dict[str, SpdyStream] | None:
    wanted = {"error"} | {name for name, on in (("stdin", opts.stdin), ("stdout", opts.stdout),
                                                 ("stderr", opts.stderr)) if on}  # fmt: skip
    if opts.tty and protocol in ("v4.channel.k8s.io", "v3.channel.k8s.io"):
        wanted.add("resize")
    found: dict[str, SpdyStream] = {}
    try:
        async with asyncio.timeout(STREAM_CREATION_TIMEOUT):
            while not wanted <= found.keys():
                stream = await session.accept()
                if stream is None:
                    return None
                kind = stream.header("streamType")
                if kind in ("error", "stdin", "stdout", "stderr", "resize") and kind not in found:
                    found[kind] = stream
                else:
                    await stream.reset()
    except TimeoutError:
        return None  # as the kubelet: "timed out waiting for client to create streams"
    return found


# --- WebSocket -------------------------------------------------------------------------------------


class WsSender:
    """Serialises channel messages onto the WebSocket (base64 protocols send text)."""

    def __init__(self, ws: web.WebSocketResponse, b64: bool) -> None:
        self._ws = ws
        self._b64 = b64
        self._lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        async with self._lock:
            if self._ws.closed:
                raise ConnectionResetError("the WebSocket is closed")
            if self._b64:
                await self._ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
            else:
                await self._ws.send_bytes(bytes([channel]) + data)


class _WsSink:
    def __init__(self, sender: WsSender, channel: int) -> None:
        self._sender = sender
        self._channel = channel

    async def write(self, data: bytes) -> None:
        for i in range(0, len(data), CHUNK):
            await self._sender.send(self._channel, data[i : i + CHUNK])

    async def close(self) -> None:
        """The end of a channel is the end of the connection (see the module docstring)."""


class QueueSource:
    """A stream fed by a receive loop: ``read`` returns b"" once ``end`` was called."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._ended = False

    def feed(self, data: bytes) -> None:
        if data and not self._ended:
            self._queue.put_nowait(data)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(b"")

    async def read(self) -> bytes:
        data = await self._queue.get()
        if not data:
            self._queue.put_nowait(b"")
        return data


def decode_message(msg_type: WSMsgType, data: Any, b64: bool) -> tuple[int, bytes] | None:
    """(channel, payload) of one channel-protocol message; None for an empty or undecodable one."""
    raw = data.encode() if msg_type == WSMsgType.TEXT else bytes(data)
    if not raw:
        return None
    if b64:
        try:
            return raw[0] - ord("0"), base64.b64decode(raw[1:])
        except ValueError:
            return None
    return raw[0], raw[1:]


async def close_websocket(ws: web.WebSocketResponse, receiver: asyncio.Task[None]) -> None:
    """End a channel-protocol WebSocket: close it (a peer already gone is fine) and stop its reader."""
    with contextlib.suppress(ConnectionError, OSError):
        await ws.close()
    receiver.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await receiver


async def receive_channels(
    ws: web.WebSocketResponse, b64: bool, sources: Mapping[int, QueueSource], *, v5: bool
) -> None:
    """Route the client's messages to ``sources`` until the WebSocket closes; then end them all."""
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            decoded = decode_message(msg.type, msg.data, b64)
            if decoded is None:
                continue
            channel, payload = decoded
            if v5 and channel == CLOSE_SIGNAL:
                if payload and (closing := sources.get(payload[0])) is not None:
                    closing.end()
            elif (source := sources.get(channel)) is not None:
                source.feed(payload)
    finally:
        for source in sources.values():
            source.end()


async def serve_websocket(
    ws: web.WebSocketResponse, protocol: str, opts: StreamOptions, start: Starter
) -> None:
    """Serve one exec/attach on a prepared WebSocket that negotiated ``protocol`` ("" = v1 binary)."""
    b64 = "base64" in protocol
    sender = WsSender(ws, b64)
    stdin = QueueSource() if opts.stdin else None
    resize = QueueSource()
    sources = {RESIZE: resize, **({STDIN: stdin} if stdin is not None else {})}
    disconnected = asyncio.Event()

    async def receive() -> None:
        try:
            await receive_channels(ws, b64, sources, v5=protocol == "v5.channel.k8s.io")
        finally:
            disconnected.set()

    receiver = asyncio.create_task(receive())
    try:
        # As the kubelet: an empty message on the lowest writable channel says "connected".
        await sender.send(STDOUT if opts.stdout else STDERR if opts.stderr else ERROR, b"")
        streams = _Streams(
            error=_WsSink(sender, ERROR),
            structured=protocol.startswith(("v4.", "v5.")),
            stdin=stdin,
            stdout=_WsSink(sender, STDOUT) if opts.stdout else None,
            stderr=_WsSink(sender, STDERR) if opts.stderr else None,
            resize=resize,
        )
        await run_command(start, streams, tty=opts.tty, disconnected=disconnected)
    except (ConnectionError, OSError):
        pass
    finally:
        await close_websocket(ws, receiver)
