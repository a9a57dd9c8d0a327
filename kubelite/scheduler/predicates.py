"""Which nodes can run a pod: kube-scheduler's filter plugins, as pure functions.

Nodes and pods arrive as frozen ``NodeInfo`` / ``PodSpecInfo`` (built once from the API
objects); ``filter_nodes`` runs the filters of kube-scheduler's default profile, in its
order, and stops at a node's first failure, so each rejected node has the one reason
kube-scheduler would give:

    plugin              reason (verbatim)                                          preemption may help
    NodeUnschedulable   node(s) were unschedulable                                 no
    NodeName            node(s) didn't match the requested node name               no
    TaintToleration     node(s) had untolerated taint(s)                           no
    NodeAffinity        node(s) didn't match Pod's node affinity/selector          no
    NodePorts           node(s) didn't have free ports for the requested pod ports yes
    NodeResourcesFit    Too many pods                                              yes

NodeAffinity also has kube-scheduler's PreFilter: ``matchFields`` on ``metadata.name``
narrows the candidates (the others are reported as "didn't satisfy plugin(s) [NodeAffinity]"),
and terms whose names cannot intersect fail the pod outright ("pod affinity terms conflict").

``fit_error_message`` turns the reasons into the FailedScheduling text of kube-scheduler 1.34+
(taint keys and values are no longer printed: kubernetes/kubernetes#134740).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubelite.api.selectors import Operator, Requirement, SelectorError

Obj = Mapping[str, Any]

DEFAULT_MAX_PODS = 110
"""The kubelet's default ``--max-pods``, used when a node does not report ``allocatable.pods``."""

NO_SCHEDULE = "NoSchedule"
PREFER_NO_SCHEDULE = "PreferNoSchedule"
NO_EXECUTE = "NoExecute"

TAINT_CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NODE_NAME = "node(s) didn't match the requested node name"
REASON_TAINTS = "node(s) had untolerated taint(s)"
REASON_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_NODE_AFFINITY_PREFILTER = "node(s) didn't satisfy plugin(s) [NodeAffinity]"
REASON_AFFINITY_CONFLICT = "pod affinity terms conflict"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_TOO_MANY_PODS = "Too many pods"

RESOLVABLE_REASONS = frozenset({REASON_PORTS, REASON_TOO_MANY_PODS})
"""Reasons kube-scheduler reports as Unschedulable (evicting pods could help), not ...AndUnresolvable."""

NO_NODES_MESSAGE = "no nodes available to schedule pods"
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_PREEMPTION_VICTIMS = "No preemption victims found for incoming pod"
PREEMPTION_NEVER = "not eligible due to preemptionPolicy=Never."

_WILDCARD_IP = "0.0.0.0"
_TERMINAL_PHASES = ("Succeeded", "Failed")


# --- small frozen types ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    effect: str
    value: str = ""

    @classmethod
    def from_object(cls, obj: Obj) -> Taint:
        return cls(str(obj.get("key") or ""), str(obj.get("effect") or ""), str(obj.get("value") or ""))

    def __str__(self) -> str:
        """kubectl's spelling: ``key=value:Effect`` (``key:Effect`` without a value)."""
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    @classmethod
    def from_object(cls, obj: Obj) -> Toleration:
        return cls(
            str(obj.get("key") or ""),
            str(obj.get("operator") or "Equal"),
            str(obj.get("value") or ""),
            str(obj.get("effect") or ""),
        )

    def tolerates(self, taint: Taint) -> bool:
        """core/v1 Toleration.ToleratesTaint: an empty effect or key matches any; Exists ignores values."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return self.operator == "Equal" and self.value == taint.value


def tolerated(tolerations: Iterable[Toleration], taint: Taint) -> bool:
    return any(t.tolerates(taint) for t in tolerations)


@dataclass(frozen=True, slots=True)
class HostPort:
    """A container port with a ``hostPort``; an empty hostIP means every address (0.0.0.0)."""

    port: int
    protocol: str = "TCP"
    host_ip: str = _WILDCARD_IP

    def conflicts_with(self, other: HostPort) -> bool:
        """kube-scheduler's HostPortInfo.CheckConflict: same port and protocol, and the addresses overlap.

        Only "0.0.0.0" (or empty) is a wildcard; "::" is an address like any other, as upstream.
        """
        if self.port != other.port or self.protocol != other.protocol:
            return False
        return self.host_ip == other.host_ip or _WILDCARD_IP in (self.host_ip, other.host_ip)


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """A ``matchFields`` entry. Only In / NotIn with exactly one value are valid (upstream)."""

    key: str
    operator: str
    values: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return self.operator in ("In", "NotIn") and len(self.values) == 1

    def matches(self, fields: Mapping[str, str]) -> bool:
        equal = fields.get(self.key, "") == self.values[0]
        return equal if self.operator == "In" else not equal


_NODE_SELECTOR_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
    "Gt": Operator.GREATER_THAN,
    "Lt": Operator.LESS_THAN,
}


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    """One ``nodeSelectorTerms`` entry: its expressions and fields are ANDed.

    A term with neither matches no node; a term that cannot be parsed (unknown operator,
    bad key, Gt without an integer...) matches no node either and keeps the reason in ``error``.
    """

    expressions: tuple[Requirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()
    error: str = ""

    @classmethod
    def from_object(cls, obj: Obj | None) -> NodeSelectorTerm:
        obj = obj or {}
        expressions: list[Requirement] = []
        errors: list[str] = []
        for expr in _list(obj.get("matchExpressions")):
            op = _NODE_SELECTOR_OPERATORS.get(str(expr.get("operator")))
            if op is None:
                errors.append(f"unsupported node selector operator {expr.get('operator')!r}")
                continue
            try:
                values = [str(v) for v in expr.get("values") or []]
                expressions.append(Requirement.build(str(expr.get("key") or ""), op, values))
            except SelectorError as e:
                errors.append(str(e))
        fields = tuple(
            FieldRequirement(
                str(f.get("key") or ""),
                str(f.get("operator") or ""),
                tuple(str(v) for v in f.get("values") or []),
            )
            for f in _list(obj.get("matchFields"))
        )
        errors.extend(f"invalid matchFields requirement on {f.key!r}" for f in fields if not f.valid)
        return cls(tuple(expressions), fields, "; ".join(errors))

    @property
    def empty(self) -> bool:
        return not self.expressions and not self.fields and not self.error

    def matches(self, node: NodeInfo) -> bool:
        if self.empty or self.error:
            return False
        node_fields = {"metadata.name": node.name}
        return all(r.matches(node.labels) for r in self.expressions) and all(
            f.matches(node_fields) for f in self.fields
        )

    def pinned_names(self) -> frozenset[str] | None:
        """Node names this term is restricted to by ``metadata.name In`` fields, or None if any."""
        names: frozenset[str] | None = None
        for f in self.fields:
            if f.key == "metadata.name" and f.operator == "In":
                names = frozenset(f.values) if names is None else names & frozenset(f.values)
        return names


@dataclass(frozen=True, slots=True)
class PreferredTerm:
    weight: int
    term: NodeSelectorTerm


# --- nodes and pods, as the scheduler sees them ---------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What scheduling needs of a Node. ``taints`` are the declared ones; see ``effective_taints``."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready_status: str = "True"
    """The Ready condition's status: "True", "False", "Unknown", or "" when the node reports none."""
    allocatable_pods: int = DEFAULT_MAX_PODS
    addresses: tuple[tuple[str, str], ...] = ()
    """(type, address) pairs as in ``status.addresses``, e.g. ("InternalIP", "10.0.0.2")."""

    @classmethod
    def from_object(cls, node: Obj) -> NodeInfo:
        meta, spec, status = _map(node.get("metadata")), _map(node.get("spec")), _map(node.get("status"))
        ready = ""
        for cond in _list(status.get("conditions")):
            if cond.get("type") == "Ready":
                ready = str(cond.get("status") or "Unknown")
        pods = _map(status.get("allocatable")).get("pods")
        return cls(
            name=str(meta.get("name") or ""),
            labels={str(k): str(v) for k, v in _map(meta.get("labels")).items()},
            taints=tuple(Taint.from_object(t) for t in _list(spec.get("taints"))),
            unschedulable=bool(spec.get("unschedulable")),
            ready_status=ready,
            allocatable_pods=_pod_count(pods),
            addresses=tuple(
                (str(a.get("type") or ""), str(a.get("address") or ""))
                for a in _list(status.get("addresses"))
            ),
        )

    @property
    def ready(self) -> bool:
        return self.ready_status == "True"

    @property
    def effective_taints(self) -> tuple[Taint, ...]:
        """The declared taints plus the one the node lifecycle controller adds for the Ready condition.

        Kubernetes taints a node ``not-ready:NoSchedule`` when Ready is False (and the kubelet
        registers nodes with it until they report Ready), ``unreachable:NoSchedule`` when Ready is
        Unknown. kubelite computes that taint here, so a node is never scheduled to before it is Ready.
        """
        if self.ready:
            return self.taints
        key = TAINT_UNREACHABLE if self.ready_status == "Unknown" else TAINT_NOT_READY
        condition = Taint(key, NO_SCHEDULE)
        if any(t.key == key and t.effect == NO_SCHEDULE for t in self.taints):
            return self.taints
        return (*self.taints, condition)

    def address(self, kind: str = "InternalIP") -> str | None:
        return next((a for t, a in self.addresses if t == kind), None)


@dataclass(frozen=True, slots=True)
class PodSpecInfo:
    """What scheduling needs of a Pod."""

    name: str
    namespace: str = "default"
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    node_name: str = ""
    node_selector: Mapping[str, str] = field(default_factory=dict, hash=False)
    required_terms: tuple[NodeSelectorTerm, ...] | None = None
    """``requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`` (ORed); None when absent."""
    preferred_terms: tuple[PreferredTerm, ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    host_ports: tuple[HostPort, ...] = ()
    owner_uid: str = ""
    """The uid of the controller ownerReference (ReplicaSet, StatefulSet...), if any."""
    phase: str = ""
    preemption_policy: str = ""

    @classmethod
    def from_object(cls, pod: Obj) -> PodSpecInfo:
        meta, spec, status = _map(pod.get("metadata")), _map(pod.get("spec")), _map(pod.get("status"))
        node_affinity = _map(_map(spec.get("affinity")).get("nodeAffinity"))
        required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        owner = next((o for o in _list(meta.get("ownerReferences")) if o.get("controller")), None)
        return cls(
            name=str(meta.get("name") or ""),
            namespace=str(meta.get("namespace") or "default"),
            uid=str(meta.get("uid") or ""),
            labels={str(k): str(v) for k, v in _map(meta.get("labels")).items()},
            node_name=str(spec.get("nodeName") or ""),
            node_selector={str(k): str(v) for k, v in _map(spec.get("nodeSelector")).items()},
            required_terms=None
            if required is None
            else tuple(
                NodeSelectorTerm.from_object(t) for t in _list(_map(required).get("nodeSelectorTerms"))
            ),
            preferred_terms=tuple(
                PreferredTerm(
                    int(p.get("weight") or 0), NodeSelectorTerm.from_object(_map(p.get("preference")))
                )
                for p in _list(node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution"))
            ),
            tolerations=tuple(Toleration.from_object(t) for t in _list(spec.get("tolerations"))),
            host_ports=tuple(_host_ports(spec)),
            owner_uid=str(owner.get("uid") or "") if owner else "",
            phase=str(status.get("phase") or ""),
            preemption_policy=str(spec.get("preemptionPolicy") or ""),
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def terminal(self) -> bool:
        return self.phase in _TERMINAL_PHASES


def pods_by_node(pods: Iterable[PodSpecInfo]) -> dict[str, list[PodSpecInfo]]:
    """Group bound, non-terminal pods by ``spec.nodeName``: the ``pods_on_nodes`` the filters take."""
    grouped: dict[str, list[PodSpecInfo]] = {}
    for pod in pods:
        if pod.node_name and not pod.terminal:
            grouped.setdefault(pod.node_name, []).append(pod)
    return grouped


def pods_on(
    node: str, pod: PodSpecInfo, pods_on_nodes: Mapping[str, Sequence[PodSpecInfo]]
) -> list[PodSpecInfo]:
    """The pods that occupy ``node``: terminal pods and the pod being scheduled do not."""
    return [p for p in pods_on_nodes.get(node, ()) if not p.terminal and not (pod.uid and p.uid == pod.uid)]


# --- the filters -----------------------------------------------------------------------------


def node_unschedulable(pod: PodSpecInfo, node: NodeInfo) -> bool:
    """NodeUnschedulable: a cordoned node only takes pods tolerating ``node.kubernetes.io/unschedulable``."""
    return not node.unschedulable or tolerated(pod.tolerations, Taint(TAINT_UNSCHEDULABLE, NO_SCHEDULE))


def node_name_matches(pod: PodSpecInfo, node: NodeInfo) -> bool:
    """NodeName: a pod naming a node fits only there."""
    return not pod.node_name or pod.node_name == node.name


def untolerated_taint(pod: PodSpecInfo, node: NodeInfo) -> Taint | None:
    """TaintToleration: the first NoSchedule / NoExecute taint the pod does not tolerate, if any."""
    for taint in node.effective_taints:
        if taint.effect in (NO_SCHEDULE, NO_EXECUTE) and not tolerated(pod.tolerations, taint):
            return taint
    return None


def node_affinity_matches(pod: PodSpecInfo, node: NodeInfo) -> bool:
    """NodeAffinity: every nodeSelector pair, and (if present) at least one required term."""
    if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
        return False
    if pod.required_terms is None:
        return True
    return any(term.matches(node) for term in pod.required_terms)


def affinity_node_names(pod: PodSpecInfo) -> frozenset[str] | None:
    """NodeAffinity's PreFilter: the node names the required terms allow, or None for "any".

    Terms are ORed, so one term without a ``metadata.name In`` field allows every node.
    """
    if not pod.required_terms:
        return None
    names: set[str] = set()
    for term in pod.required_terms:
        pinned = term.pinned_names()
        if pinned is None:
            return None
        names |= pinned
    return frozenset(names)


def free_ports(pod: PodSpecInfo, occupants: Iterable[PodSpecInfo]) -> bool:
    """NodePorts: no wanted host port overlaps one the node's pods already use."""
    if not pod.host_ports:
        return True
    used = [hp for p in occupants for hp in p.host_ports]
    return not any(want.conflicts_with(have) for want in pod.host_ports for have in used)


def room_for_pod(node: NodeInfo, occupants: Sequence[PodSpecInfo]) -> bool:
    """NodeResourcesFit, pod count only: one more pod must stay within ``allocatable.pods``."""
    return len(occupants) + 1 <= node.allocatable_pods


def node_reasons(
    pod: PodSpecInfo, node: NodeInfo, pods_on_nodes: Mapping[str, Sequence[PodSpecInfo]]
) -> list[str]:
    """Run the filters on one node in kube-scheduler's order; [] if the pod fits, else the first reason."""
    if not node_unschedulable(pod, node):
        return [REASON_UNSCHEDULABLE]
    if not node_name_matches(pod, node):
        return [REASON_NODE_NAME]
    if untolerated_taint(pod, node) is not None:
        return [REASON_TAINTS]
    if not node_affinity_matches(pod, node):
        return [REASON_NODE_AFFINITY]
    occupants = pods_on(node.name, pod, pods_on_nodes)
    if not free_ports(pod, occupants):
        return [REASON_PORTS]
    if not room_for_pod(node, occupants):
        return [REASON_TOO_MANY_PODS]
    return []


def filter_nodes(
    pod: PodSpecInfo, nodes: Sequence[NodeInfo], pods_on_nodes: Mapping[str, Sequence[PodSpecInfo]]
) -> tuple[list[str], dict[str, list[str]]]:
    """The nodes the pod fits on (in the given order), and for every other node why not.

    ``pods_on_nodes`` maps node names to the pods bound there (``pods_by_node`` builds it);
    terminal pods and the pod itself (same uid) are ignored.
    """
    allowed = affinity_node_names(pod)
    if allowed is not None and not allowed:
        return [], {n.name: [REASON_AFFINITY_CONFLICT] for n in nodes}
    feasible: list[str] = []
    reasons: dict[str, list[str]] = {}
    for node in nodes:
        why = (
            [REASON_NODE_AFFINITY_PREFILTER]
            if allowed is not None and node.name not in allowed
            else node_reasons(pod, node, pods_on_nodes)
        )
        if why:
            reasons[node.name] = why
        else:
            feasible.append(node.name)
    return feasible, reasons


# --- the FailedScheduling message ------------------------------------------------------------


def _histogram(counts: Counter[str]) -> str:
    # Go sorts the "<count> <reason>" strings themselves, so "10 x" sorts before "2 y".
    return ", ".join(sorted(f"{n} {reason}" for reason, n in counts.items()))


def fit_error_message(pod: PodSpecInfo, num_nodes: int, reasons: Mapping[str, Sequence[str]]) -> str:
    """kube-scheduler's FitError text for a pod no node accepted, preemption part included.

    ``0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's
    node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for
    scheduling.`` kubelite never preempts, so nodes where eviction could help are reported as
    kube-scheduler reports them when no pod has a lower priority: "No preemption victims found".
    """
    if num_nodes == 0:
        return NO_NODES_MESSAGE
    prefilter = any(REASON_AFFINITY_CONFLICT in r for r in reasons.values())
    if prefilter:
        message = f"0/{num_nodes} nodes are available: {REASON_AFFINITY_CONFLICT}."
    else:
        counts = Counter(reason for why in reasons.values() for reason in why)
        message = f"0/{num_nodes} nodes are available: {_histogram(counts)}."
    if pod.preemption_policy == "Never":
        return f"{message} preemption: {PREEMPTION_NEVER}"
    preemption: Counter[str] = Counter()
    for why in reasons.values():
        helps = not prefilter and bool(why) and all(r in RESOLVABLE_REASONS for r in why)
        preemption[NO_PREEMPTION_VICTIMS if helps else PREEMPTION_NOT_HELPFUL] += 1
    return f"{message} preemption: 0/{num_nodes} nodes are available: {_histogram(preemption)}."


# --- reading API objects ---------------------------------------------------------------------


def _map(value: Any) -> Obj:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _pod_count(value: Any) -> int:
    """``allocatable.pods`` is a plain integer quantity in practice ("110"); else the default applies."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value or "").strip()
    return int(text) if text.isdigit() else DEFAULT_MAX_PODS


def _host_ports(spec: Obj) -> Iterable[HostPort]:
    # Only app containers count, as in kube-scheduler's NodePorts plugin.
    for container in _list(spec.get("containers")):
        for port in _list(container.get("ports")):
            host_port = port.get("hostPort")
            if isinstance(host_port, int) and host_port > 0:
                yield HostPort(
                    host_port, str(port.get("protocol") or "TCP"), str(port.get("hostIP") or _WILDCARD_IP)
                )
