"""The agent's Node: registration, status heartbeat and the Lease in ``kube-node-lease``.

As the kubelet does: on start the agent creates its Node (or takes over an existing one with the
same name), with addresses, capacity, the kubelet endpoint and a Ready condition; then it renews a
Lease every ``lease_seconds`` (the cheap heartbeat the node lifecycle reads) and rewrites the
status only when something changed or every ``status_seconds`` (``nodeStatusReportFrequency``).

``node_object``/``node_status`` are pure so tests check the object without a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubelite.api.errors import StatusError
from kubelite.api.resources import INDEX
from kubelite.client.interface import ApiClient

__all__ = ["KUBELET_VERSION", "NodeAgent", "NodeIdentity", "node_object", "node_status"]

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.33.0+kubelite"
NODES = INDEX.by_kind[("v1", "Node")]
LEASES = INDEX.by_kind[("coordination.k8s.io/v1", "Lease")]
LEASE_NAMESPACE = "kube-node-lease"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """What the agent says about its node."""

    name: str
    internal_ip: str
    kubelet_port: int = 10250
    max_pods: int = 110
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def _memory_kib() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError), open(path) as f:
            return f.read().strip()
    return ""


def _boot_id() -> str:
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()
    return ""


def node_status(
    ident: NodeIdentity, *, ready: bool, message: str, previous: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The status block; conditions keep ``lastTransitionTime`` while their status is unchanged."""
    now = now_rfc3339()
    old = {c.get("type"): c for c in (previous or {}).get("conditions") or []}

    def condition(ctype: str, status: str, reason: str, msg: str) -> dict[str, Any]:
        prev = old.get(ctype) or {}
        since = prev.get("lastTransitionTime") if prev.get("status") == status else None
        return {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": msg,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since or now,
        }

    cpus = str(os.cpu_count() or 1)
    memory = f"{_memory_kib()}Ki"
    capacity = {"cpu": cpus, "memory": memory, "pods": str(ident.max_pods), "ephemeral-storage": "10Gi"}
    uname = platform.uname()
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": [
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition(
                "PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"
            ),
            condition(
                "Ready", "True" if ready else "False", "KubeletReady" if ready else "KubeletNotReady", message
            ),
        ],
        "addresses": [
            {"type": "InternalIP", "address": ident.internal_ip},
            {"type": "Hostname", "address": ident.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": ident.kubelet_port}},
        "nodeInfo": {
            "machineID": _machine_id(),
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, ident.name)),
            "bootID": _boot_id(),
            "kernelVersion": uname.release,
            "osImage": "kubelite (host processes)",
            "containerRuntimeVersion": "kubelite://0.1.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine),
        },
    }


def node_object(ident: NodeIdentity, *, ready: bool, message: str) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": ident.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        **ident.labels,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": ident.name, "labels": labels, "annotations": dict(ident.annotations)},
        "spec": {},
        "status": node_status(ident, ready=ready, message=message, previous=None),
    }


class NodeAgent:
    """Registers the Node, then keeps its Lease and status fresh until :meth:`stop`."""

    def __init__(
        self,
        client: ApiClient,
        ident: NodeIdentity,
        *,
        lease_seconds: float = 10.0,
        status_seconds: float = 60.0,
        lease_duration: int = 40,
    ) -> None:
        self.client = client
        self.ident = ident
        self.lease_seconds = lease_seconds
        self.status_seconds = status_seconds
        self.lease_duration = lease_duration
        self.node: dict[str, Any] = {}
        self.ready_message = "kubelet is posting ready status"
        self._task: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()

    async def register(self) -> dict[str, Any]:
        """Create the Node, or update an existing one with our identity (labels, status)."""
        body = node_object(self.ident, ready=True, message=self.ready_message)
        try:
            self.node = await self.client.create(NODES, None, body)
            log.info("registered node %s (%s)", self.ident.name, self.ident.internal_ip)
        except StatusError as exc:
            if exc.code != 409:
                raise
            current = await self.client.get(NODES, None, self.ident.name)
            meta = current.setdefault("metadata", {})
            meta.setdefault("labels", {}).update(body["metadata"]["labels"])
            meta.setdefault("annotations", {}).update(body["metadata"]["annotations"])
            current = await self.client.update(NODES, None, current)
            self.node = current
            await self.update_status()
            log.info("node %s already registered; took it over", self.ident.name)
        return self.node

    async def update_status(self) -> None:
        previous = self.node.get("status") or {}
        status = node_status(self.ident, ready=True, message=self.ready_message, previous=previous)
        self.node = await self.client.patch(
            NODES, None, self.ident.name, {"status": status}, subresource="status"
        )

    async def wait_pod_cidr(self, seconds: float = 60.0) -> str:
        """Poll until node IPAM has written ``spec.podCIDR``; TimeoutError with a sentence otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        delay = 0.05
        while True:
            node = await self.client.get(NODES, None, self.ident.name)
            cidr = str((node.get("spec") or {}).get("podCIDR") or "")
            if cidr:
                self.node = node
                return cidr
            if loop.time() > deadline:
                raise TimeoutError(
                    f"node {self.ident.name} got no spec.podCIDR within {seconds:.0f} s: is the server's "
                    "nodeipam controller running (kubelite server --controllers)?"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._heartbeat(), name=f"node-heartbeat-{self.ident.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _renew_lease(self) -> None:
        spec = {
            "holderIdentity": self.ident.name,
            "leaseDurationSeconds": self.lease_duration,
            "renewTime": now_micro(),
        }
        try:
            await self.client.patch(LEASES, LEASE_NAMESPACE, self.ident.name, {"spec": spec})
        except StatusError as exc:
            if exc.code != 404:
                raise
            owner = {
                "apiVersion": "v1",
                "kind": "Node",
                "name": self.ident.name,
                "uid": (self.node.get("metadata") or {}).get("uid", ""),
            }
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.ident.name,
                    "namespace": LEASE_NAMESPACE,
                    "ownerReferences": [owner],
                },
                "spec": {**spec, "acquireTime": spec["renewTime"]},
            }
            await self.client.create(LEASES, LEASE_NAMESPACE, lease)

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        last_status = loop.time()
        while True:
            try:
                await self._renew_lease()
                if loop.time() - last_status >= self.status_seconds:
                    await self.update_status()
                    last_status = loop.time()
            except Exception as exc:  # keep beating; the next round may succeed
                log.warning("node heartbeat failed: %s", exc)
            await asyncio.sleep(self.lease_seconds)
