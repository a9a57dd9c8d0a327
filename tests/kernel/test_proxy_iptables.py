"""IptablesBackend against the real kernel (legacy and nft binaries), in the shared two-node lab.

Topology: ``proxylab.py`` (segment bridge; node-1 with pods a1, b1 and node-2 with a2, b2, host-gw
between them, 10.96.0.0/12 dev eth0 on the nodes; a client 172.31.0.50 outside the nodes with the
external / LB IPs routed via node-1). Each node runs its own IptablesBackend with its own ProxyState
(``is_local`` differs). The flush/restart and SCTP tests for this back end are parametrized with
the nftables ones in ``test_proxy_nftables.py``.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from lab import Lab, lab_fixture, root_unchanged  # noqa: F401
from proxylab import CIP, EXT, LB, WEB, WEB_UDP, MakeBackend, build, names, web

from kubelite.host.iptables import RealIptables
from kubelite.proxy.iptables import IptablesBackend

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]


def iptables(variant: str = "legacy") -> MakeBackend:
    return lambda netns: IptablesBackend(netns=netns, runner=RealIptables(variant))


async def test_cluster_ip_node_port_external_and_load_balancer(lab: Lab) -> None:
    c = await build(lab, iptables())
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
    c = await build(lab, iptables())
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
    c = await build(lab, iptables(variant))
    udp = web(WEB_UDP)
    await c.sync([udp], {WEB_UDP: ["a2"]})
    assert names(await c.request("a1", "udp", CIP, 80, sport=40000)) == ["a2"]
    # a2's server still answers: only the deleted conntrack entry moves the flow to b2.
    await c.sync([udp], {WEB_UDP: ["b2"]})
    assert names(await c.request("a1", "udp", CIP, 80, sport=40000)) == ["b2"]
    await c.cleanup()
    for ns in c.nodes.values():
        rc, out, err = await lab.exec(ns, [f"iptables-{variant}-save"])
        assert rc == 0, err
        assert "KUBE-" not in out, out
