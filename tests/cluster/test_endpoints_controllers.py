"""Endpoints and EndpointSlice controllers in a real server, conformance-derived.

No node agent runs here: the tests stand in for the kubelet by writing pod status through the
status subresource, exactly as the agent will.
"""

from __future__ import annotations

import time
from typing import Any

from conftest import Http, wait_for

SLICE_LABEL = "kubernetes.io/service-name"


def make_pod(
    http: Http,
    ns: str,
    name: str,
    ip: str,
    *,
    labels: dict[str, str],
    ready: bool = True,
    ports: list[dict[str, Any]] | None = None,
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox", "ports": ports or []}]},
    }
    assert http.request("POST", f"/api/v1/namespaces/{ns}/pods", json=pod).status_code == 201
    set_status(http, ns, name, ip, ready=ready)


def set_status(http: Http, ns: str, name: str, ip: str, *, ready: bool) -> None:
    status = {
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        }
    }
    resp = http.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/{name}/status",
        json=status,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text


def make_service(http: Http, ns: str, name: str, ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": ports, **spec},
    }
    resp = http.request("POST", f"/api/v1/namespaces/{ns}/services", json=body)
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


def endpoint_ips(http: Http, ns: str, name: str) -> dict[str, list[str]]:
    """{"ready": [...], "notReady": [...]} from the Endpoints object."""
    resp = http.request("GET", f"/api/v1/namespaces/{ns}/endpoints/{name}")
    if resp.status_code != 200:
        return {}
    out: dict[str, list[str]] = {"ready": [], "notReady": []}
    for subset in resp.json().get("subsets") or []:
        out["ready"] += [a["ip"] for a in subset.get("addresses") or []]
        out["notReady"] += [a["ip"] for a in subset.get("notReadyAddresses") or []]
    return {k: sorted(v) for k, v in out.items()}


def slices(http: Http, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = http.request(
        "GET",
        f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?labelSelector={SLICE_LABEL}%3D{name}",
    ).json()["items"]
    return items


def slice_ips(http: Http, ns: str, name: str) -> list[str]:
    return sorted(a for s in slices(http, ns, name) for e in s.get("endpoints") or [] for a in e["addresses"])


def test_basic_endpoint_lifecycle(http: Http, namespace: str) -> None:
    """{} -> {pod1} -> {pod1, pod2} -> {pod2} -> {}, in Endpoints and EndpointSlices."""
    make_service(http, namespace, "basic", [{"port": 80, "targetPort": 80}])
    wait_for(
        "empty endpoints", lambda: endpoint_ips(http, namespace, "basic") == {"ready": [], "notReady": []}
    )
    wait_for("one empty slice", lambda: len(slices(http, namespace, "basic")) == 1)
    make_pod(http, namespace, "pod1", "10.244.1.11", labels={"app": "basic"})
    wait_for("pod1", lambda: endpoint_ips(http, namespace, "basic")["ready"] == ["10.244.1.11"])
    make_pod(http, namespace, "pod2", "10.244.2.12", labels={"app": "basic"})
    wait_for(
        "pod1+pod2", lambda: endpoint_ips(http, namespace, "basic")["ready"] == ["10.244.1.11", "10.244.2.12"]
    )
    wait_for(
        "slices pod1+pod2", lambda: slice_ips(http, namespace, "basic") == ["10.244.1.11", "10.244.2.12"]
    )
    http.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/pod1")
    wait_for("pod2", lambda: endpoint_ips(http, namespace, "basic")["ready"] == ["10.244.2.12"])
    http.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/pod2")
    wait_for("none", lambda: endpoint_ips(http, namespace, "basic")["ready"] == [])
    wait_for("slices none", lambda: slice_ips(http, namespace, "basic") == [])
    (only,) = slices(http, namespace, "basic")
    assert (
        only["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
        == "endpointslice-controller.k8s.io"
    )
    assert only["metadata"]["ownerReferences"][0]["kind"] == "Service"


def test_multiport_named_target_ports(http: Http, namespace: str) -> None:
    make_service(
        http,
        namespace,
        "multi",
        [
            {"name": "portname1", "port": 80, "targetPort": "svc1"},
            {"name": "portname2", "port": 81, "targetPort": "svc2"},
        ],
    )
    make_pod(
        http,
        namespace,
        "pod1",
        "10.244.1.21",
        labels={"app": "multi"},
        ports=[{"name": "svc1", "containerPort": 100}],
    )
    make_pod(
        http,
        namespace,
        "pod2",
        "10.244.1.22",
        labels={"app": "multi"},
        ports=[{"name": "svc2", "containerPort": 101}],
    )

    def subsets() -> list[tuple[list[str], list[tuple[str, int]]]]:
        resp = http.request("GET", f"/api/v1/namespaces/{namespace}/endpoints/multi").json()
        return sorted(
            ([a["ip"] for a in s.get("addresses") or []], sorted((p["name"], p["port"]) for p in s["ports"]))
            for s in resp.get("subsets") or []
        )

    wanted = [(["10.244.1.21"], [("portname1", 100)]), (["10.244.1.22"], [("portname2", 101)])]
    wait_for("per-pod port subsets", lambda: subsets() == wanted)


def test_unready_pods_and_publish_not_ready(http: Http, namespace: str) -> None:
    make_service(http, namespace, "plain", [{"port": 80}])
    make_pod(http, namespace, "p-unready", "10.244.3.1", labels={"app": "plain"}, ready=False)
    wait_for(
        "not ready address",
        lambda: endpoint_ips(http, namespace, "plain") == {"ready": [], "notReady": ["10.244.3.1"]},
    )
    make_service(http, namespace, "publish", [{"port": 80}], publishNotReadyAddresses=True)
    make_pod(http, namespace, "p-unready2", "10.244.3.2", labels={"app": "publish"}, ready=False)
    wait_for("published", lambda: endpoint_ips(http, namespace, "publish").get("ready") == ["10.244.3.2"])
    set_status(http, namespace, "p-unready", "10.244.3.1", ready=True)
    wait_for("now ready", lambda: endpoint_ips(http, namespace, "plain").get("ready") == ["10.244.3.1"])


def test_deleted_slice_is_recreated(http: Http, namespace: str) -> None:
    make_service(http, namespace, "recreate", [{"port": 80}])
    make_pod(http, namespace, "p", "10.244.4.1", labels={"app": "recreate"})
    first = wait_for("slice", lambda: slices(http, namespace, "recreate"))
    http.request(
        "DELETE",
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices/{first[0]['metadata']['name']}",
    )
    wait_for("recreated", lambda: slice_ips(http, namespace, "recreate") == ["10.244.4.1"])


def test_service_without_selector_keeps_user_endpoints(http: Http, namespace: str) -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "manual"},
        "spec": {"ports": [{"port": 80}]},
    }
    assert http.request("POST", f"/api/v1/namespaces/{namespace}/services", json=svc).status_code == 201
    ep = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.168.7.7"}], "ports": [{"port": 9376}]}],
    }
    assert http.request("POST", f"/api/v1/namespaces/{namespace}/endpoints", json=ep).status_code == 201
    mirrored = wait_for("mirrored slice", lambda: slices(http, namespace, "manual"))
    assert mirrored[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == (
        "endpointslicemirroring-controller.k8s.io"
    )
    assert mirrored[0]["endpoints"][0]["addresses"] == ["192.168.7.7"]
    time.sleep(0.5)
    assert endpoint_ips(http, namespace, "manual")["ready"] == ["192.168.7.7"], (
        "the user's Endpoints were changed"
    )


def test_kubernetes_service_has_a_slice(http: Http) -> None:
    assert slices(http, "default", "kubernetes")
