"""kubelite.overlay.diff: parsing ``ip -j``/``bridge -j`` output and desired vs observed -> batch lines."""

from __future__ import annotations

from kubelite.overlay.diff import (
    device_lines,
    foreign_destinations,
    parse_fdb,
    parse_neighbours,
    parse_routes,
    plan_changes,
)
from kubelite.overlay.model import (
    FdbEntry,
    KernelState,
    Neighbour,
    NodeRoute,
    Route,
    desired_host_gw,
    desired_vxlan,
    vxlan_device,
)

N1 = NodeRoute("n1", "172.31.0.11", "10.244.1.0/24")
N2 = NodeRoute("n2", "172.31.0.12", "10.244.2.0/24")
N3 = NodeRoute("n3", "172.31.0.13", "10.244.3.0/24")

# Captured from iproute2 6.1 in a lab namespace.
OWNED_ROUTES = [
    {"dst": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "flannel.1", "flags": ["onlink"]},
    {"dst": "10.244.3.0/24", "gateway": "172.31.0.13", "dev": "eth0", "flags": []},
]
MAIN_TABLE = [
    {
        "dst": "10.244.2.0/24",
        "gateway": "10.244.2.0",
        "dev": "flannel.1",
        "protocol": "77",
        "flags": ["onlink"],
    },
    {"dst": "10.244.3.0/24", "gateway": "172.31.0.13", "dev": "eth0", "protocol": "77", "flags": []},
    {"dst": "172.31.0.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link", "prefsrc": "172.31.0.11"},
    {"dst": "10.244.1.0/24", "dev": "cni0", "protocol": "kernel", "scope": "link", "prefsrc": "10.244.1.1"},
    {"dst": "10.244.9.0/24", "gateway": "172.31.0.99", "dev": "eth0", "protocol": "static", "flags": []},
]
NEIGHBOURS = [
    {"dst": "10.244.2.0", "lladdr": "0e:6b:ac:1f:00:0c", "state": ["PERMANENT"]},
    {"dst": "10.244.4.0", "state": ["FAILED"]},
]
FDB = [
    {"mac": "0e:6b:ac:1f:00:0c", "dst": "172.31.0.12", "flags": ["self"], "state": "permanent"},
    {"mac": "00:00:00:00:00:00", "dst": "239.1.1.1", "flags": ["self"], "state": "permanent"},
]


def test_parse_observed_state() -> None:
    assert parse_routes(OWNED_ROUTES) == {
        Route("10.244.2.0/24", "10.244.2.0", "flannel.1", onlink=True),
        Route("10.244.3.0/24", "172.31.0.13", "eth0"),
    }
    assert parse_routes(
        [{"type": "unreachable", "dst": "10.9.0.0/16"}, {"dst": "10.0.0.5", "gateway": "x"}]
    ) == {Route("10.0.0.5/32", "", None)}
    assert parse_neighbours(NEIGHBOURS, "flannel.1") == {
        Neighbour("10.244.2.0", "0e:6b:ac:1f:00:0c", "flannel.1")
    }
    assert parse_fdb(FDB, "flannel.1") == {FdbEntry("0e:6b:ac:1f:00:0c", "172.31.0.12", "flannel.1")}
    assert foreign_destinations(MAIN_TABLE, OWNED_ROUTES) == {
        "172.31.0.0/24",
        "10.244.1.0/24",
        "10.244.9.0/24",
    }


def test_vxlan_from_nothing_to_two_nodes() -> None:
    plan = plan_changes(desired_vxlan(N1, [N2, N3]).state, KernelState())
    assert plan.bridge_lines == (
        "fdb replace 0e:6b:ac:1f:00:0c dev flannel.1 dst 172.31.0.12 self permanent",
        "fdb replace 0e:6b:ac:1f:00:0d dev flannel.1 dst 172.31.0.13 self permanent",
    )
    assert plan.ip_lines == (
        "neigh replace 10.244.2.0 lladdr 0e:6b:ac:1f:00:0c dev flannel.1 nud permanent",
        "neigh replace 10.244.3.0 lladdr 0e:6b:ac:1f:00:0d dev flannel.1 nud permanent",
        "route add 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink proto 77",
        "route add 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink proto 77",
    )
    assert plan.result == desired_vxlan(N1, [N2, N3]).state
    assert plan.conflicts == ()


def test_no_change_is_an_empty_plan() -> None:
    state = desired_vxlan(N1, [N2, N3]).state
    assert plan_changes(state, state).empty
    hostgw = desired_host_gw(N1, [N2], uplink="eth0").state
    assert plan_changes(hostgw, hostgw, protocol=99).empty


def test_a_node_leaves() -> None:
    before = desired_vxlan(N1, [N2, N3]).state
    plan = plan_changes(desired_vxlan(N1, [N2]).state, before)
    assert plan.bridge_lines == ("fdb del 0e:6b:ac:1f:00:0d dev flannel.1 dst 172.31.0.13 self",)
    assert plan.ip_lines == (
        "route del 10.244.3.0/24 via 10.244.3.0 dev flannel.1 proto 77",
        "neigh del 10.244.3.0 dev flannel.1",
    )


def test_a_node_changes_ip() -> None:
    before = desired_vxlan(N1, [N2]).state
    moved = NodeRoute("n2", "172.31.0.42", "10.244.2.0/24")  # derived MAC changes with the IP
    plan = plan_changes(desired_vxlan(N1, [moved]).state, before)
    assert plan.bridge_lines == (
        "fdb del 0e:6b:ac:1f:00:0c dev flannel.1 dst 172.31.0.12 self",
        "fdb replace 0e:6b:ac:1f:00:2a dev flannel.1 dst 172.31.0.42 self permanent",
    )
    assert plan.ip_lines == ("neigh replace 10.244.2.0 lladdr 0e:6b:ac:1f:00:2a dev flannel.1 nud permanent",)

    # With a published MAC the FDB entry is changed in place.
    pinned = NodeRoute("n2", "172.31.0.12", "10.244.2.0/24", "0e:aa:00:00:00:02")
    pinned_moved = NodeRoute("n2", "172.31.0.42", "10.244.2.0/24", "0e:aa:00:00:00:02")
    plan = plan_changes(desired_vxlan(N1, [pinned_moved]).state, desired_vxlan(N1, [pinned]).state)
    assert plan.bridge_lines == (
        "fdb replace 0e:aa:00:00:00:02 dev flannel.1 dst 172.31.0.42 self permanent",
    )
    assert plan.ip_lines == ()

    # host-gw: the route is replaced in place.
    plan = plan_changes(
        desired_host_gw(N1, [moved], uplink="eth0").state, desired_host_gw(N1, [N2], uplink="eth0").state
    )
    assert plan.ip_lines == ("route replace 10.244.2.0/24 via 172.31.0.42 dev eth0 proto 77",)
    assert plan.bridge_lines == ()


def test_switching_modes_replaces_routes_and_keeps_nothing_stale() -> None:
    hostgw = desired_host_gw(N1, [N2, N3], uplink="eth0").state
    vxlan = desired_vxlan(N1, [N2]).state
    plan = plan_changes(vxlan, hostgw)
    assert plan.ip_lines == (
        "route del 10.244.3.0/24 via 172.31.0.13 dev eth0 proto 77",
        "neigh replace 10.244.2.0 lladdr 0e:6b:ac:1f:00:0c dev flannel.1 nud permanent",
        "route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink proto 77",
    )


def test_foreign_routes_are_conflicts_not_takeovers() -> None:
    desired = desired_host_gw(N1, [N2, N3], uplink="eth0").state
    observed = KernelState(routes=frozenset({Route("10.244.3.0/24", "172.31.0.13", "eth0")}))
    plan = plan_changes(desired, observed, foreign=frozenset({"10.244.3.0/24"}))
    # Our own route to the contested CIDR goes (proto 77 on delete spares the foreign one).
    assert plan.ip_lines == (
        "route del 10.244.3.0/24 via 172.31.0.13 dev eth0 proto 77",
        "route add 10.244.2.0/24 via 172.31.0.12 dev eth0 proto 77",
    )
    assert len(plan.conflicts) == 1
    assert "10.244.3.0/24" in plan.conflicts[0]
    assert "kubelite did not add" in plan.conflicts[0]
    assert {r.dst for r in plan.result.routes} == {"10.244.2.0/24"}


def test_duplicates_in_the_kernel_are_cleaned_up() -> None:
    desired = desired_vxlan(N1, [N2]).state
    observed = KernelState(
        routes=frozenset(
            {
                Route("10.244.2.0/24", "10.244.2.0", "flannel.1", onlink=True),
                Route("10.244.2.0/24", "172.31.0.12", "eth0"),
            }
        ),
        neighbours=desired.neighbours,
        fdb=frozenset(
            {
                FdbEntry("0e:6b:ac:1f:00:0c", "172.31.0.12", "flannel.1"),
                FdbEntry("0e:6b:ac:1f:00:0c", "172.31.0.99", "flannel.1"),
            }
        ),
    )
    plan = plan_changes(desired, observed)
    assert plan.ip_lines == ("route del 10.244.2.0/24 via 172.31.0.12 dev eth0 proto 77",)
    assert plan.bridge_lines == ("fdb del 0e:6b:ac:1f:00:0c dev flannel.1 dst 172.31.0.99 self",)


def test_everything_removed() -> None:
    observed = desired_vxlan(N1, [N2]).state
    plan = plan_changes(KernelState(), observed)
    assert plan.ip_lines == (
        "route del 10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto 77",
        "neigh del 10.244.2.0 dev flannel.1",
    )
    assert plan.bridge_lines == ("fdb del 0e:6b:ac:1f:00:0c dev flannel.1 dst 172.31.0.12 self",)
    assert plan.result == KernelState()


DEVICE = vxlan_device(N1, uplink="eth0", uplink_mtu=1500)
INFO_DATA = {"id": 1, "local": "172.31.0.11", "link": "eth0", "port": 8472, "learning": False}
LINK = {
    "ifname": "flannel.1",
    "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
    "mtu": 1450,
    "address": "0e:6b:ac:1f:00:0b",
    "linkinfo": {"info_kind": "vxlan", "info_data": INFO_DATA},
}
ADDRS = [
    {"family": "inet", "local": "10.244.1.0", "prefixlen": 32},
    {"family": "inet6", "local": "fe80::1", "prefixlen": 64},
]


def test_device_lines() -> None:
    create = [
        "link add flannel.1 mtu 1450 address 0e:6b:ac:1f:00:0b type vxlan id 1 local 172.31.0.11 dev eth0 "
        "dstport 8472 nolearning",
        "addr add 10.244.1.0/32 dev flannel.1",
        "link set dev flannel.1 up",
    ]
    assert device_lines(DEVICE, None) == create
    assert device_lines(DEVICE, LINK, ADDRS) == []
    other_vni = {**LINK, "linkinfo": {"info_kind": "vxlan", "info_data": {**INFO_DATA, "id": 2}}}
    assert device_lines(DEVICE, other_vni, ADDRS) == ["link del flannel.1", *create]
    assert (
        device_lines(DEVICE, {**LINK, "linkinfo": {"info_kind": "bridge"}}, ADDRS)[0] == "link del flannel.1"
    )
    drifted = {**LINK, "mtu": 1500, "address": "0e:00:00:00:00:01", "flags": ["BROADCAST"]}
    assert device_lines(DEVICE, drifted, [{"family": "inet", "local": "10.244.7.0", "prefixlen": 32}]) == [
        "link set dev flannel.1 mtu 1450",
        "link set dev flannel.1 address 0e:6b:ac:1f:00:0b",
        "addr del 10.244.7.0/32 dev flannel.1",
        "addr add 10.244.1.0/32 dev flannel.1",
        "link set dev flannel.1 up",
    ]
