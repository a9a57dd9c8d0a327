"""The official ``kubernetes`` Python client and kr8s against a real kubelite server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ServerProcess
from kubernetes import client, config, watch


@pytest.fixture
def api(server: ServerProcess) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(str(server.kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()


def _watch_events(fn: Any, namespace: str, want: int, **kwargs: Any) -> tuple[list[tuple[str, str]], Any]:
    """Start a watch in a thread; returns the (type, name) list it fills and the thread."""
    events: list[tuple[str, str]] = []
    started = threading.Event()
    w = watch.Watch()

    def run() -> None:
        started.set()
        for ev in w.stream(fn, namespace, timeout_seconds=20, **kwargs):
            events.append((ev["type"], ev["object"].metadata.name))
            if len(events) >= want:
                w.stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)
    return events, thread


def test_service_crud_and_watch(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_service(namespace).metadata.resource_version
    events, thread = _watch_events(core.list_namespaced_service, namespace, 3, resource_version=rv)
    body = client.V1Service(
        metadata=client.V1ObjectMeta(name="py-svc", labels={"made-by": "python"}),
        spec=client.V1ServiceSpec(
            selector={"app": "py"}, ports=[client.V1ServicePort(port=80, target_port=8080)]
        ),
    )
    created = core.create_namespaced_service(namespace, body)
    assert created.spec.cluster_ip and created.spec.type == "ClusterIP"
    assert created.spec.ports[0].protocol == "TCP"
    got = core.read_namespaced_service("py-svc", namespace)
    assert got.metadata.uid == created.metadata.uid
    got.spec.selector = {"app": "py2"}
    replaced = core.replace_namespaced_service("py-svc", namespace, got)
    assert replaced.spec.selector == {"app": "py2"}
    assert replaced.spec.cluster_ip == created.spec.cluster_ip
    patched = core.patch_namespaced_service("py-svc", namespace, {"metadata": {"labels": {"extra": "yes"}}})
    assert patched.metadata.labels == {"made-by": "python", "extra": "yes"}
    listed = core.list_namespaced_service(namespace, label_selector="made-by=python")
    assert [s.metadata.name for s in listed.items] == ["py-svc"]
    core.delete_namespaced_service("py-svc", namespace)
    with pytest.raises(client.ApiException) as info:
        core.read_namespaced_service("py-svc", namespace)
    assert info.value.status == 404
    thread.join(20)
    assert events == [("ADDED", "py-svc"), ("MODIFIED", "py-svc"), ("MODIFIED", "py-svc")]


def test_pod_crud_and_status(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="py-pod", labels={"app": "py"}),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="c", image="busybox", command=["sleep", "1"])]
        ),
    )
    created = core.create_namespaced_pod(namespace, pod)
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always" and created.spec.dns_policy == "ClusterFirst"
    status = {
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.5",
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }
    updated = core.patch_namespaced_pod_status("py-pod", namespace, status)
    assert updated.status.phase == "Running" and updated.status.pod_ip == "10.244.1.5"
    # A status write does not change the spec, a spec write does not change the status.
    core.patch_namespaced_pod(
        "py-pod", namespace, {"metadata": {"labels": {"x": "1"}}, "status": {"phase": "Failed"}}
    )
    again = core.read_namespaced_pod("py-pod", namespace)
    assert again.status.phase == "Running" and again.metadata.labels["x"] == "1"
    running = core.list_namespaced_pod(namespace, field_selector="status.phase=Running")
    assert [p.metadata.name for p in running.items] == ["py-pod"]
    core.delete_namespaced_pod("py-pod", namespace)
    assert core.list_namespaced_pod(namespace).items == []


def test_endpointslice_crud_and_watch(api: client.ApiClient, namespace: str) -> None:
    disc = client.DiscoveryV1Api(api)
    events, thread = _watch_events(disc.list_namespaced_endpoint_slice, namespace, 3)
    body = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "py-slice", "labels": {"kubernetes.io/service-name": "py-svc"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.7"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    created = disc.create_namespaced_endpoint_slice(namespace, body)
    assert created.endpoints[0].addresses == ["10.244.1.7"]
    disc.patch_namespaced_endpoint_slice(
        "py-slice", namespace, {"endpoints": [{"addresses": ["10.244.1.8"], "conditions": {"ready": False}}]}
    )
    got = disc.read_namespaced_endpoint_slice("py-slice", namespace)
    assert got.endpoints[0].addresses == ["10.244.1.8"]
    listed = disc.list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=py-svc"
    )
    assert len(listed.items) == 1
    disc.delete_namespaced_endpoint_slice("py-slice", namespace)
    thread.join(20)
    assert [t for t, _ in events] == ["ADDED", "MODIFIED", "DELETED"]


def test_list_pagination(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    for i in range(7):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}})
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(namespace, limit=3, _continue=token)
        names += [c.metadata.name for c in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3
    assert names == [f"cm-{i}" for i in range(7)]


def test_kr8s(server: ServerProcess, namespace: str) -> None:
    import kr8s
    from kr8s.objects import ConfigMap

    api = kr8s.api(kubeconfig=str(server.kubeconfig))
    cm = ConfigMap({"metadata": {"name": "kr8s-cm", "namespace": namespace}, "data": {"a": "1"}}, api=api)
    cm.create()
    found = [c.name for c in kr8s.get("configmaps", namespace=namespace, api=api)]
    assert "kr8s-cm" in found
    cm.patch({"data": {"a": "2"}})
    cm.refresh()
    assert cm.raw["data"]["a"] == "2"
    cm.delete()
