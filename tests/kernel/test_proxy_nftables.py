"""NftablesBackend against the real kernel.

Topology: the shared two-node lab in ``proxylab.py`` (segment bridge; node-1 with pods a1, b1 and
node-2 with a2, b2, host-gw between them; a client outside the nodes; each node runs its own back end).
What every rule-writing back end must survive is in ``test_proxy_backends.py``.
"""

from __future__ import annotations

import pytest
from lab import Lab, lab_fixture, root_unchanged  # noqa: F401
from proxylab import (
    CIP,
    CLIENT_IP,
    EXT,
    LB,
    NODE_IPS,
    PODS,
    WEB,
    WEB_UDP,
    build,
    names,
    web,
)

from kubelite.proxy.model import ServicePortName
from kubelite.proxy.nftables import NftablesBackend

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

EMPTY = ServicePortName("default", "empty", "")
DNS = ServicePortName("default", "dns", "", "UDP")


def nftables(netns: str) -> NftablesBackend:
    return NftablesBackend(netns=netns)


async def test_services_end_to_end(lab: Lab) -> None:
    c = await build(lab, nftables)
    tcp = web(node_port=30080, external_ips=(EXT,), load_balancer_ips=(LB,))
    udp, empty = web(WEB_UDP), web(EMPTY, cluster_ips=("10.96.0.11",))
    services = [tcp, udp, empty]
    await c.sync(services, {WEB: ["a2", "b2"], WEB_UDP: ["a2", "b2"], EMPTY: []}, c.touched(services))
    # ClusterIP from a pod on node 1 to pods on node 2, source kept.
    replies = await c.request("a1", "tcp", CIP, 80, 6)
    assert set(names(replies)) <= {"a2", "b2"}, replies
    assert all(r.endswith(PODS["a1"][1]) for r in replies), replies
    # NodePort on both nodes, externalIP and LB IP from outside the nodes: masqueraded.
    for host, port in ((NODE_IPS["node-1"], 30080), (NODE_IPS["node-2"], 30080), (EXT, 80), (LB, 80)):
        (reply,) = await c.request("client", "tcp", host, port)
        assert reply.split()[0] in {"a2", "b2"} and not reply.endswith(CLIENT_IP), (host, reply)
    # UDP on the same port; no endpoints: refused.
    assert names(await c.request("a1", "udp", CIP, 80))[0] in {"a2", "b2"}
    assert await c.request("a1", "tcp", "10.96.0.11", 80) == ["ERR:ConnectionRefusedError"]
    # Session affinity: 16 requests, the last 15 hit one backend; then back to None.
    three = {WEB: ["a2", "b2", "b1"], WEB_UDP: ["a2", "b2", "b1"]}
    services = [web(affinity_seconds=60), udp]
    await c.sync(services, three, c.touched(services))
    replies = names(await c.request("a1", "tcp", CIP, 80, 16))
    assert len(set(replies[1:])) == 1, replies
    services = [web(), udp]
    await c.sync(services, three, c.touched(services))
    replies = names(await c.request("a1", "tcp", CIP, 80, 30))
    assert len(set(replies)) > 1, replies
    # Removing the UDP port stops it; TCP still works.
    await c.sync([web()], {WEB: ["a2"]}, c.touched([web()]))
    assert (await c.request("a1", "udp", CIP, 80))[0].startswith("ERR")
    assert (await c.request("a1", "tcp", CIP, 80))[0].startswith("a2")


async def test_udp_flow_moves_after_its_endpoint_goes(lab: Lab) -> None:
    c = await build(lab, nftables)
    dns = web(DNS, cluster_ips=("10.96.0.12",))
    await c.sync([dns], {DNS: ["a2"]}, c.touched([dns]))
    assert names(await c.request("a1", "udp", "10.96.0.12", 80, sport=40000)) == ["a2"]
    await c.sync([dns], {DNS: ["b2"]}, c.touched([dns]))
    # a2's server still answers: only the deleted conntrack entry moves the flow (same source port).
    assert names(await c.request("a1", "udp", "10.96.0.12", 80, sport=40000)) == ["b2"]


async def test_full_sync_restores_a_flushed_table_and_cleanup(lab: Lab) -> None:
    c = await build(lab, nftables)
    await c.sync([web()], {WEB: ["a2"]})
    node1 = c.nodes["node-1"]
    rc, _, err = await lab.exec(node1, ["nft", "flush", "table", "ip", "kubelite-proxy"])
    assert rc == 0, err
    await c.backends["node-1"].sync(c.state("node-1", [web()], {WEB: ["a2"]}), None)
    assert (await c.request("a1", "tcp", CIP, 80))[0].startswith("a2")
    await c.cleanup()
    for ns in c.nodes.values():
        rc, out, err = await lab.exec(ns, ["nft", "list", "tables"])
        assert rc == 0, err
        assert "kubelite-proxy" not in out, out
