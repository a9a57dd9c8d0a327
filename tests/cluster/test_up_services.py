"""Services end to end in a `kubelite up` cluster: the seed manifests reach real pods through the
service proxy of each node (ClusterIP from a pod, NodePort 30036 on every node IP from outside the
nodes, externalIPs and LoadBalancer IPs from the node network)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Kubectl, wait_for
from upcluster import AGNHOST, UpCluster, ip_json, running_ready, up_factory_fixture  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seeds"


def backends(kubectl: Kubectl, label: str, port: int, nodes: list[str]) -> None:
    docs = []
    for i, node in enumerate(nodes):
        docs.append(
            textwrap.dedent(
                f"""\
                apiVersion: v1
                kind: Pod
                metadata: {{name: {label.lower()}-{i}, labels: {{app: {label}}}}}
                spec:
                  nodeName: {node}
                  containers:
                  - name: netexec
                    image: {AGNHOST}
                    args: ["netexec", "--http-port={port}", "--udp-port={port}"]
                    readinessProbe: {{tcpSocket: {{port: {port}}}, periodSeconds: 1}}
                """
            )
        )
    kubectl.run("apply", "-f", "-", input="---\n".join(docs))


@pytest.mark.parametrize("mode", ["nftables", "iptables", "userspace"])
def test_seed_services_reach_pods(up_factory: Callable[..., UpCluster], mode: str) -> None:
    cluster = up_factory(nodes=2, extra=("--proxy-mode", mode))
    kubectl = cluster.kubectl()
    nodes = [cluster.node_name(1), cluster.node_name(2)]
    backends(kubectl, "my-app", 80, nodes)
    kubectl.run(
        "run",
        "client",
        f"--image={AGNHOST}",
        "--overrides",
        json.dumps({"spec": {"nodeName": nodes[0]}}),
        "--",
        "pause",
    )
    for name in ("my-app-0", "my-app-1", "client"):
        cluster.wait_pod(kubectl, "default", name, running_ready)
    kubectl.run("apply", "-f", str(SEEDS / "001-01-service-my-internal-service.yaml"))
    kubectl.run("apply", "-f", str(SEEDS / "001-02-service-my-nodeport-service.yaml"))
    cip = kubectl.run("get", "svc", "my-internal-service", "-o", "jsonpath={.spec.clusterIP}").stdout

    def names_from_pod(url: str, tries: int = 12) -> set[str]:
        seen = set()
        for _ in range(tries):
            res = kubectl.run("exec", "client", "--", "wget", "-qO-", url, check=False)
            if res.returncode == 0:
                seen.add(res.stdout.strip())
        return seen

    got = wait_for(
        "both backends through the ClusterIP",
        lambda: names_from_pod(f"http://{cip}/hostname") == {"my-app-0", "my-app-1"},
        30,
    )
    assert got
    # NodePort 30036 on every node IP, from the host side (outside the nodes), also on a node with
    # no local endpoint for the chosen backend.
    for node_ip in ("172.30.0.11", "172.30.0.12"):
        res = cluster.in_host("curl", "-s", "--max-time", "5", f"http://{node_ip}:30036/hostname")
        assert res.stdout in ("my-app-0", "my-app-1"), res


@pytest.mark.parametrize("mode", ["nftables", "iptables", "userspace"])
def test_seed_loadbalancer_and_external_ips(up_factory: Callable[..., UpCluster], mode: str) -> None:
    # The seeds hard-code clusterIP 10.0.171.239 and loadBalancerIP 78.11.24.19: give the cluster a
    # service range and a LoadBalancer pool that contain them (inside the lab only).
    cluster = up_factory(
        nodes=2,
        extra=(
            "--service-cidr",
            "10.0.0.0/16",
            "--loadbalancer-pool",
            "172.30.0.200-172.30.0.254,78.11.24.19/32",
            "--proxy-mode",
            mode,
        ),
    )
    kubectl = cluster.kubectl()
    backends(kubectl, "MyApp", 9376, [cluster.node_name(1), cluster.node_name(2)])
    for i in range(2):
        cluster.wait_pod(kubectl, "default", f"myapp-{i}", running_ready)
    # The seed's LoadBalancer IP is outside the node network: the host puts it on the node network's
    # link (as a router on that segment would) and the elected node answers ARP for it. externalIPs
    # are never announced (Kubernetes leaves routing them to the admin): route that one via node 1.
    res = cluster.in_host("ip", "route", "add", "78.11.24.19/32", "dev", f"kl-{cluster.name}")
    assert res.returncode == 0, res.stderr
    res = cluster.in_host("ip", "route", "add", "80.11.12.10/32", "via", "172.30.0.11")
    assert res.returncode == 0, res.stderr
    kubectl.run("apply", "-f", str(SEEDS / "003-06-service-my-service.yaml"))
    lb = wait_for(
        "the LoadBalancer address",
        lambda: (
            kubectl.run(
                "get", "svc", "my-service", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"
            ).stdout
        ),
    )
    assert lb == "78.11.24.19"
    got = wait_for(
        "the LoadBalancer IP to answer",
        lambda: cluster.in_host("curl", "-s", "--max-time", "3", "http://78.11.24.19/hostname").stdout,
        30,
    )
    assert got in ("myapp-0", "myapp-1")
    # The ARP answer came from exactly one node's eth0, the same one every time.
    macs = {cluster.in_node(i, "cat", "/sys/class/net/eth0/address").stdout.strip() for i in (1, 2)}
    neigh = ip_json("-n", cluster.host_netns, "neigh", "show", "78.11.24.19")
    assert [n.get("lladdr") for n in neigh] and neigh[0]["lladdr"] in macs, neigh
    # An address from the default pool on the node network needs nothing at all on the host.
    kubectl.run("expose", "pod", "myapp-0", "--name", "pooled", "--type", "LoadBalancer", "--port", "80",
                "--target-port", "9376")  # fmt: skip
    pooled = wait_for(
        "a pool address",
        lambda: (
            kubectl.run("get", "svc", "pooled", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}").stdout
        ),
    )
    assert pooled.startswith("172.30.0.2"), pooled
    got = wait_for(
        "the pool address to answer",
        lambda: cluster.in_host("curl", "-s", "--max-time", "3", f"http://{pooled}/hostname").stdout,
        30,
    )
    assert got in ("myapp-0", "myapp-1")  # the exposed pod's labels select both

    # loadBalancerSourceRanges: a range without the host's address (172.30.0.1) drops it; adding it
    # lets it in.
    def fence(ranges: list[str]) -> None:
        patch = json.dumps({"spec": {"loadBalancerSourceRanges": ranges}})
        kubectl.run("patch", "svc", "pooled", "--type=merge", "-p", patch)

    def ask_pooled() -> str:
        return cluster.in_host("curl", "-s", "--max-time", "1", f"http://{pooled}/hostname").stdout

    fence(["203.0.113.0/24"])
    assert wait_for("other sources to be dropped", lambda: ask_pooled() == "", 30)
    fence(["203.0.113.0/24", "172.30.0.1/32"])
    assert wait_for("the host to be let in", lambda: ask_pooled() in ("myapp-0", "myapp-1"), 30)
    kubectl.run("delete", "svc", "my-service")
    kubectl.run("apply", "-f", str(SEEDS / "003-10-service-my-service.yaml"))
    got = wait_for(
        "the externalIP to answer",
        lambda: cluster.in_host("curl", "-s", "--max-time", "3", "http://80.11.12.10/hostname").stdout,
        30,
    )
    assert got in ("myapp-0", "myapp-1")


@pytest.mark.parametrize("mode", ["nftables", "iptables", "userspace"])
def test_service_type_changes_follow_in_the_data_path(
    up_factory: Callable[..., UpCluster], mode: str
) -> None:
    """The conformance type changes: ExternalName -> ClusterIP -> ExternalName, ExternalName ->
    NodePort -> ExternalName; traffic follows each step (and stops when it must)."""
    cluster = up_factory(nodes=1, extra=("--proxy-mode", mode))
    kubectl = cluster.kubectl()
    backends(kubectl, "tc", 8080, [cluster.node_name(1)])
    cluster.wait_pod(kubectl, "default", "tc-0", running_ready)

    def apply(spec: dict[str, object]) -> None:
        doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "tc"}, "spec": spec}
        kubectl.run("apply", "-f", "-", input=json.dumps(doc))

    def answer(url: str) -> str:
        return cluster.in_node(1, "curl", "-s", "--max-time", "2", url).stdout

    def from_host(url: str) -> str:
        return cluster.in_host("curl", "-s", "--max-time", "2", url).stdout

    to_external_name = {
        "type": "ExternalName",
        "externalName": "example.invalid",
        "clusterIP": "",
        "clusterIPs": None,
        "ports": None,
        "selector": None,
    }
    to_node_port = {
        "type": "NodePort",
        "externalName": None,
        "selector": {"app": "tc"},
        "ports": [{"port": 80, "targetPort": 8080}],
    }

    def patch(spec: dict[str, object]) -> None:
        kubectl.run("patch", "svc", "tc", "--type=merge", "-p", json.dumps({"spec": spec}))

    apply({"type": "ExternalName", "externalName": "example.invalid"})
    apply({"type": "ClusterIP", "selector": {"app": "tc"}, "ports": [{"port": 80, "targetPort": 8080}]})
    cip = kubectl.run("get", "svc", "tc", "-o", "jsonpath={.spec.clusterIP}").stdout
    url = f"http://{cip}/hostname"
    assert wait_for("ExternalName -> ClusterIP to carry traffic", lambda: answer(url) == "tc-0", 30)
    patch(to_external_name)
    assert wait_for("ClusterIP -> ExternalName to stop traffic", lambda: answer(url) == "", 30)
    patch(to_node_port)
    node_port = kubectl.run("get", "svc", "tc", "-o", "jsonpath={.spec.ports[0].nodePort}").stdout
    url = f"http://172.30.0.11:{node_port}/hostname"
    assert wait_for("ExternalName -> NodePort to carry traffic", lambda: from_host(url) == "tc-0", 30)
    patch(to_external_name)
    assert wait_for("NodePort -> ExternalName to stop traffic", lambda: from_host(url) == "", 30)
