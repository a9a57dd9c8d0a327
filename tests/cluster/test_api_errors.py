"""Bad input over raw HTTP: every error is a Kubernetes Status and nothing changes."""

from __future__ import annotations

from typing import Any

import requests
from conftest import Http


def _status(resp: requests.Response, code: int, reason: str) -> dict[str, Any]:
    assert resp.status_code == code, resp.text
    body: dict[str, Any] = resp.json()
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == code and body["reason"] == reason, body
    return body


def _services(http: Http, ns: str) -> list[str]:
    resp = http.request("GET", f"/api/v1/namespaces/{ns}/services")
    assert resp.status_code == 200
    return [s["metadata"]["name"] for s in resp.json()["items"]]


def test_authentication_required(http: Http) -> None:
    _status(http.request("GET", "/api/v1/namespaces", token=""), 401, "Unauthorized")
    _status(http.request("GET", "/api/v1/namespaces", token="not-the-token"), 401, "Unauthorized")
    _status(http.request("GET", "/version", token="nope"), 401, "Unauthorized")
    assert http.request("GET", "/healthz", token="").text == "ok"
    assert http.request("GET", "/readyz", token="").status_code == 200


def test_malformed_bodies(http: Http, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/services"
    body = _status(
        http.request(
            "POST", path, data=b'{"kind": "Service", ', headers={"Content-Type": "application/json"}
        ),
        400,
        "BadRequest",
    )
    assert "not valid JSON" in body["message"]
    body = _status(
        http.request("POST", path, data=b"kind: [Service\n", headers={"Content-Type": "application/yaml"}),
        400,
        "BadRequest",
    )
    assert "YAML" in body["message"]
    _status(
        http.request("POST", path, data=b"[1, 2]", headers={"Content-Type": "application/json"}),
        400,
        "BadRequest",
    )
    _status(
        http.request("POST", path, data=b"<xml/>", headers={"Content-Type": "application/xml"}),
        415,
        "UnsupportedMediaType",
    )
    assert _services(http, namespace) == []


def test_wrong_kind_and_version(http: Http, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/services"
    svc = {
        "apiVersion": "v2",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80}]},
    }
    body = _status(http.request("POST", path, json=svc), 400, "BadRequest")
    assert "does not match the expected API version (v1)" in body["message"]
    svc["apiVersion"], svc["kind"] = "v1", "Pod"
    body = _status(http.request("POST", path, json=svc), 400, "BadRequest")
    assert "kind" in body["message"]
    _status(http.request("GET", f"/api/v1/namespaces/{namespace}/gadgets"), 404, "NotFound")
    _status(http.request("GET", "/apis/example.com/v1/widgets"), 404, "NotFound")
    assert _services(http, namespace) == []


def test_oversized_body(http: Http, namespace: str) -> None:
    big = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "big"},
        "data": {"x": "y" * (4 << 20)},
    }
    resp = http.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", json=big)
    _status(resp, 413, "RequestEntityTooLarge")
    listed = http.request("GET", f"/api/v1/namespaces/{namespace}/configmaps").json()["items"]
    assert listed == []


def test_invalid_names_and_fields(http: Http, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/services"
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "Bad_Name"},
        "spec": {"ports": [{"port": 80}]},
    }
    body = _status(http.request("POST", path, json=svc), 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert body["message"].startswith(
        'Service "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"'
    )
    svc["metadata"]["name"] = "ok"
    svc["spec"]["ports"] = [{"port": 70000}]
    body = _status(http.request("POST", path, json=svc), 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "spec.ports[0].port"
    svc["spec"] = {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30080}]}
    body = _status(http.request("POST", path, json=svc), 422, "Invalid")
    assert "spec.ports[0].nodePort" in body["message"]
    assert _services(http, namespace) == []


def test_conflicts(http: Http, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    first = http.request("POST", path, json=cm)
    assert first.status_code == 201
    _status(http.request("POST", path, json=cm), 409, "AlreadyExists")
    stale = first.json()
    stale["data"]["a"] = "2"
    assert http.request("PUT", f"{path}/c", json=stale).status_code == 200
    stale["data"]["a"] = "3"
    body = _status(http.request("PUT", f"{path}/c", json=stale), 409, "Conflict")
    assert "the object has been modified" in body["message"]
    current = http.request("GET", f"{path}/c").json()
    assert current["data"]["a"] == "2"


def test_missing_namespace(http: Http) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    body = _status(http.request("POST", "/api/v1/namespaces/no-such-ns/configmaps", json=cm), 404, "NotFound")
    assert body["message"] == 'namespaces "no-such-ns" not found'


def test_generate_name_and_server_fields(http: Http, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}
    made = http.request("POST", path, json=cm).json()
    md = made["metadata"]
    assert md["name"].startswith("gen-") and len(md["name"]) == len("gen-") + 5
    assert md["uid"] and md["creationTimestamp"].endswith("Z") and int(md["resourceVersion"]) > 0
    dry = http.request("POST", path + "?dryRun=All", json={**cm, "metadata": {"name": "dry"}})
    assert dry.status_code == 201
    _status(http.request("GET", f"{path}/dry"), 404, "NotFound")
