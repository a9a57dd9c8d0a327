"""Stale UDP conntrack entries between two proxy states, and the fake runner."""

from __future__ import annotations

from kubelite.host.conntrack import FakeConntrack
from kubelite.proxy.conntrack import StaleFlow, stale_flows
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName

DNS = ServicePortName("kube-system", "kube-dns", "dns", "UDP")
WEB = ServicePortName("default", "web", "", "TCP")


def state(dns_eps: tuple[str, ...], web_eps: tuple[str, ...] = ("10.244.1.7",)) -> ProxyState:
    return ProxyState(
        services={
            DNS: ServicePort(DNS, ("10.96.0.10",), 53, "UDP", 53, node_port=30053),
            WEB: ServicePort(WEB, ("10.96.0.20",), 80, "TCP", 80),
        },
        endpoints={
            DNS: tuple(Endpoint(ip, 53) for ip in dns_eps),
            WEB: tuple(Endpoint(ip, 80) for ip in web_eps),
        },
        node_ips=("172.31.0.11",),
    )


def test_removed_udp_endpoint_flows_are_deleted() -> None:
    flows = stale_flows(state(("10.244.1.5", "10.244.2.5")), state(("10.244.2.5",)), frozenset({DNS}))
    assert flows == [
        StaleFlow("udp", "10.96.0.10", 53, "10.244.1.5"),
        StaleFlow("udp", "172.31.0.11", 30053, "10.244.1.5"),
    ]
    assert flows[0].filters() == [
        "-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53", "--dst-nat", "10.244.1.5",
    ]  # fmt: skip


def test_first_endpoint_clears_rejected_flows() -> None:
    flows = stale_flows(state(()), state(("10.244.2.5",)), None)
    assert StaleFlow("udp", "10.96.0.10", 53) in flows and len(flows) == 2


def test_tcp_and_unchanged_and_first_sync_need_nothing() -> None:
    s = state(("10.244.2.5",))
    assert stale_flows(None, s, None) == []
    assert stale_flows(s, s, None) == []
    assert stale_flows(state(("10.244.2.5",), ("10.244.1.7",)), state(("10.244.2.5",), ()), None) == []


def test_deleted_service_flows_go() -> None:
    old = state(("10.244.2.5",))
    new = ProxyState(services={WEB: old.services[WEB]}, endpoints={WEB: old.endpoints[WEB]})
    assert StaleFlow("udp", "10.96.0.10", 53, "10.244.2.5") in stale_flows(old, new, frozenset({DNS}))


async def test_fake_runner_records() -> None:
    fake = FakeConntrack(deleted=2)
    assert await fake.delete(["-p", "udp"], netns="n1") == 2
    assert fake.calls == [("n1", ("-p", "udp"))]
