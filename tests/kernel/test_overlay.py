"""kubelite.overlay against the real kernel: three nodes on one L2 segment, pods on each, both modes.

Topology (every namespace made by the lab, ``kltest-<pid>-<n>``; nothing in the root namespace):

    segment ns:  br0 172.31.0.1/24 ── s1, s2, s3 (veths)
    node i ns:   eth0 172.31.0.1i/24 (peer of si), cni0 10.244.i.1/24, ip_forward=1
    pod ns:      eth0 10.244.i.x/24 on the node's cni0, default via 10.244.i.1 (a route only to the lab)

Node 1 has two pods (same-node traffic), nodes 2 and 3 one each. A bridge-family nft counter in the
segment namespace counts UDP/8472 frames crossing br0, so the tests see VXLAN really on the wire
(and not at all in host-gw mode).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
from lab import Lab, lab_fixture, root_unchanged  # noqa: F401

from kubelite.host.ip import addr_add, bridge, link_master, link_up, route_add
from kubelite.overlay import HostGwOverlay, NodeRoute, Overlay, OverlayKind, VxlanOverlay, make_overlay
from kubelite.overlay.applier import load_json

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

MODES: list[OverlayKind] = ["host-gw", "vxlan"]


@dataclass
class Cluster:
    lab: Lab
    segment: str
    nodes: list[str] = field(default_factory=list)  # netns of node 1, 2, 3
    routes: list[NodeRoute] = field(default_factory=list)
    pods: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (netns, IP)

    def ns(self, pod: str) -> str:
        return self.pods[pod][0]

    def ip(self, pod: str) -> str:
        return self.pods[pod][1]


async def build(lab: Lab, pod_mtu: int) -> Cluster:
    ip = lab.ip
    segment = await lab.netns()
    await ip.batch(
        [link_up("lo"), bridge("br0"), addr_add("172.31.0.1/24", "br0"), link_up("br0")], netns=segment
    )
    cluster = Cluster(lab, segment)
    layout = {1: ["p1a", "p1b"], 2: ["p2"], 3: ["p3"]}
    for i, pods in layout.items():
        node = await lab.netns()
        await lab.plug(segment, f"s{i}", node)
        await ip.batch(
            [
                link_up("lo"),
                addr_add(f"172.31.0.1{i}/24", "eth0"),
                link_up("eth0"),
                bridge("cni0"),
                addr_add(f"10.244.{i}.1/24", "cni0"),
                link_up("cni0"),
            ],
            netns=node,
        )
        rc, _, err = await lab.exec(node, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        assert rc == 0, err
        cluster.nodes.append(node)
        cluster.routes.append(NodeRoute(f"node-{i}", f"172.31.0.1{i}", f"10.244.{i}.0/24"))
        for j, name in enumerate(pods, start=2):
            pod = await lab.netns()
            address = f"10.244.{i}.{j}"
            await ip.batch(
                [
                    f"link add v{name} mtu {pod_mtu} type veth peer name eth0 netns {pod}",
                    link_master(f"v{name}", "cni0"),
                    link_up(f"v{name}"),
                ],
                netns=node,
            )
            await ip.batch(
                [
                    link_up("lo"),
                    f"link set dev eth0 mtu {pod_mtu}",
                    addr_add(f"{address}/24", "eth0"),
                    link_up("eth0"),
                    route_add("default", via=f"10.244.{i}.1"),
                ],
                netns=pod,
            )
            cluster.pods[name] = (pod, address)
    return cluster


async def start_overlays(cluster: Cluster, mode: OverlayKind) -> list[Overlay]:
    overlays = [
        make_overlay(mode, local, uplink="eth0", netns=node, ip=cluster.lab.ip)
        for node, local in zip(cluster.nodes, cluster.routes, strict=True)
    ]
    for overlay in overlays:
        await overlay.setup()
        await overlay.sync(cluster.routes)  # includes the node itself, which is ignored
    return overlays


async def ping(lab: Lab, netns: str, address: str) -> tuple[int, str]:
    rc, out, err = await lab.exec(netns, ["ping", "-n", "-q", "-c", "1", "-W", "2", address])
    return rc, out + err


ECHO_SERVER = r"""
import socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.settimeout(20)
s.bind((host, port))
if kind == "tcp":
    s.listen(4)
print("ready", flush=True)
for _ in range(4):
    if kind == "tcp":
        conn, peer = s.accept()
        conn.settimeout(5)
        data = conn.recv(1024)
        conn.sendall(b"echo:" + data + b" from:" + peer[0].encode())
        conn.close()
    else:
        data, peer = s.recvfrom(1024)
        s.sendto(b"echo:" + data + b" from:" + peer[0].encode(), peer)
"""

ECHO_CLIENT = r"""
import socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "tcp":
    c = socket.create_connection((host, port), timeout=5)
    c.sendall(b"hello"); c.shutdown(socket.SHUT_WR)
    print(c.recv(1024).decode())
else:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(2)
    for _ in range(3):  # UDP may lose the first datagram while ARP resolves
        c.sendto(b"hello", (host, port))
        try:
            print(c.recv(1024).decode()); break
        except TimeoutError:
            continue
    else:
        sys.exit("no UDP reply")
"""


async def echo(cluster: Cluster, kind: str, client: str, server: str, port: int) -> str:
    """Start an echo server in pod ``server``, talk to it from pod ``client``; the server's reply."""
    lab = cluster.lab
    proc = await lab.spawn(
        cluster.ns(server), [sys.executable, "-c", ECHO_SERVER, kind, cluster.ip(server), str(port)]
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"ready"
    rc, out, err = await lab.exec(
        cluster.ns(client), [sys.executable, "-c", ECHO_CLIENT, kind, cluster.ip(server), str(port)]
    )
    assert rc == 0, err
    return out.strip()


async def count_vxlan_frames(lab: Lab, segment: str) -> None:
    for command in (
        "add table bridge klovl",
        "add chain bridge klovl count8472 { type filter hook forward priority 0; policy accept; }",
        "add rule bridge klovl count8472 udp dport 8472 counter",
    ):
        rc, _, err = await lab.exec(segment, ["nft", command])
        assert rc == 0, err


async def vxlan_frames(lab: Lab, segment: str) -> int:
    rc, out, err = await lab.exec(segment, ["nft", "list", "table", "bridge", "klovl"])
    assert rc == 0, err
    match = re.search(r"counter packets (\d+)", out)
    assert match, out
    return int(match.group(1))


async def overlay_entries(lab: Lab, node: str, mode: OverlayKind) -> dict[str, set[str]]:
    """Our routes, and on flannel.1 its permanent neighbours and FDB entries, as comparable strings."""
    ip = lab.ip
    routes = load_json(await ip.run(["-j", "route", "show", "proto", "77"], netns=node), "routes")
    entries = {"routes": {f"{r['dst']} via {r.get('gateway')} dev {r.get('dev')}" for r in routes}}
    if mode == "vxlan":
        neigh = load_json(
            await ip.run(["-j", "neigh", "show", "dev", "flannel.1", "nud", "permanent"], netns=node), "n"
        )
        rc, out, err = await lab.exec(node, ["bridge", "-j", "fdb", "show", "dev", "flannel.1"])
        assert rc == 0, err
        entries["neigh"] = {f"{n['dst']} {n['lladdr']}" for n in neigh}
        entries["fdb"] = {f"{f['mac']} {f['dst']}" for f in load_json(out, "fdb")}
    return entries


async def node_snapshot(lab: Lab, node: str) -> dict[str, Any]:
    ip = lab.ip
    links = sorted(
        (link["ifname"], link.get("mtu"), link.get("address"), link.get("master"))
        for link in await ip.links(node)
    )
    addresses = sorted(
        (a["ifname"], i.get("local"), i.get("prefixlen"))
        for a in await ip.addresses(node)
        for i in a.get("addr_info", [])
    )
    routes = load_json(await ip.run(["-j", "route", "show", "table", "all"], netns=node), "routes")
    neigh = load_json(await ip.run(["-j", "neigh", "show", "nud", "permanent"], netns=node), "neigh")
    return {"links": links, "addresses": addresses, "routes": routes, "neigh": neigh}


@pytest.mark.parametrize("mode", MODES)
async def test_pods_reach_pods_across_nodes(lab: Lab, mode: OverlayKind) -> None:
    cluster = await build(lab, pod_mtu=1450 if mode == "vxlan" else 1500)
    await count_vxlan_frames(lab, cluster.segment)
    overlays = await start_overlays(cluster, mode)

    for client, server in [("p1a", "p2"), ("p1a", "p3"), ("p3", "p1b"), ("p2", "p3"), ("p1a", "p1b")]:
        rc, output = await ping(lab, cluster.ns(client), cluster.ip(server))
        assert rc == 0, f"{mode}: {client} -> {server}: {output}"

    # No NAT: the server sees the client pod's own address.
    assert await echo(cluster, "tcp", "p1a", "p2", 7000) == "echo:hello from:10.244.1.2"
    assert await echo(cluster, "udp", "p1b", "p3", 7001) == "echo:hello from:10.244.1.3"
    assert await echo(cluster, "tcp", "p3", "p1b", 7002) == "echo:hello from:10.244.3.2"

    routes = {r["dst"]: r for r in await lab.ip.routes(cluster.nodes[0])}
    frames = await vxlan_frames(lab, cluster.segment)
    if mode == "vxlan":
        assert routes["10.244.2.0/24"]["dev"] == "flannel.1"
        assert routes["10.244.2.0/24"]["gateway"] == "10.244.2.0"
        assert frames >= 10, "pod traffic between nodes must cross the segment as UDP/8472"
        stats = load_json(
            await lab.ip.run(["-s", "-j", "link", "show", "flannel.1"], netns=cluster.nodes[0]), "s"
        )
        assert stats[0]["stats64"]["tx"]["packets"] > 0
        assert stats[0]["stats64"]["rx"]["packets"] > 0
        assert stats[0]["mtu"] == 1450
    else:
        assert routes["10.244.2.0/24"]["dev"] == "eth0"
        assert routes["10.244.2.0/24"]["gateway"] == "172.31.0.12"
        assert frames == 0, "host-gw must not encapsulate"

    for overlay in overlays:
        await overlay.teardown()
    rc, _ = await ping(lab, cluster.ns("p1a"), cluster.ip("p2"))
    assert rc != 0, "after teardown the other node's pods are unreachable"


@pytest.mark.parametrize("mode", MODES)
async def test_node_leaves_and_teardown_restores(lab: Lab, mode: OverlayKind) -> None:
    cluster = await build(lab, pod_mtu=1450 if mode == "vxlan" else 1500)
    node1 = cluster.nodes[0]
    before = await node_snapshot(lab, node1)
    overlays = await start_overlays(cluster, mode)
    overlay = overlays[0]
    full = await overlay_entries(lab, node1, mode)
    assert len(full["routes"]) == 2
    assert all(len(v) == 2 for v in full.values())

    # Node 3 leaves: exactly its route (and neighbour and FDB entry) goes.
    await overlay.sync(cluster.routes[:2])
    fewer = await overlay_entries(lab, node1, mode)
    removed = {key: full[key] - fewer[key] for key in full}
    assert all(not (fewer[key] - full[key]) for key in full), "nothing is added"
    assert {key: len(v) for key, v in removed.items()} == {key: 1 for key in full}
    assert "10.244.3.0/24" in next(iter(removed["routes"]))
    if mode == "vxlan":
        assert removed["neigh"] == {"10.244.3.0 0e:6b:ac:1f:00:0d"}
        assert removed["fdb"] == {"0e:6b:ac:1f:00:0d 172.31.0.13"}
    assert (await ping(lab, cluster.ns("p1a"), cluster.ip("p2")))[0] == 0
    assert (await ping(lab, cluster.ns("p1a"), cluster.ip("p3")))[0] != 0

    # It comes back; then someone deletes a route behind our back: a resync repairs it.
    await overlay.sync(cluster.routes)
    assert await overlay_entries(lab, node1, mode) == full
    await lab.ip.run(["route", "del", "10.244.2.0/24", "proto", "77"], netns=node1)
    await overlay.sync(cluster.routes)  # cached: nothing changed as far as it knows
    assert len((await overlay_entries(lab, node1, mode))["routes"]) == 1
    assert isinstance(overlay, HostGwOverlay | VxlanOverlay)
    overlay.invalidate()
    await overlay.sync(cluster.routes)
    assert await overlay_entries(lab, node1, mode) == full
    assert (await ping(lab, cluster.ns("p1a"), cluster.ip("p2")))[0] == 0

    await overlay.teardown()
    await overlay.teardown()  # idempotent
    assert await node_snapshot(lab, node1) == before
