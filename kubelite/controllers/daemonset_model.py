"""What the DaemonSet controller should do: pure, no I/O (Kubernetes' pkg/controller/daemon).

``daemonset_plan(ds, nodes, pods)`` returns a ``DaemonSetPlan``: a pod to create on every node
that should run one and has none, pods to delete (failed or finished ones, extras, those on
nodes that no longer qualify), adoption and release of pods, one rolling-update step, and the
status to write.

Which nodes qualify is one predicate, ``fits(pod_spec, node)``, so the scheduler's own can be
passed in; the default is Kubernetes' DaemonSet predicate: ``spec.nodeName``, ``nodeSelector``
and required node affinity match, and every NoSchedule / NoExecute taint is tolerated. A pod
keeps running on a node it no longer fits only when just a NoSchedule taint is in the way.
DaemonSet pods tolerate the node-condition taints Kubernetes adds for them (not-ready and
unreachable NoExecute; disk-, memory-, pid-pressure and unschedulable NoSchedule; network-
unavailable too for host-network pods), and are pinned to their node by the node affinity
``metadata.name In [node]``, so the default scheduler binds them (Kubernetes since 1.12).

A pod is current when its ``controller-revision-hash`` label is the template's hash. A rolling
update (only once the plan has nothing else to do, as Kubernetes waits for its expectations)
deletes old pods while at most ``maxUnavailable`` nodes lack an available pod, or with
``maxSurge`` starts the new pod beside the old one and deletes the old once the new is available.
Both round percentages up; a DaemonSet allowing neither may lose one pod at a time.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubelite.api.meta import now as clock_now
from kubelite.api.selectors import Operator, Requirement, SelectorError, selector_from_label_selector
from kubelite.controllers.workloads_model import (
    CONTROLLER_REVISION_HASH_LABEL,
    ZERO_TIME,
    Obj,
    OwnerInfo,
    PodInfo,
    claim,
    compute_hash,
    object_name,
    pod_from_template,
    scaled_value,
)

TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
DAEMON_TOLERATIONS: tuple[Mapping[str, str], ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
"""What every DaemonSet pod tolerates, so node problems neither evict nor block it."""
HOST_NETWORK_TOLERATION: Mapping[str, str] = {
    "key": "node.kubernetes.io/network-unavailable",
    "operator": "Exists",
    "effect": "NoSchedule",
}

_ENDED = ("Failed", "Succeeded")

Fits = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]
"""``fits(pod_spec, node)``: may a pod with this spec run on this Node object?"""

__all__ = [
    "DAEMON_TOLERATIONS",
    "HOST_NETWORK_TOLERATION",
    "TEMPLATE_GENERATION_ANNOTATION",
    "TEMPLATE_GENERATION_LABEL",
    "DaemonSetPlan",
    "Fits",
    "add_daemon_tolerations",
    "daemon_pod",
    "daemonset_plan",
    "daemonset_status",
    "default_fits",
    "node_affinity_matches",
    "node_should_run",
    "untolerated_taint",
]


# --- nodes: selectors, affinity, taints -----------------------------------------------------------


def _node_name(node: Mapping[str, Any]) -> str:
    return object_name(node)


_NODE_SELECTOR_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
    "Gt": Operator.GREATER_THAN,
    "Lt": Operator.LESS_THAN,
}


def _requirement_matches(expr: Mapping[str, Any], against: Mapping[str, str]) -> bool:
    """One NodeSelectorRequirement; an unparsable one matches nothing, as in Kubernetes."""
    operator = _NODE_SELECTOR_OPERATORS.get(str(expr.get("operator")))
    if operator is None:
        return False
    try:
        requirement = Requirement.build(
            str(expr.get("key")), operator, [str(v) for v in expr.get("values") or []]
        )
    except SelectorError:
        return False
    return requirement.matches(against)


def _term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """A NodeSelectorTerm: every expression on labels and fields; an empty term matches nothing."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    labels = (node.get("metadata") or {}).get("labels") or {}
    node_fields = {"metadata.name": _node_name(node)}  # the only field Kubernetes supports
    return (
        bool(expressions or fields)
        and all(_requirement_matches(e, labels) for e in expressions)
        and all(_requirement_matches(f, node_fields) for f in fields)
    )


def node_affinity_matches(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """GetRequiredNodeAffinity(pod).Match(node): ``nodeSelector`` and any required term."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required is None:
        return True
    return any(_term_matches(term or {}, node) for term in required.get("nodeSelectorTerms") or [])


def _tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Toleration.ToleratesTaint: an empty key or effect matches any; Exists ignores the value."""
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    if toleration.get("key") and toleration.get("key") != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taint(
    node: Mapping[str, Any], tolerations: Sequence[Mapping[str, Any]], effects: Iterable[str]
) -> Mapping[str, Any] | None:
    """The first of the node's taints with one of ``effects`` that no toleration tolerates."""
    wanted = set(effects)
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in wanted and not any(_tolerates(t, taint) for t in tolerations):
            return dict(taint)
    return None


def default_fits(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """The DaemonSet controller's predicate: node name, node selector and affinity, taints."""
    name = pod_spec.get("nodeName") or ""
    if name and name != _node_name(node):
        return False
    if not node_affinity_matches(pod_spec, node):
        return False
    return untolerated_taint(node, pod_spec.get("tolerations") or [], ("NoSchedule", "NoExecute")) is None


def add_daemon_tolerations(spec: Obj) -> None:
    """AddOrUpdateDaemonPodTolerations: add each of DAEMON_TOLERATIONS (and, for host-network
    pods, HOST_NETWORK_TOLERATION) unless one with the same key, operator, value and effect is
    there, in which case it replaces that one."""
    wanted = [*DAEMON_TOLERATIONS, *([HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else [])]
    tolerations: list[Any] = list(spec.get("tolerations") or [])

    def same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        return all(a.get(k) == b.get(k) for k in ("key", "operator", "value", "effect"))

    for toleration in wanted:
        index = next((i for i, t in enumerate(tolerations) if same(t, toleration)), None)
        if index is None:
            tolerations.append(dict(toleration))
        else:
            tolerations[index] = dict(toleration)
    spec["tolerations"] = tolerations


# --- the DaemonSet --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _DaemonSet:
    owner: OwnerInfo
    generation: int
    template: Mapping[str, Any] = field(hash=False)
    selector: Mapping[str, Any] | None = field(hash=False)
    hash: str
    template_generation: str | None
    min_ready_seconds: int
    rolling: bool
    max_surge: Any
    max_unavailable: Any

    @classmethod
    def from_object(cls, ds: Mapping[str, Any]) -> _DaemonSet:
        meta = ds.get("metadata") or {}
        spec = ds.get("spec") or {}
        strategy = spec.get("updateStrategy") or {}
        ru = strategy.get("rollingUpdate") or {}
        template = spec.get("template") or {}
        return cls(
            owner=OwnerInfo.from_object(ds, "DaemonSet"),
            generation=int(meta.get("generation") or 0),
            template=template,
            selector=spec.get("selector"),
            hash=compute_hash(template, (ds.get("status") or {}).get("collisionCount")),
            template_generation=(meta.get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION),
            min_ready_seconds=int(spec.get("minReadySeconds") or 0),
            rolling=(strategy.get("type") or "RollingUpdate") == "RollingUpdate",
            max_surge=ru.get("maxSurge"),
            max_unavailable=ru.get("maxUnavailable", 1),
        )

    def updated(self, pod: PodInfo) -> bool:
        """IsPodUpdated: the pod carries the template's hash (or its template generation)."""
        if pod.labels.get(CONTROLLER_REVISION_HASH_LABEL) == self.hash:
            return True
        return self.template_generation is not None and pod.labels.get(TEMPLATE_GENERATION_LABEL) == str(
            self.template_generation
        )

    def surge_and_unavailable(self, desired: int) -> tuple[int, int]:
        """SurgeCount and UnavailableCount, both rounded up; neither allowed means one unavailable."""
        if not self.rolling:
            return 0, 0
        path = "spec.updateStrategy.rollingUpdate"
        surge = scaled_value(self.max_surge, desired, True, f"{path}.maxSurge")
        unavailable = scaled_value(self.max_unavailable, desired, True, f"{path}.maxUnavailable")
        return surge, 1 if desired > 0 and surge == 0 and unavailable == 0 else unavailable


def node_should_run(
    ds: Mapping[str, Any], node: Mapping[str, Any], fits: Fits | None = None
) -> tuple[bool, bool]:
    """NodeShouldRunDaemonPod: (should a daemon pod start here, may a running one stay)."""
    spec = copy.deepcopy(dict(((ds.get("spec") or {}).get("template") or {}).get("spec") or {}))
    wanted_node = spec.get("nodeName") or ""
    if wanted_node and wanted_node != _node_name(node):
        return False, False
    spec["nodeName"] = _node_name(node)
    add_daemon_tolerations(spec)
    if (fits or default_fits)(spec, node):
        return True, True
    if not node_affinity_matches(spec, node):
        return False, False
    return False, untolerated_taint(node, spec["tolerations"], ("NoExecute",)) is None


def daemon_pod(ds: Mapping[str, Any], node_name: str) -> Obj:
    """The pod the DaemonSet creates for ``node_name``: the template with the daemon
    tolerations, the hash label and node affinity ``metadata.name In [node_name]``."""
    return _daemon_pod(_DaemonSet.from_object(ds), node_name)


def _daemon_pod(info: _DaemonSet, node_name: str) -> Obj:
    template = copy.deepcopy(dict(info.template))
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    if info.template_generation is not None:
        labels[TEMPLATE_GENERATION_LABEL] = str(info.template_generation)
    labels[CONTROLLER_REVISION_HASH_LABEL] = info.hash
    pod = pod_from_template(template, info.owner)
    add_daemon_tolerations(pod["spec"])
    # Kubernetes replaces the required terms: the DaemonSet already checked them against the node.
    pin = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
    affinity = pod["spec"].setdefault("affinity", {}).setdefault("nodeAffinity", {})
    affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [pin]}
    return pod


# --- the plan -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DaemonSetPlan:
    """One sync's worth of work for a DaemonSet."""

    create: tuple[Obj, ...] = ()
    """Pod bodies to POST, one per node (see ``nodes_to_create``)."""
    delete: tuple[str, ...] = ()
    """Names of pods to delete."""
    adopt: tuple[str, ...] = ()
    release: tuple[str, ...] = ()
    status: Obj = field(default_factory=dict)
    hash: str = ""
    """The template's hash: the ``controller-revision-hash`` of current pods."""
    requeue_after: float | None = None
    """Seconds until a ready pod turns available (minReadySeconds): sync again then."""

    @property
    def nodes_to_create(self) -> tuple[str, ...]:
        return tuple(PodInfo.from_object(pod).target_node for pod in self.create)

    @property
    def empty(self) -> bool:
        return not (self.create or self.delete or self.adopt or self.release)


class _State:
    """The DaemonSet, its claimed pods by node, and each node's verdict."""

    def __init__(
        self,
        ds: Mapping[str, Any],
        nodes: Iterable[Mapping[str, Any]],
        pods: Iterable[Mapping[str, Any]],
        fits: Fits | None,
        now: datetime,
    ) -> None:
        self.raw = ds
        self.ds = _DaemonSet.from_object(ds)
        self.now = now
        self.nodes = {_node_name(n): n for n in nodes}
        self.verdicts = {name: node_should_run(ds, node, fits) for name, node in self.nodes.items()}
        namespace = self.ds.owner.namespace
        local = [(p, info) for p in pods if (info := PodInfo.from_object(p)).namespace == namespace]
        selector = selector_from_label_selector(self.ds.selector)
        self.claim = claim(self.ds.owner, [p for p, _ in local], selector)
        owned = set(self.claim.owned)
        self.by_node: dict[str, list[PodInfo]] = {}
        for _, pod in local:
            # Pods that ended and are going away no longer count anywhere.
            if pod.name in owned and pod.target_node and not (pod.deleting and pod.phase in _ENDED):
                self.by_node.setdefault(pod.target_node, []).append(pod)
        for pods_on_node in self.by_node.values():
            pods_on_node.sort(key=_scheduled_then_oldest)

    def available(self, pod: PodInfo) -> bool:
        return pod.available(self.ds.min_ready_seconds, self.now)

    def desired(self) -> int:
        return sum(run for run, _ in self.verdicts.values())

    def manage(self) -> tuple[list[str], list[str]]:
        """podsShouldBeOnNode over every node, plus unscheduled pods aimed at vanished nodes."""
        surge_allowed = self.ds.surge_and_unavailable(1)[0] > 0
        create: list[str] = []
        delete: list[str] = []
        for name, (should_run, may_stay) in self.verdicts.items():
            pods = self.by_node.get(name)
            if should_run and not pods:
                create.append(name)
            elif may_stay and pods:
                running = [p for p in pods if not p.deleting and p.phase not in _ENDED]
                delete += [p.name for p in pods if not p.deleting and p.phase in _ENDED]
                if not surge_allowed:
                    delete += [p.name for p in running[1:]]  # keep the oldest
                elif not running and should_run:
                    create.append(name)
                elif len(running) > 1:
                    delete += self._surge_extras(running)
            elif not may_stay and pods:
                delete += [p.name for p in pods if not p.deleting]
        for name, pods in self.by_node.items():
            if name not in self.nodes:
                delete += [p.name for p in pods if not p.node_name]
        return create, delete

    def _surge_extras(self, running: list[PodInfo]) -> list[str]:
        """With surge, keep the oldest new and the oldest old pod while the new one is not yet
        available and the old one still ready; everything else goes."""
        oldest_new = next((p for p in running if self.ds.updated(p)), None)
        oldest_old = next((p for p in running if not self.ds.updated(p)), None)
        extras = [p.name for p in running if p is not oldest_new and p is not oldest_old]
        if oldest_new is None or oldest_old is None:
            return extras
        if not oldest_old.ready or self.available(oldest_new):
            extras.append(oldest_old.name)
        return extras

    def rolling_update(self) -> tuple[list[str], list[str]]:
        """One rolling-update step: (nodes to start a new pod on, old pods to delete)."""
        desired = self.desired()
        surge, max_unavailable = self.ds.surge_and_unavailable(desired)
        wanted = {name for name, (run, _) in self.verdicts.items() if run}
        candidates: list[str] = []
        allowed: list[str] = []
        delete: list[str] = []
        busy = 0  # nodes counted against the budget: unavailable without surge, surging with it
        for name in sorted(wanted | set(self.by_node)):
            found = self._new_and_old(self.by_node.get(name, []))
            if found is None:  # several pods: the manage step sorts this node out first
                busy += 1
                continue
            new, old = found
            if surge == 0:
                if (new is None) == (old is None) or (new is not None and not self.available(new)):
                    busy += 1
                elif old is not None and not self.available(old):
                    allowed.append(old.name)
                    busy += 1
                elif old is not None and busy < max_unavailable:
                    candidates.append(old.name)
                continue
            if name in self.verdicts and not self.verdicts[name][0]:
                delete += [old.name] if old else []
            elif old is not None and new is None:
                if not self.available(old):
                    allowed.append(name)
                elif busy < surge:
                    candidates.append(name)
            elif old is not None and new is not None:
                if self.available(new):
                    delete.append(old.name)
                else:
                    busy += 1
        budget = max(0, (max_unavailable if surge == 0 else surge) - busy)
        chosen = allowed + candidates[:budget]
        return ([], chosen) if surge == 0 else (chosen, delete)

    def _new_and_old(self, pods: list[PodInfo]) -> tuple[PodInfo | None, PodInfo | None] | None:
        """findUpdatedPodsOnNode: the node's current and old pod; None when either is doubled."""
        new: PodInfo | None = None
        old: PodInfo | None = None
        for pod in pods:
            if pod.deleting:
                continue
            if self.ds.updated(pod):
                if new is not None:
                    return None
                new = pod
            else:
                if old is not None:
                    return None
                old = pod
        return new, old

    def status(self) -> Obj:
        """updateDaemonSetStatus: per node that should run one, its oldest pod decides."""
        counts = dict.fromkeys(
            ("desired", "current", "misscheduled", "ready", "available", "updated"),
            0,
        )
        for name, (should_run, _) in self.verdicts.items():
            pods = self.by_node.get(name)
            if not should_run:
                counts["misscheduled"] += bool(pods)
                continue
            counts["desired"] += 1
            if not pods:
                continue
            counts["current"] += 1
            pod = pods[0]
            counts["ready"] += pod.ready
            counts["available"] += pod.ready and self.available(pod)
            counts["updated"] += self.ds.updated(pod)
        status: Obj = dict(self.raw.get("status") or {})
        status.update(
            desiredNumberScheduled=counts["desired"],
            currentNumberScheduled=counts["current"],
            numberMisscheduled=counts["misscheduled"],
            numberReady=counts["ready"],
            numberAvailable=counts["available"],
            updatedNumberScheduled=counts["updated"],
            numberUnavailable=counts["desired"] - counts["available"],
            observedGeneration=self.ds.generation,
        )
        return status

    def requeue_after(self) -> float | None:
        min_ready = self.ds.min_ready_seconds
        if min_ready <= 0:
            return None
        waits = [
            (at - self.now).total_seconds()
            for pods in self.by_node.values()
            for p in pods
            if not self.available(p) and (at := p.available_at(min_ready)) is not None
        ]
        return max(0.0, min(waits)) if waits else None


def _scheduled_then_oldest(pod: PodInfo) -> tuple[bool, datetime, str]:
    """podByCreationTimestampAndPhase: scheduled pods first, then the oldest, then by name."""
    return (not pod.node_name, pod.created or ZERO_TIME, pod.name)


def daemonset_plan(
    ds: Mapping[str, Any],
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    *,
    fits: Fits | None = None,
    now: datetime | None = None,
) -> DaemonSetPlan:
    """One sync of a DaemonSet over the cluster's nodes and its namespace's pods.

    A DaemonSet being deleted gets an empty plan with its status unchanged. The caller backs
    off from nodes whose pods keep failing (Kubernetes deletes a failed pod at most once per
    backoff period) and paces creations.
    """
    state = _State(ds, nodes, pods, fits, now or clock_now())
    if (ds.get("metadata") or {}).get("deletionTimestamp") is not None:
        return DaemonSetPlan(status=dict(ds.get("status") or {}), hash=state.ds.hash)
    create, delete = state.manage()
    if not create and not delete and state.ds.rolling:
        create, delete = state.rolling_update()
    return DaemonSetPlan(
        create=tuple(_daemon_pod(state.ds, name) for name in create),
        delete=tuple(dict.fromkeys(delete)),
        adopt=state.claim.adopt,
        release=state.claim.release,
        status=state.status(),
        hash=state.ds.hash,
        requeue_after=state.requeue_after(),
    )


def daemonset_status(
    ds: Mapping[str, Any],
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    *,
    fits: Fits | None = None,
    now: datetime | None = None,
) -> Obj:
    """The DaemonSet's status for these nodes and pods (what ``daemonset_plan`` reports)."""
    return _State(ds, nodes, pods, fits, now or clock_now()).status()
