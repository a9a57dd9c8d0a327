"""``kubelite up`` end to end: real nodes in namespaces, real pods, real packets, nothing left behind.

Modelled on the sig-network conformance tests ("Networking Granular Checks: Pods": intra-pod and
node-to-pod communication over http and udp) which use agnhost netexec's ``/dial``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Kubectl, wait_for
from upcluster import AGNHOST, UpCluster, children_of, host_snapshot, running_ready, up_factory_fixture  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


def netexec_pod(name: str, node: str, **extra: Any) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          labels: {{app: {name}}}
        spec:
          nodeName: {node}
          containers:
          - name: netexec
            image: {AGNHOST}
            args: ["netexec", "--http-port=8080", "--udp-port=8081"]
            ports:
            - {{containerPort: 8080, protocol: TCP}}
            - {{containerPort: 8081, protocol: UDP}}
            readinessProbe:
              httpGet: {{path: /healthz, port: 8080}}
              periodSeconds: 1
        """
    )


def dial(
    cluster: UpCluster, from_ip: str, to_ip: str, port: int, protocol: str, request: str = "hostname"
) -> Any:
    url = f"http://{from_ip}:8080/dial?request={request}&protocol={protocol}&host={to_ip}&port={port}&tries=1"
    res = cluster.in_node(1, "curl", "-s", "--max-time", "10", url)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _apply(kubectl: Kubectl, text: str) -> None:
    kubectl.run("apply", "-f", "-", input=text)


@pytest.mark.parametrize(
    ("overlay", "cni"), [("vxlan", "kubelite"), ("host-gw", "kubelite"), ("vxlan", "reference")]
)
def test_pods_reach_each_other_across_nodes(
    up_factory: Callable[..., UpCluster], overlay: str, cni: str
) -> None:
    cluster = up_factory(nodes=2, overlay=overlay, cni=cni)
    kubectl = cluster.kubectl()
    nodes = json.loads(kubectl.run("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == [cluster.node_name(1), cluster.node_name(2)]
    for n in nodes:
        assert n["spec"]["podCIDR"]
    _apply(kubectl, netexec_pod("a1", cluster.node_name(1)))
    _apply(kubectl, netexec_pod("a2", cluster.node_name(1)))
    _apply(kubectl, netexec_pod("b1", cluster.node_name(2)))
    pods = {p: cluster.wait_pod(kubectl, "default", p, running_ready) for p in ("a1", "a2", "b1")}
    ip = {p: pod["status"]["podIP"] for p, pod in pods.items()}
    assert ip["a1"].rsplit(".", 1)[0] == ip["a2"].rsplit(".", 1)[0] != ip["b1"].rsplit(".", 1)[0]
    for src, dst in (("a1", "b1"), ("b1", "a1"), ("a1", "a2")):
        # TCP: the target answers /clientip with the address it saw: the source pod's own.
        res = dial(cluster, ip[src], ip[dst], 8080, "http", "clientip")
        assert res["errors"] == [] if "errors" in res else True
        assert [r.split(":")[0] for r in res["responses"]] == [ip[src]], res
        # UDP: the hostname of the pod on the other side.
        res = dial(cluster, ip[src], ip[dst], 8081, "udp", "hostname")
        assert res["responses"] == [dst], res
    # Node to pod (conformance "node-to-pod"): from node 2's namespace to a pod on node 1.
    res = cluster.in_node(2, "curl", "-s", "--max-time", "5", f"http://{ip['a1']}:8080/hostname")
    assert res.stdout == "a1", res


def test_logs_exec_and_port_forward(up_factory: Callable[..., UpCluster]) -> None:
    cluster = up_factory(nodes=1)
    for version in ("1.27", "1.33"):
        kubectl = cluster.kubectl(version)
        name = f"talk{version.replace('.', '')}"
        _apply(
            kubectl,
            textwrap.dedent(
                f"""\
                apiVersion: v1
                kind: Pod
                metadata: {{name: {name}}}
                spec:
                  containers:
                  - name: main
                    image: busybox
                    command: ["sh", "-c", "echo hello;echo oops >&2;while true; do echo tick; sleep 0.2;done"]
                  - name: web
                    image: {AGNHOST}
                    args: ["netexec", "--http-port=8080", "--udp-port=-1"]
                """
            ),
        )
        cluster.wait_pod(kubectl, "default", name, running_ready)

        def three_ticks(kubectl: Kubectl = kubectl, name: str = name) -> str:
            out = kubectl.run("logs", name, "-c", "main").stdout
            return out if out.count("tick") >= 3 else ""

        logs = wait_for("three ticks in the log", three_ticks)
        assert sorted(logs.splitlines()[:3]) == ["hello", "oops", "tick"], logs  # two pipes: order may vary
        tail = kubectl.run("logs", name, "-c", "main", "--tail=1").stdout
        assert tail == "tick\n", tail
        follow = subprocess.Popen(
            [str(kubectl.binary), "--kubeconfig", str(kubectl.kubeconfig), "logs", "-f", name, "-c", "main"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert follow.stdout is not None
            seen = [follow.stdout.readline() for _ in range(6)]
            assert "hello\n" in seen[:3] and seen[5] == "tick\n", seen
        finally:
            follow.kill()  # by PID, the process this test started
            follow.wait(10)
            assert follow.stdout is not None
            follow.stdout.close()
        out = kubectl.run(
            "exec", name, "-c", "main", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False
        )
        assert (out.returncode, out.stdout, out.stderr.splitlines()[0]) == (3, "out\n", "err")
        out = kubectl.run("exec", "-i", name, "-c", "main", "--", "cat", input="through stdin\n")
        assert out.stdout == "through stdin\n"
        # The two containers share the pod's localhost and hostname.
        out = kubectl.run("exec", name, "-c", "main", "--", "wget", "-qO-", "http://127.0.0.1:8080/hostname")
        assert out.stdout == name
        pf = subprocess.Popen(
            [
                str(kubectl.binary),
                "--kubeconfig",
                str(kubectl.kubeconfig),
                "port-forward",
                f"pod/{name}",
                ":8080",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert pf.stdout is not None
            line = pf.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 8080"
            port = int(line.split("127.0.0.1:")[1].split()[0])
            import urllib.request

            body = urllib.request.urlopen(
                f"http://127.0.0.1:{port}/echo?msg=through-port-forward", timeout=10
            ).read()
            assert body == b"through-port-forward"
        finally:
            pf.kill()
            pf.wait(10)
            assert pf.stdout is not None
            pf.stdout.close()


def test_pod_environment_hostname_and_hosts(up_factory: Callable[..., UpCluster]) -> None:
    cluster = up_factory(nodes=1)
    kubectl = cluster.kubectl()
    _apply(
        kubectl,
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: Service
            metadata: {name: fooservice}
            spec:
              selector: {app: nothing}
              ports:
              - {name: http, port: 8765, targetPort: 8080}
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: settings}
            data: {COLOR: blue}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {name: envpod}
            spec:
              hostname: myhost
              subdomain: sub
              containers:
              - name: main
                image: busybox
                command: ["sleep", "3600"]
                env:
                - {name: GREETING, value: "hi $(COLOR)"}
                envFrom:
                - configMapRef: {name: settings}
            """
        ),
    )
    cluster.wait_pod(kubectl, "default", "envpod", running_ready)
    env = dict(
        line.split("=", 1)
        for line in kubectl.run("exec", "envpod", "--", "env").stdout.splitlines()
        if "=" in line
    )
    svc = json.loads(kubectl.run("get", "svc", "fooservice", "-o", "json").stdout)
    assert env["FOOSERVICE_SERVICE_HOST"] == svc["spec"]["clusterIP"]
    assert env["FOOSERVICE_SERVICE_PORT"] == "8765"
    assert env["FOOSERVICE_PORT"] == f"tcp://{svc['spec']['clusterIP']}:8765"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["GREETING"] == "hi blue"
    assert kubectl.run("exec", "envpod", "--", "hostname").stdout.strip() == "myhost"
    hosts = kubectl.run("exec", "envpod", "--", "cat", "/etc/hosts").stdout
    pod_ip = cluster.pod(kubectl, "default", "envpod")["status"]["podIP"]
    assert f"{pod_ip}\tmyhost.sub.default.svc.cluster.local\tmyhost" in hosts
    resolv = kubectl.run("exec", "envpod", "--", "cat", "/etc/resolv.conf").stdout
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "options ndots:5" in resolv


def test_hostport_pods_with_different_host_ip_or_protocol_fit_on_one_node(
    up_factory: Callable[..., UpCluster],
) -> None:
    cluster = up_factory(nodes=1)
    kubectl = cluster.kubectl()
    node_ip = "172.30.0.11"
    docs = []
    for name, host_ip, proto in (
        ("hp1", "127.0.0.1", "TCP"),
        ("hp2", node_ip, "TCP"),
        ("hp3", node_ip, "UDP"),
    ):
        docs.append(
            textwrap.dedent(
                f"""\
                apiVersion: v1
                kind: Pod
                metadata: {{name: {name}}}
                spec:
                  containers:
                  - name: netexec
                    image: {AGNHOST}
                    args: ["netexec", "--http-port=8080", "--udp-port=8080"]
                    ports:
                    - {{containerPort: 8080, hostPort: 54323, hostIP: "{host_ip}", protocol: {proto}}}
                """
            )
        )
    _apply(kubectl, "---\n".join(docs))
    for name in ("hp1", "hp2", "hp3"):
        cluster.wait_pod(kubectl, "default", name, running_ready)
    res = cluster.in_host("curl", "-s", "--max-time", "5", f"http://{node_ip}:54323/hostname")
    assert res.stdout == "hp2", res
    res = cluster.in_node(1, "curl", "-s", "--max-time", "5", "http://127.0.0.1:54323/hostname")
    assert res.stdout == "hp1", res
    udp = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); "
        f"s.sendto(b'hostname', ('{node_ip}', 54323)); print(s.recv(100).decode())"
    )
    res = cluster.in_host("python3", "-c", udp)
    assert res.stdout.strip() == "hp3", res


def test_host_network_pod_uses_the_node_network(up_factory: Callable[..., UpCluster]) -> None:
    cluster = up_factory(nodes=1)
    kubectl = cluster.kubectl()
    _apply(
        kubectl,
        textwrap.dedent(
            f"""\
            apiVersion: v1
            kind: Pod
            metadata: {{name: hostnet}}
            spec:
              hostNetwork: true
              containers:
              - name: netexec
                image: {AGNHOST}
                args: ["netexec", "--http-port=18080", "--udp-port=-1"]
            """
        ),
    )
    pod = cluster.wait_pod(kubectl, "default", "hostnet", running_ready)
    assert pod["status"]["podIP"] == pod["status"]["hostIP"] == "172.30.0.11"
    res = cluster.in_host("curl", "-s", "--max-time", "5", "http://172.30.0.11:18080/hostname")
    assert res.stdout == cluster.node_name(1), res


def _waiting(pod: dict[str, Any], container: str = "main") -> dict[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs["name"] == container:
            return dict(cs)
    return {}


def test_failures_show_the_expected_state_and_leave_others_alone(
    up_factory: Callable[..., UpCluster],
) -> None:
    cluster = up_factory(nodes=1)
    kubectl = cluster.kubectl()
    _apply(kubectl, netexec_pod("bystander", cluster.node_name(1)))
    _apply(
        kubectl,
        textwrap.dedent(
            f"""\
            apiVersion: v1
            kind: Pod
            metadata: {{name: crasher}}
            spec:
              containers:
              - {{name: main, image: busybox, command: ["sh", "-c", "echo bye; exit 7"]}}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {{name: done}}
            spec:
              restartPolicy: Never
              containers:
              - {{name: main, image: busybox, command: ["true"]}}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {{name: noimage}}
            spec:
              containers:
              - {{name: main, image: "nginx:1.25"}}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {{name: badcmd}}
            spec:
              containers:
              - {{name: main, image: busybox, command: ["/no/such/binary"]}}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {{name: unhealthy}}
            spec:
              containers:
              - name: main
                image: {AGNHOST}
                args: ["netexec", "--http-port=8080", "--udp-port=-1"]
                livenessProbe:
                  httpGet: {{path: /healthz, port: 9999}}  # nothing listens there
                  periodSeconds: 1
                  failureThreshold: 1
            """
        ),
    )
    crasher = cluster.wait_pod(
        kubectl,
        "default",
        "crasher",
        lambda p: (
            _waiting(p).get("restartCount", 0) >= 1
            and (_waiting(p).get("lastState") or {}).get("terminated", {}).get("exitCode") == 7
        ),
    )
    assert (_waiting(crasher).get("lastState") or {})["terminated"]["reason"] == "Error"
    prev = kubectl.run("logs", "crasher", "--previous").stdout
    assert prev == "bye\n"
    cluster.wait_pod(
        kubectl,
        "default",
        "crasher",
        lambda p: (_waiting(p).get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff",
    )
    done = cluster.wait_pod(kubectl, "default", "done", lambda p: p["status"].get("phase") == "Succeeded")
    assert _waiting(done)["state"]["terminated"]["reason"] == "Completed"
    noimage = cluster.wait_pod(
        kubectl,
        "default",
        "noimage",
        lambda p: (
            (_waiting(p).get("state") or {}).get("waiting", {}).get("reason")
            in ("ErrImagePull", "ImagePullBackOff")
        ),
    )
    assert "nginx:1.25" in _waiting(noimage)["state"]["waiting"].get("message", "")
    badcmd = cluster.wait_pod(
        kubectl,
        "default",
        "badcmd",
        lambda p: (
            (_waiting(p).get("lastState") or _waiting(p).get("state") or {})
            .get("terminated", {})
            .get("reason")
            == "StartError"
        ),
    )
    assert "/no/such/binary" in json.dumps(_waiting(badcmd))
    cluster.wait_pod(kubectl, "default", "unhealthy", lambda p: _waiting(p).get("restartCount", 0) >= 1)
    events = kubectl.run(
        "get", "events", "--field-selector", "involvedObject.name=unhealthy", "-o", "json"
    ).stdout
    assert "Liveness probe failed" in events
    bystander = cluster.wait_pod(kubectl, "default", "bystander", running_ready)
    assert _waiting(bystander, "netexec")["restartCount"] == 0


def test_delete_pod_runs_graceful_termination_and_frees_the_netns(
    up_factory: Callable[..., UpCluster],
) -> None:
    cluster = up_factory(nodes=1)
    kubectl = cluster.kubectl()
    _apply(kubectl, netexec_pod("gone", cluster.node_name(1)))
    cluster.wait_pod(kubectl, "default", "gone", running_ready)
    before = [n for n in host_netns_names() if n.startswith(cluster.node_name(1) + "-")]
    assert len(before) == 1
    start = time.monotonic()
    kubectl.run("delete", "pod", "gone", "--wait=true", timeout=60)
    assert time.monotonic() - start < 20
    wait_for(
        "the pod's netns to go",
        lambda: not [n for n in host_netns_names() if n.startswith(cluster.node_name(1) + "-")],
    )
    # A container that ignores SIGTERM is killed when its grace period ends.
    _apply(
        kubectl,
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: Pod
            metadata: {name: stubborn}
            spec:
              terminationGracePeriodSeconds: 2
              containers:
              - {name: main, image: busybox, command: ["sh", "-c", "trap '' TERM; while :; do sleep 1;done"]}
            """
        ),
    )
    cluster.wait_pod(kubectl, "default", "stubborn", running_ready)
    start = time.monotonic()
    kubectl.run("delete", "pod", "stubborn", "--wait=true", timeout=60)
    took = time.monotonic() - start
    assert 1.5 < took < 10, took


def host_netns_names() -> list[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [n["name"] for n in json.loads(out or "[]")]


def test_up_leaves_nothing_behind(up_factory: Callable[..., UpCluster]) -> None:
    before = host_snapshot()
    import os

    kids_before = set(children_of(os.getpid()))
    cluster = up_factory(nodes=2)
    kubectl = cluster.kubectl()
    _apply(kubectl, netexec_pod("p1", cluster.node_name(1)))
    _apply(kubectl, netexec_pod("p2", cluster.node_name(2)))
    cluster.wait_pod(kubectl, "default", "p1", running_ready)
    cluster.wait_pod(kubectl, "default", "p2", running_ready)
    assert [n for n in host_netns_names() if n.startswith(cluster.name + "-")]
    assert cluster.stop() == 0, cluster.log_text()
    after = host_snapshot()
    assert after == before
    assert not [n for n in host_netns_names() if n.startswith(cluster.name + "-") or n == cluster.host_netns]
    assert set(children_of(os.getpid())) <= kids_before
    assert not (cluster.data_dir / "up-state.json").exists()


def test_up_failing_midway_cleans_up(up_factory: Callable[..., UpCluster], tmp_path: Any) -> None:
    before = host_snapshot()
    # A store that cannot be reached: the node network is built, then the server cannot start.
    cluster = UpCluster(tmp_path / "fail", nodes=2, extra=("--store", "etcd://127.0.0.1:1"))
    with pytest.raises(AssertionError, match="did not come up"):
        cluster.start(timeout=60)
    assert cluster.proc is not None and cluster.proc.returncode == 1
    assert host_snapshot() == before
    assert not [n for n in host_netns_names() if n.startswith(cluster.name + "-") or n == cluster.host_netns]


def test_down_cleans_up_after_a_killed_up(up_factory: Callable[..., UpCluster]) -> None:
    before = host_snapshot()
    cluster = up_factory(nodes=1)
    kubectl = cluster.kubectl()
    _apply(kubectl, netexec_pod("orphan", cluster.node_name(1)))
    cluster.wait_pod(kubectl, "default", "orphan", running_ready)
    assert cluster.proc is not None
    cluster.proc.kill()  # SIGKILL by PID: `up` gets no chance to clean up
    cluster.proc.wait(10)
    assert [n for n in host_netns_names() if n.startswith(cluster.name + "-")]
    res = subprocess.run(
        [sys.executable, "-m", "kubelite", "down", "--data-dir", str(cluster.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert not [n for n in host_netns_names() if n.startswith(cluster.name + "-") or n == cluster.host_netns]
    assert host_snapshot() == before


def test_up_refuses_ranges_that_overlap_the_hosts_routes(tmp_path: Any) -> None:
    cluster = UpCluster(tmp_path / "overlap", nodes=1)
    ns = cluster.host_netns
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        # The lab "host" already has a route into the default node network.
        veth = ["link", "add", "d0", "type", "veth", "peer", "name", "d1"]
        subprocess.run(["ip", "-n", ns, *veth], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "172.30.0.200/16", "dev", "d0"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "d0", "up"], check=True)
        res = subprocess.run(cluster.argv(), capture_output=True, text=True, timeout=60)
        assert res.returncode == 1
        assert (
            "the node network (--node-cidr) 172.30.0.0/24 overlaps the host's route to 172.30.0.0/16"
            in res.stderr
        )
        assert "choose other ranges" in res.stderr
        assert not [n for n in host_netns_names() if n.startswith(cluster.name + "-")]
        assert not (cluster.data_dir / "up-state.json").exists()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
