"""Pod status from container records: container statuses, the phase table, conditions, QoS."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from kubelite.agent.status import (
    ContainerRecord,
    container_status,
    pod_phase,
    pod_status,
    qos_class,
    terminated_reason,
)

Obj = dict[str, Any]
T0, T1, T2 = "2024-05-01T10:00:00Z", "2024-05-01T10:00:05Z", "2024-05-01T10:01:00Z"


def running(
    name: str = "app", *, ready: bool = True, started: bool | None = True, restarts: int = 0
) -> ContainerRecord:
    return ContainerRecord(
        name=name,
        image="busybox",
        container_id=f"kubelite://{name}-{restarts}",
        restart_count=restarts,
        state="running",
        started_at=T0,
        ready=ready,
        started=started,
        image_id="kubelite://busybox",
    )


def exited(name: str = "app", code: int = 0, *, restarts: int = 0) -> ContainerRecord:
    return ContainerRecord(
        name=name,
        image="busybox",
        container_id=f"kubelite://{name}-{restarts}",
        restart_count=restarts,
        state="terminated",
        reason=terminated_reason(code),
        started_at=T0,
        finished_at=T1,
        exit_code=code,
    )


def crash_looping(name: str = "app", code: int = 1) -> ContainerRecord:
    return ContainerRecord(
        name=name,
        image="busybox",
        container_id="",
        restart_count=3,
        state="waiting",
        reason="CrashLoopBackOff",
        message="back-off 40s restarting failed container=app pod=p_ns(u)",
        last_state=exited(name, code, restarts=2),
    )


def waiting(name: str = "app", reason: str = "ContainerCreating") -> ContainerRecord:
    return ContainerRecord(
        name=name, image="busybox", container_id="", restart_count=0, state="waiting", reason=reason
    )


def test_terminated_reason() -> None:
    assert terminated_reason(0) == "Completed"
    assert terminated_reason(2) == "Error"
    assert terminated_reason(137, oom=True) == "OOMKilled"


def test_container_status_shapes() -> None:
    assert container_status(running()) == {
        "name": "app",
        "state": {"running": {"startedAt": T0}},
        "lastState": {},
        "ready": True,
        "restartCount": 0,
        "image": "busybox",
        "imageID": "kubelite://busybox",
        "started": True,
        "containerID": "kubelite://app-0",
    }
    assert container_status(waiting())["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert "containerID" not in container_status(waiting())
    status = container_status(crash_looping())
    assert status["state"] == {
        "waiting": {
            "reason": "CrashLoopBackOff",
            "message": "back-off 40s restarting failed container=app pod=p_ns(u)",
        }
    }
    assert status["lastState"] == {
        "terminated": {
            "exitCode": 1,
            "reason": "Error",
            "startedAt": T0,
            "finishedAt": T1,
            "containerID": "kubelite://app-2",
        }
    }
    assert status["restartCount"] == 3


def test_only_running_containers_are_ready_or_started() -> None:
    stale = replace(exited(), ready=True, started=True)
    status = container_status(stale)
    assert (status["ready"], status["started"]) == (False, False)
    assert container_status(running(ready=False, started=None))["started"] is False


def _spec(policy: str = "Always", containers: tuple[str, ...] = ("a", "b"), **extra: Any) -> Obj:
    return {
        "restartPolicy": policy,
        "containers": [{"name": n, "image": "busybox"} for n in containers],
        **extra,
    }


@pytest.mark.parametrize(
    ("policy", "records", "phase"),
    [
        ("Always", [running("a"), running("b")], "Running"),
        ("Always", [running("a"), waiting("b")], "Pending"),
        ("Always", [running("a")], "Pending"),  # b has no record yet: waiting
        ("Always", [running("a"), exited("b", 0)], "Running"),
        ("Always", [exited("a", 0), exited("b", 0)], "Running"),  # both restart
        ("Always", [crash_looping("a"), crash_looping("b")], "Running"),
        ("OnFailure", [exited("a", 0), exited("b", 0)], "Succeeded"),
        ("OnFailure", [exited("a", 0), exited("b", 1)], "Running"),  # b restarts
        ("OnFailure", [exited("a", 0), crash_looping("b")], "Running"),
        ("OnFailure", [running("a"), exited("b", 0)], "Running"),
        ("Never", [exited("a", 0), exited("b", 0)], "Succeeded"),
        ("Never", [exited("a", 0), exited("b", 1)], "Failed"),
        ("Never", [running("a"), exited("b", 1)], "Running"),
        ("Never", [waiting("a"), exited("b", 1)], "Pending"),
    ],
)
def test_phase_table(policy: str, records: list[ContainerRecord], phase: str) -> None:
    assert pod_phase(_spec(policy), records) == phase


def test_terminal_pod_ends_whatever_the_policy() -> None:
    assert pod_phase(_spec("Always"), [exited("a", 0), exited("b", 0)], pod_is_terminal=True) == "Succeeded"
    assert pod_phase(_spec("Always"), [exited("a", 0), exited("b", 137)], pod_is_terminal=True) == "Failed"


@pytest.mark.parametrize(
    ("policy", "init", "phase"),
    [
        ("Always", running("init"), "Pending"),
        ("Always", exited("init", 1), "Pending"),  # will be retried
        ("Never", exited("init", 1), "Failed"),
        ("Never", crash_looping("init"), "Failed"),
        ("Always", exited("init", 0), "Pending"),  # app still waiting: PodInitializing
    ],
)
def test_init_containers(policy: str, init: ContainerRecord, phase: str) -> None:
    spec = _spec(policy, ("app",), initContainers=[{"name": "init", "image": "busybox"}])
    assert pod_phase(spec, [init, waiting("app", "PodInitializing")]) == phase
    assert pod_phase(spec, [exited("init", 0), running("app")]) == "Running"


def test_sidecar_init_container_not_started_keeps_the_pod_pending() -> None:
    spec = _spec("Always", ("app",), initContainers=[{"name": "side", "restartPolicy": "Always"}])
    assert pod_phase(spec, [running("side", started=False), waiting("app")], init_done=False) == "Pending"
    assert pod_phase(spec, [running("side"), running("app")]) == "Running"


# --- pod_status -----------------------------------------------------------------------------------


def _pod(spec: Obj, status: Obj | None = None) -> Obj:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": spec, "status": status or {}}


def _status(pod: Obj, records: list[ContainerRecord], *, now: str = T1, **kw: Any) -> Obj:
    return pod_status(
        pod,
        records,
        pod_ips=kw.pop("pod_ips", ["10.244.1.7"]),
        host_ip="192.168.1.10",
        start_time=T0,
        now=now,
        sandbox_ready=kw.pop("sandbox_ready", True),
        **kw,
    )


def _conditions(status: Obj) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c.get("reason", ""), c.get("message", "")) for c in status["conditions"]}


def test_a_running_ready_pod() -> None:
    status = _status(_pod(_spec()), [running("a"), running("b")])
    assert status["phase"] == "Running"
    assert [c["type"] for c in status["conditions"]] == [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    assert all(c["status"] == "True" and c["lastTransitionTime"] == T1 for c in status["conditions"])
    assert status["conditions"][0]["lastProbeTime"] is None
    assert status["podIP"] == "10.244.1.7"
    assert status["podIPs"] == [{"ip": "10.244.1.7"}]
    assert status["hostIP"] == "192.168.1.10"
    assert status["hostIPs"] == [{"ip": "192.168.1.10"}]
    assert status["startTime"] == T0
    assert status["qosClass"] == "BestEffort"
    assert [s["name"] for s in status["containerStatuses"]] == ["a", "b"]
    assert "initContainerStatuses" not in status


def test_containers_not_ready() -> None:
    status = _status(_pod(_spec()), [running("a", ready=False), waiting("b")], sandbox_ready=False)
    conditions = _conditions(status)
    message = "containers with unready status: [a b]"
    assert conditions["ContainersReady"] == ("False", "ContainersNotReady", message)
    assert conditions["Ready"] == ("False", "ContainersNotReady", message)
    assert conditions["PodReadyToStartContainers"] == ("False", "", "")
    assert status["phase"] == "Pending"


def test_containers_without_records_wait_and_keep_their_history() -> None:
    old = {
        "containerStatuses": [{"name": "b", "restartCount": 4, "lastState": {"terminated": {"exitCode": 2}}}]
    }
    status = _status(_pod(_spec(), old), [running("a")])
    b = status["containerStatuses"][1]
    assert b["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert b["restartCount"] == 4
    assert b["lastState"] == {"terminated": {"exitCode": 2}}
    assert (b["ready"], b["started"], b["image"]) == (False, False, "busybox")


def test_readiness_gates() -> None:
    spec = _spec(readinessGates=[{"conditionType": "example.com/lb"}])
    status = _status(_pod(spec), [running("a"), running("b")])
    assert _conditions(status)["Ready"] == (
        "False",
        "ReadinessGatesNotReady",
        'corresponding condition of pod readiness gate "example.com/lb" does not exist.',
    )
    gate = {"type": "example.com/lb", "status": "False", "lastTransitionTime": T0}
    status = _status(_pod(spec, {"conditions": [gate]}), [running("a"), running("b")])
    assert _conditions(status)["Ready"][1:] == (
        "ReadinessGatesNotReady",
        'the status of pod readiness gate "example.com/lb" is not "True", but False',
    )
    assert status["conditions"][0] == gate  # conditions the kubelet does not own are kept first
    status = _status(_pod(spec, {"conditions": [{**gate, "status": "True"}]}), [running("a"), running("b")])
    assert _conditions(status)["Ready"] == ("True", "", "")
    assert _conditions(status)["ContainersReady"] == ("True", "", "")


def test_conditions_keep_their_transition_time_until_the_status_changes() -> None:
    pod = _pod(_spec())
    first = _status(pod, [running("a", ready=False), running("b")], now=T1)
    pod["status"] = first
    second = _status(pod, [running("a", ready=False), running("b")], now=T2)
    assert second["conditions"] == first["conditions"]
    pod["status"] = second
    third = _status(pod, [running("a"), running("b")], now=T2)
    times = {c["type"]: c["lastTransitionTime"] for c in third["conditions"]}
    assert times == {
        "PodReadyToStartContainers": T1,
        "Initialized": T1,
        "Ready": T2,
        "ContainersReady": T2,
        "PodScheduled": T1,
    }


def test_pod_scheduled_keeps_the_schedulers_time() -> None:
    scheduled = {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": T0}
    status = _status(_pod(_spec(), {"conditions": [scheduled]}), [running("a"), running("b")])
    assert status["conditions"][-1] == scheduled
    assert len(status["conditions"]) == 5


def test_finished_pod() -> None:
    spec = _spec("OnFailure")
    status = _status(_pod(spec), [exited("a", 0), exited("b", 0)])
    assert status["phase"] == "Succeeded"
    conditions = _conditions(status)
    assert conditions["Ready"] == ("False", "PodCompleted", "")
    assert conditions["ContainersReady"] == ("False", "PodCompleted", "")
    assert conditions["Initialized"] == ("True", "PodCompleted", "")
    failed = _status(_pod(_spec("Never")), [exited("a", 0), exited("b", 3)])
    assert failed["phase"] == "Failed"
    assert _conditions(failed)["Ready"] == ("False", "PodFailed", "")


def test_a_terminal_phase_never_changes_and_keeps_reason_and_ip() -> None:
    old = {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The node was low on resource: memory.",
        "podIP": "10.244.1.7",
        "podIPs": [{"ip": "10.244.1.7"}],
        "startTime": "2024-01-01T00:00:00Z",
        "qosClass": "Burstable",
    }
    status = _status(_pod(_spec(), old), [running("a"), running("b")], pod_ips=[])
    assert status["phase"] == "Failed"
    assert (status["reason"], status["message"]) == ("Evicted", "The node was low on resource: memory.")
    assert status["podIPs"] == [{"ip": "10.244.1.7"}]
    assert status["startTime"] == "2024-01-01T00:00:00Z"
    assert status["qosClass"] == "Burstable"


def test_host_network_pod_gets_the_node_ip() -> None:
    status = _status(_pod(_spec(hostNetwork=True)), [running("a"), running("b")], pod_ips=[])
    assert status["podIPs"] == [{"ip": "192.168.1.10"}]


def test_init_container_statuses() -> None:
    spec = _spec(
        "Always",
        ("app",),
        initContainers=[{"name": "one", "image": "busybox"}, {"name": "two", "image": "busybox"}],
    )
    status = _status(_pod(spec), [], init_records=[exited("one", 0), running("two", ready=False)])
    assert status["phase"] == "Pending"
    one, two = status["initContainerStatuses"]
    assert one["ready"] is True  # a finished init container counts as ready
    assert two["ready"] is False
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert _conditions(status)["Initialized"] == (
        "False",
        "ContainersNotInitialized",
        "containers with incomplete status: [two]",
    )
    done = _status(_pod(spec), [running("app")], init_records=[exited("one", 0), exited("two", 0)])
    assert _conditions(done)["Initialized"] == ("True", "", "")
    assert done["phase"] == "Running"


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        ([{}, {}], "BestEffort"),
        ([{"requests": {"cpu": "100m"}}, {}], "Burstable"),
        (
            [{"limits": {"cpu": "1", "memory": "1Gi"}}, {"limits": {"cpu": "500m", "memory": "64Mi"}}],
            "Guaranteed",
        ),
        (
            [{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}}, {}],
            "Burstable",
        ),
        (
            [{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}}],
            "Guaranteed",
        ),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}], "Burstable"),
        ([{"limits": {"cpu": "1"}}], "Burstable"),
    ],
)
def test_qos_class(resources: list[Obj], qos: str) -> None:
    spec = {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}
    assert qos_class(spec) == qos
