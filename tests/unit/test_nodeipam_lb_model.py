"""Pure models of two controllers: node IPAM (a pod CIDR per node) and the LoadBalancer IP pool."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.controllers.loadbalancer_model import (
    AddressRange,
    AssignmentPlan,
    LoadBalancerPool,
    ServiceEvent,
    StatusUpdate,
    ingress_status,
)
from kubelite.controllers.nodeipam_model import (
    CidrExhausted,
    NodeEvent,
    allocate_pod_cidrs,
    cidr_not_available_event,
    node_pod_cidrs,
    pod_cidr_patch,
)

Obj = dict[str, Any]


# --- node IPAM -------------------------------------------------------------------------------


def node(name: str, cidr: str | None = None, *, both: bool = True, plural_only: bool = False) -> Obj:
    spec: Obj = {}
    if cidr is not None:
        if not plural_only:
            spec["podCIDR"] = cidr
        if both or plural_only:
            spec["podCIDRs"] = [cidr]
    return {"metadata": {"name": name}, "spec": spec}


IPAM_CASES: list[tuple[str, str, int, list[Obj], dict[str, str]]] = [
    (
        "fresh cluster, defaults",
        "10.244.0.0/16",
        24,
        [node("n1"), node("n2"), node("n3")],
        {"n1": "10.244.0.0/24", "n2": "10.244.1.0/24", "n3": "10.244.2.0/24"},
    ),
    (
        "existing assignments are kept and skipped",
        "10.244.0.0/16",
        24,
        [node("n1", "10.244.0.0/24"), node("n2"), node("n3", "10.244.2.0/24"), node("n4")],
        {"n2": "10.244.1.0/24", "n4": "10.244.3.0/24"},
    ),
    (
        "podCIDR alone is honoured",
        "10.244.0.0/16",
        24,
        [node("n1", "10.244.0.0/24", both=False), node("n2")],
        {"n2": "10.244.1.0/24"},
    ),
    (
        "podCIDRs alone is honoured",
        "10.244.0.0/16",
        24,
        [node("n1", "10.244.0.0/24", plural_only=True), node("n2")],
        {"n2": "10.244.1.0/24"},
    ),
    (
        "an existing wider block takes several",
        "10.244.0.0/16",
        24,
        [node("big", "10.244.0.0/23"), node("n2")],
        {"n2": "10.244.2.0/24"},
    ),
    (
        "an existing block outside the cluster CIDR blocks nothing",
        "10.244.0.0/16",
        24,
        [node("odd", "192.168.0.0/24"), node("n2")],
        {"n2": "10.244.0.0/24"},
    ),
    (
        "garbage in podCIDR blocks nothing",
        "10.244.0.0/16",
        24,
        [node("odd", "not-a-cidr"), node("n2")],
        {"n2": "10.244.0.0/24"},
    ),
    (
        "order of the input decides",
        "10.244.0.0/16",
        24,
        [node("zz"), node("aa")],
        {"zz": "10.244.0.0/24", "aa": "10.244.1.0/24"},
    ),
    (
        "a node listed twice gets one block",
        "10.244.0.0/16",
        24,
        [node("n1"), node("n1")],
        {"n1": "10.244.0.0/24"},
    ),
    ("other mask size", "10.0.0.0/8", 16, [node("a"), node("b")], {"a": "10.0.0.0/16", "b": "10.1.0.0/16"}),
    ("mask equal to the cluster's: one block", "10.244.5.0/24", 24, [node("a")], {"a": "10.244.5.0/24"}),
    ("host bits in the cluster CIDR are dropped", "10.244.7.9/16", 24, [node("a")], {"a": "10.244.0.0/24"}),
    (
        "IPv6",
        "fd00:10:244::/56",
        64,
        [node("a"), node("b")],
        {"a": "fd00:10:244::/64", "b": "fd00:10:244:1::/64"},
    ),
    ("no nodes", "10.244.0.0/16", 24, [], {}),
]


@pytest.mark.parametrize(
    ("cluster", "mask", "nodes", "expected"), [c[1:] for c in IPAM_CASES], ids=[c[0] for c in IPAM_CASES]
)
def test_allocate_pod_cidrs(cluster: str, mask: int, nodes: list[Obj], expected: dict[str, str]) -> None:
    assert allocate_pod_cidrs(cluster, mask, nodes) == expected


def test_allocate_pod_cidrs_defaults_to_the_architecture() -> None:
    assert allocate_pod_cidrs(nodes=[node("a")]) == {"a": "10.244.0.0/24"}


def test_allocations_never_reuse_a_block_in_use() -> None:
    nodes = [node(f"n{i}") for i in range(20)]
    first = allocate_pod_cidrs("10.244.0.0/16", 24, nodes[:10])
    applied = [node(n, c) for n, c in first.items()]
    second = allocate_pod_cidrs("10.244.0.0/16", 24, applied + nodes[10:])
    assert set(second) == {f"n{i}" for i in range(10, 20)}
    assert len(set(first.values()) | set(second.values())) == 20


def test_freed_block_is_reused_lowest_first() -> None:
    nodes = [node("a", "10.244.0.0/24"), node("c", "10.244.2.0/24"), node("new")]
    assert allocate_pod_cidrs("10.244.0.0/16", 24, nodes) == {"new": "10.244.1.0/24"}


def test_service_cidr_overlap_is_never_handed_out() -> None:
    result = allocate_pod_cidrs("10.0.0.0/16", 24, [node("a"), node("b")], service_cidr="10.0.0.0/23")
    assert result == {"a": "10.0.2.0/24", "b": "10.0.3.0/24"}
    # A service CIDR elsewhere changes nothing.
    assert allocate_pod_cidrs(nodes=[node("a")], service_cidr="10.96.0.0/12") == {"a": "10.244.0.0/24"}


def test_exhaustion_raises_with_the_partial_result() -> None:
    nodes = [node("n1"), node("n2"), node("n3"), node("n4")]
    with pytest.raises(CidrExhausted) as caught:
        allocate_pod_cidrs("10.244.0.0/23", 24, nodes)
    err = caught.value
    assert err.allocated == {"n1": "10.244.0.0/24", "n2": "10.244.1.0/24"}
    assert err.nodes == ["n3", "n4"]
    assert err.cluster_cidr == "10.244.0.0/23"
    assert str(err) == (
        "no pod CIDR is left in the cluster CIDR 10.244.0.0/23 for node(s) n3, n4: every block is in use; "
        "widen --cluster-cidr or use a longer node CIDR mask size"
    )


def test_exhaustion_when_every_block_is_already_taken() -> None:
    with pytest.raises(CidrExhausted) as caught:
        allocate_pod_cidrs("10.244.0.0/24", 24, [node("old", "10.244.0.0/24"), node("new")])
    assert caught.value.allocated == {}
    assert caught.value.nodes == ["new"]


def test_cidr_not_available_event_is_kubernetes_wording() -> None:
    assert cidr_not_available_event("n3") == NodeEvent(
        "n3", "Normal", "CIDRNotAvailable", "Node n3 status is now: CIDRNotAvailable"
    )


@pytest.mark.parametrize(
    ("cluster", "mask", "message"),
    [
        ("10.244.0.0/16", 8, "node CIDR mask size 8 does not fit cluster CIDR 10.244.0.0/16"),
        ("10.244.0.0/16", 33, "node CIDR mask size 33 does not fit cluster CIDR 10.244.0.0/16"),
        ("10.244.0.0/xx", 24, "invalid cluster CIDR '10.244.0.0/xx'"),
        ("fd00::/48", 80, "more than 16 bits longer than the cluster CIDR fd00::/48"),
    ],
)
def test_invalid_configuration(cluster: str, mask: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        allocate_pod_cidrs(cluster, mask, [node("a")])


def test_invalid_service_cidr() -> None:
    with pytest.raises(ValueError, match="invalid service CIDR 'nope'"):
        allocate_pod_cidrs(nodes=[node("a")], service_cidr="nope")


def test_node_pod_cidrs_and_patch() -> None:
    assert node_pod_cidrs(node("a")) == []
    assert node_pod_cidrs(node("a", "10.244.3.0/24", both=False)) == ["10.244.3.0/24"]
    assert node_pod_cidrs({"metadata": {"name": "a"}}) == []
    assert pod_cidr_patch("10.244.3.0/24") == {
        "spec": {"podCIDR": "10.244.3.0/24", "podCIDRs": ["10.244.3.0/24"]}
    }


# --- the LoadBalancer pool: parsing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical", "size"),
    [
        ("192.168.100.240-192.168.100.250", "192.168.100.240-192.168.100.250", 11),
        ("10.0.0.0/30", "10.0.0.0-10.0.0.3", 4),
        (
            "192.168.100.240-192.168.100.250,10.0.0.0/30",
            "10.0.0.0-10.0.0.3,192.168.100.240-192.168.100.250",
            15,
        ),
        (" 10.0.0.1 - 10.0.0.2 , 10.0.0.9 ", "10.0.0.1-10.0.0.2,10.0.0.9", 3),
        ("10.0.0.5", "10.0.0.5", 1),
        ("10.0.0.5/32", "10.0.0.5", 1),
        ("10.0.0.5/30", "10.0.0.4-10.0.0.7", 4),  # host bits dropped, as Go's ParseCIDR does
        ("10.0.0.0/30,10.0.0.2-10.0.0.6", "10.0.0.0-10.0.0.6", 7),  # overlapping ranges merge
        ("10.0.0.0/31,10.0.0.2/31", "10.0.0.0-10.0.0.3", 4),  # adjacent ranges merge
        ("fd00::10-fd00::1f", "fd00::10-fd00::1f", 16),
        ("fd00::/126,10.0.0.1", "10.0.0.1,fd00::-fd00::3", 5),
        ("::5", "::5", 1),
    ],
)
def test_pool_parse(text: str, canonical: str, size: int) -> None:
    pool = LoadBalancerPool.parse(text)
    assert str(pool) == canonical
    assert pool.size == size
    assert str(LoadBalancerPool.parse(str(pool))) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the LoadBalancer address pool is empty"),
        (" , ", "the LoadBalancer address pool is empty"),
        (
            "10.0.0.9-10.0.0.1",
            "invalid LoadBalancer address range '10.0.0.9-10.0.0.1': the first address is above",
        ),
        ("10.0.0.1-fd00::1", "of different IP families"),
        ("10.0.0.0/33", "invalid LoadBalancer address range '10.0.0.0/33'"),
        ("banana", "invalid LoadBalancer address range 'banana'"),
        ("10.0.0.1-", "invalid LoadBalancer address range '10.0.0.1-'"),
    ],
)
def test_pool_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        LoadBalancerPool.parse(text)


def test_pool_membership() -> None:
    pool = LoadBalancerPool.parse("192.168.100.240-192.168.100.250,10.0.0.0/30")
    assert "192.168.100.245" in pool
    assert "10.0.0.3" in pool
    assert "10.0.0.4" not in pool
    assert "not an ip" not in pool
    assert 42 not in pool
    assert "::ffff:10.0.0.1" not in pool  # another family
    buggy = LoadBalancerPool.parse("10.0.0.0/24", avoid_buggy_ips=True)
    assert "10.0.0.0" not in buggy
    assert "10.0.0.255" not in buggy
    assert "10.0.0.1" in buggy


@pytest.mark.parametrize(
    ("network", "size", "canonical"),
    [
        ("172.30.0.0/24", 16, "172.30.0.239-172.30.0.254"),
        ("172.30.0.0/24", 1, "172.30.0.254"),
        ("10.9.0.0/16", 4, "10.9.255.251-10.9.255.254"),
        ("172.30.0.0/29", 16, "172.30.0.1-172.30.0.6"),  # a tiny network: all usable hosts
        ("fd00:172::/120", 4, "fd00:172::fc-fd00:172::ff"),  # IPv6 has no broadcast address
    ],
)
def test_pool_from_the_top_of_the_node_network(network: str, size: int, canonical: str) -> None:
    assert str(LoadBalancerPool.top_of(network, size)) == canonical


def test_pool_from_the_top_needs_room() -> None:
    with pytest.raises(ValueError, match="no room for a LoadBalancer pool of 0 addresses"):
        LoadBalancerPool.top_of("172.30.0.0/24", 0)


def test_address_range_holds_integers() -> None:
    r = LoadBalancerPool.parse("10.0.0.1-10.0.0.3").ranges[0]
    assert r == AddressRange(0x0A000001, 0x0A000003, 4)


# --- the LoadBalancer pool: assignment ---------------------------------------------------------

POOL = LoadBalancerPool.parse("192.168.100.240-192.168.100.242")


def svc(
    name: str,
    *,
    type_: str = "LoadBalancer",
    ip: str | None = None,
    lb_class: str | None = None,
    requested: str | None = None,
    annotation: str | None = None,
    annotation_key: str = "metallb.universe.tf/loadBalancerIPs",
    created: str = "2025-01-01T00:00:00Z",
    families: list[str] | None = None,
    namespace: str = "default",
) -> Obj:
    spec: Obj = {"type": type_, "ports": [{"port": 80}]}
    if lb_class is not None:
        spec["loadBalancerClass"] = lb_class
    if requested is not None:
        spec["loadBalancerIP"] = requested
    if families is not None:
        spec["ipFamilies"] = families
    meta: Obj = {"name": name, "namespace": namespace, "creationTimestamp": created}
    if annotation is not None:
        meta["annotations"] = {annotation_key: annotation}
    status: Obj = {"loadBalancer": ingress_status([ip]) if ip else {}}
    return {"metadata": meta, "spec": spec, "status": status}


def allocated(key: str, ip: str) -> ServiceEvent:
    return ServiceEvent(key, "Normal", "IPAllocated", f'Assigned IP ["{ip}"]')


def write(key: str, ip: str) -> StatusUpdate:
    return StatusUpdate(key, {"ingress": [{"ip": ip, "ipMode": "VIP"}]})


def test_lowest_free_ips_in_order_of_creation() -> None:
    plan = POOL.assign([
        svc("b", created="2025-01-02T00:00:00Z"),
        svc("a", created="2025-01-03T00:00:00Z"),
        svc("c", created="2025-01-01T00:00:00Z"),
    ])  # fmt: skip
    assert plan == AssignmentPlan(
        assignments={
            "default/c": ("192.168.100.240",),
            "default/b": ("192.168.100.241",),
            "default/a": ("192.168.100.242",),
        },
        updates=(
            write("default/c", "192.168.100.240"),
            write("default/b", "192.168.100.241"),
            write("default/a", "192.168.100.242"),
        ),
        events=(
            allocated("default/c", "192.168.100.240"),
            allocated("default/b", "192.168.100.241"),
            allocated("default/a", "192.168.100.242"),
        ),
    )


def test_status_written_is_ingress_ip_with_vip_mode() -> None:
    (update,) = POOL.assign([svc("web")]).updates
    assert update.load_balancer == {"ingress": [{"ip": "192.168.100.240", "ipMode": "VIP"}]}


def test_existing_assignments_are_stable() -> None:
    services = [svc("a", ip="192.168.100.242"), svc("b"), svc("c", ip="192.168.100.240")]
    plan = POOL.assign(services)
    assert plan.assignments == {
        "default/a": ("192.168.100.242",),
        "default/c": ("192.168.100.240",),
        "default/b": ("192.168.100.241",),
    }
    assert plan.updates == (write("default/b", "192.168.100.241"),)
    # Converged: a second pass over the written state changes nothing.
    again = POOL.assign([svc("a", ip="192.168.100.242"), svc("b", ip="192.168.100.241"), services[2]])
    assert again.updates == () and again.events == () and again.pending == ()


def test_exhausted_pool_leaves_the_service_pending_with_an_event() -> None:
    services = [svc(n, created=f"2025-01-0{i + 1}T00:00:00Z") for i, n in enumerate("abcd")]
    plan = POOL.assign(services)
    assert plan.pending == ("default/d",)
    assert "default/d" not in plan.assignments
    assert plan.events[-1] == ServiceEvent(
        "default/d",
        "Warning",
        "AllocationFailed",
        'Failed to allocate IP for "default/d": no available IPs in pool "default"',
    )


def test_pool_name_appears_in_the_exhaustion_event() -> None:
    pool = LoadBalancerPool.parse("10.0.0.1", name="sandbox")
    plan = pool.assign([svc("a"), svc("b", created="2025-02-01T00:00:00Z")])
    assert (
        plan.events[-1].message == 'Failed to allocate IP for "default/b": no available IPs in pool "sandbox"'
    )


def test_ips_of_deleted_services_are_free_again() -> None:
    # "a" held .240 and was deleted: no Service shows .240 any more, so the next one gets it.
    plan = POOL.assign([svc("b", ip="192.168.100.241"), svc("new", created="2025-03-01T00:00:00Z")])
    assert plan.assignments["default/new"] == ("192.168.100.240",)


def test_service_no_longer_load_balancer_is_cleared_and_its_ip_released() -> None:
    services = [
        svc("was-lb", type_="ClusterIP", ip="192.168.100.240"),
        svc("new", created="2025-03-01T00:00:00Z"),
    ]
    plan = POOL.assign(services)
    assert plan.released == ("192.168.100.240",)
    assert plan.updates == (StatusUpdate("default/was-lb", {}), write("default/new", "192.168.100.240"))
    assert plan.assignments == {"default/new": ("192.168.100.240",)}


def test_non_load_balancer_without_our_address_is_left_alone() -> None:
    plan = POOL.assign([svc("np", type_="NodePort"), svc("other", type_="ClusterIP", ip="203.0.113.9")])
    assert plan == AssignmentPlan(assignments={})


@pytest.mark.parametrize(
    "annotation_key", ["metallb.universe.tf/loadBalancerIPs", "metallb.io/loadBalancerIPs"]
)
def test_requested_ip_from_annotation(annotation_key: str) -> None:
    plan = POOL.assign([svc("a", annotation="192.168.100.242", annotation_key=annotation_key)])
    assert plan.assignments == {"default/a": ("192.168.100.242",)}


def test_requested_ip_from_spec_load_balancer_ip() -> None:
    plan = POOL.assign([svc("a", requested="192.168.100.241")])
    assert plan.assignments == {"default/a": ("192.168.100.241",)}
    assert plan.events == (allocated("default/a", "192.168.100.241"),)


def test_annotation_wins_over_spec_load_balancer_ip() -> None:
    plan = POOL.assign([svc("a", requested="192.168.100.241", annotation="192.168.100.242")])
    assert plan.assignments == {"default/a": ("192.168.100.242",)}


def test_requests_are_served_before_automatic_picks() -> None:
    # "auto" is older, but must not take .240, which "pinned" asks for.
    services = [
        svc("auto", created="2025-01-01T00:00:00Z"),
        svc("pinned", requested="192.168.100.240", created="2025-01-02T00:00:00Z"),
    ]
    plan = POOL.assign(services)
    assert plan.assignments == {"default/pinned": ("192.168.100.240",), "default/auto": ("192.168.100.241",)}


@pytest.mark.parametrize(
    ("requested", "reason", "message"),
    [
        (
            "10.9.9.9",
            "AllocationFailed",
            'Failed to allocate IP for "default/b": "10.9.9.9" is not allowed in config',
        ),
        (
            "192.168.100.240",
            "AllocationFailed",
            'Failed to allocate IP for "default/b": "192.168.100.240" is already in use by default/a',
        ),
        ("banana", "LoadBalancerFailed", "invalid requested loadbalancer IPs: "),
    ],
)
def test_requested_ip_unavailable(requested: str, reason: str, message: str) -> None:
    services = [svc("a", ip="192.168.100.240"), svc("b", requested=requested, created="2025-02-01T00:00:00Z")]
    plan = POOL.assign(services)
    assert plan.pending == ("default/b",)
    (event,) = plan.events
    assert (event.key, event.type, event.reason) == ("default/b", "Warning", reason)
    assert event.message.startswith(message)


def test_changed_request_moves_the_service() -> None:
    plan = POOL.assign([svc("a", ip="192.168.100.240", requested="192.168.100.242")])
    assert plan.assignments == {"default/a": ("192.168.100.242",)}
    assert plan.released == ("192.168.100.240",)
    assert plan.updates == (write("default/a", "192.168.100.242"),)


def test_changed_request_to_a_taken_ip_clears_the_old_one() -> None:
    services = [
        svc("a", ip="192.168.100.240"),
        svc("b", ip="192.168.100.241", requested="192.168.100.240", created="2025-02-01T00:00:00Z"),
    ]
    plan = POOL.assign(services)
    assert plan.pending == ("default/b",)
    assert plan.updates == (StatusUpdate("default/b", {}),)
    assert plan.released == ("192.168.100.241",)


def test_address_outside_the_pool_is_replaced() -> None:
    plan = POOL.assign([svc("a", ip="10.1.1.1")])
    assert plan.assignments == {"default/a": ("192.168.100.240",)}
    assert plan.released == ()  # not ours to release
    assert plan.updates == (write("default/a", "192.168.100.240"),)


def test_duplicate_claims_the_older_service_keeps_the_address() -> None:
    services = [
        svc("young", ip="192.168.100.240", created="2025-05-01T00:00:00Z"),
        svc("old", ip="192.168.100.240", created="2025-01-01T00:00:00Z"),
    ]
    plan = POOL.assign(services)
    assert plan.assignments == {"default/old": ("192.168.100.240",), "default/young": ("192.168.100.241",)}
    assert plan.updates == (write("default/young", "192.168.100.241"),)


@pytest.mark.parametrize(
    ("lb_class", "ours"),
    [(None, True), ("", True), ("kubelite.io/lb", True), ("example.com/other", False)],
)
def test_load_balancer_class(lb_class: str | None, ours: bool) -> None:
    plan = POOL.assign([svc("a", lb_class=lb_class)])
    assert (plan.assignments == {"default/a": ("192.168.100.240",)}) is ours
    if not ours:
        assert plan == AssignmentPlan(assignments={})


def test_other_class_is_left_alone_entirely() -> None:
    # Even showing one of our addresses, and even after changing type, another class's Service is not touched,
    # nor does its address count as used.
    services = [
        svc("theirs", lb_class="example.com/other", ip="192.168.100.240"),
        svc("theirs-too", lb_class="example.com/other", type_="ClusterIP", ip="192.168.100.241"),
        svc("mine", created="2025-02-01T00:00:00Z"),
    ]
    plan = POOL.assign(services)
    assert plan.assignments == {"default/mine": ("192.168.100.240",)}
    assert [u.key for u in plan.updates] == ["default/mine"]
    assert plan.released == ()


def test_custom_class_parameter() -> None:
    pool = LoadBalancerPool.parse("10.0.0.1-10.0.0.2", load_balancer_class="example.com/lb")
    plan = pool.assign([svc("a", lb_class="example.com/lb"), svc("b", lb_class="kubelite.io/lb")])
    assert plan.assignments == {"default/a": ("10.0.0.1",)}


def test_ipv6_services_get_ipv6_addresses() -> None:
    pool = LoadBalancerPool.parse("10.0.0.1,fd00::10-fd00::11")
    plan = pool.assign([
        svc("v6", families=["IPv6"]),
        svc("v4", families=["IPv4"], created="2025-02-01T00:00:00Z"),
        svc("dual", families=["IPv6", "IPv4"], created="2025-03-01T00:00:00Z"),
    ])  # fmt: skip
    assert plan.assignments == {
        "default/v6": ("fd00::10",),
        "default/v4": ("10.0.0.1",),
        "default/dual": ("fd00::11",),
    }


def test_family_of_a_kept_address_must_match() -> None:
    pool = LoadBalancerPool.parse("10.0.0.1,fd00::10")
    plan = pool.assign([svc("v6", families=["IPv6"], ip="10.0.0.1")])
    assert plan.assignments == {"default/v6": ("fd00::10",)}
    assert plan.released == ("10.0.0.1",)


def test_dual_stack_annotation_takes_the_address_of_the_service_family() -> None:
    pool = LoadBalancerPool.parse("10.0.0.1-10.0.0.3,fd00::10")
    plan = pool.assign([svc("a", annotation="fd00::10, 10.0.0.3")])
    assert plan.assignments == {"default/a": ("10.0.0.3",)}


def test_avoid_buggy_ips_skips_dot_zero_and_dot_255() -> None:
    pool = LoadBalancerPool.parse("10.0.0.255-10.0.1.1", avoid_buggy_ips=True)
    plan = pool.assign([svc("a"), svc("b", created="2025-02-01T00:00:00Z")])
    assert plan.assignments == {"default/a": ("10.0.1.1",)}
    assert plan.pending == ("default/b",)


def test_services_are_keyed_by_namespace() -> None:
    plan = POOL.assign([svc("web", namespace="a"), svc("web", namespace="b")])
    assert set(plan.assignments) == {"a/web", "b/web"}


def test_lowest_free_skips_used_addresses() -> None:
    used = {int(a) for a in (0x0A000001, 0x0A000002)}
    assert LoadBalancerPool.parse("10.0.0.1-10.0.0.3").lowest_free(4, used) == "10.0.0.3"
    assert LoadBalancerPool.parse("10.0.0.1-10.0.0.2").lowest_free(4, used) is None
    assert LoadBalancerPool.parse("10.0.0.1-10.0.0.2").lowest_free(6, set()) is None
    assert LoadBalancerPool.parse("::1-::2").lowest_free(6, {1}) == "::2"
