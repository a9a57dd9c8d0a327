"""RealArpResponder against the real kernel: a node answers ARP for an address no interface holds.

Topology (lab namespaces only):

    segment ns:  br0 ── s1, s2, s9 (veths)
    node i ns:   eth0 172.31.0.1i/24; nft DNAT 172.31.0.200:80 -> its own 172.31.0.1i:8080, where a
                 server answers with the node's name (what the service proxy does for a LB IP)
    client ns:   eth0 172.31.0.100/24, nothing else: it finds 172.31.0.200 by ARP on the segment

The responders run in this test's event loop with packet sockets made inside the node namespaces.
"""

from __future__ import annotations

import sys

import pytest
from lab import Lab, lab_fixture, root_unchanged  # noqa: F401

from kubelite.host.arp import RealArpResponder
from kubelite.host.ip import addr_add, bridge, link_up

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

LB = "172.31.0.200"
SERVER = r"""
import socket, sys, time
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((sys.argv[2], 8080)); t.listen(16); t.settimeout(1)
print("ready", flush=True)
end = time.monotonic() + 50
while time.monotonic() < end:
    try:
        c, _ = t.accept()
    except TimeoutError:
        continue
    c.sendall(sys.argv[1].encode()); c.close()
"""
CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], 80), timeout=3); print(c.recv(100).decode())
except OSError as exc:
    print("ERR", type(exc).__name__)
"""


async def test_the_elected_node_answers_and_a_takeover_is_announced_at_once(lab: Lab) -> None:
    segment = await lab.netns()
    await lab.ip.batch([link_up("lo"), bridge("br0"), link_up("br0")], netns=segment)
    spaces: dict[int, str] = {}
    for i in (1, 2, 9):
        ns = spaces[i] = await lab.netns()
        await lab.plug(segment, f"s{i}", ns)
        address = f"172.31.0.{100 if i == 9 else 10 + i}"
        await lab.ip.batch([link_up("lo"), addr_add(f"{address}/24", "eth0"), link_up("eth0")], netns=ns)
        if i == 9:
            continue
        dnat = f"ip daddr {LB} tcp dport 80 dnat to {address}:8080"
        rules = f"table ip t {{ chain pre {{ type nat hook prerouting priority -100; {dnat}; }}; }}"
        rc, _, err = await lab.exec(ns, ["nft", rules])
        assert rc == 0, err
        proc = await lab.spawn(ns, [sys.executable, "-c", SERVER, f"node{i}", address])
        assert proc.stdout is not None and (await proc.stdout.readline()).strip() == b"ready"
    client = spaces[9]

    async def ask() -> str:
        rc, out, err = await lab.exec(client, [sys.executable, "-c", CLIENT, LB], 20)
        assert rc == 0, err
        return out.strip()

    async def neighbour() -> str:
        _rc, out, _err = await lab.exec(client, ["ip", "neigh", "show", LB])
        return out

    assert await ask() == "ERR TimeoutError"  # nobody answers ARP for it yet
    one, two = RealArpResponder("eth0", netns=spaces[1]), RealArpResponder("eth0", netns=spaces[2])
    try:
        await one.start()
        await two.start()
        assert len(one.mac) == 6 and one.mac != two.mac
        await one.set_addresses(frozenset({LB}))
        rc, _, err = await lab.exec(client, ["ip", "neigh", "flush", "all"])  # forget the failed lookup
        assert rc == 0, err
        assert await ask() == "node1"  # the client asked "who has 172.31.0.200" and node 1 answered
        assert one.mac.hex(":") in await neighbour() and one.replies >= 1
        # Failover: node 1 stops, node 2 takes the address and its gratuitous ARP moves the client
        # at once (the client's cache entry is fresh, so without it the client would keep node 1).
        await one.set_addresses(frozenset())
        await two.set_addresses(frozenset({LB}))
        assert two.mac.hex(":") in await neighbour()
        assert await ask() == "node2"
    finally:
        await one.close()
        await two.close()
