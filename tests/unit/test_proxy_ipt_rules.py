"""The iptables back end's rules, walked by the tracer: every proxy feature, without root."""

from __future__ import annotations

import dataclasses
import shlex

import pytest

from kubelite.proxy.iptables.rules import JUMPS, RuleOptions, Ruleset, build_rules, cleanup_rules
from kubelite.proxy.iptables.tracer import Outcome, Packet, Tracer
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName, chain_suffix

NODE = "172.31.0.11"
OTHER_NODE = "172.31.0.12"
CLIENT = "172.31.0.50"  # outside the cluster, on the node network
POD_HERE = "10.244.1.7"  # a client pod on this node
POD_THERE = "10.244.2.7"  # a client pod on another node
SPN = ServicePortName("default", "web", "http")
CIP = "10.96.0.20"


def port(spn: ServicePortName = SPN, **kw: object) -> ServicePort:
    fields: dict[str, object] = {
        "name": spn,
        "cluster_ips": (CIP,),
        "port": 80,
        "protocol": spn.protocol,
        "target_port": 8080,
    }
    fields.update(kw)
    return ServicePort(**fields)  # type: ignore[arg-type]


def eps(*specs: str) -> tuple[Endpoint, ...]:
    """``"10.244.1.2"`` (local, node 1) / ``"10.244.2.2"`` (remote); suffix ``!`` = not ready."""
    out = []
    for s in specs:
        ip = s.rstrip("!")
        ready = not s.endswith("!")
        local = ip.startswith("10.244.1.")
        out.append(
            Endpoint(
                ip, 8080, ready=ready, serving=True, terminating=not ready, node_name="n", is_local=local
            )
        )
    return tuple(out)


def state(
    *pairs: tuple[ServicePort, tuple[Endpoint, ...]], node_ips: tuple[str, ...] = (NODE,)
) -> ProxyState:
    return ProxyState(
        services={sp.name: sp for sp, _ in pairs},
        endpoints={sp.name: e for sp, e in pairs if e},
        node_ips=node_ips,
    )


def tracer_for(*texts: str, local: tuple[str, ...] = (NODE,)) -> Tracer:
    tr = Tracer(local_ips=local)
    tr.load_jumps((j.table, j.line()) for j in JUMPS)
    for text in texts:
        tr.load(text)
    return tr


def trace(st: ProxyState, pkt: Packet) -> list[Outcome]:
    return tracer_for(build_rules(st).text).trace(pkt)


def only(outcomes: list[Outcome]) -> Outcome:
    assert len(outcomes) == 1, outcomes
    return outcomes[0]


THREE = eps("10.244.1.2", "10.244.2.2", "10.244.2.3")


def test_cluster_ip_spreads_evenly_and_keeps_pod_source() -> None:
    outs = trace(state((port(), THREE)), Packet(POD_THERE, CIP, 80))
    assert sorted(o.dnat for o in outs) == ["10.244.1.2:8080", "10.244.2.2:8080", "10.244.2.3:8080"]
    assert all(o.probability == pytest.approx(1 / 3) for o in outs)
    assert not any(o.masquerade for o in outs)
    assert all(o.verdict == "ACCEPT" for o in outs)


def test_chain_names_and_probabilities_follow_kube_proxy() -> None:
    text = build_rules(state((port(), THREE))).text
    h = chain_suffix(SPN)
    assert f":KUBE-SVC-{h} - [0:0]" in text
    assert "--probability 0.3333333333" in text and "--probability 0.5000000000" in text
    sep = "KUBE-SEP-" + chain_suffix(SPN, "10.244.2.3:8080")
    assert f"-j {sep}" in text
    assert "-j MARK --or-mark 0x4000" in text
    assert "-j MASQUERADE --random-fully" in text
    assert f"-A {sep} " in text and "DNAT --to-destination 10.244.2.3:8080" in text


def test_wrong_port_or_protocol_is_not_touched() -> None:
    st = state((port(), THREE))
    assert only(trace(st, Packet(POD_THERE, CIP, 81))).dnat is None
    assert only(trace(st, Packet(POD_THERE, CIP, 80, "UDP"))).dnat is None


def test_cluster_ip_from_outside_pod_cidr_is_masqueraded() -> None:
    outs = trace(state((port(), THREE)), Packet(NODE, CIP, 80, hook="output"))
    assert len(outs) == 3 and all(o.masquerade for o in outs)


def test_hairpin_pod_reaching_itself_is_masqueraded() -> None:
    st = state((port(), eps("10.244.1.2")))
    out = only(trace(st, Packet("10.244.1.2", CIP, 80, iif="cni0")))
    assert out.dnat == "10.244.1.2:8080" and out.masquerade


def test_same_bridge_pod_to_local_endpoint_is_masqueraded_but_remote_is_not() -> None:
    st = state((port(), eps("10.244.1.2")))
    assert only(trace(st, Packet(POD_HERE, CIP, 80, iif="cni0"))).masquerade
    assert not only(trace(st, Packet(POD_THERE, CIP, 80, iif="eth0"))).masquerade
    plain = build_rules(st, options=RuleOptions(pod_bridge=None)).text
    assert not only(tracer_for(plain).trace(Packet(POD_HERE, CIP, 80, iif="cni0"))).masquerade


def test_node_port_on_every_node_ip_masqueraded_even_without_local_endpoint() -> None:
    st = state((port(node_port=30080), eps("10.244.2.2")), node_ips=(NODE, "192.168.9.1"))
    for ip in (NODE, "192.168.9.1"):
        out = only(
            tracer_for(build_rules(st).text, local=(NODE, "192.168.9.1")).trace(Packet(CLIENT, ip, 30080))
        )
        assert out.dnat == "10.244.2.2:8080" and out.masquerade and out.verdict == "ACCEPT"
    # An address that is not one of the node IPs does not answer on the node port.
    assert only(trace(st, Packet(CLIENT, "172.31.0.99", 30080))).dnat is None


def test_node_port_without_node_ips_uses_local_addresses() -> None:
    st = state((port(node_port=30080), eps("10.244.2.2")), node_ips=())
    out = only(trace(st, Packet(CLIENT, NODE, 30080)))
    assert out.dnat == "10.244.2.2:8080" and out.masquerade


def test_node_port_from_the_node_itself() -> None:
    st = state((port(node_port=30080), eps("10.244.2.2")))
    out = only(trace(st, Packet(NODE, NODE, 30080, hook="output")))
    assert out.dnat == "10.244.2.2:8080" and out.masquerade


@pytest.mark.parametrize("field", ["external_ips", "load_balancer_ips"])
def test_external_and_load_balancer_ips(field: str) -> None:
    st = state((port(**{field: ("192.168.50.7",)}), eps("10.244.2.2")))
    out = only(trace(st, Packet(CLIENT, "192.168.50.7", 80)))
    assert out.dnat == "10.244.2.2:8080" and out.masquerade
    assert only(trace(st, Packet(CLIENT, "192.168.50.7", 81))).dnat is None


def test_external_traffic_policy_local_keeps_source_and_uses_local_endpoints() -> None:
    sp = port(node_port=30080, external_ips=("192.168.50.7",), external_local=True)
    st = state((sp, eps("10.244.1.2", "10.244.2.2")))
    for dst, p in ((NODE, 30080), ("192.168.50.7", 80)):
        out = only(trace(st, Packet(CLIENT, dst, p)))
        assert out.dnat == "10.244.1.2:8080" and not out.masquerade
    # Pods still use every endpoint (cluster policy), from the node itself it is masqueraded.
    pods = trace(st, Packet(POD_THERE, "192.168.50.7", 80))
    assert {o.dnat for o in pods} == {"10.244.1.2:8080", "10.244.2.2:8080"}
    node = trace(st, Packet(NODE, NODE, 30080, hook="output"))
    assert len(node) == 2 and all(o.masquerade for o in node)
    # The cluster IP keeps the cluster policy.
    assert len(trace(st, Packet(POD_THERE, CIP, 80))) == 2


def test_external_traffic_policy_local_without_local_endpoint_drops() -> None:
    sp = port(node_port=30080, load_balancer_ips=("192.168.50.8",), external_local=True)
    st = state((sp, eps("10.244.2.2")))
    assert only(trace(st, Packet(CLIENT, NODE, 30080))).verdict == "DROP"
    assert only(trace(st, Packet(CLIENT, "192.168.50.8", 80))).verdict == "DROP"
    assert only(trace(st, Packet(POD_THERE, CIP, 80))).dnat == "10.244.2.2:8080"


def test_internal_traffic_policy_local() -> None:
    sp = port(internal_local=True)
    outs = trace(state((sp, eps("10.244.1.2", "10.244.2.2"))), Packet(POD_HERE, CIP, 80, iif="cni0"))
    assert only(outs).dnat == "10.244.1.2:8080"
    assert only(trace(state((sp, eps("10.244.2.2"))), Packet(POD_HERE, CIP, 80))).verdict == "DROP"


def test_no_endpoints_rejects_cluster_node_port_and_external() -> None:
    sp = port(node_port=30080, external_ips=("192.168.50.7",), load_balancer_ips=("192.168.50.8",))
    st = state((sp, ()))
    assert only(trace(st, Packet(POD_THERE, CIP, 80))).verdict == "REJECT"
    assert only(trace(st, Packet(NODE, CIP, 80, hook="output"))).verdict == "REJECT"
    assert only(trace(st, Packet(CLIENT, NODE, 30080))).verdict == "REJECT"
    assert only(trace(st, Packet(CLIENT, "192.168.50.7", 80))).verdict == "REJECT"
    assert only(trace(st, Packet(CLIENT, "192.168.50.8", 80))).verdict == "REJECT"
    assert "KUBE-SVC-" not in build_rules(st).text


def test_terminating_endpoints_only_when_nothing_else_is_left() -> None:
    st = state((port(), eps("10.244.2.2", "10.244.2.3!")))
    assert only(trace(st, Packet(POD_THERE, CIP, 80))).dnat == "10.244.2.2:8080"
    st = state((port(), eps("10.244.2.3!")))
    assert only(trace(st, Packet(POD_THERE, CIP, 80))).dnat == "10.244.2.3:8080"


def test_session_affinity_sticks_to_the_first_choice() -> None:
    st = state((port(affinity_seconds=600), THREE))
    text = build_rules(st).text
    assert "--rcheck --seconds 600 --reap" in text and "--rsource --set" in text
    tr = tracer_for(text)
    pkt = Packet(POD_THERE, CIP, 80)
    first = tr.trace(pkt)
    assert len(first) == 3
    chosen = first[1]
    tr.remember(pkt, chosen)
    again = only(tr.trace(pkt))
    assert again.dnat == chosen.dnat
    # Another client is not affected.
    assert len(tr.trace(Packet(POD_HERE, CIP, 80))) == 3


def test_same_port_tcp_and_udp_are_separate() -> None:
    tcp, udp = SPN, dataclasses.replace(SPN, protocol="UDP")
    st = state((port(tcp), eps("10.244.2.2")), (port(udp), eps("10.244.2.3")))
    assert only(trace(st, Packet(POD_THERE, CIP, 80, "TCP"))).dnat == "10.244.2.2:8080"
    assert only(trace(st, Packet(POD_THERE, CIP, 80, "UDP"))).dnat == "10.244.2.3:8080"
    st2 = state((port(tcp), eps("10.244.2.2")))
    assert only(trace(st2, Packet(POD_THERE, CIP, 80, "UDP"))).dnat is None


def test_sctp() -> None:
    sctp = dataclasses.replace(SPN, protocol="SCTP")
    st = state((port(sctp), eps("10.244.2.2")))
    assert "-p sctp -m sctp --dport 80" in build_rules(st).text
    assert only(trace(st, Packet(POD_THERE, CIP, 80, "SCTP"))).dnat == "10.244.2.2:8080"


def _declared(rs: Ruleset) -> set[str]:
    return {line[1:].split()[0] for line in rs.text.splitlines() if line.startswith(":KUBE-S")}


def test_partial_sync_rewrites_only_changed_chains_and_deletes_stale_ones() -> None:
    other = ServicePortName("default", "db", "")
    full_state = state((port(), THREE), (port(other, cluster_ips=("10.96.0.30",)), eps("10.244.2.9")))
    full = build_rules(full_state)
    assert full.rewritten == full.nat_chains
    # web loses an endpoint; db is untouched.
    new_state = state((port(), THREE[:2]), (port(other, cluster_ips=("10.96.0.30",)), eps("10.244.2.9")))
    part = build_rules(new_state, changed=frozenset({SPN}), existing=full.nat_chains)
    db_chains = {c for c in full.nat_chains if chain_suffix(other) in c or "10.244.2.9" in c}
    gone = "KUBE-SEP-" + chain_suffix(SPN, "10.244.2.3:8080")
    assert part.deleted == {gone}
    assert f"-X {gone}" in part.text
    assert not part.rewritten & {"KUBE-SVC-" + chain_suffix(other)}
    assert db_chains.isdisjoint(part.rewritten)
    assert "KUBE-SVC-" + chain_suffix(SPN) in part.rewritten
    # KUBE-SERVICES is always rewritten whole, so db stays reachable.
    tr = tracer_for(full.text, part.text)
    assert only(tr.trace(Packet(POD_THERE, "10.96.0.30", 80))).dnat == "10.244.2.9:8080"
    assert {o.dnat for o in tr.trace(Packet(POD_THERE, CIP, 80))} == {"10.244.1.2:8080", "10.244.2.2:8080"}
    assert gone not in tr.tables["nat"]
    # The partial result walks exactly like a full rewrite of the new state.
    fresh = tracer_for(build_rules(new_state).text)
    for pkt in (Packet(POD_THERE, CIP, 80), Packet(POD_THERE, "10.96.0.30", 80)):
        assert tr.trace(pkt) == fresh.trace(pkt)


def test_removed_service_chains_are_deleted() -> None:
    full = build_rules(state((port(), THREE)))
    empty = build_rules(state(), changed=frozenset({SPN}), existing=full.nat_chains)
    assert empty.deleted == full.nat_chains
    assert only(tracer_for(full.text, empty.text).trace(Packet(POD_THERE, CIP, 80))).dnat is None


def test_restore_input_is_well_formed() -> None:
    text = build_rules(state((port(node_port=30080, affinity_seconds=60), THREE))).text
    assert text.startswith("*filter\n") and text.count("COMMIT") == 2 and "\n*nat\n" in text
    for line in text.splitlines():
        shlex.split(line)  # balanced quotes
    cleanup = cleanup_rules(build_rules(state((port(), THREE))).nat_chains)
    assert "-X KUBE-SERVICES" in cleanup and "-X KUBE-POSTROUTING" in cleanup
    assert cleanup.count("-X KUBE-SEP-") == 3


def test_tracer_rejects_rules_it_does_not_understand() -> None:
    tr = Tracer()
    with pytest.raises(ValueError, match="does not understand"):
        tr.load("*nat\n:X - [0:0]\n-A X --weird 1 -j ACCEPT\nCOMMIT\n")


def test_load_balancer_source_ranges_mark_other_clients_for_drop() -> None:
    sp = port(node_port=30080, load_balancer_ips=("192.0.2.50",), source_ranges=("203.0.113.0/28",))
    st = state((sp, eps("10.244.2.2")))
    [allowed] = trace(st, Packet("203.0.113.9", "192.0.2.50", 80))
    assert (allowed.verdict, allowed.dnat) == ("ACCEPT", "10.244.2.2:8080")
    [denied] = trace(st, Packet(CLIENT, "192.0.2.50", 80))
    assert denied.verdict == "DROP" and f"KUBE-FW-{chain_suffix(SPN)}" in denied.chains
    # The ClusterIP and the node port are not fenced.
    assert trace(st, Packet(CLIENT, CIP, 80))[0].dnat == "10.244.2.2:8080"
    assert trace(st, Packet(CLIENT, NODE, 30080))[0].dnat == "10.244.2.2:8080"
