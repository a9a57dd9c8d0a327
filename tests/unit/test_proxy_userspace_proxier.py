"""The userspace TCP/UDP proxies on loopback: retries, reset, half-close, backpressure, UDP sessions."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from kubelite.proxy.userspace.proxier import TcpProxy, UdpProxy
from kubelite.proxy.userspace.schedulers import Balancer, Destination, make_scheduler


def listener(kind: int = socket.SOCK_STREAM) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    return sock


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


async def echo_server(name: bytes) -> tuple[asyncio.Server, int]:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.read()  # until the client's EOF (half-close)
        w.write(name + b":" + data)
        await w.drain()
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


@pytest.fixture
async def servers() -> AsyncIterator[list[int]]:
    made = [await echo_server(b"a"), await echo_server(b"b")]
    yield [port for _, port in made]
    for server, _ in made:
        server.close()
        await server.wait_closed()


async def ask(port: int, payload: bytes = b"hi") -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(payload)
    w.write_eof()
    data = await asyncio.wait_for(r.read(), 5)
    w.close()
    return data


async def start_tcp(dests: list[str], **kw: object) -> tuple[TcpProxy, int]:
    bal = Balancer(make_scheduler("rr"))
    bal.set_destinations([Destination(d) for d in dests])
    proxy = TcpProxy(bal, **kw)  # type: ignore[arg-type]
    sock = listener()
    await proxy.start(sock)
    return proxy, int(sock.getsockname()[1])


async def test_tcp_round_robin_with_half_close(servers: list[int]) -> None:
    proxy, port = await start_tcp([f"127.0.0.1:{p}" for p in servers])
    try:
        answers = [await ask(port) for _ in range(4)]
        assert sorted(answers) == [b"a:hi", b"a:hi", b"b:hi", b"b:hi"]
    finally:
        await proxy.stop()


async def test_tcp_dial_failure_tries_the_next_endpoint(servers: list[int]) -> None:
    proxy, port = await start_tcp([f"127.0.0.1:{closed_port()}", f"127.0.0.1:{servers[1]}"])
    try:
        assert [await ask(port) for _ in range(3)] == [b"b:hi"] * 3
        await asyncio.sleep(0)
        assert proxy.counts.total() == 0
    finally:
        await proxy.stop()


async def test_tcp_without_endpoints_resets() -> None:
    proxy, port = await start_tcp([])
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(r.readexactly(1), 5)
        w.close()
    finally:
        await proxy.stop()


async def test_tcp_bulk_copy_keeps_every_byte(servers: list[int]) -> None:
    proxy, port = await start_tcp([f"127.0.0.1:{servers[0]}"], dial_timeouts=(1.0,))
    try:
        payload = bytes(range(256)) * 40_000  # 10 MB: exercises pause/resume reading
        assert await ask(port, payload) == b"a:" + payload
    finally:
        await proxy.stop()


class UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, name: bytes) -> None:
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.name + b":" + data, addr)


async def test_udp_sessions_stick_expire_and_move_when_an_endpoint_goes() -> None:
    loop = asyncio.get_running_loop()
    echoes = [await loop.create_datagram_endpoint(lambda n=n: UdpEcho(n), local_addr=("127.0.0.1", 0))
              for n in (b"a", b"b")]  # fmt: skip
    keys = [f"127.0.0.1:{t.get_extra_info('sockname')[1]}" for t, _ in echoes]
    bal = Balancer(make_scheduler("rr"))
    bal.set_destinations([Destination(k) for k in keys])
    proxy = UdpProxy(bal, idle_timeout=0.2)
    sock = listener(socket.SOCK_DGRAM)
    await proxy.start(sock)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setblocking(False)
    client.connect(sock.getsockname())
    try:

        async def roundtrip(msg: bytes) -> bytes:
            await loop.sock_sendall(client, msg)
            return await asyncio.wait_for(loop.sock_recv(client, 2048), 2)

        first = await roundtrip(b"1")
        assert (await roundtrip(b"2"))[:1] == first[:1]  # same session
        assert proxy.sessions == 1 and proxy.counts.total() == 1
        await asyncio.sleep(0.5)
        assert proxy.sessions == 0  # idle timeout
        now = await roundtrip(b"3")
        gone = keys[0] if now.startswith(b"a") else keys[1]
        bal.set_destinations([Destination(k) for k in keys if k != gone])
        assert proxy.drop_endpoints([gone]) == 1
        after = await roundtrip(b"4")
        assert after[:1] != now[:1]
    finally:
        client.close()
        await proxy.stop()
        for t, _ in echoes:
            t.close()
