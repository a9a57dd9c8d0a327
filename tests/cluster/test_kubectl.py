"""The real kubectl (1.27 and 1.33) against a real kubelite server: the everyday verbs."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import Kubectl

pytestmark = [pytest.mark.kubectl]

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    app: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    tier: backend
data:
  greeting: hello
"""


def _manifest(tmp_path: Path, text: str, name: str = "m.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_get_formats(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    kubectl.run("apply", "-n", namespace, "-f", _manifest(tmp_path, SERVICE))
    table = kubectl.run("get", "svc", "-n", namespace).stdout
    assert table.split("\n")[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert "web" in table and "ClusterIP" in table and "80/TCP" in table
    wide = kubectl.run("get", "svc", "web", "-n", namespace, "-o", "wide").stdout
    assert "SELECTOR" in wide and "app=web" in wide
    obj = json.loads(kubectl.run("get", "svc", "web", "-n", namespace, "-o", "json").stdout)
    assert obj["spec"]["clusterIP"].startswith("10.")
    assert obj["spec"]["ports"][0]["targetPort"] == 8080
    doc = yaml.safe_load(kubectl.run("get", "svc", "web", "-n", namespace, "-o", "yaml").stdout)
    assert doc["metadata"]["uid"] == obj["metadata"]["uid"]
    ip = kubectl.run("get", "svc", "web", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}").stdout
    assert ip == obj["spec"]["clusterIP"]
    everywhere = kubectl.run("get", "svc", "-A").stdout
    assert "kubernetes" in everywhere and namespace in everywhere
    labelled = kubectl.run("get", "svc", "-n", namespace, "-l", "app=web", "-o", "name").stdout.split()
    assert labelled == ["service/web"]
    none = kubectl.run("get", "svc", "-n", namespace, "-l", "app=other", "-o", "name").stdout.split()
    assert none == []


def test_apply_create_unchanged_configured(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    path = _manifest(tmp_path, CONFIGMAP)
    assert "created" in kubectl.run("apply", "-n", namespace, "-f", path).stdout
    assert "unchanged" in kubectl.run("apply", "-n", namespace, "-f", path).stdout
    changed = _manifest(tmp_path, CONFIGMAP.replace("hello", "bonjour"), "m2.yaml")
    assert "configured" in kubectl.run("apply", "-n", namespace, "-f", changed).stdout
    value = kubectl.run("get", "cm", "settings", "-n", namespace, "-o", "jsonpath={.data.greeting}").stdout
    assert value == "bonjour"


def test_create_and_delete_from_file(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    path = _manifest(tmp_path, SERVICE)
    assert "created" in kubectl.run("create", "-n", namespace, "-f", path).stdout
    again = kubectl.run("create", "-n", namespace, "-f", path, check=False)
    assert again.returncode != 0 and "AlreadyExists" in again.stderr
    assert "deleted" in kubectl.run("delete", "-n", namespace, "-f", path).stdout
    gone = kubectl.run("get", "svc", "web", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_label_annotate_patch(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    kubectl.run("apply", "-n", namespace, "-f", _manifest(tmp_path, SERVICE))
    kubectl.run("label", "svc", "web", "-n", namespace, "env=dev")
    kubectl.run("annotate", "svc", "web", "-n", namespace, "owner=team-a")
    kubectl.run(
        "patch", "svc", "web", "-n", namespace, "-p", '{"spec":{"ports":[{"name":"metrics","port":9090}]}}'
    )
    kubectl.run(
        "patch", "svc", "web", "-n", namespace, "--type=merge", "-p", '{"spec":{"selector":{"v":"2"}}}'
    )
    kubectl.run(
        "patch",
        "svc",
        "web",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"add","path":"/metadata/labels/patched","value":"json"}]',
    )
    obj = json.loads(kubectl.run("get", "svc", "web", "-n", namespace, "-o", "json").stdout)
    assert obj["metadata"]["labels"] == {"app": "web", "env": "dev", "patched": "json"}
    assert obj["metadata"]["annotations"]["owner"] == "team-a"
    assert sorted(p["port"] for p in obj["spec"]["ports"]) == [80, 9090]
    assert obj["spec"]["selector"] == {"app": "web", "v": "2"}
    kubectl.run("label", "svc", "web", "-n", namespace, "env-")
    labels = json.loads(kubectl.run("get", "svc", "web", "-n", namespace, "-o", "json").stdout)["metadata"][
        "labels"
    ]
    assert "env" not in labels


def test_edit_through_kube_editor(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    kubectl.run("apply", "-n", namespace, "-f", _manifest(tmp_path, CONFIGMAP))
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/greeting: hello/greeting: edited/' \"$1\"\n")
    editor.chmod(0o755)
    out = kubectl.run("edit", "cm", "settings", "-n", namespace, env={"KUBE_EDITOR": str(editor)})
    assert "edited" in out.stdout
    value = kubectl.run("get", "cm", "settings", "-n", namespace, "-o", "jsonpath={.data.greeting}").stdout
    assert value == "edited"


def test_describe(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    kubectl.run("apply", "-n", namespace, "-f", _manifest(tmp_path, SERVICE))
    out = kubectl.run("describe", "svc", "web", "-n", namespace).stdout
    for expected in ("Name:", "web", "Selector:", "app=web", "Type:", "ClusterIP", "TargetPort:", "8080/TCP"):
        assert expected in out
    assert "Active" in kubectl.run("describe", "ns", namespace).stdout


def test_get_watch_sees_added_modified_deleted(kubectl: Kubectl, namespace: str) -> None:
    env = kubectl.environ()
    watcher = subprocess.Popen(
        [str(kubectl.binary), "get", "cm", "-n", namespace, "-w", "--output-watch-events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    assert watcher.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(watcher.stdout or []), daemon=True)
    reader.start()
    try:
        time.sleep(1.0)
        kubectl.run("create", "-n", namespace, "-f", "-", input=CONFIGMAP)
        kubectl.run("label", "cm", "settings", "-n", namespace, "round=2")
        kubectl.run("delete", "cm", "settings", "-n", namespace)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any("DELETED" in line for line in lines):
            time.sleep(0.1)
    finally:
        watcher.terminate()
        watcher.wait(10)
        reader.join(5)
        watcher.stdout.close()
    events = [line.split()[0] for line in lines if line.strip() and not line.startswith("EVENT")]
    assert events[:3] == ["ADDED", "MODIFIED", "DELETED"], lines


def test_discovery_and_explain(kubectl: Kubectl) -> None:
    resources = kubectl.run("api-resources").stdout
    for name in ("services", "endpointslices", "deployments", "ingresses", "leases", "pods"):
        assert name in resources
    versions = kubectl.run("api-versions").stdout.split()
    for gv in ("v1", "apps/v1", "discovery.k8s.io/v1", "networking.k8s.io/v1", "coordination.k8s.io/v1"):
        assert gv in versions
    explained = kubectl.run("explain", "service.spec.ports").stdout
    assert "targetPort" in explained and "nodePort" in explained


def test_server_dry_run_changes_nothing(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    out = kubectl.run("apply", "-n", namespace, "-f", _manifest(tmp_path, SERVICE), "--dry-run=server").stdout
    assert "server dry run" in out
    assert kubectl.run("get", "svc", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_bad_input_gets_clear_errors(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    bad_name = SERVICE.replace("name: web\n", "name: Web_Service\n", 1)
    res = kubectl.run("apply", "-n", namespace, "-f", _manifest(tmp_path, bad_name), check=False)
    assert res.returncode != 0
    assert "is invalid" in res.stderr and "metadata.name" in res.stderr
    unknown = "apiVersion: v1\nkind: Gadget\nmetadata:\n  name: g\n"
    res = kubectl.run("apply", "-n", namespace, "-f", _manifest(tmp_path, unknown, "u.yaml"), check=False)
    assert res.returncode != 0 and 'no matches for kind "Gadget"' in res.stderr
    dup_ports = SERVICE.replace("targetPort: 8080", "targetPort: 8080\n  - name: http\n    port: 80")
    res = kubectl.run("apply", "-n", namespace, "-f", _manifest(tmp_path, dup_ports, "d.yaml"), check=False)
    assert res.returncode != 0 and "Duplicate value" in res.stderr
    assert kubectl.run("get", "svc", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_create_generators(kubectl: Kubectl, namespace: str) -> None:
    """kubectl's typed generators (protobuf bodies since kubectl 1.31), scale and expose."""
    ns = ("-n", namespace)
    kubectl.run("create", "configmap", "gen-cm", "--from-literal=a=b", *ns)
    kubectl.run("create", "secret", "generic", "gen-secret", "--from-literal=p=q", *ns)
    kubectl.run("create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=80", *ns)
    kubectl.run("scale", "deployment", "web", "--replicas=0", *ns)
    assert kubectl.run("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}", *ns).stdout == "0"
    kubectl.run("expose", "deployment", "web", "--port=80", "--target-port=8080", "--name=web-svc", *ns)
    svc = json.loads(kubectl.run("get", "svc", "web-svc", "-o", "json", *ns).stdout)
    assert svc["spec"]["selector"] == {"app": "web"} and svc["spec"]["ports"][0]["targetPort"] == 8080
    kubectl.run("create", "service", "nodeport", "gen-np", "--tcp=80:8080", *ns)
    port = kubectl.run("get", "svc", "gen-np", "-o", "jsonpath={.spec.ports[0].nodePort}", *ns).stdout
    clash = kubectl.run(
        "create", "service", "nodeport", "gen-np2", "--tcp=80", f"--node-port={port}", *ns, check=False
    )
    assert clash.returncode != 0 and "provided port is already allocated" in clash.stderr
    secret = json.loads(kubectl.run("get", "secret", "gen-secret", "-o", "json", *ns).stdout)
    assert secret["data"] == {"p": "cQ=="} and secret["type"] == "Opaque"


def test_seed_expose_command(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    """The seeds' `kubectl expose svc web --type=LoadBalancer ... --external-ip=192.168.1.2 --name=web-lb`."""
    kubectl.run("apply", "-n", namespace, "-f", _manifest(tmp_path, SERVICE))
    kubectl.run(
        "expose",
        "svc",
        "web",
        "-n",
        namespace,
        "--type=LoadBalancer",
        "--port=80",
        "--target-port=8080",
        "--external-ip=192.168.1.2",
        "--name=web-lb",
    )
    svc = json.loads(kubectl.run("get", "svc", "web-lb", "-n", namespace, "-o", "json").stdout)
    spec = svc["spec"]
    assert spec["type"] == "LoadBalancer" and spec["externalIPs"] == ["192.168.1.2"]
    assert spec["selector"] == {"app": "web"}
    assert spec["ports"][0]["port"] == 80 and spec["ports"][0]["targetPort"] == 8080
    assert 30000 <= spec["ports"][0]["nodePort"] <= 32767
    described = kubectl.run("describe", "svc", "web-lb", "-n", namespace).stdout
    assert "192.168.1.2" in described
