"""The overlay appliers against FakeIp: which processes run when, caching, errors and teardown."""

from __future__ import annotations

import json

import pytest

from kubelite.host.ip import FakeIp
from kubelite.overlay import (
    HostGwOverlay,
    NodeRoute,
    Overlay,
    OverlayError,
    VxlanOverlay,
    make_overlay,
)

N1 = NodeRoute("n1", "172.31.0.11", "10.244.1.0/24")
N2 = NodeRoute("n2", "172.31.0.12", "10.244.2.0/24")
N3 = NodeRoute("n3", "172.31.0.13", "10.244.3.0/24")
NS = "node-1"

UPLINK = {"ifname": "eth0", "mtu": 1500, "flags": ["UP"], "linkinfo": {"info_kind": "veth"}}
ADDRESSES = [
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "172.31.0.11", "prefixlen": 24}]},
    {"ifname": "cni0", "addr_info": [{"family": "inet", "local": "10.244.1.1", "prefixlen": 24}]},
]

READS = {
    "-j route show table main proto 77",
    "-j route show table main",
    "-j neigh show dev flannel.1 nud permanent",
    "-j fdb show dev flannel.1",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fakes(links: list[dict[str, object]] | None = None) -> tuple[FakeIp, FakeIp]:
    ip = FakeIp(
        responses={
            "-d -j link show": json.dumps(links if links is not None else [UPLINK]),
            "-j addr show": json.dumps(ADDRESSES),
        }
    )
    return ip, FakeIp()


def runs(*fakes: FakeIp) -> set[str]:
    return {c for f in fakes for call in f.calls if call.kind == "run" for c in call.commands}


def batches(fake: FakeIp) -> list[tuple[str, ...]]:
    return [call.commands for call in fake.calls if call.kind == "batch"]


def test_factory_picks_a_mode() -> None:
    ip, bridge = fakes()
    vxlan = make_overlay("vxlan", N1, uplink="eth0", netns=NS, ip=ip, bridge=bridge)
    hostgw = make_overlay("host-gw", N1, uplink="eth0", netns=NS, ip=ip, bridge=bridge)
    assert isinstance(vxlan, VxlanOverlay)
    assert isinstance(hostgw, HostGwOverlay)
    assert isinstance(vxlan, Overlay)
    assert (vxlan.kind, hostgw.kind) == ("vxlan", "host-gw")
    with pytest.raises(ValueError, match="use 'vxlan' or 'host-gw'"):
        make_overlay("udp", N1, uplink="eth0", netns=NS, ip=ip, bridge=bridge)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a bridge runner"):
        make_overlay("vxlan", N1, uplink="eth0", netns=NS, ip=ip)


async def test_vxlan_setup_creates_the_device() -> None:
    ip, bridge = fakes()
    overlay = make_overlay("vxlan", N1, uplink="eth0", netns=NS, ip=ip, bridge=bridge)
    await overlay.setup()
    assert batches(ip) == [
        (
            "link add flannel.1 mtu 1450 address 0e:6b:ac:1f:00:0b type vxlan id 1 local 172.31.0.11 "
            "dev eth0 dstport 8472 nolearning",
            "addr add 10.244.1.0/32 dev flannel.1",
            "link set dev flannel.1 up",
        )
    ]
    assert {c.netns for c in ip.calls} == {NS}


async def test_sync_reads_once_then_uses_what_it_applied() -> None:
    ip, bridge = fakes()
    clock = Clock()
    overlay = make_overlay(
        "vxlan", N1, uplink="eth0", netns=NS, ip=ip, bridge=bridge, clock=clock, resync_seconds=60
    )
    await overlay.setup()
    ip.calls.clear()

    await overlay.sync([N1, N2, N3])  # first sync: read back, then one batch per binary
    assert runs(ip, bridge) == READS
    assert len(batches(bridge)) == 1
    assert len(batches(ip)) == 1
    assert len(batches(ip)[0]) == 4  # 2 neighbours + 2 routes

    ip.calls.clear()
    bridge.calls.clear()
    await overlay.sync([N3, N1, N2])  # same nodes, other order: no process at all
    assert ip.calls == []
    assert bridge.calls == []

    await overlay.sync([N1, N2])  # n3 left: no read, only the deletions
    assert runs(ip, bridge) == set()
    assert batches(bridge) == [("fdb del 0e:6b:ac:1f:00:0d dev flannel.1 dst 172.31.0.13 self",)]
    assert batches(ip) == [
        (
            "route del 10.244.3.0/24 via 10.244.3.0 dev flannel.1 proto 77",
            "neigh del 10.244.3.0 dev flannel.1",
        )
    ]

    ip.calls.clear()
    bridge.calls.clear()
    clock.now += 61  # periodic resync: the kernel (empty in the fake) is read back and repaired
    await overlay.sync([N1, N2])
    assert runs(ip, bridge) == READS
    assert len(batches(ip)[0]) == 2


async def test_an_error_makes_the_next_sync_read_the_kernel() -> None:
    ip, bridge = fakes()
    failing = {"on": True}
    ip.fail = lambda netns, line: (
        "RTNETLINK answers: File exists" if failing["on"] and "route add" in line else None
    )
    overlay = make_overlay("host-gw", N1, uplink="eth0", netns=NS, ip=ip, bridge=bridge)
    await overlay.setup()
    with pytest.raises(OverlayError) as excinfo:
        await overlay.sync([N2])
    message = str(excinfo.value)
    assert "node n1" in message
    assert "route add 10.244.2.0/24 via 172.31.0.12 dev eth0 proto 77" in message
    assert "File exists" in message
    assert "next sync reads the kernel back" in message

    failing["on"] = False
    ip.calls.clear()
    await overlay.sync([N2])
    assert runs(ip) == {"-j route show table main proto 77", "-j route show table main"}
    assert batches(ip) == [("route add 10.244.2.0/24 via 172.31.0.12 dev eth0 proto 77",)]


async def test_a_bridge_error_names_the_bridge_binary() -> None:
    ip, bridge = fakes()
    bridge.fail = lambda netns, line: (
        "RTNETLINK answers: Operation not supported" if "replace" in line else None
    )
    overlay = make_overlay("vxlan", N1, uplink="eth0", netns=NS, ip=ip, bridge=bridge)
    await overlay.setup()
    with pytest.raises(OverlayError, match="`bridge -n node-1 fdb replace 0e:6b:ac:1f:00:0c"):
        await overlay.sync([N2])


async def test_host_gw_routes_and_segment_check() -> None:
    ip, bridge = fakes()
    overlay = make_overlay("host-gw", N1, uplink="eth0", netns=NS, ip=ip, bridge=bridge)
    await overlay.setup()
    far = NodeRoute("far", "192.168.7.3", "10.244.9.0/24")
    await overlay.sync([N1, N2, far])
    assert batches(ip) == [("route add 10.244.2.0/24 via 172.31.0.12 dev eth0 proto 77",)]
    assert bridge.calls == []
    assert isinstance(overlay, HostGwOverlay)
    assert [s.node for s in overlay.skipped] == ["far"]


async def test_setup_errors_are_sentences() -> None:
    ip, bridge = fakes(links=[])
    with pytest.raises(OverlayError, match="the uplink eth0 does not exist in network namespace node-1"):
        await make_overlay("vxlan", N1, uplink="eth0", netns=NS, ip=ip, bridge=bridge).setup()
    with pytest.raises(OverlayError, match="uplink eth9 does not exist"):
        await make_overlay("host-gw", N1, uplink="eth9", netns=NS, ip=ip, bridge=bridge).setup()
    with pytest.raises(OverlayError, match=r"call setup\(\) before sync\(\)"):
        await make_overlay("vxlan", N1, uplink="eth0", netns=NS, ip=ip, bridge=bridge).sync([N2])


async def test_teardown_deletes_our_routes_and_the_device() -> None:
    device = {
        "ifname": "flannel.1",
        "mtu": 1450,
        "address": "0e:6b:ac:1f:00:0b",
        "flags": ["UP"],
        "linkinfo": {
            "info_kind": "vxlan",
            "info_data": {"id": 1, "local": "172.31.0.11", "link": "eth0", "port": 8472, "learning": False},
        },
    }
    ip, bridge = fakes(links=[UPLINK, device])
    ip.responses["-j route show table main proto 77"] = json.dumps(
        [{"dst": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "flannel.1", "flags": ["onlink"]}]
    )
    overlay = make_overlay("vxlan", N1, uplink="eth0", netns=NS, ip=ip, bridge=bridge)
    await overlay.teardown()
    assert batches(ip) == [
        ("route del 10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto 77", "link del flannel.1")
    ]
    assert bridge.calls == []

    ip, bridge = fakes()  # no device, no routes: nothing to do
    await make_overlay("vxlan", N1, uplink="eth0", netns=NS, ip=ip, bridge=bridge).teardown()
    assert batches(ip) == []
