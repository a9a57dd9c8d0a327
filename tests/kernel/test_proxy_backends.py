"""What every rule-writing proxy back end must survive, in the real kernel (nftables, iptables legacy
and iptables-nft), on the shared two-node lab of ``proxylab.py``:

- an established connection through a ClusterIP survives an admin deleting the proxy's rules and the
  proxy's restart (a new back end object, full sync), and new connections work after it;
- SCTP is DNAT-ed, tested with real packets from raw IP sockets (this kernel has conntrack/NAT for
  SCTP but no SCTP sockets).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from dataclasses import dataclass

import pytest
from lab import Lab, lab_fixture, root_unchanged  # noqa: F401
from proxylab import (
    CIP,
    PODS,
    MakeBackend,
    build,
    stop,
    web,
)

from kubelite.host.iptables import RealIptables
from kubelite.proxy.iptables import IptablesBackend
from kubelite.proxy.model import ServicePortName
from kubelite.proxy.nftables import NftablesBackend

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]


ECHO = ServicePortName("default", "echo", "")
SCTP = ServicePortName("default", "web", "sctp", "SCTP")


def nftables(netns: str) -> NftablesBackend:
    return NftablesBackend(netns=netns)


# --- every kernel back end with rules -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    make: MakeBackend
    flush: tuple[str, ...]
    """What an admin runs on a node to remove the proxy's NAT rules behind its back."""
    show: tuple[str, ...]
    """Prints the NAT rules left, to check the flush did it."""
    gone: str
    """Text that ``show`` prints while the proxy's NAT rules are still there."""


def _iptables(variant: str) -> Kind:
    return Kind(
        lambda ns: IptablesBackend(netns=ns, runner=RealIptables(variant)),
        (f"iptables-{variant}", "-w", "-t", "nat", "-F"),  # every nat chain: KUBE-* and the jumps
        (f"iptables-{variant}-save", "-t", "nat"),
        "-j KUBE-",
    )


KERNEL_BACKENDS = {
    "nftables": Kind(
        nftables,
        ("nft", "delete", "table", "ip", "kubelite-proxy"),
        ("nft", "list", "tables"),
        "table ip kubelite-proxy\n",
    ),
    "iptables-legacy": _iptables("legacy"),
    "iptables-nft": _iptables("nft"),
}


@pytest.mark.parametrize("kind", KERNEL_BACKENDS)
async def test_established_connection_survives_a_flush_and_a_restart(lab: Lab, kind: str) -> None:
    k = KERNEL_BACKENDS[kind]
    c = await build(lab, k.make)
    echo = web(ECHO, port=8081, target_port=8081)
    await c.sync([echo], {ECHO: ["a2"]})
    held = await c.hold("a1", CIP, 8081)
    try:
        assert await held.say("one") == "a2 one"
        # (i) An admin deletes the proxy's rules on node-1: the connection's NAT lives in conntrack.
        rc, _, err = await lab.exec(c.nodes["node-1"], k.flush)
        assert rc == 0, err
        rc, out, err = await lab.exec(c.nodes["node-1"], k.show)
        assert rc == 0 and k.gone not in out, (err, out)
        two = await held.say("two")  # checked last, so a failure here does not hide step (ii)
        # (ii) The proxy restarts: a new back end that knows nothing, full sync.
        await c.restart("node-1", [echo], {ECHO: ["a2"]})
        assert await held.say("three") == "a2 three"
        assert await held.fresh("four") == "a2 four"
    finally:
        await held.stop()
    assert two == "a2 two", "the established connection stalled while the proxy's rules were gone"


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the SCTP checksum (RFC 9260 app. A)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def sctp_init(sport: int, dport: int) -> bytes:
    """An SCTP packet: common header (verification tag 0) + one INIT chunk, with its CRC32c."""
    init = struct.pack("!BBHIIHHI", 1, 0, 20, 0x1A2B3C4D, 65535, 10, 10, 1000)
    packet = struct.pack("!HHII", sport, dport, 0, 0) + init
    return packet[:8] + struct.pack("<I", crc32c(packet)) + packet[12:]


def checksum_ok(sctp: bytes) -> bool:
    return sctp[8:12] == struct.pack("<I", crc32c(sctp[:8] + bytes(4) + sctp[12:]))


def test_crc32c() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C
    assert checksum_ok(sctp_init(40001, 80))


# Records the first SCTP packet this namespace receives (raw IP socket: IP header included).
RAW_RECEIVE = r"""
import select, socket
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
print("ready", flush=True)
print(s.recv(2048).hex() if select.select([s], [], [], 10)[0] else "ERR:timeout", flush=True)
"""
RAW_SEND = r"""
import socket, sys
socket.socket(socket.AF_INET, socket.SOCK_RAW, 132).sendto(bytes.fromhex(sys.argv[2]), (sys.argv[1], 0))
"""


@pytest.mark.parametrize("kind", KERNEL_BACKENDS)
async def test_sctp_cluster_ip_with_real_packets(lab: Lab, kind: str) -> None:
    c = await build(lab, KERNEL_BACKENDS[kind].make)
    await c.sync([web(SCTP)], {SCTP: ["a2"]})  # CIP:80/SCTP -> a2:8080
    receiver = await lab.spawn(c.pods["a2"], [sys.executable, "-c", RAW_RECEIVE])
    try:
        assert receiver.stdout is not None
        assert (await asyncio.wait_for(receiver.stdout.readline(), 10)).strip() == b"ready"
        for _ in range(3):  # a lost first packet (neighbour resolution) is sent again, at most twice
            argv = [sys.executable, "-c", RAW_SEND, CIP, sctp_init(40001, 80).hex()]
            rc, _, err = await lab.exec(c.pods["a1"], argv)
            assert rc == 0, err
            try:
                line = (await asyncio.wait_for(receiver.stdout.readline(), 2)).decode().strip()
                break
            except TimeoutError:
                line = "ERR:nothing within 2 s"
    finally:
        await stop(receiver)
    assert not line.startswith("ERR"), line
    packet = bytes.fromhex(line)
    header = (packet[0] & 0x0F) * 4
    src, dst = socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20])
    sctp = packet[header:]
    assert (src, dst, *struct.unpack("!HH", sctp[:4])) == (PODS["a1"][1], PODS["a2"][1], 40001, 8080)
    assert checksum_ok(sctp), "the checksum was not updated after DNAT"
