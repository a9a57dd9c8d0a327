"""Garbage collection by ownerReferences (background, foreground and orphan deletion).

The collector keeps a graph of every object that can own or be owned, keyed by uid:

    owner uid ──► dependents (uids whose ownerReferences name it)

and works a queue of uids:

    an object whose owners are all gone          -> deleted (background propagation)
    an object with some owners gone              -> the dangling ownerReferences are removed
    an owner deleting with "foregroundDeletion"  -> its dependents are deleted (foreground, so the
                                                    chain continues); once none with
                                                    blockOwnerDeletion is left, the finalizer goes
                                                    and the API server removes the owner
    an owner deleting with "orphan"              -> its ownerReference is removed from every
                                                    dependent, then the finalizer goes

"Gone" is checked against the API (by name, then uid) before anything is deleted, so an owner
the informers have not seen yet is never mistaken for a deleted one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kubelite.api.errors import StatusError
from kubelite.api.resources import RESOURCES, ResourceType
from kubelite.client.interface import ApiClient
from kubelite.controllers.base import InformerFactory, QueueController

log = logging.getLogger("kubelite.gc")
Obj = dict[str, Any]
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


@dataclass(frozen=True, slots=True)
class OwnerRef:
    api_version: str
    kind: str
    name: str
    uid: str
    block: bool

    @classmethod
    def from_dict(cls, ref: Obj) -> OwnerRef:
        return cls(str(ref.get("apiVersion", "")), str(ref.get("kind", "")), str(ref.get("name", "")),
                   str(ref.get("uid", "")), bool(ref.get("blockOwnerDeletion")))  # fmt: skip


@dataclass(frozen=True, slots=True)
class GraphNode:
    rt: ResourceType
    namespace: str
    name: str
    uid: str
    owners: tuple[OwnerRef, ...]
    deleting: bool
    finalizers: tuple[str, ...]

    @classmethod
    def from_object(cls, rt: ResourceType, obj: Obj) -> GraphNode:
        md = obj.get("metadata") or {}
        return cls(
            rt,
            str(md.get("namespace", "")),
            str(md.get("name", "")),
            str(md.get("uid", "")),
            tuple(OwnerRef.from_dict(r) for r in md.get("ownerReferences") or []),
            bool(md.get("deletionTimestamp")),
            tuple(md.get("finalizers") or []),
        )


def collectable_types() -> list[ResourceType]:
    """Every served type once (older served versions of a kind share its storage)."""
    return [rt for rt in RESOURCES if not rt.stored_as and "list" in rt.verbs and "delete" in rt.verbs]


class GarbageCollector(QueueController):
    name = "garbage-collector-controller"

    def __init__(self, client: ApiClient, informers: InformerFactory) -> None:
        super().__init__(client, informers)
        self.nodes: dict[str, GraphNode] = {}
        self.dependents: dict[str, set[str]] = {}
        self._by_kind = {(rt.api_version, rt.kind): rt for rt in RESOURCES}
        for rt in collectable_types():
            self._watch(informers, rt)

    def _watch(self, informers: InformerFactory, rt: ResourceType) -> None:
        def added(obj: Obj) -> None:
            self._observe(rt, obj)

        def updated(_old: Obj, new: Obj) -> None:
            self._observe(rt, new)

        def deleted(obj: Obj) -> None:
            self._forget(rt, obj)

        informers.informer(rt).add_handler(added, updated, deleted)

    # --- the graph ------------------------------------------------------------------------------

    def _observe(self, rt: ResourceType, obj: Obj) -> None:
        node = GraphNode.from_object(rt, obj)
        old = self.nodes.get(node.uid)
        if old is not None:
            for ref in old.owners:
                self.dependents.get(ref.uid, set()).discard(node.uid)
        self.nodes[node.uid] = node
        for ref in node.owners:
            self.dependents.setdefault(ref.uid, set()).add(node.uid)
        gc_finalizer = FOREGROUND in node.finalizers or ORPHAN in node.finalizers
        owner_in_doubt = any(r.uid not in self.nodes or self.nodes[r.uid].deleting for r in node.owners)
        if (node.deleting and gc_finalizer) or owner_in_doubt:
            self.queue.add(node.uid)

    def _forget(self, rt: ResourceType, obj: Obj) -> None:
        node = GraphNode.from_object(rt, obj)
        self.nodes.pop(node.uid, None)
        for ref in node.owners:
            self.dependents.get(ref.uid, set()).discard(node.uid)
            owner = self.nodes.get(ref.uid)
            if owner is not None and owner.deleting:
                self.queue.add(owner.uid)  # a foreground owner may now be free to go
        for dep in self.dependents.get(node.uid, set()):
            self.queue.add(dep)

    # --- work -----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        if node.deleting:
            if ORPHAN in node.finalizers:
                await self._orphan(node)
            elif FOREGROUND in node.finalizers:
                await self._delete_dependents(node)
            return
        if node.owners:
            await self._check_owners(node)

    async def _owner_exists(self, ref: OwnerRef, dependent: GraphNode) -> bool:
        known = self.nodes.get(ref.uid)
        if known is not None:
            return True
        rt = self._by_kind.get((ref.api_version, ref.kind))
        if rt is None:
            return True  # a kind we do not serve: never delete on its account
        try:
            live = await self.client.get(rt, dependent.namespace if rt.namespaced else None, ref.name)
        except StatusError as e:
            if e.code == 404:
                return False
            raise
        return str(live.get("metadata", {}).get("uid", "")) == ref.uid

    async def _check_owners(self, node: GraphNode) -> None:
        dangling = [ref for ref in node.owners if not await self._owner_exists(ref, node)]
        if not dangling:
            return
        if len(dangling) == len(node.owners):
            log.info("deleting %s %s/%s: its owners are gone", node.rt.kind, node.namespace, node.name)
            await self._delete(node, "Background")
            return
        keep = [r for r in node.owners if r not in dangling]
        await self._set_owner_refs(node, keep)

    async def _delete_dependents(self, owner: GraphNode) -> None:
        blocking = 0
        for uid in sorted(self.dependents.get(owner.uid, set())):
            dep = self.nodes.get(uid)
            if dep is None:
                continue
            ref = next((r for r in dep.owners if r.uid == owner.uid), None)
            if ref is not None and ref.block:
                blocking += 1
            if not dep.deleting:
                await self._delete(dep, "Foreground")
        if blocking == 0:
            await self._drop_finalizer(owner, FOREGROUND)

    async def _orphan(self, owner: GraphNode) -> None:
        for uid in sorted(self.dependents.get(owner.uid, set())):
            dep = self.nodes.get(uid)
            if dep is not None:
                await self._set_owner_refs(dep, [r for r in dep.owners if r.uid != owner.uid])
        await self._drop_finalizer(owner, ORPHAN)

    # --- writes ---------------------------------------------------------------------------------

    async def _delete(self, node: GraphNode, policy: str) -> None:
        try:
            await self.client.delete(node.rt, node.namespace or None, node.name, propagation_policy=policy,
                                     precondition_uid=node.uid)  # fmt: skip
        except StatusError as e:
            if e.code not in (404, 409):
                raise

    async def _set_owner_refs(self, node: GraphNode, keep: list[OwnerRef]) -> None:
        current = await self._latest(node)
        if current is None:
            return
        refs = [
            r
            for r in current["metadata"].get("ownerReferences") or []
            if r.get("uid") in {k.uid for k in keep}
        ]
        patch: list[Obj] = [
            {"op": "test", "path": "/metadata/uid", "value": node.uid},
            {"op": "replace" if "ownerReferences" in current["metadata"] else "add",
             "path": "/metadata/ownerReferences", "value": refs},
        ]  # fmt: skip
        await self._patch(node, patch)

    async def _drop_finalizer(self, node: GraphNode, finalizer: str) -> None:
        current = await self._latest(node)
        if current is None:
            return
        finalizers = current["metadata"].get("finalizers") or []
        if finalizer not in finalizers:
            return
        patch = [
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {
                "op": "replace",
                "path": "/metadata/finalizers",
                "value": [f for f in finalizers if f != finalizer],
            },
        ]
        await self._patch(node, patch)

    async def _latest(self, node: GraphNode) -> Obj | None:
        try:
            obj = await self.client.get(node.rt, node.namespace or None, node.name)
        except StatusError as e:
            if e.code == 404:
                return None
            raise
        return obj if obj.get("metadata", {}).get("uid") == node.uid else None

    async def _patch(self, node: GraphNode, patch: list[Obj]) -> None:
        try:
            await self.client.patch(node.rt, node.namespace or None, node.name, patch, patch_type="json")
        except StatusError as e:
            if e.code == 404:
                return
            raise  # a failed "test" (422) means the object moved on: retried with backoff
