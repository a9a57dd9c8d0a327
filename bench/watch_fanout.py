"""Watch fan-out: time from a write to its event at each of N watchers, kubelite on SQLite
against kubelite on a real etcd, measured in the same run.

    .venv/bin/python bench/watch_fanout.py [--watchers 100] [--writes 200] [--interval 0.02]

N clients each hold a watch on ConfigMaps in one namespace; one writer creates objects at a
steady pace. The latency of one (write, watcher) pair is from the moment the POST is sent to
the moment that watcher has parsed the event. Prints p50/p99/max per store.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import uvloop
from _support import ETCD, client_settings, percentile, start_etcd, start_server, stop


async def measure(kubeconfig: Path, watchers: int, writes: int, interval: float) -> list[float]:
    url, headers, ctx = client_settings(kubeconfig)
    base = f"{url}/api/v1/namespaces/default/configmaps"
    sent: dict[str, float] = {}
    latencies: list[float] = []
    ready = 0
    all_ready = asyncio.Event()
    connector = aiohttp.TCPConnector(ssl=ctx, limit=watchers + 4)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
        async with session.get(base + "?limit=1") as resp:
            rv = (await resp.json())["metadata"]["resourceVersion"]

        async def watcher() -> None:
            nonlocal ready
            seen = 0
            async with session.get(f"{base}?watch=true&resourceVersion={rv}") as resp:
                ready += 1
                if ready == watchers:
                    all_ready.set()
                async for line in resp.content:
                    event = orjson.loads(line)
                    name = event["object"]["metadata"]["name"]
                    if event["type"] == "ADDED" and name in sent:
                        latencies.append(time.perf_counter() - sent[name])
                        seen += 1
                        if seen == writes:
                            return

        tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
        await asyncio.wait_for(all_ready.wait(), 30)
        await asyncio.sleep(0.5)  # let every watch reach the server's store watch
        for i in range(writes):
            name = f"fan-{i}"
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
            sent[name] = time.perf_counter()
            async with session.post(base, json=body) as resp:
                await resp.read()
            await asyncio.sleep(interval)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kubelite-bench-"))
    results: dict[str, list[float]] = {}
    try:
        process, kubeconfig = start_server(root / "sqlite")
        try:
            results["sqlite"] = uvloop.run(measure(kubeconfig, args.watchers, args.writes, args.interval))
        finally:
            stop(process)
        if ETCD.exists():
            etcd, url = start_etcd(root / "etcd-data")
            try:
                process, kubeconfig = start_server(root / "etcd", "etcd://" + url.removeprefix("http://"))
                try:
                    results["etcd"] = uvloop.run(
                        measure(kubeconfig, args.watchers, args.writes, args.interval)
                    )
                finally:
                    stop(process)
            finally:
                stop(etcd)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"watch fan-out: {args.watchers} watchers x {args.writes} writes every {args.interval * 1e3:.0f} ms"
    )
    print(f"{'store':<8}{'events':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, lat in results.items():
        print(f"{name:<8}{len(lat):>8}{percentile(lat, 50) * 1e3:>10.1f}{percentile(lat, 99) * 1e3:>10.1f}"
              f"{max(lat) * 1e3:>10.1f}")  # fmt: skip
    if "etcd" in results:
        ratio = percentile(results["etcd"], 99) / percentile(results["sqlite"], 99)
        print(f"ratio etcd/sqlite p99: {ratio:.2f}x")


if __name__ == "__main__":
    main()
