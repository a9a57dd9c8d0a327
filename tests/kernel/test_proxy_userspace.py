"""The userspace proxy back end against the real kernel: two nodes, pods, a client outside the nodes.

Topology (all ``kltest-<pid>-<n>`` namespaces made by the lab; nothing in the root namespace):

    segment ns:  br0 172.31.0.1/24 ── s1, s2, sc (veths)
    node i ns:   eth0 172.31.0.1i/24, cni0 10.244.i.1/24, ip_forward=1, host-gw route to the other
                 node, 10.96.0.0/12 dev cni0 (so node processes route service IPs)
    pod pi:      eth0 10.244.i.2/24, default via 10.244.i.1; a TCP+UDP server answering "pi"
    client ns:   eth0 172.31.0.100/24; the LB IP and external IP routed via node 1

A UserspaceBackend runs (in this test's event loop) for each node: listeners are opened inside
the node namespace, endpoints are dialled from it, rules go into its ``ip kubelite-userspace`` table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import pytest
from lab import Lab, lab_fixture, root_unchanged  # noqa: F401

from kubelite.host.ip import addr_add, bridge, link_master, link_up, route_add
from kubelite.host.nft import RealNft
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName
from kubelite.proxy.userspace import UserspaceBackend

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

SERVER = r"""
import socket, sys, threading
name, port = sys.argv[1].encode(), int(sys.argv[2])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port)); t.listen(64)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
def udp():
    while True:
        data, peer = u.recvfrom(2048); u.sendto(name, peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, _ = t.accept(); c.sendall(name); c.close()
"""

CLIENT = r"""
import socket, sys
kind, host, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for _ in range(count):
    try:
        if kind == "tcp":
            c = socket.create_connection((host, port), timeout=3)
            c.settimeout(3); print(c.recv(64).decode() or "empty"); c.close()
        else:
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(1); c.connect((host, port))
            c.send(b"x"); print(c.recv(64).decode()); c.close()
    except ConnectionRefusedError:
        print("refused")
    except OSError as e:
        print(type(e).__name__)
"""

WEB_TCP = ServicePortName("default", "web", "", "TCP")
WEB_UDP = ServicePortName("default", "web", "udp", "UDP")
CLUSTER_IP, LB_IP, EXT_IP = "10.96.0.20", "172.31.0.200", "192.0.2.7"
P1 = Endpoint("10.244.1.2", 8080, node_name="n1")
P2 = Endpoint("10.244.2.2", 8080, node_name="n2")


@dataclass
class Cluster:
    lab: Lab
    nodes: list[str] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)
    client: str = ""
    backends: list[UserspaceBackend] = field(default_factory=list)

    async def ask(self, netns: str, kind: str, host: str, port: int, count: int = 1) -> list[str]:
        rc, out, err = await self.lab.exec(
            netns, [sys.executable, "-c", CLIENT, kind, host, str(port), str(count)], 30
        )
        assert rc == 0, err
        return out.split()

    async def sync(self, services: list[ServicePort], eps: dict[ServicePortName, tuple[Endpoint, ...]],
                   changed: frozenset[ServicePortName] | None = None) -> None:  # fmt: skip
        for i, backend in enumerate(self.backends, start=1):
            local = {
                spn: tuple(
                    Endpoint(e.ip, e.port, node_name=e.node_name, is_local=e.node_name == f"n{i}") for e in v
                )
                for spn, v in eps.items()
            }
            state = ProxyState({s.name: s for s in services}, local, node_ips=(f"172.31.0.1{i}",))
            await backend.sync(state, changed)


async def build(lab: Lab) -> Cluster:
    ip = lab.ip
    segment = await lab.netns()
    await ip.batch(
        [link_up("lo"), bridge("br0"), addr_add("172.31.0.1/24", "br0"), link_up("br0")], netns=segment
    )
    cluster = Cluster(lab)
    for i in (1, 2):
        node = await lab.netns()
        await ip.batch(
            [
                f"link add s{i} type veth peer name eth0 netns {node}",
                link_master(f"s{i}", "br0"),
                link_up(f"s{i}"),
            ],
            netns=segment,
        )
        other = 3 - i
        await ip.batch(
            [link_up("lo"), addr_add(f"172.31.0.1{i}/24", "eth0"), link_up("eth0"), bridge("cni0"),
             addr_add(f"10.244.{i}.1/24", "cni0"), link_up("cni0"),
             route_add(f"10.244.{other}.0/24", via=f"172.31.0.1{other}"),
             # a node process needs a route towards the service CIDR for the output hook to see it
             route_add("10.96.0.0/12", dev="cni0")],
            netns=node,
        )  # fmt: skip
        rc, _, err = await lab.exec(node, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        assert rc == 0, err
        pod = await lab.netns()
        await ip.batch([f"link add vp{i} type veth peer name eth0 netns {pod}", link_master(f"vp{i}", "cni0"),
                        link_up(f"vp{i}")], netns=node)  # fmt: skip
        await ip.batch([link_up("lo"), addr_add(f"10.244.{i}.2/24", "eth0"), link_up("eth0"),
                        route_add("default", via=f"10.244.{i}.1")], netns=pod)  # fmt: skip
        server = await lab.spawn(pod, [sys.executable, "-c", SERVER, f"p{i}", "8080"])
        assert server.stdout is not None
        assert (await server.stdout.readline()).strip() == b"ready"
        cluster.nodes.append(node)
        cluster.pods.append(pod)
        cluster.backends.append(UserspaceBackend(netns=node, nft=RealNft(), udp_idle_timeout=0.25))
    client = await lab.netns()
    await ip.batch(
        [f"link add sc type veth peer name eth0 netns {client}", link_master("sc", "br0"), link_up("sc")],
        netns=segment,
    )
    await ip.batch([link_up("lo"), addr_add("172.31.0.100/24", "eth0"), link_up("eth0"),
                    route_add(f"{LB_IP}/32", via="172.31.0.11"),
                    route_add(f"{EXT_IP}/32", via="172.31.0.11")], netns=client)  # fmt: skip
    cluster.client = client
    return cluster


def web(protocol: str = "TCP", **kw: object) -> ServicePort:
    spn = WEB_TCP if protocol == "TCP" else WEB_UDP
    base: dict[str, object] = dict(name=spn, cluster_ips=(CLUSTER_IP,), port=80, protocol=protocol,
                                   target_port=8080, node_port=30080, external_ips=(EXT_IP,),
                                   load_balancer_ips=(LB_IP,))  # fmt: skip
    base.update(kw)
    return ServicePort(**base)  # type: ignore[arg-type]


@pytest.fixture
async def cluster(lab: Lab) -> Cluster:
    return await build(lab)


async def test_cluster_ip_node_port_external_and_lb_ips(cluster: Cluster) -> None:
    try:
        await cluster.sync([web()], {WEB_TCP: (P1, P2)})
        p1 = cluster.pods[0]
        assert set(await cluster.ask(p1, "tcp", CLUSTER_IP, 80, 4)) == {"p1", "p2"}  # across nodes, hairpin
        assert set(await cluster.ask(cluster.nodes[1], "tcp", CLUSTER_IP, 80, 2)) <= {
            "p1",
            "p2",
        }  # output hook
        for host, port in (("172.31.0.12", 30080), ("172.31.0.11", 30080), (LB_IP, 80), (EXT_IP, 80)):
            assert set(await cluster.ask(cluster.client, "tcp", host, port, 2)) <= {"p1", "p2"}, host
        # externalTrafficPolicy Local: node 2 has only p2; node 1 has p1
        await cluster.sync([web(external_local=True)], {WEB_TCP: (P1, P2)}, frozenset({WEB_TCP}))
        assert set(await cluster.ask(cluster.client, "tcp", "172.31.0.12", 30080, 3)) == {"p2"}
        assert set(await cluster.ask(cluster.client, "tcp", "172.31.0.11", 30080, 3)) == {"p1"}
        # no endpoints: refused at once
        await cluster.sync([web()], {}, frozenset({WEB_TCP}))
        assert await cluster.ask(p1, "tcp", CLUSTER_IP, 80, 2) == ["refused", "refused"]
    finally:
        for backend in cluster.backends:
            await backend.cleanup()


async def test_affinity_and_udp(cluster: Cluster) -> None:
    try:
        await cluster.sync([web(affinity_seconds=60)], {WEB_TCP: (P1, P2)})
        answers = await cluster.ask(cluster.pods[0], "tcp", CLUSTER_IP, 80, 16)
        assert len(set(answers[1:])) == 1, answers
        await cluster.sync([web()], {WEB_TCP: (P1, P2)}, frozenset({WEB_TCP}))
        assert set(await cluster.ask(cluster.pods[0], "tcp", CLUSTER_IP, 80, 6)) == {"p1", "p2"}
        # the same port over UDP too; removing TCP leaves UDP working
        eps = {WEB_TCP: (P1, P2), WEB_UDP: (P1, P2)}
        await cluster.sync([web(), web("UDP")], eps, frozenset({WEB_TCP, WEB_UDP}))
        assert set(await cluster.ask(cluster.pods[0], "udp", CLUSTER_IP, 80, 4)) <= {"p1", "p2"}
        await cluster.sync([web("UDP")], {WEB_UDP: (P1, P2)}, frozenset({WEB_TCP}))
        assert await cluster.ask(cluster.pods[0], "tcp", CLUSTER_IP, 80, 1) != ["p1"]
        assert await cluster.ask(cluster.pods[0], "tcp", CLUSTER_IP, 80, 1) != ["p2"]
        assert set(await cluster.ask(cluster.client, "udp", "172.31.0.11", 30080, 2)) <= {"p1", "p2"}
        # a UDP flow moves when its endpoint goes away
        await cluster.sync([web("UDP")], {WEB_UDP: (P2,)}, frozenset({WEB_UDP}))
        assert set(await cluster.ask(cluster.pods[0], "udp", CLUSTER_IP, 80, 3)) == {"p2"}
    finally:
        for backend in cluster.backends:
            await backend.cleanup()
