"""What the workload controllers share (Kubernetes' controller_utils): pods created from a
template in slow-start batches, deletions with a uid precondition, adoption and release of
children, ``Expectations`` of what a sync asked for until the informer has seen it, the mapping
of child events to owner keys (``ChildEvents``), status writes only when changed, and a retry
when a write was made from a stale cache.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubelite.api.errors import StatusError
from kubelite.api.resources import INDEX, ResourceType
from kubelite.api.selectors import Selector, SelectorError, selector_from_label_selector
from kubelite.client.informer import Informer
from kubelite.client.interface import ApiClient
from kubelite.client.workqueue import WorkQueue
from kubelite.controllers.base import object_key
from kubelite.controllers.events import EventRecorder
from kubelite.controllers.workloads_model import (
    OwnerInfo,
    adopt_patch,
    controller_uid,
    release_patch,
    semantic_form,
)

log = logging.getLogger("kubelite.controllers.workloads")
Obj = dict[str, Any]
PODS = INDEX.by_kind[("v1", "Pod")]
REPLICASETS = INDEX.by_kind[("apps/v1", "ReplicaSet")]

EXPECTATIONS_TTL = 300.0
"""Seconds after which unmet expectations are given up (client-go's ExpectationsTimeout): a lost
event must not stall a ReplicaSet forever."""
STALE_RETRY = 0.05
"""Seconds before a sync that wrote from a stale cache looks again; the informer is catching up."""


class PodManagementError(Exception):
    """Creating or deleting a workload's pods failed (the Events say how); raised at the end of
    a sync, after the status recorded it, so the work queue retries the key with backoff."""


# --- expectations ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Expected:
    creates: int
    deletes: set[str]
    since: float


@dataclass
class Expectations:
    """client-go's UIDTrackingControllerExpectations, for one controller.

    Before it writes, a sync records how many pods it will create and the uids it will delete;
    the informer handlers count them off as they arrive (``created``, ``deleted``), a failed write
    counts itself off. Until then ``satisfied`` is False and the sync leaves the pods alone (it
    still adopts, releases and writes status). Records older than ``ttl`` are treated as met.
    """

    ttl: float = EXPECTATIONS_TTL
    clock: Callable[[], float] = time.monotonic
    _records: dict[str, _Expected] = field(default_factory=dict)

    def expect(self, key: str, creates: int = 0, deletes: Iterable[str] = ()) -> None:
        """Replace ``key``'s record (call it only when ``satisfied``, before the writes)."""
        self._records[key] = _Expected(creates, set(deletes), self.clock())

    def created(self, key: str) -> None:
        """A pod of ``key`` was seen created, or a creation failed and will not be seen."""
        record = self._records.get(key)
        if record is not None:
            record.creates -= 1

    def deleted(self, key: str, uid: str) -> None:
        """The pod ``uid`` of ``key`` was seen deleted (or being deleted), or is already gone."""
        record = self._records.get(key)
        if record is not None:
            record.deletes.discard(uid)

    def satisfied(self, key: str) -> bool:
        record = self._records.get(key)
        if record is None or (record.creates <= 0 and not record.deletes):
            return True
        return self.clock() - record.since > self.ttl

    def forget(self, key: str) -> None:
        self._records.pop(key, None)


# --- the controller -------------------------------------------------------------------------------


class ChildEvents:
    """Maps events of owned objects (pods, ReplicaSets) to the key of their controller.

    A child with a controller owner of ``kind`` enqueues that owner; a released child also
    enqueues its former owner (it must be replaced); an orphan is offered to every owner whose
    selector matches it, for adoption. With ``expectations``, adds and deletes are counted off.
    """

    def __init__(self, owners: Informer, kind: str, queue: WorkQueue[str],
                 expectations: Expectations | None = None) -> None:  # fmt: skip
        self._owners = owners
        self._kind = kind
        self._queue = queue
        self._expectations = expectations

    def owner_of(self, child: Obj) -> str | None:
        return owner_key(self._owners, child, self._kind)

    def added(self, child: Obj) -> None:
        if is_deleting(child):
            self.deleted(child)  # seen for the first time already going: count it as gone
            return
        key = self.owner_of(child)
        if key is not None:
            if self._expectations is not None:
                self._expectations.created(key)
            self._queue.add(key)
        elif controller_uid(child) is None:
            self._offer(child)

    def updated(self, old: Obj, new: Obj) -> None:
        if resource_version(old) == resource_version(new):
            return
        labels_changed = labels_of(old) != labels_of(new)
        if is_deleting(new):
            self.deleted(new)
            if labels_changed:
                self.deleted(old)
            return
        old_key, new_key = self.owner_of(old), self.owner_of(new)
        if old_key is not None and old_key != new_key:
            self._queue.add(old_key)  # released: its old owner must replace it
        if new_key is not None:
            self._queue.add(new_key)
        elif controller_uid(new) is None and (labels_changed or controller_uid(old) is not None):
            self._offer(new)

    def deleted(self, child: Obj) -> None:
        key = self.owner_of(child)
        if key is not None:
            if self._expectations is not None:
                self._expectations.deleted(key, uid_of(child))
            self._queue.add(key)

    def _offer(self, orphan: Obj) -> None:
        for owner in selecting(self._owners, orphan):
            self._queue.add(object_key(owner))


async def create_pods(
    client: ApiClient,
    recorder: EventRecorder,
    expectations: Expectations,
    key: str,
    owner: Obj,
    pods: list[Obj],
) -> str | None:
    """POST ``pods`` for ``owner`` in slow-start batches (1, 2, 4 ...) until one fails, counting
    off the expectations of every pod that will not arrive.

    Returns the first failure's message (a FailedCreate Event is recorded), or None. A namespace
    being deleted refuses new pods: that is not a failure.
    """
    done, batch, failure = 0, 1, None
    while done < len(pods) and failure is None:
        chunk = pods[done : done + batch]
        results = await asyncio.gather(
            *(client.create(PODS, namespace_of(owner), pod) for pod in chunk), return_exceptions=True
        )
        for result in results:
            if isinstance(result, StatusError):
                expectations.created(key)
                if failure is None and not _namespace_terminating(result):
                    failure = result.message
                    await recorder.event(owner, "Warning", "FailedCreate", f"Error creating: {failure}")
            elif isinstance(result, BaseException):
                raise result
            else:
                created = result["metadata"]["name"]
                await recorder.event(owner, "Normal", "SuccessfulCreate", f"Created pod: {created}")
        done += len(chunk)
        batch *= 2
    for _ in pods[done:]:  # skipped after a failure: they will never be seen
        expectations.created(key)
    return failure


async def delete_pods(
    client: ApiClient,
    recorder: EventRecorder,
    expectations: Expectations,
    key: str,
    owner: Obj,
    pods: list[Obj],
) -> str | None:
    """DELETE ``pods`` of ``owner`` concurrently; the first failure's message (a FailedDelete
    Event is recorded), or None. A pod already gone (or replaced: the uid precondition) is fine."""
    results = await asyncio.gather(
        *(
            client.delete(PODS, namespace_of(pod), pod["metadata"]["name"], precondition_uid=uid_of(pod))
            for pod in pods
        ),
        return_exceptions=True,
    )
    failure = None
    for pod, result in zip(pods, results, strict=True):
        if isinstance(result, StatusError):
            expectations.deleted(key, uid_of(pod))
            if result.code in (404, 409):
                continue
            failure = failure or result.message
            await recorder.event(owner, "Warning", "FailedDelete", f"Error deleting: {result.message}")
        elif isinstance(result, BaseException):
            raise result
        else:
            await recorder.event(
                owner, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}"
            )
    return failure


def _namespace_terminating(error: StatusError) -> bool:
    return error.code == 403 and "being terminated" in error.message


async def still_adoptable(client: ApiClient, rt: ResourceType, owner: Obj) -> bool:
    """RecheckDeletionTimestamp: read the owner afresh before adopting; a cached owner may be gone
    or replaced by a namesake, and adopting for it would hand pods to the wrong object."""
    try:
        fresh = await client.get(rt, namespace_of(owner), owner["metadata"]["name"])
    except StatusError as e:
        if e.code == 404:
            return False
        raise
    return uid_of(fresh) == uid_of(owner) and not is_deleting(fresh)


async def adopt(
    client: ApiClient, owner: Obj, kind: str, objects: Iterable[Obj], names: Iterable[str]
) -> None:
    """Patch a controller reference to ``owner`` into each named object (pods or ReplicaSets)."""
    await _patch_refs(client, owner, kind, objects, names, adopt_patch)


async def release(
    client: ApiClient, owner: Obj, kind: str, objects: Iterable[Obj], names: Iterable[str]
) -> None:
    """Remove ``owner``'s reference from each named object."""
    await _patch_refs(client, owner, kind, objects, names, release_patch)


async def _patch_refs(
    client: ApiClient,
    owner: Obj,
    kind: str,
    objects: Iterable[Obj],
    names: Iterable[str],
    make: Callable[[OwnerInfo, Mapping[str, Any]], Obj],
) -> None:
    wanted = set(names)
    if not wanted:
        return
    info = OwnerInfo.from_object(owner, kind)
    for obj in objects:
        obj_name = str(obj["metadata"].get("name", ""))
        if obj_name not in wanted:
            continue
        rt = INDEX.by_kind[(str(obj.get("apiVersion") or "v1"), str(obj.get("kind") or "Pod"))]
        try:
            await client.patch(rt, namespace_of(obj), obj_name, make(info, obj), patch_type="strategic")
        except StatusError as e:
            # Gone, or claimed by another controller first (422): nothing to do. A 409 (replaced:
            # the uid guard, or a lost race) is left to retry_if_stale: the next pass decides again.
            if e.code not in (404, 422):
                raise


async def write_status(client: ApiClient, rt: ResourceType, obj: Obj, status: Obj) -> Obj | None:
    """PUT ``status`` through the status subresource when it differs from ``obj``'s.

    The cached object's resourceVersion is the precondition: a 409 means the cache was stale.
    Returns the written object, or None when nothing changed.
    """
    if semantic_form(status) == semantic_form(obj.get("status") or {}):
        return None
    body = copy.deepcopy(obj)
    body["status"] = status
    return await client.update(rt, namespace_of(obj), body, subresource="status")


async def retry_if_stale(add_after: Callable[[str, float], None], key: str, work: Awaitable[None]) -> None:
    """Run a sync; one that wrote from a stale cache (409 Conflict, or 404 for an object deleted
    meanwhile) looks again shortly, without the error log and backoff of a real failure: the
    informer is about to deliver the newer state."""
    try:
        await work
    except StatusError as e:
        if not (e.code == 404 or (e.code == 409 and e.reason != "AlreadyExists")):
            raise
        log.debug("sync of %s wrote from a stale cache (%s); looking again", key, e)
        add_after(key, STALE_RETRY)


def owner_key(owners: Informer, obj: Obj, kind: str) -> str | None:
    """The key of ``obj``'s controller when it is a cached ``kind`` with the referenced uid."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") is True:
            if ref.get("kind") != kind:
                return None
            owner = owners.get(namespace_of(obj), str(ref.get("name") or ""))
            if owner is None or uid_of(owner) != ref.get("uid"):
                return None
            return object_key(owner)
    return None


def selecting(owners: Informer, obj: Obj) -> list[Obj]:
    """The owners in ``obj``'s namespace whose selector matches its labels (empty selectors and
    unreadable ones match nothing here: an owner selecting everything adopts nothing)."""
    labels = labels_of(obj)
    found = []
    for owner in owners.list(namespace_of(obj)):
        selector = owner_selector(owner)
        if selector is not None and selector.matches(labels):
            found.append(owner)
    return found


def owner_selector(owner: Mapping[str, Any]) -> Selector | None:
    """The owner's ``spec.selector``, or None when it is empty or unreadable."""
    try:
        selector = selector_from_label_selector((owner.get("spec") or {}).get("selector"))
    except SelectorError:
        return None
    return None if selector.empty else selector


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def uid_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    labels: Mapping[str, str] = (obj.get("metadata") or {}).get("labels") or {}
    return labels


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return (obj.get("metadata") or {}).get("deletionTimestamp") is not None
