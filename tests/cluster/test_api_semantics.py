"""Kubernetes REST semantics over raw HTTP: watch details, finalizers, collections, scale, namespaces."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Http, ServerProcess


def _cm(name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **extra}}


def _watch_lines(http: Http, path: str, seconds: float) -> list[dict[str, Any]]:
    """Every event of a watch that the server ends by itself (timeoutSeconds)."""
    with http.request("GET", path, stream=True) as resp:
        assert resp.status_code == 200
        start = time.monotonic()
        events = [json.loads(line) for line in resp.iter_lines() if line]
        assert time.monotonic() - start < seconds + 5, "timeoutSeconds did not end the watch"
    return events


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that compacts every second and sends bookmarks every second."""
    srv = ServerProcess(
        tmp_path_factory.mktemp("fast"),
        extra_args=["--compaction-interval", "1", "--watch-bookmark-interval", "1"],
    ).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def fast_http(fast_server: ServerProcess) -> Iterator[Http]:
    h = Http(fast_server)
    try:
        yield h
    finally:
        h.close()


def test_watch_bookmarks_and_timeout(fast_http: Http) -> None:
    base = "/api/v1/namespaces/default/configmaps"
    rv = fast_http.request("GET", base).json()["metadata"]["resourceVersion"]
    assert fast_http.request("POST", base, json=_cm("bm-1")).status_code == 201
    events = _watch_lines(fast_http, f"{base}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
                                     "&timeoutSeconds=3", 3)  # fmt: skip
    kinds = [e["type"] for e in events]
    assert kinds[0] == "ADDED" and "BOOKMARK" in kinds
    bookmark = next(e for e in events if e["type"] == "BOOKMARK")
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(events[0]["object"]["metadata"]
                                                                          ["resourceVersion"])  # fmt: skip


def test_watch_from_compacted_revision_is_gone(fast_http: Http) -> None:
    base = "/api/v1/namespaces/default/configmaps"
    old = fast_http.request("POST", base, json=_cm("old-1")).json()["metadata"]["resourceVersion"]
    for i in range(3):
        fast_http.request("POST", base, json=_cm(f"newer-{i}"))
    time.sleep(2.5)  # two compaction rounds
    fast_http.request("POST", base, json=_cm("after-compaction"))
    time.sleep(1.2)
    events = _watch_lines(fast_http, f"{base}?watch=1&resourceVersion={old}&timeoutSeconds=2", 2)
    assert events[0]["type"] == "ERROR", events
    status = events[0]["object"]
    assert status["code"] == 410 and status["reason"] == "Expired"
    assert "too old resource version" in status["message"]


def test_initial_events_and_selector_transitions(http: Http, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http.request("POST", base, json=_cm("seen", labels={"team": "a"}))
    http.request("POST", base, json=_cm("unseen", labels={"team": "b"}))
    rv = http.request("GET", base).json()["metadata"]["resourceVersion"]
    http.request("PATCH", f"{base}/unseen", json={"metadata": {"labels": {"team": "a"}}},
                 headers={"Content-Type": "application/merge-patch+json"})  # fmt: skip
    http.request("PATCH", f"{base}/seen", json={"metadata": {"labels": {"team": "c"}}},
                 headers={"Content-Type": "application/merge-patch+json"})  # fmt: skip
    events = _watch_lines(
        http, f"{base}?watch=1&labelSelector=team%3Da&resourceVersion={rv}&timeoutSeconds=2", 2
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "unseen"),
        ("DELETED", "seen"),
    ]
    initial = _watch_lines(http, f"{base}?watch=1&labelSelector=team%3Da&timeoutSeconds=1", 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in initial] == [("ADDED", "unseen")]


def test_finalizers_hold_deletion(http: Http, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http.request("POST", base, json=_cm("held", finalizers=["example.com/hold"]))
    resp = http.request("DELETE", f"{base}/held")
    assert resp.status_code == 202
    held = http.request("GET", f"{base}/held").json()
    assert held["metadata"]["deletionTimestamp"]
    # Once the last finalizer is removed the object goes away.
    patch = {"metadata": {"finalizers": None}}
    resp = http.request(
        "PATCH", f"{base}/held", json=patch, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert resp.status_code == 200
    assert http.request("GET", f"{base}/held").status_code == 404


def test_delete_preconditions_and_foreground(http: Http, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    made = http.request("POST", base, json=_cm("pre")).json()
    wrong = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-the-uid"}}
    assert http.request("DELETE", f"{base}/pre", json=wrong).status_code == 409
    fg = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}
    resp = http.request("DELETE", f"{base}/pre", json=fg)
    assert resp.status_code == 202
    assert "foregroundDeletion" in resp.json()["metadata"]["finalizers"]
    assert resp.json()["metadata"]["uid"] == made["metadata"]["uid"]


def test_deletecollection_by_label(http: Http, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    for i in range(3):
        http.request("POST", base, json=_cm(f"doomed-{i}", labels={"batch": "x"}))
    http.request("POST", base, json=_cm("kept", labels={"batch": "y"}))
    resp = http.request("DELETE", f"{base}?labelSelector=batch%3Dx")
    assert resp.status_code == 200
    assert sorted(i["metadata"]["name"] for i in resp.json()["items"]) == ["doomed-0", "doomed-1", "doomed-2"]
    left = [i["metadata"]["name"] for i in http.request("GET", base).json()["items"]]
    assert left == ["kept"]


def test_scale_subresource(http: Http, namespace: str) -> None:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }  # fmt: skip
    made = http.request("POST", base, json=deploy).json()
    assert made["metadata"]["generation"] == 1
    scale = http.request("GET", f"{base}/web/scale").json()
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    assert scale["status"]["selector"] == "app=web"
    scale["spec"]["replicas"] = 5
    assert http.request("PUT", f"{base}/web/scale", json=scale).json()["spec"]["replicas"] == 5
    patched = http.request("PATCH", f"{base}/web/scale", json={"spec": {"replicas": 1}},
                           headers={"Content-Type": "application/merge-patch+json"}).json()  # fmt: skip
    assert patched["spec"]["replicas"] == 1
    after = http.request("GET", f"{base}/web").json()
    assert after["spec"]["replicas"] == 1 and after["metadata"]["generation"] == 3


def test_status_subresource_keeps_spec(http: Http, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/services"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
           "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}  # fmt: skip
    made = http.request("POST", base, json=svc).json()
    assert made["spec"]["ports"][0]["nodePort"] >= 30000
    status = {
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.240"}]}},
        "spec": {"type": "ClusterIP"},
    }
    resp = http.request("PATCH", f"{base}/lb/status", json=status,
                        headers={"Content-Type": "application/merge-patch+json"})  # fmt: skip
    assert resp.status_code == 200
    got = resp.json()
    assert got["status"]["loadBalancer"]["ingress"][0]["ip"] == "192.168.1.240"
    assert got["spec"]["type"] == "LoadBalancer"


def test_namespace_deletion_removes_content(http: Http) -> None:
    name = "doomed-namespace"
    http.request(
        "POST",
        "/api/v1/namespaces",
        json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    http.request("POST", f"/api/v1/namespaces/{name}/configmaps", json=_cm("inside"))
    resp = http.request("DELETE", f"/api/v1/namespaces/{name}")
    assert resp.status_code == 202 and resp.json()["status"]["phase"] == "Terminating"
    refused = http.request("POST", f"/api/v1/namespaces/{name}/configmaps", json=_cm("late"))
    assert refused.status_code in (403, 404)
    deadline = time.monotonic() + 15
    while (
        time.monotonic() < deadline and http.request("GET", f"/api/v1/namespaces/{name}").status_code != 404
    ):
        time.sleep(0.1)
    assert http.request("GET", f"/api/v1/namespaces/{name}").status_code == 404
    assert http.request("GET", f"/api/v1/namespaces/{name}/configmaps").json()["items"] == []


def test_system_namespaces_cannot_be_deleted(http: Http) -> None:
    for name in ("default", "kube-system", "kube-public"):
        resp = http.request("DELETE", f"/api/v1/namespaces/{name}")
        assert resp.status_code == 403, resp.text
        assert (
            resp.json()["message"] == f'namespaces "{name}" is forbidden: this namespace may not be deleted'
        )


def test_custom_resources_are_refused_plainly(http: Http) -> None:
    assert (
        http.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions").json()["items"] == []
    )
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "a.b"},
    }
    resp = http.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert resp.status_code == 405 and "custom resources" in resp.json()["message"]


def test_discovery_flavours(http: Http) -> None:
    for version in ("v2", "v2beta1"):
        accept = (
            f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList,application/json"
        )
        resp = http.request("GET", "/apis", headers={"Accept": accept})
        assert resp.headers["Content-Type"].startswith(f"application/json;g=apidiscovery.k8s.io;v={version}")
        groups = {item["metadata"]["name"] for item in resp.json()["items"]}
        assert {"apps", "discovery.k8s.io", "networking.k8s.io", "coordination.k8s.io"} <= groups
    plain = http.request("GET", "/apis").json()
    assert plain["kind"] == "APIGroupList"
    core = http.request("GET", "/api/v1").json()
    names = {r["name"] for r in core["resources"]}
    assert {"services", "services/status", "pods/status", "endpoints", "namespaces"} <= names


def test_table_output(http: Http) -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    table = http.request("GET", "/api/v1/namespaces/default/services", headers={"Accept": accept}).json()
    assert table["kind"] == "Table"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:5] == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)"]
    row = next(r for r in table["rows"] if r["cells"][0] == "kubernetes")
    assert row["cells"][2] == "10.96.0.1" and row["cells"][4] == "443/TCP"
