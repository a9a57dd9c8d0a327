"""IptablesBackend against the real kernel: two nodes, pods with servers, a client (legacy and nft).

Topology (every namespace made by the lab; nothing in the root namespace):

    segment ns:  br0 ── s1, s2, s9 (veths)
    node i ns:   eth0 172.31.0.1i/24, cni0 10.244.i.1/24, ip_forward=1, host-gw route to the other node,
                 10.96.0.0/12 dev eth0 (stands in for a default route)
    pod ns:      eth0 10.244.i.x/24 on cni0, default via 10.244.i.1; a TCP+UDP server on 8080 answering
                 "<pod name> <peer IP>"
    client ns:   eth0 172.31.0.50/24 (outside the cluster), 192.168.50.0/24 (external / LB IPs) via node 1

Node 1 has pods a1 (10.244.1.2) and b1 (10.244.1.3); node 2 has a2 (10.244.2.2) and b2 (10.244.2.3).
Each node runs its own IptablesBackend with its own ProxyState (``is_local`` differs).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field, replace

import pytest
from lab import Lab, lab_fixture, root_unchanged  # noqa: F401

from kubelite.host.ip import addr_add, bridge, link_master, link_up, route_add
from kubelite.host.iptables import RealIptables
from kubelite.proxy.iptables import IptablesBackend
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

CIP = "10.96.0.20"
EXT, LB = "192.168.50.7", "192.168.50.8"
NODE_IPS = {"node-1": "172.31.0.11", "node-2": "172.31.0.12"}
PODS = {"a1": ("node-1", "10.244.1.2"), "b1": ("node-1", "10.244.1.3"),
        "a2": ("node-2", "10.244.2.2"), "b2": ("node-2", "10.244.2.3")}  # fmt: skip

SERVER = r"""
import selectors, socket, sys, time
name, ip = sys.argv[1], sys.argv[2]
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind((ip, 8080)); t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((ip, 8080))
sel = selectors.DefaultSelector()
sel.register(t, selectors.EVENT_READ); sel.register(u, selectors.EVENT_READ)
print("ready", flush=True)
end = time.monotonic() + 55
while time.monotonic() < end:
    for key, _ in sel.select(1):
        if key.fileobj is t:
            c, peer = t.accept(); c.sendall(f"{name} {peer[0]}".encode()); c.close()
        else:
            _, peer = u.recvfrom(100); u.sendto(f"{name} {peer[0]}".encode(), peer)
"""

CLIENT = r"""
import errno, socket, sys
proto, host = sys.argv[1], sys.argv[2]
port, count, sport = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
for _ in range(count):
    try:
        if proto == "tcp":
            c = socket.create_connection((host, port), timeout=2)
            print(c.recv(100).decode()); c.close()
        else:
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(1)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if sport: c.bind(("0.0.0.0", sport))
            for attempt in range(3):
                c.sendto(b"x", (host, port))
                try:
                    print(c.recv(100).decode()); break
                except TimeoutError:
                    if attempt == 2: print("ERR:timeout")
            c.close()
    except OSError as e:
        plain = type(e) is OSError
        print("ERR:" + (errno.errorcode.get(e.errno or 0, "?") if plain else type(e).__name__))
"""


@dataclass
class Cluster:
    lab: Lab
    nodes: dict[str, str] = field(default_factory=dict)  # node name -> netns
    pods: dict[str, str] = field(default_factory=dict)  # pod name -> netns
    client: str = ""
    backends: dict[str, IptablesBackend] = field(default_factory=dict)

    async def request(
        self, where: str, proto: str, host: str, port: int, count: int = 1, sport: int = 0
    ) -> list[str]:
        netns = self.client if where == "client" else self.pods[where]
        argv = [sys.executable, "-c", CLIENT, proto, host, str(port), str(count), str(sport)]
        rc, out, err = await self.lab.exec(netns, argv, seconds=30)
        assert rc == 0, err
        return out.split("\n")[:count]

    async def sync(self, services: list[ServicePort], endpoints: dict[ServicePortName, list[str]]) -> None:
        for node, backend in self.backends.items():
            eps = {
                spn: tuple(
                    Endpoint(PODS[p][1], 8080, node_name=PODS[p][0], is_local=PODS[p][0] == node)
                    for p in pods
                )
                for spn, pods in endpoints.items()
            }
            state = ProxyState({sp.name: sp for sp in services}, eps, node_ips=(NODE_IPS[node],))
            await backend.sync(state, None)


async def build(lab: Lab, variant: str = "legacy") -> Cluster:
    ip = lab.ip
    cluster = Cluster(lab)
    segment = await lab.netns()
    await ip.batch([link_up("lo"), bridge("br0"), link_up("br0")], netns=segment)
    for i, node in ((1, "node-1"), (2, "node-2"), (9, "client")):
        ns = await lab.netns()
        await ip.batch(
            [
                f"link add s{i} type veth peer name eth0 netns {ns}",
                link_master(f"s{i}", "br0"),
                link_up(f"s{i}"),
            ],
            netns=segment,
        )
        lines = [link_up("lo"), addr_add(f"172.31.0.{50 if i == 9 else 10 + i}/24", "eth0"), link_up("eth0")]
        if i == 9:
            cluster.client = ns
            await ip.batch([*lines, route_add("192.168.50.0/24", via="172.31.0.11")], netns=ns)
            continue
        other = 3 - i
        lines += [
            bridge("cni0"),
            addr_add(f"10.244.{i}.1/24", "cni0"),
            link_up("cni0"),
            route_add(f"10.244.{other}.0/24", via=f"172.31.0.1{other}"),
            # Real nodes have a default route; the filter REJECT for a service without endpoints
            # runs after routing, so the service CIDR needs some route (here: onto the lab segment).
            route_add("10.96.0.0/12", dev="eth0"),
        ]
        await ip.batch(lines, netns=ns)
        rc, _, err = await lab.exec(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        assert rc == 0, err
        cluster.nodes[node] = ns
        cluster.backends[node] = IptablesBackend(netns=ns, runner=RealIptables(variant))
    for name, (node, address) in PODS.items():
        ns = await lab.netns()
        node_ns, gw = cluster.nodes[node], address.rsplit(".", 1)[0] + ".1"
        await ip.batch(
            [
                f"link add v{name} type veth peer name eth0 netns {ns}",
                link_master(f"v{name}", "cni0"),
                link_up(f"v{name}"),
                f"link set dev v{name} type bridge_slave hairpin on",
            ],
            netns=node_ns,
        )
        await ip.batch(
            [link_up("lo"), addr_add(f"{address}/24", "eth0"), link_up("eth0"), route_add("default", via=gw)],
            netns=ns,
        )
        cluster.pods[name] = ns
        proc = await lab.spawn(ns, [sys.executable, "-c", SERVER, name, address])
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 10)).strip() == b"ready"
    return cluster


WEB = ServicePortName("default", "web", "")
WEB_UDP = ServicePortName("default", "web", "", "UDP")


def web(spn: ServicePortName = WEB, **kw: object) -> ServicePort:
    return replace(ServicePort(spn, (CIP,), 80, spn.protocol, 8080), **kw)  # type: ignore[arg-type]


def names(replies: list[str]) -> list[str]:
    return [r.split()[0] for r in replies]


async def test_cluster_ip_node_port_external_and_load_balancer(lab: Lab) -> None:
    c = await build(lab)
    sp = web(node_port=30080, external_ips=(EXT,), load_balancer_ips=(LB,))
    await c.sync([sp], {WEB: ["a2", "b2"]})
    # ClusterIP from a pod on the other node: spread over both, pod source kept (no masquerade).
    replies = await c.request("a1", "tcp", CIP, 80, count=12)
    assert set(names(replies)) == {"a2", "b2"}, replies
    assert {r.split()[1] for r in replies} == {"10.244.1.2"}
    # nodeIP:nodePort on both nodes (node 1 has no local endpoint), external IP and LB IP via node 1.
    for host, port in (("172.31.0.11", 30080), ("172.31.0.12", 30080), (EXT, 80), (LB, 80)):
        (reply,) = await c.request("client", "tcp", host, port)
        assert reply.split()[0] in {"a2", "b2"}, (host, reply)
    # Hairpin (a pod through its own service) and a pod on the same bridge as the endpoint.
    await c.sync([sp], {WEB: ["a2"]})
    assert names(await c.request("a2", "tcp", CIP, 80)) == ["a2"]
    assert names(await c.request("b2", "tcp", CIP, 80)) == ["a2"]
    # externalTrafficPolicy Local: the client's address is kept; node 1 (no local endpoint) drops.
    await c.sync([replace(sp, external_local=True)], {WEB: ["a2"]})
    assert await c.request("client", "tcp", "172.31.0.12", 30080) == ["a2 172.31.0.50"]
    assert await c.request("client", "tcp", "172.31.0.11", 30080) == ["ERR:TimeoutError"]


async def test_affinity_protocols_and_no_endpoints(lab: Lab) -> None:
    c = await build(lab)
    await c.sync([web(affinity_seconds=600)], {WEB: ["a1", "a2", "b2"]})
    replies = names(await c.request("b1", "tcp", CIP, 80, count=16))
    assert len(set(replies[1:])) == 1, replies
    await c.sync([web()], {WEB: ["a1", "a2", "b2"]})
    assert len(set(names(await c.request("b1", "tcp", CIP, 80, count=16)))) > 1
    await c.sync([web(affinity_seconds=600)], {WEB: ["a1", "a2", "b2"]})
    assert len(set(names(await c.request("b1", "tcp", CIP, 80, count=16))[1:])) == 1
    # The same port over TCP and UDP; removing UDP stops it, TCP keeps working.
    both = [web(), web(WEB_UDP)]
    await c.sync(both, {WEB: ["a2"], WEB_UDP: ["b2"]})
    assert names(await c.request("a1", "tcp", CIP, 80)) == ["a2"]
    assert names(await c.request("a1", "udp", CIP, 80)) == ["b2"]
    await c.sync([web()], {WEB: ["a2"]})
    assert await c.request("a1", "udp", CIP, 80) == ["ERR:timeout"]
    assert names(await c.request("a1", "tcp", CIP, 80)) == ["a2"]
    # No endpoints: refused at once, from a pod and from outside through the node port.
    await c.sync([web(node_port=30080)], {})
    start = time.monotonic()
    assert await c.request("a1", "tcp", CIP, 80) == ["ERR:ConnectionRefusedError"]
    assert await c.request("client", "tcp", "172.31.0.11", 30080) == ["ERR:ConnectionRefusedError"]
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("variant", ["legacy", "nft"])
async def test_udp_flow_moves_after_its_endpoint_goes_and_cleanup(lab: Lab, variant: str) -> None:
    c = await build(lab, variant)
    udp = web(WEB_UDP)
    await c.sync([udp], {WEB_UDP: ["a2"]})
    assert names(await c.request("a1", "udp", CIP, 80, sport=40000)) == ["a2"]
    # a2's server still answers: only the deleted conntrack entry moves the flow to b2.
    await c.sync([udp], {WEB_UDP: ["b2"]})
    assert names(await c.request("a1", "udp", CIP, 80, sport=40000)) == ["b2"]
    for node, backend in c.backends.items():
        await backend.cleanup()
        rc, out, err = await lab.exec(c.nodes[node], [f"iptables-{variant}-save"])
        assert rc == 0, err
        assert "KUBE-" not in out, out
