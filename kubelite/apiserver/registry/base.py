"""The per-resource strategy: what happens to an object on create, update, status update and delete.

Mirrors kube-apiserver's ``rest.RESTCreateStrategy`` / ``RESTUpdateStrategy``: the generic REST
code in ``rest.py`` calls these hooks and writes the result; a resource with special rules
(Service allocation, Pod graceful deletion, Namespace finalization) overrides a few of them.
Store ops a hook returns are committed atomically together with the object itself.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kubelite.api.defaults import apply_defaults
from kubelite.api.errors import Cause, StatusError
from kubelite.api.resources import ResourceType
from kubelite.api.validation import validate_object
from kubelite.apiserver.allocators import RangeAllocator
from kubelite.store.interface import Op

Obj = dict[str, Any]

# Kinds whose spec changes bump metadata.generation (those with a spec and a controller that
# reports status.observedGeneration, plus Services and Pods as Kubernetes does).
GENERATION_KINDS = frozenset(
    {"Pod", "Service", "Deployment", "ReplicaSet", "DaemonSet", "Ingress", "IngressClass", "Node"}
)
# Fields outside metadata/status whose change counts as a "spec" change for generation.
NON_SPEC_FIELDS = frozenset({"apiVersion", "kind", "metadata", "status"})


@dataclass(slots=True)
class RegistryConfig:
    service_cidr: str = "10.96.0.0/12"
    node_port_range: tuple[int, int] = (30000, 32767)
    cluster_cidr: str = "10.244.0.0/16"


@dataclass(slots=True)
class RegistryContext:
    config: RegistryConfig
    cluster_ips: RangeAllocator
    node_ports: RangeAllocator


class Strategy:
    allow_create_on_update = False

    def __init__(self, rt: ResourceType, ctx: RegistryContext) -> None:
        self.rt = rt
        self.ctx = ctx

    # --- create -----------------------------------------------------------------------------
    def prepare_for_create(self, obj: Obj) -> None:
        if self.rt.has_status and self.rt.kind not in ("Namespace", "Node"):
            obj["status"] = {}
        apply_defaults(obj, self.rt.kind)
        if self.rt.kind in GENERATION_KINDS:
            obj["metadata"]["generation"] = 1

    def validate(self, obj: Obj) -> list[Cause]:
        return validate_object(obj, self.rt.kind, namespaced=self.rt.namespaced)

    async def allocate(self, obj: Obj) -> list[Op]:
        """Store ops (allocations) to commit with a new object; may fill fields of ``obj``."""
        return []

    # --- update -----------------------------------------------------------------------------
    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        if self.rt.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        apply_defaults(new, self.rt.kind)
        self._bump_generation(new, old)

    def prepare_for_status_update(self, new: Obj, old: Obj) -> None:
        for key in list(new):
            if key not in ("apiVersion", "kind", "metadata", "status"):
                del new[key]
        for key, value in old.items():
            if key not in ("apiVersion", "kind", "metadata", "status"):
                new[key] = copy.deepcopy(value)
        # A status write may not change labels' owners or the deletion state.
        new["metadata"]["generation"] = old["metadata"].get("generation", new["metadata"].get("generation"))
        if "generation" not in old["metadata"]:
            new["metadata"].pop("generation", None)

    def validate_update(self, new: Obj, old: Obj) -> list[Cause]:
        return self.validate(new)

    async def reallocate(self, new: Obj, old: Obj) -> list[Op]:
        return []

    def _bump_generation(self, new: Obj, old: Obj) -> None:
        if self.rt.kind not in GENERATION_KINDS:
            if "generation" not in old["metadata"]:
                new["metadata"].pop("generation", None)
            return
        gen = old["metadata"].get("generation", 1)
        changed = any(new.get(k) != old.get(k) for k in set(new) | set(old) if k not in NON_SPEC_FIELDS)
        deleting = "deletionTimestamp" in old["metadata"]
        if deleting and new["metadata"].get("deletionTimestamp") != old["metadata"].get("deletionTimestamp"):
            changed = True
        new["metadata"]["generation"] = gen + 1 if changed else gen

    # --- delete -----------------------------------------------------------------------------
    def graceful_delete_seconds(self, obj: Obj, requested: int | None) -> int:
        """Seconds the object stays (with deletionTimestamp) before removal; 0 removes it at once."""
        return 0

    def release(self, obj: Obj) -> list[Op]:
        """Store ops (releases) to commit when ``obj`` is removed from the store."""
        return []

    # --- allocation bookkeeping ---------------------------------------------------------------
    def after_commit(self, new: Obj | None, old: Obj | None) -> None:
        """Called once a write is durable: ``new`` is None for a removal, ``old`` None for a create."""

    def conflict_error(self, requested: Obj, key: str) -> StatusError | None:
        """The error for an extra key that already existed at commit time; None means retry."""
        return None

    def note_taken(self, key: str) -> None:
        """An extra key the strategy picked turned out to be taken: remember it before retrying."""
