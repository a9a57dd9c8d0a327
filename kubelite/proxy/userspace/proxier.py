"""The userspace data path: asyncio TCP and UDP proxies for one service port each.

:class:`TcpProxy` accepts on a listening socket, asks its :class:`~.schedulers.Balancer` for an
endpoint and dials it with the timeouts kube-proxy's userspace mode used (250 ms, 500 ms, 1 s, 2 s);
a failed dial tries another endpoint with the next timeout (the failed ones are excluded, and the
client's affinity is reset, as ``sessionAffinityReset`` did). With no endpoint left the client gets
a TCP reset. Bytes are copied both ways by two linked :class:`asyncio.Protocol` halves: when one
side's write buffer passes its high-water mark the other side stops reading (backpressure), and a
half-close (EOF) is passed on, so request/response protocols that shut down writing still work.

:class:`UdpProxy` keeps one connected upstream socket per client address (a *session*), closed
after ``idle_timeout`` seconds without a datagram either way (kube-proxy's ``--udp-timeout``,
250 ms by default). Replies leave the listener with the address the client's datagram was sent to
(``IP_PKTINFO``), so conntrack can undo the ``redirect`` and the client sees the service address.

Sockets towards endpoints come from a :data:`SocketFactory`, so a proxy serving one namespace can
dial from it (``kubelite.host.netns.socket_in_netns``) while its event loop runs elsewhere.
Connection counts per endpoint (TCP active, UDP sessions inactive) feed the lc/wlc/sed/nq schedulers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from kubelite.proxy.userspace.schedulers import Balancer, ConnCount, Request

__all__ = [
    "DIAL_TIMEOUTS",
    "UDP_IDLE_TIMEOUT",
    "ConnCounts",
    "SocketFactory",
    "TcpProxy",
    "UdpProxy",
    "plain_socket",
]

DIAL_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)
UDP_IDLE_TIMEOUT = 0.25
IP_PKTINFO = 8  # <linux/in.h>; Python 3.11's socket module does not export it
SO_ORIGINAL_DST = 80
_PKTINFO = struct.Struct("=I4s4s")
_UDP_MAX = 65535
_UDP_BURST = 64
_UDP_QUEUE = 64
_HIGH_WATER = 1 << 20

SocketFactory = Callable[[int, int], Awaitable[socket.socket]]
"""``(family, kind) -> non-blocking socket`` in the namespace the endpoints are reached from."""


async def plain_socket(family: int, kind: int) -> socket.socket:
    sock = socket.socket(family, kind)
    sock.setblocking(False)
    return sock


@dataclass
class ConnCounts:
    """Open TCP connections (active) and UDP sessions (inactive) per endpoint key."""

    _active: dict[str, int] = field(default_factory=dict)
    _inactive: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, *, active: bool, delta: int) -> None:
        table = self._active if active else self._inactive
        value = table.get(key, 0) + delta
        if value > 0:
            table[key] = value
        else:
            table.pop(key, None)

    def snapshot(self) -> Mapping[str, ConnCount]:
        keys = self._active.keys() | self._inactive.keys()
        return {k: ConnCount(self._active.get(k, 0), self._inactive.get(k, 0)) for k in keys}

    def total(self) -> int:
        return sum(self._active.values()) + sum(self._inactive.values())


def _returning(half: _Half) -> Callable[[], _Half]:
    return lambda: half


def _reset(transport: asyncio.Transport) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a refused service should answer."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Half(asyncio.Protocol):
    """One TCP side; writes what it reads into its peer's transport."""

    def __init__(
        self,
        on_lost: Callable[[], None] | None = None,
        on_made: Callable[[_Half, asyncio.Transport], None] | None = None,
    ) -> None:
        self.on_made = on_made
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self.pending: list[bytes] = []
        self.eof = False
        self.lost = False
        self.on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it: no isinstance check.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        if self.on_made is not None:
            self.on_made(self, transport)

    def link(self, peer: _Half) -> None:
        self.peer, peer.peer = peer, self
        if self.pending and peer.transport is not None:
            peer.transport.write(b"".join(self.pending))
        self.pending.clear()
        if self.eof:
            self._pass_eof()

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.pending.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.peer is not None:
            self._pass_eof()
        return True  # keep the other direction open (half-close)

    def _pass_eof(self) -> None:
        peer = self.peer
        if peer is None or peer.transport is None or peer.transport.is_closing():
            return
        if peer.eof:
            peer.transport.close()
            if self.transport is not None:
                self.transport.close()
        elif peer.transport.can_write_eof():
            peer.transport.write_eof()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.close()  # flushes what is buffered, then closes
        if self.on_lost is not None:
            self.on_lost()
            self.on_lost = None


@dataclass
class TcpProxy:
    """Proxies every connection accepted on ``listener`` to an endpoint the balancer picks."""

    balancer: Balancer
    sockets: SocketFactory = plain_socket
    dial_timeouts: tuple[float, ...] = DIAL_TIMEOUTS
    counts: ConnCounts = field(default_factory=ConnCounts)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _open: set[_Half] = field(default_factory=set)
    _want_vip: bool = False

    async def start(self, listener: socket.socket) -> None:
        """Serve on ``listener`` (bound, non-blocking; ``listen`` is called here)."""
        loop = asyncio.get_running_loop()
        self._want_vip = self.balancer.scheduler.name == "dh"
        self._server = await loop.create_server(self._accepted, sock=listener, backlog=4096)

    def _accepted(self) -> _Half:
        return _Half(on_made=self._client_made)

    def _client_made(self, client: _Half, transport: asyncio.Transport) -> None:
        transport.pause_reading()  # until an endpoint is connected
        task = asyncio.get_running_loop().create_task(self._dial(client, transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _service_ip(self, transport: asyncio.Transport) -> str:
        if not self._want_vip:
            return "0.0.0.0"
        sock = transport.get_extra_info("socket")
        try:
            raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            return socket.inet_ntoa(raw[4:8])
        except (OSError, AttributeError):
            return str((transport.get_extra_info("sockname") or ("0.0.0.0",))[0])

    async def _dial(self, client: _Half, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername") or ("0.0.0.0", 0)
        service_ip = self._service_ip(transport)
        excluded: set[str] = set()
        for timeout in self.dial_timeouts:
            if client.lost:
                return
            dest = self.balancer.pick(
                Request(str(peer[0]), service_ip, self.counts.snapshot(), frozenset(excluded))
            )
            if dest is None:
                break
            host, port = dest.key.rsplit(":", 1)
            sock = await self.sockets(socket.AF_INET, socket.SOCK_STREAM)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (host, int(port))), timeout)
                upstream = _Half(on_lost=self._counter(dest.key))
                await loop.create_connection(_returning(upstream), sock=sock)
            except (OSError, TimeoutError):
                sock.close()
                excluded.add(dest.key)
                continue
            self.counts.add(dest.key, active=True, delta=1)
            if client.lost:
                if upstream.transport is not None:
                    upstream.transport.close()
                return
            client.link(upstream)
            self._track(client, upstream)
            transport.resume_reading()
            return
        _reset(transport)

    def _counter(self, key: str) -> Callable[[], None]:
        return lambda: self.counts.add(key, active=True, delta=-1)

    def _track(self, *halves: _Half) -> None:
        for half in halves:
            self._open.add(half)
            previous = half.on_lost

            def lost(half: _Half = half, previous: Callable[[], None] | None = previous) -> None:
                self._open.discard(half)
                if previous is not None:
                    previous()

            half.on_lost = lost

    async def stop(self) -> None:
        """Stop accepting, cancel dials in progress and close every proxied connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for half in list(self._open):
            if half.transport is not None:
                half.transport.abort()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None


@dataclass
class _UdpSession:
    client: tuple[str, int]
    local_ip: str
    """The address the client sent to (after redirect): replies leave from it."""
    key: str
    sock: socket.socket | None = None
    queue: list[bytes] = field(default_factory=list)
    last: float = 0.0
    timer: asyncio.TimerHandle | None = None
    closed: bool = False


@dataclass
class UdpProxy:
    """Per-client UDP sessions from ``listener`` to endpoints the balancer picks."""

    balancer: Balancer
    sockets: SocketFactory = plain_socket
    idle_timeout: float = UDP_IDLE_TIMEOUT
    counts: ConnCounts = field(default_factory=ConnCounts)
    _listener: socket.socket | None = None
    _sessions: dict[tuple[str, int], _UdpSession] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self, listener: socket.socket) -> None:
        """Serve on ``listener`` (a bound, non-blocking UDP socket)."""
        listener.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self._listener = listener
        asyncio.get_running_loop().add_reader(listener.fileno(), self._readable)

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def _readable(self) -> None:
        listener = self._listener
        if listener is None:
            return
        for _ in range(_UDP_BURST):
            try:
                data, ancdata, _flags, addr = listener.recvmsg(_UDP_MAX, socket.CMSG_SPACE(_PKTINFO.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. an ICMP error queued on the socket
            local = "0.0.0.0"
            for level, kind, value in ancdata:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= _PKTINFO.size:
                    local = socket.inet_ntoa(_PKTINFO.unpack_from(value)[2])
            self._datagram(data, (str(addr[0]), int(addr[1])), local)

    def _datagram(self, data: bytes, client: tuple[str, int], local: str) -> None:
        session = self._sessions.get(client)
        loop = asyncio.get_running_loop()
        if session is None:
            dest = self.balancer.pick(Request(client[0], local, self.counts.snapshot()))
            if dest is None:
                return  # no endpoint: the datagram is dropped (the rules reject before it gets here)
            session = _UdpSession(client, local, dest.key, last=loop.time())
            self._sessions[client] = session
            self.counts.add(dest.key, active=False, delta=1)
            session.queue.append(data)
            task = loop.create_task(self._open(session))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        session.last = loop.time()
        if session.sock is None:
            if len(session.queue) < _UDP_QUEUE:
                session.queue.append(data)
            return
        with contextlib.suppress(OSError):
            session.sock.send(data)

    async def _open(self, session: _UdpSession) -> None:
        loop = asyncio.get_running_loop()
        host, port = session.key.rsplit(":", 1)
        try:
            sock = await self.sockets(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect((host, int(port)))
        except OSError:
            self._close(session)
            return
        if session.closed:
            sock.close()
            return
        session.sock = sock
        loop.add_reader(sock.fileno(), self._reply, session)
        for data in session.queue:
            with contextlib.suppress(OSError):
                sock.send(data)
        session.queue.clear()
        session.timer = loop.call_later(self.idle_timeout, self._check_idle, session)

    def _reply(self, session: _UdpSession) -> None:
        sock, listener = session.sock, self._listener
        if sock is None or listener is None:
            return
        cmsg = [
            (socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.pack(0, socket.inet_aton(session.local_ip), bytes(4)))
        ]
        for _ in range(_UDP_BURST):
            try:
                data = sock.recv(_UDP_MAX)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ICMP port unreachable from the endpoint: pick again next time
                self._close(session)
                return
            session.last = asyncio.get_running_loop().time()
            with contextlib.suppress(OSError):
                if session.local_ip == "0.0.0.0":
                    listener.sendto(data, session.client)
                else:
                    listener.sendmsg([data], cmsg, 0, session.client)

    def _check_idle(self, session: _UdpSession) -> None:
        loop = asyncio.get_running_loop()
        idle = loop.time() - session.last
        if idle >= self.idle_timeout:
            self._close(session)
        else:
            session.timer = loop.call_later(self.idle_timeout - idle, self._check_idle, session)

    def _close(self, session: _UdpSession) -> None:
        if session.closed:
            return
        session.closed = True
        if self._sessions.get(session.client) is session:
            del self._sessions[session.client]
        self.counts.add(session.key, active=False, delta=-1)
        if session.timer is not None:
            session.timer.cancel()
        if session.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(session.sock.fileno())
            session.sock.close()
            session.sock = None

    def drop_endpoints(self, gone: Iterable[str]) -> int:
        """Close the sessions to endpoints that went away (the next datagram picks again)."""
        keys = set(gone)
        doomed = [s for s in self._sessions.values() if s.key in keys]
        for session in doomed:
            self._close(session)
        return len(doomed)

    async def stop(self) -> None:
        for session in list(self._sessions.values()):
            self._close(session)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
