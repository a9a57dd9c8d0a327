"""What the workload controllers share, and what kubectl reads back: pure, no I/O.

    replicaset_model ──┐
    deployment_model ──┼──► workloads_model: PodInfo (readiness, availability), controller
    daemonset_model ───┘    references and claiming (adopt / release), pods from templates,
                            the pod-template hash, int-or-percent scaling
                            (Kubernetes' pkg/controller/controller_utils.go)
    kubectl rollout status / undo ───► the same module's last section
                            (k8s.io/kubectl/pkg/polymorphichelpers: rollout_status.go, rollback.go)

- A pod is *active* until it is Succeeded, Failed or being deleted; only active pods count
  towards a ReplicaSet's replicas.
- A pod is *available* once it has been Ready for more than ``minReadySeconds``.
- Claiming follows ControllerRefManager: an owner keeps the objects it controls that its
  selector still matches, releases the ones it no longer matches (unless it is being deleted)
  and adopts orphans its selector matches (unless either side is being deleted).
- The template hash is FNV-32a over a canonical JSON form of the template (plus the
  collision count), rendered with Kubernetes' SafeEncodeString alphabet: the same shape as
  Kubernetes' (``5d59d67564``), stable across runs and dict orders, not bit-equal to Go's.
- ``kubectl rollout status`` only reads ``status`` (and ``metadata.generation``);
  ``kubectl rollout undo`` is a client-side JSON patch of the Deployment's template and
  annotations taken from the ReplicaSet of the wanted revision, so the server needs nothing
  special beyond JSON patch and revision annotations on ReplicaSets.
"""

from __future__ import annotations

import copy
import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubelite.api.meta import parse_time
from kubelite.api.selectors import Selector

Obj = dict[str, Any]

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
"""Deployments add it to their ReplicaSets' selector, labels and pod template."""
CONTROLLER_REVISION_HASH_LABEL = "controller-revision-hash"
"""DaemonSets label their pods with it to tell current pods from old ones."""
POD_DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
BURST_REPLICAS = 500
"""A ReplicaSet creates or deletes at most this many pods per sync, as kube-controller-manager."""

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
ZERO_TIME = datetime.min.replace(tzinfo=UTC)
"""Go's zero time: where a missing timestamp sorts (before every real one)."""

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
"""The rollout sequence number of a Deployment's ReplicaSet (and of the Deployment itself)."""
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
"""What ``kubectl rollout restart`` sets in the pod template: a template change like any other."""
SKIPPED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        REVISION_HISTORY_ANNOTATION,
        DESIRED_REPLICAS_ANNOTATION,
        MAX_REPLICAS_ANNOTATION,
        "deprecated.deployment.rollback.to",
    }
)
"""Deployment annotations not copied to its ReplicaSets, nor back by ``rollout undo``."""

__all__ = [
    "BURST_REPLICAS",
    "CONTROLLER_REVISION_HASH_LABEL",
    "DESIRED_REPLICAS_ANNOTATION",
    "MAX_REPLICAS_ANNOTATION",
    "POD_DELETION_COST_ANNOTATION",
    "POD_TEMPLATE_HASH_LABEL",
    "RESTARTED_AT_ANNOTATION",
    "REVISION_ANNOTATION",
    "REVISION_HISTORY_ANNOTATION",
    "SKIPPED_ANNOTATIONS",
    "ZERO_TIME",
    "Claim",
    "InvalidSpecError",
    "Obj",
    "OwnerInfo",
    "PodInfo",
    "RollbackError",
    "RolloutStatusError",
    "adopt_patch",
    "claim",
    "compute_hash",
    "controller_uid",
    "daemonset_rollout_status_message",
    "int_field",
    "new_controller_ref",
    "object_name",
    "pod_from_template",
    "release_patch",
    "revision_of",
    "rollback_patch",
    "rollout_status_message",
    "safe_encode_string",
    "scaled_value",
    "semantic_form",
    "spec_replicas",
    "template_for_revision",
    "template_without_hash",
    "templates_equal_ignoring_hash",
    "timestamp",
]


class InvalidSpecError(ValueError):
    """A spec the controller cannot act on (validation should have refused it); says what to fix."""


# --- what arrives ---------------------------------------------------------------------------------


def timestamp(value: object) -> datetime | None:
    """An RFC 3339 time from the API, or None when absent or unreadable (Go's zero time)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controller (the ownerReference with ``controller: true``)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return str(ref.get("uid") or "")
    return None


@dataclass(frozen=True, slots=True)
class OwnerInfo:
    """A controlling object (ReplicaSet, Deployment, DaemonSet) as its dependents see it."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str
    deleting: bool = False

    @classmethod
    def from_object(cls, obj: Mapping[str, Any], kind: str, api_version: str = "apps/v1") -> OwnerInfo:
        meta = obj.get("metadata") or {}
        return cls(
            api_version=str(obj.get("apiVersion") or api_version),
            kind=str(obj.get("kind") or kind),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            deleting=meta.get("deletionTimestamp") is not None,
        )


@dataclass(frozen=True, slots=True)
class PodInfo:
    """The parts of a Pod the workload controllers decide on."""

    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    node_name: str = ""
    target_node: str = ""
    """``spec.nodeName``, else the node a DaemonSet's ``metadata.name`` node affinity pins."""
    phase: str = ""
    deleting: bool = False
    created: datetime | None = None
    ready: bool = False
    ready_since: datetime | None = None
    """lastTransitionTime of the Ready condition."""
    restarts: int = 0
    """The highest restart count among regular containers."""
    sidecar_restarts: int = 0
    """The highest restart count among restartable init containers."""
    deletion_cost: int = 0

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> PodInfo:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        ready_cond = next(
            (
                c
                for c in status.get("conditions") or []
                if isinstance(c, Mapping) and c.get("type") == "Ready"
            ),
            {},
        )
        sidecars = {
            c.get("name") for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
        }
        cost = (meta.get("annotations") or {}).get(POD_DELETION_COST_ANNOTATION, "0")
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            labels=dict(meta.get("labels") or {}),
            node_name=str(spec.get("nodeName") or ""),
            target_node=str(spec.get("nodeName") or "") or _affinity_node_name(spec),
            phase=str(status.get("phase") or ""),
            deleting=meta.get("deletionTimestamp") is not None,
            created=timestamp(meta.get("creationTimestamp")),
            ready=ready_cond.get("status") == "True",
            ready_since=timestamp(ready_cond.get("lastTransitionTime")),
            restarts=_max_restarts(status.get("containerStatuses") or []),
            sidecar_restarts=_max_restarts(
                s for s in status.get("initContainerStatuses") or [] if s.get("name") in sidecars
            ),
            deletion_cost=int(cost) if str(cost).lstrip("-").isdigit() else 0,
        )

    @property
    def active(self) -> bool:
        """Counts towards its controller's replicas: not Succeeded, not Failed, not being deleted."""
        return self.phase not in ("Succeeded", "Failed") and not self.deleting

    def available(self, min_ready_seconds: int, now: datetime) -> bool:
        """Ready for longer than ``min_ready_seconds`` (podutil.IsPodAvailable)."""
        if not self.ready:
            return False
        if min_ready_seconds <= 0:
            return True
        return self.ready_since is not None and self.ready_since + timedelta(seconds=min_ready_seconds) < now

    def available_at(self, min_ready_seconds: int) -> datetime | None:
        """When a ready pod turns available; None if it is not ready or never will be."""
        if not self.ready or self.ready_since is None:
            return None
        return self.ready_since + timedelta(seconds=min_ready_seconds)


def _max_restarts(statuses: Iterable[Any]) -> int:
    return max((int(s.get("restartCount") or 0) for s in statuses if isinstance(s, Mapping)), default=0)


def _affinity_node_name(spec: Mapping[str, Any]) -> str:
    """The node a DaemonSet pod is pinned to by ``matchFields metadata.name In [node]``."""
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for expr in (term or {}).get("matchFields") or []:
            values = expr.get("values") or []
            if expr.get("key") == "metadata.name" and expr.get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return ""


def object_name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def int_field(fields: Mapping[str, Any], key: str) -> int:
    """A count from a status (or any map), 0 when omitted as Go omits zero values."""
    return int(fields.get(key) or 0)


def spec_replicas(obj: Mapping[str, Any]) -> int:
    """``spec.replicas`` of a ReplicaSet or Deployment, 1 when unset as Kubernetes defaults it."""
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def revision_of(obj: Mapping[str, Any]) -> int | None:
    """deploymentutil.Revision: the revision annotation, 0 when absent, None when unreadable."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(REVISION_ANNOTATION)
    if text is None:
        return 0
    try:
        return int(text)
    except ValueError:
        return None


# --- ownership ------------------------------------------------------------------------------------


def new_controller_ref(owner: OwnerInfo) -> Obj:
    """The ownerReference a controller puts on what it creates or adopts (metav1.NewControllerRef)."""
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming objects for an owner: names in input order."""

    owned: tuple[str, ...] = ()
    """Objects the owner controls after the claim: kept plus adopted."""
    adopt: tuple[str, ...] = ()
    """Orphans to adopt (patch in a controller reference, see ``adopt_patch``)."""
    release: tuple[str, ...] = ()
    """Objects the owner controls but no longer selects (see ``release_patch``)."""


def claim(owner: OwnerInfo, objects: Iterable[Mapping[str, Any]], selector: Selector) -> Claim:
    """Kubernetes' ClaimObject over every object, as ControllerRefManager does it.

    Objects controlled by someone else are ignored; so are orphans that are being deleted,
    live in another namespace, or do not match, and every orphan while the owner is deleted.
    """
    owned: list[str] = []
    adopt: list[str] = []
    release: list[str] = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        ref = controller_uid(obj)
        matches = selector.matches(meta.get("labels") or {})
        if ref is not None:
            if ref != owner.uid:
                continue
            if matches:
                owned.append(name)
            elif not owner.deleting:
                release.append(name)
            continue
        if owner.deleting or not matches or meta.get("deletionTimestamp") is not None:
            continue
        if owner.namespace and str(meta.get("namespace") or "") != owner.namespace:
            continue
        owned.append(name)
        adopt.append(name)
    return Claim(tuple(owned), tuple(adopt), tuple(release))


def adopt_patch(owner: OwnerInfo, obj: Mapping[str, Any]) -> Obj:
    """The strategic merge patch that adopts ``obj``; its uid guards against a replaced object."""
    meta = obj.get("metadata") or {}
    return {"metadata": {"ownerReferences": [new_controller_ref(owner)], "uid": meta.get("uid")}}


def release_patch(owner: OwnerInfo, obj: Mapping[str, Any]) -> Obj:
    """The strategic merge patch that removes ``owner``'s reference from ``obj``."""
    meta = obj.get("metadata") or {}
    return {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner.uid}], "uid": meta.get("uid")}}


def pod_from_template(template: Mapping[str, Any], owner: OwnerInfo) -> Obj:
    """A Pod to create for ``owner`` (controller.GetPodFromTemplate): the template's labels,
    annotations, finalizers and spec, ``generateName: <owner>-`` and a controller reference."""
    meta = template.get("metadata") or {}
    pod_meta: Obj = {"generateName": owner.name + "-", "namespace": owner.namespace}
    for key in ("labels", "annotations", "finalizers"):
        if meta.get(key):
            pod_meta[key] = copy.deepcopy(meta[key])
    pod_meta["ownerReferences"] = [new_controller_ref(owner)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta,
        "spec": copy.deepcopy(dict(template.get("spec") or {})),
    }


# --- templates: equality and hash -----------------------------------------------------------------


def semantic_form(value: Any) -> Any:
    """``value`` with nulls, empty maps and empty lists dropped from maps, recursively.

    This is the equality apimachinery's Semantic.DeepEqual gives typed objects (nil and empty
    are equal; an omitted field is its zero value) as far as JSON can tell them apart.
    """
    if isinstance(value, Mapping):
        out: Obj = {}
        for key, item in value.items():
            norm = semantic_form(item)
            if norm is None or norm == {} or norm == []:
                continue
            out[str(key)] = norm
        return out
    if isinstance(value, list | tuple):
        return [semantic_form(v) for v in value]
    return value


def _canonical(value: Any) -> str:
    return json.dumps(semantic_form(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def template_without_hash(template: Mapping[str, Any]) -> Obj:
    """A copy of a ReplicaSet's pod template without the ``pod-template-hash`` label."""
    copied = copy.deepcopy(dict(template))
    labels = (copied.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return copied


def templates_equal_ignoring_hash(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Deployment's EqualIgnoreHash: the same pod template apart from ``pod-template-hash``."""
    return _canonical(template_without_hash(a)) == _canonical(template_without_hash(b))


def _fnv32a(data: bytes, h: int = 0x811C9DC5) -> int:
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode_string(text: str) -> str:
    """k8s.io/apimachinery's rand.SafeEncodeString: each character mapped into an alphabet
    without vowels or confusable digits, so generated names never spell words."""
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in text)


def compute_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """controller.ComputeHash: a short, stable name suffix for a pod template.

    Semantically equal templates (key order, nulls, empty maps) hash alike; a collision count
    is mixed in as Kubernetes does (eight bytes, little-endian) so a collision can be escaped.
    """
    h = _fnv32a(_canonical(template).encode())
    if collision_count is not None:
        h = _fnv32a(struct.pack("<I", collision_count & 0xFFFFFFFF) + bytes(4), h)
    return safe_encode_string(str(h))


# --- int or percent -------------------------------------------------------------------------------


def scaled_value(value: int | str | None, total: int, round_up: bool, path: str = "value") -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int as is, ``"N%"`` of ``total`` rounded up or down.

    None counts as 0. Raises InvalidSpecError (naming ``path``) for anything else.
    """
    if value is None:
        return 0
    if isinstance(value, bool):
        raise InvalidSpecError(f"{path}: invalid value {value!r}: must be an integer or a percentage")
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%") or not text[:-1].isdigit():
        raise InvalidSpecError(
            f"{path}: invalid value {text!r}: "
            "a percentage must be a whole number followed by '%' (e.g. '25%')"
        )
    scaled = int(text[:-1]) * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


# --- kubectl: rollout undo and rollout status -----------------------------------------------------


class RollbackError(Exception):
    """``kubectl rollout undo`` refused; the message is kubectl's."""


class RolloutStatusError(Exception):
    """``kubectl rollout status`` failed; the message is kubectl's."""


def _replicaset_for_revision(
    replicasets: Iterable[Mapping[str, Any]], wanted: int, name: str
) -> Mapping[str, Any]:
    """kubectl's deploymentRevision: revision 0 means the one before the latest."""
    if wanted < 0:
        raise RollbackError(f"unable to find specified revision {wanted} in history")
    numbered = [(r, rs) for rs in replicasets if (r := revision_of(rs)) is not None]
    if wanted > 0:
        found = next((rs for r, rs in numbered if r == wanted), None)
        if found is None:
            raise RollbackError(f"unable to find specified revision {wanted} in history")
        return found
    latest: tuple[int, Mapping[str, Any] | None] = (-1, None)
    previous: tuple[int, Mapping[str, Any] | None] = (-1, None)
    for r, rs in numbered:
        if latest[0] < r:
            latest, previous = (r, rs), latest
        elif previous[0] < r:
            previous = (r, rs)
    if previous[1] is None:
        raise RollbackError(f'no rollout history found for deployment "{name}"')
    return previous[1]


def template_for_revision(
    replicasets: Iterable[Mapping[str, Any]], revision: int = 0, *, name: str = ""
) -> Obj:
    """The pod template of ``revision`` (0: the previous one) among a Deployment's ReplicaSets,
    as ``rollout undo`` writes it back. Raises RollbackError with kubectl's message."""
    rs = _replicaset_for_revision(replicasets, revision, name)
    return template_without_hash((rs.get("spec") or {}).get("template") or {})


def rollback_patch(
    deploy: Mapping[str, Any], replicasets: Iterable[Mapping[str, Any]], revision: int = 0
) -> list[Obj] | None:
    """The JSON patch ``kubectl rollout undo [--to-revision]`` sends, or None where kubectl says
    "skipped rollback (current template already matches revision N)".

    It replaces ``/spec/template`` and ``/metadata/annotations``: the old ReplicaSet's
    annotations (bar ``SKIPPED_ANNOTATIONS``) plus the Deployment's own skipped ones.
    """
    meta = deploy.get("metadata") or {}
    spec = deploy.get("spec") or {}
    rs = _replicaset_for_revision(replicasets, revision, str(meta.get("name") or ""))
    if spec.get("paused"):
        raise RollbackError(
            "you cannot rollback a paused deployment; "
            "resume it first with 'kubectl rollout resume' and try again"
        )
    old_template = (rs.get("spec") or {}).get("template") or {}
    if templates_equal_ignoring_hash(old_template, spec.get("template") or {}):
        return None
    own = meta.get("annotations") or {}
    annotations = {k: v for k, v in own.items() if k in SKIPPED_ANNOTATIONS}
    rs_annotations = (rs.get("metadata") or {}).get("annotations") or {}
    annotations.update({k: v for k, v in rs_annotations.items() if k not in SKIPPED_ANNOTATIONS})
    return [
        {"op": "replace", "path": "/spec/template", "value": template_without_hash(old_template)},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]


def rollout_status_message(deploy: Mapping[str, Any], revision: int = 0) -> tuple[str, bool]:
    """What ``kubectl rollout status deployment/<name> [--revision]`` prints for this state, and
    whether it stops there (DeploymentStatusViewer). Raises RolloutStatusError where kubectl fails."""
    meta = deploy.get("metadata") or {}
    status = deploy.get("status") or {}
    name = str(meta.get("name") or "")
    if revision > 0:
        current = revision_of(deploy)
        if current is None:
            raise RolloutStatusError(f'cannot get the revision of deployment "{name}"')
        if current != revision:
            raise RolloutStatusError(
                f"desired revision ({revision}) is different from the running revision ({current})"
            )
    if int_field(meta, "generation") > int_field(status, "observedGeneration"):
        return "Waiting for deployment spec update to be observed...\n", False
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutStatusError(f'deployment "{name}" exceeded its progress deadline')
    wanted = (deploy.get("spec") or {}).get("replicas")
    replicas, updated = int_field(status, "replicas"), int_field(status, "updatedReplicas")
    available = int_field(status, "availableReplicas")
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if wanted is not None and updated < int(wanted):
        return f"{waiting}{updated} out of {wanted} new replicas have been updated...\n", False
    if replicas > updated:
        return f"{waiting}{replicas - updated} old replicas are pending termination...\n", False
    if available < updated:
        return f"{waiting}{available} of {updated} updated replicas are available...\n", False
    return f'deployment "{name}" successfully rolled out\n', True


def daemonset_rollout_status_message(ds: Mapping[str, Any]) -> tuple[str, bool]:
    """What ``kubectl rollout status daemonset/<name>`` prints, and whether it stops there
    (DaemonSetStatusViewer). Raises RolloutStatusError for an OnDelete DaemonSet, as kubectl."""
    meta = ds.get("metadata") or {}
    status = ds.get("status") or {}
    name = str(meta.get("name") or "")
    strategy = ((ds.get("spec") or {}).get("updateStrategy") or {}).get("type") or "RollingUpdate"
    if strategy != "RollingUpdate":
        raise RolloutStatusError("rollout status is only available for RollingUpdate strategy type")
    if int_field(meta, "generation") > int_field(status, "observedGeneration"):
        return "Waiting for daemon set spec update to be observed...\n", False
    desired = int_field(status, "desiredNumberScheduled")
    updated = int_field(status, "updatedNumberScheduled")
    available = int_field(status, "numberAvailable")
    waiting = f'Waiting for daemon set "{name}" rollout to finish: '
    if updated < desired:
        return f"{waiting}{updated} out of {desired} new pods have been updated...\n", False
    if available < desired:
        return f"{waiting}{available} of {desired} updated pods are available...\n", False
    return f'daemon set "{name}" successfully rolled out\n', True
