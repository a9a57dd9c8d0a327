"""UserspaceBackend without root: listeners on loopback, rules through FakeNft, a small rule tracer."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest

from kubelite.host.conntrack import FakeConntrack
from kubelite.host.nft import FakeNft
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName
from kubelite.proxy.userspace.backend import UserspaceBackend
from kubelite.proxy.userspace.rules import TABLE, ServiceRules

WEB = ServicePortName("default", "web", "", "TCP")
DNS = ServicePortName("kube-system", "dns", "dns", "UDP")
NODE_IPS = ("172.31.0.11",)


def web(**kw: object) -> ServicePort:
    base: dict[str, object] = dict(
        name=WEB, cluster_ips=("10.96.0.20",), port=80, protocol="TCP", target_port=8080,
        node_port=30080, external_ips=("192.0.2.7",), load_balancer_ips=("172.31.0.200",),
    )  # fmt: skip
    base.update(kw)
    return ServicePort(**base)  # type: ignore[arg-type]


def dns() -> ServicePort:
    return ServicePort(name=DNS, cluster_ips=("10.96.0.10",), port=53, protocol="UDP", target_port=53)


def state(
    services: Sequence[ServicePort], endpoints: Mapping[ServicePortName, tuple[Endpoint, ...]]
) -> ProxyState:
    return ProxyState({s.name: s for s in services}, dict(endpoints), node_ips=NODE_IPS)


REMOTE = Endpoint("10.244.2.5", 8080, node_name="n2")
LOCAL = Endpoint("10.244.1.5", 8080, node_name="n1", is_local=True)


def trace(
    rules: Mapping[ServicePortName, ServiceRules],
    daddr: str,
    proto: str,
    dport: int,
    saddr: str = "172.31.0.100",
) -> str:
    """What the table does with a new packet: 'redirect :P', 'reject', 'drop' or 'accept'."""
    chains = {name: body for r in rules.values() for name, body in r.chains}
    elements = {(e.map, e.key): e.verdict for r in rules.values() for e in r.elements}
    for kind in ("filter", "service"):  # filter hooks (priority -110) run before nat (-100)
        verdict = elements.get((f"{kind}-ips", f"{daddr} . {proto} . {dport}"))
        if verdict is None and daddr in NODE_IPS:
            verdict = elements.get((f"{kind}-nodeports", f"{proto} . {dport}"))
        while verdict is not None:
            body = chains[verdict.removeprefix("goto ")]
            verdict = None
            for rule in body:
                if rule.startswith("ip saddr "):  # a source range: return (go on) or goto
                    _ip, _saddr, cidr, action = rule.split(" ", 3)
                    if ipaddress.ip_address(saddr) not in ipaddress.ip_network(cidr):
                        continue
                    if action == "return":
                        break
                    verdict = action
                    break
                return f"redirect :{rule.rsplit(':', 1)[1]}" if "redirect" in rule else rule
    return "accept"


@pytest.fixture
async def backend() -> AsyncIterator[UserspaceBackend]:
    b = UserspaceBackend(nft=FakeNft(), listen_ip="127.0.0.1", conntrack=FakeConntrack())
    yield b
    await b.cleanup()


def fake(b: UserspaceBackend) -> FakeNft:
    assert isinstance(b.nft, FakeNft)
    return b.nft


async def test_every_address_of_a_service_redirects_to_its_listener(backend: UserspaceBackend) -> None:
    await backend.sync(state([web()], {WEB: (REMOTE, LOCAL)}), None)
    port = backend.listener_port(WEB)
    assert port
    rules = backend._rules
    for daddr, dport in (("10.96.0.20", 80), ("172.31.0.11", 30080), ("192.0.2.7", 80), ("172.31.0.200", 80)):
        assert trace(rules, daddr, "tcp", dport) == f"redirect :{port}"
    assert trace(rules, "10.96.0.20", "udp", 80) == "accept"
    assert trace(rules, "172.31.0.12", "tcp", 30080) == "accept"  # not this node's address
    text = fake(backend).applied()[0]
    assert f"delete table ip {TABLE}" in text
    assert "type nat hook output priority -100" in text and "type nat hook prerouting priority -100" in text
    assert "add element ip kubelite-userspace node-ips { 172.31.0.11 }" in text


async def test_no_endpoints_rejects_and_local_policy_drops(backend: UserspaceBackend) -> None:
    await backend.sync(state([web(external_local=True)], {WEB: (REMOTE,)}), None)
    rules = backend._rules
    assert trace(rules, "10.96.0.20", "tcp", 80) == f"redirect :{backend.listener_port(WEB)}"
    assert trace(rules, "172.31.0.11", "tcp", 30080) == "drop"
    assert trace(rules, "192.0.2.7", "tcp", 80) == "drop"
    await backend.sync(state([web(external_local=True)], {WEB: (REMOTE, LOCAL)}), frozenset({WEB}))
    ext = backend.listener_port(WEB, "external")
    assert ext and ext != backend.listener_port(WEB)
    assert trace(backend._rules, "172.31.0.11", "tcp", 30080) == f"redirect :{ext}"
    await backend.sync(state([web()], {}), frozenset({WEB}))
    assert trace(backend._rules, "10.96.0.20", "tcp", 80) == "meta l4proto tcp reject with tcp reset"
    assert backend.listener_port(WEB, "external") is None


async def test_partial_sync_touches_only_the_changed_service(backend: UserspaceBackend) -> None:
    await backend.sync(state([web(), dns()], {WEB: (REMOTE,), DNS: (Endpoint("10.244.2.9", 53),)}), None)
    web_port = backend.listener_port(WEB)
    await backend.sync(state([web(), dns()], {WEB: (REMOTE,)}), frozenset({DNS}))
    text = fake(backend).applied()[-1]
    assert "delete table" not in text
    assert "10.96.0.10" in text and "10.96.0.20" not in text
    assert backend.listener_port(WEB) == web_port
    assert trace(backend._rules, "10.96.0.10", "udp", 53) == "reject"
    await backend.sync(state([web()], {WEB: (REMOTE,)}), frozenset({DNS}))
    assert backend.listener_port(DNS) is None
    last = fake(backend).applied()[-1]
    assert "delete element ip kubelite-userspace filter-ips { 10.96.0.10 . udp . 53 }" in last
    assert "delete chain" in last
    await backend.sync(state([web()], {WEB: (REMOTE,)}), frozenset({WEB}))  # nothing changed
    assert fake(backend).applied()[-1] == last


async def test_udp_service_gaining_endpoints_clears_conntrack(backend: UserspaceBackend) -> None:
    recorder = backend.conntrack
    assert isinstance(recorder, FakeConntrack)
    await backend.sync(state([dns()], {}), None)
    assert recorder.calls == []
    await backend.sync(state([dns()], {DNS: (Endpoint("10.244.2.9", 53),)}), frozenset({DNS}))
    assert recorder.calls == [(None, ("-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53"))]


async def test_full_resync_keeps_listener_ports_and_cleanup_removes_everything(
    backend: UserspaceBackend,
) -> None:
    s = state([web()], {WEB: (REMOTE,)})
    await backend.sync(s, None)
    port = backend.listener_port(WEB)
    await backend.sync(s, None)
    assert backend.listener_port(WEB) == port
    await backend.cleanup()
    assert backend.listener_port(WEB) is None
    assert fake(backend).applied()[-1] == f"add table ip {TABLE}\ndelete table ip {TABLE}\n"


def test_a_wrong_scheduler_name_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown userspace proxy scheduler"):
        UserspaceBackend(scheduler="fastest", nft=FakeNft())


async def test_load_balancer_source_ranges_drop_other_clients(backend: UserspaceBackend) -> None:
    fenced = web(source_ranges=("203.0.113.0/28",))
    await backend.sync(state([fenced], {WEB: (REMOTE,)}), None)
    port = backend.listener_port(WEB)
    assert trace(backend._rules, "172.31.0.200", "tcp", 80, saddr="203.0.113.9") == f"redirect :{port}"
    assert trace(backend._rules, "172.31.0.200", "tcp", 80, saddr="198.51.100.1") == "drop"
    assert trace(backend._rules, "192.0.2.7", "tcp", 80, saddr="198.51.100.1") == f"redirect :{port}"
    await backend.sync(state([fenced], {}), frozenset({WEB}))  # no endpoints: allowed clients are refused
    assert trace(backend._rules, "172.31.0.200", "tcp", 80, saddr="203.0.113.9").startswith(
        "meta l4proto tcp reject"
    )
    assert trace(backend._rules, "172.31.0.200", "tcp", 80, saddr="198.51.100.1") == "drop"
