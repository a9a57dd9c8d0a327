"""A pod's status as the kubelet reports it, computed from what the runtime knows (pure).

    ContainerRecord (one per container the agent ran) ──container_status──► containerStatuses[i]
    pod + records + IPs ──pod_status──► {phase, conditions, hostIP(s), podIP(s), startTime,
                                          initContainerStatuses, containerStatuses, qosClass}

Contracts, following the kubelet (``kubelet_pods.go`` getPhase / generateAPIPodStatus and
``status/generate.go``):

* A container without a record is ``Waiting`` with reason ``ContainerCreating`` (or
  ``PodInitializing`` when the pod has init containers); it keeps ``restartCount`` and
  ``lastState`` from the pod's previous status.
* ``ready`` and ``started`` are only true for a running container. A regular (non-sidecar) init
  container is ready once it terminated with exit code 0.
* The phase is Pending / Running / Succeeded / Failed from the containers and ``restartPolicy``;
  a phase already Succeeded or Failed never changes; ``reason``/``message`` stay while the phase does.
* Conditions not owned by the kubelet (readiness gates, DisruptionTarget …) are kept; the kubelet's
  own come in its order: PodReadyToStartContainers, Initialized, Ready, ContainersReady,
  PodScheduled. Each keeps its ``lastTransitionTime`` while its status does not change.
* ``startTime``, ``qosClass`` and pod IPs already in the status are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from kubelite.agent.envvars import parse_quantity

__all__ = [
    "ContainerRecord",
    "container_status",
    "pod_phase",
    "pod_status",
    "qos_class",
    "terminated_reason",
]

Obj = dict[str, Any]
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """What the runtime knows about one container (its current run, and the previous one)."""

    name: str
    image: str
    container_id: str
    restart_count: int
    state: Literal["waiting", "running", "terminated"]
    reason: str = ""
    message: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    ready: bool = False
    started: bool | None = None
    last_state: ContainerRecord | None = None  # only its terminated fields are used
    image_id: str = ""


def terminated_reason(exit_code: int, oom: bool = False) -> str:
    """The ``terminated.reason`` a runtime reports: OOMKilled, Completed (exit 0) or Error."""
    if oom:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


def _terminated(rec: ContainerRecord) -> Obj:
    out: Obj = {"exitCode": rec.exit_code if rec.exit_code is not None else 0}
    if rec.reason:
        out["reason"] = rec.reason
    if rec.message:
        out["message"] = rec.message
    out["startedAt"] = rec.started_at
    out["finishedAt"] = rec.finished_at
    if rec.container_id:
        out["containerID"] = rec.container_id
    return out


def container_status(rec: ContainerRecord) -> Obj:
    """One ``ContainerStatus`` in the API's shape."""
    state: Obj
    if rec.state == "running":
        state = {"running": {"startedAt": rec.started_at}}
    elif rec.state == "terminated":
        state = {"terminated": _terminated(rec)}
    else:
        waiting: Obj = {}
        if rec.reason:
            waiting["reason"] = rec.reason
        if rec.message:
            waiting["message"] = rec.message
        state = {"waiting": waiting}
    last = rec.last_state
    running = rec.state == "running"
    status: Obj = {
        "name": rec.name,
        "state": state,
        "lastState": {"terminated": _terminated(last)} if last is not None else {},
        "ready": bool(rec.ready) and running,
        "restartCount": rec.restart_count,
        "image": rec.image,
        "imageID": rec.image_id,
        "started": bool(rec.started) and running,
    }
    if rec.container_id:
        status["containerID"] = rec.container_id
    return status


# --- phase ---------------------------------------------------------------------------------------


def _is_sidecar(container: Mapping[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def _last_terminated(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return (status.get("lastState") or {}).get("terminated")


def _phase(
    spec: Mapping[str, Any], statuses: Mapping[str, Mapping[str, Any]], *, initialized: bool, terminal: bool
) -> str:
    """kubelet getPhase over API container statuses (init and regular, by name)."""
    policy = spec.get("restartPolicy") or "Always"
    pending_init = pending_sidecars = failed_init = 0
    running = waiting = stopped = succeeded = unknown = 0
    for c in spec.get("initContainers") or []:
        st = statuses.get(c.get("name", ""))
        state = (st or {}).get("state") or {}
        if _is_sidecar(c):
            if st is None:
                unknown += 1
            elif "running" in state:
                pending_sidecars += 0 if st.get("started") else 1
                running += 1
            elif "waiting" in state and _last_terminated(st) is None:
                pending_sidecars += 1
                waiting += 1
            elif "terminated" not in state and "waiting" not in state:
                pending_sidecars += 1
                unknown += 1
            continue
        if st is None or "running" in state:
            pending_init += 1
        elif "terminated" in state:
            failed_init += 1 if state["terminated"].get("exitCode", 0) != 0 else 0
        elif "waiting" in state:
            last = _last_terminated(st)
            if last is not None and last.get("exitCode", 0) != 0:
                failed_init += 1
            elif last is None:
                pending_init += 1
        else:
            pending_init += 1
    for c in spec.get("containers") or []:
        st = statuses.get(c.get("name", ""))
        state = (st or {}).get("state") or {}
        if st is None:
            unknown += 1
        elif "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += 1 if state["terminated"].get("exitCode", 0) == 0 else 0
        elif "waiting" in state:
            if _last_terminated(st) is not None:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1

    if failed_init and policy == "Never":
        return "Failed"
    if pending_init or (pending_sidecars and not initialized) or waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"  # every container is on its way to a restart
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    return "Pending"


def pod_phase(
    spec: Mapping[str, Any],
    records: Sequence[ContainerRecord],
    *,
    init_done: bool = True,
    pod_is_terminal: bool = False,
) -> str:
    """kubelet getPhase. ``records`` may hold init and regular containers (names are unique in a
    pod); a container without a record counts as waiting. ``init_done``: the pod has been
    initialized before (a regular container started), so restarting sidecars do not make it
    Pending again. ``pod_is_terminal``: the pod is being finished (deleted, evicted), so stopped
    containers will not restart whatever the policy."""
    statuses = {rec.name: container_status(rec) for rec in records}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        statuses.setdefault(c.get("name", ""), {"state": {"waiting": {}}})
    return _phase(spec, statuses, initialized=init_done, terminal=pod_is_terminal)


# --- conditions -----------------------------------------------------------------------------------


def _go_list(names: Sequence[str]) -> str:
    return "[" + " ".join(names) + "]"


def _containers_ready(
    spec: Mapping[str, Any], statuses: Mapping[str, Obj], phase: str
) -> tuple[str, str, str]:
    if phase == "Succeeded":
        return "False", "PodCompleted", ""
    if phase == "Failed":
        return "False", "PodFailed", ""
    sidecars = [c for c in spec.get("initContainers") or [] if _is_sidecar(c)]
    names = [str(c.get("name", "")) for c in [*sidecars, *(spec.get("containers") or [])]]
    unready = [name for name in names if not statuses[name].get("ready")]
    if unready:
        return "False", "ContainersNotReady", f"containers with unready status: {_go_list(unready)}"
    return "True", "", ""


def _has_run(status: Mapping[str, Any]) -> bool:
    """The container is running, or ran before (terminated now or in ``lastState``)."""
    return "waiting" not in (status.get("state") or {}) or _last_terminated(status) is not None


def _initialized(spec: Mapping[str, Any], statuses: Mapping[str, Obj], phase: str) -> tuple[str, str, str]:
    inits = spec.get("initContainers") or []
    if phase == "Succeeded":
        return "True", "PodCompleted", ""
    if any(_has_run(statuses[str(c.get("name", ""))]) for c in spec.get("containers") or []):
        return "True", "", ""  # initialized before; restarting sidecars do not undo that
    incomplete = []
    for c in inits:
        st = statuses[str(c.get("name", ""))]
        if not (st.get("started") if _is_sidecar(c) else st.get("ready")):
            incomplete.append(str(c.get("name", "")))
    if incomplete:
        return (
            "False",
            "ContainersNotInitialized",
            f"containers with incomplete status: {_go_list(incomplete)}",
        )
    return "True", "", ""


def _ready(
    spec: Mapping[str, Any], containers_ready: tuple[str, str, str], others: Sequence[Mapping[str, Any]]
) -> tuple[str, str, str]:
    if containers_ready[0] != "True":
        return containers_ready
    by_type = {c.get("type"): c for c in others}
    messages = []
    for gate in spec.get("readinessGates") or []:
        ctype = gate.get("conditionType", "")
        cond = by_type.get(ctype)
        if cond is None:
            messages.append(f'corresponding condition of pod readiness gate "{ctype}" does not exist.')
        elif cond.get("status") != "True":
            messages.append(
                f'the status of pod readiness gate "{ctype}" is not "True", but {cond.get("status")}'
            )
    if messages:
        return "False", "ReadinessGatesNotReady", ", ".join(messages)
    return "True", "", ""


# --- QoS -----------------------------------------------------------------------------------------


def _nonzero(resources: Mapping[str, Any], name: str) -> Fraction | None:
    raw = resources.get(name)
    if raw is None:
        return None
    try:
        value = parse_quantity(raw)
    except ValueError:
        return None
    return value if value != 0 else None


def qos_class(spec: Mapping[str, Any]) -> str:
    """BestEffort (no cpu/memory requests or limits), Guaranteed (every container limits cpu and
    memory and requests equal limits), else Burstable: the kubelet's GetPodQOS for cpu and memory."""
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        res = c.get("resources") or {}
        lim, req = res.get("limits") or {}, res.get("requests") or {}
        for name in ("cpu", "memory"):
            limit = _nonzero(lim, name)
            request = _nonzero(req, name) if name in req else limit  # requests default to limits
            if request is not None:
                requests[name] = requests.get(name, Fraction(0)) + request
            if limit is not None:
                limits[name] = limits.get(name, Fraction(0)) + limit
            else:
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"


# --- the pod's status -------------------------------------------------------------------------------


def _statuses(
    containers: Sequence[Mapping[str, Any]],
    records: Mapping[str, ContainerRecord],
    old: Mapping[str, Mapping[str, Any]],
    default_reason: str,
    *,
    init: bool,
) -> list[Obj]:
    out: list[Obj] = []
    for c in containers:
        name = str(c.get("name", ""))
        rec = records.get(name)
        if rec is None:
            prev = old.get(name) or {}
            status: Obj = {
                "name": name,
                "state": {"waiting": {"reason": default_reason}},
                "lastState": prev.get("lastState") or {},
                "ready": False,
                "restartCount": int(prev.get("restartCount") or 0),
                "image": str(c.get("image", "")),
                "imageID": "",
                "started": False,
            }
        else:
            status = container_status(rec)
        if init and not _is_sidecar(c):
            terminated = (status["state"] or {}).get("terminated") or {}
            status["ready"] = bool(terminated) and terminated.get("exitCode") == 0
        out.append(status)
    return out


def _ip_list(ips: Sequence[str]) -> list[Obj]:
    return [{"ip": ip} for ip in ips]


def pod_status(
    pod: Mapping[str, Any],
    records: Sequence[ContainerRecord],
    *,
    pod_ips: Sequence[str],
    host_ip: str,
    start_time: str,
    now: str,
    sandbox_ready: bool,
    init_records: Sequence[ContainerRecord] = (),
    pod_is_terminal: bool = False,
) -> Obj:
    """The pod's whole ``status`` (see the module docstring). ``now`` stamps changed conditions."""
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    inits = spec.get("initContainers") or []
    default_reason = "PodInitializing" if inits else "ContainerCreating"
    by_name = {r.name: r for r in [*init_records, *records]}
    old_by_name = {
        s.get("name"): s
        for s in [*(old.get("initContainerStatuses") or []), *(old.get("containerStatuses") or [])]
    }
    init_statuses = _statuses(inits, by_name, old_by_name, default_reason, init=True)
    statuses = _statuses(spec.get("containers") or [], by_name, old_by_name, default_reason, init=False)
    all_statuses = {s["name"]: s for s in [*init_statuses, *statuses]}

    initialized = any(_has_run(s) for s in statuses)
    phase = _phase(spec, all_statuses, initialized=initialized, terminal=pod_is_terminal)
    old_phase = old.get("phase")
    if old_phase in TERMINAL_PHASES:
        phase = old_phase  # a finished pod stays finished

    old_conditions = {c.get("type"): c for c in old.get("conditions") or []}
    others = [dict(c) for c in old.get("conditions") or [] if c.get("type") not in KUBELET_CONDITIONS]

    def condition(ctype: str, status: str, reason: str = "", message: str = "") -> Obj:
        prev = old_conditions.get(ctype) or {}
        since = prev.get("lastTransitionTime") if prev.get("status") == status else None
        cond: Obj = {
            "type": ctype,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": since or now,
        }
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        return cond

    containers_ready = _containers_ready(spec, all_statuses, phase)
    conditions = [
        *others,
        condition("PodReadyToStartContainers", "True" if sandbox_ready else "False"),
        condition("Initialized", *_initialized(spec, all_statuses, phase)),
        condition("Ready", *_ready(spec, containers_ready, others)),
        condition("ContainersReady", *containers_ready),
        condition("PodScheduled", "True"),
    ]

    ips = list(pod_ips)
    if not ips:
        ips = [str(p.get("ip")) for p in old.get("podIPs") or [] if p.get("ip")]
    if not ips and spec.get("hostNetwork") and host_ip:
        ips = [host_ip]
    status: Obj = {"phase": phase, "conditions": conditions}
    if phase == old_phase:
        for key in ("reason", "message"):
            if old.get(key):
                status[key] = old[key]
    if host_ip:
        status["hostIP"] = host_ip
        status["hostIPs"] = _ip_list([host_ip])
    if ips:
        status["podIP"] = ips[0]
        status["podIPs"] = _ip_list(ips)
    status["startTime"] = old.get("startTime") or start_time
    if inits:
        status["initContainerStatuses"] = init_statuses
    status["containerStatuses"] = statuses
    status["qosClass"] = old.get("qosClass") or qos_class(spec)
    return status
