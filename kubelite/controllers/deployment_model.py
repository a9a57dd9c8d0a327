"""What the Deployment controller should do: pure, no I/O (Kubernetes' pkg/controller/deployment).

``deployment_plan(deploy, replicasets, pods)`` runs one pass of syncDeployment over the
ReplicaSets the Deployment controls and returns a ``DeploymentPlan``: the new ReplicaSet to
create, existing ReplicaSets to update (replicas, annotations), old ones to delete
(revisionHistoryLimit), the Deployment's revision annotation and its status.

    syncDeployment
      ├─ selector empty ───────── observedGeneration only
      ├─ being deleted ────────── status only
      ├─ paused / scaling event ─ sync: proportional scaling of the active ReplicaSets
      ├─ Recreate ─────────────── old to 0, wait for old pods to go, then the new one at full size
      └─ RollingUpdate ────────── new up to replicas+maxSurge, else old down to replicas-maxUnavailable

Each pass makes one step, as Kubernetes does: a rolling update scales the new ReplicaSet up *or*
the old ones down, then waits for the ReplicaSets' status to show the result. The status is
computed from the ReplicaSets as they were before this pass scaled them, with the conditions
Available and Progressing kept as progress.go keeps them.

The new ReplicaSet is the oldest whose pod template equals the Deployment's (ignoring
``pod-template-hash``); a missing one is named ``<deployment>-<hash>`` after the template and
``status.collisionCount``. It gets the highest old revision + 1, so ``kubectl rollout undo``
(``workloads_model.rollback_patch``) turns an old ReplicaSet into the new one again.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubelite.api.meta import format_time
from kubelite.api.meta import now as clock_now
from kubelite.controllers.workloads_model import (
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    SKIPPED_ANNOTATIONS,
    ZERO_TIME,
    InvalidSpecError,
    Obj,
    OwnerInfo,
    compute_hash,
    controller_uid,
    int_field,
    new_controller_ref,
    object_name,
    revision_of,
    scaled_value,
    semantic_form,
    spec_replicas,
    templates_equal_ignoring_hash,
    timestamp,
)

MAX_REVISION_HISTORY_CHARS = 2000

REASON_REPLICASET_UPDATED = "ReplicaSetUpdated"
REASON_NEW_REPLICASET_CREATED = "NewReplicaSetCreated"
REASON_FOUND_NEW_REPLICASET = "FoundNewReplicaSet"
REASON_NEW_REPLICASET_AVAILABLE = "NewReplicaSetAvailable"
REASON_PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
REASON_PAUSED = "DeploymentPaused"
REASON_RESUMED = "DeploymentResumed"
REASON_MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
REASON_MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"

_NO_LIMIT = 2**31 - 1  # math.MaxInt32 turns progressDeadlineSeconds / revisionHistoryLimit off

__all__ = [
    "MAX_REVISION_HISTORY_CHARS",
    "REASON_FOUND_NEW_REPLICASET",
    "REASON_MINIMUM_REPLICAS_AVAILABLE",
    "REASON_MINIMUM_REPLICAS_UNAVAILABLE",
    "REASON_NEW_REPLICASET_AVAILABLE",
    "REASON_NEW_REPLICASET_CREATED",
    "REASON_PAUSED",
    "REASON_PROGRESS_DEADLINE_EXCEEDED",
    "REASON_REPLICASET_UPDATED",
    "REASON_RESUMED",
    "DeploymentInfo",
    "DeploymentPlan",
    "deployment_plan",
    "deployment_status",
    "hash_collision",
    "resolve_fenceposts",
    "rolling_update_plan",
]


# --- what arrives ---------------------------------------------------------------------------------


def resolve_fenceposts(
    max_surge: int | str | None, max_unavailable: int | str | None, desired: int
) -> tuple[int, int]:
    """ResolveFenceposts: surge rounds up, unavailability rounds down.

    Both written as zero is invalid (InvalidSpecError, as validation says it); when only the
    rounding makes both zero, one pod may be unavailable so the rollout can move.
    """
    path = "spec.strategy.rollingUpdate"
    surge = scaled_value(max_surge, desired, True, f"{path}.maxSurge")
    unavailable = scaled_value(max_unavailable, desired, False, f"{path}.maxUnavailable")
    if surge == 0 and unavailable == 0:
        if scaled_value(max_surge, 100, True) == 0 and scaled_value(max_unavailable, 100, True) == 0:
            raise InvalidSpecError(
                f"{path}.maxUnavailable: Invalid value: {max_unavailable}: may not be 0 when `maxSurge` is 0"
            )
        unavailable = 1
    return surge, unavailable


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    """A Deployment as the controller uses it, with Kubernetes' defaults for what is missing."""

    namespace: str
    name: str
    uid: str
    generation: int
    replicas: int
    rolling: bool
    """RollingUpdate; else Recreate."""
    max_surge: int
    """Resolved against ``replicas``; 0 for Recreate."""
    max_unavailable: int
    """Resolved against ``replicas`` and at most ``replicas``; 0 for Recreate."""
    min_ready_seconds: int
    revision_history_limit: int | None
    """None keeps every old ReplicaSet."""
    progress_deadline_seconds: int | None
    paused: bool
    deleting: bool
    selector: Mapping[str, Any] | None = field(hash=False)
    template: Mapping[str, Any] = field(hash=False)
    annotations: Mapping[str, str] = field(hash=False)
    status: Mapping[str, Any] = field(hash=False)

    @classmethod
    def from_object(cls, deploy: Mapping[str, Any]) -> DeploymentInfo:
        """Raises InvalidSpecError for a strategy the controller cannot follow."""
        meta = deploy.get("metadata") or {}
        spec = deploy.get("spec") or {}
        strategy = spec.get("strategy") or {}
        kind = str(strategy.get("type") or "RollingUpdate")
        replicas = 1 if spec.get("replicas") is None else int(spec["replicas"])
        surge = unavailable = 0
        if kind == "RollingUpdate":
            ru = strategy.get("rollingUpdate") or {}
            surge, unavailable = resolve_fenceposts(
                ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%"), replicas
            )
            unavailable = min(unavailable, replicas)
        elif kind != "Recreate":
            raise InvalidSpecError(
                f'spec.strategy.type: Unsupported value: "{kind}": '
                'supported values: "Recreate", "RollingUpdate"'
            )
        history = spec.get("revisionHistoryLimit", 10)
        deadline = spec.get("progressDeadlineSeconds", 600)
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 0),
            replicas=replicas,
            rolling=kind == "RollingUpdate",
            max_surge=surge,
            max_unavailable=unavailable,
            min_ready_seconds=int(spec.get("minReadySeconds") or 0),
            revision_history_limit=None if history in (None, _NO_LIMIT) else int(history),
            progress_deadline_seconds=None if deadline in (None, _NO_LIMIT) else int(deadline),
            paused=bool(spec.get("paused")),
            deleting=meta.get("deletionTimestamp") is not None,
            selector=spec.get("selector"),
            template=spec.get("template") or {},
            annotations=dict(meta.get("annotations") or {}),
            status=deploy.get("status") or {},
        )

    @property
    def owner(self) -> OwnerInfo:
        return OwnerInfo("apps/v1", "Deployment", self.namespace, self.name, self.uid, self.deleting)


def _status(rs: Mapping[str, Any], key: str) -> int:
    return int_field(rs.get("status") or {}, key)


def _int_annotation(rs: Mapping[str, Any], key: str) -> int | None:
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {})[key])
    except (KeyError, ValueError):
        return None


def _by_creation(rs: Mapping[str, Any]) -> tuple[datetime, str]:
    """ReplicaSetsByCreationTimestamp; no timestamp sorts first, as Go's zero time."""
    return timestamp((rs.get("metadata") or {}).get("creationTimestamp")) or ZERO_TIME, object_name(rs)


def _round(value: float) -> int:
    """Go's math.Round: halves away from zero."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def _template(rs: Mapping[str, Any]) -> Mapping[str, Any]:
    return (rs.get("spec") or {}).get("template") or {}


# --- the plan -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeploymentPlan:
    """One sync's worth of work for a Deployment."""

    create: Obj | None = None
    """The new ReplicaSet to POST."""
    update: tuple[Obj, ...] = ()
    """Existing ReplicaSets changed in place (replicas, annotations): PUT them."""
    delete: tuple[str, ...] = ()
    """Old ReplicaSets beyond revisionHistoryLimit."""
    scales: tuple[tuple[str, int], ...] = ()
    """Every replicas change as ``(ReplicaSet, replicas)`` in the order made, creation included."""
    revision: str | None = None
    """The Deployment's new ``deployment.kubernetes.io/revision``, when it changes."""
    status: Obj = field(default_factory=dict)
    """The status to write (Kubernetes writes it only when it differs)."""
    requeue_after: float | None = None
    """Seconds until the progress deadline must be looked at again."""

    @property
    def empty(self) -> bool:
        return self.create is None and not self.update and not self.delete and self.revision is None


class _Sync:
    """The working state of one syncDeployment pass over private copies of the ReplicaSets."""

    def __init__(self, d: DeploymentInfo, replicasets: Iterable[Mapping[str, Any]], now: datetime) -> None:
        self.d = d
        self.now = now
        self.original = {object_name(rs): rs for rs in replicasets}
        self.rs: dict[str, Obj] = {name: copy.deepcopy(dict(rs)) for name, rs in self.original.items()}
        self.created: Obj | None = None
        self.scales: list[tuple[str, int]] = []
        self.deleted: list[str] = []
        # Kubernetes changes the Deployment's status in place during a pass (NewReplicaSetCreated,
        # paused): later phases see today's conditions beside yesterday's counts.
        self.conditions: list[Obj] = [dict(c) for c in d.status.get("conditions") or []]
        self.collision_count: int | None = d.status.get("collisionCount")
        self.revision: str | None = None

    def split(self) -> tuple[str | None, list[str]]:
        """The new ReplicaSet (the oldest with the Deployment's template) and all the others."""
        new = next(
            (
                object_name(rs)
                for rs in sorted(self.rs.values(), key=_by_creation)
                if templates_equal_ignoring_hash(_template(rs), self.d.template)
            ),
            None,
        )
        return new, [name for name in self.rs if name != new]

    def snapshot(self) -> list[Obj]:
        return [copy.deepcopy(rs) for rs in self.rs.values()]

    def progressing(self) -> Obj | None:
        return next((c for c in self.conditions if c.get("type") == "Progressing"), None)

    # --- phase 1: find or create the new ReplicaSet (getAllReplicaSetsAndSyncRevision) ---

    def sync_revision(self, create: bool) -> None:
        new, old = self.split()
        max_old = max((r for n in old if (r := revision_of(self.rs[n])) is not None), default=0)
        next_revision = max_old + 1
        if new is None:
            if create:
                self._create(next_revision)
            return
        rs = self.rs[new]
        self._annotate_new(rs, next_revision, exists=True)
        if int((rs.get("spec") or {}).get("minReadySeconds") or 0) != self.d.min_ready_seconds:
            rs.setdefault("spec", {})["minReadySeconds"] = self.d.min_ready_seconds
        self._set_revision(str(revision_of(rs) or next_revision))
        if self.d.progress_deadline_seconds is not None and self.progressing() is None:
            message = f'Found new replica set "{new}"'
            _set_condition(
                self.conditions, "Progressing", "True", REASON_FOUND_NEW_REPLICASET, message, self.now
            )

    def _create(self, next_revision: int) -> None:
        d = self.d
        pod_hash = compute_hash(d.template, self.collision_count)
        name = f"{d.name}-{pod_hash}"
        if name in self.rs:
            # One of ours with another template holds the name: a new hash next pass.
            self.collision_count = (self.collision_count or 0) + 1
            return
        template = copy.deepcopy(dict(d.template))
        meta = template.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), POD_TEMPLATE_HASH_LABEL: pod_hash}
        selector = copy.deepcopy(dict(d.selector or {}))
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), POD_TEMPLATE_HASH_LABEL: pod_hash}
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": d.namespace,
                "labels": dict(meta["labels"]),
                "ownerReferences": [new_controller_ref(d.owner)],
            },
            "spec": {"replicas": 0, "minReadySeconds": d.min_ready_seconds, "selector": selector},
        }
        rs["spec"]["template"] = template
        self.rs[name] = self.created = rs
        rs["spec"]["replicas"] = self._new_replicas(name)
        self._annotate_new(rs, next_revision, exists=False)
        if rs["spec"]["replicas"]:
            self.scales.append((name, rs["spec"]["replicas"]))
        self._set_revision(str(next_revision))
        if d.progress_deadline_seconds is not None:
            message = f'Created new replica set "{name}"'
            _set_condition(
                self.conditions, "Progressing", "True", REASON_NEW_REPLICASET_CREATED, message, self.now
            )

    def _annotate_new(self, rs: Obj, next_revision: int, exists: bool) -> None:
        """SetNewReplicaSetAnnotations: the Deployment's annotations, and the next revision
        (remembering the old one when an old ReplicaSet becomes the new one again)."""
        annotations = rs.setdefault("metadata", {}).setdefault("annotations", {})
        annotations.update({k: v for k, v in self.d.annotations.items() if k not in SKIPPED_ANNOTATIONS})
        old = annotations.get(REVISION_ANNOTATION)
        current = revision_of(rs)
        if current is None:
            return  # an unreadable revision is left alone, as Kubernetes does
        if current < next_revision:
            annotations[REVISION_ANNOTATION] = str(next_revision)
            if old:
                _append_history(annotations, old)
        if not exists:
            self._annotate_size(rs)

    def _annotate_size(self, rs: Obj) -> None:
        annotations = rs.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[DESIRED_REPLICAS_ANNOTATION] = str(self.d.replicas)
        annotations[MAX_REPLICAS_ANNOTATION] = str(self.d.replicas + self.d.max_surge)

    def _set_revision(self, revision: str) -> None:
        if self.d.annotations.get(REVISION_ANNOTATION) != revision:
            self.revision = revision

    # --- phase 2: scaling ---

    def _new_replicas(self, new: str) -> int:
        """NewRSNewReplicas: how far the new ReplicaSet may grow now."""
        d = self.d
        if not d.rolling:
            return d.replicas
        current = sum(spec_replicas(rs) for rs in self.rs.values())
        size = spec_replicas(self.rs[new])
        room = d.replicas + d.max_surge - current
        return size if room <= 0 else size + min(room, d.replicas - size)

    def scale(self, name: str, replicas: int) -> None:
        """scaleReplicaSet: the size and the desired/max-replicas annotations."""
        rs = self.rs[name]
        if spec_replicas(rs) != replicas:
            self.scales.append((name, replicas))
        rs.setdefault("spec", {})["replicas"] = replicas
        self._annotate_size(rs)

    def scale_to(self, name: str, replicas: int) -> bool:
        """scaleReplicaSetAndRecordEvent: scale only a ReplicaSet of another size."""
        if spec_replicas(self.rs[name]) == replicas:
            return False
        self.scale(name, replicas)
        return True

    def is_scaling_event(self) -> bool:
        """An active ReplicaSet was sized for another ``spec.replicas``."""
        active = (rs for rs in self.rs.values() if spec_replicas(rs))
        sized_for = (_int_annotation(rs, DESIRED_REPLICAS_ANNOTATION) for rs in active)
        return any(desired is not None and desired != self.d.replicas for desired in sized_for)

    def scale_proportionally(self) -> None:
        """DeploymentController.scale: spread a change of ``spec.replicas`` over the active
        ReplicaSets in proportion to their size."""
        d = self.d
        new, old = self.split()
        everyone = [*old, *([new] if new else [])]
        active = [n for n in everyone if spec_replicas(self.rs[n]) > 0]
        if len(active) <= 1 and everyone:
            # FindActiveOrLatest: the only active one, else the new or the newest.
            only = active[0] if active else new or max(old, key=lambda n: _by_creation(self.rs[n]))
            self.scale_to(only, d.replicas)
            return
        if new is not None and self._saturated(self.rs[new]):
            for name in old:
                self.scale_to(name, 0)
            return
        if not d.rolling or not active:
            return
        allowed = d.replicas + d.max_surge if d.replicas > 0 else 0
        to_add = allowed - sum(spec_replicas(self.rs[n]) for n in active)
        # Larger first; among equals the newer first when growing, the older when shrinking.
        active.sort(key=lambda n: _by_creation(self.rs[n]), reverse=to_add > 0)
        active.sort(key=lambda n: -spec_replicas(self.rs[n]))
        sizes, added = {}, 0
        for name in active:
            share = self._proportion(self.rs[name], to_add, added) if to_add else 0
            sizes[name] = spec_replicas(self.rs[name]) + share
            added += share
        if to_add:  # what rounding left over goes to the largest
            sizes[active[0]] = max(0, sizes[active[0]] + to_add - added)
        for name in active:
            self.scale(name, sizes[name])

    def _saturated(self, rs: Mapping[str, Any]) -> bool:
        """IsSaturated: the new ReplicaSet has, wants and runs every replica available."""
        n = self.d.replicas
        desired = _int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)
        return spec_replicas(rs) == n and desired == n and _status(rs, "availableReplicas") == n

    def _proportion(self, rs: Mapping[str, Any], to_add: int, added: int) -> int:
        """GetReplicaSetProportion: this ReplicaSet's share of the replicas to add or remove,
        after its size at the Deployment's last size (the max-replicas annotation)."""
        d = self.d
        if to_add == added:
            return 0
        if d.replicas == 0:
            fraction = -spec_replicas(rs)
        else:
            was = _int_annotation(rs, MAX_REPLICAS_ANNOTATION) or int_field(d.status, "replicas")
            target = spec_replicas(rs) * (d.replicas + d.max_surge) / was if was else spec_replicas(rs)
            fraction = _round(target) - spec_replicas(rs)
        return min(fraction, to_add - added) if to_add > 0 else max(fraction, to_add - added)

    def reconcile_new(self, new: str) -> bool:
        """Grow the new ReplicaSet as far as maxSurge allows (shrink it if too large)."""
        size = spec_replicas(self.rs[new])
        if size == self.d.replicas:
            return False
        return self.scale_to(new, self.d.replicas if size > self.d.replicas else self._new_replicas(new))

    def reconcile_old(self, new: str, old: list[str]) -> bool:
        """Shrink the old ReplicaSets, unhealthy replicas first, keeping maxUnavailable."""
        active = [n for n in old if spec_replicas(self.rs[n]) > 0]
        active.sort(key=lambda n: _by_creation(self.rs[n]))
        if not active:
            return False
        min_available = self.d.replicas - self.d.max_unavailable
        new_unavailable = spec_replicas(self.rs[new]) - _status(self.rs[new], "availableReplicas")
        total = sum(spec_replicas(rs) for rs in self.rs.values())
        max_scaled_down = total - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = 0
        for name in active:  # cleanupUnhealthyReplicas: unavailable replicas cost nothing to drop
            size, available = spec_replicas(self.rs[name]), _status(self.rs[name], "availableReplicas")
            if cleaned >= max_scaled_down:
                break
            if size < available:
                return False  # a stale status: Kubernetes gives up this pass here
            count = min(max_scaled_down - cleaned, size - available)
            self.scale_to(name, size - count)
            cleaned += count
        # scaleDownOldReplicaSetsForRollingUpdate: as far as availability allows.
        available = sum(_status(self.rs[n], "availableReplicas") for n in [*active, new])
        budget, scaled = available - min_available, 0
        for name in active:
            size = spec_replicas(self.rs[name])
            if scaled >= budget:
                break
            if size:
                count = min(size, budget - scaled)
                self.scale_to(name, size - count)
                scaled += count
        return cleaned + scaled > 0

    def cleanup(self, old: list[str]) -> None:
        """cleanupDeployment: delete the lowest revisions beyond revisionHistoryLimit, but only
        idle ReplicaSets whose status is current."""
        limit = self.d.revision_history_limit
        alive = [
            rs
            for n in old
            if n in self.original
            and ((rs := self.original[n]).get("metadata") or {}).get("deletionTimestamp") is None
        ]
        if limit is None or len(alive) <= limit:
            return
        alive.sort(key=lambda rs: (_revision_key(rs), *_by_creation(rs)))
        for rs in alive[: len(alive) - limit]:
            generation = int((rs.get("metadata") or {}).get("generation") or 0)
            if _status(rs, "replicas") or spec_replicas(rs) or generation > _status(rs, "observedGeneration"):
                continue
            self.deleted.append(object_name(rs))

    # --- phase 3: status (calculateStatus, syncRolloutStatus) ---

    def calculate_status(self, replicasets: Sequence[Mapping[str, Any]], new: str | None) -> Obj:
        d = self.d
        available = sum(_status(rs, "availableReplicas") for rs in replicasets)
        new_rs = next((rs for rs in replicasets if object_name(rs) == new), None)
        status: Obj = {
            "observedGeneration": d.generation,
            "replicas": sum(_status(rs, "replicas") for rs in replicasets),
            "updatedReplicas": _status(new_rs, "replicas") if new_rs else 0,
            "readyReplicas": sum(_status(rs, "readyReplicas") for rs in replicasets),
            "availableReplicas": available,
            "unavailableReplicas": max(0, sum(spec_replicas(rs) for rs in replicasets) - available),
        }
        if self.collision_count is not None:
            status["collisionCount"] = self.collision_count
        conditions = status["conditions"] = [dict(c) for c in self.conditions]
        if available >= d.replicas - d.max_unavailable:
            reason, message = REASON_MINIMUM_REPLICAS_AVAILABLE, "Deployment has minimum availability."
            _set_condition(conditions, "Available", "True", reason, message, self.now)
        else:
            reason, message = (
                REASON_MINIMUM_REPLICAS_UNAVAILABLE,
                "Deployment does not have minimum availability.",
            )
            _set_condition(conditions, "Available", "False", reason, message, self.now)
        return status

    def rollout_status(self, replicasets: Sequence[Mapping[str, Any]], new: str | None) -> DeploymentPlan:
        """The plan with the status syncRolloutStatus writes: Progressing brought up to date."""
        d = self.d
        status = self.calculate_status(replicasets, new)
        conditions: list[Obj] = status["conditions"]
        deadline = d.progress_deadline_seconds
        current = self.progressing()
        subject = f'ReplicaSet "{new}"' if new else f'Deployment "{d.name}"'
        if deadline is None:
            conditions[:] = [c for c in conditions if c.get("type") != "Progressing"]
        elif not (
            current is not None
            and current.get("reason") == REASON_NEW_REPLICASET_AVAILABLE
            and status["replicas"] == status["updatedReplicas"]
        ):
            if _complete(d, status):
                message = f"{subject} has successfully progressed."
                _set_condition(
                    conditions, "Progressing", "True", REASON_NEW_REPLICASET_AVAILABLE, message, self.now
                )
            elif _progressing(d.status, status):
                # Progress refreshes lastUpdateTime even when the reason stays the same.
                cond = _new_condition(
                    "Progressing", "True", REASON_REPLICASET_UPDATED, f"{subject} is progressing.", self.now
                )
                if current is not None and current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                conditions[:] = [*(c for c in conditions if c.get("type") != "Progressing"), cond]
            elif self._timed_out(conditions):
                message = f"{subject} has timed out progressing."
                _set_condition(
                    conditions, "Progressing", "False", REASON_PROGRESS_DEADLINE_EXCEEDED, message, self.now
                )
        conditions[:] = [c for c in conditions if c.get("type") != "ReplicaFailure"]
        conditions.extend(_replica_failure(replicasets, new))
        return self.plan(status, self._requeue_after(current, status))

    def _timed_out(self, conditions: list[Obj]) -> bool:
        """DeploymentTimedOut: no progress reported for progressDeadlineSeconds."""
        cond = next((c for c in conditions if c.get("type") == "Progressing"), None)
        if cond is None or cond.get("reason") == REASON_NEW_REPLICASET_AVAILABLE:
            return False
        if cond.get("reason") == REASON_PROGRESS_DEADLINE_EXCEEDED:
            return True
        since = timestamp(cond.get("lastUpdateTime")) or ZERO_TIME
        return since + timedelta(seconds=self.d.progress_deadline_seconds or 0) < self.now

    def _requeue_after(self, current: Mapping[str, Any] | None, status: Mapping[str, Any]) -> float | None:
        """requeueStuckDeployment: when a rollout in progress reaches its deadline."""
        deadline = self.d.progress_deadline_seconds
        if deadline is None or current is None or _complete(self.d, status):
            return None
        if current.get("reason") == REASON_PROGRESS_DEADLINE_EXCEEDED:
            return None
        since = timestamp(current.get("lastUpdateTime")) or ZERO_TIME
        after = (since + timedelta(seconds=deadline) - self.now).total_seconds()
        return 0.0 if after < 1 else after

    def check_paused_conditions(self) -> None:
        """Progressing=Unknown while paused, so time spent paused never counts as no progress."""
        cond = self.progressing()
        if self.d.progress_deadline_seconds is None or (
            cond is not None and cond.get("reason") == REASON_PROGRESS_DEADLINE_EXCEEDED
        ):
            return
        was_paused = cond is not None and cond.get("reason") == REASON_PAUSED
        if self.d.paused and not was_paused:
            _set_condition(
                self.conditions, "Progressing", "Unknown", REASON_PAUSED, "Deployment is paused", self.now
            )
        elif not self.d.paused and was_paused:
            message = "Deployment is resumed"
            _set_condition(self.conditions, "Progressing", "Unknown", REASON_RESUMED, message, self.now)

    def plan(self, status: Obj, requeue_after: float | None = None) -> DeploymentPlan:
        update = tuple(
            rs
            for name, rs in self.rs.items()
            if name in self.original and semantic_form(rs) != semantic_form(self.original[name])
        )
        return DeploymentPlan(
            create=self.created,
            update=update,
            delete=tuple(self.deleted),
            scales=tuple(self.scales),
            revision=self.revision,
            status=status,
            requeue_after=requeue_after,
        )


def _revision_key(rs: Mapping[str, Any]) -> int:
    rev = revision_of(rs)
    return -1 if rev is None else rev


def _append_history(annotations: dict[str, str], old_revision: str) -> None:
    """The revision-history annotation, its oldest entries dropped beyond 2000 characters."""
    history = annotations.get(REVISION_HISTORY_ANNOTATION, "")
    revisions = [*history.split(","), old_revision] if history else [old_revision]
    while len(",".join(revisions)) > MAX_REVISION_HISTORY_CHARS and len(revisions) > 1:
        revisions.pop(0)
    if len(",".join(revisions)) <= MAX_REVISION_HISTORY_CHARS:
        annotations[REVISION_HISTORY_ANNOTATION] = ",".join(revisions)


def _new_condition(kind: str, status: str, reason: str, message: str, now: datetime) -> Obj:
    stamp = format_time(now)
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def _set_condition(
    conditions: list[Obj], kind: str, status: str, reason: str, message: str, now: datetime
) -> None:
    """SetDeploymentCondition: nothing changes for the same status and reason; the transition
    time survives a new reason with the same status. The condition moves to the end."""
    cond = _new_condition(kind, status, reason, message, now)
    current = next((c for c in conditions if c.get("type") == kind), None)
    if current is not None and current.get("status") == status:
        if current.get("reason") == reason:
            return
        cond["lastTransitionTime"] = current.get("lastTransitionTime")
    conditions[:] = [*(c for c in conditions if c.get("type") != kind), cond]


def _complete(d: DeploymentInfo, status: Mapping[str, Any]) -> bool:
    """DeploymentComplete: every replica updated and available, no old ones, spec observed."""
    counts = (int_field(status, k) for k in ("updatedReplicas", "replicas", "availableReplicas"))
    return all(c == d.replicas for c in counts) and int_field(status, "observedGeneration") >= d.generation


def _progressing(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """DeploymentProgressing: more updated, ready or available replicas, or fewer old ones."""

    def old_replicas(status: Mapping[str, Any]) -> int:
        return int_field(status, "replicas") - int_field(status, "updatedReplicas")

    counts = ("updatedReplicas", "readyReplicas", "availableReplicas")
    grown = any(int_field(new, k) > int_field(old, k) for k in counts)
    return grown or old_replicas(new) < old_replicas(old)


def _replica_failure(replicasets: Sequence[Mapping[str, Any]], new: str | None) -> list[Obj]:
    """The first ReplicaFailure condition, the new ReplicaSet's first, as a Deployment condition."""
    for rs in sorted(replicasets, key=lambda rs: object_name(rs) != new):
        for c in (rs.get("status") or {}).get("conditions") or []:
            if c.get("type") == "ReplicaFailure":
                cond = {k: c.get(k) for k in ("type", "status", "lastTransitionTime", "reason", "message")}
                return [{**cond, "lastUpdateTime": c.get("lastTransitionTime")}]
    return []


# --- entry points ---------------------------------------------------------------------------------


def deployment_plan(
    deploy: Mapping[str, Any],
    replicasets: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]] | None = None,
    *,
    now: datetime | None = None,
) -> DeploymentPlan:
    """One pass of syncDeployment over the ReplicaSets the Deployment controls.

    ``pods`` (those of the ReplicaSets) only matter to Recreate, which waits until no old pod
    runs; without them the old ReplicaSets' ``status.replicas`` decide. Raises InvalidSpecError
    for a strategy the controller cannot follow.
    """
    d = DeploymentInfo.from_object(deploy)
    sync = _Sync(d, replicasets, now or clock_now())
    selector = d.selector or {}
    if d.selector is not None and not selector.get("matchLabels") and not selector.get("matchExpressions"):
        # A Deployment selecting every pod is left alone; its spec still counts as observed.
        return DeploymentPlan(status={**d.status, "observedGeneration": d.generation})
    if d.deleting:
        sync.sync_revision(create=False)
        return sync.plan(sync.calculate_status(sync.snapshot(), sync.split()[0]))
    sync.check_paused_conditions()
    sync.sync_revision(create=False)
    if d.paused or sync.is_scaling_event():
        snapshot = sync.snapshot()
        new, old = sync.split()
        sync.scale_proportionally()
        if d.paused:
            sync.cleanup(old)
        return sync.plan(sync.calculate_status(snapshot, new))
    if d.rolling:
        return _rollout_rolling(sync)
    return _rollout_recreate(sync, pods)


def _rollout_rolling(sync: _Sync) -> DeploymentPlan:
    sync.sync_revision(create=True)
    snapshot = sync.snapshot()
    new, old = sync.split()
    if new is None:  # a hash collision: the next pass tries another name
        return sync.rollout_status(snapshot, new)
    if not sync.reconcile_new(new) and not sync.reconcile_old(new, old) and _complete(sync.d, sync.d.status):
        sync.cleanup(old)
    return sync.rollout_status(snapshot, new)


def _rollout_recreate(sync: _Sync, pods: Iterable[Mapping[str, Any]] | None) -> DeploymentPlan:
    snapshot = sync.snapshot()
    new, old = sync.split()
    scaled_down = [sync.scale_to(name, 0) for name in old if spec_replicas(sync.rs[name]) > 0]
    if any(scaled_down) or _old_pods_running(sync, old, pods):
        return sync.rollout_status(snapshot, new)
    if new is None:
        sync.sync_revision(create=True)
        snapshot = sync.snapshot()
        new, old = sync.split()
    if new is not None:
        sync.scale_to(new, sync.d.replicas)
        if _complete(sync.d, sync.d.status):
            sync.cleanup(old)
    return sync.rollout_status(snapshot, new)


def _old_pods_running(sync: _Sync, old: list[str], pods: Iterable[Mapping[str, Any]] | None) -> bool:
    """oldPodsRunning: an old ReplicaSet still reports pods, or one of its pods has not ended."""
    if any(_status(sync.rs[n], "replicas") for n in old):
        return True
    old_uids = {str((sync.rs[n].get("metadata") or {}).get("uid") or "") for n in old} - {""}
    return any(
        controller_uid(pod) in old_uids
        and (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded")
        for pod in pods or ()
    )


def deployment_status(
    deploy: Mapping[str, Any], replicasets: Iterable[Mapping[str, Any]], *, now: datetime | None = None
) -> Obj:
    """The status the controller writes on this sync: ``deployment_plan(...).status``."""
    return deployment_plan(deploy, replicasets, now=now).status


def rolling_update_plan(
    deploy: Mapping[str, Any], replicasets: Iterable[Mapping[str, Any]], *, now: datetime | None = None
) -> list[tuple[str, int]]:
    """This sync's replicas changes as ``(ReplicaSet name, new replicas)``, a new ReplicaSet's
    creation included: ``deployment_plan(...).scales``."""
    return list(deployment_plan(deploy, replicasets, now=now).scales)


def hash_collision(deploy: Mapping[str, Any], existing: Mapping[str, Any]) -> bool:
    """Whether the ReplicaSet already holding the new ReplicaSet's name (POST said AlreadyExists)
    is not the Deployment's own with its template: then ``status.collisionCount`` must grow."""
    uid = str((deploy.get("metadata") or {}).get("uid") or "")
    template = (deploy.get("spec") or {}).get("template") or {}
    return not (
        controller_uid(existing) == uid and templates_equal_ignoring_hash(template, _template(existing))
    )
