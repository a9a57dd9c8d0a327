"""The EndpointSlice reconciler and the Endpoints mirroring planner, applied to a fake store."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from kubelite.controllers import endpointslice_model as esm
from kubelite.controllers.endpoints_model import (
    ANNOTATION_TRIGGER_TIME,
    LABEL_HEADLESS,
    ContainerPort,
    NodeInfo,
    PodInfo,
    ServiceInfo,
    ServicePort,
)
from kubelite.controllers.endpointslice_model import (
    ENDPOINTSLICE_CONTROLLER_NAME,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    LABEL_SKIP_MIRROR,
    MIRRORING_CONTROLLER_NAME,
    SlicePlan,
    desired_endpoint_slices,
    mirrored_slices,
    service_wants_mirroring,
)

Obj = dict[str, Any]
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
STAMP = {ANNOTATION_TRIGGER_TIME: "2024-05-01T12:00:00Z"}
HTTP = (ContainerPort("http", 80),)


def pod(name: str, ip: str = "", *, ready: bool = True, node: str = "node-1", **kw: Any) -> PodInfo:
    base: dict[str, Any] = {"labels": {"app": "web"}, "container_ports": HTTP, "phase": "Running"}
    base |= {"ips": (ip,) if ip else (), "node_name": node, "ready": ready}
    return PodInfo("default", name, f"uid-{name}", **base | kw)


def svc(name: str = "web", **kw: Any) -> ServiceInfo:
    base: dict[str, Any] = {
        "uid": f"uid-svc-{name}",
        "selector": {"app": "web"},
        "ports": (ServicePort("", 80, "TCP", 80),),
        "cluster_ip": "10.96.0.10",
        "ip_families": ("IPv4",),
    }
    return ServiceInfo("default", name, **base | kw)


def ip(i: int, prefix: str = "10.244") -> str:
    return f"{prefix}.{i // 250}.{i % 250 + 1}"


def many(n: int, start: int = 0) -> list[PodInfo]:
    return [pod(f"p{i:03d}", ip(i)) for i in range(start, start + n)]


class FakeSlices:
    """Stored slices by name; plans applied as the API server would (generateName → name)."""

    def __init__(self) -> None:
        self.items: dict[str, Obj] = {}
        self.created = 0

    def apply(self, plan: SlicePlan) -> None:
        for s in plan.to_create:
            assert "name" not in s["metadata"]
            self.created += 1
            name = f"{s['metadata']['generateName']}{self.created:05d}"
            self.items[name] = copy.deepcopy(s) | {"metadata": s["metadata"] | {"name": name}}
        for s in plan.to_update:
            assert s["metadata"]["name"] in self.items
            self.items[s["metadata"]["name"]] = copy.deepcopy(s)
        for s in plan.to_delete:
            del self.items[s["metadata"]["name"]]

    def sync(self, service: ServiceInfo, pods: Iterable[PodInfo], **kw: Any) -> SlicePlan:
        plan = desired_endpoint_slices(service, pods, list(self.items.values()), **{"now": T0} | kw)
        self.apply(plan)
        return plan

    def members(self) -> dict[str, list[str]]:
        return {n: [e["targetRef"]["name"] for e in s["endpoints"]] for n, s in sorted(self.items.items())}


def counts(plan: SlicePlan) -> tuple[int, int, int]:
    return len(plan.to_create), len(plan.to_update), len(plan.to_delete)


def test_public_surface_is_defined() -> None:
    assert all(hasattr(esm, name) for name in esm.__all__)


# --- the endpointslice controller ---------------------------------------------------------------


def test_conformance_basic_endpoint_one_slice_throughout() -> None:
    store = FakeSlices()
    steps = [
        ([], (1, 0, 0)),
        (["pod1"], (0, 1, 0)),
        (["pod1", "pod2"], (0, 1, 0)),
        (["pod2"], (0, 1, 0)),
        ([], (0, 1, 0)),
    ]
    for names, expected in steps:
        plan = store.sync(svc(), [pod(n, f"10.244.0.{n[-1]}") for n in names])
        assert counts(plan) == expected
        assert store.members() == {"web-00001": names}  # the placeholder is recycled, never re-created
    assert store.sync(svc(), []).empty
    (placeholder,) = store.items.values()
    assert (placeholder["ports"], placeholder["endpoints"], placeholder["addressType"]) == ([], [], "IPv4")


def test_a_created_slice_in_full() -> None:
    service = svc(
        labels={"team": "a", LABEL_MANAGED_BY: "me", LABEL_SERVICE_NAME: "x"},
        ports=(ServicePort("http", 80, "TCP", "http", "kubernetes.io/h2c"),),
    )
    p = pod(
        "web-0",
        "10.244.0.1",
        hostname="web-0",
        subdomain="web",
        container_ports=(ContainerPort("http", 8080),),
    )
    plan = desired_endpoint_slices(service, [p], [], now=T0, nodes={"node-1": NodeInfo("node-1", "zone-a")})
    assert plan == SlicePlan(
        to_create=[
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "generateName": "web-",
                    "namespace": "default",
                    "labels": {
                        "team": "a",
                        LABEL_SERVICE_NAME: "web",
                        LABEL_MANAGED_BY: ENDPOINTSLICE_CONTROLLER_NAME,
                    },
                    "annotations": STAMP,
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Service",
                            "name": "web",
                            "uid": "uid-svc-web",
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "addressType": "IPv4",
                "ports": [
                    {"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}
                ],
                "endpoints": [
                    {
                        "addresses": ["10.244.0.1"],
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                        "hostname": "web-0",
                        "targetRef": {
                            "kind": "Pod",
                            "namespace": "default",
                            "name": "web-0",
                            "uid": "uid-web-0",
                        },
                        "nodeName": "node-1",
                        "zone": "zone-a",
                    }
                ],
            }
        ]
    )


def test_conformance_multiport_named_target_ports() -> None:
    service = svc(
        ports=(ServicePort("portname1", 80, "TCP", "svc1"), ServicePort("portname2", 81, "TCP", "svc2"))
    )
    pods = [
        pod("pod1", "10.244.0.1", container_ports=(ContainerPort("svc1", 100),)),
        pod("pod2", "10.244.0.2", container_ports=(ContainerPort("svc2", 101),)),
    ]
    plan = desired_endpoint_slices(service, pods, [], now=T0)
    assert [(s["ports"], [e["targetRef"]["name"] for e in s["endpoints"]]) for s in plan.to_create] == [
        ([{"name": "portname1", "port": 100, "protocol": "TCP"}], ["pod1"]),
        ([{"name": "portname2", "port": 101, "protocol": "TCP"}], ["pod2"]),
    ]


@pytest.mark.parametrize(
    ("ready", "deleting", "publish", "conditions"),
    [
        (True, False, False, (True, True, False)),
        (False, False, False, (False, False, False)),
        (True, True, False, (False, True, True)),  # terminating: still serving, never ready
        (False, True, False, (False, False, True)),
        (False, False, True, (True, False, False)),  # publishNotReadyAddresses: always ready
        (True, True, True, (True, True, True)),
    ],
)
def test_endpoint_conditions(
    ready: bool, deleting: bool, publish: bool, conditions: tuple[bool, ...]
) -> None:
    p = pod("p", "10.244.0.1", ready=ready, deleting=deleting)
    plan = desired_endpoint_slices(svc(publish_not_ready_addresses=publish), [p], [], now=T0)
    (endpoint,) = plan.to_create[0]["endpoints"]
    assert endpoint["conditions"] == dict(zip(("ready", "serving", "terminating"), conditions, strict=True))


def test_terminal_and_ip_less_pods_are_left_out() -> None:
    pods = [
        pod("done", "10.244.0.1", phase="Succeeded"),
        pod("failed", "10.244.0.2", phase="Failed"),
        pod("new"),
    ]
    plan = desired_endpoint_slices(svc(), pods, [], now=T0)
    assert [s["endpoints"] for s in plan.to_create] == [[]]  # the placeholder only


def test_250_pods_make_three_slices_of_at_most_100() -> None:
    store = FakeSlices()
    plan = store.sync(svc(), many(250))
    assert [len(s["endpoints"]) for s in plan.to_create] == [100, 100, 50]
    names = [n for members in store.members().values() for n in members]
    assert sorted(names) == [p.name for p in many(250)]


@pytest.mark.parametrize(
    ("change", "expected", "touched"),
    [
        ("nothing", (0, 0, 0), []),
        ("add one", (0, 1, 0), ["web-00003"]),
        ("add fifty", (0, 1, 0), ["web-00003"]),  # fills the half-empty slice exactly
        ("remove one", (0, 1, 0), ["web-00001"]),
        ("unready one", (0, 1, 0), ["web-00002"]),
        ("swap one", (0, 1, 0), ["web-00001"]),  # the freed room takes the newcomer
        ("remove a slice's worth", (0, 0, 1), []),
    ],
)
def test_churn_is_minimal(change: str, expected: tuple[int, int, int], touched: list[str]) -> None:
    store = FakeSlices()
    pods = many(250)
    store.sync(svc(), pods)
    before = store.members()
    pods = {
        "nothing": pods,
        "add one": [*pods, *many(1, 250)],
        "add fifty": [*pods, *many(50, 250)],
        "remove one": pods[1:],
        "unready one": [pod(p.name, p.ips[0], ready=p.name != "p150") for p in pods],
        "swap one": [*pods[1:], *many(1, 250)],
        "remove a slice's worth": pods[100:],
    }[change]
    plan = store.sync(svc(), pods)
    assert counts(plan) == expected
    assert [s["metadata"]["name"] for s in plan.to_update] == touched
    after = store.members()
    for name in set(before) & set(after) - set(touched):
        assert after[name] == before[name]  # untouched slices keep their endpoints
    for name in touched:  # endpoints that stayed, stayed where they were
        assert set(before[name]) - set(after[name]) <= {"p000", "p150"}
    assert sorted(n for m in after.values() for n in m) == sorted(p.name for p in pods)


def test_deleted_slices_are_recreated() -> None:
    store = FakeSlices()
    store.sync(svc(), many(250))
    del store.items["web-00002"]
    plan = store.sync(svc(), many(250))
    assert counts(plan) == (1, 0, 0) and len(plan.to_create[0]["endpoints"]) == 100
    empty = FakeSlices()
    empty.sync(svc(), [])
    empty.items.clear()
    assert counts(empty.sync(svc(), [])) == (1, 0, 0)


def test_small_slices_fill_the_best_fitting_slice() -> None:
    store = FakeSlices()
    store.sync(svc(), many(7), max_per_slice=3)
    assert [len(m) for m in store.members().values()] == [3, 3, 1]
    plan = store.sync(svc(), many(9), max_per_slice=3)
    assert counts(plan) == (0, 1, 0) and plan.to_update[0]["metadata"]["name"] == "web-00003"
    # A changed endpoint stays in its slice.
    plan = store.sync(
        svc(), [pod(p.name, p.ips[0], ready=p.name != "p004") for p in many(9)], max_per_slice=3
    )
    assert [s["metadata"]["name"] for s in plan.to_update] == ["web-00002"]


def test_label_changes_reach_every_slice() -> None:
    store = FakeSlices()
    store.sync(svc(), many(150))
    plan = store.sync(svc(labels={"tier": "front"}), many(150))
    assert counts(plan) == (0, 2, 0)
    assert all(s["metadata"]["labels"]["tier"] == "front" for s in store.items.values())
    headless = desired_endpoint_slices(svc(cluster_ip="None", labels={"tier": "front"}), [], [], now=T0)
    assert headless.to_create[0]["metadata"]["labels"] == {
        "tier": "front",
        LABEL_HEADLESS: "",
        LABEL_SERVICE_NAME: "web",
        LABEL_MANAGED_BY: ENDPOINTSLICE_CONTROLLER_NAME,
    }


def test_foreign_and_orphaned_slices() -> None:
    store = FakeSlices()
    store.sync(svc(uid="old-uid"), many(3))  # a previous Service of the same name
    mirrored = {
        "metadata": {
            "name": "m",
            "labels": {LABEL_SERVICE_NAME: "web", LABEL_MANAGED_BY: MIRRORING_CONTROLLER_NAME},
        }
    }
    plan = desired_endpoint_slices(svc(), many(3), [*store.items.values(), mirrored], now=T0)
    assert counts(plan) == (1, 0, 1)  # not recycled: the old slice is not ours
    assert plan.to_delete[0]["metadata"]["name"] == "web-00001"


@pytest.mark.parametrize(
    ("families", "cluster_ip", "pod_ips", "slices"),
    [
        (("IPv4", "IPv6"), "10.96.0.10", ("10.244.0.1", "fd00::1"), [("IPv4", 1), ("IPv6", 1)]),
        ((), "None", ("10.244.0.1",), [("IPv4", 1), ("IPv6", 0)]),  # headless, no families: both
        ((), "fd00:96::1", ("10.244.0.1", "fd00::1"), [("IPv6", 1)]),
        (("IPv6",), "fd00:96::1", ("10.244.0.1",), [("IPv6", 0)]),
    ],
)
def test_address_families(
    families: tuple[str, ...], cluster_ip: str, pod_ips: tuple[str, ...], slices: list[tuple[str, int]]
) -> None:
    service = svc(ip_families=families, cluster_ip=cluster_ip)
    plan = desired_endpoint_slices(service, [pod("p", ips=pod_ips)], [], now=T0)
    assert [(s["addressType"], len(s["endpoints"])) for s in plan.to_create] == slices


def test_slices_of_a_dropped_family_are_deleted() -> None:
    store = FakeSlices()
    dual = svc(ip_families=("IPv4", "IPv6"))
    store.sync(dual, [pod("p", ips=("10.244.0.1", "fd00::1"))])
    plan = store.sync(svc(), [pod("p", ips=("10.244.0.1", "fd00::1"))])
    assert counts(plan) == (0, 0, 1) and plan.to_delete[0]["addressType"] == "IPv6"


def test_nodes_give_zones_and_unknown_nodes_hold_pods_back() -> None:
    pods = [pod("a", "10.244.0.1", node="n1"), pod("b", "10.244.0.2", node="gone")]
    nodes = {"n1": NodeInfo("n1", "z1")}
    plan = desired_endpoint_slices(svc(), pods, [], now=T0, nodes=nodes)
    assert [(e["targetRef"]["name"], e.get("zone")) for e in plan.to_create[0]["endpoints"]] == [("a", "z1")]
    assert plan.missing_nodes == ("gone",)
    published = desired_endpoint_slices(svc(publish_not_ready_addresses=True), pods, [], now=T0, nodes=nodes)
    assert [(e["targetRef"]["name"], e.get("zone")) for e in published.to_create[0]["endpoints"]] == [
        ("a", "z1"),
        ("b", None),
    ]
    assert published.missing_nodes == ()


def test_trigger_time_is_stamped_and_cleared_on_writes() -> None:
    store = FakeSlices()
    store.sync(svc(), many(2))
    assert store.items["web-00001"]["metadata"]["annotations"] == STAMP
    store.sync(svc(), many(3), now=None)
    assert "annotations" not in store.items["web-00001"]["metadata"]


@pytest.mark.parametrize(
    "service",
    [svc(selector=None), svc(type="ExternalName", cluster_ip=""), svc(deleting=True)],
    ids=["no-selector", "externalname", "deleting"],
)
def test_nothing_created_for(service: ServiceInfo) -> None:
    assert desired_endpoint_slices(service, many(3), [], now=T0).empty


def test_plans_do_not_depend_on_pod_order() -> None:
    pods = [pod(f"p{i}", ip(i), ready=i % 3 != 0) for i in range(130)]
    forward = desired_endpoint_slices(svc(), pods, [], now=T0)
    assert forward == desired_endpoint_slices(svc(), list(reversed(pods)), [], now=T0)


# --- mirroring ---------------------------------------------------------------------------------


def user_endpoints(subsets: list[Obj], **meta: Any) -> Obj:
    metadata = {"name": "ext", "namespace": "default", "uid": "uid-ext"} | meta
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": metadata, "subsets": subsets}


def mirror(store: FakeSlices, endpoints: Obj | None, **kw: Any) -> SlicePlan:
    plan = mirrored_slices(endpoints, list(store.items.values()), **kw)
    store.apply(plan)
    return plan


HTTP_PORT = [{"name": "http", "port": 80, "protocol": "TCP"}]


def test_mirrored_slice_in_full() -> None:
    ep = user_endpoints(
        [
            {
                "addresses": [
                    {
                        "ip": "10.0.0.1",
                        "nodeName": "n1",
                        "targetRef": {"kind": "Pod", "name": "x", "namespace": "default"},
                    },
                    {"ip": "10.0.0.2", "hostname": "h"},
                ],
                "notReadyAddresses": [{"ip": "10.0.0.3"}],
                "ports": HTTP_PORT,
            }
        ],
        labels={"a": "b"},
        annotations={
            "x": "y",
            ANNOTATION_TRIGGER_TIME: "t",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
        },
    )
    assert mirrored_slices(ep, []) == SlicePlan(
        to_create=[
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "generateName": "ext-",
                    "namespace": "default",
                    "labels": {
                        "a": "b",
                        LABEL_SERVICE_NAME: "ext",
                        LABEL_MANAGED_BY: MIRRORING_CONTROLLER_NAME,
                    },
                    "annotations": {"x": "y"},
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Endpoints",
                            "name": "ext",
                            "uid": "uid-ext",
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": ["10.0.0.1"],
                        "conditions": {"ready": True},
                        "targetRef": {"kind": "Pod", "name": "x", "namespace": "default"},
                        "nodeName": "n1",
                    },
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": True}, "hostname": "h"},
                    {"addresses": ["10.0.0.3"], "conditions": {"ready": False}},
                ],
                "ports": HTTP_PORT,
            }
        ]
    )


def test_mirroring_follows_changes_in_place() -> None:
    store = FakeSlices()
    subsets = [{"addresses": [{"ip": "10.0.0.1"}], "ports": HTTP_PORT}]
    assert counts(mirror(store, user_endpoints(subsets))) == (1, 0, 0)
    assert mirror(store, user_endpoints(subsets)).empty
    changes = [
        [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": HTTP_PORT}],
        [{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": HTTP_PORT}],
    ]
    for changed in changes:
        assert counts(mirror(store, user_endpoints(changed))) == (0, 1, 0)
    assert counts(mirror(store, user_endpoints(changes[-1], labels={"new": "label"}))) == (0, 1, 0)
    assert counts(
        mirror(store, user_endpoints(changes[-1], labels={"new": "label"}, annotations={"n": "1"}))
    ) == (
        0,
        1,
        0,
    )
    # New ports: the create and the delete become one update of the same slice.
    other_ports = [
        {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}
    ]
    assert counts(mirror(store, user_endpoints(other_ports))) == (0, 1, 0)
    assert list(store.items) == ["ext-00001"]
    assert store.items["ext-00001"]["ports"] == [{"name": "dns", "port": 53, "protocol": "UDP"}]


@pytest.mark.parametrize(
    "endpoints",
    [
        None,
        user_endpoints([], labels={LABEL_SKIP_MIRROR: "true"}),
        user_endpoints([], annotations={"control-plane.alpha.kubernetes.io/leader": "{}"}),
        user_endpoints([]),
    ],
    ids=["gone-or-selector", "skip-mirror", "leader-election", "no-subsets"],
)
def test_mirrored_slices_removed(endpoints: Obj | None) -> None:
    store = FakeSlices()
    mirror(store, user_endpoints([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}]))
    assert len(store.items) == 2
    assert counts(mirror(store, endpoints)) == (0, 0, 2)


def test_mirroring_families_invalid_ips_and_limits() -> None:
    subset = {
        "addresses": [{"ip": "10.0.0.1"}, {"ip": "bogus"}, {"ip": "fd00::1"}, {"ip": "10.0.0.2"}],
        "notReadyAddresses": [{"ip": "10.0.0.3"}],
        "ports": HTTP_PORT,
    }
    plan = mirrored_slices(user_endpoints([subset]), [])
    assert [(s["addressType"], [e["addresses"][0] for e in s["endpoints"]]) for s in plan.to_create] == [
        ("IPv4", ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
        ("IPv6", ["fd00::1"]),
    ]
    limited = mirrored_slices(user_endpoints([subset]), [], max_per_subset=2)
    assert [[e["addresses"][0] for e in s["endpoints"]] for s in limited.to_create] == [
        ["10.0.0.1"],
        ["fd00::1"],
    ]


def test_mirroring_cleans_duplicates_and_ignores_other_slices() -> None:
    store = FakeSlices()
    ep = user_endpoints([{"addresses": [{"ip": "10.0.0.1"}], "ports": HTTP_PORT}])
    mirror(store, ep)
    store.items["ext-copy"] = copy.deepcopy(store.items["ext-00001"]) | {
        "metadata": {"name": "ext-copy"} | {"labels": store.items["ext-00001"]["metadata"]["labels"]}
    }
    theirs = {
        "metadata": {
            "name": "web-1",
            "labels": {LABEL_SERVICE_NAME: "ext", LABEL_MANAGED_BY: ENDPOINTSLICE_CONTROLLER_NAME},
        }
    }
    plan = mirrored_slices(ep, [*store.items.values(), theirs])
    assert counts(plan) == (0, 0, 1) and plan.to_delete[0]["metadata"]["name"] == "ext-copy"
    deleting = user_endpoints(ep["subsets"], deletionTimestamp="2024-05-01T12:00:00Z")
    assert mirrored_slices(deleting, []).empty


@pytest.mark.parametrize(
    ("service", "wanted"),
    [(None, False), (svc(), False), (svc(selector=None), True)],
)
def test_service_wants_mirroring(service: ServiceInfo | None, wanted: bool) -> None:
    assert service_wants_mirroring(service) is wanted
