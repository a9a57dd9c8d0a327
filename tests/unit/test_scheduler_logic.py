"""The scheduler's pure logic: filters, FailedScheduling messages, scores and the final pick."""

from __future__ import annotations

import random
from typing import Any

import pytest

from kubelite.scheduler.predicates import (
    DEFAULT_MAX_PODS,
    REASON_AFFINITY_CONFLICT,
    REASON_NODE_AFFINITY,
    REASON_NODE_AFFINITY_PREFILTER,
    REASON_NODE_NAME,
    REASON_PORTS,
    REASON_TAINTS,
    REASON_TOO_MANY_PODS,
    REASON_UNSCHEDULABLE,
    HostPort,
    NodeInfo,
    NodeSelectorTerm,
    PodSpecInfo,
    Taint,
    Toleration,
    affinity_node_names,
    filter_nodes,
    fit_error_message,
    node_reasons,
    pods_by_node,
)
from kubelite.scheduler.scoring import (
    Decision,
    normalize,
    pick,
    schedule,
    score_nodes,
)

Obj = dict[str, Any]
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def node(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    taints: list[Obj] | None = None,
    ready: str | None = "True",
    unschedulable: bool = False,
    max_pods: str | None = None,
    ip: str = "",
) -> NodeInfo:
    obj: Obj = {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {"conditions": [], "addresses": []},
    }
    if ready is not None:
        obj["status"]["conditions"].append({"type": "Ready", "status": ready})
    if max_pods is not None:
        obj["status"]["allocatable"] = {"pods": max_pods, "cpu": "4"}
    if ip:
        obj["status"]["addresses"] = [
            {"type": "InternalIP", "address": ip},
            {"type": "Hostname", "address": name},
        ]
    return NodeInfo.from_object(obj)


def pod(
    name: str = "p",
    *,
    namespace: str = "default",
    uid: str = "",
    labels: dict[str, str] | None = None,
    node_name: str = "",
    node_selector: dict[str, str] | None = None,
    required: list[Obj] | None = None,
    preferred: list[Obj] | None = None,
    tolerations: list[Obj] | None = None,
    ports: list[Obj] | None = None,
    owner: str = "",
    phase: str = "",
    preemption_policy: str = "",
) -> PodSpecInfo:
    spec: Obj = {"containers": [{"name": "c", "image": "agnhost", "ports": ports or []}]}
    if node_name:
        spec["nodeName"] = node_name
    if node_selector is not None:
        spec["nodeSelector"] = node_selector
    if tolerations is not None:
        spec["tolerations"] = tolerations
    if preemption_policy:
        spec["preemptionPolicy"] = preemption_policy
    affinity: Obj = {}
    if required is not None:
        affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": required}
    if preferred is not None:
        affinity["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    if affinity:
        spec["affinity"] = {"nodeAffinity": affinity}
    meta: Obj = {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}", "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": owner, "controller": True}
        ]
    return PodSpecInfo.from_object({"metadata": meta, "spec": spec, "status": {"phase": phase}})


def host_port(port: int, protocol: str = "TCP", host_ip: str = "") -> Obj:
    p: Obj = {"containerPort": 8080, "hostPort": port, "protocol": protocol}
    if host_ip:
        p["hostIP"] = host_ip
    return p


def expr(key: str, operator: str, *values: str) -> Obj:
    return {"key": key, "operator": operator, **({"values": list(values)} if values else {})}


# --- tolerations ------------------------------------------------------------------------------

TOLERATION_CASES = [
    # (toleration, taint, tolerated)
    (
        {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
        Taint("k", "NoSchedule", "v"),
        True,
    ),
    ({"key": "k", "value": "v", "effect": "NoSchedule"}, Taint("k", "NoSchedule", "v"), True),  # "" is Equal
    (
        {"key": "k", "operator": "Equal", "value": "x", "effect": "NoSchedule"},
        Taint("k", "NoSchedule", "v"),
        False,
    ),
    ({"key": "k", "operator": "Equal", "effect": "NoSchedule"}, Taint("k", "NoSchedule"), True),
    ({"key": "k", "operator": "Exists", "effect": "NoSchedule"}, Taint("k", "NoSchedule", "anything"), True),
    ({"key": "k", "operator": "Exists"}, Taint("k", "NoExecute", "v"), True),  # empty effect: all effects
    ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, Taint("k", "NoSchedule"), False),
    ({"key": "other", "operator": "Exists"}, Taint("k", "NoSchedule"), False),
    ({"operator": "Exists"}, Taint("anything", "NoExecute", "v"), True),  # empty key + Exists: everything
    ({"operator": "Exists", "effect": "NoSchedule"}, Taint("anything", "NoSchedule"), True),
    ({"operator": "Exists", "effect": "NoSchedule"}, Taint("anything", "PreferNoSchedule"), False),
    ({"key": "k", "operator": "Lt", "value": "5"}, Taint("k", "NoSchedule", "3"), False),  # unknown operator
    (CONTROL_PLANE_TAINT | {"operator": "Exists"}, Taint(**CONTROL_PLANE_TAINT), True),
]


@pytest.mark.parametrize(("toleration", "taint", "expected"), TOLERATION_CASES)
def test_toleration_tolerates_taint(toleration: Obj, taint: Taint, expected: bool) -> None:
    assert Toleration.from_object(toleration).tolerates(taint) is expected


def test_taint_renders_like_kubectl() -> None:
    assert str(Taint("node-role.kubernetes.io/control-plane", "NoSchedule")) == (
        "node-role.kubernetes.io/control-plane:NoSchedule"
    )
    assert str(Taint("dedicated", "NoExecute", "gpu")) == "dedicated=gpu:NoExecute"


# --- the filters, one node at a time -----------------------------------------------------------

FILTER_CASES: list[tuple[str, PodSpecInfo, NodeInfo, list[str]]] = [
    ("plain pod, plain node", pod(), node("n"), []),
    # TaintToleration
    ("control-plane taint", pod(), node("cp", taints=[CONTROL_PLANE_TAINT]), [REASON_TAINTS]),
    (
        "control-plane taint tolerated",
        pod(tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]),
        node("cp", taints=[CONTROL_PLANE_TAINT]),
        [],
    ),
    (
        "tolerate everything",
        pod(tolerations=[{"operator": "Exists"}]),
        node("cp", taints=[CONTROL_PLANE_TAINT]),
        [],
    ),
    (
        "NoExecute taint",
        pod(),
        node("n", taints=[{"key": "k", "value": "v", "effect": "NoExecute"}]),
        [REASON_TAINTS],
    ),
    (
        "PreferNoSchedule only scores",
        pod(),
        node("n", taints=[{"key": "k", "effect": "PreferNoSchedule"}]),
        [],
    ),
    (
        "value mismatch",
        pod(tolerations=[{"key": "k", "operator": "Equal", "value": "a", "effect": "NoSchedule"}]),
        node("n", taints=[{"key": "k", "value": "b", "effect": "NoSchedule"}]),
        [REASON_TAINTS],
    ),
    (
        "one of two taints tolerated",
        pod(tolerations=[{"key": "a", "operator": "Exists"}]),
        node("n", taints=[{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoSchedule"}]),
        [REASON_TAINTS],
    ),
    # NodeUnschedulable
    ("cordoned node", pod(), node("n", unschedulable=True), [REASON_UNSCHEDULABLE]),
    (
        "cordoned node, toleration",
        pod(
            tolerations=[
                {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}
            ]
        ),
        node("n", unschedulable=True),
        [],
    ),
    (
        "cordoned node, tolerate-all",
        pod(tolerations=[{"operator": "Exists"}]),
        node("n", unschedulable=True),
        [],
    ),
    (
        "cordoned and tainted: NodeUnschedulable runs first",
        pod(),
        node("n", unschedulable=True, taints=[CONTROL_PLANE_TAINT]),
        [REASON_UNSCHEDULABLE],
    ),
    # Ready condition
    ("not ready", pod(), node("n", ready="False"), [REASON_TAINTS]),
    ("ready unknown", pod(), node("n", ready="Unknown"), [REASON_TAINTS]),
    ("no Ready condition yet", pod(), node("n", ready=None), [REASON_TAINTS]),
    (
        "not ready, tolerated",
        pod(
            tolerations=[
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}
            ]
        ),
        node("n", ready="False"),
        [],
    ),
    (
        "unreachable needs its own toleration",
        pod(tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]),
        node("n", ready="Unknown"),
        [REASON_TAINTS],
    ),
    (
        "not-ready NoExecute toleration does not cover NoSchedule",
        pod(
            tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]
        ),
        node("n", ready="False"),
        [REASON_TAINTS],
    ),
    # NodeName
    ("nodeName elsewhere", pod(node_name="other"), node("n"), [REASON_NODE_NAME]),
    ("nodeName here", pod(node_name="n"), node("n"), []),
    (
        "nodeName beats taints",
        pod(node_name="other"),
        node("n", taints=[CONTROL_PLANE_TAINT]),
        [REASON_NODE_NAME],
    ),
    # nodeSelector
    ("nodeSelector matches", pod(node_selector={"disk": "ssd"}), node("n", labels={"disk": "ssd"}), []),
    (
        "nodeSelector value differs",
        pod(node_selector={"disk": "ssd"}),
        node("n", labels={"disk": "hdd"}),
        [REASON_NODE_AFFINITY],
    ),
    ("nodeSelector label missing", pod(node_selector={"disk": "ssd"}), node("n"), [REASON_NODE_AFFINITY]),
    ("empty nodeSelector", pod(node_selector={}), node("n"), []),
    (
        "nodeSelector by hostname",
        pod(node_selector={"kubernetes.io/hostname": "n"}),
        node("n"),
        [],
    ),
    (
        "taints are checked before affinity",
        pod(node_selector={"disk": "ssd"}),
        node("n", taints=[CONTROL_PLANE_TAINT]),
        [REASON_TAINTS],
    ),
]


@pytest.mark.parametrize(
    ("the_pod", "the_node", "expected"), [c[1:] for c in FILTER_CASES], ids=[c[0] for c in FILTER_CASES]
)
def test_filters_on_one_node(the_pod: PodSpecInfo, the_node: NodeInfo, expected: list[str]) -> None:
    assert node_reasons(the_pod, the_node, {}) == expected


ZONE_A = {"zone": "a", "gen": "5"}
AFFINITY_CASES: list[tuple[str, list[Obj], dict[str, str], bool]] = [
    # (id, nodeSelectorTerms, node labels, matches)
    ("In", [{"matchExpressions": [expr("zone", "In", "a", "b")]}], ZONE_A, True),
    ("In, other value", [{"matchExpressions": [expr("zone", "In", "b")]}], ZONE_A, False),
    ("In, label missing", [{"matchExpressions": [expr("rack", "In", "1")]}], ZONE_A, False),
    ("NotIn", [{"matchExpressions": [expr("zone", "NotIn", "b")]}], ZONE_A, True),
    ("NotIn, excluded", [{"matchExpressions": [expr("zone", "NotIn", "a")]}], ZONE_A, False),
    ("NotIn, label missing", [{"matchExpressions": [expr("rack", "NotIn", "1")]}], ZONE_A, True),
    ("Exists", [{"matchExpressions": [expr("zone", "Exists")]}], ZONE_A, True),
    ("Exists, missing", [{"matchExpressions": [expr("rack", "Exists")]}], ZONE_A, False),
    ("DoesNotExist", [{"matchExpressions": [expr("rack", "DoesNotExist")]}], ZONE_A, True),
    ("DoesNotExist, present", [{"matchExpressions": [expr("zone", "DoesNotExist")]}], ZONE_A, False),
    ("Gt", [{"matchExpressions": [expr("gen", "Gt", "4")]}], ZONE_A, True),
    ("Gt, equal", [{"matchExpressions": [expr("gen", "Gt", "5")]}], ZONE_A, False),
    ("Lt", [{"matchExpressions": [expr("gen", "Lt", "6")]}], ZONE_A, True),
    ("Lt, greater", [{"matchExpressions": [expr("gen", "Lt", "3")]}], ZONE_A, False),
    ("Gt on a non-integer label", [{"matchExpressions": [expr("zone", "Gt", "1")]}], ZONE_A, False),
    ("Gt on a missing label", [{"matchExpressions": [expr("rack", "Gt", "1")]}], ZONE_A, False),
    ("Gt with a non-integer value", [{"matchExpressions": [expr("gen", "Gt", "x")]}], ZONE_A, False),
    (
        "expressions are ANDed",
        [{"matchExpressions": [expr("zone", "In", "a"), expr("gen", "Lt", "5")]}],
        ZONE_A,
        False,
    ),
    (
        "terms are ORed",
        [{"matchExpressions": [expr("zone", "In", "b")]}, {"matchExpressions": [expr("gen", "In", "5")]}],
        ZONE_A,
        True,
    ),
    ("an empty term matches nothing", [{}], ZONE_A, False),
    ("empty matchExpressions list", [{"matchExpressions": []}], ZONE_A, False),
    ("no terms at all", [], ZONE_A, False),
    ("unknown operator", [{"matchExpressions": [expr("zone", "Like", "a")]}], ZONE_A, False),
    ("In without values", [{"matchExpressions": [expr("zone", "In")]}], ZONE_A, False),
    (
        "a broken term does not spoil a good one",
        [{"matchExpressions": [expr("zone", "Like", "a")]}, {"matchExpressions": [expr("zone", "In", "a")]}],
        ZONE_A,
        True,
    ),
    ("matchFields name In", [{"matchFields": [expr("metadata.name", "In", "n")]}], ZONE_A, True),
    ("matchFields name NotIn", [{"matchFields": [expr("metadata.name", "NotIn", "n")]}], ZONE_A, False),
    (
        "matchFields with two values is invalid",
        [{"matchFields": [expr("metadata.name", "In", "n", "m")]}],
        {},
        False,
    ),
    ("matchFields Exists is invalid", [{"matchFields": [expr("metadata.name", "Exists")]}], {}, False),
    (
        "fields and expressions together",
        [{"matchFields": [expr("metadata.name", "In", "n")], "matchExpressions": [expr("zone", "In", "b")]}],
        ZONE_A,
        False,
    ),
]


@pytest.mark.parametrize(
    ("terms", "labels", "matches"), [c[1:] for c in AFFINITY_CASES], ids=[c[0] for c in AFFINITY_CASES]
)
def test_required_node_affinity(terms: list[Obj], labels: dict[str, str], matches: bool) -> None:
    reasons = node_reasons(pod(required=terms), node("n", labels=labels), {})
    assert reasons == ([] if matches else [REASON_NODE_AFFINITY])


def test_node_selector_and_affinity_must_both_match() -> None:
    the_pod = pod(node_selector={"disk": "ssd"}, required=[{"matchExpressions": [expr("zone", "In", "a")]}])
    assert node_reasons(the_pod, node("n", labels={"disk": "ssd", "zone": "a"}), {}) == []
    assert node_reasons(the_pod, node("n", labels={"disk": "ssd", "zone": "b"}), {}) == [REASON_NODE_AFFINITY]
    assert node_reasons(the_pod, node("n", labels={"zone": "a"}), {}) == [REASON_NODE_AFFINITY]


def test_node_selector_term_keeps_parse_errors() -> None:
    term = NodeSelectorTerm.from_object({"matchExpressions": [expr("zone", "Like", "a")]})
    assert "Like" in term.error
    assert not term.empty
    assert NodeSelectorTerm.from_object({}).empty


@pytest.mark.parametrize(
    ("terms", "names"),
    [
        ([{"matchFields": [expr("metadata.name", "In", "a")]}], {"a"}),
        (
            [
                {"matchFields": [expr("metadata.name", "In", "a")]},
                {"matchFields": [expr("metadata.name", "In", "b")]},
            ],
            {"a", "b"},
        ),
        (
            [
                {"matchFields": [expr("metadata.name", "In", "a")]},
                {"matchExpressions": [expr("z", "Exists")]},
            ],
            None,
        ),
        ([{"matchFields": [expr("metadata.name", "NotIn", "a")]}], None),
        (
            [{"matchFields": [expr("metadata.name", "In", "a"), expr("metadata.name", "In", "b")]}],
            set(),
        ),
        ([], None),
    ],
)
def test_node_affinity_prefilter_names(terms: list[Obj], names: set[str] | None) -> None:
    result = affinity_node_names(pod(required=terms))
    assert (None if result is None else set(result)) == names


def test_match_fields_narrow_the_candidates_like_the_prefilter() -> None:
    nodes = [node("a"), node("b", taints=[CONTROL_PLANE_TAINT]), node("c")]
    the_pod = pod(required=[{"matchFields": [expr("metadata.name", "In", "b")]}])
    feasible, reasons = filter_nodes(the_pod, nodes, {})
    assert feasible == []
    assert reasons == {
        "a": [REASON_NODE_AFFINITY_PREFILTER],
        "b": [REASON_TAINTS],
        "c": [REASON_NODE_AFFINITY_PREFILTER],
    }
    assert fit_error_message(the_pod, 3, reasons) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't satisfy plugin(s) "
        "[NodeAffinity]. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )


def test_conflicting_match_fields_fail_the_pod_before_any_node() -> None:
    the_pod = pod(
        required=[{"matchFields": [expr("metadata.name", "In", "a"), expr("metadata.name", "In", "b")]}]
    )
    feasible, reasons = filter_nodes(the_pod, [node("a"), node("b")], {})
    assert feasible == []
    assert reasons == {"a": [REASON_AFFINITY_CONFLICT], "b": [REASON_AFFINITY_CONFLICT]}
    assert fit_error_message(the_pod, 2, reasons) == (
        "0/2 nodes are available: pod affinity terms conflict. preemption: 0/2 nodes are available: "
        "2 Preemption is not helpful for scheduling."
    )


# --- host ports ------------------------------------------------------------------------------

PORT_CASES: list[tuple[str, list[Obj], list[Obj], bool]] = [
    # (id, ports of a pod already on the node, ports of the new pod, fits)
    ("no host ports", [host_port(80)], [{"containerPort": 80}], True),
    ("same port, same IP", [host_port(80, host_ip="10.0.0.1")], [host_port(80, host_ip="10.0.0.1")], False),
    ("same port, wildcard vs empty", [host_port(80, host_ip="0.0.0.0")], [host_port(80)], False),
    ("wildcard holder blocks any IP", [host_port(80)], [host_port(80, host_ip="10.0.0.1")], False),
    ("wildcard wanted, any IP held", [host_port(80, host_ip="10.0.0.1")], [host_port(80)], False),
    ("distinct IPs", [host_port(80, host_ip="127.0.0.1")], [host_port(80, host_ip="10.0.0.1")], True),
    ("different protocols", [host_port(80, "TCP")], [host_port(80, "UDP")], True),
    ("SCTP vs TCP", [host_port(80, "SCTP")], [host_port(80)], True),
    ("different ports", [host_port(80)], [host_port(81)], True),
    ("protocol defaults to TCP", [{"containerPort": 1, "hostPort": 80}], [host_port(80, "TCP")], False),
    (
        "'::' is not a wildcard (as upstream)",
        [host_port(80, host_ip="::")],
        [host_port(80, host_ip="::1")],
        True,
    ),
    (
        "one of several ports clashes",
        [host_port(80), host_port(443)],
        [host_port(8443), host_port(443)],
        False,
    ),
]


@pytest.mark.parametrize(
    ("existing", "wanted", "fits"), [c[1:] for c in PORT_CASES], ids=[c[0] for c in PORT_CASES]
)
def test_host_port_conflicts(existing: list[Obj], wanted: list[Obj], fits: bool) -> None:
    on_node = {"n": [pod("old", ports=existing, node_name="n")]}
    assert node_reasons(pod("new", ports=wanted), node("n"), on_node) == ([] if fits else [REASON_PORTS])


def test_conformance_hostport_same_port_different_ip_and_protocol_fit_on_one_node() -> None:
    """[sig-network] HostPort validates that there is no conflict between pods with same hostPort but
    different hostIP and protocol: pod1 127.0.0.1/TCP, pod2 <node IP>/TCP, pod3 <node IP>/UDP, port 54321."""
    worker = node("worker", ip="172.18.0.3")
    node_ip = worker.address()
    assert node_ip == "172.18.0.3"
    selector = {"kubernetes.io/hostname": "worker"}
    specs = [("pod1", "127.0.0.1", "TCP"), ("pod2", node_ip, "TCP"), ("pod3", node_ip, "UDP")]
    placed: list[PodSpecInfo] = []
    for name, ip, protocol in specs:
        new = pod(name, node_selector=selector, ports=[host_port(54321, protocol, ip)])
        decision = schedule(new, [worker], pods_by_node(placed))
        assert decision.node == "worker", decision.message
        placed.append(pod(name, node_name="worker", ports=[host_port(54321, protocol, ip)]))


def test_conformance_hostport_wildcard_conflicts_with_node_ip() -> None:
    """[sig-scheduling] validates that there exists conflict between pods with same hostPort and protocol
    but one using 0.0.0.0 hostIP."""
    worker = node("worker", ip="172.18.0.3")
    pod4 = pod("pod4", node_name="worker", ports=[host_port(54322, "TCP", "0.0.0.0")])
    pod5 = pod(
        "pod5",
        node_selector={"kubernetes.io/hostname": "worker"},
        ports=[host_port(54322, "TCP", "172.18.0.3")],
    )
    decision = schedule(pod5, [worker], pods_by_node([pod4]))
    assert decision.node is None
    assert decision.message == (
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. "
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    )


def test_terminal_pods_and_the_pod_itself_hold_no_ports() -> None:
    the_pod = pod("web", uid="u1", ports=[host_port(80)])
    occupants = {
        "n": [
            pod("done", node_name="n", ports=[host_port(80)], phase="Succeeded"),
            pod("failed", node_name="n", ports=[host_port(80)], phase="Failed"),
            pod("web", uid="u1", node_name="n", ports=[host_port(80)]),
        ]
    }
    assert node_reasons(the_pod, node("n"), occupants) == []
    occupants["n"].append(pod("running", node_name="n", ports=[host_port(80)], phase="Running"))
    assert node_reasons(the_pod, node("n"), occupants) == [REASON_PORTS]


def test_host_port_is_symmetric() -> None:
    a, b = HostPort(80, "TCP", "0.0.0.0"), HostPort(80, "TCP", "10.0.0.1")
    assert a.conflicts_with(b)
    assert b.conflicts_with(a)
    assert not HostPort(80, "TCP", "10.0.0.2").conflicts_with(b)


# --- pod count ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_pods", "running", "fits"),
    [
        ("2", 1, True),
        ("2", 2, False),
        ("0", 0, False),
        (None, 109, True),
        (None, 110, False),
        ("bogus", 3, True),
    ],
)
def test_pod_count_capacity(max_pods: str | None, running: int, fits: bool) -> None:
    the_node = node("n", max_pods=max_pods)
    occupants = {"n": [pod(f"p{i}", node_name="n") for i in range(running)]}
    assert node_reasons(pod("new"), the_node, occupants) == ([] if fits else [REASON_TOO_MANY_PODS])


def test_ports_are_checked_before_pod_count() -> None:
    occupants = {"n": [pod("old", node_name="n", ports=[host_port(80)])]}
    assert node_reasons(pod("new", ports=[host_port(80)]), node("n", max_pods="1"), occupants) == [
        REASON_PORTS
    ]


# --- reading API objects -----------------------------------------------------------------------


def test_node_info_from_object() -> None:
    info = NodeInfo.from_object(
        {
            "metadata": {"name": "kl-worker", "labels": {"a": "b"}},
            "spec": {"taints": [CONTROL_PLANE_TAINT], "podCIDR": "10.244.1.0/24"},
            "status": {
                "allocatable": {"pods": "42"},
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"},
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "172.18.0.2"},
                    {"type": "Hostname", "address": "w"},
                ],
            },
        }
    )
    assert info.name == "kl-worker"
    assert info.labels == {"a": "b"}
    assert info.taints == (Taint("node-role.kubernetes.io/control-plane", "NoSchedule"),)
    assert info.ready and not info.unschedulable
    assert info.allocatable_pods == 42
    assert info.address() == "172.18.0.2"
    assert info.address("Hostname") == "w"
    assert info.address("ExternalIP") is None
    assert info.effective_taints == info.taints


def test_node_info_defaults_for_a_bare_node() -> None:
    info = NodeInfo.from_object({"metadata": {"name": "n"}})
    assert info.ready_status == ""
    assert not info.ready
    assert info.allocatable_pods == DEFAULT_MAX_PODS
    assert info.effective_taints == (Taint("node.kubernetes.io/not-ready", "NoSchedule"),)


def test_declared_not_ready_taint_is_not_doubled() -> None:
    info = node("n", ready="False", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
    assert info.effective_taints == (Taint("node.kubernetes.io/not-ready", "NoSchedule"),)


def test_pod_spec_info_from_object() -> None:
    info = PodSpecInfo.from_object(
        {
            "metadata": {
                "name": "web-1",
                "namespace": "prod",
                "uid": "u",
                "labels": {"app": "web"},
                "ownerReferences": [
                    {"kind": "Node", "uid": "not-a-controller"},
                    {"kind": "ReplicaSet", "uid": "rs-uid", "controller": True},
                ],
            },
            "spec": {
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"operator": "Exists"}],
                "containers": [
                    {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]},
                    {
                        "name": "b",
                        "ports": [
                            {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"}
                        ],
                    },
                ],
                "initContainers": [{"name": "i", "ports": [{"containerPort": 1, "hostPort": 1}]}],
                "affinity": {
                    "nodeAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "weight": 7,
                                "preference": {"matchExpressions": [{"key": "z", "operator": "Exists"}]},
                            }
                        ]
                    }
                },
                "preemptionPolicy": "Never",
            },
            "status": {"phase": "Pending"},
        }
    )
    assert info.key == "prod/web-1"
    assert info.owner_uid == "rs-uid"
    assert info.node_selector == {"disk": "ssd"}
    assert info.tolerations == (Toleration(operator="Exists"),)
    assert info.host_ports == (HostPort(8080, "TCP", "0.0.0.0"), HostPort(53, "UDP", "10.0.0.1"))
    assert info.required_terms is None
    assert [p.weight for p in info.preferred_terms] == [7]
    assert info.preemption_policy == "Never"
    assert not info.terminal


def test_pods_by_node_skips_unbound_and_terminal_pods() -> None:
    pods = [
        pod("a", node_name="n1"),
        pod("b", node_name="n1", phase="Running"),
        pod("c"),
        pod("d", node_name="n2", phase="Succeeded"),
        pod("e", node_name="n2"),
    ]
    grouped = pods_by_node(pods)
    assert {k: [p.name for p in v] for k, v in grouped.items()} == {"n1": ["a", "b"], "n2": ["e"]}


# --- FailedScheduling messages -----------------------------------------------------------------


def test_failed_scheduling_message_of_the_brief() -> None:
    nodes = [
        node("control-plane", taints=[CONTROL_PLANE_TAINT], labels={"disk": "ssd"}),
        node("worker-1"),
        node("worker-2"),
    ]
    the_pod = pod(node_selector={"disk": "ssd"})
    decision = schedule(the_pod, nodes, {})
    assert decision == Decision(
        None,
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's node "
        "affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
        {
            "control-plane": [REASON_TAINTS],
            "worker-1": [REASON_NODE_AFFINITY],
            "worker-2": [REASON_NODE_AFFINITY],
        },
    )


@pytest.mark.parametrize(
    ("reasons", "policy", "message"),
    [
        (
            {f"n{i}": [REASON_TOO_MANY_PODS] for i in range(2)},
            "",
            "0/2 nodes are available: 2 Too many pods. preemption: 0/2 nodes are available: "
            "2 No preemption victims found for incoming pod.",
        ),
        (
            {"a": [REASON_UNSCHEDULABLE], "b": [REASON_PORTS], "c": [REASON_TAINTS]},
            "",
            "0/3 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, "
            "1 node(s) had untolerated taint(s), 1 node(s) were unschedulable. "
            "preemption: 0/3 nodes are available: "
            "1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.",
        ),
        (
            {"a": [REASON_TOO_MANY_PODS]},
            "Never",
            "0/1 nodes are available: 1 Too many pods. "
            "preemption: not eligible due to preemptionPolicy=Never.",
        ),
        (
            # Go sorts "<count> <reason>" as strings: "10 ..." comes before "2 ...".
            {
                **{f"t{i}": [REASON_TAINTS] for i in range(10)},
                "u1": [REASON_NODE_NAME],
                "u2": [REASON_NODE_NAME],
            },
            "",
            "0/12 nodes are available: 10 node(s) had untolerated taint(s), 2 node(s) didn't match the "
            "requested node name. preemption: 0/12 nodes are available: 12 Preemption is not helpful for "
            "scheduling.",
        ),
    ],
)
def test_fit_error_message(reasons: dict[str, list[str]], policy: str, message: str) -> None:
    assert fit_error_message(pod(preemption_policy=policy), len(reasons), reasons) == message


def test_no_nodes_at_all() -> None:
    assert schedule(pod(), [], {}) == Decision(None, "no nodes available to schedule pods")


def test_single_node_cluster_with_control_plane_taint() -> None:
    decision = schedule(pod(), [node("kl", taints=[CONTROL_PLANE_TAINT])], {})
    assert decision.message == (
        "0/1 nodes are available: 1 node(s) had untolerated taint(s). preemption: 0/1 nodes are available: "
        "1 Preemption is not helpful for scheduling."
    )


# --- scores and the pick -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reverse", "expected"),
    [
        ({"a": 0, "b": 0}, False, {"a": 0, "b": 0}),
        ({"a": 0, "b": 0}, True, {"a": 100, "b": 100}),
        ({"a": 1, "b": 3}, False, {"a": 33, "b": 100}),
        ({"a": 1, "b": 3}, True, {"a": 67, "b": 0}),
        ({"a": 2, "b": 0}, True, {"a": 0, "b": 100}),
        ({}, False, {}),
    ],
)
def test_normalize_like_default_normalize_score(
    raw: dict[str, int], reverse: bool, expected: dict[str, int]
) -> None:
    assert normalize(raw, reverse=reverse) == expected


def replicas(
    owner: str, where: dict[str, int], labels: dict[str, str] | None = None
) -> dict[str, list[PodSpecInfo]]:
    return {
        n: [pod(f"{owner}-{n}-{i}", node_name=n, owner=owner, labels=labels) for i in range(count)]
        for n, count in where.items()
    }


def test_replicas_spread_to_the_node_with_fewest() -> None:
    nodes = [node("a"), node("b"), node("c")]
    on_nodes = replicas("rs1", {"a": 2, "b": 1, "c": 0})
    # Unrelated pods make "c" the busiest node overall; spreading still wins.
    on_nodes["c"] = [pod(f"other-{i}", node_name="c", owner="rs2") for i in range(5)]
    decision = schedule(pod("new", owner="rs1"), nodes, on_nodes)
    assert decision.node == "c"
    assert decision.scores["c"] > decision.scores["b"] > decision.scores["a"]


def test_replicas_without_controller_spread_by_labels() -> None:
    nodes = [node("a"), node("b")]
    on_nodes = {
        "a": [pod("x", node_name="a", labels={"app": "web"})],
        "b": [pod("y", node_name="b", labels={"app": "db"})],
    }
    assert schedule(pod("new", labels={"app": "web"}), nodes, on_nodes).node == "b"
    assert schedule(pod("new", labels={"app": "db"}), nodes, on_nodes).node == "a"


def test_spreading_is_per_namespace() -> None:
    nodes = [node("a"), node("b")]
    on_nodes = {
        "a": [pod("x", node_name="a", labels={"app": "web"}, namespace="other")],
        "b": [pod("y", node_name="b", labels={"app": "web"}), pod("z", node_name="b", labels={"app": "web"})],
    }
    assert schedule(pod("new", labels={"app": "web"}), nodes, on_nodes).node == "a"


def test_successive_replicas_land_on_distinct_nodes() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    placed: list[PodSpecInfo] = []
    for i in range(6):
        decision = schedule(pod(f"r{i}", owner="rs"), nodes, pods_by_node(placed))
        assert decision.node is not None
        placed.append(pod(f"r{i}", node_name=decision.node, owner="rs"))
    assert [p.node_name for p in placed] == ["n1", "n2", "n3", "n1", "n2", "n3"]


def test_preferred_node_affinity_weights() -> None:
    nodes = [node("a", labels={"zone": "a"}), node("b", labels={"zone": "b", "ssd": "yes"}), node("c")]
    preferred = [
        {"weight": 10, "preference": {"matchExpressions": [expr("zone", "In", "a")]}},
        {"weight": 30, "preference": {"matchExpressions": [expr("ssd", "Exists")]}},
        {
            "weight": 0,
            "preference": {"matchExpressions": [expr("zone", "DoesNotExist")]},
        },  # weight 0: ignored
    ]
    scores = score_nodes(pod(preferred=preferred), nodes, {})
    assert scores["b"] > scores["a"] > scores["c"]
    assert schedule(pod(preferred=preferred), nodes, {}).node == "b"


def test_prefer_no_schedule_taint_is_penalised_not_filtered() -> None:
    soft = {"key": "maintenance", "effect": "PreferNoSchedule"}
    nodes = [node("a", taints=[soft]), node("b")]
    assert schedule(pod(), nodes, {}).node == "b"
    # Alone, the softly tainted node is still used.
    assert schedule(pod(), nodes[:1], {}).node == "a"
    # A toleration (with no effect, or PreferNoSchedule) removes the penalty.
    tolerant = pod(tolerations=[{"key": "maintenance", "operator": "Exists"}])
    scores = score_nodes(tolerant, nodes, {})
    assert scores["a"] == scores["b"]
    # A NoSchedule-only toleration does not cover a PreferNoSchedule taint.
    wrong = pod(tolerations=[{"key": "maintenance", "operator": "Exists", "effect": "NoSchedule"}])
    assert score_nodes(wrong, nodes, {})["a"] < score_nodes(wrong, nodes, {})["b"]


def test_least_pods_breaks_remaining_ties() -> None:
    nodes = [node("a"), node("b", max_pods="10"), node("c")]
    on_nodes = {"a": [pod("x", node_name="a")], "c": []}
    scores = score_nodes(pod("new"), nodes, on_nodes)
    # c: 109 of 110 slots free after placing; a: 108/110; b: 9/10.
    assert scores == {"a": 3 * 100 + 2 * 100 + 98, "b": 3 * 100 + 2 * 100 + 90, "c": 3 * 100 + 2 * 100 + 99}
    assert schedule(pod("new"), nodes, on_nodes).node == "c"


def test_ties_go_to_the_first_node_name() -> None:
    nodes = [node("zeta"), node("alpha"), node("mid")]
    decision = schedule(pod(), nodes, {})
    assert decision.node == "alpha"
    assert len(set(decision.scores.values())) == 1
    assert decision.message == "Successfully assigned default/p to alpha"


def test_seeded_random_tie_break_is_reproducible_and_stays_among_the_best() -> None:
    scores = {"a": 5, "b": 5, "c": 5, "d": 1}
    picks = {pick(scores, random.Random(seed)) for seed in range(50)}
    assert picks == {"a", "b", "c"}
    assert pick(scores, random.Random(7)) == pick(scores, random.Random(7))
    assert pick(scores) == "a"


def test_single_feasible_node_is_taken_without_scores() -> None:
    nodes = [node("cp", taints=[CONTROL_PLANE_TAINT]), node("w")]
    decision = schedule(pod("web", namespace="shop"), nodes, {})
    assert decision == Decision("w", "Successfully assigned shop/web to w", {"cp": [REASON_TAINTS]})


def test_infeasible_nodes_are_never_scored() -> None:
    nodes = [node("cp", taints=[CONTROL_PLANE_TAINT]), node("w1"), node("w2", unschedulable=True), node("w3")]
    decision = schedule(pod(), nodes, {})
    assert set(decision.scores) == {"w1", "w3"}
    assert decision.node == "w1"


def test_daemonset_style_pod_pinned_by_match_fields() -> None:
    """DaemonSet pods carry a matchFields metadata.name term and tolerate not-ready / unschedulable."""
    tolerations = [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
    ]
    the_pod = pod(required=[{"matchFields": [expr("metadata.name", "In", "w2")]}], tolerations=tolerations)
    nodes = [node("w1"), node("w2", ready="False", unschedulable=True), node("w3")]
    decision = schedule(the_pod, nodes, {})
    assert decision.node == "w2"
