"""Server-side printing: the columns and cells kube-apiserver's printers produce, kind by kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubelite.api.resources import ResourceType
from kubelite.apiserver.humanize import format_label_selector, human_duration, label_selector_string
from kubelite.apiserver.tables import (
    format_endpoints,
    service_external_ip,
    service_ports,
    table_columns,
    to_table,
)

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def rt(group: str, version: str, kind: str, plural: str, namespaced: bool = True) -> ResourceType:
    return ResourceType(group, version, kind, plural, kind.lower(), namespaced)


POD = rt("", "v1", "Pod", "pods")
SERVICE = rt("", "v1", "Service", "services")
NODE = rt("", "v1", "Node", "nodes", namespaced=False)
EVENT = rt("", "v1", "Event", "events")
DEPLOYMENT = rt("apps", "v1", "Deployment", "deployments")
REPLICASET = rt("apps", "v1", "ReplicaSet", "replicasets")
DAEMONSET = rt("apps", "v1", "DaemonSet", "daemonsets")
INGRESS = rt("networking.k8s.io", "v1", "Ingress", "ingresses")


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cells(resource: ResourceType, obj: dict[str, Any]) -> list[Any]:
    row: list[Any] = to_table(resource, [obj], now=NOW)["rows"][0]["cells"]
    return row


# ── columns ──────────────────────────────────────────────────────────────────────────

COLUMNS = [
    (
        POD,
        ["Name", "Ready", "Status", "Restarts", "Age"],
        ["IP", "Node", "Nominated Node", "Readiness Gates"],
    ),
    (SERVICE, ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"], ["Selector"]),
    (rt("", "v1", "Endpoints", "endpoints"), ["Name", "Endpoints", "Age"], []),
    (
        rt("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
        ["Name", "AddressType", "Ports", "Endpoints", "Age"],
        [],
    ),
    (
        NODE,
        ["Name", "Status", "Roles", "Age", "Version"],
        ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"],
    ),
    (rt("", "v1", "Namespace", "namespaces", False), ["Name", "Status", "Age"], []),
    (rt("", "v1", "ConfigMap", "configmaps"), ["Name", "Data", "Age"], []),
    (rt("", "v1", "Secret", "secrets"), ["Name", "Type", "Data", "Age"], []),
    (
        EVENT,
        ["Last Seen", "Type", "Reason", "Object", "Message"],
        ["Subobject", "Source", "First Seen", "Count", "Name"],
    ),
    (rt("", "v1", "ServiceAccount", "serviceaccounts"), ["Name", "Secrets", "Age"], []),
    (DEPLOYMENT, ["Name", "Ready", "Up-to-date", "Available", "Age"], ["Containers", "Images", "Selector"]),
    (REPLICASET, ["Name", "Desired", "Current", "Ready", "Age"], ["Containers", "Images", "Selector"]),
    (
        DAEMONSET,
        ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age"],
        ["Containers", "Images", "Selector"],
    ),
    (INGRESS, ["Name", "Class", "Hosts", "Address", "Ports", "Age"], []),
    (
        rt("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False),
        ["Name", "Controller", "Parameters", "Age"],
        [],
    ),
    (rt("coordination.k8s.io", "v1", "Lease", "leases"), ["Name", "Holder", "Age"], []),
    (
        rt("extensions", "v1beta1", "Ingress", "ingresses"),
        ["Name", "Class", "Hosts", "Address", "Ports", "Age"],
        [],
    ),
    (rt("example.com", "v1", "Widget", "widgets"), ["Name", "Created At"], []),
]


@pytest.mark.parametrize(("resource", "normal", "wide"), COLUMNS, ids=lambda v: getattr(v, "kind", None))
def test_columns_are_kube_apiservers(resource: ResourceType, normal: list[str], wide: list[str]) -> None:
    columns = table_columns(resource)
    assert [c["name"] for c in columns if c["priority"] == 0] == normal
    assert [c["name"] for c in columns if c["priority"] == 1] == wide
    for column in columns:
        assert set(column) == {"name", "type", "format", "description", "priority"}
        assert column["description"], column["name"]
        assert column["format"] == ("name" if column["name"] == "Name" else "")


def test_column_types_and_descriptions_come_from_the_api_docs() -> None:
    pod = {c["name"]: c for c in table_columns(POD)}
    assert pod["Restarts"]["type"] == "string"
    assert pod["Name"]["description"].startswith("Name must be unique within a namespace.")
    assert pod["Age"]["description"].startswith("CreationTimestamp is a timestamp")
    assert {c["name"]: c["type"] for c in table_columns(REPLICASET)}["Desired"] == "integer"
    assert table_columns(rt("example.com", "v1", "Widget", "widgets"))[1]["type"] == "date"


# ── table envelope ───────────────────────────────────────────────────────────────────


def test_table_envelope_and_partial_object_metadata() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a", "resourceVersion": "7"},
        "data": {},
    }
    table = to_table(
        rt("", "v1", "ConfigMap", "configmaps"),
        [obj],
        now=NOW,
        list_meta={"resourceVersion": "9", "continue": "", "selfLink": "x"},
    )
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "9"}
    assert table["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": "a", "resourceVersion": "7"},
    }


def test_include_object_modes() -> None:
    cm = rt("", "v1", "ConfigMap", "configmaps")
    obj = {"metadata": {"name": "a"}}
    assert to_table(cm, [obj], include_object="None")["rows"][0]["object"] is None
    full = to_table(cm, [obj], include_object="Object")["rows"][0]["object"]
    assert full == {"metadata": {"name": "a"}, "apiVersion": "v1", "kind": "ConfigMap"}
    assert to_table(cm, [obj], include_object="")["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    with pytest.raises(ValueError, match="includeObject"):
        to_table(cm, [obj], include_object="Everything")


def test_watch_events_after_the_first_have_no_column_definitions() -> None:
    first = to_table(POD, [{"metadata": {"name": "a"}}], now=NOW)
    later = to_table(POD, [{"metadata": {"name": "a"}}], now=NOW, no_headers=True)
    assert first["columnDefinitions"] == table_columns(POD)
    assert later["columnDefinitions"] is None
    assert later["rows"] == first["rows"]


def test_default_printer_shows_rfc3339_creation_time() -> None:
    widget = rt("example.com", "v1", "Widget", "widgets")
    assert cells(widget, {"metadata": {"name": "w", "creationTimestamp": "2024-03-04T05:06:07+02:00"}}) == [
        "w",
        "2024-03-04T03:06:07Z",
    ]
    assert cells(widget, {"metadata": {"name": "w"}}) == ["w", "0001-01-01T00:00:00Z"]


# ── pods ─────────────────────────────────────────────────────────────────────────────


def running(name: str = "a", restarts: int = 0, ready: bool = True, **extra: Any) -> dict[str, Any]:
    status = {"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {}}}
    return {**status, **extra}


def pod(status: dict[str, Any], spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    spec = spec or {"containers": [{"name": "a"}]}
    return {
        "metadata": {"name": "p", "creationTimestamp": ago(minutes=5), **meta},
        "spec": spec,
        "status": status,
    }


def test_running_pod_with_wide_cells() -> None:
    obj = pod(
        {
            "phase": "Running",
            "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [running()],
        },
        {"containers": [{"name": "a"}], "nodeName": "n1"},
    )
    assert cells(POD, obj) == ["p", "1/1", "Running", "0", "5m", "10.0.0.5", "n1", "<none>", "<none>"]


def test_pod_ip_falls_back_to_pod_ip_field() -> None:
    obj = pod({"phase": "Running", "podIP": "10.0.0.6"})
    assert cells(POD, obj)[5] == "10.0.0.6"


def test_crash_looping_pod_shows_reason_and_restart_age() -> None:
    crashed = running(
        restarts=5,
        ready=False,
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        lastState={"terminated": {"exitCode": 1, "finishedAt": ago(minutes=3, seconds=10)}},
    )
    obj = pod({"phase": "Running", "containerStatuses": [crashed]})
    assert cells(POD, obj)[1:4] == ["0/1", "CrashLoopBackOff", "5 (3m10s ago)"]


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"waiting": {"reason": "ContainerCreating"}}, "ContainerCreating"),
        ({"waiting": {"reason": "ImagePullBackOff"}}, "ImagePullBackOff"),
        ({"terminated": {"exitCode": 0, "reason": "Completed"}}, "Completed"),
        ({"terminated": {"exitCode": 137}}, "ExitCode:137"),
        ({"terminated": {"exitCode": 0, "signal": 9}}, "Signal:9"),
    ],
)
def test_container_state_becomes_pod_status(state: dict[str, Any], reason: str) -> None:
    obj = pod({"phase": "Pending", "containerStatuses": [running(ready=False, state=state)]})
    assert cells(POD, obj)[2] == reason


def test_completed_pods_are_marked_with_a_row_condition() -> None:
    done = running(ready=False, state={"terminated": {"exitCode": 0, "reason": "Completed"}})
    row = to_table(POD, [pod({"phase": "Succeeded", "containerStatuses": [done]})], now=NOW)["rows"][0]
    assert row["cells"][2] == "Completed"
    assert row["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    failed = to_table(POD, [pod({"phase": "Failed"})], now=NOW)["rows"][0]
    assert failed["conditions"][0]["reason"] == "Failed"
    assert "conditions" not in to_table(POD, [pod({"phase": "Running"})], now=NOW)["rows"][0]


def test_completed_container_beside_a_running_one_is_running_or_not_ready() -> None:
    statuses = [
        running("b"),
        running("a", ready=False, state={"terminated": {"exitCode": 0, "reason": "Completed"}}),
    ]
    spec = {"containers": [{"name": "a"}, {"name": "b"}]}
    ready = pod(
        {
            "phase": "Running",
            "containerStatuses": statuses,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
        spec,
    )
    assert cells(POD, ready)[1:3] == ["1/2", "Running"]
    assert cells(POD, pod({"phase": "Running", "containerStatuses": statuses}, spec))[2] == "NotReady"


INIT_SPEC = {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}


@pytest.mark.parametrize(
    ("second_init", "reason"),
    [
        ({"running": {}}, "Init:1/2"),
        ({"waiting": {"reason": "CrashLoopBackOff"}}, "Init:CrashLoopBackOff"),
        ({"waiting": {"reason": "PodInitializing"}}, "Init:1/2"),
        ({"terminated": {"exitCode": 2}}, "Init:ExitCode:2"),
        ({"terminated": {"exitCode": 1, "signal": 15}}, "Init:Signal:15"),
        ({"terminated": {"exitCode": 1, "reason": "Error"}}, "Init:Error"),
    ],
)
def test_init_container_progress(second_init: dict[str, Any], reason: str) -> None:
    statuses = [
        {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "i2", "restartCount": 0, "state": second_init},
    ]
    obj = pod(
        {"phase": "Pending", "initContainerStatuses": statuses, "containerStatuses": [running(ready=False)]},
        INIT_SPEC,
    )
    assert cells(POD, obj)[1:3] == ["0/1", reason]


def test_sidecar_init_containers_count_as_containers() -> None:
    spec = {"initContainers": [{"name": "side", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}
    statuses = {
        "phase": "Running",
        "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
        "initContainerStatuses": [running("side", restarts=2, started=True)],
        "containerStatuses": [running("a")],
    }
    assert cells(POD, pod(statuses, spec))[1:4] == ["2/2", "Running", "2"]


def test_terminating_unknown_and_gated_pods() -> None:
    deleting = pod({"phase": "Running", "containerStatuses": [running()]}, deletionTimestamp=ago(seconds=1))
    assert cells(POD, deleting)[2] == "Terminating"
    finished = pod({"phase": "Succeeded"}, deletionTimestamp=ago(seconds=1))
    assert cells(POD, finished)[2] == "Succeeded"
    lost = pod({"phase": "Running", "reason": "NodeLost"}, deletionTimestamp=ago(seconds=1))
    assert cells(POD, lost)[2] == "Unknown"
    gated = pod(
        {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
        }
    )
    assert cells(POD, gated)[2] == "SchedulingGated"
    evicted = pod({"phase": "Failed", "reason": "Evicted"})
    assert cells(POD, evicted)[2] == "Evicted"


def test_readiness_gates_count_true_conditions() -> None:
    spec = {
        "containers": [{"name": "a"}],
        "readinessGates": [{"conditionType": "x/a"}, {"conditionType": "x/b"}],
    }
    status = {
        "phase": "Running",
        "conditions": [{"type": "x/a", "status": "True"}, {"type": "x/b", "status": "False"}],
    }
    assert cells(POD, pod(status, spec))[8] == "1/2"


# ── services and endpoints ───────────────────────────────────────────────────────────


def svc(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "s", "creationTimestamp": ago(days=3)}, "spec": spec, "status": status or {}}


def test_cluster_ip_service_row() -> None:
    obj = svc(
        {
            "type": "ClusterIP",
            "clusterIPs": ["10.96.0.1"],
            "ports": [{"port": 443, "protocol": "TCP"}],
            "selector": {"b": "2", "a": "1"},
        }
    )
    assert cells(SERVICE, obj) == ["s", "ClusterIP", "10.96.0.1", "<none>", "443/TCP", "3d", "a=1,b=2"]


def test_headless_service_without_ports_or_selector() -> None:
    obj = svc({"clusterIP": "None"})
    assert cells(SERVICE, obj) == ["s", "ClusterIP", "None", "<none>", "<none>", "3d", "<none>"]


def test_service_port_strings() -> None:
    ports = [
        {"port": 80, "nodePort": 30036, "protocol": "TCP"},
        {"port": 53, "protocol": "UDP"},
        {"port": 8080},
    ]
    assert service_ports(ports) == "80:30036/TCP,53/UDP,8080/TCP"
    assert service_ports([]) == ""


@pytest.mark.parametrize(
    ("spec", "status", "external"),
    [
        ({"type": "ClusterIP"}, {}, "<none>"),
        ({"type": "NodePort", "externalIPs": ["1.2.3.4", "5.6.7.8"]}, {}, "1.2.3.4,5.6.7.8"),
        ({"type": "LoadBalancer"}, {}, "<pending>"),
        (
            {"type": "LoadBalancer"},
            {
                "loadBalancer": {
                    "ingress": [{"ip": "9.9.9.9"}, {"hostname": "lb.example.com"}, {"ip": "9.9.9.9"}]
                }
            },
            "9.9.9.9,lb.example.com",
        ),
        (
            {"type": "LoadBalancer", "externalIPs": ["1.1.1.1"]},
            {"loadBalancer": {"ingress": [{"ip": "2.2.2.2"}]}},
            "2.2.2.2,1.1.1.1",
        ),
        ({"type": "LoadBalancer", "externalIPs": ["1.1.1.1"]}, {}, "1.1.1.1"),
        ({"type": "ExternalName", "externalName": "db.example.com"}, {}, "db.example.com"),
        ({"type": "Weird"}, {}, "<unknown>"),
    ],
)
def test_service_external_ip(spec: dict[str, Any], status: dict[str, Any], external: str) -> None:
    assert service_external_ip(svc(spec, status)) == external


def test_load_balancer_addresses_are_never_truncated() -> None:
    long_host = "a-very-long-load-balancer-hostname.example.com"
    obj = svc({"type": "LoadBalancer"}, {"loadBalancer": {"ingress": [{"hostname": long_host}]}})
    assert cells(SERVICE, obj)[3] == long_host


def test_endpoints_list_three_then_more() -> None:
    subsets = [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
        {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]},
    ]
    assert format_endpoints({"subsets": subsets}) == "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."
    assert format_endpoints({"subsets": subsets[1:]}) == "[fd00::1]:80"
    assert format_endpoints({"subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]}) == "10.0.0.9"
    assert format_endpoints({}) == "<none>"


def test_endpointslice_row() -> None:
    slice_ = {
        "metadata": {"name": "s-abc", "creationTimestamp": ago(seconds=42)},
        "addressType": "IPv4",
        "ports": [{"port": 80}, {"name": "dns"}, {}, {"port": 1}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3", "10.0.0.4"]}],
    }
    es = rt("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
    assert cells(es, slice_) == [
        "s-abc",
        "IPv4",
        "80,dns,* + 1 more...",
        "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...",
        "42s",
    ]
    assert cells(es, {"metadata": {"name": "e"}, "addressType": "IPv6"})[2:4] == ["<unset>", "<unset>"]


# ── other kinds ──────────────────────────────────────────────────────────────────────


def test_node_rows() -> None:
    node = {
        "metadata": {
            "name": "n1",
            "creationTimestamp": ago(days=10),
            "labels": {
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/": "",
                "kubernetes.io/role": "edge",
            },
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "addresses": [
                {"type": "InternalIP", "address": "192.168.0.2"},
                {"type": "Hostname", "address": "n1"},
            ],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian"},
        },
    }
    assert cells(NODE, node) == [
        "n1", "NotReady,SchedulingDisabled", "control-plane,edge", "10d", "v1.33.0",
        "192.168.0.2", "<none>", "Debian", "<unknown>", "<unknown>",
    ]  # fmt: skip
    assert cells(NODE, {"metadata": {"name": "n2"}})[1:3] == ["Unknown", "<none>"]


def test_event_rows() -> None:
    event = {
        "metadata": {"name": "p.17a"},
        "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{a}"},
        "reason": "BackOff",
        "message": "  Back-off restarting failed container \n",
        "type": "Warning",
        "count": 4,
        "firstTimestamp": ago(hours=2),
        "lastTimestamp": ago(minutes=1),
        "source": {"component": "kubelet", "host": "n1"},
    }
    assert cells(EVENT, event) == [
        "60s", "Warning", "BackOff", "pod/p", "spec.containers{a}", "kubelet, n1",
        "Back-off restarting failed container", "120m", 4, "p.17a",
    ]  # fmt: skip
    new_style = {
        "metadata": {"name": "e"},
        "involvedObject": {"kind": "Node"},
        "eventTime": ago(seconds=30),
        "reportingComponent": "scheduler",
    }
    assert cells(EVENT, new_style)[0:9] == ["30s", "", "", "node", "", "scheduler", "", "30s", 1]
    series = {**new_style, "series": {"count": 9, "lastObservedTime": ago(seconds=5)}}
    assert cells(EVENT, series)[0] == "5s"
    assert cells(EVENT, series)[8] == 9


def test_workload_rows_with_selectors() -> None:
    template = {
        "spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]}
    }
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["b", "a"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
    }
    deploy = {
        "metadata": {"name": "d", "creationTimestamp": ago(hours=30)},
        "spec": {"replicas": 3, "selector": selector, "template": template},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert cells(DEPLOYMENT, deploy) == [
        "d", "2/3", 3, 2, "30h", "web,log", "nginx,busybox", "app=web,!canary,tier in (a,b)",
    ]  # fmt: skip
    assert cells(DEPLOYMENT, {"metadata": {"name": "d"}, "spec": {}})[1] == "0/1"
    assert cells(DEPLOYMENT, {"metadata": {"name": "d"}, "spec": {}})[7] == ""
    rs = {
        "metadata": {"name": "r"},
        "spec": {"replicas": 2, "template": template},
        "status": {"replicas": 2, "readyReplicas": 1},
    }
    assert cells(REPLICASET, rs)[1:4] == [2, 2, 1]
    assert cells(REPLICASET, rs)[7] == "<none>"
    ds = {
        "metadata": {"name": "ds"},
        "spec": {
            "selector": {"matchLabels": {"k": "v"}},
            "template": {"spec": {"nodeSelector": {"os": "linux"}}},
        },
        "status": {
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3,
            "numberReady": 2,
            "numberAvailable": 2,
        },
    }
    assert cells(DAEMONSET, ds) == ["ds", 3, 3, 2, 0, 2, "os=linux", "<unknown>", "", "", "k=v"]


def test_label_selector_strings() -> None:
    assert label_selector_string(None) == ""
    assert label_selector_string({}) == ""
    assert (
        label_selector_string({"matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["x"]}]})
        == "k notin (x)"
    )
    assert label_selector_string({"matchExpressions": [{"key": "k", "operator": "Exists"}]}) == "k"
    assert format_label_selector({}) == "<none>"
    assert format_label_selector({"matchExpressions": [{"key": "k", "operator": "Near"}]}) == "<error>"
    bad = {
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchExpressions": [{"key": "k", "operator": "In"}]}},
    }
    assert cells(DEPLOYMENT, bad)[7] == "<invalid>"


def test_ingress_rows() -> None:
    ing = {
        "metadata": {"name": "i"},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "a"}, {}, {"host": "b"}, {"host": "c"}, {"host": "d"}],
            "tls": [{"hosts": ["a"]}],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}},
    }
    assert cells(INGRESS, ing)[:5] == ["i", "nginx", "a,b,c + 2 more...", "1.1.1.1", "80, 443"]
    assert cells(INGRESS, {"metadata": {"name": "j"}, "spec": {}})[1:5] == ["<none>", "*", "", "80"]
    classes = rt("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False)
    params = {"kind": "Params", "apiGroup": "k8s.example.com", "name": "p"}
    ic = {"metadata": {"name": "c"}, "spec": {"controller": "example.com/ctl", "parameters": params}}
    assert cells(classes, ic)[1:3] == ["example.com/ctl", "Params.k8s.example.com/p"]
    assert cells(classes, {"metadata": {"name": "c"}, "spec": {"controller": "x"}})[2] == "<none>"


def test_config_and_small_kinds() -> None:
    cm = {"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}}
    assert cells(rt("", "v1", "ConfigMap", "configmaps"), cm)[1] == 2
    secret = {"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}
    assert cells(rt("", "v1", "Secret", "secrets"), secret)[1:3] == ["kubernetes.io/tls", 2]
    sa = {"metadata": {"name": "default"}, "secrets": [{"name": "t"}]}
    assert cells(rt("", "v1", "ServiceAccount", "serviceaccounts"), sa)[1] == 1
    ns = {"metadata": {"name": "default"}, "status": {"phase": "Active"}}
    assert cells(rt("", "v1", "Namespace", "namespaces", False), ns)[1] == "Active"
    lease = {"metadata": {"name": "l"}, "spec": {"holderIdentity": "node-1"}}
    assert cells(rt("coordination.k8s.io", "v1", "Lease", "leases"), lease)[1] == "node-1"


# ── human durations ──────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "<invalid>"),
        (-2, "<invalid>"),
        (-1.5, "0s"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (182, "3m2s"),
        (599, "9m59s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60 + 59, "3h5m"),
        (8 * 3600 - 1, "7h59m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (51 * 3600, "2d3h"),
        (8 * 86400 - 1, "7d23h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (735 * 86400, "2y5d"),
        (8 * 365 * 86400 - 1, "7y364d"),
        (8 * 365 * 86400, "8y"),
        (30 * 365 * 86400, "30y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


def test_ages_of_missing_and_future_timestamps() -> None:
    assert cells(rt("", "v1", "ConfigMap", "configmaps"), {"metadata": {"name": "c"}})[2] == "<unknown>"
    future = {"metadata": {"name": "c", "creationTimestamp": (NOW + timedelta(minutes=1)).isoformat()}}
    assert cells(rt("", "v1", "ConfigMap", "configmaps"), future)[2] == "<invalid>"
