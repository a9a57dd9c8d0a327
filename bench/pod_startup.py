"""Pods per second on one node (create -> Running, create -> Ready): kubelite's CNI vs the reference.

    .venv/bin/python bench/pod_startup.py [--pods 100] [--image busybox|agnhost]

Starts ``kubelite up --nodes 1`` twice inside a benchmark host namespace (``klbench-<pid>-<n>``,
never the root namespace): once with kubelite's own CNI plugins (in the agent), once with the
reference plugins (containernetworking-plugins, executed per pod), the peer in the same run. For
each, it creates ``--pods`` pods at once through the API and watches until every pod is Running
and Ready. Printed: pods/s to Running and to Ready, p50/p99 per-pod latency, and the ratio.
The issue's goal: at least 20 pods/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from _support import client_settings, percentile, start_up, stop_up

IMAGES = {
    "busybox": ({"image": "busybox", "command": ["sleep", "3600"]}, False),
    "agnhost": (
        {
            "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
            "args": ["netexec", "--http-port=8080", "--udp-port=-1"],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        },
        True,
    ),
}


def _ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


async def run_round(kubeconfig: Path, pods: int, image: str) -> dict[str, float]:
    url, headers, ssl_ctx = client_settings(kubeconfig)
    container, _probe = IMAGES[image]
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    ready: dict[str, float] = {}
    conn = aiohttp.TCPConnector(ssl=ssl_ctx, limit=50)
    async with aiohttp.ClientSession(headers=headers, connector=conn) as session:
        ns_body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}
        async with session.post(f"{url}/api/v1/namespaces", json=ns_body) as resp:
            assert resp.status in (201, 409), await resp.text()

        async def watch() -> None:
            params = {"watch": "1", "timeoutSeconds": "300"}
            async with session.get(f"{url}/api/v1/namespaces/bench/pods", params=params) as resp:
                async for line in resp.content:
                    import orjson

                    pod = orjson.loads(line)["object"]
                    name = pod["metadata"]["name"]
                    now = time.monotonic()
                    if (pod.get("status") or {}).get("phase") == "Running":
                        running.setdefault(name, now)
                    if _ready(pod):
                        ready.setdefault(name, now)
                    if len(ready) == pods:
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        start = time.monotonic()

        async def create(i: int) -> None:
            name = f"p{i:04d}"
            body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "main", **container}], "terminationGracePeriodSeconds": 1},
            }
            created[name] = time.monotonic()
            async with session.post(f"{url}/api/v1/namespaces/bench/pods", json=body) as resp:
                assert resp.status == 201, await resp.text()

        await asyncio.gather(*(create(i) for i in range(pods)))
        try:
            await asyncio.wait_for(watcher, 300)
        except TimeoutError:
            print(f"  timed out: {len(running)} running, {len(ready)} ready of {pods}")
    all_running = max(running.values()) - start if len(running) == pods else float("nan")
    all_ready = max(ready.values()) - start if len(ready) == pods else float("nan")
    lat_run = sorted(running[n] - created[n] for n in running)
    lat_ready = sorted(ready[n] - created[n] for n in ready)
    return {
        "running_per_s": pods / all_running,
        "ready_per_s": pods / all_ready,
        "run_p50": percentile(lat_run, 50) * 1000,
        "run_p99": percentile(lat_run, 99) * 1000,
        "ready_p50": percentile(lat_ready, 50) * 1000,
        "ready_p99": percentile(lat_ready, 99) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--image", choices=sorted(IMAGES), default="agnhost")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("this benchmark builds network namespaces: run it as root")
    results: dict[str, dict[str, float]] = {}
    for cni in ("kubelite", "reference"):
        work = Path(tempfile.mkdtemp(prefix="kl-pods-"))
        proc = start_up(work / "up", f"b{os.getpid() % 10000}{cni[0]}", nodes=1, extra=("--cni", cni))
        try:
            results[cni] = asyncio.run(run_round(work / "up" / "kubeconfig", args.pods, args.image))
        finally:
            stop_up(proc)
            shutil.rmtree(work, ignore_errors=True)
    print(f"{args.pods} pods ({args.image}) created at once on one node:")
    print(f"{'CNI':<10} {'Running/s':>10} {'Ready/s':>9} {'run p50':>9} {'run p99':>9}", end="")
    print(f" {'ready p50':>10} {'ready p99':>10}")
    for cni, r in results.items():
        print(
            f"{cni:<10} {r['running_per_s']:>10.1f} {r['ready_per_s']:>9.1f} {r['run_p50']:>7.0f}ms "
            f"{r['run_p99']:>7.0f}ms {r['ready_p50']:>8.0f}ms {r['ready_p99']:>8.0f}ms"
        )
    k, ref = results["kubelite"], results["reference"]
    ratio = k["ready_per_s"] / ref["ready_per_s"]
    print(f"ratio kubelite/reference, pods/s to Ready: {ratio:.2f} (goal: >= 20 pods/s)")


if __name__ == "__main__":
    main()
