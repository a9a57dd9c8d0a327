"""ARP answers for addresses no interface holds: how a LoadBalancer IP is reached on layer 2.

A LoadBalancer IP from the node network's pool belongs to no interface. For a machine on that
network to send packets to it, some node must answer "who has <IP>?" with its own MAC address, as
MetalLB's speaker does in L2 mode. :class:`ArpResponder` does that from user space: a packet socket
on the node's interface reads ARP requests and answers those for the addresses it was given; when
an address is added it sends a gratuitous ARP so neighbours that cached another node's MAC (a
failover) switch at once. The node's kernel is not told about the address (no route, no local
address): packets that arrive for it are DNATed by the service proxy's rules before routing.

``build_*`` / ``parse_arp`` are pure. :class:`FakeArpResponder` records the addresses for tests
without root.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kubelite.host.netns import socket_in_netns

__all__ = [
    "ArpPacket",
    "ArpResponder",
    "FakeArpResponder",
    "RealArpResponder",
    "build_arp",
    "parse_arp",
]

log = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
_REQUEST, _REPLY = 1, 2
_HEADER = struct.Struct("!6s6sHHHBBH6s4s6s4s")  # Ethernet + ARP for IPv4 over Ethernet


@dataclass(frozen=True, slots=True)
class ArpPacket:
    op: int
    """1 request, 2 reply."""
    sender_mac: bytes
    sender_ip: str
    target_mac: bytes
    target_ip: str


def parse_arp(frame: bytes) -> ArpPacket | None:
    """An IPv4-over-Ethernet ARP packet from a whole Ethernet frame, or None for anything else."""
    if len(frame) < _HEADER.size:
        return None
    _dst, _src, ethertype, htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _HEADER.unpack_from(frame)
    if (ethertype, htype, ptype, hlen, plen) != (ETH_P_ARP, 1, 0x0800, 6, 4) or op not in (_REQUEST, _REPLY):
        return None
    return ArpPacket(op, sha, socket.inet_ntoa(spa), tha, socket.inet_ntoa(tpa))


def build_arp(op: int, src_mac: bytes, src_ip: str, dst_mac: bytes, dst_ip: str) -> bytes:
    """An Ethernet frame carrying an ARP packet (``dst_mac`` all zero in a request's ARP body)."""
    eth_dst = BROADCAST if op == _REQUEST else dst_mac
    arp_target = b"\x00" * 6 if op == _REQUEST else dst_mac
    return _HEADER.pack(
        eth_dst, src_mac, ETH_P_ARP, 1, 0x0800, 6, 4, op,
        src_mac, socket.inet_aton(src_ip), arp_target, socket.inet_aton(dst_ip),
    )  # fmt: skip


def reply_for(request: ArpPacket, mac: bytes, announced: frozenset[str]) -> bytes | None:
    """The reply this node sends to ``request``, if it asks for an announced address."""
    if request.op != _REQUEST or request.target_ip not in announced or request.sender_mac == mac:
        return None
    return build_arp(_REPLY, mac, request.target_ip, request.sender_mac, request.sender_ip)


def gratuitous(mac: bytes, ip: str) -> bytes:
    """A gratuitous ARP request (sender and target both ``ip``): neighbours update their caches."""
    return build_arp(_REQUEST, mac, ip, BROADCAST, ip)


@runtime_checkable
class ArpResponder(Protocol):
    async def start(self) -> None: ...

    async def set_addresses(self, addresses: frozenset[str]) -> None:
        """Answer for exactly ``addresses`` from now on (new ones are announced at once)."""
        ...

    async def close(self) -> None: ...


class RealArpResponder:
    """Answers ARP requests on ``interface`` (in ``netns``, or this process's namespace) with the
    interface's own MAC address, which the bound socket reports (sysfs would show the namespace of
    whoever mounted /sys, not ours)."""

    def __init__(self, interface: str, *, netns: str | None = None, repeats: int = 2) -> None:
        self.interface = interface
        self.mac = b""
        self.netns = netns
        self.repeats = repeats
        self.addresses: frozenset[str] = frozenset()
        self.replies = 0
        self._sock: socket.socket | None = None

    async def start(self) -> None:
        proto = socket.htons(ETH_P_ARP)
        if self.netns is None:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, proto)
            sock.setblocking(False)
        else:
            sock = await socket_in_netns(self.netns, socket.AF_PACKET, socket.SOCK_RAW, proto)
        try:
            sock.bind((self.interface, ETH_P_ARP))
        except OSError:
            sock.close()
            raise
        self.mac = bytes(sock.getsockname()[4])
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(64):  # bounded per wake-up; the rest waits for the next one
            try:
                frame, meta = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("ARP socket on %s failed: %s", self.interface, exc)
                return
            if meta[2] == socket.PACKET_OUTGOING:
                continue
            packet = parse_arp(frame)
            reply = reply_for(packet, self.mac, self.addresses) if packet else None
            if reply is not None:
                with contextlib.suppress(OSError):
                    sock.send(reply)
                    self.replies += 1

    async def set_addresses(self, addresses: frozenset[str]) -> None:
        for ip in addresses:
            ipaddress.IPv4Address(ip)  # refuse anything else before answering for it
        new = addresses - self.addresses
        self.addresses = frozenset(addresses)
        if self._sock is None or not new:
            return
        for round_ in range(self.repeats):
            for ip in sorted(new):
                with contextlib.suppress(OSError):
                    self._sock.send(gratuitous(self.mac, ip))
            if round_ + 1 < self.repeats:
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        self.addresses = frozenset()


class FakeArpResponder:
    def __init__(self) -> None:
        self.addresses: frozenset[str] = frozenset()
        self.history: list[frozenset[str]] = []
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def set_addresses(self, addresses: frozenset[str]) -> None:
        if addresses != self.addresses:
            self.history.append(addresses)
        self.addresses = frozenset(addresses)

    async def close(self) -> None:
        self.addresses = frozenset()
