"""Pod strategy: graceful deletion, as the kubelet contract needs it.

A pod that is bound to a node and still running is not removed at once: the API server sets
``deletionTimestamp`` (now + grace period) and the node agent stops the containers and then
deletes the pod with grace period 0. Unbound or finished pods go at once.
"""

from __future__ import annotations

from typing import Any

from kubelite.apiserver.registry.base import Strategy

Obj = dict[str, Any]


class PodStrategy(Strategy):
    def graceful_delete_seconds(self, obj: Obj, requested: int | None) -> int:
        spec = obj.get("spec") or {}
        phase = (obj.get("status") or {}).get("phase", "Pending")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(requested, 0)
        grace = spec.get("terminationGracePeriodSeconds", 30)
        return grace if isinstance(grace, int) and grace >= 0 else 30

    def prepare_for_create(self, obj: Obj) -> None:
        super().prepare_for_create(obj)
        status = obj.setdefault("status", {})
        status["phase"] = "Pending"
        status["qosClass"] = qos_class(obj.get("spec") or {})


def qos_class(spec: Obj) -> str:
    """Guaranteed when every container limits cpu and memory and requests equal limits;
    BestEffort when no container requests or limits anything; Burstable otherwise."""
    containers = [c for c in (spec.get("initContainers") or []) + (spec.get("containers") or []) if c]
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if limits or requests:
            any_set = True
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
