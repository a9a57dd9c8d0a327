"""Controller latency: a pod's Ready condition changes -> the EndpointSlice (and the Endpoints)
show it; and the conformance "endpoints latency" case: a new Service -> its Endpoints.

    .venv/bin/python bench/endpoint_latency.py [--changes 1000] [--services 100]

No node agent runs: the benchmark writes pod status through the status subresource, as the
agent does. Both controllers run in the same server, so the Endpoints figure is the peer of the
EndpointSlice figure in the same run; Kubernetes' own allowance for the conformance case
(p50 <= 20 s, p90 <= 50 s) is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop
from _support import client_settings, percentile, start_server, stop

NS = "default"
PODS = 10


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def post(self, path: str, body: Any) -> Any:
        async with self.session.post(self.url + path, json=body) as resp:
            assert resp.status == 201, await resp.text()
            return await resp.json()

    async def status(self, pod: str, ip: str, ready: bool) -> None:
        body = {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            }
        }
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.session.patch(
            f"{self.url}/api/v1/namespaces/{NS}/pods/{pod}/status", data=orjson.dumps(body), headers=headers
        ) as resp:
            assert resp.status == 200, await resp.text()


async def watch(api: Api, path: str, seen: asyncio.Queue[tuple[float, dict[str, Any]]]) -> None:
    async with api.session.get(
        f"{api.url}{path}?watch=true", timeout=aiohttp.ClientTimeout(total=None)
    ) as resp:
        async for line in resp.content:
            seen.put_nowait((time.perf_counter(), orjson.loads(line)["object"]))


def slice_ready(obj: dict[str, Any]) -> dict[str, bool]:
    return {
        e["addresses"][0]: bool((e.get("conditions") or {}).get("ready")) for e in obj.get("endpoints") or []
    }


def endpoints_ready(obj: dict[str, Any]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for subset in obj.get("subsets") or []:
        out.update({a["ip"]: True for a in subset.get("addresses") or []})
        out.update({a["ip"]: False for a in subset.get("notReadyAddresses") or []})
    return out


async def readiness_flips(api: Api, changes: int) -> tuple[list[float], list[float]]:
    await api.post(
        f"/api/v1/namespaces/{NS}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "lat"},
            "spec": {"selector": {"app": "lat"}, "ports": [{"port": 80}]},
        },
    )
    ips = {f"lat-{i}": f"10.244.9.{i + 1}" for i in range(PODS)}
    for pod, ip in ips.items():
        await api.post(
            f"/api/v1/namespaces/{NS}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "labels": {"app": "lat"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        )
        await api.status(pod, ip, False)
    slices: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
    endpoints: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
    tasks = [
        asyncio.create_task(
            watch(api, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", slices)
        ),
        asyncio.create_task(watch(api, "/api/v1/namespaces/default/endpoints", endpoints)),
    ]
    state = {pod: False for pod in ips}
    slice_lat: list[float] = []
    ep_lat: list[float] = []

    async def until(
        queue: asyncio.Queue[tuple[float, dict[str, Any]]],
        view: Any,
        ip: str,
        want: bool,
        name: str,
        start: float,
    ) -> float:
        while True:
            at, obj = await asyncio.wait_for(queue.get(), 10)
            labels = obj["metadata"].get("labels") or {}
            if (obj["metadata"]["name"] == name or labels.get("kubernetes.io/service-name") == name) and view(
                obj
            ).get(ip) == want:
                return at - start

    await asyncio.sleep(1.0)
    for i in range(changes):
        pod = f"lat-{i % PODS}"
        state[pod] = not state[pod]
        start = time.perf_counter()
        await api.status(pod, ips[pod], state[pod])
        s, e = await asyncio.gather(
            until(slices, slice_ready, ips[pod], state[pod], "lat", start),
            until(endpoints, endpoints_ready, ips[pod], state[pod], "lat", start),
        )
        slice_lat.append(s)
        ep_lat.append(e)
    for task in tasks:
        task.cancel()
    return slice_lat, ep_lat


async def new_services(api: Api, count: int) -> list[float]:
    """The conformance case: each new Service selecting ready pods -> Endpoints with addresses."""
    endpoints: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
    task = asyncio.create_task(watch(api, "/api/v1/namespaces/default/endpoints", endpoints))
    await asyncio.sleep(0.5)
    latencies: list[float] = []
    for i in range(count):
        start = time.perf_counter()
        await api.post(
            f"/api/v1/namespaces/{NS}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"conf-{i}"},
                "spec": {"selector": {"app": "lat"}, "ports": [{"port": 80}]},
            },
        )
        while True:
            at, obj = await asyncio.wait_for(endpoints.get(), 30)
            if obj["metadata"]["name"] == f"conf-{i}" and any(
                s.get("addresses") for s in obj.get("subsets") or []
            ):
                latencies.append(at - start)
                break
    task.cancel()
    return latencies


async def measure(
    kubeconfig: Path, changes: int, services: int
) -> tuple[list[float], list[float], list[float]]:
    url, headers, ctx = client_settings(kubeconfig)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx), headers=headers) as session:
        api = Api(session, url)
        slice_lat, ep_lat = await readiness_flips(api, changes)
        for i in range(PODS):  # every pod ready for the conformance case
            await api.status(f"lat-{i}", f"10.244.9.{i + 1}", True)
        conf = await new_services(api, services)
    return slice_lat, ep_lat, conf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--services", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kubelite-bench-"))
    try:
        process, kubeconfig = start_server(root / "server")
        try:
            slice_lat, ep_lat, conf = uvloop.run(measure(kubeconfig, args.changes, args.services))
        finally:
            stop(process)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def row(name: str, lat: list[float]) -> str:
        return (
            f"{name:<34}{len(lat):>6}{percentile(lat, 50) * 1e3:>9.1f}{percentile(lat, 90) * 1e3:>9.1f}"
            f"{percentile(lat, 99) * 1e3:>9.1f}"
        )

    print(f"{'':<34}{'n':>6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}")
    print(row("pod Ready -> EndpointSlice", slice_lat))
    print(row("pod Ready -> Endpoints (peer)", ep_lat))
    print(row("new Service -> Endpoints", conf))
    print(f"ratio EndpointSlice/Endpoints p99: {percentile(slice_lat, 99) / percentile(ep_lat, 99):.2f}x")
    print("Kubernetes conformance allows p50 <= 20000 ms and p90 <= 50000 ms for new Service -> Endpoints")


if __name__ == "__main__":
    main()
