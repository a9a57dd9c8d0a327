"""The service proxy's control path against a real API server, with a recording back end:
Services and EndpointSlices become states, a change costs only its own service ports, and the
health and metrics endpoints answer like kube-proxy's."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import ServerProcess

from kubelite.api.resources import INDEX
from kubelite.client.http import HttpClient
from kubelite.proxy.app import ServiceProxy
from kubelite.proxy.model import ProxyState, ServicePortName

pytestmark = pytest.mark.timeout(60)

SERVICES = INDEX.by_kind[("v1", "Service")]
SLICES = INDEX.by_kind[("discovery.k8s.io/v1", "EndpointSlice")]
NAMESPACES = INDEX.by_kind[("v1", "Namespace")]


class Recorder:
    mode = "recorder"

    def __init__(self) -> None:
        self.syncs: list[tuple[ProxyState, frozenset[ServicePortName] | None]] = []
        self.cleaned = False

    async def sync(self, state: ProxyState, changed: frozenset[ServicePortName] | None) -> None:
        self.syncs.append((state, changed))

    async def cleanup(self) -> None:
        self.cleaned = True


async def _until(what: str, check: Any, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_proxy_follows_services_and_slices(server: ServerProcess) -> None:
    client = HttpClient.from_kubeconfig(server.kubeconfig)
    ns = "proxy-app"
    await client.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    backend = Recorder()
    proxy = ServiceProxy(client, backend, node_name="n1", node_ips=["172.30.0.11"])
    try:
        await proxy.start()
        assert backend.syncs[0][1] is None  # the first sync is a full one
        await client.create(
            SERVICES,
            ns,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                    "selector": {"app": "web"},
                },
            },
        )
        spn = ServicePortName(ns, "web", "http", "TCP")
        await _until("the service in a sync", lambda: any(spn in s.services for s, _c in backend.syncs))
        await client.create(
            SLICES,
            ns,
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "web-manual",
                    "labels": {"kubernetes.io/service-name": "web"},
                    "annotations": {
                        "endpoints.kubernetes.io/last-change-trigger-time": "2020-01-01T00:00:00Z"
                    },
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.244.0.9"], "nodeName": "n1", "conditions": {"ready": True}}],
            },
        )
        await _until(
            "the endpoint in a sync",
            lambda: any(any(e.ip == "10.244.0.9" for e in s.endpoints_of(spn)) for s, _c in backend.syncs),
        )
        state, changed = backend.syncs[-1]
        assert changed is not None and spn in changed
        assert state.endpoints_of(spn)[0].is_local
        async with TestClient(TestServer(proxy.app())) as http:
            health = await http.get("/healthz")
            assert health.status == 200
            text = await (await http.get("/metrics")).text()
        assert "kubeproxy_sync_proxy_rules_duration_seconds_count" in text
        count = [
            ln
            for ln in text.splitlines()
            if ln.startswith("kubeproxy_network_programming_duration_seconds_count")
        ]
        assert count and int(count[0].split()[1]) >= 1, text
    finally:
        await proxy.stop(cleanup=True)
        await client.close()
        await asyncio.sleep(0.1)  # let the TLS transports finish closing
    assert backend.cleaned


async def test_health_check_node_port_answers_with_the_local_endpoint_count(server: ServerProcess) -> None:
    client = HttpClient.from_kubeconfig(server.kubeconfig)
    ns = "proxy-hc"
    await client.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    proxy = ServiceProxy(
        client, Recorder(), node_name="n1", node_ips=["127.0.0.1"], health_check_host="127.0.0.1"
    )
    spec = {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}
    try:
        await proxy.start()
        made = await client.create(
            SERVICES, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"}, "spec": spec}
        )
        port = made["spec"]["healthCheckNodePort"]
        health = proxy.health
        assert health is not None
        await _until("the health check port", lambda: health.ports == [port])

        def endpoints(node: str) -> dict[str, Any]:
            return {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": "lb-1", "labels": {"kubernetes.io/service-name": "lb"}},
                "addressType": "IPv4",
                "ports": [{"port": 80, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.244.0.9"], "nodeName": node, "conditions": {"ready": True}}],
            }

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:

            async def ask() -> tuple[int, Any]:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as reply:
                    return reply.status, await reply.json()

            assert await ask() == (
                503,
                {
                    "service": {"namespace": ns, "name": "lb"},
                    "localEndpoints": 0,
                    "serviceProxyHealthy": True,
                },
            )
            await client.create(SLICES, ns, endpoints("n1"))
            await _until("a local endpoint", lambda: health.checks[port].local_endpoints == 1)
            status, body = await ask()
            assert status == 200 and body["localEndpoints"] == 1
            await client.delete(SLICES, ns, "lb-1")
            await client.create(SLICES, ns, endpoints("n2"))  # the endpoint moved to another node
            await _until("no local endpoint", lambda: health.checks[port].local_endpoints == 0)
            assert (await ask())[0] == 503
            await client.delete(SERVICES, ns, "lb")
            await _until("the port closed", lambda: health.ports == [])
            with pytest.raises(aiohttp.ClientConnectionError):
                await ask()
    finally:
        await proxy.stop(cleanup=True)
        await client.close()
        await asyncio.sleep(0.1)
