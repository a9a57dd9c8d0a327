"""The Endpoints controller's pure model: arriving objects, shared pod rules, desired Endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from kubelite.controllers import endpoints_model as em
from kubelite.controllers.endpoints_model import (
    ANNOTATION_OVER_CAPACITY,
    ANNOTATION_TRIGGER_TIME,
    LABEL_HEADLESS,
    ContainerPort,
    NodeInfo,
    PodInfo,
    ServiceInfo,
    ServicePort,
    desired_endpoints,
    endpoints_changed,
    find_port,
    format_trigger_time,
    ip_family,
    normalize_ip,
    should_pod_be_in_endpoints,
)

Obj = dict[str, Any]
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def pod_obj(
    name: str,
    ip: str = "",
    *,
    ready: bool = True,
    ns: str = "default",
    labels: dict[str, str] | None = None,
    node: str = "node-1",
    phase: str = "Running",
    deleting: bool = False,
    ports: Sequence[tuple[str, int, str]] = (("http", 80, "TCP"),),
    hostname: str = "",
    subdomain: str = "",
) -> Obj:
    spec: Obj = {
        "nodeName": node,
        "containers": [
            {
                "name": "c",
                "ports": [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports],
            }
        ],
    }
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    status: Obj = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status |= {"podIP": ip, "podIPs": [{"ip": ip}]}
    meta: Obj = {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels or {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def pod(name: str, ip: str = "", **kw: Any) -> PodInfo:
    return PodInfo.from_object(pod_obj(name, ip, **kw))


def svc(
    name: str = "web",
    *,
    selector: dict[str, str] | None = None,
    no_selector: bool = False,
    ports: Sequence[Obj] = ({"port": 80, "targetPort": 80},),
    cluster_ip: str = "10.96.0.10",
    publish: bool = False,
    svc_type: str = "ClusterIP",
    families: Sequence[str] = ("IPv4",),
    labels: dict[str, str] | None = None,
) -> ServiceInfo:
    spec: Obj = {"type": svc_type, "clusterIP": cluster_ip, "ports": [{"protocol": "TCP"} | p for p in ports]}
    if not no_selector:
        spec["selector"] = selector or {"app": "web"}
    if publish:
        spec["publishNotReadyAddresses"] = True
    if families:
        spec["ipFamilies"] = list(families)
    meta: Obj = {"name": name, "namespace": "default", "uid": f"uid-svc-{name}"}
    if labels:
        meta["labels"] = labels
    return ServiceInfo.from_object({"metadata": meta, "spec": spec})


def address(name: str, ip: str, *, node: str = "node-1", hostname: str = "") -> Obj:
    out: Obj = {"ip": ip}
    if hostname:
        out["hostname"] = hostname
    out |= {
        "nodeName": node,
        "targetRef": {"kind": "Pod", "namespace": "default", "name": name, "uid": f"uid-{name}"},
    }
    return out


def endpoints(
    subsets: list[Obj], *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> Obj:
    meta: Obj = {"name": "web", "namespace": "default"}
    if labels:
        meta["labels"] = labels
    meta["annotations"] = annotations or {ANNOTATION_TRIGGER_TIME: "2024-05-01T12:00:00Z"}
    obj: Obj = {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta}
    if subsets:
        obj["subsets"] = subsets
    return obj


PORT80 = [{"port": 80, "protocol": "TCP"}]


# --- arriving objects ---------------------------------------------------------------------------


def test_public_surface_is_defined() -> None:
    assert all(hasattr(em, name) for name in em.__all__)


def test_pod_from_object_reads_every_field() -> None:
    obj = pod_obj("p", "10.244.1.5", deleting=True, hostname="h", subdomain="web")
    obj["status"]["podIPs"].append({"ip": "fd00::5"})
    obj["spec"]["initContainers"] = [
        {"name": "sidecar", "restartPolicy": "Always", "ports": [{"name": "metrics", "containerPort": 9090}]},
        {"name": "init", "ports": [{"name": "ignored", "containerPort": 1}]},
    ]
    p = PodInfo.from_object(obj)
    assert p == PodInfo(
        namespace="default",
        name="p",
        uid="uid-p",
        labels={"app": "web"},
        ips=("10.244.1.5", "fd00::5"),
        node_name="node-1",
        hostname="h",
        subdomain="web",
        phase="Running",
        ready=True,
        deleting=True,
        container_ports=(ContainerPort("http", 80, "TCP"), ContainerPort("metrics", 9090, "TCP")),
    )


@pytest.mark.parametrize(
    ("status", "ips", "ready"),
    [
        ({}, (), False),
        ({"podIP": "10.0.0.1"}, ("10.0.0.1",), False),
        ({"podIPs": [{"ip": "10.0.0.2"}], "podIP": "10.0.0.9"}, ("10.0.0.2",), False),
        ({"conditions": [{"type": "Ready", "status": "False"}]}, (), False),
        ({"conditions": [{"type": "ContainersReady", "status": "True"}]}, (), False),
        ({"conditions": [{"type": "Ready", "status": "True"}]}, (), True),
    ],
)
def test_pod_ips_and_readiness(status: Obj, ips: tuple[str, ...], ready: bool) -> None:
    p = PodInfo.from_object({"metadata": {"name": "p"}, "status": status})
    assert (p.ips, p.ready, p.deleting, p.container_ports) == (ips, ready, False, ())


def test_service_from_object() -> None:
    s = ServiceInfo.from_object(
        {
            "metadata": {"name": "web", "namespace": "ns", "uid": "u", "labels": {"a": "b"}},
            "spec": {
                "selector": {"app": "web"},
                "clusterIP": "None",
                "ipFamilies": ["IPv4"],
                "publishNotReadyAddresses": True,
                "ports": [
                    {"name": "a", "port": 80},
                    {"name": "b", "port": 81, "targetPort": "svc2", "protocol": "UDP", "appProtocol": "dns"},
                    {"name": "c", "port": 82, "targetPort": 0},
                ],
            },
        }
    )
    assert s.ports == (
        ServicePort("a", 80, "TCP", 80),
        ServicePort("b", 81, "UDP", "svc2", "dns"),
        ServicePort("c", 82, "TCP", 82),
    )
    assert (s.selector, s.headless, s.ip_set, s.type, s.publish_not_ready_addresses) == (
        {"app": "web"},
        True,
        False,
        "ClusterIP",
        True,
    )


@pytest.mark.parametrize("selector", [None, {}])
def test_service_without_selector(selector: dict[str, str] | None) -> None:
    spec = {} if selector is None else {"selector": selector}
    assert ServiceInfo.from_object({"metadata": {"name": "x"}, "spec": spec}).selector is None


def test_node_from_object() -> None:
    obj = {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}}
    assert NodeInfo.from_object(obj) == NodeInfo("n1", "z1")
    assert NodeInfo.from_object({"metadata": {"name": "n2"}}) == NodeInfo("n2", "")


# --- shared pod rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "protocol", "expected"),
    [
        (8080, "TCP", 8080),
        ("http", "TCP", 80),
        ("http", "UDP", None),  # the protocol must match too
        ("metrics", "TCP", 9090),  # restartable init container
        ("nope", "TCP", None),
    ],
)
def test_find_port(target: int | str, protocol: str, expected: int | None) -> None:
    obj = pod_obj("p", "10.0.0.1")
    obj["spec"]["initContainers"] = [
        {"name": "s", "restartPolicy": "Always", "ports": [{"name": "metrics", "containerPort": 9090}]}
    ]
    assert find_port(PodInfo.from_object(obj), ServicePort("x", 1, protocol, target)) == expected


@pytest.mark.parametrize(
    ("kw", "include_terminating", "expected"),
    [
        ({}, False, True),
        ({"ready": False}, False, True),  # not-ready pods are still endpoints (notReadyAddresses)
        ({"deleting": True}, False, False),
        ({"deleting": True}, True, True),
        ({"phase": "Succeeded"}, True, False),
        ({"phase": "Failed"}, True, False),
        ({"phase": "Pending"}, False, True),
    ],
)
def test_should_pod_be_in_endpoints(kw: Obj, include_terminating: bool, expected: bool) -> None:
    p = pod("p", "10.0.0.1", **kw)
    assert should_pod_be_in_endpoints(p, include_terminating=include_terminating) is expected
    assert not should_pod_be_in_endpoints(pod("p", **kw), include_terminating=True)  # no IP, never


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (T0, "2024-05-01T12:00:00Z"),
        (T0 + timedelta(microseconds=500000), "2024-05-01T12:00:00.5Z"),
        (T0 + timedelta(microseconds=123), "2024-05-01T12:00:00.000123Z"),
        (datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), "2024-05-01T12:00:00Z"),
        (datetime(2024, 5, 1, 12, 0), "2024-05-01T12:00:00Z"),  # naive counts as UTC
    ],
)
def test_format_trigger_time(t: datetime, text: str) -> None:
    assert format_trigger_time(t) == text


@pytest.mark.parametrize(
    ("text", "normal", "family"),
    [
        ("10.0.0.1", "10.0.0.1", "IPv4"),
        ("FD00::0001", "fd00::1", "IPv6"),
        ("::ffff:10.0.0.1", "10.0.0.1", "IPv4"),
        ("bogus", None, None),
    ],
)
def test_ip_normalization(text: str, normal: str | None, family: str | None) -> None:
    assert (normalize_ip(text), ip_family(text)) == (normal, family)


# --- desired Endpoints ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "service",
    [svc(no_selector=True), svc(svc_type="ExternalName", cluster_ip="")],
    ids=["no-selector", "extname"],
)
def test_endpoints_left_alone(service: ServiceInfo) -> None:
    assert desired_endpoints(service, [pod("p1", "10.244.0.1")], now=T0) is None


BASIC_STEPS = [
    ([], []),
    (["pod1"], [{"addresses": [address("pod1", "10.244.0.1")], "ports": PORT80}]),
    (
        ["pod1", "pod2"],
        [{"addresses": [address("pod1", "10.244.0.1"), address("pod2", "10.244.0.2")], "ports": PORT80}],
    ),
    (["pod2"], [{"addresses": [address("pod2", "10.244.0.2")], "ports": PORT80}]),
    ([], []),
]


@pytest.mark.parametrize(("names", "subsets"), BASIC_STEPS)
def test_conformance_basic_endpoint(names: list[str], subsets: list[Obj]) -> None:
    pods = [pod(n, f"10.244.0.{n[-1]}") for n in names]
    assert desired_endpoints(svc(), pods, now=T0) == endpoints(subsets)


def test_conformance_multiport_named_target_ports() -> None:
    service = svc(
        ports=[
            {"name": "portname1", "port": 80, "targetPort": "svc1"},
            {"name": "portname2", "port": 81, "targetPort": "svc2"},
        ]
    )
    pods = [
        pod("pod1", "10.244.0.1", ports=[("svc1", 100, "TCP")]),
        pod("pod2", "10.244.0.2", ports=[("svc2", 101, "TCP")]),
    ]
    assert desired_endpoints(service, pods, now=T0) == endpoints(
        [
            {
                "addresses": [address("pod1", "10.244.0.1")],
                "ports": [{"name": "portname1", "port": 100, "protocol": "TCP"}],
            },
            {
                "addresses": [address("pod2", "10.244.0.2")],
                "ports": [{"name": "portname2", "port": 101, "protocol": "TCP"}],
            },
        ]
    )


def test_repacking_groups_ports_by_the_addresses_offering_them() -> None:
    service = svc(
        ports=[{"name": "a", "port": 80, "targetPort": "http"}, {"name": "b", "port": 81, "targetPort": 9000}]
    )
    both = [pod("p2", "10.244.0.10"), pod("p1", "10.244.0.9")]
    result = desired_endpoints(service, both, now=T0)
    assert result is not None
    assert result["subsets"] == [
        {
            "addresses": [address("p1", "10.244.0.9"), address("p2", "10.244.0.10")],  # numeric IP order
            "ports": [
                {"name": "a", "port": 80, "protocol": "TCP"},
                {"name": "b", "port": 9000, "protocol": "TCP"},
            ],
        }
    ]
    # p3 has no port named "http": it serves only "b", so "a" and "b" now have different addresses.
    result = desired_endpoints(
        service, [*both, pod("p3", "10.244.0.11", ports=[("web", 8080, "TCP")])], now=T0
    )
    assert result is not None
    assert result["subsets"] == [
        {
            "addresses": [address("p1", "10.244.0.9"), address("p2", "10.244.0.10")],
            "ports": [{"name": "a", "port": 80, "protocol": "TCP"}],
        },
        {
            "addresses": [
                address("p1", "10.244.0.9"),
                address("p2", "10.244.0.10"),
                address("p3", "10.244.0.11"),
            ],
            "ports": [{"name": "b", "port": 9000, "protocol": "TCP"}],
        },
    ]


def test_readiness_splits_addresses() -> None:
    pods = [pod("ok", "10.244.0.1"), pod("slow", "10.244.0.2", ready=False)]
    assert desired_endpoints(svc(), pods, now=T0) == endpoints(
        [
            {
                "addresses": [address("ok", "10.244.0.1")],
                "notReadyAddresses": [address("slow", "10.244.0.2")],
                "ports": PORT80,
            }
        ]
    )


@pytest.mark.parametrize(
    ("publish", "expected"),
    [
        (
            False,
            [
                {
                    "addresses": [address("ok", "10.244.0.1")],
                    "notReadyAddresses": [address("slow", "10.244.0.2")],
                }
            ],
        ),
        (
            True,
            [
                {
                    "addresses": [
                        address("ok", "10.244.0.1"),
                        address("slow", "10.244.0.2"),
                        address("going", "10.244.0.3"),
                    ]
                }
            ],
        ),
    ],
)
def test_publish_not_ready_addresses(publish: bool, expected: list[Obj]) -> None:
    pods = [
        pod("ok", "10.244.0.1"),
        pod("slow", "10.244.0.2", ready=False),
        pod("going", "10.244.0.3", deleting=True),
        pod("done", "10.244.0.4", phase="Succeeded"),
        pod("failed", "10.244.0.5", phase="Failed"),
        pod("noip"),
    ]
    result = desired_endpoints(svc(publish=publish), pods, now=T0)
    assert result == endpoints([s | {"ports": PORT80} for s in expected])


def test_only_selected_pods_in_the_service_namespace() -> None:
    pods = [
        pod("mine", "10.244.0.1"),
        pod("other-ns", "10.244.0.2", ns="other"),
        pod("other-app", "10.244.0.3", labels={"app": "db"}),
        pod("extra-labels", "10.244.0.4", labels={"app": "web", "tier": "x"}),
    ]
    result = desired_endpoints(svc(), pods, now=T0)
    assert result is not None
    assert [a["targetRef"]["name"] for a in result["subsets"][0]["addresses"]] == ["mine", "extra-labels"]


@pytest.mark.parametrize(
    ("subdomain", "hostname"), [("web", "web-0"), ("other", ""), ("", "")], ids=["published", "other", "none"]
)
def test_hostname_needs_matching_subdomain(subdomain: str, hostname: str) -> None:
    p = pod("web-0", "10.244.0.1", hostname="web-0", subdomain=subdomain)
    result = desired_endpoints(svc(), [p], now=T0)
    assert result is not None
    assert result["subsets"][0]["addresses"] == [address("web-0", "10.244.0.1", hostname=hostname)]


def test_headless_service_label_and_portless_subsets() -> None:
    service = svc(cluster_ip="None", ports=[], labels={"team": "a", LABEL_HEADLESS: "stale"})
    result = desired_endpoints(
        service, [pod("p1", "10.244.0.1"), pod("p2", "10.244.0.2", ready=False)], now=T0
    )
    assert result == endpoints(
        [{"addresses": [address("p1", "10.244.0.1")], "notReadyAddresses": [address("p2", "10.244.0.2")]}],
        labels={"team": "a", LABEL_HEADLESS: ""},
    )
    with_ip = desired_endpoints(svc(labels={"team": "a", LABEL_HEADLESS: ""}), [], now=T0)
    assert with_ip is not None and with_ip["metadata"]["labels"] == {"team": "a"}


def test_address_family_follows_the_service() -> None:
    v4_only = pod("p", "10.244.0.1")
    obj = pod_obj("p", "10.244.0.1")
    obj["status"]["podIPs"].append({"ip": "fd00::1"})
    dual = PodInfo.from_object(obj)
    cases = [
        (svc(families=("IPv6", "IPv4"), cluster_ip="fd00:96::10"), dual, "fd00::1"),
        (svc(families=(), cluster_ip="fd00:96::10"), dual, "fd00::1"),  # from the ClusterIP
        (svc(families=(), cluster_ip="None", ports=[]), dual, "10.244.0.1"),  # from the pod's first IP
        (svc(), dual, "10.244.0.1"),
    ]
    for service, p, ip in cases:
        result = desired_endpoints(service, [p], now=T0)
        assert result is not None and result["subsets"][0]["addresses"][0]["ip"] == ip
    no_v6 = desired_endpoints(svc(families=("IPv6",)), [v4_only], now=T0)
    assert no_v6 is not None and "subsets" not in no_v6  # no address of the family: skipped


def test_trigger_time_and_current_metadata() -> None:
    current: Obj = {
        "metadata": {
            "name": "web",
            "namespace": "default",
            "resourceVersion": "42",
            "annotations": {
                "keep": "me",
                ANNOTATION_TRIGGER_TIME: "old",
                ANNOTATION_OVER_CAPACITY: "truncated",
            },
        }
    }
    result = desired_endpoints(svc(), [], now=None, current=current)
    assert result == {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "resourceVersion": "42",
            "annotations": {"keep": "me"},
        },
    }
    stamped = desired_endpoints(svc(), [], now=T0 + timedelta(seconds=1), current=current)
    assert stamped is not None
    assert stamped["metadata"]["annotations"] == {
        "keep": "me",
        ANNOTATION_TRIGGER_TIME: "2024-05-01T12:00:01Z",
    }
    assert current["metadata"]["annotations"][ANNOTATION_TRIGGER_TIME] == "old"  # input untouched


@pytest.mark.parametrize(
    ("ready", "not_ready", "kept_ready", "kept_not_ready", "truncated"),
    [
        (1000, 0, 1000, 0, False),
        (1001, 0, 1000, 0, True),
        (600, 600, 600, 400, True),
        (1100, 50, 1000, 0, True),
    ],
)
def test_truncation_at_capacity(
    ready: int, not_ready: int, kept_ready: int, kept_not_ready: int, truncated: bool
) -> None:
    pods = [pod(f"r{i}", f"10.1.{i // 256}.{i % 256}") for i in range(ready)]
    pods += [pod(f"n{i}", f"10.2.{i // 256}.{i % 256}", ready=False) for i in range(not_ready)]
    result = desired_endpoints(svc(), pods, now=T0)
    assert result is not None
    subsets = result["subsets"]
    assert sum(len(s.get("addresses", [])) for s in subsets) == kept_ready
    assert sum(len(s.get("notReadyAddresses", [])) for s in subsets) == kept_not_ready
    assert (ANNOTATION_OVER_CAPACITY in result["metadata"]["annotations"]) is truncated


def test_truncation_keeps_each_subsets_share() -> None:
    service = svc(ports=[{"name": "a", "port": 80, "targetPort": "a"}])
    pods = [pod(f"x{i}", f"10.1.{i // 256}.{i % 256}", ports=[("a", 80, "TCP")]) for i in range(900)]
    pods += [pod(f"y{i}", f"10.2.{i // 256}.{i % 256}", ports=[("a", 81, "TCP")]) for i in range(300)]
    result = desired_endpoints(service, pods, now=T0)
    assert result is not None
    assert [len(s["addresses"]) for s in result["subsets"]] == [750, 250]
    assert result["metadata"]["annotations"][ANNOTATION_OVER_CAPACITY] == "truncated"


def test_endpoints_changed() -> None:
    desired = desired_endpoints(svc(), [pod("p1", "10.244.0.1")], now=T0)
    assert desired is not None
    assert endpoints_changed(None, desired)
    same = desired | {"metadata": desired["metadata"] | {"annotations": {ANNOTATION_TRIGGER_TIME: "other"}}}
    assert not endpoints_changed(same, desired)  # the trigger time alone is no reason to write
    with_rv: Obj = {
        "metadata": desired["metadata"],
        "subsets": [
            {
                "addresses": [
                    address("p1", "10.244.0.1")
                    | {"targetRef": address("p1", "")["targetRef"] | {"resourceVersion": "9"}}
                ],
                "ports": [{"port": 80}],
            }
        ],
    }
    assert not endpoints_changed(with_rv, desired)  # pod resourceVersion and defaulted protocol
    other = desired_endpoints(svc(), [pod("p1", "10.244.0.1", ready=False)], now=T0)
    assert other is not None and endpoints_changed(other, desired)
    relabelled = desired_endpoints(svc(labels={"a": "b"}), [pod("p1", "10.244.0.1")], now=T0)
    assert relabelled is not None and endpoints_changed(desired, relabelled)
    capped = desired | {
        "metadata": desired["metadata"] | {"annotations": {ANNOTATION_OVER_CAPACITY: "truncated"}}
    }
    assert endpoints_changed(capped, desired)


def test_result_does_not_depend_on_pod_order() -> None:
    pods = [pod(f"p{i}", f"10.244.{i % 3}.{i}", ready=i % 4 != 0) for i in range(1, 40)]
    first = desired_endpoints(svc(), pods, now=T0)
    assert first == desired_endpoints(svc(), list(reversed(pods)), now=T0)
