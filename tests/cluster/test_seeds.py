"""The manifests of the teaching documents (``/work/shared/seeds``) apply unchanged with the real kubectl.

``tests/data/seeds/`` holds every Service, Endpoints and Ingress manifest found in those documents,
re-indented (the scraped text lost its indentation); ``tests/data/seeds/README.md`` says which seed and
line each came from and what was completed. For each file and each kubectl version:

* ``kubectl apply`` creates it; a second ``kubectl apply`` changes nothing (it says "unchanged", or
  "configured" where the real kube-apiserver makes kubectl say so too, see ``REAPPLY_CONFIGURED``);
* ``kubectl get -o json`` shows every field of the file on the live object;
* ``kubectl delete`` removes it.

An ``extensions/v1beta1`` Ingress (removed in Kubernetes 1.22) either applies and reads back as
``networking.k8s.io/v1``, or is refused with a message that names ``networking.k8s.io/v1``.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from conftest import Kubectl, ServerProcess

pytestmark = [pytest.mark.kubectl]

SEEDS_DIR = Path(__file__).resolve().parent.parent / "data" / "seeds"
SEED_FILES = sorted(SEEDS_DIR.glob("*.yaml"))

LEGACY_INGRESS_API = "extensions/v1beta1"
INGRESS_V1_API = "networking.k8s.io/v1"

# Re-applying an unmodified file prints "unchanged" when kubectl's three-way merge finds nothing to patch.
# For these files the real kube-apiserver makes kubectl print "configured" instead, although nothing changes:
# the file leaves out a field the server defaults inside a list that has no merge key (an atomic list is
# compared whole), or carries a ``status`` the server ignores, so kubectl sends a patch on every apply. The
# server finds the patched object identical and writes nothing: resourceVersion stays the same.
REAPPLY_CONFIGURED = {
    # Endpoints.subsets is atomic (+listType=atomic); subsets[].ports[].protocol is defaulted to TCP.
    "003-03-endpoints-my-service.yaml": "atomic subsets, defaulted ports[].protocol",
    # extensions/v1beta1 IngressSpec.rules has no merge key; rules[].http.paths[].pathType is defaulted to
    # ImplementationSpecific.
    "001-04-ingress-my-ingress.yaml": "atomic rules, defaulted paths[].pathType",
    # status is ignored on create/update, so the file's status.loadBalancer never matches the live one.
    "003-06-service-my-service.yaml": "status stanza",
}


def load_manifest(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{path.name}: expected exactly one manifest, found {len(docs)}"
    doc: dict[str, Any] = docs[0]
    return doc


def assert_subset(expected: Any, actual: Any, where: str = "") -> None:
    """Every key and list item of ``expected`` is in ``actual`` with the same value (server may add)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where or '.'}: expected an object, live has {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}.{key}: missing from the live object (live keys: {sorted(actual)})"
            assert_subset(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, live has {actual!r}"
        assert len(actual) == len(expected), f"{where}: expected {len(expected)} items, live has {actual!r}"
        for i, (exp, act) in enumerate(zip(expected, actual, strict=True)):
            assert_subset(exp, act, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: expected {expected!r}, live has {actual!r}"


def expected_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """What must read back: everything in the file but ``status``, which the server owns and ignores on
    create/update (003-06 carries a ``status.loadBalancer`` stanza copied from a live object)."""
    return {k: v for k, v in doc.items() if k != "status"}


def ingress_backend_v1(backend: dict[str, Any]) -> dict[str, Any]:
    """extensions/v1beta1 ``{serviceName, servicePort}`` -> v1 ``{service: {name, port: {number|name}}}``."""
    if "resource" in backend:
        return {"resource": backend["resource"]}
    port = backend["servicePort"]
    return {
        "service": {
            "name": backend["serviceName"],
            "port": {"name" if isinstance(port, str) else "number": port},
        }
    }


def ingress_spec_v1(spec: dict[str, Any]) -> dict[str, Any]:
    """The networking.k8s.io/v1 form of an extensions/v1beta1 Ingress spec, as kube-apiserver converts it:
    ``backend`` becomes ``defaultBackend``; a path without ``pathType`` gets ImplementationSpecific."""
    out: dict[str, Any] = {k: v for k, v in spec.items() if k not in ("backend", "rules")}
    if "backend" in spec:
        out["defaultBackend"] = ingress_backend_v1(spec["backend"])
    rules = []
    for rule in spec.get("rules", []):
        new_rule = {k: v for k, v in rule.items() if k != "http"}
        if "http" in rule:
            paths = []
            for p in rule["http"]["paths"]:
                new_path = {k: v for k, v in p.items() if k != "backend"}
                new_path.setdefault("pathType", "ImplementationSpecific")
                new_path["backend"] = ingress_backend_v1(p["backend"])
                paths.append(new_path)
            new_rule["http"] = {"paths": paths}
        rules.append(new_rule)
    if rules:
        out["rules"] = rules
    return out


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(kubectl.run("get", *args, "-o", "json").stdout)
    if obj.get("kind") == "List":  # ``get -f`` may wrap a single object in a List
        assert len(obj["items"]) == 1, obj
        obj = obj["items"][0]
    return obj


def assert_applied(res: subprocess.CompletedProcess[str], name: str, verb: str) -> None:
    """``kubectl apply`` prints ``<resource>/<name> created|unchanged|configured``."""
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line of output, got:\n{res.stdout}\n{res.stderr}"
    assert lines[0].endswith(f"/{name} {verb}"), f"expected '<resource>/{name} {verb}', got:\n{res.stdout}"


def assert_deleted(res: subprocess.CompletedProcess[str], name: str) -> None:
    """``kubectl delete`` prints ``<resource> "<name>" deleted`` (maybe `` from <ns> namespace`` after)."""
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line of output, got:\n{res.stdout}\n{res.stderr}"
    assert f'"{name}" deleted' in lines[0], f"expected '<resource> \"{name}\" deleted', got:\n{res.stdout}"


@pytest.fixture(scope="module")
def seed_namespace(server: ServerProcess) -> Iterator[Callable[[str], None]]:
    """Makes sure a namespace named inside a manifest (``prod``, ``namespace-a``, ``default``) exists.

    Created with the official client, like conftest's ``namespace`` fixture: it is scaffolding, not what is
    under test. The ones this module created are deleted when it is done; ``default`` is never deleted."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(server.kubeconfig))
    core = client.CoreV1Api(api_client)
    created: list[str] = []

    def ensure(ns: str) -> None:
        try:
            core.read_namespace(ns)
            return
        except client.ApiException as e:
            if e.status != 404:
                raise
        try:
            core.create_namespace({"metadata": {"name": ns}})
            created.append(ns)
        except client.ApiException as e:
            if e.status != 409:
                raise

    try:
        yield ensure
    finally:
        for ns in created:
            try:
                core.delete_namespace(ns)
            except client.ApiException:
                pass
        api_client.close()


# The Kubernetes documentation (seed 003) writes clusterIP 10.0.171.239, an address from the
# service range its example cluster used. A kubelite cluster with the default range refuses it
# exactly as kube-apiserver does ("provided IP is not in the valid range"), so such manifests are
# applied to a server started with a service range that contains them.
DEFAULT_SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
DOCS_SERVICE_CIDR = "10.0.0.0/16"


def needs_docs_range(doc: dict[str, Any]) -> bool:
    ip = (doc.get("spec") or {}).get("clusterIP")
    if doc.get("kind") != "Service" or not ip or ip == "None":
        return False
    return ipaddress.ip_address(ip) not in DEFAULT_SERVICE_CIDR


@pytest.fixture(scope="module")
def docs_range_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    from conftest import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("docs-range"),
                        extra_args=["--service-cluster-ip-range", DOCS_SERVICE_CIDR]).start()  # fmt: skip
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("path", SEED_FILES, ids=[p.name for p in SEED_FILES])
def test_seed_manifest(
    kubectl: Kubectl,
    namespace: str,
    seed_namespace: Callable[[str], None],
    path: Path,
    request: pytest.FixtureRequest,
) -> None:
    doc = load_manifest(path)
    if needs_docs_range(doc):
        from conftest import Kubectl

        server: ServerProcess = request.getfixturevalue("docs_range_server")
        kubectl = Kubectl(kubectl.binary, server.kubeconfig, kubectl.version)
        namespace = "default"
    # A manifest that names its namespace (prod, namespace-a, default) must be applied there: kubectl refuses
    # ``-n <other>`` for it. Both kubectl runs (and 001-05/003-04, which are the same object) then share
    # that namespace, so delete whatever a previous run may have left there before applying.
    hardcoded_ns = doc["metadata"].get("namespace")
    ns = hardcoded_ns or namespace
    args = ("-n", ns, "-f", str(path))
    if hardcoded_ns:
        seed_namespace(ns)
        kubectl.run("delete", *args, "--ignore-not-found", "--wait=true")
    # clusterIP 10.0.171.239 (003-06) and the nodePorts 30036 (001-02), 30080 (002-02, 002-03) and 30061
    # (003-06) are cluster-wide: the two kubectl runs, and 002-02/002-03, would collide on them. Every run
    # therefore deletes its object in ``finally`` and waits until it is gone, whatever happened before.
    try:
        if doc["apiVersion"] == LEGACY_INGRESS_API and doc["kind"] == "Ingress":
            check_legacy_ingress(kubectl, path, doc, ns, args)
        else:
            check_manifest(kubectl, path, doc, ns, args)
    finally:
        kubectl.run("delete", *args, "--ignore-not-found", "--wait=true", check=False)


def reapply(
    kubectl: Kubectl, path: Path, args: tuple[str, ...], name: str, get_args: tuple[str, ...]
) -> dict[str, Any]:
    """Apply the file a second time: nothing may change. Returns the live object."""
    before = get_json(kubectl, *get_args)
    verb = "configured" if path.name in REAPPLY_CONFIGURED else "unchanged"
    assert_applied(kubectl.run("apply", *args), name, verb)
    live = get_json(kubectl, *get_args)
    assert live["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], (
        f"re-applying the same file changed the object:\nbefore: {before}\nafter: {live}"
    )
    return live


def check_manifest(kubectl: Kubectl, path: Path, doc: dict[str, Any], ns: str, args: tuple[str, ...]) -> None:
    name = doc["metadata"]["name"]
    assert_applied(kubectl.run("apply", *args), name, "created")

    live = reapply(kubectl, path, args, name, get_args=args)
    assert live["metadata"]["namespace"] == ns
    assert_subset(expected_fields(doc), live)
    if doc["kind"] == "Service":
        spec = doc["spec"]
        if spec.get("type", "ClusterIP") in ("ClusterIP", "NodePort", "LoadBalancer"):
            assert live["spec"].get("clusterIP"), f"no clusterIP allocated: {live['spec']}"
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for port in live["spec"]["ports"]:
                assert 30000 <= port.get("nodePort", 0) <= 32767, f"no nodePort allocated: {port}"

    assert_deleted(kubectl.run("delete", *args), name)
    gone = kubectl.run("get", *args, "--ignore-not-found", "-o", "name")
    assert gone.stdout.strip() == "", f"still there after delete: {gone.stdout}"


def check_legacy_ingress(
    kubectl: Kubectl, path: Path, doc: dict[str, Any], ns: str, args: tuple[str, ...]
) -> None:
    name = doc["metadata"]["name"]
    first = kubectl.run("apply", *args, check=False)
    if first.returncode != 0:
        message = first.stderr + first.stdout
        assert INGRESS_V1_API in message, f"refused without naming {INGRESS_V1_API}:\n{message}"
        return
    assert_applied(first, name, "created")
    # ``kubectl get ingress`` reads the preferred version, networking.k8s.io/v1.
    live = reapply(kubectl, path, args, name, get_args=("ingress", name, "-n", ns))
    assert live["apiVersion"] == INGRESS_V1_API, live["apiVersion"]
    assert live["kind"] == "Ingress"
    assert live["metadata"]["name"] == name
    assert live["metadata"]["namespace"] == ns
    assert_subset(ingress_spec_v1(doc["spec"]), live["spec"], ".spec")
    # Read through the version the file names, it round-trips to the author's form.
    assert_subset(expected_fields(doc), get_json(kubectl, *args))

    assert_deleted(kubectl.run("delete", *args), name)
    gone = kubectl.run("get", "ingress", name, "-n", ns, "--ignore-not-found", "-o", "name")
    assert gone.stdout.strip() == "", f"still there after delete: {gone.stdout}"
