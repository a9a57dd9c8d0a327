"""Service registry: type changes, allocation messages, release, and exactly-once under concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import Http, ServerProcess


def _svc(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def _create(http: Http, ns: str, body: dict[str, Any]) -> Any:
    return http.request("POST", f"/api/v1/namespaces/{ns}/services", json=body)


def _put(http: Http, ns: str, obj: dict[str, Any]) -> Any:
    return http.request("PUT", f"/api/v1/namespaces/{ns}/services/{obj['metadata']['name']}", json=obj)


def test_external_name_to_cluster_ip_and_back(http: Http, namespace: str) -> None:
    made = _create(http, namespace, _svc("ext", type="ExternalName", externalName="foo.example.com")).json()
    assert "clusterIP" not in made["spec"]
    made["spec"].update(type="ClusterIP", ports=[{"port": 80}])
    made["spec"].pop("externalName")
    changed = _put(http, namespace, made).json()
    ip = changed["spec"]["clusterIP"]
    assert ip.startswith("10.") and changed["spec"]["clusterIPs"] == [ip]
    # ClusterIP -> ExternalName: the IP is released (a new Service may ask for it).
    changed["spec"]["type"] = "ExternalName"
    changed["spec"]["externalName"] = "bar.example.com"
    back = _put(http, namespace, changed)
    assert back.status_code == 200, back.text
    assert "clusterIP" not in back.json()["spec"] and "clusterIPs" not in back.json()["spec"]
    reuse = _create(http, namespace, _svc("reuse", clusterIP=ip, ports=[{"port": 80}]))
    assert reuse.status_code == 201, reuse.text


def test_external_name_to_node_port_and_back(http: Http, namespace: str) -> None:
    made = _create(http, namespace, _svc("ext2", type="ExternalName", externalName="foo.example.com")).json()
    made["spec"].update(type="NodePort", ports=[{"port": 80}])
    made["spec"].pop("externalName")
    node_port = _put(http, namespace, made).json()
    port = node_port["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767 and node_port["spec"]["clusterIP"]
    node_port["spec"].update(type="ExternalName", externalName="bar.example.com")
    back = _put(http, namespace, node_port)
    assert back.status_code == 200, back.text
    assert "nodePort" not in back.json()["spec"]["ports"][0]
    # The nodePort was released: another Service can take it.
    again = _create(
        http, namespace, _svc("takes-port", type="NodePort", ports=[{"port": 80, "nodePort": port}])
    )
    assert again.status_code == 201, again.text


def test_node_port_collision_and_range(http: Http, namespace: str) -> None:
    first = _create(http, namespace, _svc("np1", type="NodePort", ports=[{"port": 80, "nodePort": 30555}]))
    assert first.status_code == 201
    clash = _create(http, namespace, _svc("np2", type="NodePort", ports=[{"port": 80, "nodePort": 30555}]))
    assert clash.status_code == 422
    assert "30555: provided port is already allocated" in clash.json()["message"]
    out = _create(http, namespace, _svc("np3", type="NodePort", ports=[{"port": 80, "nodePort": 80}]))
    assert out.status_code == 422
    assert ("80: provided port is not in the valid range. The range of valid ports is 30000-32767"
            in out.json()["message"])  # fmt: skip
    # Released on delete.
    assert http.request("DELETE", f"/api/v1/namespaces/{namespace}/services/np1").status_code == 200
    assert _create(http, namespace, _svc("np4", type="NodePort", ports=[{"port": 80, "nodePort": 30555}])).ok


def test_health_check_node_port_for_load_balancer_with_local_policy(http: Http, namespace: str) -> None:
    lb = _svc("hc", type="LoadBalancer", externalTrafficPolicy="Local", ports=[{"port": 80}])
    made = _create(http, namespace, lb).json()
    hc, node_port = made["spec"]["healthCheckNodePort"], made["spec"]["ports"][0]["nodePort"]
    assert 30000 <= hc <= 32767 and hc != node_port
    # A PUT that leaves it out keeps it; changing it is refused; Cluster policy releases it.
    made["spec"].pop("healthCheckNodePort")
    kept = _put(http, namespace, made).json()
    assert kept["spec"]["healthCheckNodePort"] == hc
    kept["spec"]["healthCheckNodePort"] = 31999 if hc != 31999 else 31998
    refused = _put(http, namespace, kept)
    assert refused.status_code == 422
    assert "spec.healthCheckNodePort: Forbidden: field is immutable" in refused.json()["message"]
    kept["spec"].update(healthCheckNodePort=hc, externalTrafficPolicy="Cluster")
    cluster = _put(http, namespace, kept).json()
    assert "healthCheckNodePort" not in cluster["spec"]
    takes = _create(http, namespace, _svc("takes-hc", type="NodePort", ports=[{"port": 80, "nodePort": hc}]))
    assert takes.status_code == 201, takes.text
    # Asked for: in range, not taken, and only with LoadBalancer + Local.
    clash = _create(
        http,
        namespace,
        {**lb, "metadata": {"name": "hc2"}, "spec": {**lb["spec"], "healthCheckNodePort": hc}},
    )
    assert clash.status_code == 422
    assert (
        f"spec.healthCheckNodePort: Invalid value: {hc}: provided port is already allocated"
        in clash.json()["message"]
    )
    wrong = _create(
        http, namespace, _svc("hc3", type="NodePort", healthCheckNodePort=31000, ports=[{"port": 80}])
    )
    assert wrong.status_code == 422
    assert (
        "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'" in wrong.text
    )


def test_requested_cluster_ip(http: Http, namespace: str) -> None:
    first = _create(http, namespace, _svc("ip1", clusterIP="10.100.100.100", ports=[{"port": 80}]))
    assert first.status_code == 201
    clash = _create(http, namespace, _svc("ip2", clusterIP="10.100.100.100", ports=[{"port": 80}]))
    assert clash.status_code == 422
    assert "failed to allocate IP 10.100.100.100: provided IP is already allocated" in clash.json()["message"]
    out = _create(http, namespace, _svc("ip3", clusterIP="192.168.0.1", ports=[{"port": 80}]))
    assert out.status_code == 422 and "provided IP is not in the valid range" in out.json()["message"]
    changed = first.json()
    changed["spec"]["clusterIP"] = "10.100.100.101"
    changed["spec"]["clusterIPs"] = ["10.100.100.101"]
    immutable = _put(http, namespace, changed)
    assert immutable.status_code == 422 and "may not change once set" in immutable.json()["message"]


def test_full_range_answers_500(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "tiny", extra_args=["--service-node-port-range", "30000-30001"]).start()
    http = Http(srv)
    try:
        codes = [_create(http, "default", _svc(f"np{i}", type="NodePort", ports=[{"port": 80}])).status_code
                 for i in range(3)]  # fmt: skip
        assert codes == [201, 201, 500]
    finally:
        http.close()
        srv.stop()


async def _create_many(srv: ServerProcess, count: int, clients: int, kill_after: int = 0) -> list[str]:
    """Create ``count`` NodePort Services from ``clients`` concurrent clients; names answered 201."""
    import base64
    import ssl

    import yaml

    cfg = yaml.safe_load(srv.kubeconfig.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    headers = {"Authorization": f"Bearer {cfg['users'][0]['user']['token']}"}
    url = f"{cluster['server']}/api/v1/namespaces/default/services"
    names = iter(range(count))
    created: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx), headers=headers) as session:

        async def client() -> None:
            for i in names:
                body = _svc(f"many-{i}", type="NodePort", ports=[{"port": 80}])
                try:
                    async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                        if resp.status == 201:
                            created.append(body["metadata"]["name"])
                        if kill_after and len(created) >= kill_after:
                            srv.kill9()
                except (aiohttp.ClientError, TimeoutError):
                    if not kill_after:
                        raise

        await asyncio.gather(*(client() for _ in range(clients)))
    return created


def _all_services(http: Http) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = http.request("GET", "/api/v1/namespaces/default/services").json()["items"]
    return [s for s in items if s["metadata"]["name"].startswith("many-")]


@pytest.mark.slow
async def test_500_parallel_creates_get_distinct_allocations(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "many").start()
    http = Http(srv)
    try:
        created = await _create_many(srv, 500, 20)
        assert len(created) == 500
        services = _all_services(http)
        ips = [s["spec"]["clusterIP"] for s in services]
        ports = [s["spec"]["ports"][0]["nodePort"] for s in services]
        assert len(services) == 500 and len(set(ips)) == 500 and len(set(ports)) == 500
    finally:
        http.close()
        srv.stop()


@pytest.mark.slow
async def test_kill_during_parallel_creates_leaks_nothing(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "killed").start()
    http: Http | None = None
    try:
        await _create_many(srv, 500, 20, kill_after=150)
        srv.start()
        http = Http(srv)
        services = _all_services(http)
        ips = [s["spec"]["clusterIP"] for s in services]
        ports = [s["spec"]["ports"][0]["nodePort"] for s in services]
        assert len(set(ips)) == len(services) and len(set(ports)) == len(services)
        # Delete them all; if any allocation had leaked, asking for the same values again would fail.
        for s in services:
            assert http.request("DELETE", f"/api/v1/namespaces/default/services/{s['metadata']['name']}").ok
        for i, (ip, port) in enumerate(zip(ips, ports, strict=True)):
            again = _create(http, "default", _svc(f"again-{i}", type="NodePort", clusterIP=ip,
                                                  ports=[{"port": 80, "nodePort": port}]))  # fmt: skip
            assert again.status_code == 201, again.text
    finally:
        if http is not None:
            http.close()
        srv.stop()
