"""SPDY/3.1 as Kubernetes streaming uses it: frames, header compression, and a session of streams.

    bytes ─► FrameReader.feed ─► frames ─► SpdySession ─► SpdyStream.read / write / close
    SpdyStream.write ─► FrameWriter.encode ─► bytes   (one write lock: compression order = wire order)

Contract:

- ``FrameReader`` and ``FrameWriter`` are pure (no I/O). Each keeps the one zlib context per direction
  that SPDY/3 header blocks share, primed with the SPDY/3 dictionary and flushed with SYNC_FLUSH after
  every block, as Go's framer (``moby/spdystream/spdy``, used by kubectl and the kubelet) does.
- ``SpdySession`` serves one connection (a ``ByteConn``). The peer's SYN_STREAMs are answered with a
  SYN_REPLY (or a RST_STREAM REFUSED_STREAM when ``check`` rejects their headers) and handed out by
  ``accept()``; ``open()`` creates a stream and waits for its reply (the client side: tests, tools).
  PINGs from the peer are echoed. When the connection ends every stream reads EOF.
- Flow control: we advertise the default 64 KiB windows and send WINDOW_UPDATE (stream and session) as
  the reader consumes data. We obey the peer's windows only once it shows that it does flow control
  (it sends SETTINGS or WINDOW_UPDATE): Go's spdystream never sends WINDOW_UPDATE and ignores ours, so
  waiting for a window it never reopens would stall every transfer after 64 KiB.
- Without flow control the peer can send faster than a stream's reader consumes; the frame loop then
  waits while one stream holds more than ``MAX_BUFFERED`` unread bytes, and TCP pushes back on the
  peer (what Go's unbuffered per-stream channels do).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum

from kubelite.agent.streams.interface import ByteConn

__all__ = [
    "DEFAULT_WINDOW",
    "FLAG_FIN",
    "FLAG_UNIDIRECTIONAL",
    "HEADER_DICTIONARY",
    "SETTINGS_INITIAL_WINDOW_SIZE",
    "DataFrame",
    "Frame",
    "FrameReader",
    "FrameWriter",
    "GoAway",
    "Headers",
    "HeadersFrame",
    "Ping",
    "RstStatus",
    "RstStream",
    "Settings",
    "SpdyProtocolError",
    "SpdySession",
    "SpdyStream",
    "StreamClosedError",
    "SynReply",
    "SynStream",
    "WindowUpdate",
]

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
SETTINGS_INITIAL_WINDOW_SIZE = 7
DEFAULT_WINDOW = 64 * 1024
MAX_DATA_FRAME = 64 * 1024
MAX_BUFFERED = 4 * 1024 * 1024
MAX_HEADER_BLOCK = 256 * 1024

Headers = tuple[tuple[str, str], ...]
"""Header (name, value) pairs in order; names are lowercase on the wire, a name may repeat."""


class ControlType(IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9


_DICTIONARY_WORDS_TEXT = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges "
    "age allow authorization cache-control connection content-base content-encoding content-language "
    "content-length content-location content-md5 content-range content-type date etag expect expires from "
    "host if-match if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after server te trailer "
    "transfer-encoding upgrade user-agent vary via warning www-authenticate method get status 200_OK version "
    "HTTP/1.1 url public set-cookie keep-alive origin"
)
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
    "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service "
    "UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, "
    "Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,"
    "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch"
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
# The SPDY/3 header dictionary (draft 3, section 2.6.10.1): length-prefixed common words ("_" stands
# for a space), then a run of common values. Both ends must prime zlib with exactly these 1423 bytes.
_DICTIONARY_WORDS = [w.replace("_", " ").encode() for w in _DICTIONARY_WORDS_TEXT.split()]
HEADER_DICTIONARY = (
    b"".join(struct.pack(">I", len(w)) + w for w in _DICTIONARY_WORDS) + _DICTIONARY_TAIL.encode()
)


class SpdyProtocolError(Exception):
    """The peer sent bytes that are not valid SPDY/3; the session ends with GOAWAY PROTOCOL_ERROR."""


class StreamClosedError(ConnectionError):
    """A write on a stream that this side closed, the peer reset, or whose session ended."""


@dataclass(frozen=True, slots=True)
class DataFrame:
    stream_id: int
    data: bytes
    flags: int = 0


@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    headers: Headers
    flags: int = 0
    associated_to: int = 0
    priority: int = 0


@dataclass(frozen=True, slots=True)
class SynReply:
    stream_id: int
    headers: Headers = ()
    flags: int = 0


@dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...]
    """(setting id, value, flags) triples."""
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Ping:
    ping_id: int


@dataclass(frozen=True, slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True, slots=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = DataFrame | SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate


def _header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value)
    out = [struct.pack(">I", len(grouped))]
    for name, values in grouped.items():
        raw_name, raw_value = name.encode(), "\x00".join(values).encode()
        out += [struct.pack(">I", len(raw_name)), raw_name, struct.pack(">I", len(raw_value)), raw_value]
    return b"".join(out)


def _control(kind: ControlType, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


class FrameWriter:
    """Frames to bytes; owns the compression context of the header blocks this side sends."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                   HEADER_DICTIONARY)  # fmt: skip

    def _compress(self, headers: Headers) -> bytes:
        return self._z.compress(_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, DataFrame):
            return struct.pack(">II", frame.stream_id & 0x7FFFFFFF, (frame.flags << 24) | len(frame.data)) + (
                frame.data
            )
        if isinstance(frame, SynStream):
            head = struct.pack(">IIBB", frame.stream_id, frame.associated_to, (frame.priority & 7) << 5, 0)
            return _control(ControlType.SYN_STREAM, frame.flags, head + self._compress(frame.headers))
        if isinstance(frame, SynReply):
            payload = struct.pack(">I", frame.stream_id) + self._compress(frame.headers)
            return _control(ControlType.SYN_REPLY, frame.flags, payload)
        if isinstance(frame, HeadersFrame):
            payload = struct.pack(">I", frame.stream_id) + self._compress(frame.headers)
            return _control(ControlType.HEADERS, frame.flags, payload)
        if isinstance(frame, RstStream):
            return _control(ControlType.RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            body = b"".join(struct.pack(">II", (f << 24) | i, v) for i, v, f in frame.entries)
            return _control(ControlType.SETTINGS, frame.flags, struct.pack(">I", len(frame.entries)) + body)
        if isinstance(frame, Ping):
            return _control(ControlType.PING, 0, struct.pack(">I", frame.ping_id))
        if isinstance(frame, GoAway):
            payload = struct.pack(">II", frame.last_good_stream_id, frame.status)
            return _control(ControlType.GOAWAY, 0, payload)
        return _control(ControlType.WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))


class FrameReader:
    """Bytes to frames, incrementally; owns the decompression context of the peer's header blocks.

    Control frames of unknown types (CREDENTIAL, SPDY/2 NOOP) are skipped, as the spec says.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._z = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            word, flags_length = struct.unpack_from(">II", self._buf)
            length = flags_length & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            flags, payload = flags_length >> 24, bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            if not word & 0x80000000:
                frames.append(DataFrame(word & 0x7FFFFFFF, payload, flags))
                continue
            if (word >> 16) & 0x7FFF != VERSION:
                raise SpdyProtocolError(f"unsupported SPDY version {(word >> 16) & 0x7FFF}")
            frame = self._control(word & 0xFFFF, flags, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _headers(self, block: bytes) -> Headers:
        try:
            raw = self._z.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise SpdyProtocolError(f"bad header block compression: {e}") from None
        if self._z.unconsumed_tail:
            raise SpdyProtocolError(f"header block larger than {MAX_HEADER_BLOCK} bytes")
        try:
            (count,) = struct.unpack_from(">I", raw)
            pos, out = 4, []
            for _ in range(count):
                (n,) = struct.unpack_from(">I", raw, pos)
                name = raw[pos + 4 : pos + 4 + n].decode()
                pos += 4 + n
                (n,) = struct.unpack_from(">I", raw, pos)
                value = raw[pos + 4 : pos + 4 + n].decode()
                pos += 4 + n
                out += [(name, v) for v in value.split("\x00")]
        except (struct.error, UnicodeDecodeError) as e:
            raise SpdyProtocolError(f"malformed header block: {e}") from None
        return tuple(out)

    def _control(self, kind: int, flags: int, p: bytes) -> Frame | None:
        try:
            if kind == ControlType.SYN_STREAM:
                sid, assoc, pri, _slot = struct.unpack_from(">IIBB", p)
                return SynStream(sid & 0x7FFFFFFF, self._headers(p[10:]), flags, assoc & 0x7FFFFFFF, pri >> 5)
            if kind in (ControlType.SYN_REPLY, ControlType.HEADERS):
                (sid,) = struct.unpack_from(">I", p)
                cls = SynReply if kind == ControlType.SYN_REPLY else HeadersFrame
                return cls(sid & 0x7FFFFFFF, self._headers(p[4:]), flags)
            if kind == ControlType.RST_STREAM:
                sid, status = struct.unpack_from(">II", p)
                return RstStream(sid & 0x7FFFFFFF, status)
            if kind == ControlType.SETTINGS:
                (count,) = struct.unpack_from(">I", p)
                entries = []
                for i in range(count):
                    fid, value = struct.unpack_from(">II", p, 4 + 8 * i)
                    entries.append((fid & 0xFFFFFF, value, fid >> 24))
                return Settings(tuple(entries), flags)
            if kind == ControlType.PING:
                return Ping(struct.unpack_from(">I", p)[0])
            if kind == ControlType.GOAWAY:
                last, status = (
                    struct.unpack_from(">II", p) if len(p) >= 8 else (*struct.unpack_from(">I", p), 0)
                )
                return GoAway(last & 0x7FFFFFFF, status)
            if kind == ControlType.WINDOW_UPDATE:
                sid, delta = struct.unpack_from(">II", p)
                return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error:
            raise SpdyProtocolError(f"control frame of type {kind} is too short") from None
        return None


class SpdyStream:
    """One stream of a session: ``read`` returns b"" at the peer's FIN, a reset or the session's end."""

    def __init__(self, session: SpdySession, stream_id: int, headers: Headers) -> None:
        self.id = stream_id
        self.headers = headers
        self._session = session
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._readable = asyncio.Event()
        self._drained = asyncio.Event()
        self.remote_closed = False
        self.local_closed = False
        self.was_reset = False
        self.replied = asyncio.Event()
        self.send_window = session.initial_send_window
        self._unacked = 0

    def header(self, name: str, default: str = "") -> str:
        """The first value of header ``name`` (case-insensitive)."""
        wanted = name.lower()
        return next((v for n, v in self.headers if n.lower() == wanted), default)

    async def read(self) -> bytes:
        while not self._chunks:
            if self.remote_closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= MAX_BUFFERED:
            self._drained.set()
        self._unacked += len(chunk)
        if self._unacked >= DEFAULT_WINDOW // 2 and not self.remote_closed:
            delta, self._unacked = self._unacked, 0
            await self._session.send_window_update(self.id, delta)
        return chunk

    async def write(self, data: bytes) -> None:
        await self._session.send_data(self, data)

    async def close(self) -> None:
        """Half-close: FIN on our side. Harmless when already closed or reset."""
        if not self.local_closed and not self.was_reset:
            self.local_closed = True
            with contextlib.suppress(ConnectionError):
                await self._session.send(DataFrame(self.id, b"", FLAG_FIN))
        self._session.forget_if_done(self)

    async def reset(self, status: int = RstStatus.CANCEL) -> None:
        if not (self.local_closed and self.remote_closed) and not self.was_reset:
            with contextlib.suppress(ConnectionError):
                await self._session.send(RstStream(self.id, status))
        self._gone()
        self._session.forget(self)

    def _deliver(self, data: bytes, fin: bool) -> None:
        if data and not self.remote_closed:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered > MAX_BUFFERED:
                self._drained.clear()
        if fin:
            self.remote_closed = True
        self._readable.set()

    def _gone(self) -> None:
        self.remote_closed = self.local_closed = self.was_reset = True
        self._readable.set()
        self._drained.set()
        self.replied.set()


class SpdySession:
    """A SPDY/3.1 session over one ``ByteConn``; see the module docstring for the contract.

    ``check(headers)`` returns None to accept a new stream from the peer, or a reason to refuse it.
    """

    def __init__(
        self, conn: ByteConn, *, server: bool, check: Callable[[Headers], str | None] | None = None
    ) -> None:
        self._conn = conn
        self._server = server
        self._check = check
        self._writer = FrameWriter()
        self._reader = FrameReader()
        self._lock = asyncio.Lock()
        self._window_changed = asyncio.Event()
        """Replaced by a fresh one and set whenever a send window grows or a stream or the session ends."""
        self._streams: dict[int, SpdyStream] = {}
        self._incoming: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self._next_id = 2 if server else 1
        self._last_peer_id = 0
        self._flow_control = False
        self._session_window = DEFAULT_WINDOW
        self._session_unacked = 0
        self.initial_send_window = DEFAULT_WINDOW
        self._goaway_sent = False
        self.closed = asyncio.Event()
        """Set when the connection has ended (the peer closed it, or ``close``)."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def __aenter__(self) -> SpdySession:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(linger=0)

    async def accept(self) -> SpdyStream | None:
        """The next stream the peer opened; None once the session has ended."""
        stream = await self._incoming.get()
        if stream is None:
            self._incoming.put_nowait(None)  # every later accept() sees the end too
        return stream

    async def open(self, headers: Headers, *, fin: bool = False) -> SpdyStream:
        """Create a stream and wait for the peer's SYN_REPLY; ConnectionError when refused or ended.

        Bound the wait with ``asyncio.timeout`` when the peer may never answer."""
        stream = SpdyStream(self, self._next_id, headers)
        self._next_id += 2
        self._streams[stream.id] = stream
        stream.local_closed = fin
        await self.send(SynStream(stream.id, headers, FLAG_FIN if fin else 0))
        await stream.replied.wait()
        if stream.was_reset:
            raise StreamClosedError(f"the peer refused stream {stream.id}")
        return stream

    async def send(self, frame: Frame) -> None:
        if self.closed.is_set():
            raise StreamClosedError("the SPDY connection has ended")
        async with self._lock:
            await self._conn.write(self._writer.encode(frame))

    async def send_window_update(self, stream_id: int, delta: int) -> None:
        with contextlib.suppress(ConnectionError):
            await self.send(WindowUpdate(stream_id, delta))
            self._session_unacked += delta
            if self._session_unacked >= DEFAULT_WINDOW // 2:
                total, self._session_unacked = self._session_unacked, 0
                await self.send(WindowUpdate(0, total))

    async def send_data(self, stream: SpdyStream, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if stream.local_closed or stream.was_reset:
                raise StreamClosedError(f"stream {stream.id} is closed")
            n = min(len(view), MAX_DATA_FRAME)
            if self._flow_control:
                while not (stream.was_reset or self.closed.is_set()):
                    changed = self._window_changed
                    if stream.send_window > 0 and self._session_window > 0:
                        break
                    await changed.wait()
                if stream.was_reset or self.closed.is_set():
                    raise StreamClosedError(f"stream {stream.id} is closed")
                n = min(n, stream.send_window, self._session_window)
                stream.send_window -= n
                self._session_window -= n
            await self.send(DataFrame(stream.id, bytes(view[:n])))
            view = view[n:]

    def forget_if_done(self, stream: SpdyStream) -> None:
        if stream.local_closed and stream.remote_closed:
            self.forget(stream)

    def forget(self, stream: SpdyStream) -> None:
        """Drop a finished stream: frames that still arrive for it are ignored."""
        self._streams.pop(stream.id, None)

    async def ping(self, ping_id: int | None = None) -> None:
        await self.send(Ping(ping_id if ping_id is not None else (2 if self._server else 1)))

    async def close(self, *, linger: float = 2.0) -> None:
        """GOAWAY, then give the peer ``linger`` seconds to close its end before closing ours.

        Waiting for the peer's close first keeps our last frames from being lost to a TCP reset
        caused by frames the peer sends meanwhile (kubectl answers GOAWAY with resets and a GOAWAY).
        """
        if not self._goaway_sent and not self.closed.is_set():
            self._goaway_sent = True
            with contextlib.suppress(ConnectionError, OSError):
                await self.send(GoAway(self._last_peer_id))
        if linger > 0 and self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(linger):
                    await self.closed.wait()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(ConnectionError, OSError):
            await self._conn.close()
        self._end()

    async def _run(self) -> None:
        try:
            while data := await self._conn.read():
                for frame in self._reader.feed(data):
                    await self._handle(frame)
        except SpdyProtocolError:
            with contextlib.suppress(ConnectionError, OSError):
                await self.send(GoAway(self._last_peer_id, 1))
        except (ConnectionError, OSError):
            pass
        finally:
            self._end()

    def _end(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for stream in list(self._streams.values()):
            stream._gone()
        self._streams.clear()
        self._incoming.put_nowait(None)
        self._wake_writers()

    def _wake_writers(self) -> None:
        changed, self._window_changed = self._window_changed, asyncio.Event()
        changed.set()

    async def _handle(self, frame: Frame) -> None:
        if isinstance(frame, DataFrame):
            stream = self._streams.get(frame.stream_id)
            if stream is None:
                return  # already gone: Go drops these too
            stream._deliver(frame.data, bool(frame.flags & FLAG_FIN))
            self.forget_if_done(stream)
            if stream._buffered > MAX_BUFFERED:
                await stream._drained.wait()
        elif isinstance(frame, SynStream):
            await self._new_stream(frame)
        elif isinstance(frame, SynReply | HeadersFrame):
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                stream.replied.set()
                stream._deliver(b"", bool(frame.flags & FLAG_FIN))
        elif isinstance(frame, RstStream):
            stream = self._streams.pop(frame.stream_id, None)
            if stream is not None:
                stream._gone()
                self._wake_writers()
        elif isinstance(frame, Ping):
            if frame.ping_id % 2 != (0 if self._server else 1):
                await self.send(frame)  # the peer's ping: echo it
        elif isinstance(frame, Settings):
            for setting, value, _flags in frame.entries:
                if setting == SETTINGS_INITIAL_WINDOW_SIZE:
                    self._enable_flow_control()
                    delta, self.initial_send_window = value - self.initial_send_window, value
                    for stream in self._streams.values():
                        stream.send_window += delta
            self._wake_writers()
        elif isinstance(frame, WindowUpdate):
            self._enable_flow_control()
            if frame.stream_id == 0:
                self._session_window += frame.delta
            elif (stream := self._streams.get(frame.stream_id)) is not None:
                stream.send_window += frame.delta
            self._wake_writers()
        # GOAWAY: the peer opens no more streams; the ones it has keep running until closed.

    def _enable_flow_control(self) -> None:
        self._flow_control = True

    async def _new_stream(self, frame: SynStream) -> None:
        peer_parity = 1 if self._server else 0
        if frame.stream_id % 2 != peer_parity or frame.stream_id <= self._last_peer_id:
            await self.send(RstStream(frame.stream_id, RstStatus.PROTOCOL_ERROR))
            return
        self._last_peer_id = frame.stream_id
        refusal = "this side is going away" if self._goaway_sent else None
        if refusal is None and self._check is not None:
            refusal = self._check(frame.headers)
        if refusal is not None:
            await self.send(RstStream(frame.stream_id, RstStatus.REFUSED_STREAM))
            return
        stream = SpdyStream(self, frame.stream_id, frame.headers)
        stream.remote_closed = bool(frame.flags & FLAG_FIN)
        stream.local_closed = bool(frame.flags & FLAG_UNIDIRECTIONAL)
        stream.replied.set()
        self._streams[stream.id] = stream
        await self.send(SynReply(stream.id))
        self._incoming.put_nowait(stream)


class StreamConn:
    """``ByteConn`` over asyncio streams: a plain TCP connection (clients, tests)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        return await self._reader.read(256 * 1024)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
