"""ReplicaSet, Deployment and DaemonSet controllers against a real server, driven by real kubectl.

    kubelite server --controllers none        (its own process, this module's ``server``)
          ▲ HTTPS
          ├── ControllerManager(HttpClient)    replicaset, deployment, daemonset, endpoint, endpointslice
          ├── FakeKubelet(bind_unscheduled)    3 nodes (one a tainted control plane); binds pods,
          │                                    makes them Running / Ready, finishes deletions
          └── kubectl 1.27 / 1.33, and plain HTTP reads for the checks

Until the node agent and the scheduler run in the server, the FakeKubelet stands in for both
through the API, as they will do it. Garbage collection is another controller's: no cascade here.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import Http, Kubectl, ServerProcess, wait_for
from fakekubelet import FakeKubelet, LoopThread, fake_nodes

from kubelite.client.http import HttpClient
from kubelite.controllers.daemonset import DaemonSetController
from kubelite.controllers.deployment import DeploymentController
from kubelite.controllers.manager import ControllerManager, ControllerOptions, builtin_factories
from kubelite.controllers.replicaset import ReplicaSetController

pytestmark = [pytest.mark.kubectl]

Obj = dict[str, Any]
NODES = fake_nodes(3, control_plane=True, prefix="wl")
WORKERS = {n.name for n in NODES if not n.taints}
ROLLOUT_TIMEOUT = "30s"


# --- the cluster ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """This module's own server, without built-in controllers (overrides conftest's ``server``,
    so ``kubectl`` and ``namespace`` use it): the controllers under test run in this process."""
    srv = ServerProcess(tmp_path_factory.mktemp("workloads"), extra_args=["--controllers", "none"]).start()
    try:
        yield srv
    finally:
        srv.stop()


@dataclass
class Cluster:
    http: Http
    kubelet: FakeKubelet

    def get(self, path: str) -> Obj:
        resp = self.http.request("GET", path)
        assert resp.status_code == 200, f"GET {path}: {resp.status_code} {resp.text}"
        result: Obj = resp.json()
        return result

    def pods(self, ns: str, selector: str = "") -> list[Obj]:
        query = f"?labelSelector={selector}" if selector else ""
        items: list[Obj] = self.get(f"/api/v1/namespaces/{ns}/pods{query}")["items"]
        return items

    def replicasets(self, ns: str) -> list[Obj]:
        items: list[Obj] = self.get(f"/apis/apps/v1/namespaces/{ns}/replicasets")["items"]
        return items

    def deployment(self, ns: str, name: str) -> Obj:
        return self.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")

    def ready_pods(self, ns: str, selector: str = "") -> list[Obj]:
        """Pods not being deleted that are Running and Ready."""
        return [p for p in self.pods(ns, selector) if live(p) and ready(p)]


def live(pod: Obj) -> bool:
    return "deletionTimestamp" not in pod["metadata"]


def ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return status.get("phase") == "Running" and conditions.get("Ready") == "True"


def owner_uid(obj: Obj) -> str | None:
    refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")]
    return refs[0]["uid"] if refs else None


@pytest.fixture(scope="module")
def cluster(server: ServerProcess) -> Iterator[Cluster]:
    builtin = builtin_factories()
    factories = {
        "replicaset": ReplicaSetController,
        "deployment": DeploymentController,
        "daemonset": DaemonSetController,
        "endpoint": builtin["endpoint"],
        "endpointslice": builtin["endpointslice"],
    }
    with contextlib.ExitStack() as stack:
        loop = stack.enter_context(LoopThread("workload-controllers"))
        client = HttpClient.from_kubeconfig(server.kubeconfig)
        stack.callback(lambda: loop.run(client.close()))
        kubelet = FakeKubelet(server.kubeconfig, NODES, bind_unscheduled=True)
        loop.run(kubelet.start())
        stack.callback(lambda: loop.run(kubelet.stop()))
        manager = ControllerManager(client, ControllerOptions(), factories=factories)
        loop.run(manager.start())
        stack.callback(lambda: loop.run(manager.stop()))
        http = Http(server)
        stack.callback(http.close)
        yield Cluster(http, kubelet)


def rollout_status(kubectl: Kubectl, ns: str, what: str) -> str:
    res = kubectl.run("rollout", "status", what, "-n", ns, f"--timeout={ROLLOUT_TIMEOUT}", timeout=45)
    assert "successfully rolled out" in res.stdout, res.stdout + res.stderr
    return res.stdout


# --- Deployments ---------------------------------------------------------------------------------


def test_create_scale_expose(kubectl: Kubectl, namespace: str, cluster: Cluster) -> None:
    ns = namespace
    kubectl.run("create", "deployment", "web", "--image=busybox", "--replicas=3", "-n", ns)
    rollout_status(kubectl, ns, "deployment/web")
    pods = wait_for(
        "3 ready pods",
        lambda: len(cluster.ready_pods(ns, "app=web")) == 3 and cluster.ready_pods(ns, "app=web"),
    )
    assert {p["spec"]["nodeName"] for p in pods} <= WORKERS, "a pod landed on the tainted control plane"
    (rs,) = cluster.replicasets(ns)
    deploy = cluster.deployment(ns, "web")
    assert owner_uid(rs) == deploy["metadata"]["uid"]
    assert {owner_uid(p) for p in pods} == {rs["metadata"]["uid"]}
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert deploy["status"]["readyReplicas"] == deploy["status"]["availableReplicas"] == 3

    kubectl.run("expose", "deployment", "web", "--port=80", "--target-port=8080", "-n", ns)

    def endpoint_ips() -> list[str]:
        resp = cluster.http.request("GET", f"/api/v1/namespaces/{ns}/endpoints/web")
        if resp.status_code != 200:
            return []
        subsets = resp.json().get("subsets") or []
        assert all(p["port"] == 8080 for s in subsets for p in s.get("ports") or [])
        return sorted(a["ip"] for s in subsets for a in s.get("addresses") or [])

    def pod_ips() -> list[str]:
        return sorted(p["status"]["podIP"] for p in cluster.ready_pods(ns, "app=web"))

    wait_for("endpoints for the 3 pods", lambda: endpoint_ips() == pod_ips() and len(pod_ips()) == 3)

    kubectl.run("scale", "deployment/web", "--replicas=5", "-n", ns)
    rollout_status(kubectl, ns, "deployment/web")
    wait_for("endpoints for 5 pods", lambda: endpoint_ips() == pod_ips() and len(pod_ips()) == 5)

    kubectl.run("scale", "deployment/web", "--replicas=1", "-n", ns)
    rollout_status(kubectl, ns, "deployment/web")
    wait_for("1 pod left", lambda: len(cluster.pods(ns, "app=web")) == 1)
    wait_for("endpoints for 1 pod", lambda: endpoint_ips() == pod_ips() and len(pod_ips()) == 1)

    # A pod deleted behind the ReplicaSet's back is replaced.
    (only,) = cluster.pods(ns, "app=web")
    kubectl.run("delete", "pod", only["metadata"]["name"], "-n", ns)
    replaced = wait_for("a replacement pod", lambda: cluster.ready_pods(ns, "app=web"))
    assert [p["metadata"]["uid"] for p in replaced] != [only["metadata"]["uid"]]

    events = kubectl.run("get", "events", "-n", ns, "-o", "json").stdout
    messages = {(e["reason"], e["message"]) for e in json.loads(events)["items"]}
    rs_name = rs["metadata"]["name"]
    assert ("ScalingReplicaSet", f"Scaled up replica set {rs_name} to 3 from 0") in messages
    assert ("ScalingReplicaSet", f"Scaled up replica set {rs_name} to 5 from 3") in messages
    assert ("ScalingReplicaSet", f"Scaled down replica set {rs_name} to 1 from 5") in messages
    assert {r for r, m in messages if m.startswith(("Created pod: web-", "Deleted pod: web-"))} == {
        "SuccessfulCreate",
        "SuccessfulDelete",
    }


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: busybox, image: "busybox:1.35"}]}
"""


@dataclass
class Sample:
    live: int
    ready: int
    images: frozenset[str]
    rs_replicas: int


def test_rolling_update_and_undo(kubectl: Kubectl, namespace: str, cluster: Cluster) -> None:
    """maxSurge 1 / maxUnavailable 1 over 4 replicas: never more than 5 pods, never fewer than 3
    ready, sampled while the fake kubelet holds each new pod back 0.3 s."""
    ns = namespace
    kubectl.run("apply", "-n", ns, "-f", "-", input=DEPLOYMENT)
    rollout_status(kubectl, ns, "deployment/web")

    def sample() -> Sample:
        pods = [p for p in cluster.pods(ns, "app=web") if live(p)]
        return Sample(
            live=len(pods),
            ready=sum(ready(p) for p in pods),
            images=frozenset(p["spec"]["containers"][0]["image"] for p in pods),
            rs_replicas=sum(rs["spec"]["replicas"] for rs in cluster.replicasets(ns)),
        )

    def roll(*args: str) -> list[Sample]:
        """Run a kubectl rollout command, sample until ``rollout status`` says it is done."""
        kubectl.run(*args, "-n", ns)
        status = subprocess.Popen(
            [
                str(kubectl.binary),
                "rollout",
                "status",
                "deployment/web",
                "-n",
                ns,
                f"--timeout={ROLLOUT_TIMEOUT}",
            ],
            env=kubectl.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        samples = []
        deadline = time.monotonic() + 45
        try:
            while status.poll() is None and time.monotonic() < deadline:
                samples.append(sample())
            out, _ = status.communicate(timeout=45)
        finally:
            if status.poll() is None:
                status.kill()
                status.communicate()
        assert status.returncode == 0 and "successfully rolled out" in out, out
        samples.append(sample())
        return samples

    cluster.kubelet.ready_delay = 0.3
    try:
        samples = roll("set", "image", "deployment/web", "busybox=busybox:1.36")
    finally:
        cluster.kubelet.ready_delay = 0.0
    assert max(s.live for s in samples) <= 5, samples
    assert max(s.rs_replicas for s in samples) <= 5, samples
    assert min(s.ready for s in samples) >= 3, samples
    assert any(s.images == {"busybox:1.35", "busybox:1.36"} for s in samples), "no rolling overlap seen"
    assert samples[-1] == Sample(4, 4, frozenset({"busybox:1.36"}), 4)
    by_revision = {
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: rs
        for rs in cluster.replicasets(ns)
    }
    assert sorted(by_revision) == ["1", "2"]
    assert by_revision["1"]["spec"]["replicas"] == 0 and by_revision["2"]["spec"]["replicas"] == 4

    samples = roll("rollout", "undo", "deployment/web")
    assert samples[-1] == Sample(4, 4, frozenset({"busybox:1.35"}), 4)
    assert min(s.ready for s in samples) >= 3, samples
    deploy = cluster.deployment(ns, "web")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.35"
    revisions = {
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: rs["spec"]["replicas"]
        for rs in cluster.replicasets(ns)
    }
    assert revisions == {"2": 0, "3": 4}, "the undo should make revision 1's ReplicaSet revision 3"

    samples = roll("rollout", "restart", "deployment/web")
    assert samples[-1].live == samples[-1].ready == 4
    assert len(cluster.replicasets(ns)) == 3
    history = kubectl.run("rollout", "history", "deployment/web", "-n", ns).stdout
    assert [line.split()[0] for line in history.splitlines() if line[:1].isdigit()] == ["2", "3", "4"]


# --- DaemonSets and ReplicaSets --------------------------------------------------------------------

DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: busybox}]}
"""


def test_daemonset_skips_the_tainted_control_plane(
    kubectl: Kubectl, namespace: str, cluster: Cluster
) -> None:
    ns = namespace
    kubectl.run("apply", "-n", ns, "-f", "-", input=DAEMONSET)
    rollout_status(kubectl, ns, "daemonset/agent")
    pods = cluster.ready_pods(ns, "app=agent")
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(WORKERS)
    ds = cluster.get(f"/apis/apps/v1/namespaces/{ns}/daemonsets/agent")
    status = ds["status"]
    assert (status["desiredNumberScheduled"], status["currentNumberScheduled"], status["numberReady"]) == (
        2,
        2,
        2,
    )
    assert status["numberMisscheduled"] == 0

    # Tolerating the control-plane taint puts a third pod there.
    toleration = {
        "key": "node-role.kubernetes.io/control-plane",
        "operator": "Exists",
        "effect": "NoSchedule",
    }
    patch = {"spec": {"template": {"spec": {"tolerations": [toleration]}}}}
    kubectl.run("patch", "daemonset", "agent", "-n", ns, "-p", json.dumps(patch))
    rollout_status(kubectl, ns, "daemonset/agent")
    wait_for(
        "3 daemon pods",
        lambda: len(cluster.ready_pods(ns, "app=agent")) == 3 == len(cluster.pods(ns, "app=agent")),
    )
    assert {p["spec"]["nodeName"] for p in cluster.pods(ns, "app=agent")} == {n.name for n in NODES}


REPLICASET = """
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: cache}
spec:
  replicas: 2
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec: {containers: [{name: cache, image: busybox}]}
"""


def test_replicaset_adopts_and_releases(kubectl: Kubectl, namespace: str, cluster: Cluster) -> None:
    ns = namespace
    kubectl.run("run", "orphan", "--image=busybox", "--labels=app=cache", "-n", ns)
    wait_for("the orphan running", lambda: cluster.ready_pods(ns, "app=cache"))
    kubectl.run("apply", "-n", ns, "-f", "-", input=REPLICASET)
    rs = cluster.get(f"/apis/apps/v1/namespaces/{ns}/replicasets/cache")
    uid = rs["metadata"]["uid"]

    def owned() -> list[Obj]:
        return [p for p in cluster.ready_pods(ns, "app=cache") if owner_uid(p) == uid]

    pods = wait_for("2 pods owned, the orphan adopted", lambda: len(owned()) == 2 and owned())
    assert "orphan" in {p["metadata"]["name"] for p in pods}
    assert len(cluster.pods(ns)) == 2, "adopting the orphan should leave one pod to create, not two"

    kubectl.run("label", "pod", "orphan", "app=other", "--overwrite", "-n", ns)
    wait_for(
        "the relabelled pod released",
        lambda: owner_uid(cluster.get(f"/api/v1/namespaces/{ns}/pods/orphan")) is None,
    )
    pods = wait_for("a replacement", lambda: len(owned()) == 2 and owned())
    assert "orphan" not in {p["metadata"]["name"] for p in pods}

    def rs_status() -> tuple[int, int, int, int]:
        s = cluster.get(f"/apis/apps/v1/namespaces/{ns}/replicasets/cache")["status"]
        return (
            s.get("replicas"),
            s.get("readyReplicas"),
            s.get("availableReplicas"),
            s.get("observedGeneration"),
        )

    wait_for(
        "status 2 / 2 ready / 2 available", lambda: rs_status() == (2, 2, 2, rs["metadata"]["generation"])
    )
