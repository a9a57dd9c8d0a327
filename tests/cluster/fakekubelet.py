"""``FakeKubelet``: the node agent's side of the API, for tests, until the real agent exists.

    FakeKubelet(kubeconfig, nodes)          everything through the API, as the agent will do it
      start() ── registers the Nodes (Ready, InternalIP, allocatable pods 110, kubelet version)
              └─ watches pods ─► queue of pod keys ─► workers:
                   bound to one of its nodes ─► status Running / Ready, a pod IP (status subresource)
                   deletionTimestamp set ─────► the final DELETE with gracePeriodSeconds=0
                   unbound (bind_unscheduled) ► POST pods/<name>/binding, round-robin over the
                                                nodes the pod fits (a scheduler stand-in)
      stop() ─── stops watching; the Nodes stay registered, as a stopped kubelet leaves them

Pod IPs come from the node's ``spec.podCIDR`` when a node IPAM controller assigned one, else
from ``10.250.<n>.0/24`` for the n-th node. ``ready_delay`` (seconds) holds each new pod back
before it turns Running and Ready, so tests can watch a rollout step by step.

It is asyncio: run it in the test's loop, or from synchronous tests in a ``LoopThread``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import ipaddress
import itertools
import logging
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from kubelite.api.errors import StatusError
from kubelite.api.meta import format_time, now
from kubelite.api.resources import INDEX
from kubelite.client.http import HttpClient
from kubelite.client.informer import Informer
from kubelite.client.workqueue import WorkQueue, run_workers
from kubelite.controllers.daemonset_model import default_fits

log = logging.getLogger("tests.fakekubelet")
Obj = dict[str, Any]
T = TypeVar("T")
PODS = INDEX.by_kind[("v1", "Pod")]
NODES = INDEX.by_kind[("v1", "Node")]
CONTROL_PLANE_TAINT: Mapping[str, str] = {
    "key": "node-role.kubernetes.io/control-plane",
    "effect": "NoSchedule",
}
FALLBACK_POD_CIDR = "10.250.{index}.0/24"
RETRY_DELAY = 0.05
NODE_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


@dataclass(frozen=True, slots=True)
class FakeNode:
    name: str
    internal_ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[Mapping[str, str]] = ()

    @classmethod
    def control_plane(cls, name: str, internal_ip: str) -> FakeNode:
        """A control-plane node, tainted NoSchedule as kubeadm taints it."""
        labels = {"node-role.kubernetes.io/control-plane": ""}
        return cls(name, internal_ip, labels, (CONTROL_PLANE_TAINT,))


def fake_nodes(count: int, *, control_plane: bool = False, prefix: str = "fake-node") -> list[FakeNode]:
    """``count`` nodes on 172.31.0.0/24 (the first a tainted control-plane node if asked)."""
    nodes = [FakeNode(f"{prefix}-{i}", f"172.31.0.{10 + i}") for i in range(count)]
    if control_plane and nodes:
        nodes[0] = FakeNode.control_plane(f"{prefix}-control-plane", nodes[0].internal_ip)
    return nodes


class _KubeletClient(HttpClient):
    """HttpClient with a pod-binding shorthand (the stand-in scheduler's only write)."""

    async def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        await self.create_subresource(PODS, namespace, name, "binding", body)


class FakeKubelet:
    def __init__(
        self,
        kubeconfig: str | Path,
        nodes: Sequence[FakeNode] | int = 3,
        *,
        bind_unscheduled: bool = False,
        ready_delay: float = 0.0,
        kubelet_version: str = "v1.33.0",
        workers: int = 4,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.nodes: dict[str, FakeNode] = {
            n.name: n for n in (fake_nodes(nodes) if isinstance(nodes, int) else nodes)
        }
        self.bind_unscheduled = bind_unscheduled
        self.ready_delay = ready_delay
        self.kubelet_version = kubelet_version
        self.workers = workers
        self._index = {name: i for i, name in enumerate(self.nodes)}
        self._client: _KubeletClient | None = None
        self._pods: Informer | None = None
        self._node_cache: Informer | None = None
        self._queue: WorkQueue[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ips: dict[str, dict[str, str]] = {name: {} for name in self.nodes}
        """node → pod key → IP."""
        self._first_seen: dict[str, float] = {}
        self._round_robin = itertools.count()

    @property
    def node_names(self) -> list[str]:
        return list(self.nodes)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the nodes, then watch pods; returns once the pod cache has synced."""
        if self._task is not None:
            raise RuntimeError("this FakeKubelet is already running")
        client = cast(_KubeletClient, _KubeletClient.from_kubeconfig(self.kubeconfig))
        self._client = client
        queue: WorkQueue[str] = WorkQueue()
        self._queue = queue
        self._node_cache = Informer(client, NODES)
        self._pods = Informer(client, PODS)
        self._pods.add_handler(
            lambda pod: queue.add(_key(pod)),
            lambda _old, new: queue.add(_key(new)),
            lambda pod: queue.add(_key(pod)),
        )
        try:
            for node in self.nodes.values():
                await self._register(client, node)
            await self._node_cache.start()
            await self._pods.start()
            await asyncio.gather(self._node_cache.wait_synced(), self._pods.wait_synced())
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(run_workers(queue, self._sync, self.workers, name="fake kubelet"))

    async def stop(self) -> None:
        """Stop the workers and the watches and close the connection (bounded: cancellation)."""
        if self._queue is not None:
            self._queue.shutdown()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for informer in (self._pods, self._node_cache):
            if informer is not None:
                await informer.stop()
        if self._client is not None:
            await self._client.close()
            self._client = None

    # --- nodes ----------------------------------------------------------------------------------

    async def _register(self, client: _KubeletClient, node: FakeNode) -> None:
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node.name,
                "labels": {
                    "kubernetes.io/hostname": node.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    **node.labels,
                },
            },
            "spec": {"taints": [dict(t) for t in node.taints]} if node.taints else {},
        }
        try:
            await client.create(NODES, None, body)
        except StatusError as e:
            if e.code != 409:
                raise  # 409: registered by an earlier run; its status is refreshed below
        await client.patch(NODES, None, node.name, {"status": self._node_status(node)}, subresource="status")

    def _node_status(self, node: FakeNode) -> Obj:
        stamp = format_time(now())
        resources = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"}

        def condition(kind: str, status: str, reason: str, message: str) -> Obj:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}  # fmt: skip

        return {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [condition(*c) for c in NODE_CONDITIONS],
            "addresses": [
                {"type": "InternalIP", "address": node.internal_ip},
                {"type": "Hostname", "address": node.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": hashlib.md5(node.name.encode()).hexdigest(),
                "systemUUID": hashlib.md5(node.name.encode()).hexdigest(),
                "bootID": hashlib.md5(f"boot-{node.name}".encode()).hexdigest(),
                "kernelVersion": "6.1.0-fake",
                "osImage": "kubelite fake node",
                "containerRuntimeVersion": "fake://1.0.0",
                "kubeletVersion": self.kubelet_version,
                "kubeProxyVersion": self.kubelet_version,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def _node_object(self, name: str) -> Obj | None:
        return self._node_cache.get(None, name) if self._node_cache is not None else None

    # --- pods -----------------------------------------------------------------------------------

    async def _sync(self, key: str) -> None:
        assert self._pods is not None and self._client is not None and self._queue is not None
        ns, _, name = key.partition("/")
        pod = self._pods.get(ns, name)
        if pod is None:
            self._forget(key)
            return
        meta, spec = pod["metadata"], pod.get("spec") or {}
        node = spec.get("nodeName") or ""
        deleting = meta.get("deletionTimestamp") is not None
        if not node:
            if self.bind_unscheduled and not deleting:
                await self._bind(pod)
            return
        if node not in self.nodes:
            return
        if deleting:
            await self._finish(pod)
            return
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        if _running_and_ready(status):
            if status.get("podIP") and not spec.get("hostNetwork"):
                self._ips[node].setdefault(key, status["podIP"])  # after a restart: keep its IP taken
            return
        loop_now = asyncio.get_running_loop().time()
        wait = self._first_seen.setdefault(key, loop_now) + self.ready_delay - loop_now
        if wait > 0:
            self._queue.add_after(key, wait)
            return
        await self._run(pod, node)

    async def _bind(self, pod: Obj) -> None:
        assert self._client is not None and self._queue is not None
        spec = pod.get("spec") or {}
        fitting = [
            name
            for name in self.nodes
            if (obj := self._node_object(name)) is not None and default_fits(spec, obj)
        ]
        if not fitting:
            self._queue.add_after(_key(pod), 1.0)  # nodes may change; look again
            return
        node = fitting[next(self._round_robin) % len(fitting)]
        meta = pod["metadata"]
        try:
            await self._client.bind(meta["namespace"], meta["name"], meta.get("uid", ""), node)
        except StatusError as e:
            self._retry_unless_gone(_key(pod), e)

    async def _run(self, pod: Obj, node: str) -> None:
        """Write the status of a pod whose containers all started and are ready."""
        assert self._client is not None
        meta, spec = pod["metadata"], pod.get("spec") or {}
        key = _key(pod)
        host_ip = self.nodes[node].internal_ip
        pod_ip = host_ip if spec.get("hostNetwork") else self._allocate(node, key)
        stamp = format_time(now())
        old = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}

        def condition(kind: str) -> Obj:
            since = (old.get(kind) or {}).get("lastTransitionTime") if kind == "PodScheduled" else None
            return {
                "type": kind,
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": since or stamp,
            }

        status = {
            "phase": "Running",
            "conditions": [condition(k) for k in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": stamp,
            "containerStatuses": [
                _running(c, meta.get("uid", ""), stamp) for c in spec.get("containers") or []
            ],
        }
        if spec.get("initContainers"):
            status["initContainerStatuses"] = [
                _completed(c, meta.get("uid", ""), stamp) for c in spec["initContainers"]
            ]
        patch = {"metadata": {"uid": meta.get("uid")}, "status": status}
        try:
            await self._client.patch(PODS, meta["namespace"], meta["name"], patch, subresource="status")
        except StatusError as e:
            self._retry_unless_gone(key, e)

    async def _finish(self, pod: Obj) -> None:
        """The kubelet's final delete once the containers have stopped (here: at once)."""
        assert self._client is not None
        meta = pod["metadata"]
        try:
            await self._client.delete(
                PODS,
                meta["namespace"],
                meta["name"],
                grace_period_seconds=0,
                precondition_uid=meta.get("uid", ""),
            )
        except StatusError as e:
            self._retry_unless_gone(_key(pod), e)

    def _retry_unless_gone(self, key: str, error: StatusError) -> None:
        """A write that found the pod gone (404) is done; one that conflicted (409: bound or
        replaced meanwhile, or a lost race) looks at the pod again shortly; others are errors."""
        assert self._queue is not None
        if error.code == 409:
            self._queue.add_after(key, RETRY_DELAY)
        elif error.code != 404:
            raise error

    def _allocate(self, node: str, key: str) -> str:
        taken = self._ips[node]
        if key in taken:
            return taken[key]
        cidr = ((self._node_object(node) or {}).get("spec") or {}).get("podCIDR")
        network = ipaddress.ip_network(cidr or FALLBACK_POD_CIDR.format(index=self._index[node]))
        used = set(taken.values())
        for host in itertools.islice(network.hosts(), 1, None):  # .1 is the node's bridge
            if str(host) not in used:
                taken[key] = str(host)
                return str(host)
        raise RuntimeError(f"node {node} has no pod IP left in {network}")

    def _forget(self, key: str) -> None:
        self._first_seen.pop(key, None)
        for taken in self._ips.values():
            taken.pop(key, None)


def _key(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _running_and_ready(status: Mapping[str, Any]) -> bool:
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    return status.get("phase") == "Running" and ready and bool(status.get("podIP"))


def _container_id(uid: str, name: str) -> str:
    return "fake://" + hashlib.sha256(f"{uid}/{name}".encode()).hexdigest()[:32]


def _image_id(image: str) -> str:
    return f"{image.split(':')[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _running(container: Mapping[str, Any], uid: str, stamp: str) -> Obj:
    image = str(container.get("image") or "")
    return {
        "name": container.get("name"),
        "image": image,
        "imageID": _image_id(image),
        "containerID": _container_id(uid, str(container.get("name"))),
        "ready": True,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": stamp}},
        "lastState": {},
    }


def _completed(container: Mapping[str, Any], uid: str, stamp: str) -> Obj:
    image = str(container.get("image") or "")
    done = {"exitCode": 0, "reason": "Completed", "startedAt": stamp, "finishedAt": stamp,
            "containerID": _container_id(uid, str(container.get("name")))}  # fmt: skip
    return {
        "name": container.get("name"),
        "image": image,
        "imageID": _image_id(image),
        "containerID": done["containerID"],
        "ready": True,
        "started": False,
        "restartCount": 0,
        "state": {"terminated": done},
        "lastState": {},
    }


# --- driving asyncio components from synchronous tests ----------------------------------------------


class LoopThread:
    """An event loop in a background thread: ``run(coro)`` runs a coroutine there and waits.

    ``close()`` cancels whatever is left, shuts down async generators and the default executor,
    stops the loop, joins the thread and closes the loop, each step bounded by ``timeout``.
    """

    def __init__(self, name: str = "test-loop", timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        selector = getattr(self.loop, "_selector", None)
        self._registered_at_start = len(selector.get_map()) if selector is not None else 0
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        limit = self.timeout if timeout is None else timeout
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise AssertionError(
                f"{getattr(coro, '__qualname__', coro)} did not finish in {limit}s"
            ) from None

    def close(self) -> None:
        if self.loop.is_closed():
            return

        async def shutdown() -> None:
            current = asyncio.current_task()
            leftover = [t for t in asyncio.all_tasks() if t is not current]
            for task in leftover:
                task.cancel()
            await asyncio.gather(*leftover, return_exceptions=True)
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()
            await self._sockets_closed()

        try:
            if self._thread.is_alive():
                self.run(shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(self.timeout)
            if not self._thread.is_alive():
                self.loop.close()

    async def _sockets_closed(self) -> None:
        """Wait (bounded) until no socket is registered with the loop but its own wake-up pipe.

        A TLS connection closes its socket only after the shutdown handshake, which runs on the
        loop after the client said close; a loop stopped before that leaves the socket open, and
        its garbage collection warns (an error in these tests). Cancelled watches' connections,
        closed outside the client's pool, are the usual stragglers.
        """
        selector = getattr(self.loop, "_selector", None)  # asyncio keeps no public registry
        if selector is None:
            return
        deadline = self.loop.time() + self.timeout
        while len(selector.get_map()) > self._registered_at_start and self.loop.time() < deadline:
            await asyncio.sleep(0.02)

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
