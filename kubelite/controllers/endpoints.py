"""Endpoints, EndpointSlice and EndpointSlice-mirroring controllers.

    Service ─┐                       ┌─► Endpoints (services with a selector)
    Pod ─────┼─► queue of services ──┼─► EndpointSlices (managed-by endpointslice-controller)
    Node ────┘   (a pod change        └─► mirrored EndpointSlices (services without a selector,
                  enqueues every           from the user's Endpoints)
                  service selecting it)

The computation is pure (``endpoints_model``, ``endpointslice_model``); these classes only map
informer events to service keys, remember when a change was first seen (the
``endpoints.kubernetes.io/last-change-trigger-time`` annotation that network programming
latency is measured from) and write the result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubelite.api.errors import StatusError
from kubelite.api.resources import INDEX
from kubelite.api.selectors import selector_from_map
from kubelite.client.interface import ApiClient
from kubelite.controllers.base import InformerFactory, QueueController, object_key, split_key
from kubelite.controllers.endpoints_model import (
    NodeInfo,
    PodInfo,
    ServiceInfo,
    desired_endpoints,
    endpoints_changed,
)
from kubelite.controllers.endpointslice_model import (
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    SlicePlan,
    desired_endpoint_slices,
    mirrored_slices,
    service_wants_mirroring,
)

Obj = dict[str, Any]
SERVICES = INDEX.by_kind[("v1", "Service")]
PODS = INDEX.by_kind[("v1", "Pod")]
NODES = INDEX.by_kind[("v1", "Node")]
ENDPOINTS = INDEX.by_kind[("v1", "Endpoints")]
SLICES = INDEX.by_kind[("discovery.k8s.io/v1", "EndpointSlice")]


class ServiceQueueController(QueueController):
    """Keys are services; pod changes enqueue the services whose selector matches the pod."""

    def __init__(self, client: ApiClient, informers: InformerFactory) -> None:
        super().__init__(client, informers)
        self.services = informers.informer(SERVICES)
        self.pods = informers.informer(PODS)
        self._trigger: dict[str, datetime] = {}
        self.services.add_handler(self._service_changed, lambda _old, new: self._service_changed(new),
                                  self._service_changed)  # fmt: skip
        self.pods.add_handler(self._pod_changed, self._pod_updated, self._pod_changed)

    def _mark(self, key: str) -> None:
        # The first unprocessed change is what the next write reports as its trigger time.
        self._trigger.setdefault(key, datetime.now(UTC))
        self.queue.add(key)

    def _service_changed(self, svc: Obj) -> None:
        self._mark(object_key(svc))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if _pod_view(old) == _pod_view(new):
            return  # status heartbeats and the like change nothing an endpoint shows
        self._pod_changed(old)
        if (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"):
            self._pod_changed(new)

    def _pod_changed(self, pod: Obj) -> None:
        ns = pod.get("metadata", {}).get("namespace", "")
        labels = pod.get("metadata", {}).get("labels") or {}
        for svc in self.services.list(ns):
            selector = (svc.get("spec") or {}).get("selector")
            if selector and selector_from_map(selector).matches(labels):
                self._mark(object_key(svc))

    def take_trigger(self, key: str) -> datetime:
        return self._trigger.pop(key, None) or datetime.now(UTC)

    def pods_of(self, svc: ServiceInfo) -> list[PodInfo]:
        if svc.selector is None:
            return []
        sel = selector_from_map(svc.selector)
        return [PodInfo.from_object(p) for p in self.pods.list(svc.namespace)
                if sel.matches(p.get("metadata", {}).get("labels") or {})]  # fmt: skip


def _pod_view(pod: Obj) -> Any:
    """What of a pod an endpoint can show: a change outside this does not concern services."""
    info = PodInfo.from_object(pod)
    return (info.labels, info.ips, info.node_name, info.hostname, info.subdomain, info.phase, info.ready,
            info.deleting, info.container_ports)  # fmt: skip


class EndpointsController(ServiceQueueController):
    name = "endpoint-controller"

    def __init__(self, client: ApiClient, informers: InformerFactory) -> None:
        super().__init__(client, informers)
        self.endpoints = informers.informer(ENDPOINTS)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        trigger = self.take_trigger(key)
        svc_obj = self.services.get(ns, name)
        current = self.endpoints.get(ns, name)
        if svc_obj is None:
            if current is not None:
                await _delete_ignoring_missing(self.client, ENDPOINTS, ns, name)
            return
        svc = ServiceInfo.from_object(svc_obj)
        desired = desired_endpoints(svc, self.pods_of(svc), now=trigger, current=current)
        if desired is None:
            return  # no selector: the user owns the Endpoints
        if current is None:
            await self.client.create(ENDPOINTS, ns, desired)
        elif endpoints_changed(current, desired):
            await self.client.update(ENDPOINTS, ns, desired)


class EndpointSliceController(ServiceQueueController):
    name = "endpointslice-controller"

    def __init__(self, client: ApiClient, informers: InformerFactory) -> None:
        super().__init__(client, informers)
        self.slices = informers.informer(SLICES)
        self.nodes = informers.informer(NODES)
        self.slices.add_index("service", _slice_service_key)
        # A slice changed or deleted behind our back (the conformance "recreate" test) is reconciled.
        self.slices.add_handler(None, lambda _old, new: self._slice_changed(new), self._slice_changed)

    def _slice_changed(self, slc: Obj) -> None:
        labels = slc.get("metadata", {}).get("labels") or {}
        if labels.get(LABEL_MANAGED_BY) == "endpointslice-controller.k8s.io" and labels.get(
            LABEL_SERVICE_NAME
        ):
            self.queue.add(f"{slc['metadata'].get('namespace', '')}/{labels[LABEL_SERVICE_NAME]}")

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        trigger = self.take_trigger(key)
        svc_obj = self.services.get(ns, name)
        existing = self.slices.by_index("service", key)
        if svc_obj is None:
            for slc in existing:
                if (slc["metadata"].get("labels") or {}).get(
                    LABEL_MANAGED_BY
                ) == "endpointslice-controller.k8s.io":
                    await _delete_ignoring_missing(self.client, SLICES, ns, slc["metadata"]["name"])
            return
        svc = ServiceInfo.from_object(svc_obj)
        # Zones come from nodes; a cluster without Node objects (no agents yet) still gets slices.
        nodes = {n.name: n for n in map(NodeInfo.from_object, self.nodes.list())}
        plan = desired_endpoint_slices(svc, self.pods_of(svc), existing, now=trigger, nodes=nodes or None)
        await apply_slice_plan(self.client, ns, plan)


class EndpointSliceMirroringController(QueueController):
    """Services without a selector: their user-written Endpoints are mirrored into slices."""

    name = "endpointslicemirroring-controller"

    def __init__(self, client: ApiClient, informers: InformerFactory) -> None:
        super().__init__(client, informers)
        self.services = informers.informer(SERVICES)
        self.endpoints = informers.informer(ENDPOINTS)
        self.slices = informers.informer(SLICES)
        for informer in (self.services, self.endpoints):
            informer.add_handler(self.enqueue, lambda _old, new: self.enqueue(new), self.enqueue)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.services.get(ns, name)
        endpoints = self.endpoints.get(ns, name)
        info = ServiceInfo.from_object(svc) if svc is not None else None
        wanted = endpoints if service_wants_mirroring(info) else None
        existing = [s for s in self.slices.list(ns)
                    if (s["metadata"].get("labels") or {}).get(LABEL_SERVICE_NAME) == name]  # fmt: skip
        await apply_slice_plan(self.client, ns, mirrored_slices(wanted, existing))


def _slice_service_key(slc: Obj) -> list[str]:
    md = slc.get("metadata") or {}
    svc = (md.get("labels") or {}).get(LABEL_SERVICE_NAME)
    return [f"{md.get('namespace', '')}/{svc}"] if svc else []


async def apply_slice_plan(client: ApiClient, namespace: str, plan: SlicePlan) -> None:
    for slc in plan.to_delete:
        await _delete_ignoring_missing(client, SLICES, namespace, slc["metadata"]["name"])
    for slc in plan.to_update:
        await client.update(SLICES, namespace, slc)
    for slc in plan.to_create:
        await client.create(SLICES, namespace, slc)


async def _delete_ignoring_missing(client: ApiClient, rt: Any, namespace: str, name: str) -> None:
    try:
        await client.delete(rt, namespace, name)
    except StatusError as e:
        if e.code != 404:
            raise
