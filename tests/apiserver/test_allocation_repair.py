"""Allocation repair against a real SQLite store: damage the allocation keys, repair them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kubelite.api.resources import INDEX
from kubelite.apiserver.allocators import IP_PREFIX, NODEPORT_PREFIX
from kubelite.apiserver.objects import encode
from kubelite.apiserver.registry import RegistryConfig, RegistryContext
from kubelite.apiserver.repair import AllocationRepair
from kubelite.apiserver.rest import Rest
from kubelite.apiserver.server import build_registry
from kubelite.store.interface import Create, Delete
from kubelite.store.sqlite import SqliteStorage

SERVICES = INDEX.for_kind("v1", "Service")
NAMESPACES = INDEX.for_kind("v1", "Namespace")
EVENTS = INDEX.for_kind("v1", "Event")


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[tuple[Rest, RegistryContext, SqliteStorage]]:
    storage = SqliteStorage(tmp_path / "state.db")
    await storage.start()
    rest, ctx = await build_registry(storage, RegistryConfig())
    assert NAMESPACES is not None
    await rest.create(
        NAMESPACES, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
    )
    try:
        yield rest, ctx, storage
    finally:
        await storage.close()


def _svc(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


async def test_repair_reclaims_and_restores(registry: tuple[Rest, RegistryContext, SqliteStorage]) -> None:
    rest, ctx, storage = registry
    assert SERVICES is not None
    svc = await rest.create(SERVICES, "default", _svc("a", type="NodePort", ports=[{"port": 80}]))
    ip, port = svc["spec"]["clusterIP"], str(svc["spec"]["ports"][0]["nodePort"])
    # Damage: the Service's own keys vanish, and keys nobody owns appear.
    await storage.commit([Delete(IP_PREFIX + ip), Delete(NODEPORT_PREFIX + port)])
    await storage.commit(
        [Create(IP_PREFIX + "10.96.9.9", b"gone/svc"), Create(NODEPORT_PREFIX + "31999", b"x")]
    )
    report = await AllocationRepair(rest, ctx.cluster_ips, ctx.node_ports).run_once()
    assert sorted(report.reclaimed) == sorted([IP_PREFIX + "10.96.9.9", NODEPORT_PREFIX + "31999"])
    assert sorted(report.restored) == sorted([IP_PREFIX + ip, NODEPORT_PREFIX + port])
    keys = {kv.key for kv in (await storage.list("/registry/ranges/")).items}
    assert IP_PREFIX + ip in keys and NODEPORT_PREFIX + port in keys
    assert IP_PREFIX + "10.96.9.9" not in keys
    # A second run finds nothing to do.
    again = await AllocationRepair(rest, ctx.cluster_ips, ctx.node_ports).run_once()
    assert not again.reclaimed and not again.restored and not again.duplicates


async def test_double_allocation_is_reported(registry: tuple[Rest, RegistryContext, SqliteStorage]) -> None:
    rest, ctx, storage = registry
    assert SERVICES is not None and EVENTS is not None
    first = await rest.create(SERVICES, "default", _svc("first", ports=[{"port": 80}]))
    # A second Service holding the same IP, written behind the allocator's back.
    twin = orjson.loads(orjson.dumps(first))
    twin["metadata"].update(name="twin", uid="twin-uid", creationTimestamp="2999-01-01T00:00:00Z")
    await storage.commit([Create(SERVICES.key("default", "twin"), encode(twin))])
    report = await AllocationRepair(rest, ctx.cluster_ips, ctx.node_ports).run_once()
    assert report.duplicates == [(first["spec"]["clusterIP"], "default/twin")]
    events = (await rest.objects.list_page(EVENTS, "default")).items
    assert [(e["reason"], e["involvedObject"]["name"]) for e in events] == [
        ("ClusterIPAlreadyAllocated", "twin")
    ]
