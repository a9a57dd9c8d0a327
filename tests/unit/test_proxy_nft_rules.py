"""The nftables proxy rules, walked by the packet tracer: every Service feature without root."""

from __future__ import annotations

import dataclasses

import pytest

from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName
from kubelite.proxy.nftables.rules import (
    all_service_rules,
    count_refs,
    delete_ruleset,
    full_ruleset,
    partial_ruleset,
    service_rules,
)
from kubelite.proxy.nftables.tracer import Packet, Tracer

NODE = "172.31.0.11"
OUTSIDE = "172.31.0.100"
POD = "10.244.1.9"
LOCAL1, LOCAL2, REMOTE = "10.244.1.5", "10.244.1.6", "10.244.2.5"


def port(name: str = "web", vip: str = "10.96.0.10", proto: str = "TCP", **kw: object) -> ServicePort:
    spn = ServicePortName("default", name, "", proto)
    return dataclasses.replace(ServicePort(spn, (vip,), 80, proto, 8080), **kw)  # type: ignore[arg-type]


def eps(*ips: str, ready: bool = True, terminating: bool = False) -> tuple[Endpoint, ...]:
    return tuple(
        Endpoint(ip, 8080, ready=ready, terminating=terminating, is_local=ip.startswith("10.244.1."))
        for ip in ips
    )


def state(*pairs: tuple[ServicePort, tuple[Endpoint, ...]]) -> ProxyState:
    return ProxyState(
        services={sp.name: sp for sp, _ in pairs},
        endpoints={sp.name: e for sp, e in pairs},
        node_ips=(NODE,),
    )


def tracer(*pairs: tuple[ServicePort, tuple[Endpoint, ...]]) -> Tracer:
    return Tracer(full_ruleset(state(*pairs)))


def all_dnat(t: Tracer, packet: Packet, n: int = 3) -> set[str | None]:
    return {t.trace(packet, pick).dnat for pick in range(n)}


def test_cluster_ip_from_a_pod_picks_every_endpoint_without_masquerade() -> None:
    t = tracer((port(), eps(LOCAL1, LOCAL2, REMOTE)))
    packet = Packet(POD, "10.96.0.10", 80)
    assert all_dnat(t, packet) == {f"{ip}:8080" for ip in (LOCAL1, LOCAL2, REMOTE)}
    assert not t.trace(packet).masquerade
    assert t.trace(Packet(POD, "10.96.0.10", 81)).dnat is None


def test_cluster_ip_from_outside_the_pod_cidr_and_from_the_node_is_masqueraded() -> None:
    t = tracer((port(), eps(REMOTE)))
    assert t.trace(Packet(OUTSIDE, "10.96.0.10", 80)).masquerade
    out = t.trace(Packet(NODE, "10.96.0.10", 80, hook="output"))
    assert out.dnat == f"{REMOTE}:8080" and out.masquerade


def test_hairpin_is_masqueraded() -> None:
    t = tracer((port(), eps(LOCAL1)))
    assert t.trace(Packet(LOCAL1, "10.96.0.10", 80)).masquerade
    assert not t.trace(Packet(LOCAL2, "10.96.0.10", 80)).masquerade


def test_nodeport_external_and_load_balancer_ips_with_cluster_policy() -> None:
    sp = port(node_port=30080, external_ips=("192.0.2.7",), load_balancer_ips=("192.0.2.50",))
    t = tracer((sp, eps(LOCAL1, REMOTE)))
    for dst, dport in ((NODE, 30080), ("192.0.2.7", 80), ("192.0.2.50", 80)):
        trace = t.trace(Packet(OUTSIDE, dst, dport))
        assert trace.masquerade and trace.dnat in {f"{LOCAL1}:8080", f"{REMOTE}:8080"}
        assert all_dnat(t, Packet(OUTSIDE, dst, dport), 2) == {f"{LOCAL1}:8080", f"{REMOTE}:8080"}
    assert t.trace(Packet(OUTSIDE, "172.31.0.12", 30080)).dnat is None  # not this node's address
    assert t.trace(Packet(NODE, NODE, 30080, hook="output")).dnat is not None


def test_nodeport_on_a_node_without_local_endpoints() -> None:
    t = tracer((port(node_port=30080), eps(REMOTE)))
    assert t.trace(Packet(OUTSIDE, NODE, 30080)).dnat == f"{REMOTE}:8080"


def test_external_policy_local_keeps_the_source_and_uses_local_endpoints_only() -> None:
    sp = port(node_port=30080, external_local=True)
    t = tracer((sp, eps(LOCAL1, REMOTE)))
    trace = t.trace(Packet(OUTSIDE, NODE, 30080))
    assert trace.dnat == f"{LOCAL1}:8080" and not trace.masquerade
    assert all_dnat(t, Packet(OUTSIDE, NODE, 30080), 2) == {f"{LOCAL1}:8080"}
    # Pods still reach every endpoint (the cluster path).
    assert all_dnat(t, Packet(POD, NODE, 30080), 2) == {f"{LOCAL1}:8080", f"{REMOTE}:8080"}
    remote_only = tracer((sp, eps(REMOTE)))
    assert remote_only.trace(Packet(OUTSIDE, NODE, 30080)).verdict == "drop"


def test_internal_policy_local() -> None:
    t = tracer((port(internal_local=True), eps(LOCAL1, REMOTE)))
    assert all_dnat(t, Packet(POD, "10.96.0.10", 80), 2) == {f"{LOCAL1}:8080"}
    none_local = tracer((port(internal_local=True), eps(REMOTE)))
    assert none_local.trace(Packet(POD, "10.96.0.10", 80)).verdict == "drop"


def test_no_endpoints_rejects_and_unallocated_service_ips_are_rejected() -> None:
    sp = port(node_port=30080, external_ips=("192.0.2.7",))
    t = tracer((sp, ()))
    assert t.trace(Packet(POD, "10.96.0.10", 80)).verdict == "reject"
    assert t.trace(Packet(OUTSIDE, NODE, 30080)).verdict == "reject"
    assert t.trace(Packet(OUTSIDE, "192.0.2.7", 80)).verdict == "reject"
    assert t.trace(Packet(POD, "10.96.0.99", 80)).verdict == "reject"
    assert t.trace(Packet(POD, "10.245.0.1", 80)).verdict == "accept"


def test_terminating_endpoints_serve_only_when_nothing_else_is_left() -> None:
    t = tracer((port(), eps(REMOTE, ready=False, terminating=True)))
    assert t.trace(Packet(POD, "10.96.0.10", 80)).dnat == f"{REMOTE}:8080"
    mixed = (*eps(LOCAL1), *eps(REMOTE, ready=False, terminating=True))
    assert all_dnat(tracer((port(), mixed)), Packet(POD, "10.96.0.10", 80), 2) == {f"{LOCAL1}:8080"}


def test_tcp_and_udp_on_the_same_port_are_separate() -> None:
    tcp, udp = port(), port(proto="UDP")
    t = tracer((tcp, eps(LOCAL1)), (udp, eps(REMOTE)))
    assert t.trace(Packet(POD, "10.96.0.10", 80)).dnat == f"{LOCAL1}:8080"
    assert t.trace(Packet(POD, "10.96.0.10", 80, "UDP")).dnat == f"{REMOTE}:8080"
    only_tcp = tracer((tcp, eps(LOCAL1)))
    assert only_tcp.trace(Packet(POD, "10.96.0.10", 80, "UDP")).verdict == "reject"


def test_client_ip_affinity_sticks_to_the_first_choice() -> None:
    sp = port(affinity_seconds=30, node_port=30080)
    t = tracer((sp, eps(LOCAL1, LOCAL2, REMOTE)))
    first = t.trace(Packet(POD, "10.96.0.10", 80), pick=2).dnat
    assert first == f"{REMOTE}:8080"
    assert {t.trace(Packet(POD, "10.96.0.10", 80), pick=k).dnat for k in range(3)} == {first}
    fresh = {t.trace(Packet(f"10.244.3.{k}", "10.96.0.10", 80), pick=k).dnat for k in range(3)}
    assert fresh == {f"{ip}:8080" for ip in (LOCAL1, LOCAL2, REMOTE)}
    assert "timeout 30s" in full_ruleset(state((sp, eps(LOCAL1))))


def test_output_priority_is_numeric_and_one_table() -> None:
    text = full_ruleset(state((port(), eps(LOCAL1))))
    assert "type nat hook output priority -100;" in text
    assert "dstnat" not in text and "srcnat" not in text
    assert text.startswith("add table ip kubelite-proxy\ndelete table ip kubelite-proxy\n")
    assert "__map" not in text and " map {" not in text  # no anonymous sets
    assert delete_ruleset().startswith("add table ip kubelite-proxy\ndelete table ip kubelite-proxy\n")
    assert "delete table ip kubelite-proxy-keep" in delete_ruleset()
    assert text.rstrip().splitlines()[-1].startswith("table ip kubelite-proxy-keep { chain prerouting {")


@pytest.mark.parametrize("affinity", [0, 60])
def test_partial_sync_equals_full_sync(affinity: int) -> None:
    a = port("a", "10.96.0.1", affinity_seconds=affinity, node_port=30001)
    b = port("b", "10.96.0.2", affinity_seconds=affinity)
    c = port("c", "10.96.0.3", affinity_seconds=affinity, external_ips=("192.0.2.9",))
    d = port("d", "10.96.0.4", affinity_seconds=affinity, node_port=30004, external_local=True)
    old_state = state((a, eps(LOCAL1, REMOTE)), (b, eps(LOCAL2)), (d, eps(LOCAL1, REMOTE)))
    new_state = state((a, eps(REMOTE)), (c, eps(LOCAL1)), (d, eps(LOCAL2, REMOTE)))
    old, new = all_service_rules(old_state), all_service_rules(new_state)
    refs = count_refs(old.values())
    text = partial_ruleset(old, new, {a.name, b.name, c.name, d.name}, refs)
    assert refs == count_refs(new.values())
    assert "delete element" in text and ("svc-" in text) == bool(affinity)
    incremental = Tracer(full_ruleset(old_state))
    incremental.apply(text)
    full = Tracer(full_ruleset(new_state))
    assert incremental.maps == full.maps and incremental.sets == full.sets
    assert incremental.chains.keys() == full.chains.keys()
    assert all(incremental.chains[c] == full.chains[c] for c in full.chains)


def test_partial_sync_drops_pickers_nobody_uses_and_keeps_shared_ones() -> None:
    a, b = port("a", "10.96.0.1"), port("b", "10.96.0.2")
    old_state = state((a, eps(LOCAL1, REMOTE)), (b, eps(LOCAL2, REMOTE)))
    one_left = state((a, eps(LOCAL1)), (b, eps(LOCAL2, REMOTE)))
    old, new = all_service_rules(old_state), all_service_rules(one_left)
    refs = count_refs(old.values())
    text = partial_ruleset(old, new, {a.name}, refs)
    assert "add chain ip kubelite-proxy cluster-tcp-1" in text and "delete chain" not in text
    both_one = state((a, eps(LOCAL1)), (b, eps(REMOTE)))
    text = partial_ruleset(new, all_service_rules(both_one), {b.name}, refs)
    assert "delete chain ip kubelite-proxy cluster-tcp-2" in text and "add chain" not in text
    assert refs.hairpin == {LOCAL1: 1, REMOTE: 1}


def test_partial_sync_of_nothing_is_empty() -> None:
    s = state((port(), eps(LOCAL1)))
    rules = all_service_rules(s)
    assert partial_ruleset(rules, rules, set(rules), count_refs(rules.values())) == ""


def test_a_service_port_without_affinity_has_no_chain_of_its_own() -> None:
    sr = service_rules(port(node_port=30080), eps(LOCAL1, LOCAL2, REMOTE), "10.244.0.0/16")
    assert not sr.chains and not sr.sets
    assert set(sr.shared) == {"cluster-tcp-3", "nodeport-tcp-3"}
    assert sr.elements["cluster-tcp-endpoints"]["10.96.0.10 . 80 . 2"] == f"{REMOTE} . 8080"
    many = state(*((port(f"s{i}", f"10.96.0.{i}"), eps(LOCAL1, REMOTE)) for i in range(1, 50)))
    text = full_ruleset(many)
    assert text.count("\nchain ") == 11  # reject, one picker, nine fixed chains: not one per service


def test_load_balancer_source_ranges_drop_other_clients_before_dnat() -> None:
    sp = port(
        node_port=30080,
        load_balancer_ips=("192.0.2.50",),
        source_ranges=("203.0.113.0/28", "198.51.100.0/24"),
    )
    t = tracer((sp, eps(REMOTE)))
    for allowed in ("203.0.113.9", "198.51.100.200"):
        assert t.trace(Packet(allowed, "192.0.2.50", 80)).dnat == f"{REMOTE}:8080"
    denied = t.trace(Packet(OUTSIDE, "192.0.2.50", 80))
    assert denied.verdict == "drop" and denied.chains[0] == "firewall-prerouting"
    assert t.trace(Packet(NODE, "192.0.2.50", 80, hook="output")).verdict == "drop"
    # Only the LoadBalancer IP is fenced: the ClusterIP and the node port still answer everyone.
    assert t.trace(Packet(OUTSIDE, "10.96.0.10", 80)).dnat == f"{REMOTE}:8080"
    assert t.trace(Packet(OUTSIDE, NODE, 30080)).dnat == f"{REMOTE}:8080"
    assert service_rules(port(source_ranges=("10.0.0.0/8",)), eps(REMOTE), "10.244.0.0/16").chains == {}
