"""Service conformance cases from test/e2e/network/service.go, with the official Python client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ServerProcess
from kubernetes import client, config, watch


@pytest.fixture
def core(server: ServerProcess) -> Iterator[client.CoreV1Api]:
    api_client = config.new_client_from_config(str(server.kubeconfig))
    try:
        yield client.CoreV1Api(api_client)
    finally:
        api_client.close()


class Recorder:
    """A watch in a thread that records (type, name) until ``want`` events arrived."""

    def __init__(self, fn: Any, namespace: str, want: int, **kwargs: Any) -> None:
        self.events: list[tuple[str, Any]] = []
        self._w = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(fn, namespace, want, kwargs), daemon=True)
        self._thread.start()

    def _run(self, fn: Any, namespace: str, want: int, kwargs: dict[str, Any]) -> None:
        for ev in self._w.stream(fn, namespace, timeout_seconds=20, **kwargs):
            self.events.append((ev["type"], ev["object"]))
            if len(self.events) >= want:
                self._w.stop()

    def join(self) -> list[tuple[str, Any]]:
        self._thread.join(25)
        return self.events


def test_endpoint_lifecycle(core: client.CoreV1Api, namespace: str) -> None:
    rv = core.list_namespaced_endpoints(namespace).metadata.resource_version
    rec = Recorder(
        core.list_namespaced_endpoints,
        namespace,
        4,
        resource_version=rv,
        label_selector="test-endpoint-static=true",
    )
    body = {
        "metadata": {"name": "e2e-ep", "labels": {"test-endpoint-static": "true"}},
        "subsets": [{"addresses": [{"ip": "10.0.0.24"}], "ports": [{"name": "http", "port": 80}]}],
    }
    core.create_namespaced_endpoints(namespace, body)
    core.patch_namespaced_endpoints(
        "e2e-ep", namespace, {"metadata": {"labels": {"test-service": "updated"}}}
    )
    patched = core.patch_namespaced_endpoints(
        "e2e-ep",
        namespace,
        {"subsets": [{"addresses": [{"ip": "10.0.0.25"}], "ports": [{"name": "http-test", "port": 8080}]}]},
    )
    assert patched.subsets[0].addresses[0].ip == "10.0.0.25"
    core.delete_collection_namespaced_endpoints(namespace, label_selector="test-endpoint-static=true")
    events = rec.join()
    assert [t for t, _ in events] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]


def test_service_status_lifecycle(core: client.CoreV1Api, namespace: str) -> None:
    svc = {
        "metadata": {"name": "status-svc", "labels": {"test-service-static": "true"}},
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": "example.com/internal-vip",
            "ports": [{"name": "http", "port": 80, "targetPort": 80}],
        },
    }
    rv = core.list_namespaced_service(namespace).metadata.resource_version
    rec = Recorder(
        core.list_namespaced_service,
        namespace,
        4,
        resource_version=rv,
        label_selector="test-service-static=true",
    )
    core.create_namespaced_service(namespace, svc)
    status = core.read_namespaced_service_status("status-svc", namespace)
    assert status.status.load_balancer.ingress is None  # a foreign class: nobody assigns it
    core.patch_namespaced_service_status(
        "status-svc", namespace, {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}}
    )
    current = core.read_namespaced_service_status("status-svc", namespace)
    current.status.conditions = [
        client.V1Condition(
            type="StatusUpdate",
            status="True",
            reason="E2E",
            message="Set from e2e test",
            last_transition_time="2024-01-01T00:00:00Z",
        )
    ]
    updated = core.replace_namespaced_service_status("status-svc", namespace, current)
    assert updated.status.conditions[0].type == "StatusUpdate"
    assert updated.status.load_balancer.ingress[0].ip == "203.0.113.1"
    core.delete_namespaced_service("status-svc", namespace)
    events = rec.join()
    assert [t for t, _ in events] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]


def test_delete_a_collection_of_services(core: client.CoreV1Api, namespace: str) -> None:
    for i in range(3):
        core.create_namespaced_service(
            namespace,
            {"metadata": {"name": f"coll-{i}", "labels": {"e2e": "svc"}}, "spec": {"ports": [{"port": 80}]}},
        )
    core.delete_collection_namespaced_service(namespace, label_selector="e2e=svc")
    assert core.list_namespaced_service(namespace, label_selector="e2e=svc").items == []


def test_find_a_service_in_all_namespaces(core: client.CoreV1Api) -> None:
    names = {(s.metadata.namespace, s.metadata.name) for s in core.list_service_for_all_namespaces().items}
    assert ("default", "kubernetes") in names
    assert core.read_namespaced_service("kubernetes", "default").spec.cluster_ip == "10.96.0.1"
