"""LoadBalancer Services: an external IP from kubelite's address pool, as MetalLB's controller gives.

    Service informer ── any change ──► one key ("services")
    sync: pool.assign(every Service) ─┬─► status.loadBalancer.ingress through services/status
                                      │   (set, changed, or cleared when no longer LoadBalancer)
                                      └─► IPAllocated / AllocationFailed / LoadBalancerFailed events,
                                          each once per Service and outcome

The pool (``--loadbalancer-pool``) and the assignment rules are ``loadbalancer_model``; the
assignment is computed from the Services alone (addresses live in their status), so a restart
keeps every address where it is. Services of another ``loadBalancerClass`` are never touched.
With no pool configured every LoadBalancer Service stays ``<pending>`` with an AllocationFailed
event, as under MetalLB without an IPAddressPool. Statuses this controller wrote that the
informer has not shown yet count as written, so a sync running ahead of the cache hands out no
address twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kubelite.api.errors import StatusError
from kubelite.api.resources import INDEX
from kubelite.client.interface import ApiClient
from kubelite.controllers.base import InformerFactory, QueueController, object_key, split_key
from kubelite.controllers.loadbalancer_model import LoadBalancerPool

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kubelite.controllers.manager import ControllerOptions

log = logging.getLogger("kubelite.controllers.loadbalancer")

Obj = dict[str, Any]
SERVICES = INDEX.by_kind[("v1", "Service")]
ALL_SERVICES = "services"
"""The one queue key: every sync looks at every Service."""
CONFLICT_RETRY = 0.1
"""Seconds before a sync whose write met a 409 runs again, from a fresher cache."""


class LoadBalancerController(QueueController):
    name = "service-lb-controller"
    workers = 1

    def __init__(self, client: ApiClient, informers: InformerFactory, options: ControllerOptions) -> None:
        super().__init__(client, informers)
        if options.load_balancer_pool.strip():
            self.pool = LoadBalancerPool.parse(options.load_balancer_pool)  # ValueError says what is wrong
        else:
            log.warning(
                "no LoadBalancer address pool is configured: LoadBalancer Services stay pending; "
                "start the server with --loadbalancer-pool to give them addresses"
            )
            self.pool = LoadBalancerPool(())
        self.services = informers.informer(SERVICES)
        self._written: dict[str, Obj] = {}
        """key → the Service as our status write returned it, until the informer catches up."""
        self._told: dict[str, tuple[str, str]] = {}
        """key → (reason, message) of the last event recorded about the Service."""
        self.services.add_handler(self._changed, lambda _old, new: self._changed(new), self._deleted)

    def _changed(self, _svc: Obj) -> None:
        self.queue.add(ALL_SERVICES)

    def _deleted(self, svc: Obj) -> None:
        key = object_key(svc)
        self._written.pop(key, None)
        self._told.pop(key, None)
        self.queue.add(ALL_SERVICES)  # its address is free for a Service still pending

    def _current_services(self) -> list[Obj]:
        services: list[Obj] = []
        for svc in self.services.list():
            key = object_key(svc)
            written = self._written.get(key)
            if written is not None and _uid(written) == _uid(svc) and _rv(written) > _rv(svc):
                svc = written
            else:
                self._written.pop(key, None)
            services.append(svc)
        return services

    async def sync(self, key: str) -> None:
        services = self._current_services()
        by_key = {object_key(s): s for s in services}
        plan = self.pool.assign(services)
        unwritten: set[str] = set()
        for update in plan.updates:
            svc = by_key.get(update.key)
            if svc is not None and not await self._write_status(svc, update.load_balancer):
                unwritten.add(update.key)
        if unwritten:
            self.queue.add_after(key, CONFLICT_RETRY)
        for event in plan.events:
            svc = by_key.get(event.key)
            if svc is None or event.key in unwritten:
                continue  # gone, or its status is still to be written: the retry tells it
            if self._told.get(event.key) == (event.reason, event.message):
                continue  # a pending Service is told once, not at every sync
            self._told[event.key] = (event.reason, event.message)
            await self.recorder.event(svc, event.type, event.reason, event.message)

    async def _write_status(self, svc: Obj, load_balancer: Mapping[str, Any]) -> bool:
        """Write ``status.loadBalancer``; False if a concurrent write got in the way (try again)."""
        key = object_key(svc)
        ns, name = split_key(key)
        # A merge patch replaces the ingress list whole; None removes it (status.loadBalancer: {}).
        ingress = list(load_balancer.get("ingress") or []) or None
        patch = {"metadata": {"uid": _uid(svc)}, "status": {"loadBalancer": {"ingress": ingress}}}
        try:
            written = await self.client.patch(SERVICES, ns, name, patch, subresource="status")
        except StatusError as e:
            if e.code == 404:
                return True  # deleted meanwhile: nothing to do
            if e.code == 409:  # replaced by a Service of the same name (the uid), or a write raced ours
                log.info("service %s: status not written: %s; retrying", key, e)
                return False
            raise
        self._written[key] = written
        log.info("service %s: load balancer ingress %s", key, [i["ip"] for i in ingress or []] or "cleared")
        return True


def _uid(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _rv(obj: Obj) -> int:
    # kubelite's resourceVersions are store revisions; anything else counts as oldest.
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else 0
