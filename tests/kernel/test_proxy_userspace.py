"""The userspace proxy back end against the real kernel, in the shared two-node lab.

Topology: ``proxylab.py`` (segment bridge; node-1 with pods a1, b1 and node-2 with a2, b2, host-gw
between them; a client 172.31.0.50 outside the nodes with the external / LB IPs routed via node-1).
The nodes' route for the service CIDR (10.96.0.0/12 dev eth0) lets a node's own connections reach the
output hook. The endpoints here are a1 and a2.

A UserspaceBackend runs in this test's event loop for each node: listeners are opened inside the
node namespace, endpoints are dialled from it, rules go into its ``ip kubelite-userspace`` table.
The ``cluster`` fixture closes the listeners (``cleanup``) before the loop ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from lab import Lab, lab_fixture, root_unchanged  # noqa: F401
from proxylab import CIP, EXT, LB, WEB, Cluster, build, names

from kubelite.host.nft import RealNft
from kubelite.proxy.model import ServicePort, ServicePortName
from kubelite.proxy.userspace import UserspaceBackend

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

WEB_UDP = ServicePortName("default", "web", "udp", "UDP")
BOTH = ["a1", "a2"]


def userspace(netns: str) -> UserspaceBackend:
    return UserspaceBackend(netns=netns, nft=RealNft(), udp_idle_timeout=0.25)


def web(protocol: str = "TCP", **kw: object) -> ServicePort:
    spn = WEB if protocol == "TCP" else WEB_UDP
    base: dict[str, object] = dict(name=spn, cluster_ips=(CIP,), port=80, protocol=protocol,
                                   target_port=8080, node_port=30080, external_ips=(EXT,),
                                   load_balancer_ips=(LB,))  # fmt: skip
    base.update(kw)
    return ServicePort(**base)  # type: ignore[arg-type]


@pytest.fixture
async def cluster(lab: Lab) -> AsyncIterator[Cluster]:
    c = await build(lab, userspace)
    try:
        yield c
    finally:
        await c.cleanup()


async def test_cluster_ip_node_port_external_and_lb_ips(cluster: Cluster) -> None:
    c = cluster
    await c.sync([web()], {WEB: BOTH})
    assert set(names(await c.request("a1", "tcp", CIP, 80, 4))) == {"a1", "a2"}  # across nodes, hairpin
    assert set(names(await c.request("node-2", "tcp", CIP, 80, 2))) <= {"a1", "a2"}  # output hook
    for host, port in (("172.31.0.12", 30080), ("172.31.0.11", 30080), (LB, 80), (EXT, 80)):
        assert set(names(await c.request("client", "tcp", host, port, 2))) <= {"a1", "a2"}, host
    # externalTrafficPolicy Local: node-2 has only a2; node-1 has a1
    await c.sync([web(external_local=True)], {WEB: BOTH}, frozenset({WEB}))
    assert set(names(await c.request("client", "tcp", "172.31.0.12", 30080, 3))) == {"a2"}
    assert set(names(await c.request("client", "tcp", "172.31.0.11", 30080, 3))) == {"a1"}
    # no endpoints: refused at once
    await c.sync([web()], {}, frozenset({WEB}))
    assert await c.request("a1", "tcp", CIP, 80, 2) == ["ERR:ConnectionRefusedError"] * 2


async def test_affinity_and_udp(cluster: Cluster) -> None:
    c = cluster
    await c.sync([web(affinity_seconds=60)], {WEB: BOTH})
    answers = names(await c.request("a1", "tcp", CIP, 80, 16))
    assert len(set(answers[1:])) == 1, answers
    await c.sync([web()], {WEB: BOTH}, frozenset({WEB}))
    assert set(names(await c.request("a1", "tcp", CIP, 80, 6))) == {"a1", "a2"}
    # the same port over UDP too; removing TCP leaves UDP working
    await c.sync([web(), web("UDP")], {WEB: BOTH, WEB_UDP: BOTH}, frozenset({WEB, WEB_UDP}))
    assert set(names(await c.request("a1", "udp", CIP, 80, 4))) <= {"a1", "a2"}
    await c.sync([web("UDP")], {WEB_UDP: BOTH}, frozenset({WEB}))
    assert names(await c.request("a1", "tcp", CIP, 80)) != ["a1"]
    assert names(await c.request("a1", "tcp", CIP, 80)) != ["a2"]
    assert set(names(await c.request("client", "udp", "172.31.0.11", 30080, 2))) <= {"a1", "a2"}
    # a UDP flow moves when its endpoint goes away
    await c.sync([web("UDP")], {WEB_UDP: ["a2"]}, frozenset({WEB_UDP}))
    assert set(names(await c.request("a1", "udp", CIP, 80, 3))) == {"a2"}
