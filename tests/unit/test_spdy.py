"""SPDY/3.1 framing and sessions (kubelite.agent.streams.spdy) without a network."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import zlib

import pytest

from kubelite.agent.streams.spdy import (
    DEFAULT_WINDOW,
    FLAG_FIN,
    HEADER_DICTIONARY,
    SETTINGS_INITIAL_WINDOW_SIZE,
    DataFrame,
    FrameReader,
    FrameWriter,
    GoAway,
    HeadersFrame,
    Ping,
    RstStatus,
    RstStream,
    Settings,
    SpdyProtocolError,
    SpdySession,
    StreamClosedError,
    SynReply,
    SynStream,
    WindowUpdate,
)

# sha256 of the dictionary in the SPDY/3 draft (and in Go's spdy/dictionary.go).
DICTIONARY_SHA256 = "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_dictionary_is_the_spdy3_one() -> None:
    assert len(HEADER_DICTIONARY) == 1423
    assert hashlib.sha256(HEADER_DICTIONARY).hexdigest() == DICTIONARY_SHA256
    assert HEADER_DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")


@pytest.mark.parametrize(
    "frame",
    [
        SynStream(1, (("streamtype", "error"), ("port", "8080")), FLAG_FIN, associated_to=0, priority=3),
        SynReply(3),
        SynReply(5, (("x-a", "1"),), FLAG_FIN),
        HeadersFrame(7, (("k", "v"),)),
        RstStream(9, RstStatus.REFUSED_STREAM),
        Settings(((SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20, 0), (4, 100, 1))),
        Ping(2),
        GoAway(11, 0),
        WindowUpdate(0, 12345),
        WindowUpdate(3, 1),
        DataFrame(1, b"hello"),
        DataFrame(1, b"", FLAG_FIN),
        DataFrame(3, bytes(range(256)) * 300),
    ],
)
def test_frames_round_trip(frame: object) -> None:
    writer, reader = FrameWriter(), FrameReader()
    assert reader.feed(writer.encode(frame)) == [frame]  # type: ignore[arg-type]


def test_header_blocks_share_one_compression_context_per_direction() -> None:
    writer, reader = FrameWriter(), FrameReader()
    first = writer.encode(SynStream(1, (("streamtype", "stdout"),)))
    second = writer.encode(SynStream(3, (("streamtype", "stdout"),)))
    assert len(second) < len(first)  # the second block refers back into the first one
    assert reader.feed(first + second) == [
        SynStream(1, (("streamtype", "stdout"),)),
        SynStream(3, (("streamtype", "stdout"),)),
    ]
    # A fresh reader cannot read the second block alone: the context is shared.
    with pytest.raises(SpdyProtocolError):
        FrameReader().feed(second)


def test_header_block_wire_format() -> None:
    frame = FrameWriter().encode(SynStream(1, (("StreamType", "data"), ("port", "1"), ("port", "2"))))
    word, flags_length = struct.unpack(">II", frame[:8])
    assert word == 0x80030001  # control bit, version 3, SYN_STREAM
    assert flags_length & 0xFFFFFF == len(frame) - 8
    block = zlib.decompressobj(zdict=HEADER_DICTIONARY).decompress(frame[18:])
    # Names are lowercased and values of a repeated name are joined with NUL, as the spec says.
    assert block == (
        struct.pack(">I", 2)
        + struct.pack(">I", 10) + b"streamtype" + struct.pack(">I", 4) + b"data"
        + struct.pack(">I", 4) + b"port" + struct.pack(">I", 3) + b"1\x002"
    )  # fmt: skip
    assert FrameReader().feed(frame)[0] == SynStream(
        1, (("streamtype", "data"), ("port", "1"), ("port", "2"))
    )


def test_reader_is_incremental_and_skips_unknown_control_frames() -> None:
    writer, reader = FrameWriter(), FrameReader()
    unknown = struct.pack(">HHI", 0x8003, 10, 4) + b"\x00\x00\x00\x01"  # CREDENTIAL-like
    data = unknown + writer.encode(DataFrame(1, b"abc")) + writer.encode(Ping(1))
    got = [f for i in range(len(data)) for f in reader.feed(data[i : i + 1])]
    assert got == [DataFrame(1, b"abc"), Ping(1)]


def test_reader_rejects_other_versions_and_garbage_headers() -> None:
    with pytest.raises(SpdyProtocolError, match="version"):
        FrameReader().feed(struct.pack(">HHI", 0x8002, 6, 4) + b"\x00\x00\x00\x01")
    bad = struct.pack(">HHI", 0x8003, 1, 14) + struct.pack(">IIBB", 1, 0, 0, 0) + b"junk"
    with pytest.raises(SpdyProtocolError):
        FrameReader().feed(bad)


class Pipe:
    """One direction of an in-memory connection."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.sent: list[bytes] = []


class MemoryConn:
    def __init__(self, inbound: Pipe, outbound: Pipe) -> None:
        self.inbound, self.outbound = inbound, outbound

    async def read(self) -> bytes:
        return await self.inbound.queue.get()

    async def write(self, data: bytes) -> None:
        self.outbound.sent.append(data)
        await self.outbound.queue.put(data)

    async def close(self) -> None:
        await self.outbound.queue.put(b"")


def connected_pair(check: object = None) -> tuple[SpdySession, SpdySession, Pipe, Pipe]:
    to_server, to_client = Pipe(), Pipe()
    server = SpdySession(MemoryConn(to_server, to_client), server=True, check=check)  # type: ignore[arg-type]
    client = SpdySession(MemoryConn(to_client, to_server), server=False)
    server.start()
    client.start()
    return server, client, to_server, to_client


async def test_stream_round_trip_with_half_close() -> None:
    server, client, _, _ = connected_pair()
    async with asyncio.timeout(5):
        stream = await client.open((("streamType", "stdin"),))
        accepted = await server.accept()
        assert accepted is not None and accepted.header("StreamType") == "stdin"
        await stream.write(b"ping")
        assert await accepted.read() == b"ping"
        await stream.close()
        assert await accepted.read() == b""  # FIN
        await accepted.write(b"pong")  # our half is still open
        assert await stream.read() == b"pong"
        await accepted.close()
        assert await stream.read() == b""
        with pytest.raises(StreamClosedError):
            await stream.write(b"late")
        await client.close(linger=0)
        assert await server.accept() is None


async def test_refused_stream_and_ping_echo() -> None:
    def check(headers: tuple[tuple[str, str], ...]) -> str | None:
        return None if dict(headers).get("port") else "port header is required"

    server, client, _, to_client = connected_pair(check)
    async with asyncio.timeout(5):
        with pytest.raises(StreamClosedError):
            await client.open((("streamtype", "data"),))
        ok = await client.open((("streamtype", "data"), ("port", "80")))
        assert ok.id == 3 and (await server.accept()) is not None
        await client.ping(1)
        for _ in range(100):
            if Ping(1) in FrameReader().feed(b"".join(to_client.sent)):
                break
            await asyncio.sleep(0.01)
        assert Ping(1) in FrameReader().feed(b"".join(to_client.sent))  # the server echoed it
        await client.close(linger=0)
        await server.close(linger=0)


async def test_flow_control_is_obeyed_once_the_peer_does_flow_control() -> None:
    server, client, _, _ = connected_pair()
    async with asyncio.timeout(10):
        await client.send(Settings(((SETTINGS_INITIAL_WINDOW_SIZE, DEFAULT_WINDOW, 0),)))
        stream = await client.open((("streamtype", "stdout"),))
        accepted = await server.accept()
        assert accepted is not None
        payload = bytes(range(256)) * 1024 * 2  # 512 KiB: eight windows
        writer = asyncio.create_task(accepted.write(payload))
        await asyncio.sleep(0.1)
        assert not writer.done()  # stalled at the first 64 KiB window
        assert stream._buffered == DEFAULT_WINDOW
        received = bytearray()
        while len(received) < len(payload):
            received += await stream.read()  # each read past half a window sends WINDOW_UPDATE
        await writer
        assert bytes(received) == payload
        await client.close(linger=0)
        await server.close(linger=0)


async def test_without_flow_control_from_the_peer_writes_do_not_wait_for_windows() -> None:
    # Go's spdystream never sends WINDOW_UPDATE: a 64 KiB window would stall kubectl forever.
    server, client, _, _ = connected_pair()
    async with asyncio.timeout(5):
        stream = await client.open((("streamtype", "stdout"),))
        accepted = await server.accept()
        assert accepted is not None
        await accepted.write(b"x" * (3 * DEFAULT_WINDOW))  # completes without any read
        await accepted.close()
        total = 0
        while chunk := await stream.read():
            total += len(chunk)
        assert total == 3 * DEFAULT_WINDOW
        await client.close(linger=0)
        await server.close(linger=0)


async def test_peer_reset_ends_reads_and_writes() -> None:
    server, client, _, _ = connected_pair()
    async with asyncio.timeout(5):
        stream = await client.open((("streamtype", "data"),))
        accepted = await server.accept()
        assert accepted is not None
        await stream.reset()
        assert await accepted.read() == b""
        with pytest.raises(StreamClosedError):  # the RST arrived before the EOF it caused
            await accepted.write(b"x")
        await client.close(linger=0)
        await server.close(linger=0)


async def test_close_sends_goaway_and_waits_for_the_peer() -> None:
    server, client, _, to_client = connected_pair()
    async with asyncio.timeout(5):
        await client.open((("streamtype", "error"),))
        closing = asyncio.create_task(server.close(linger=2))
        await asyncio.sleep(0.05)
        assert not closing.done()  # lingers until the client ends the connection
        frames = FrameReader().feed(b"".join(to_client.sent))
        assert isinstance(frames[-1], GoAway) and frames[-1].last_good_stream_id == 1
        await client.close(linger=0)
        await closing
