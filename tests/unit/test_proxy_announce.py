"""LoadBalancer IP announcement: the election every node computes alike, and the ARP frames."""

from __future__ import annotations

from kubelite.host.arp import FakeArpResponder, build_arp, gratuitous, parse_arp, reply_for
from kubelite.proxy.announce import L2Announcer, announced_by, announcer_of, ready_node_names
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName

NODES = frozenset({"n1", "n2", "n3"})
LB = ServicePortName("default", "lb", "")


def state(ips: tuple[str, ...], *, local: bool = False, endpoint_nodes: tuple[str, ...] = ()) -> ProxyState:
    sp = ServicePort(LB, ("10.96.0.9",), 80, "TCP", 80, load_balancer_ips=ips, external_local=local)
    eps = tuple(Endpoint(f"10.244.{i}.5", 80, node_name=n) for i, n in enumerate(endpoint_nodes))
    return ProxyState({LB: sp}, {LB: eps})


def test_exactly_one_node_announces_each_address_and_all_agree() -> None:
    ips = tuple(f"172.30.0.{200 + i}" for i in range(20))
    s = state(ips)
    per_node = {n: announced_by(n, s, NODES) for n in NODES}
    assert sorted(ip for got in per_node.values() for ip in got) == sorted(ips)
    assert all(per_node.values())  # 20 addresses spread over 3 nodes: each gets some
    # A node that leaves hands only its own addresses over, each to one survivor.
    winner = announcer_of(ips[0], NODES)
    assert winner is not None
    survivors = NODES - {winner}
    moved = {n: announced_by(n, s, survivors) for n in survivors}
    assert sorted(ip for got in moved.values() for ip in got) == sorted(ips)
    assert all(per_node[n] <= moved[n] for n in survivors)


def test_local_policy_announces_only_from_ready_nodes_with_an_endpoint() -> None:
    s = state(("172.30.0.200",), local=True, endpoint_nodes=("n2",))
    assert [n for n in NODES if announced_by(n, s, NODES)] == ["n2"]
    assert not any(announced_by(n, s, NODES - {"n2"}) for n in NODES)  # n2 not Ready: nobody answers
    assert not any(announced_by(n, state(("172.30.0.200",), local=True), NODES) for n in NODES)


def test_ready_node_names() -> None:
    def node(name: str, status: str) -> dict[str, object]:
        return {"metadata": {"name": name}, "status": {"conditions": [{"type": "Ready", "status": status}]}}

    assert ready_node_names([node("a", "True"), node("b", "False"), {"metadata": {"name": "c"}}]) == {"a"}


async def test_announcer_follows_state_and_readiness() -> None:
    responder = FakeArpResponder()
    mine = L2Announcer("n1", responder)
    ip = next(f"172.30.0.{i}" for i in range(200, 255) if announcer_of(f"172.30.0.{i}", NODES) == "n1")
    await mine.update(state=state((ip,)), ready_nodes=NODES)
    assert responder.addresses == {ip}
    await mine.update(ready_nodes=frozenset({"n2", "n3"}))  # n1 is not Ready any more
    assert responder.addresses == set()
    await mine.update(state=state(()), ready_nodes=NODES)
    assert responder.history == [frozenset({ip}), frozenset()]


def test_arp_frames() -> None:
    mac, peer = bytes.fromhex("02aabbccdd01"), bytes.fromhex("02aabbccdd02")
    request = parse_arp(build_arp(1, peer, "172.30.0.1", b"\0" * 6, "172.30.0.200"))
    assert request is not None and request.target_ip == "172.30.0.200" and request.sender_mac == peer
    reply = reply_for(request, mac, frozenset({"172.30.0.200"}))
    assert reply is not None and reply[:6] == peer  # unicast back to the asker
    parsed = parse_arp(reply)
    assert parsed is not None and (parsed.op, parsed.sender_mac, parsed.sender_ip) == (2, mac, "172.30.0.200")
    assert (parsed.target_mac, parsed.target_ip) == (peer, "172.30.0.1")
    assert reply_for(request, mac, frozenset({"172.30.0.201"})) is None
    garp = parse_arp(gratuitous(mac, "172.30.0.200"))
    assert garp is not None and garp.sender_ip == garp.target_ip == "172.30.0.200"
    assert parse_arp(b"\xff" * 12 + b"\x08\x00" + b"\0" * 28) is None  # IPv4, not ARP
