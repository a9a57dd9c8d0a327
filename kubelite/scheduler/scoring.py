"""Which feasible node a pod goes to: kube-scheduler's score plugins, simplified, and the final pick.

Each score is normalised to 0..100 the way kube-scheduler's ``DefaultNormalizeScore`` does
(integer arithmetic, the best raw value becomes 100) and weighted as in the default profile:

    weight  plugin it stands for           what it rewards
    3       TaintToleration                fewer PreferNoSchedule taints the pod does not tolerate
    2       PodTopologySpread (defaults)   fewer pods of the same workload already on the node
    2       NodeAffinity                   the sum of the weights of matching preferred terms
    1       NodeResourcesFit (pod count)   more free pod slots left after placing the pod

"The same workload" is: same namespace and the same controller ownerReference uid (the
replicas of a ReplicaSet, StatefulSet, DaemonSet, Job); for a pod without a controller, the
pods in its namespace with exactly its labels. Ties go to the node name that sorts first, or,
given a seeded ``random.Random``, to a random one of the tied nodes (kube-scheduler picks
uniformly among the best).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kubelite.scheduler.predicates import (
    PREFER_NO_SCHEDULE,
    NodeInfo,
    PodSpecInfo,
    filter_nodes,
    fit_error_message,
    pods_on,
    tolerated,
)

MAX_NODE_SCORE = 100
TAINT_WEIGHT = 3
SPREAD_WEIGHT = 2
AFFINITY_WEIGHT = 2
LEAST_PODS_WEIGHT = 1


def normalize(raw: Mapping[str, int], *, reverse: bool = False) -> dict[str, int]:
    """kube-scheduler's DefaultNormalizeScore: scale so the highest raw value is 100 (0 if reversed)."""
    highest = max(raw.values(), default=0)
    if highest == 0:
        return {n: MAX_NODE_SCORE if reverse else 0 for n in raw}
    scaled = {n: MAX_NODE_SCORE * v // highest for n, v in raw.items()}
    return {n: MAX_NODE_SCORE - v for n, v in scaled.items()} if reverse else scaled


def same_workload(pod: PodSpecInfo, other: PodSpecInfo) -> bool:
    """Whether ``other`` is a replica of the same workload as ``pod`` (see the module docstring)."""
    if pod.namespace != other.namespace:
        return False
    if pod.owner_uid:
        return other.owner_uid == pod.owner_uid
    return bool(pod.labels) and dict(other.labels) == dict(pod.labels)


def intolerable_prefer_no_schedule(pod: PodSpecInfo, node: NodeInfo) -> int:
    # Only tolerations with no effect or PreferNoSchedule can tolerate these taints.
    tolerations = [t for t in pod.tolerations if t.effect in ("", PREFER_NO_SCHEDULE)]
    return sum(
        1 for t in node.effective_taints if t.effect == PREFER_NO_SCHEDULE and not tolerated(tolerations, t)
    )


def preferred_affinity(pod: PodSpecInfo, node: NodeInfo) -> int:
    return sum(p.weight for p in pod.preferred_terms if p.weight and p.term.matches(node))


def least_pods(node: NodeInfo, occupants: int) -> int:
    """NodeResourcesFit's LeastAllocated formula with pods as the only resource."""
    if node.allocatable_pods <= 0:
        return 0
    free = max(node.allocatable_pods - (occupants + 1), 0)
    return free * MAX_NODE_SCORE // node.allocatable_pods


def score_nodes(
    pod: PodSpecInfo, feasible: Sequence[NodeInfo], pods_on_nodes: Mapping[str, Sequence[PodSpecInfo]]
) -> dict[str, int]:
    """The weighted total score of every feasible node (higher is better)."""
    occupants = {n.name: pods_on(n.name, pod, pods_on_nodes) for n in feasible}
    taints = normalize({n.name: intolerable_prefer_no_schedule(pod, n) for n in feasible}, reverse=True)
    spread = normalize(
        {n.name: sum(1 for p in occupants[n.name] if same_workload(pod, p)) for n in feasible}, reverse=True
    )
    affinity = normalize({n.name: preferred_affinity(pod, n) for n in feasible})
    return {
        n.name: TAINT_WEIGHT * taints[n.name]
        + SPREAD_WEIGHT * spread[n.name]
        + AFFINITY_WEIGHT * affinity[n.name]
        + LEAST_PODS_WEIGHT * least_pods(n, len(occupants[n.name]))
        for n in feasible
    }


@dataclass(frozen=True, slots=True)
class Decision:
    """Where the pod goes. ``node`` is None when it fits nowhere; ``message`` is then the
    FailedScheduling event text (and the PodScheduled=False condition's message), otherwise the
    Scheduled event text."""

    node: str | None
    message: str
    reasons: Mapping[str, Sequence[str]] = field(default_factory=dict, hash=False)
    scores: Mapping[str, int] = field(default_factory=dict, hash=False)


def pick(scores: Mapping[str, int], rng: random.Random | None = None) -> str:
    """The best-scoring node: the first by name among ties, or a random one of them given ``rng``."""
    best = max(scores.values())
    tied = sorted(n for n, s in scores.items() if s == best)
    return rng.choice(tied) if rng is not None else tied[0]


def schedule(
    pod: PodSpecInfo,
    nodes: Sequence[NodeInfo],
    pods_on_nodes: Mapping[str, Sequence[PodSpecInfo]],
    *,
    rng: random.Random | None = None,
) -> Decision:
    """Filter, score, pick. A single feasible node is taken without scoring, as kube-scheduler does."""
    feasible, reasons = filter_nodes(pod, nodes, pods_on_nodes)
    if not feasible:
        return Decision(None, fit_error_message(pod, len(nodes), reasons), reasons)
    if len(feasible) == 1:
        return Decision(feasible[0], scheduled_message(pod, feasible[0]), reasons)
    names = set(feasible)
    scores = score_nodes(pod, [n for n in nodes if n.name in names], pods_on_nodes)
    node = pick(scores, rng)
    return Decision(node, scheduled_message(pod, node), reasons, scores)


def scheduled_message(pod: PodSpecInfo, node: str) -> str:
    """The Scheduled event text: ``Successfully assigned default/web-0 to node-1``."""
    return f"Successfully assigned {pod.key} to {node}"
