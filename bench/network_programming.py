"""Network programming latency in a 3-node cluster: pod Ready -> a new connection reaches it.

    .venv/bin/python bench/network_programming.py [--rounds 20] [--proxy-mode nftables]

Starts ``kubelite up --nodes 3`` inside a benchmark host namespace (``klbench-<pid>-...``), a
Service whose only endpoint is replaced every round: the old pod is deleted, a new one (agnhost
netexec with a TCP readiness probe) is created on the next node. The clock starts when the API shows
the new pod Ready and stops when a new TCP connection to the ClusterIP, opened from node 1's
namespace every 5 ms, is answered by that pod. Kubernetes' own figure at 5,000 nodes (iptables,
partial sync) is ~25 s p99; the goal here is p99 < 1 s. The peer in the same run: the time from
Ready to the EndpointSlice update (the control plane's share).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from _support import client_settings, percentile, start_up, stop_up

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubelite.host.netns import socket_in_netns

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


async def ask(netns: str, ip: str, port: int) -> str:
    sock = await socket_in_netns(netns)
    try:
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, (ip, port)), 0.5)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"GET /hostname HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 1.0)
        writer.close()
        return data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")
    except (OSError, TimeoutError):
        sock.close()
        return ""


async def run(kubeconfig: Path, node_prefix: str, rounds: int) -> tuple[list[float], list[float]]:
    url, headers, ssl_ctx = client_settings(kubeconfig)
    ns = "netprog"
    reach: list[float] = []
    slices: list[float] = []
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as s:

        async def post(path: str, body: Any) -> Any:
            async with s.post(url + path, json=body) as r:
                assert r.status in (200, 201, 409), await r.text()
                return await r.json()

        await post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        svc = await post(
            f"/api/v1/namespaces/{ns}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "target"},
                "spec": {"selector": {"app": "target"}, "ports": [{"port": 80, "targetPort": 8080}]},
            },
        )
        cip = svc["spec"]["clusterIP"]
        previous = ""
        for i in range(rounds):
            name = f"t{i:03d}"
            node = f"{node_prefix}-node{i % 3 + 1}"
            if previous:
                async with s.delete(f"{url}/api/v1/namespaces/{ns}/pods/{previous}?gracePeriodSeconds=0"):
                    pass
            await post(
                f"/api/v1/namespaces/{ns}/pods",
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "labels": {"app": "target"}},
                    "spec": {
                        "nodeName": node,
                        "terminationGracePeriodSeconds": 0,
                        "containers": [
                            {
                                "name": "web",
                                "image": AGNHOST,
                                "args": ["netexec", "--http-port=8080", "--udp-port=-1"],
                                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                            }
                        ],
                    },
                },
            )
            ready_at = slice_at = 0.0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (ready_at and slice_at):
                async with s.get(f"{url}/api/v1/namespaces/{ns}/pods/{name}") as r:
                    pod = await r.json()
                conds = (pod.get("status") or {}).get("conditions") or []
                if not ready_at and any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                    ready_at = time.monotonic()
                if ready_at and not slice_at:
                    async with s.get(f"{url}/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices") as r:
                        text = json.dumps(await r.json())
                    if pod["status"].get("podIP", "-") in text:
                        slice_at = time.monotonic()
                await asyncio.sleep(0.005)
            while time.monotonic() < deadline:
                if await ask(f"{node_prefix}-node1", cip, 80) == name:
                    reach.append(time.monotonic() - ready_at)
                    slices.append(slice_at - ready_at)
                    break
                await asyncio.sleep(0.005)
            previous = name
    return reach, slices


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--proxy-mode", default="nftables")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("this benchmark builds network namespaces: run it as root")
    work = Path(tempfile.mkdtemp(prefix="kl-netprog-"))
    name = f"np{os.getpid() % 10000}"
    proc = start_up(work / "up", name, nodes=3, extra=("--proxy-mode", args.proxy_mode))
    try:
        reach, slices = asyncio.run(run(work / "up" / "kubeconfig", name, args.rounds))
    finally:
        stop_up(proc)
        shutil.rmtree(work, ignore_errors=True)
    ms = [x * 1000 for x in reach]
    sl = [x * 1000 for x in slices]
    print(f"{len(ms)} rounds, 3 nodes, {args.proxy_mode} proxy; pod Ready (as polled every 5 ms) -> ...")
    print(f"  EndpointSlice shows it   p50 {percentile(sl, 50):7.1f} ms  p99 {percentile(sl, 99):7.1f} ms")
    print(f"  a new connection reaches p50 {percentile(ms, 50):7.1f} ms  p99 {percentile(ms, 99):7.1f} ms")
    print("  (Kubernetes at 5,000 nodes: ~25 s p99; goal p99 < 1 s)")


if __name__ == "__main__":
    main()
