"""Repair of the ClusterIP and NodePort allocations, as kube-apiserver's repair loops do.

An allocation is a key committed together with its Service (see ``allocators.py``), so a crash
cannot leak one. The repair still checks, at start and then periodically, that the two agree,
because keys can be damaged from outside (a restore, a hand edit of the store, a bug):

    allocation key without a Service that uses it   -> deleted (leak reclaimed)
    Service value without its allocation key        -> key created
    one value claimed by two Services               -> Event "ClusterIPAlreadyAllocated" /
                                                       "PortAlreadyAllocated" on the later one
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubelite.api.errors import StatusError
from kubelite.api.meta import format_time, now
from kubelite.api.resources import INDEX
from kubelite.apiserver.allocators import RangeAllocator
from kubelite.apiserver.objects import decode
from kubelite.apiserver.registry.service import allocated_ips, allocated_node_ports
from kubelite.apiserver.rest import Rest
from kubelite.store.interface import ConflictError, Create, Delete, KeyExistsError, KeyNotFoundError, Op

log = logging.getLogger("kubelite.repair")
Obj = dict[str, Any]


@dataclass(slots=True)
class RepairReport:
    reclaimed: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    """(value, "namespace/name" of the Service that lost)"""


class AllocationRepair:
    def __init__(self, rest: Rest, cluster_ips: RangeAllocator, node_ports: RangeAllocator,
                 interval: float = 180.0) -> None:  # fmt: skip
        self._rest = rest
        self._ips = cluster_ips
        self._ports = node_ports
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.run_once()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.run_once()
            except Exception:
                log.exception("allocation repair failed; trying again in %.0f s", self._interval)

    async def run_once(self) -> RepairReport:
        storage = self._rest.storage
        rt = INDEX.for_kind("v1", "Service")
        assert rt is not None
        listed = [decode(kv) for kv in (await storage.list(rt.prefix(None))).items]
        # Oldest first: on a double allocation the Service created later is the one reported.
        services = sorted(
            listed, key=lambda s: (s["metadata"].get("creationTimestamp", ""), s["metadata"]["uid"])
        )
        report = RepairReport()
        for alloc, values_of, reason in (
            (self._ips, allocated_ips, "ClusterIPAlreadyAllocated"),
            (self._ports, lambda spec: [str(p) for p in allocated_node_ports(spec)], "PortAlreadyAllocated"),
        ):
            owners: dict[str, str] = {}
            for svc in services:
                owner = f"{svc['metadata'].get('namespace', '')}/{svc['metadata']['name']}"
                for value in values_of(svc.get("spec") or {}):
                    if value in owners and owners[value] != owner:
                        report.duplicates.append((value, owner))
                        await self._event(svc, reason, value, owners[value])
                    else:
                        owners[value] = owner
            keys = {kv.key[len(alloc.prefix) :]: kv for kv in (await storage.list(alloc.prefix)).items}
            ops: list[Op] = []
            for value, kv in keys.items():
                if value not in owners:
                    ops.append(Delete(kv.key, kv.mod_revision))
                    report.reclaimed.append(alloc.prefix + value)
            for value, owner in owners.items():
                if value not in keys:
                    ops.append(Create(alloc.key(value), owner.encode()))
                    report.restored.append(alloc.prefix + value)
            for op in ops:  # one by one: a Service created meanwhile must not fail the whole repair
                with contextlib.suppress(KeyExistsError, KeyNotFoundError, ConflictError):
                    await storage.commit([op])
            await alloc.load()
        if report.reclaimed or report.restored or report.duplicates:
            log.warning("allocation repair: reclaimed %s, restored %s, duplicates %s", report.reclaimed,
                        report.restored, report.duplicates)  # fmt: skip
        return report

    async def _event(self, svc: Obj, reason: str, value: str, holder: str) -> None:
        md = svc["metadata"]
        what = "Cluster IP" if reason.startswith("ClusterIP") else "Port"
        stamp = format_time(now())
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{md['name']}.", "namespace": md.get("namespace", "default")},
            "involvedObject": {
                "kind": "Service",
                "apiVersion": "v1",
                "namespace": md.get("namespace", ""),
                "name": md["name"],
                "uid": md.get("uid", ""),
            },
            "reason": reason,
            "message": f"{what} {value} was assigned to multiple services; please recreate service "
            f"(also held by {holder})",
            "type": "Warning",
            "source": {"component": "ipallocator-repair-controller"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        rt = INDEX.for_kind("v1", "Event")
        assert rt is not None
        with contextlib.suppress(StatusError):
            await self._rest.create(rt, event["metadata"]["namespace"], orjson.loads(orjson.dumps(event)))
