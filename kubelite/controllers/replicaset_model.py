"""What the ReplicaSet controller should do: pure, no I/O (Kubernetes' pkg/controller/replicaset).

``replicaset_diff`` turns a ReplicaSet and the pods of its namespace into a ``ReplicaSetPlan``:
which orphans to adopt and which owned pods to release (ControllerRefManager), how many pods
to create from the template, and which pods to delete when there are too many.
``replicaset_status`` is the status the controller writes after that sync.

Pods to delete are chosen as Kubernetes' ActivePodsWithRanks sorts them, most deletable first:

1. not yet scheduled before scheduled;
2. Pending before Unknown before Running;
3. not ready before ready;
4. lower ``controller.kubernetes.io/pod-deletion-cost`` first;
5. pods doubled up on a node with more pods of the same workload first;
6. of two ready pods, the one ready more recently first;
7. more container restarts first;
8. newer pods first (a pod without a creation time before all).

Kubernetes compares ready and creation times in log2 buckets of age (LogarithmicScaleDown) and
breaks ties by uid, which is random; the exact times are compared here, then names, so a
scale-down is deterministic. The caller paces creations (Kubernetes starts with batches of
1, 2, 4, ...) and tracks in-flight creations and deletions (expectations).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubelite.api.meta import now as clock_now
from kubelite.api.selectors import selector_from_label_selector
from kubelite.controllers.workloads_model import (
    BURST_REPLICAS,
    Claim,
    Obj,
    OwnerInfo,
    PodInfo,
    claim,
    pod_from_template,
    spec_replicas,
)

__all__ = [
    "ReplicaSetPlan",
    "claimed_pods",
    "compare_for_deletion",
    "pods_to_delete",
    "replicaset_diff",
    "replicaset_status",
]

_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


@dataclass(frozen=True, slots=True)
class ReplicaSetPlan:
    """One sync's worth of work for a ReplicaSet, each list in the order to do it."""

    create: tuple[Obj, ...] = ()
    """Pod bodies to POST (``generateName: <rs>-``), all alike."""
    delete: tuple[str, ...] = ()
    """Names of pods to delete, most deletable first."""
    adopt: tuple[str, ...] = ()
    """Orphan pods to adopt first (``workloads_model.adopt_patch``)."""
    release: tuple[str, ...] = ()
    """Owned pods the selector no longer matches (``workloads_model.release_patch``)."""
    requeue_after: float | None = None
    """Seconds until a ready pod turns available (minReadySeconds): sync again then."""

    @property
    def empty(self) -> bool:
        return not (self.create or self.delete or self.adopt or self.release)


def _spec(rs: Mapping[str, Any]) -> Mapping[str, Any]:
    return rs.get("spec") or {}


def claimed_pods(rs: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> tuple[Claim, list[PodInfo]]:
    """The claim over the active pods of ``rs``'s namespace, and the pods it then controls."""
    owner = OwnerInfo.from_object(rs, "ReplicaSet")
    infos = ((p, PodInfo.from_object(p)) for p in pods)
    active = [(p, info) for p, info in infos if info.active and info.namespace == owner.namespace]
    result = claim(owner, [p for p, _ in active], selector_from_label_selector(_spec(rs).get("selector")))
    owned = set(result.owned)
    return result, [info for _, info in active if info.name in owned]


def replicaset_diff(
    rs: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    *,
    related_pods: Iterable[Mapping[str, Any]] | None = None,
    now: datetime | None = None,
) -> ReplicaSetPlan:
    """What to create, delete, adopt and release so ``rs`` runs ``spec.replicas`` pods.

    ``pods`` are the pods of the ReplicaSet's namespace (others are ignored). ``related_pods``
    are the pods of the ReplicaSet's siblings (same Deployment) used to spot pods doubled up on
    a node; by default the ReplicaSet's own. A ReplicaSet being deleted neither creates nor
    deletes pods (the garbage collector removes them) and claims only what it already owns.
    """
    now = now or clock_now()
    result, owned = claimed_pods(rs, pods)
    requeue = _requeue_after(rs, owned, now)
    if (rs.get("metadata") or {}).get("deletionTimestamp") is not None:
        return ReplicaSetPlan(requeue_after=requeue)
    diff = len(owned) - spec_replicas(rs)
    create: tuple[Obj, ...] = ()
    delete: tuple[str, ...] = ()
    if diff < 0:
        owner = OwnerInfo.from_object(rs, "ReplicaSet")
        template = _spec(rs).get("template") or {}
        create = tuple(pod_from_template(template, owner) for _ in range(min(-diff, BURST_REPLICAS)))
    elif diff > 0:
        related = None if related_pods is None else [PodInfo.from_object(p) for p in related_pods]
        delete = tuple(p.name for p in pods_to_delete(owned, min(diff, BURST_REPLICAS), related))
    return ReplicaSetPlan(create, delete, result.adopt, result.release, requeue)


def replicaset_status(
    rs: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], *, now: datetime | None = None
) -> Obj:
    """The ReplicaSet's status after a sync (replicaset's calculateStatus): counts over the pods
    it controls; conditions are kept as they are."""
    now = now or clock_now()
    _, owned = claimed_pods(rs, pods)
    spec = _spec(rs)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    status: Obj = dict(rs.get("status") or {})
    status.update(
        replicas=len(owned),
        fullyLabeledReplicas=sum(
            all(p.labels.get(k) == v for k, v in template_labels.items()) for p in owned
        ),
        readyReplicas=sum(p.ready for p in owned),
        availableReplicas=sum(p.available(min_ready, now) for p in owned),
        observedGeneration=int((rs.get("metadata") or {}).get("generation") or 0),
    )
    return status


def _requeue_after(rs: Mapping[str, Any], owned: Sequence[PodInfo], now: datetime) -> float | None:
    min_ready = int(_spec(rs).get("minReadySeconds") or 0)
    if min_ready <= 0:
        return None
    waits = [
        (at - now).total_seconds()
        for p in owned
        if not p.available(min_ready, now) and (at := p.available_at(min_ready)) is not None
    ]
    return max(0.0, min(waits)) if waits else None


# --- choosing pods to delete ----------------------------------------------------------------------


def _time_first(a: datetime | None, b: datetime | None) -> int:
    """Kubernetes' afterOrZero as a comparison: a missing time, else the later one, sorts first."""
    if a == b:
        return 0
    if a is None:
        return -1
    if b is None:
        return 1
    return -1 if a > b else 1


def compare_for_deletion(a: PodInfo, b: PodInfo, rank_a: int = 0, rank_b: int = 0) -> int:
    """Negative when ``a`` should be deleted before ``b`` (see the module docstring for the rules).

    ``rank_*`` count the workload's active pods on each pod's node: higher ranks go first.
    """
    if a.node_name != b.node_name and (not a.node_name or not b.node_name):
        return -1 if not a.node_name else 1
    phase_a, phase_b = _PHASE_ORDINAL.get(a.phase, 0), _PHASE_ORDINAL.get(b.phase, 0)
    if phase_a != phase_b:
        return phase_a - phase_b
    if a.ready != b.ready:
        return -1 if not a.ready else 1
    if a.deletion_cost != b.deletion_cost:
        return -1 if a.deletion_cost < b.deletion_cost else 1
    if rank_a != rank_b:
        return -1 if rank_a > rank_b else 1
    if a.ready and b.ready and (order := _time_first(a.ready_since, b.ready_since)):
        return order
    for restarts_a, restarts_b in ((a.restarts, b.restarts), (a.sidecar_restarts, b.sidecar_restarts)):
        if restarts_a != restarts_b:
            return -1 if restarts_a > restarts_b else 1
    return _time_first(a.created, b.created)


def pods_to_delete(
    pods: Sequence[PodInfo], count: int, related: Sequence[PodInfo] | None = None
) -> list[PodInfo]:
    """The ``count`` pods to delete first (replicaset's getPodsToDelete)."""
    if count >= len(pods):
        return list(pods)
    on_node = Counter(p.node_name for p in (pods if related is None else related) if p.active)

    def compare(a: PodInfo, b: PodInfo) -> int:
        order = compare_for_deletion(a, b, on_node[a.node_name], on_node[b.node_name])
        return order or (a.name > b.name) - (a.name < b.name)

    return sorted(pods, key=functools.cmp_to_key(compare))[:count]
