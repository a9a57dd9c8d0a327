"""NftablesBackend against the real kernel: two nodes, pods with echo servers, a client outside.

Topology (every namespace made by the lab; nothing in the root namespace):

    segment ns:  br0 (L2 only) ── s1, s2, sc (veths)
    node i ns:   eth0 172.31.0.1i/24, cni0 10.244.i.1/24, ip_forward=1, host-gw route to the other node
    pod ns:      eth0 10.244.i.x/24 on cni0, default via 10.244.i.1; runs a TCP+UDP echo server
                 that answers with its own name
    client ns:   eth0 172.31.0.100/24, routes for the externalIP / LB IP via node 1

The back end is synced on both nodes; the tests connect from a pod, from the client and from a node.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field

import pytest
from lab import Lab, lab_fixture, root_unchanged  # noqa: F401

from kubelite.host.ip import addr_add, bridge, link_master, link_up, route_add
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName
from kubelite.proxy.nftables import NftablesBackend

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

ECHO = r"""
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
def udp():
    while True:
        data, peer = u.recvfrom(100); u.sendto(name.encode(), peer)
threading.Thread(target=udp, daemon=True).start()
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port)); t.listen(64)
while True:
    c, peer = t.accept(); c.sendall(f"{name} {peer[0]}".encode()); c.close()
"""

CLIENT = r"""
import socket, sys
proto, host, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for _ in range(count):
    try:
        if proto == "tcp":
            s = socket.create_connection((host, port), timeout=2); print(s.recv(100).decode()); s.close()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
            s.bind(("0.0.0.0", 40000)); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.sendto(b"x", (host, port)); print(s.recv(100).decode()); s.close()
    except OSError as exc:
        print("ERR", type(exc).__name__)
"""

NODE_IPS = {1: "172.31.0.11", 2: "172.31.0.12"}
OUTSIDE = "172.31.0.100"


@dataclass
class Cluster:
    lab: Lab
    nodes: dict[int, str] = field(default_factory=dict)
    pods: dict[str, tuple[str, str]] = field(default_factory=dict)
    client: str = ""
    backends: dict[int, NftablesBackend] = field(default_factory=dict)

    async def run(self, netns: str, proto: str, host: str, port: int, count: int = 1) -> list[str]:
        rc, out, err = await self.lab.exec(
            netns, [sys.executable, "-c", CLIENT, proto, host, str(port), str(count)], 30
        )
        assert rc == 0, err
        return out.splitlines()

    async def sync(self, services: list[ServicePort], endpoints: dict[str, list[str]]) -> None:
        for i, backend in self.backends.items():
            eps = {
                sp.name: tuple(
                    Endpoint(self.pods[p][1], 8080, node_name=f"node-{p[1]}", is_local=p[1] == str(i))
                    for p in endpoints.get(sp.name.name, [])
                )
                for sp in services
            }
            state = ProxyState({sp.name: sp for sp in services}, eps, node_ips=(NODE_IPS[i],))
            await backend.sync(
                state,
                None
                if backend.full_syncs == 0
                else frozenset(sp.name for sp in services) | frozenset(self._last),
            )
        self._last = {sp.name for sp in services}

    _last: set[ServicePortName] = field(default_factory=set)


async def build(lab: Lab) -> Cluster:
    ip = lab.ip
    segment = await lab.netns()
    await ip.batch([link_up("lo"), bridge("br0"), link_up("br0")], netns=segment)
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
            [
                link_up("lo"), addr_add(f"{NODE_IPS[i]}/24", "eth0"), link_up("eth0"),
                bridge("cni0"), addr_add(f"10.244.{i}.1/24", "cni0"), link_up("cni0"),
                route_add(f"10.244.{other}.0/24", via=NODE_IPS[other]),
            ],
            netns=node,
        )  # fmt: skip
        rc, _, err = await lab.exec(node, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        assert rc == 0, err
        cluster.nodes[i] = node
        cluster.backends[i] = NftablesBackend(netns=node)
        for k in (1, 2):
            name = f"p{i}{k}"
            pod = await lab.netns()
            pod_ip = f"10.244.{i}.{10 + k}"
            await ip.batch(
                [
                    f"link add v{name} type veth peer name eth0 netns {pod}",
                    link_master(f"v{name}", "cni0"),
                    link_up(f"v{name}"),
                ],
                netns=node,
            )
            await ip.batch(
                [
                    link_up("lo"),
                    addr_add(f"{pod_ip}/24", "eth0"),
                    link_up("eth0"),
                    "route add default via " + f"10.244.{i}.1",
                ],
                netns=pod,
            )
            await lab.spawn(pod, [sys.executable, "-c", ECHO, name, "8080"])
            cluster.pods[name] = (pod, pod_ip)
    client = await lab.netns()
    await ip.batch(
        [f"link add sc type veth peer name eth0 netns {client}", link_master("sc", "br0"), link_up("sc")],
        netns=segment,
    )
    await ip.batch(
        [
            link_up("lo"),
            addr_add(f"{OUTSIDE}/24", "eth0"),
            link_up("eth0"),
            route_add("192.0.2.0/24", via=NODE_IPS[1]),
        ],
        netns=client,
    )
    cluster.client = client
    await asyncio.sleep(0.5)  # servers bind
    return cluster


def svc(name: str, vip: str, proto: str = "TCP", **kw: object) -> ServicePort:
    spn = ServicePortName("default", name, "", proto)
    return ServicePort(spn, (vip,), 80, proto, 8080, **kw)  # type: ignore[arg-type]


async def test_services_end_to_end(lab: Lab) -> None:
    c = await build(lab)
    web = svc(
        "web", "10.96.0.10", node_port=30080, external_ips=("192.0.2.7",), load_balancer_ips=("192.0.2.50",)
    )
    web_udp = svc("web", "10.96.0.10", "UDP")
    empty = svc("empty", "10.96.0.11")
    await c.sync([web, web_udp, empty], {"web": ["p21", "p22"], "empty": []})
    p11 = c.pods["p11"][0]
    # ClusterIP from a pod on node 1 to pods on node 2, source kept.
    lines = await c.run(p11, "tcp", "10.96.0.10", 80, 6)
    assert {line.split()[0] for line in lines} <= {"p21", "p22"} and all(
        line.endswith("10.244.1.11") for line in lines
    )
    # NodePort on both nodes, externalIP and LB IP from outside the nodes: masqueraded.
    for host, port in ((NODE_IPS[1], 30080), (NODE_IPS[2], 30080), ("192.0.2.7", 80), ("192.0.2.50", 80)):
        out = await c.run(c.client, "tcp", host, port)
        assert out[0].split()[0] in {"p21", "p22"} and not out[0].endswith(OUTSIDE), (host, out)
    # UDP on the same port; no endpoints: refused.
    assert (await c.run(p11, "udp", "10.96.0.10", 80))[0] in {"p21", "p22"}
    assert await c.run(p11, "tcp", "10.96.0.11", 80) == ["ERR ConnectionRefusedError"]
    # Session affinity: 16 requests, the last 15 hit one backend; then back to None.
    await c.sync([svc("web", "10.96.0.10", affinity_seconds=60), web_udp], {"web": ["p21", "p22", "p12"]})
    names = [line.split()[0] for line in await c.run(p11, "tcp", "10.96.0.10", 80, 16)]
    assert len(set(names[1:])) == 1, names
    await c.sync([svc("web", "10.96.0.10"), web_udp], {"web": ["p21", "p22", "p12"]})
    names = [line.split()[0] for line in await c.run(p11, "tcp", "10.96.0.10", 80, 30)]
    assert len(set(names)) > 1, names
    # Removing the UDP port stops it; TCP still works.
    await c.sync([svc("web", "10.96.0.10")], {"web": ["p21"]})
    assert (await c.run(p11, "udp", "10.96.0.10", 80))[0].startswith("ERR")
    assert (await c.run(p11, "tcp", "10.96.0.10", 80))[0].startswith("p21")


async def test_udp_flow_moves_after_its_endpoint_goes(lab: Lab) -> None:
    c = await build(lab)
    dns = svc("dns", "10.96.0.12", "UDP")
    await c.sync([dns], {"dns": ["p21"]})
    p11 = c.pods["p11"][0]
    assert await c.run(p11, "udp", "10.96.0.12", 80) == ["p21"]
    await c.sync([dns], {"dns": ["p22"]})
    assert await c.run(p11, "udp", "10.96.0.12", 80) == ["p22"]  # same source port: old flow deleted


async def test_full_sync_restores_a_flushed_table(lab: Lab) -> None:
    c = await build(lab)
    web = svc("web", "10.96.0.10")
    await c.sync([web], {"web": ["p21"]})
    rc, _, err = await lab.exec(c.nodes[1], ["nft", "flush", "table", "ip", "kubelite-proxy"])
    assert rc == 0, err
    await c.backends[1].sync(
        ProxyState({web.name: web}, {web.name: (Endpoint(c.pods["p21"][1], 8080),)}), None
    )
    assert (await c.run(c.pods["p11"][0], "tcp", "10.96.0.10", 80))[0].startswith("p21")
    for backend in c.backends.values():
        await backend.cleanup()
