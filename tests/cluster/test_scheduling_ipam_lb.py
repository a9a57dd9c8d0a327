"""The scheduler, node IPAM and LoadBalancer controllers against a real server, conformance-derived.

The server runs with ``--controllers none``; the three controllers run in this process, in a
ControllerManager over an HttpClient on an event loop in a background thread, as they would
run beside any API server. No node agent runs: the tests create Node objects themselves (Ready
through nodes/status, taints in spec) and read bindings, events and statuses through the API.

Nodes are cluster-wide and the scheduler counts every one, so each test names its nodes after
itself and deletes them, with its pods and services, before the next test starts. One test
starts a server in this process instead, to bind through LocalClient as well as HttpClient.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import Http, Kubectl, ServerProcess, kubectl_path
from conftest import wait_for as _wait_for

from kubelite.api.errors import StatusError
from kubelite.apiserver.server import RunningServer, ServerOptions
from kubelite.client.http import HttpClient
from kubelite.client.interface import ApiClient
from kubelite.client.local import LocalClient
from kubelite.controllers.loadbalancer import LoadBalancerController
from kubelite.controllers.manager import ControllerFactory, ControllerManager, ControllerOptions
from kubelite.controllers.nodeipam import NodeIpamController
from kubelite.scheduler.controller import NODES, PODS, SchedulerController, bind_pod

POOL = "192.168.240.240-192.168.240.242"
CLUSTER_CIDR = "10.244.0.0/16"
OPTIONS = ControllerOptions(cluster_cidr=CLUSTER_CIDR, node_cidr_mask=24, load_balancer_pool=POOL)
FACTORIES: dict[str, ControllerFactory] = {
    "scheduler": SchedulerController,
    "nodeipam": NodeIpamController,
    "loadbalancer": LoadBalancerController,
}
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
WAIT = 10.0


def wait_for(what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    return _wait_for(what, probe, timeout)


class BackgroundControllers:
    """A ControllerManager over an HttpClient, on its own event loop in a thread."""

    def __init__(
        self, kubeconfig: Path, options: ControllerOptions, factories: Mapping[str, ControllerFactory]
    ) -> None:
        self.kubeconfig = kubeconfig
        self.options = options
        self.factories = factories
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: HttpClient | None = None
        self._manager: ControllerManager | None = None

    def start(self, timeout: float = 20.0) -> BackgroundControllers:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=_run_loop, args=(loop,), name="controllers", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    async def _start(self) -> None:
        self._client = HttpClient.from_kubeconfig(self.kubeconfig)
        self._manager = ControllerManager(self._client, self.options, factories=self.factories)
        await self._manager.start()

    async def _stop(self) -> None:
        try:
            if self._manager is not None:
                await self._manager.stop()
        finally:
            if self._client is not None:
                await self._client.close()
            self._manager = self._client = None
            await _settle_sockets()

    def stop(self, timeout: float = 20.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()


async def _settle_sockets() -> None:
    """Wait until this loop watches no socket but its own wake-up pipe.

    A TLS connection the client closed (a watch cut by an informer's stop) goes away only once
    the server has answered its close_notify; a loop closed before that leaves the socket to the
    garbage collector, which warns (and warnings are errors here).
    """
    selector = getattr(asyncio.get_running_loop(), "_selector", None)  # selector event loops only
    if selector is None:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5.0):
            while len(selector.get_map()) > 1:
                await asyncio.sleep(0.01)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """This module's own server (conftest's runs every controller): nothing schedules but the tests'."""
    srv = ServerProcess(
        tmp_path_factory.mktemp("kubelite-scheduling"),
        extra_args=["--controllers", "none", "--loadbalancer-pool", POOL, "--cluster-cidr", CLUSTER_CIDR],
    ).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def controllers(server: ServerProcess) -> Iterator[BackgroundControllers]:
    running = BackgroundControllers(server.kubeconfig, OPTIONS, FACTORIES).start()
    try:
        yield running
    finally:
        running.stop()


class Cluster:
    """One test's nodes, pods and services (in its namespace), removed again by ``cleanup``."""

    def __init__(self, http: Http, namespace: str, prefix: str) -> None:
        self.http = http
        self.ns = namespace
        self.prefix = prefix
        self.nodes: list[str] = []

    # --- writes ---------------------------------------------------------------------------------

    def call(self, method: str, path: str, expect: int = 200, **kw: Any) -> dict[str, Any]:
        resp = self.http.request(method, path, **kw)
        assert resp.status_code == expect, f"{method} {path}: {resp.status_code} {resp.text}"
        body: dict[str, Any] = resp.json()
        return body

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.call("PATCH", path, json=patch, headers={"Content-Type": "application/merge-patch+json"})

    def node(
        self,
        suffix: str,
        *,
        labels: dict[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
        ready: bool = True,
    ) -> str:
        """A Node (Ready through nodes/status unless ``ready`` is False); returns its name."""
        name = f"{self.prefix}-{suffix}"
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or []},
        }
        self.call("POST", "/api/v1/nodes", 201, json=body)
        self.nodes.append(name)
        if ready:
            status = {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "allocatable": {"pods": "110"},
                "addresses": [{"type": "InternalIP", "address": "10.0.0.10"}],
            }
            # Retried as a kubelet would: node IPAM may be writing spec.podCIDR at the same moment, and
            # kubelite answers a patch that lost such a race with 409 (kube-apiserver retries it).
            wait_for(
                f"node {name} to take its Ready status",
                lambda: (
                    self.http.request(
                        "PATCH",
                        f"/api/v1/nodes/{name}/status",
                        json={"status": status},
                        headers={"Content-Type": "application/merge-patch+json"},
                    ).status_code
                    == 200
                ),
            )
        return name

    def pod(
        self,
        name: str,
        *,
        ports: list[dict[str, Any]] | None = None,
        labels: dict[str, str] | None = None,
        owner: dict[str, Any] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": labels or {"app": name}}
        if owner is not None:
            meta["ownerReferences"] = [owner]
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "busybox", "ports": ports or []}], **spec},
        }
        return self.call("POST", f"/api/v1/namespaces/{self.ns}/pods", 201, json=body)

    def service(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": name}, **spec},
        }
        return self.call("POST", f"/api/v1/namespaces/{self.ns}/services", 201, json=body)

    # --- reads ----------------------------------------------------------------------------------

    def get(self, path: str) -> dict[str, Any]:
        return self.call("GET", path)

    def get_pod(self, name: str) -> dict[str, Any]:
        return self.get(f"/api/v1/namespaces/{self.ns}/pods/{name}")

    def node_of(self, pod: str) -> str:
        return str(self.get_pod(pod)["spec"].get("nodeName") or "")

    def wait_bound(self, pod: str) -> str:
        node: str = wait_for(f"pod {pod} to be bound", lambda: self.node_of(pod))
        return node

    def events(self, name: str, reason: str, namespace: str = "") -> list[dict[str, Any]]:
        items = self.get(
            f"/api/v1/namespaces/{namespace or self.ns}/events?fieldSelector=involvedObject.name%3D{name}"
        )["items"]
        return [e for e in items if e["reason"] == reason]

    def wait_event(self, name: str, reason: str, namespace: str = "") -> dict[str, Any]:
        (event,) = wait_for(f"a {reason} event about {name}", lambda: self.events(name, reason, namespace))
        return dict(event)

    def scheduled_condition(self, pod: str) -> dict[str, Any]:
        conditions = self.get_pod(pod).get("status", {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "PodScheduled"), {})

    def wait_unschedulable(self, pod: str, message: str) -> None:
        """FailedScheduling with ``message``, PodScheduled=False/Unschedulable saying it, and no node."""
        event = self.wait_event(pod, "FailedScheduling")
        assert (event["type"], event["message"]) == ("Warning", message)
        assert event["source"]["component"] == "default-scheduler"
        wait_for(
            f"PodScheduled=False on {pod}",
            lambda: (
                self.scheduled_condition(pod).get("status") == "False"
                and self.scheduled_condition(pod).get("message") == message
            ),
        )
        condition = self.scheduled_condition(pod)
        assert condition["reason"] == "Unschedulable"
        assert self.node_of(pod) == ""

    def ingress(self, svc: str) -> list[str]:
        lb = self.get(f"/api/v1/namespaces/{self.ns}/services/{svc}").get("status", {}).get("loadBalancer")
        return [i["ip"] for i in (lb or {}).get("ingress") or []]

    def wait_ingress(self, svc: str, ips: list[str]) -> None:
        wait_for(f"service {svc} to show {ips}", lambda: self.ingress(svc) == ips)

    # --- cleanup --------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Pods (at once, as no kubelet will finish them), services and nodes, gone before returning."""
        base = f"/api/v1/namespaces/{self.ns}"
        for kind in ("pods", "services"):
            for item in self.get(f"{base}/{kind}")["items"]:
                self.http.request("DELETE", f"{base}/{kind}/{item['metadata']['name']}?gracePeriodSeconds=0")
        for node in self.nodes:
            self.http.request("DELETE", f"/api/v1/nodes/{node}")
        wait_for(
            "the test's pods, services and nodes to be deleted",
            lambda: (
                not self.get(f"{base}/pods")["items"]
                and not self.get(f"{base}/services")["items"]
                and all(self.http.request("GET", f"/api/v1/nodes/{n}").status_code == 404 for n in self.nodes)
            ),
        )


@pytest.fixture
def cluster(
    http: Http, namespace: str, controllers: BackgroundControllers, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    # Node names: a readable part of the test's name and a digest of its id (parametrized ones differ).
    readable = request.node.name.removeprefix("test_")[:16].strip("_").replace("_", "-")
    c = Cluster(http, namespace, f"{readable}-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:4]}")
    try:
        yield c
    finally:
        c.cleanup()


def unschedulable_message(available: int, reasons: str, preemption: str) -> str:
    return (
        f"0/{available} nodes are available: {reasons}. "
        f"preemption: 0/{available} nodes are available: {preemption}."
    )


# --- the scheduler ------------------------------------------------------------------------------


def test_node_name_is_honoured(cluster: Cluster) -> None:
    """A pod that names its node is the kubelet's already: the scheduler neither moves nor reports it."""
    cluster.node("a")
    b = cluster.node("b")
    cluster.pod("pinned", nodeName=b)
    cluster.pod("free")
    assert cluster.wait_bound("free")  # the scheduler has seen both pods by now
    assert cluster.node_of("pinned") == b
    assert cluster.events("pinned", "Scheduled") == []
    assert cluster.scheduled_condition("pinned") == {}


def test_node_selector(cluster: Cluster) -> None:
    cluster.node("ssd", labels={"disk": "ssd"})
    hdd = cluster.node("hdd", labels={"disk": "hdd"})
    cluster.pod("wants-hdd", nodeSelector={"disk": "hdd"})
    cluster.pod("wants-nvme", nodeSelector={"disk": "nvme"})
    assert cluster.wait_bound("wants-hdd") == hdd
    event = cluster.wait_event("wants-hdd", "Scheduled")
    assert (event["type"], event["message"]) == (
        "Normal",
        f"Successfully assigned {cluster.ns}/wants-hdd to {hdd}",
    )
    cluster.wait_unschedulable(
        "wants-nvme",
        unschedulable_message(
            2,
            "2 node(s) didn't match Pod's node affinity/selector",
            "2 Preemption is not helpful for scheduling",
        ),
    )


def _required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}
    }


def test_required_node_affinity(cluster: Cluster) -> None:
    z1 = cluster.node("z1", labels={"zone": "z1", "generation": "3"})
    z2 = cluster.node("z2", labels={"zone": "z2", "generation": "5"})
    cluster.pod(
        "in-z2",
        affinity=_required({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}),
    )
    cluster.pod(
        "newer-than-4",
        affinity=_required({"matchExpressions": [{"key": "generation", "operator": "Gt", "values": ["4"]}]}),
    )
    # Terms are ORed; the expressions of one term are ANDed.
    cluster.pod(
        "either",
        affinity=_required(
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["nowhere"]}]},
            {
                "matchExpressions": [
                    {"key": "zone", "operator": "NotIn", "values": ["z2"]},
                    {"key": "gpu", "operator": "DoesNotExist"},
                ]
            },
        ),
    )
    # The DaemonSet way of naming a node.
    cluster.pod(
        "by-name",
        affinity=_required({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [z2]}]}),
    )
    assert cluster.wait_bound("in-z2") == z2
    assert cluster.wait_bound("newer-than-4") == z2
    assert cluster.wait_bound("either") == z1
    assert cluster.wait_bound("by-name") == z2


def test_taints_and_tolerations(cluster: Cluster) -> None:
    cp = cluster.node(
        "cp", labels={CONTROL_PLANE: ""}, taints=[{"key": CONTROL_PLANE, "effect": "NoSchedule"}]
    )
    gpu = cluster.node("gpu", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    cluster.node("not-ready", ready=False)  # no Ready condition: tainted not-ready by the scheduler
    cluster.pod("plain")
    cluster.pod(
        "control-plane", tolerations=[{"key": CONTROL_PLANE, "operator": "Exists", "effect": "NoSchedule"}]
    )
    cluster.pod("gpu-user", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu"}])
    cluster.pod("tpu-user", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "tpu"}])
    assert cluster.wait_bound("control-plane") == cp
    assert cluster.wait_bound("gpu-user") == gpu
    three_tainted = unschedulable_message(
        3, "3 node(s) had untolerated taint(s)", "3 Preemption is not helpful for scheduling"
    )
    cluster.wait_unschedulable("plain", three_tainted)
    cluster.wait_unschedulable("tpu-user", three_tainted)


def test_pending_pod_is_scheduled_when_a_suitable_node_appears(cluster: Cluster) -> None:
    cluster.pod("waiting")
    cluster.wait_unschedulable("waiting", "no nodes available to schedule pods")
    cluster.node("tainted", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    tainted = unschedulable_message(
        1, "1 node(s) had untolerated taint(s)", "1 Preemption is not helpful for scheduling"
    )
    wait_for(
        "the message to count the new node",
        lambda: cluster.scheduled_condition("waiting").get("message") == tainted,
    )
    started = time.monotonic()
    node = cluster.node("worker")
    assert cluster.wait_bound("waiting") == node
    # Scheduled by the node's arrival, not by a five-minute retry: well within its 10 s backoff cap.
    assert time.monotonic() - started < 12
    event = cluster.wait_event("waiting", "Scheduled")
    assert event["message"] == f"Successfully assigned {cluster.ns}/waiting to {node}"


def test_binding_marks_the_pod_scheduled(cluster: Cluster) -> None:
    """The binding subresource, not the scheduler, turns PodScheduled=False into True."""
    cluster.pod("waiting")
    cluster.wait_unschedulable("waiting", "no nodes available to schedule pods")
    cluster.node("worker")
    cluster.wait_bound("waiting")
    assert cluster.scheduled_condition("waiting")["status"] == "True"


@pytest.mark.parametrize("kind", ["http", "local"])
async def test_bind_pod_through_either_client(tmp_path: Path, kind: str) -> None:
    """The binding helper (until ApiClient has create_subresource) over HttpClient and LocalClient."""
    srv = RunningServer(ServerOptions(data_dir=tmp_path, listen="127.0.0.1:0", controllers=()))
    await srv.start()
    assert srv.rest is not None
    client: ApiClient = (
        HttpClient.from_kubeconfig(srv.kubeconfig_path) if kind == "http" else LocalClient(srv.rest)
    )
    try:
        await client.create(NODES, None, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}  # fmt: skip
        await client.create(PODS, "default", pod)
        await bind_pod(client, "default", "p", "n1")
        assert (await client.get(PODS, "default", "p"))["spec"]["nodeName"] == "n1"
        with pytest.raises(StatusError) as bound:
            await bind_pod(client, "default", "p", "n2")
        assert bound.value.code == 409
        assert bound.value.message.endswith('pod p is already assigned to node "n1"')
        with pytest.raises(StatusError) as missing:
            await bind_pod(client, "default", "nope", "n1")
        assert missing.value.code == 404
    finally:
        await client.close()
        await srv.stop()


def test_replicas_spread_over_nodes(cluster: Cluster) -> None:
    nodes = [cluster.node(n) for n in ("x", "y", "z")]
    rs = cluster.call(
        "POST",
        f"/apis/apps/v1/namespaces/{cluster.ns}/replicasets",
        201,
        json={
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 6,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        },
    )
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web",
        "uid": rs["metadata"]["uid"],
        "controller": True,
    }
    # Created back to back: most are scheduled before the informer shows the earlier bindings.
    for i in range(6):
        cluster.pod(f"web-{i}", labels={"app": "web"}, owner=owner)
    placed = Counter(cluster.wait_bound(f"web-{i}") for i in range(6))
    assert placed == dict.fromkeys(nodes, 2)
    cluster.call("DELETE", f"/apis/apps/v1/namespaces/{cluster.ns}/replicasets/web")


def test_host_port_conflict(cluster: Cluster) -> None:
    node = cluster.node("only")
    port = {"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}
    cluster.pod("first", ports=[port])
    cluster.pod("second", ports=[port])
    assert cluster.wait_bound("first") == node
    cluster.wait_unschedulable(
        "second",
        unschedulable_message(
            1,
            "1 node(s) didn't have free ports for the requested pod ports",
            "1 No preemption victims found for incoming pod",
        ),
    )
    # Conformance "no conflict between pods with same hostPort but different hostIP and protocol".
    cluster.pod("loopback-tcp", ports=[{"containerPort": 80, "hostPort": 54321, "hostIP": "127.0.0.1"}])
    cluster.pod("node-ip-tcp", ports=[{"containerPort": 80, "hostPort": 54321, "hostIP": "10.0.0.10"}])
    cluster.pod(
        "node-ip-udp",
        ports=[{"containerPort": 80, "hostPort": 54321, "hostIP": "10.0.0.10", "protocol": "UDP"}],
    )
    for pod in ("loopback-tcp", "node-ip-tcp", "node-ip-udp"):
        assert cluster.wait_bound(pod) == node
    # The port is free once its holder is gone.
    cluster.call("DELETE", f"/api/v1/namespaces/{cluster.ns}/pods/first?gracePeriodSeconds=0")
    assert cluster.wait_bound("second") == node


# --- node IPAM ----------------------------------------------------------------------------------


def _pod_cidrs(cluster: Cluster, names: list[str]) -> dict[str, str]:
    cidrs = {}
    for name in names:
        spec = cluster.get(f"/api/v1/nodes/{name}")["spec"]
        if spec.get("podCIDR"):
            assert spec.get("podCIDRs") == [spec["podCIDR"]]
            cidrs[name] = spec["podCIDR"]
    return cidrs


def test_node_ipam_gives_distinct_blocks_kept_across_restart(
    cluster: Cluster, controllers: BackgroundControllers
) -> None:
    names = [cluster.node(n) for n in ("a", "b", "c")]
    cidrs = wait_for("three podCIDRs", lambda: (c := _pod_cidrs(cluster, names)) and len(c) == 3 and c)
    blocks = [ipaddress.IPv4Network(c) for c in cidrs.values()]
    assert len(set(blocks)) == 3
    assert all(b.prefixlen == 24 and b.subnet_of(ipaddress.IPv4Network(CLUSTER_CIDR)) for b in blocks)
    controllers.restart()
    late = cluster.node("d")
    after = wait_for(
        "a podCIDR for the node added after the restart",
        lambda: late in (c := _pod_cidrs(cluster, [*names, late])) and c,
    )
    assert {n: after[n] for n in names} == cidrs
    assert ipaddress.IPv4Network(after[late]) not in blocks


def test_node_ipam_exhaustion(
    cluster: Cluster, controllers: BackgroundControllers, server: ServerProcess
) -> None:
    """A /24 cut into /25s has room for two nodes; the third gets CIDRNotAvailable until one goes."""
    controllers.stop()
    small = BackgroundControllers(
        server.kubeconfig,
        ControllerOptions(cluster_cidr="10.99.0.0/24", node_cidr_mask=25),
        {"nodeipam": NodeIpamController},
    ).start()
    try:
        first, second = cluster.node("a"), cluster.node("b")
        wait_for("two podCIDRs", lambda: len(_pod_cidrs(cluster, [first, second])) == 2)
        assert sorted(_pod_cidrs(cluster, [first, second]).values()) == ["10.99.0.0/25", "10.99.0.128/25"]
        third = cluster.node("c")
        event = cluster.wait_event(third, "CIDRNotAvailable", namespace="default")
        assert (event["type"], event["message"]) == (
            "Normal",
            f"Node {third} status is now: CIDRNotAvailable",
        )
        assert event["source"]["component"] == "cidrAllocator"
        assert _pod_cidrs(cluster, [third]) == {}
        freed = _pod_cidrs(cluster, [first])[first]
        cluster.call("DELETE", f"/api/v1/nodes/{first}")
        assert wait_for("the freed block", lambda: _pod_cidrs(cluster, [third])) == {third: freed}
        assert event == cluster.wait_event(third, "CIDRNotAvailable", namespace="default")  # told once
    finally:
        small.stop()
        controllers.start()


# --- LoadBalancer Services ----------------------------------------------------------------------


def _kubectl(server: ServerProcess) -> Kubectl:
    path = kubectl_path("1.33")
    if path is None:
        pytest.skip("kubectl.1.33 is not installed next to the machine's kubectl")
    return Kubectl(path, server.kubeconfig, "1.33")


def _external_ips(kubectl: Kubectl, namespace: str) -> dict[str, str]:
    out = kubectl.run("get", "svc", "-n", namespace, "--no-headers").stdout
    return {cols[0]: cols[3] for cols in (line.split() for line in out.splitlines() if line.strip())}


def test_load_balancer_pool(cluster: Cluster, server: ServerProcess) -> None:
    ns = cluster.ns
    for name in ("a", "b", "c"):
        cluster.service(name)
    cluster.wait_ingress("a", ["192.168.240.240"])
    cluster.wait_ingress("b", ["192.168.240.241"])
    cluster.wait_ingress("c", ["192.168.240.242"])
    assert cluster.get(f"/api/v1/namespaces/{ns}/services/a")["status"]["loadBalancer"]["ingress"] == [
        {"ip": "192.168.240.240", "ipMode": "VIP"}
    ]
    allocated = cluster.wait_event("a", "IPAllocated")
    assert (allocated["type"], allocated["message"]) == ("Normal", 'Assigned IP ["192.168.240.240"]')
    cluster.service("d")
    failed = cluster.wait_event("d", "AllocationFailed")
    assert (failed["type"], failed["message"]) == (
        "Warning",
        f'Failed to allocate IP for "{ns}/d": no available IPs in pool "default"',
    )
    cluster.service("foreign", loadBalancerClass="example.com/other-lb")
    kubectl = _kubectl(server)
    shown = wait_for("kubectl to list five services", lambda: len(s := _external_ips(kubectl, ns)) == 5 and s)
    assert shown == {
        "a": "192.168.240.240",
        "b": "192.168.240.241",
        "c": "192.168.240.242",
        "d": "<pending>",
        "foreign": "<pending>",
    }
    # Deleting a Service frees its address for the one waiting.
    cluster.call("DELETE", f"/api/v1/namespaces/{ns}/services/b")
    cluster.wait_ingress("d", ["192.168.240.241"])
    # A Service that stops being a LoadBalancer gives its address back.
    cluster.merge_patch(f"/api/v1/namespaces/{ns}/services/c", {"spec": {"type": "ClusterIP"}})
    cluster.wait_ingress("c", [])
    cluster.service("e")
    cluster.wait_ingress("e", ["192.168.240.242"])
    # The pending Service was told once; the foreign one never, and it has no address.
    assert cluster.wait_event("d", "AllocationFailed")["count"] == 1
    assert cluster.ingress("foreign") == []
    assert (
        cluster.get(f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3Dforeign")["items"]
        == []
    )


def test_load_balancer_requested_ip(cluster: Cluster) -> None:
    ns = cluster.ns
    cluster.service("wants-242", loadBalancerIP="192.168.240.242")
    cluster.wait_ingress("wants-242", ["192.168.240.242"])
    cluster.service("also-242", loadBalancerIP="192.168.240.242")
    cluster.service("outside", loadBalancerIP="10.1.2.3")
    cluster.service("any")
    cluster.wait_ingress("any", ["192.168.240.240"])
    taken = cluster.wait_event("also-242", "AllocationFailed")
    assert (
        taken["message"]
        == f'Failed to allocate IP for "{ns}/also-242": "192.168.240.242" is already in use by {ns}/wants-242'
    )
    refused = cluster.wait_event("outside", "AllocationFailed")
    assert (
        refused["message"] == f'Failed to allocate IP for "{ns}/outside": "10.1.2.3" is not allowed in config'
    )
    assert cluster.ingress("also-242") == cluster.ingress("outside") == []
    cluster.call("DELETE", f"/api/v1/namespaces/{ns}/services/wants-242")
    cluster.wait_ingress("also-242", ["192.168.240.242"])
    assert cluster.ingress("outside") == []


def test_load_balancer_without_a_pool(
    cluster: Cluster, controllers: BackgroundControllers, server: ServerProcess
) -> None:
    """As MetalLB with no address pool: every LoadBalancer Service stays pending, told once."""
    controllers.stop()
    poolless = BackgroundControllers(
        server.kubeconfig, ControllerOptions(), {"loadbalancer": LoadBalancerController}
    ).start()
    try:
        cluster.service("web")
        failed = cluster.wait_event("web", "AllocationFailed")
        assert (failed["type"], failed["message"]) == (
            "Warning",
            f'Failed to allocate IP for "{cluster.ns}/web": no available IPs in pool "default"',
        )
        # A change makes the controller look again; it does not say the same thing twice.
        cluster.merge_patch(
            f"/api/v1/namespaces/{cluster.ns}/services/web", {"metadata": {"labels": {"tier": "front"}}}
        )
        cluster.service("sync-marker")
        cluster.wait_event("sync-marker", "AllocationFailed")
        assert cluster.wait_event("web", "AllocationFailed")["count"] == 1
        assert cluster.ingress("web") == []
    finally:
        poolless.stop()
        controllers.start()
