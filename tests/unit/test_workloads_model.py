"""The workload controllers' pure models: ReplicaSet, Deployment, DaemonSet, and kubectl's view.

Two small simulators drive them: ``RolloutSim`` plays the ReplicaSet controller at the level of
ReplicaSet status (exact rollout steps), ``MiniCluster`` wires Deployment → ReplicaSet → pods
with a kubelet that makes pods ready, and reads the result back the way ``kubectl rollout
status`` does.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubelite.api.defaults import apply_defaults
from kubelite.api.meta import format_time
from kubelite.api.selectors import selector_from_map
from kubelite.controllers import daemonset_model, deployment_model, replicaset_model, workloads_model
from kubelite.controllers.daemonset_model import (
    DAEMON_TOLERATIONS,
    add_daemon_tolerations,
    daemon_pod,
    daemonset_plan,
    daemonset_status,
    node_affinity_matches,
    node_should_run,
)
from kubelite.controllers.deployment_model import (
    DeploymentPlan,
    deployment_plan,
    deployment_status,
    hash_collision,
    resolve_fenceposts,
    rolling_update_plan,
)
from kubelite.controllers.replicaset_model import (
    compare_for_deletion,
    pods_to_delete,
    replicaset_diff,
    replicaset_status,
)
from kubelite.controllers.workloads_model import (
    InvalidSpecError,
    OwnerInfo,
    PodInfo,
    RollbackError,
    RolloutStatusError,
    adopt_patch,
    claim,
    compute_hash,
    daemonset_rollout_status_message,
    release_patch,
    rollback_patch,
    rollout_status_message,
    safe_encode_string,
    scaled_value,
    template_for_revision,
    templates_equal_ignoring_hash,
)

Obj = dict[str, Any]
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
HASH_ALPHABET = set("456789bcdf")  # SafeEncodeString of decimal digits


def at(seconds: float = 0) -> str:
    return format_time(NOW + timedelta(seconds=seconds))


def template(image: str = "nginx:1.25", labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {
        "metadata": {"labels": dict(labels or {"app": "web"})},
        "spec": {"containers": [{"name": "c", "image": image}], **spec},
    }


def pod(
    name: str,
    *,
    owner: str | None = "rs-uid",
    labels: dict[str, str] | None = None,
    node: str = "n1",
    phase: str = "Running",
    ready: bool = True,
    ready_at: float = -100,
    created: float | None = -1000,
    restarts: int = 0,
    deleting: bool = False,
    namespace: str = "default",
    annotations: dict[str, str] | None = None,
) -> Obj:
    meta: Obj = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "labels": labels or {"app": "web"},
    }
    if created is not None:
        meta["creationTimestamp"] = at(created)
    if owner is not None:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": "x", "uid": owner, "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = at()
    if annotations:
        meta["annotations"] = annotations
    ready_cond = {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": at(ready_at)}
    return {
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
        "status": {
            "phase": phase,
            "conditions": [ready_cond],
            "containerStatuses": [{"name": "c", "restartCount": restarts}],
        },
    }


def replicaset(name: str = "web-rs", replicas: int = 3, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default", "uid": "rs-uid", "generation": 2},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(),
            **spec,
        },
    }


def deployment(
    replicas: int = 3,
    *,
    image: str = "nginx:1.25",
    strategy: Obj | None = None,
    generation: int = 1,
    **spec: Any,
) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": generation},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(image),
            "strategy": strategy
            or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            **spec,
        },
    }


def rolling(surge: int | str, unavailable: int | str) -> Obj:
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}


def condition(status: Obj, kind: str) -> Obj:
    return next(c for c in status["conditions"] if c["type"] == kind)


# --- shared: hash, templates, claiming ------------------------------------------------------------


def test_hash_is_stable_short_and_safe() -> None:
    a = template()
    b = {
        "spec": {"containers": [{"image": "nginx:1.25", "name": "c"}]},
        "metadata": {"labels": {"app": "web"}},
    }
    assert compute_hash(a) == compute_hash(b)  # key order does not matter
    assert compute_hash(a) == compute_hash({**a, "metadata": {**a["metadata"], "annotations": {}}})
    assert set(compute_hash(a)) <= HASH_ALPHABET
    assert 1 <= len(compute_hash(a)) <= 10
    # Pinned: a different value would roll every Deployment when kubelite is upgraded.
    assert compute_hash(template()) == compute_hash(copy.deepcopy(template())) == "5bdcdff586"
    assert compute_hash(template("nginx:1.26")) != compute_hash(a)
    assert compute_hash(a, 1) != compute_hash(a) != compute_hash(a, 0)


def test_safe_encode_string_is_kubernetes_alphabet() -> None:
    assert safe_encode_string("0123456789") == "456789bcdf"


def test_templates_equal_ignoring_hash() -> None:
    with_hash = template(labels={"app": "web", "pod-template-hash": "abc"})
    assert templates_equal_ignoring_hash(with_hash, template())
    assert templates_equal_ignoring_hash(
        {**template(), "metadata": {"labels": {"app": "web"}, "x": None}}, template()
    )
    assert not templates_equal_ignoring_hash(template("nginx:2"), template())


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [
        (3, 10, True, 3),
        ("25%", 10, True, 3),
        ("25%", 10, False, 2),
        ("25%", 3, False, 0),
        ("100%", 7, False, 7),
    ],
)
def test_scaled_value(value: int | str, total: int, up: bool, expected: int) -> None:
    assert scaled_value(value, total, up) == expected


@pytest.mark.parametrize("value", ["25", "x%", "%", True])
def test_scaled_value_rejects(value: Any) -> None:
    with pytest.raises(InvalidSpecError, match="maxSurge"):
        scaled_value(value, 10, True, "maxSurge")


def test_claim_keeps_adopts_and_releases() -> None:
    owner = OwnerInfo("apps/v1", "ReplicaSet", "default", "web-rs", "rs-uid")
    objects = [
        pod("kept"),
        pod("moved", labels={"app": "other"}),
        pod("orphan", owner=None),
        pod("orphan-going", owner=None, deleting=True),
        pod("orphan-elsewhere", owner=None, namespace="other"),
        pod("foreign", owner="someone-else"),
        pod("stray", owner=None, labels={"app": "other"}),
    ]
    result = claim(owner, objects, selector_from_map({"app": "web"}))
    assert result.owned == ("kept", "orphan")
    assert result.adopt == ("orphan",)
    assert result.release == ("moved",)
    deleting = claim(
        OwnerInfo("apps/v1", "ReplicaSet", "default", "web-rs", "rs-uid", deleting=True),
        objects,
        selector_from_map({"app": "web"}),
    )
    assert (deleting.owned, deleting.adopt, deleting.release) == (("kept",), (), ())


def test_adopt_and_release_patches() -> None:
    owner = OwnerInfo("apps/v1", "ReplicaSet", "default", "web-rs", "rs-uid")
    assert adopt_patch(owner, pod("p")) == {
        "metadata": {
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-rs",
                    "uid": "rs-uid",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "uid": "uid-p",
        }
    }
    assert release_patch(owner, pod("p")) == {
        "metadata": {"ownerReferences": [{"$patch": "delete", "uid": "rs-uid"}], "uid": "uid-p"}
    }


def test_pod_availability_waits_min_ready_seconds() -> None:
    info = PodInfo.from_object(pod("p", ready_at=-10))
    assert info.available(0, NOW) and info.available(9, NOW)
    assert not info.available(10, NOW) and not info.available(30, NOW)
    assert not PodInfo.from_object(pod("q", ready=False)).available(0, NOW)
    assert not PodInfo.from_object(pod("r", phase="Failed")).active
    assert not PodInfo.from_object(pod("s", deleting=True)).active


# --- ReplicaSet -----------------------------------------------------------------------------------


def test_replicaset_creates_three_pods_from_scratch() -> None:
    plan = replicaset_diff(replicaset(replicas=3), [], now=NOW)
    assert len(plan.create) == 3 and not plan.delete
    body = plan.create[0]
    assert body["metadata"] == {
        "generateName": "web-rs-",
        "namespace": "default",
        "labels": {"app": "web"},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-rs",
                "uid": "rs-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    assert body["spec"] == template()["spec"]
    assert body["kind"] == "Pod"
    assert plan.create[0] is not plan.create[1]


def test_replicaset_scale_down_deletes_the_least_useful_pods() -> None:
    pods = [
        pod("ready-old", created=-5000),
        pod("pending", phase="Pending", ready=False),
        pod("unscheduled", phase="Pending", ready=False, node=""),
    ]
    plan = replicaset_diff(replicaset(replicas=1), pods, now=NOW)
    assert plan.delete == ("unscheduled", "pending")
    assert replicaset_diff(replicaset(replicas=0), pods, now=NOW).delete == (
        "ready-old",
        "pending",
        "unscheduled",
    )


# Each case: (pod deleted first, pod kept), differing in one rule of ActivePodsWithRanks.
DELETION_RULES = [
    ("unscheduled", pod("a", node="", phase="Running"), pod("b", phase="Running")),
    (
        "pending before running",
        pod("a", phase="Pending", ready=False),
        pod("b", phase="Running", ready=False),
    ),
    ("unknown before running", pod("a", phase="Unknown", ready=False), pod("b", ready=False)),
    ("not ready before ready", pod("a", ready=False), pod("b")),
    (
        "lower deletion cost",
        pod("a", annotations={"controller.kubernetes.io/pod-deletion-cost": "-5"}),
        pod("b"),
    ),
    ("more recently ready", pod("a", ready_at=-10), pod("b", ready_at=-500)),
    ("more restarts", pod("a", restarts=3), pod("b", restarts=1)),
    ("newer", pod("a", created=-10), pod("b", created=-900)),
    ("no creation time", pod("a", created=None), pod("b", created=-900)),
]


@pytest.mark.parametrize(("rule", "first", "kept"), DELETION_RULES, ids=[r[0] for r in DELETION_RULES])
def test_deletion_ranking(rule: str, first: Obj, kept: Obj) -> None:
    a, b = PodInfo.from_object(first), PodInfo.from_object(kept)
    assert compare_for_deletion(a, b) < 0 < compare_for_deletion(b, a), rule
    assert [p.name for p in pods_to_delete([b, a], 1)] == ["a"]


def test_deletion_prefers_pods_doubled_up_on_a_node() -> None:
    pods = [PodInfo.from_object(pod(n, node=node)) for n, node in [("x", "n1"), ("y", "n2"), ("z", "n2")]]
    assert [p.name for p in pods_to_delete(pods, 1)] == ["y"]
    # Siblings (the Deployment's other ReplicaSets) count too.
    sibling = [PodInfo.from_object(pod(f"s{i}", node="n1", owner="other")) for i in range(3)]
    assert [p.name for p in pods_to_delete(pods, 1, [*pods, *sibling])] == ["x"]


def test_replicaset_adopts_orphans_and_releases_strays() -> None:
    pods = [
        pod("mine"),
        pod("orphan", owner=None),
        pod("moved", labels={"app": "db"}),
        pod("done", phase="Failed"),
    ]
    plan = replicaset_diff(replicaset(replicas=3), pods, now=NOW)
    assert plan.adopt == ("orphan",) and plan.release == ("moved",)
    assert len(plan.create) == 1  # mine + orphan count; the failed pod does not


def test_replicaset_only_counts_its_namespace() -> None:
    twins = [pod("x"), pod("x", namespace="other"), pod("y", namespace="other", owner=None)]
    plan = replicaset_diff(replicaset(replicas=2), twins, now=NOW)
    assert len(plan.create) == 1 and not plan.adopt
    assert replicaset_status(replicaset(replicas=2), twins, now=NOW)["replicas"] == 1


def test_replicaset_ignores_inactive_pods_and_caps_bursts() -> None:
    gone = [pod("failed", phase="Failed"), pod("done", phase="Succeeded"), pod("leaving", deleting=True)]
    assert len(replicaset_diff(replicaset(replicas=3), gone, now=NOW).create) == 3
    assert (
        len(replicaset_diff(replicaset(replicas=600), [], now=NOW).create) == workloads_model.BURST_REPLICAS
    )


def test_replicaset_being_deleted_does_nothing() -> None:
    rs = replicaset(replicas=3)
    rs["metadata"]["deletionTimestamp"] = at()
    assert replicaset_diff(rs, [pod("a")], now=NOW).empty


def test_replicaset_status_counts_and_requeue() -> None:
    rs = replicaset(replicas=4, minReadySeconds=30)
    rs["status"] = {"conditions": [{"type": "ReplicaFailure", "status": "True"}]}
    pods = [
        pod("long-ready", ready_at=-100),
        pod("just-ready", ready_at=-10),
        pod("not-ready", ready=False),
        pod("partly-labeled", labels={"app": "web"}, owner="rs-uid"),
        pod("other-owner", owner="x"),
    ]
    pods[3]["metadata"]["labels"] = {"app": "web"}
    rs["spec"]["template"]["metadata"]["labels"] = {"app": "web", "tier": "front"}
    status = replicaset_status(rs, pods, now=NOW)
    assert status == {
        "conditions": [{"type": "ReplicaFailure", "status": "True"}],
        "replicas": 4,
        "fullyLabeledReplicas": 0,
        "readyReplicas": 3,
        "availableReplicas": 2,
        "observedGeneration": 2,
    }
    assert replicaset_diff(rs, pods, now=NOW).requeue_after == 20


# --- Deployment: creation, rolling updates, Recreate ----------------------------------------------


class RolloutSim:
    """The Deployment model against ReplicaSets whose pods come up between passes."""

    def __init__(self, deploy: Obj, replicasets: Iterable[Obj] = ()) -> None:
        self.deploy = deploy
        self.rs = {rs["metadata"]["name"]: rs for rs in replicasets}
        self.now = NOW
        self.max_total = 0
        self.min_available: int | None = None

    def sync(self) -> DeploymentPlan:
        self.now += timedelta(seconds=1)
        plan = deployment_plan(self.deploy, list(self.rs.values()), now=self.now)
        if plan.create is not None:
            rs = copy.deepcopy(plan.create)
            rs["metadata"].update(
                uid=f"uid-{rs['metadata']['name']}", creationTimestamp=format_time(self.now)
            )
            self.rs[rs["metadata"]["name"]] = rs
        for updated in plan.update:
            name = updated["metadata"]["name"]
            self.rs[name] = {**copy.deepcopy(updated), "status": self.rs[name].get("status", {})}
        for name in plan.delete:
            del self.rs[name]
        if plan.revision:
            self.deploy["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = (
                plan.revision
            )
        self.deploy["status"] = plan.status
        # Scaling down takes pods away at once; new ones are not available before the next pass.
        sizes = [rs["spec"]["replicas"] for rs in self.rs.values()]
        available = sum(
            min(rs.get("status", {}).get("availableReplicas", 0), rs["spec"]["replicas"])
            for rs in self.rs.values()
        )
        self.max_total = max(self.max_total, sum(sizes))
        self.min_available = available if self.min_available is None else min(self.min_available, available)
        return plan

    def settle(self) -> None:
        for rs in self.rs.values():
            n = rs["spec"]["replicas"]
            rs["status"] = {
                "replicas": n,
                "readyReplicas": n,
                "availableReplicas": n,
                "observedGeneration": 1,
            }

    def run(self, limit: int = 40) -> list[tuple[tuple[str, int], ...]]:
        """Passes until nothing changes (a status write triggers another pass, as its watch
        event does); the scaling of each pass that did something."""
        self.max_total, self.min_available = 0, None
        steps: list[tuple[tuple[str, int], ...]] = []
        for _ in range(limit):
            before = copy.deepcopy(self.deploy.get("status"))
            plan = self.sync()
            if plan.empty and plan.status == before:
                assert rollout_status_message(self.deploy)[1]
                return steps
            if plan.scales:
                steps.append(plan.scales)
            self.settle()
        raise AssertionError(f"no end after {limit} passes: {steps}")

    def sizes(self) -> dict[str, int]:
        return {name: rs["spec"]["replicas"] for name, rs in self.rs.items()}

    def set_template(self, image: str) -> str:
        self.deploy["spec"]["template"] = template(image)
        self.deploy["metadata"]["generation"] += 1
        return "web-" + compute_hash(self.deploy["spec"]["template"])


def test_new_deployment_creates_its_replicaset() -> None:
    deploy = deployment(3)
    deploy["metadata"]["annotations"] = {
        "kubernetes.io/change-cause": "first",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    }
    plan = deployment_plan(deploy, [], now=NOW)
    pod_hash = compute_hash(deploy["spec"]["template"])
    rs = plan.create
    assert rs is not None
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["metadata"]["labels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert rs["metadata"]["annotations"] == {
        "kubernetes.io/change-cause": "first",
        "deployment.kubernetes.io/revision": "1",
        "deployment.kubernetes.io/desired-replicas": "3",
        "deployment.kubernetes.io/max-replicas": "4",
    }
    assert rs["metadata"]["ownerReferences"][0] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "uid": "d-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert rs["spec"]["selector"] == {"matchLabels": {"app": "web", "pod-template-hash": pod_hash}}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == pod_hash
    assert rs["spec"]["replicas"] == 3 and plan.scales == ((rs["metadata"]["name"], 3),)
    assert plan.revision == "1"
    assert condition(plan.status, "Progressing") == {
        "type": "Progressing",
        "status": "True",
        "reason": "NewReplicaSetCreated",
        "message": f'Created new replica set "web-{pod_hash}"',
        "lastUpdateTime": at(),
        "lastTransitionTime": at(),
    }
    assert condition(plan.status, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert plan.requeue_after == 600
    assert rollout_status_message({**deploy, "status": plan.status}) == (
        'Waiting for deployment "web" rollout to finish: 0 out of 3 new replicas have been updated...\n',
        False,
    )


def test_rolling_update_surge_one_unavailable_zero_step_by_step() -> None:
    sim = RolloutSim(deployment(4, strategy=rolling(1, 0)))
    assert sim.run() == [(("web-" + compute_hash(template()), 4),)]
    old = next(iter(sim.rs))
    new = sim.set_template("nginx:1.26")
    steps = sim.run()
    assert steps == [
        ((new, 1),),
        ((old, 3),),
        ((new, 2),),
        ((old, 2),),
        ((new, 3),),
        ((old, 1),),
        ((new, 4),),
        ((old, 0),),
    ]
    assert sim.max_total == 5 and sim.min_available == 4
    assert sim.sizes() == {old: 0, new: 4}  # the old ReplicaSet stays, for rollback
    status = sim.deploy["status"]
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (4, 4, 4)
    assert condition(status, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert condition(status, "Progressing")["message"] == f'ReplicaSet "{new}" has successfully progressed.'
    assert condition(status, "Available")["reason"] == "MinimumReplicasAvailable"
    assert rollout_status_message(sim.deploy) == ('deployment "web" successfully rolled out\n', True)
    assert sim.deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"


def test_rolling_update_quarter_percentages_on_ten_replicas() -> None:
    sim = RolloutSim(deployment(10, strategy=rolling("25%", "25%")))
    sim.run()
    old = next(iter(sim.rs))
    new = sim.set_template("nginx:1.26")
    steps = sim.run()
    # maxSurge 25% of 10 rounds up to 3, maxUnavailable down to 2: the first pass does both.
    assert steps[0] == ((new, 3), (old, 8))
    assert sim.max_total <= 13 and sim.min_available is not None and sim.min_available >= 8
    assert sim.sizes() == {old: 0, new: 10}


def test_rollout_status_messages_while_rolling() -> None:
    sim = RolloutSim(deployment(4, strategy=rolling(1, 0)))
    sim.run()
    sim.set_template("nginx:1.26")
    assert rollout_status_message(sim.deploy) == (
        "Waiting for deployment spec update to be observed...\n",
        False,
    )
    messages = []
    for _ in range(8):
        sim.sync()
        messages.append(rollout_status_message(sim.deploy)[0])
        sim.settle()
    waiting = 'Waiting for deployment "web" rollout to finish: '
    assert messages[0] == waiting + "0 out of 4 new replicas have been updated...\n"
    assert waiting + "1 out of 4 new replicas have been updated...\n" in messages
    assert messages[-1] == waiting + "1 old replicas are pending termination...\n"


def test_recreate_waits_for_old_pods_before_creating() -> None:
    deploy = deployment(3, strategy={"type": "Recreate"})
    sim = RolloutSim(deploy)
    sim.run()
    old = next(iter(sim.rs))
    new = sim.set_template("nginx:1.26")
    plan = sim.sync()
    assert plan.scales == ((old, 0),) and plan.create is None
    # The old ReplicaSet still reports pods: wait.
    assert sim.sync().empty
    sim.settle()
    old_uid = sim.rs[old]["metadata"]["uid"]
    lingering = pod("old-1", owner=old_uid, phase="Running")
    waiting = deployment_plan(sim.deploy, list(sim.rs.values()), [lingering], now=NOW)
    assert waiting.create is None
    finished = deployment_plan(
        sim.deploy, list(sim.rs.values()), [pod("old-1", owner=old_uid, phase="Succeeded")]
    )
    assert finished.create is not None and finished.create["spec"]["replicas"] == 3
    assert finished.create["metadata"]["name"] == new
    assert sim.run() == [((new, 3),)]
    assert rollout_status_message(sim.deploy)[1]


# Kubernetes' own TestScale cases (sync_test.go): maxSurge 0, ReplicaSets sized for the old count.
PROPORTIONAL = [
    ("5 -> 10", 10, 5, {"v2": 2, "v1": 3}, {"v2": 4, "v1": 6}),
    ("5 -> 3", 3, 5, {"v2": 2, "v1": 3}, {"v2": 1, "v1": 2}),
    ("9 -> 4", 4, 9, {"v2": 8, "v1": 1}, {"v2": 4, "v1": 0}),
    ("7 -> 10", 10, 7, {"v3": 2, "v2": 3, "v1": 2}, {"v3": 3, "v2": 4, "v1": 3}),
    ("13 -> 8", 8, 13, {"v3": 2, "v2": 8, "v1": 3}, {"v3": 1, "v2": 5, "v1": 2}),
]


@pytest.mark.parametrize(
    ("case", "replicas", "was", "before", "after"), PROPORTIONAL, ids=[p[0] for p in PROPORTIONAL]
)
def test_proportional_scaling_mid_rollout(
    case: str, replicas: int, was: int, before: dict[str, int], after: dict[str, int]
) -> None:
    deploy = deployment(replicas, strategy=rolling(0, 1), image="nginx:new")
    rss = []
    for age, (version, size) in enumerate(before.items()):
        rs = replicaset(
            f"web-{version}", size, template=template("nginx:new" if age == 0 else f"nginx:{version}")
        )
        rs["metadata"].update(uid=f"uid-{version}", creationTimestamp=at(-100 * (age + 1)))
        rs["metadata"]["annotations"] = {
            "deployment.kubernetes.io/desired-replicas": str(was),
            "deployment.kubernetes.io/max-replicas": str(was),
            "deployment.kubernetes.io/revision": str(len(before) - age),
        }
        rss.append(rs)
    plan = deployment_plan(deploy, rss, now=NOW)
    assert {rs["metadata"]["name"]: rs["spec"]["replicas"] for rs in plan.update} == {
        f"web-{v}": n for v, n in after.items()
    }, case
    assert all(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == str(replicas)
        for rs in plan.update
    )


def test_existing_new_replicaset_is_found_and_stamped() -> None:
    deploy = deployment(2, minReadySeconds=5)
    deploy["metadata"]["annotations"] = {"kubernetes.io/change-cause": "v1"}
    found = replicaset("web-made-earlier", 2)
    found["metadata"]["ownerReferences"] = [{"uid": "d-uid", "controller": True}]
    plan = deployment_plan(deploy, [found], now=NOW)
    assert plan.create is None and not plan.scales
    (updated,) = plan.update
    assert updated["spec"]["minReadySeconds"] == 5
    assert updated["metadata"]["annotations"] == {
        "kubernetes.io/change-cause": "v1",
        "deployment.kubernetes.io/revision": "1",
    }
    assert plan.revision == "1"
    progressing = condition(plan.status, "Progressing")
    assert (progressing["reason"], progressing["message"]) == (
        "FoundNewReplicaSet",
        'Found new replica set "web-made-earlier"',
    )


def test_kubectl_scale_resizes_the_only_replicaset() -> None:
    sim = RolloutSim(deployment(3, strategy=rolling("25%", "25%")))
    sim.run()
    sim.deploy["spec"]["replicas"] = 1
    sim.deploy["metadata"]["generation"] += 1
    plan = sim.sync()
    (rs,) = plan.update
    assert plan.scales == ((rs["metadata"]["name"], 1),)
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "1"
    sim.settle()
    assert sim.run() == []


def test_paused_deployment_does_not_roll_out() -> None:
    sim = RolloutSim(deployment(2))
    sim.run()
    sim.set_template("nginx:1.25.1")
    sim.run()
    sim.deploy["spec"]["paused"] = True
    sim.set_template("nginx:1.26")
    plan = sim.sync()
    assert plan.create is None and not plan.scales
    progressing = condition(plan.status, "Progressing")
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (
        "Unknown",
        "DeploymentPaused",
        "Deployment is paused",
    )
    with pytest.raises(RollbackError, match="cannot rollback a paused deployment"):
        rollback_patch(sim.deploy, list(sim.rs.values()))
    sim.deploy["spec"]["paused"] = False
    sim.deploy["metadata"]["generation"] += 1
    resumed = sim.sync()
    assert resumed.create is not None
    assert condition(resumed.status, "Progressing")["reason"] == "NewReplicaSetCreated"


def test_revision_history_limit_removes_the_oldest_idle_replicasets() -> None:
    sim = RolloutSim(deployment(1, revisionHistoryLimit=2))
    names = []
    for version in range(1, 6):
        names.append(sim.set_template(f"nginx:{version}"))
        sim.run()
    assert sorted(sim.rs) == sorted(names[-3:])  # the current one and two old ones


def test_restart_rolls_out_a_new_replicaset() -> None:
    sim = RolloutSim(deployment(2))
    sim.run()
    first = next(iter(sim.rs))
    annotations = {"kubectl.kubernetes.io/restartedAt": "2024-05-01T12:00:00Z"}
    sim.deploy["spec"]["template"]["metadata"]["annotations"] = annotations
    sim.deploy["metadata"]["generation"] += 1
    sim.run()
    assert sim.sizes()[first] == 0 and len(sim.rs) == 2
    assert rollout_status_message(sim.deploy)[1]


# --- Deployment: undo, status, collisions, validation ---------------------------------------------


def test_undo_selects_the_previous_template_and_reuses_its_replicaset() -> None:
    sim = RolloutSim(deployment(2))
    sim.run()
    v1 = next(iter(sim.rs))
    v2 = sim.set_template("nginx:1.26")
    sim.run()
    rss = list(sim.rs.values())
    assert template_for_revision(rss) == template()  # no pod-template-hash label
    assert template_for_revision(rss, 2) == template("nginx:1.26")
    with pytest.raises(RollbackError, match="unable to find specified revision 7 in history"):
        template_for_revision(rss, 7)
    with pytest.raises(RollbackError, match='no rollout history found for deployment "web"'):
        template_for_revision(rss[:1], name="web")
    assert rollback_patch(sim.deploy, rss, 2) is None  # "skipped rollback": already there
    patch = rollback_patch(sim.deploy, rss)
    assert patch == [
        {"op": "replace", "path": "/spec/template", "value": template()},
        {
            "op": "replace",
            "path": "/metadata/annotations",
            "value": {"deployment.kubernetes.io/revision": "2"},
        },
    ]
    # What the API server does with that JSON patch, then the controller's next passes.
    sim.deploy["spec"]["template"] = patch[0]["value"]
    sim.deploy["metadata"]["generation"] += 1
    sim.run()
    assert sim.sizes() == {v1: 2, v2: 0}
    annotations = sim.rs[v1]["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == "3"
    assert annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert sim.deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


def test_progress_deadline_exceeded() -> None:
    sim = RolloutSim(deployment(2, progressDeadlineSeconds=60))
    sim.run()
    sim.set_template("nginx:broken")
    sim.sync()  # the new ReplicaSet is created; its pods never become available
    stuck = deployment_plan(sim.deploy, list(sim.rs.values()), now=sim.now + timedelta(seconds=30))
    assert condition(stuck.status, "Progressing")["reason"] == "NewReplicaSetCreated"
    assert stuck.requeue_after == 30
    late = deployment_plan(sim.deploy, list(sim.rs.values()), now=sim.now + timedelta(seconds=61))
    progressing = condition(late.status, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert progressing["message"].endswith("has timed out progressing.")
    with pytest.raises(RolloutStatusError, match='deployment "web" exceeded its progress deadline'):
        rollout_status_message({**sim.deploy, "status": late.status})


def test_progressing_condition_tracks_progress() -> None:
    sim = RolloutSim(deployment(4, strategy=rolling(1, 0)))
    sim.run()
    sim.set_template("nginx:1.26")
    sim.sync()
    created = condition(sim.deploy["status"], "Progressing")
    sim.settle()
    sim.sync()
    updated = condition(sim.deploy["status"], "Progressing")
    assert updated["reason"] == "ReplicaSetUpdated" and updated["message"].endswith("is progressing.")
    assert updated["lastTransitionTime"] == created["lastTransitionTime"]
    assert updated["lastUpdateTime"] > created["lastUpdateTime"]


def test_replica_failure_is_promoted() -> None:
    sim = RolloutSim(deployment(1))
    sim.run()
    (rs,) = sim.rs.values()
    failure = {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": "quota",
        "lastTransitionTime": at(),
    }
    rs["status"]["conditions"] = [failure]
    status = deployment_status(sim.deploy, [rs], now=NOW)
    assert condition(status, "ReplicaFailure")["reason"] == "FailedCreate"


def test_hash_collision_bumps_collision_count() -> None:
    deploy = deployment(1)
    name = "web-" + compute_hash(deploy["spec"]["template"])
    squatter = replicaset(name, 0, template=template("nginx:other"))
    squatter["metadata"]["ownerReferences"] = [{"uid": "d-uid", "controller": True}]
    plan = deployment_plan(deploy, [squatter], now=NOW)
    assert plan.create is None and plan.status["collisionCount"] == 1
    deploy["status"] = plan.status
    retry = deployment_plan(deploy, [squatter], now=NOW)
    assert retry.create is not None and retry.create["metadata"]["name"] != name
    assert hash_collision(deploy, squatter)
    assert not hash_collision(deploy, {**retry.create, "metadata": {**retry.create["metadata"]}})


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "expected"),
    [
        ("25%", "25%", 10, (3, 2)),
        ("25%", "25%", 1, (1, 0)),
        (1, 0, 4, (1, 0)),
        ("1%", "1%", 2, (1, 0)),
        (0, "10%", 5, (0, 1)),
        ("0%", 0, 5, None),
        (0, 0, 5, None),
    ],
)
def test_resolve_fenceposts(
    surge: Any, unavailable: Any, replicas: int, expected: tuple[int, int] | None
) -> None:
    if expected is None:
        with pytest.raises(InvalidSpecError, match="may not be 0 when `maxSurge` is 0"):
            resolve_fenceposts(surge, unavailable, replicas)
    else:
        assert resolve_fenceposts(surge, unavailable, replicas) == expected


def test_invalid_strategy_and_empty_selector() -> None:
    with pytest.raises(InvalidSpecError, match="Unsupported value"):
        deployment_plan(deployment(strategy={"type": "BlueGreen"}), [], now=NOW)
    everything = deployment(generation=4, selector={})
    assert deployment_plan(everything, [], now=NOW) == DeploymentPlan(status={"observedGeneration": 4})


def test_rolling_update_plan_lists_the_passes_scales() -> None:
    deploy = deployment(3)
    assert rolling_update_plan(deploy, [], now=NOW) == [("web-" + compute_hash(template()), 3)]


@pytest.mark.parametrize(
    ("status", "spec_replicas", "message", "done"),
    [
        (
            {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 1},
            3,
            "1 out of 3 new replicas have been updated",
            False,
        ),
        (
            {"observedGeneration": 1, "replicas": 4, "updatedReplicas": 3},
            3,
            "1 old replicas are pending termination",
            False,
        ),
        (
            {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2},
            3,
            "2 of 3 updated replicas are available",
            False,
        ),
        (
            {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3},
            3,
            'deployment "web" successfully rolled out',
            True,
        ),
        ({"observedGeneration": 0}, 3, "Waiting for deployment spec update to be observed", False),
    ],
)
def test_rollout_status_messages(status: Obj, spec_replicas: int, message: str, done: bool) -> None:
    deploy = {**deployment(spec_replicas), "status": status}
    text, finished = rollout_status_message(deploy)
    assert message in text and text.endswith("\n") and finished is done


def test_rollout_status_revision_check() -> None:
    deploy = deployment()
    deploy["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "2"}
    with pytest.raises(
        RolloutStatusError, match=r"desired revision \(3\) is different from the running revision \(2\)"
    ):
        rollout_status_message(deploy, revision=3)


# --- Deployment → ReplicaSet → pods, read back by kubectl -----------------------------------------


class MiniCluster:
    """The three models wired together, with a kubelet that makes every pod ready at once."""

    def __init__(self, deploy: Obj) -> None:
        self.deploy = deploy
        self.sim = RolloutSim(deploy)
        self.pods: dict[str, Obj] = {}
        self.serial = itertools.count()
        self.fewest_ready: int | None = None

    def tick(self) -> None:
        self.sim.sync()
        for rs in self.sim.rs.values():
            plan = replicaset_diff(rs, self.pods.values(), now=self.sim.now)
            for body in plan.create:
                name = f"{body['metadata']['generateName']}{next(self.serial)}"
                body["metadata"].update(
                    name=name, uid=f"uid-{name}", creationTimestamp=format_time(self.sim.now)
                )
                body["status"] = {"phase": "Pending"}
                self.pods[name] = body
            for name in plan.delete:
                del self.pods[name]
        for p in self.pods.values():  # the kubelet
            if p["status"]["phase"] == "Pending":
                p["spec"]["nodeName"] = "n1"
                ready = {"type": "Ready", "status": "True", "lastTransitionTime": format_time(self.sim.now)}
                p["status"] = {"phase": "Running", "conditions": [ready]}
        for rs in self.sim.rs.values():
            rs["status"] = replicaset_status(rs, self.pods.values(), now=self.sim.now)
        ready_pods = sum(PodInfo.from_object(p).ready for p in self.pods.values())
        self.fewest_ready = ready_pods if self.fewest_ready is None else min(self.fewest_ready, ready_pods)

    def rollout(self, limit: int = 30) -> list[str]:
        messages = []
        for _ in range(limit):
            self.tick()
            message, done = rollout_status_message(self.deploy)
            messages.append(message)
            if done:
                return messages
        raise AssertionError(messages)


def test_kubectl_create_set_image_undo_and_scale() -> None:
    cluster = MiniCluster(deployment(3))  # kubectl create deployment web --image=nginx:1.25 --replicas=3
    assert cluster.rollout()[-1] == 'deployment "web" successfully rolled out\n'
    assert len(cluster.pods) == 3
    cluster.fewest_ready = None
    cluster.sim.set_template("nginx:1.26")  # kubectl set image
    cluster.rollout()
    images = {p["spec"]["containers"][0]["image"] for p in cluster.pods.values()}
    assert images == {"nginx:1.26"} and len(cluster.pods) == 3
    assert cluster.fewest_ready is not None and cluster.fewest_ready >= 3  # 25% of 3 rounds down to 0
    patch = rollback_patch(cluster.deploy, list(cluster.sim.rs.values()))  # kubectl rollout undo
    assert patch is not None
    cluster.deploy["spec"]["template"] = patch[0]["value"]
    cluster.deploy["metadata"]["annotations"] = patch[1]["value"]
    cluster.deploy["metadata"]["generation"] += 1
    cluster.rollout()
    assert {p["spec"]["containers"][0]["image"] for p in cluster.pods.values()} == {"nginx:1.25"}
    cluster.deploy["spec"]["replicas"] = 1  # kubectl scale --replicas=1
    cluster.deploy["metadata"]["generation"] += 1
    cluster.rollout()
    assert len(cluster.pods) == 1


def test_defaulted_deployment_restart() -> None:
    """What ``kubectl create deployment web --image=nginx`` stores, then ``kubectl rollout restart``."""
    deploy: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]},
            },
        },
        "status": {},
    }
    apply_defaults(deploy, "Deployment")
    cluster = MiniCluster(deploy)
    assert cluster.rollout()[-1] == 'deployment "web" successfully rolled out\n'
    (first,) = cluster.sim.rs
    restarted = {"kubectl.kubernetes.io/restartedAt": "2024-05-01T12:00:00Z"}
    deploy["spec"]["template"]["metadata"]["annotations"] = restarted
    deploy["metadata"]["generation"] += 1
    messages = cluster.rollout()
    assert messages[-2:] == [
        'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...\n',
        'deployment "web" successfully rolled out\n',
    ]
    assert cluster.sim.sizes()[first] == 0
    assert {
        p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] for p in cluster.pods.values()
    } == {"2024-05-01T12:00:00Z"}


# --- DaemonSet ------------------------------------------------------------------------------------


def node(name: str, *, labels: dict[str, str] | None = None, taints: list[Obj] | None = None) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or []},
    }


CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
NODES = [
    node("cp", labels={"node-role.kubernetes.io/control-plane": ""}, taints=[CONTROL_PLANE_TAINT]),
    node("w1", labels={"disk": "ssd"}),
    node("w2"),
]


def daemonset(*, strategy: Obj | None = None, generation: int = 1, **template_spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-uid", "generation": generation},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": template("agent:1", {"app": "agent"}, **template_spec),
            "updateStrategy": strategy
            or {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        },
    }


class DaemonSim:
    """The DaemonSet model with a scheduler that binds pods to their pinned node and a kubelet."""

    def __init__(self, ds: Obj, nodes: list[Obj]) -> None:
        self.ds, self.nodes = ds, nodes
        self.pods: dict[str, Obj] = {}
        self.serial = itertools.count()
        self.now = NOW
        self.fewest_available: int | None = None

    def sync(self) -> daemonset_model.DaemonSetPlan:
        self.now += timedelta(seconds=1)
        plan = daemonset_plan(self.ds, self.nodes, self.pods.values(), now=self.now)
        for body in plan.create:
            name = f"agent-{next(self.serial)}"
            body["metadata"].update(name=name, uid=f"uid-{name}", creationTimestamp=format_time(self.now))
            body["status"] = {"phase": "Pending"}
            self.pods[name] = body
        for name in plan.delete:
            del self.pods[name]
        self.ds["status"] = plan.status
        available = plan.status["numberAvailable"]
        self.fewest_available = (
            available if self.fewest_available is None else min(self.fewest_available, available)
        )
        return plan

    def kubelet(self) -> None:
        for p in self.pods.values():
            if p["status"]["phase"] == "Pending":
                p["spec"]["nodeName"] = PodInfo.from_object(p).target_node
                ready = {"type": "Ready", "status": "True", "lastTransitionTime": format_time(self.now)}
                p["status"] = {"phase": "Running", "conditions": [ready]}

    def run(self, limit: int = 30) -> list[daemonset_model.DaemonSetPlan]:
        plans: list[daemonset_model.DaemonSetPlan] = []
        for _ in range(limit):
            plan = self.sync()
            if plan.empty and daemonset_rollout_status_message(self.ds)[1]:
                return plans
            plans.append(plan)
            self.kubelet()
        raise AssertionError(plans)

    def placement(self) -> dict[str, str]:
        return {
            PodInfo.from_object(p).target_node: p["spec"]["containers"][0]["image"]
            for p in self.pods.values()
        }


def test_daemonset_skips_the_tainted_control_plane() -> None:
    plan = daemonset_plan(daemonset(), NODES, [], now=NOW)
    assert plan.nodes_to_create == ("w1", "w2")
    pod_body = plan.create[0]
    assert pod_body["metadata"]["generateName"] == "agent-"
    assert pod_body["metadata"]["namespace"] == "kube-system"
    assert pod_body["metadata"]["labels"] == {"app": "agent", "controller-revision-hash": plan.hash}
    assert pod_body["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    assert pod_body["spec"]["affinity"] == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["w1"]}]}
                ]
            }
        }
    }
    assert pod_body["spec"]["tolerations"] == [dict(t) for t in DAEMON_TOLERATIONS]
    assert "nodeName" not in pod_body["spec"]  # the scheduler binds it
    assert plan.status["desiredNumberScheduled"] == 2


def test_daemonset_tolerating_the_control_plane_runs_everywhere() -> None:
    ds = daemonset(tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}])
    sim = DaemonSim(ds, NODES)
    sim.run()
    assert set(sim.placement()) == {"cp", "w1", "w2"}
    status = sim.ds["status"]
    assert {
        k: status[k]
        for k in (
            "desiredNumberScheduled",
            "currentNumberScheduled",
            "numberReady",
            "numberAvailable",
            "updatedNumberScheduled",
            "numberMisscheduled",
            "numberUnavailable",
            "observedGeneration",
        )
    } == {
        "desiredNumberScheduled": 3,
        "currentNumberScheduled": 3,
        "numberReady": 3,
        "numberAvailable": 3,
        "updatedNumberScheduled": 3,
        "numberMisscheduled": 0,
        "numberUnavailable": 0,
        "observedGeneration": 1,
    }
    assert daemonset_rollout_status_message(sim.ds) == ('daemon set "agent" successfully rolled out\n', True)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"nodeSelector": {"disk": "ssd"}}, {"w1"}),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "disk", "operator": "NotIn", "values": ["ssd"]}
                                    ]
                                }
                            ]
                        }
                    }
                }
            },
            {"w2"},
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "disk", "operator": "Exists"}]},
                                {
                                    "matchFields": [
                                        {"key": "metadata.name", "operator": "In", "values": ["w2"]}
                                    ]
                                },
                            ]
                        }
                    }
                }
            },
            {"w1", "w2"},
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}
                    }
                }
            },
            set(),
        ),
        ({"nodeName": "w2"}, {"w2"}),
    ],
)
def test_daemonset_node_selection(spec: Obj, expected: set[str]) -> None:
    plan = daemonset_plan(daemonset(**spec), NODES, [], now=NOW)
    assert set(plan.nodes_to_create) == expected


def test_node_affinity_numeric_operators() -> None:
    big = node("big", labels={"cpus": "64"})
    terms = {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "cpus", "operator": "Gt", "values": ["8"]}]}]
    }
    spec = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": terms}}}
    assert node_affinity_matches(spec, big) and not node_affinity_matches(spec, node("small"))


def test_daemonset_follows_node_changes() -> None:
    sim = DaemonSim(daemonset(nodeSelector={"disk": "ssd"}), [node("w1", labels={"disk": "ssd"}), node("w2")])
    sim.run()
    assert set(sim.placement()) == {"w1"}
    sim.nodes[0]["spec"]["taints"] = [{"key": "maintenance", "effect": "NoSchedule"}]
    assert sim.sync().empty  # a running pod stays behind a NoSchedule taint
    assert node_should_run(sim.ds, sim.nodes[0]) == (False, True)
    assert sim.ds["status"]["numberMisscheduled"] == 1
    sim.nodes[0]["spec"]["taints"] = [{"key": "maintenance", "effect": "NoExecute"}]
    assert len(sim.sync().delete) == 1
    assert not sim.pods
    sim.nodes[0]["spec"]["taints"] = []
    sim.nodes[1]["metadata"]["labels"]["disk"] = "ssd"
    sim.run()
    assert set(sim.placement()) == {"w1", "w2"}
    del sim.nodes[1]["metadata"]["labels"]["disk"]
    assert len(sim.sync().delete) == 1


def test_daemonset_cleans_up_extra_failed_and_stray_pods() -> None:
    ds = daemonset()
    info_hash = daemonset_plan(ds, [], [], now=NOW).hash
    labels = {"app": "agent", "controller-revision-hash": info_hash}

    def ds_pod(name: str, node_name: str, **kw: Any) -> Obj:
        return pod(name, owner="ds-uid", labels=labels, node=node_name, namespace="kube-system", **kw)

    pods = [
        ds_pod("oldest", "w1", created=-500),
        ds_pod("extra", "w1", created=-10),
        ds_pod("failed", "w2", phase="Failed"),
        ds_pod("lost", "", created=-10),
    ]
    pods[3]["spec"]["affinity"] = daemon_pod(ds, "gone")["spec"]["affinity"]
    plan = daemonset_plan(ds, NODES, pods, now=NOW)
    assert set(plan.delete) == {"extra", "failed", "lost"}
    assert not plan.create  # w2 gets its pod once the failed one is gone


def test_daemonset_rolling_update_one_node_at_a_time() -> None:
    sim = DaemonSim(daemonset(), [*NODES[1:], node("w3")])
    sim.run()
    sim.ds["spec"]["template"] = template("agent:2", {"app": "agent"})
    sim.ds["metadata"]["generation"] = 2
    sim.fewest_available = None
    plans = sim.run()
    assert [len(p.delete) for p in plans] == [1, 0, 1, 0, 1, 0]
    assert [len(p.create) for p in plans] == [0, 1, 0, 1, 0, 1]
    assert set(sim.placement().values()) == {"agent:2"}
    assert sim.fewest_available == 2  # maxUnavailable 1 of 3
    assert sim.ds["status"]["updatedNumberScheduled"] == 3


def test_daemonset_rolling_update_with_surge() -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    sim = DaemonSim(daemonset(strategy=strategy), NODES[1:])
    sim.run()
    sim.ds["spec"]["template"] = template("agent:2", {"app": "agent"})
    sim.ds["metadata"]["generation"] = 2
    sim.fewest_available = None
    plans = sim.run()
    assert [(len(p.create), len(p.delete)) for p in plans] == [(1, 0), (0, 1), (1, 0), (0, 1)]
    assert sim.fewest_available == 2 and set(sim.placement().values()) == {"agent:2"}


def test_daemonset_rollout_status_messages() -> None:
    sim = DaemonSim(daemonset(), NODES[1:])
    sim.sync()
    assert daemonset_rollout_status_message(sim.ds) == (
        'Waiting for daemon set "agent" rollout to finish: 0 out of 2 new pods have been updated...\n',
        False,
    )
    sim.ds["metadata"]["generation"] = 5
    assert (
        daemonset_rollout_status_message(sim.ds)[0]
        == "Waiting for daemon set spec update to be observed...\n"
    )
    with pytest.raises(RolloutStatusError, match="only available for RollingUpdate"):
        daemonset_rollout_status_message(daemonset(strategy={"type": "OnDelete"}))


def test_daemonset_on_delete_never_replaces_running_pods() -> None:
    sim = DaemonSim(daemonset(strategy={"type": "OnDelete"}), NODES[1:])
    sim.sync()  # OnDelete has no rollout status: driven by hand
    sim.kubelet()
    sim.ds["spec"]["template"] = template("agent:2", {"app": "agent"})
    assert sim.sync().empty
    assert daemonset_status(sim.ds, sim.nodes, sim.pods.values(), now=sim.now)["updatedNumberScheduled"] == 0


def test_daemon_tolerations() -> None:
    spec: Obj = {
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }
        ],
        "hostNetwork": True,
    }
    add_daemon_tolerations(spec)
    keys = [t["key"] for t in spec["tolerations"]]
    assert keys.count("node.kubernetes.io/not-ready") == 1
    assert "tolerationSeconds" not in spec["tolerations"][0]  # replaced: infinite toleration
    assert keys[-1] == "node.kubernetes.io/network-unavailable"
    assert len(keys) == len(DAEMON_TOLERATIONS) + 1


def test_daemonset_uses_the_given_predicate() -> None:
    calls: list[tuple[str, str]] = []

    def fits(pod_spec: Any, candidate: Any) -> bool:
        calls.append((pod_spec["nodeName"], candidate["metadata"]["name"]))
        return bool(candidate["metadata"]["name"] == "w2")

    plan = daemonset_plan(daemonset(), NODES, [], fits=fits, now=NOW)
    assert plan.nodes_to_create == ("w2",)
    assert ("cp", "cp") in calls


def test_daemonset_status_counts_availability() -> None:
    ds = daemonset()
    ds["spec"]["minReadySeconds"] = 60
    info_hash = daemonset_plan(ds, [], [], now=NOW).hash
    labels = {"app": "agent", "controller-revision-hash": info_hash}
    pods = [
        pod("a", owner="ds-uid", labels=labels, node="w1", namespace="kube-system", ready_at=-100),
        pod("b", owner="ds-uid", labels={"app": "agent"}, node="w2", namespace="kube-system", ready_at=-10),
    ]
    plan = daemonset_plan(ds, NODES, pods, now=NOW)
    status = plan.status
    assert (status["numberReady"], status["numberAvailable"], status["updatedNumberScheduled"]) == (2, 1, 1)
    assert status["numberUnavailable"] == 1 and plan.requeue_after == 50


# --- the public surface ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", [workloads_model, replicaset_model, deployment_model, daemonset_model])
def test_exported_members(module: Any) -> None:
    exported = set(module.__all__)
    assert all(hasattr(module, name) for name in exported)
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
    }
    assert defined <= exported, defined - exported
