"""API creates per second and latency with concurrent clients: kubelite on SQLite against
kubelite on a real etcd, both measured in the same run, over HTTPS with bearer tokens.

    .venv/bin/python bench/api_creates.py [--clients 50] [--creates 3000]

Each create is a ConfigMap POST answered 201 only once the write is durable. Prints
creates/s, p50 and p99 per store and the SQLite/etcd ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
import uvloop
from _support import ETCD, client_settings, percentile, start_etcd, start_server, stop


async def drive(kubeconfig: Path, clients: int, creates: int, warmup: int = 500) -> tuple[float, list[float]]:
    """Steady state: ``warmup`` untimed creates first (connections, OpenAPI build, caches), then
    ``creates`` timed ones; the rate counts from the first timed request to the last answer."""
    url, headers, ctx = client_settings(kubeconfig)
    path = f"{url}/api/v1/namespaces/default/configmaps"
    latencies: list[float] = []
    timed_from: list[float] = []
    counter = iter(range(-warmup, creates))
    connector = aiohttp.TCPConnector(ssl=ctx, limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def client() -> None:
            for i in counter:
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"bench-{i + warmup}"},
                        "data": {"payload": "x" * 512}}  # fmt: skip
                t0 = time.perf_counter()
                async with session.post(path, json=body) as resp:
                    await resp.read()
                    if resp.status != 201:
                        raise SystemExit(f"create failed: {resp.status} {await resp.text()}")
                if i >= 0:
                    latencies.append(time.perf_counter() - t0)
                    if not timed_from:
                        timed_from.append(t0)

        async with session.get(url + "/openapi/v2") as resp:  # waits for the server's warm-up build
            await resp.read()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - timed_from[0]
    return creates / elapsed, latencies


def run(store: str, data_dir: Path, clients: int, creates: int) -> tuple[float, list[float]]:
    process, kubeconfig = start_server(data_dir, store)
    try:
        return uvloop.run(drive(kubeconfig, clients, creates))
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--creates", type=int, default=3000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kubelite-bench-"))
    results: dict[str, tuple[float, list[float]]] = {}
    try:
        results["sqlite"] = run("sqlite", root / "sqlite", args.clients, args.creates)
        if ETCD.exists():
            etcd, url = start_etcd(root / "etcd-data")
            try:
                results["etcd"] = run("etcd://" + url.removeprefix("http://"), root / "etcd", args.clients,
                                      args.creates)  # fmt: skip
            finally:
                stop(etcd)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"API creates, {args.clients} concurrent clients, {args.creates} ConfigMaps, HTTPS, durable")
    print(f"{'store':<8}{'creates/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for name, (rate, lat) in results.items():
        print(f"{name:<8}{rate:>12.0f}{percentile(lat, 50) * 1e3:>10.1f}{percentile(lat, 99) * 1e3:>10.1f}")
    if "etcd" in results:
        print(f"ratio sqlite/etcd: {results['sqlite'][0] / results['etcd'][0]:.2f}x creates/s")


if __name__ == "__main__":
    main()
