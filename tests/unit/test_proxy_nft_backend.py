"""NftablesBackend with the fake nft and conntrack runners: full vs partial syncs, recovery."""

from __future__ import annotations

import pytest

from kubelite.host.conntrack import FakeConntrack
from kubelite.host.nft import FakeNft
from kubelite.proxy.backend import ProxyBackend
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName
from kubelite.proxy.nftables import NftablesBackend
from kubelite.proxy.nftables.tracer import Packet, Tracer

A = ServicePortName("default", "a", "", "UDP")
B = ServicePortName("default", "b", "", "TCP")


def state(a_eps: tuple[str, ...], with_b: bool = True) -> ProxyState:
    services = {A: ServicePort(A, ("10.96.0.1",), 53, "UDP", 53)}
    endpoints = {A: tuple(Endpoint(ip, 53) for ip in a_eps)}
    if with_b:
        services[B] = ServicePort(B, ("10.96.0.2",), 80, "TCP", 80)
        endpoints[B] = (Endpoint("10.244.1.9", 80),)
    return ProxyState(services, endpoints, node_ips=("172.31.0.11",))


def make() -> tuple[NftablesBackend, FakeNft, FakeConntrack]:
    nft, ct = FakeNft(), FakeConntrack()
    return NftablesBackend(netns="node1", nft=nft, conntrack=ct), nft, ct


async def test_first_sync_is_full_then_partial_and_conntrack_cleaned() -> None:
    backend, nft, ct = make()
    proxy: ProxyBackend = backend
    assert proxy.mode == "nftables"
    await backend.sync(state(("10.244.1.5", "10.244.2.5")), frozenset({A}))  # no history: full anyway
    await backend.sync(state(("10.244.2.5",), with_b=False), frozenset({A, B}))
    full, partial = nft.applied("node1")
    assert "delete table ip kubelite-proxy" in full and "table ip" not in partial
    tracer = Tracer(full)
    tracer.apply(partial)
    assert tracer.trace(Packet("10.244.3.3", "10.96.0.1", 53, "UDP")).dnat == "10.244.2.5:53"
    assert tracer.trace(Packet("10.244.3.3", "10.96.0.2", 80)).verdict == "reject"
    assert ct.calls == [
        (
            "node1",
            ("-p", "udp", "--orig-dst", "10.96.0.1", "--orig-port-dst", "53", "--dst-nat", "10.244.1.5"),
        )
    ]
    assert (backend.full_syncs, backend.partial_syncs) == (1, 1)


async def test_a_failed_sync_makes_the_next_one_full() -> None:
    backend, nft, _ = make()
    await backend.sync(state(("10.244.1.5",)), None)
    nft.fail = lambda _ns, _text: "Error: Could not process rule"
    with pytest.raises(RuntimeError, match="Could not process rule"):
        await backend.sync(state(("10.244.2.5",)), frozenset({A}))
    nft.fail = None
    await backend.sync(state(("10.244.2.5",)), frozenset({A}))
    assert nft.applied("node1")[-1].startswith("add table ip kubelite-proxy\ndelete table")


async def test_cleanup_deletes_the_table() -> None:
    backend, nft, _ = make()
    await backend.sync(state(("10.244.1.5",)), None)
    await backend.cleanup()
    assert await nft.list_tables(netns="node1") == []


async def test_periodic_resync_of_an_intact_table_rewrites_only_what_differs() -> None:
    backend, nft, _ct = make()
    await backend.sync(state(("10.244.1.5",)), None)
    nft.responses["list chain ip kubelite-proxy nat-prerouting"] = "chain nat-prerouting {\njump services\n}"
    nft.responses["list chain ip kubelite-proxy services"] = (
        "ip daddr . meta l4proto . th dport vmap @service-ips"
    )
    await backend.sync(state(("10.244.1.5",)), None)  # nothing changed: no rewrite, affinity kept
    await backend.sync(state(("10.244.1.6",)), None)  # only service A's rules differ
    assert (backend.full_syncs, backend.partial_syncs) == (1, 2)
    last = nft.applied("node1")[-1]
    assert "10.96.0.1 . 53 . 0 : 10.244.1.6 . 53" in last and "delete table" not in last
    del nft.responses["list chain ip kubelite-proxy services"]  # someone flushed the table: full again
    await backend.sync(state(("10.244.1.6",)), None)
    assert backend.full_syncs == 2
