"""Durable creates per second and latency, SQLite against a real etcd measured in the same run.

    .venv/bin/python bench/store_throughput.py [--clients 50] [--creates 5000] [--value-bytes 1000]

Each back end gets a fresh temporary data dir; etcd is /usr/bin/etcd on free loopback ports,
stopped by its PID at the end. Prints creates/s, p50 and p99 per back end and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _support import ETCD, start_etcd

from kubelite.store import EtcdStorage, SqliteStorage, Storage


async def measure(store: Storage, clients: int, creates: int, value: bytes) -> tuple[float, list[float]]:
    """(creates per second, per-create latencies in seconds) for ``clients`` concurrent tasks."""
    await store.start()
    latencies: list[float] = []
    per_client = creates // clients

    async def client(n: int) -> None:
        for i in range(per_client):
            began = time.perf_counter()
            await store.create(f"/bench/{n:03d}/{i:06d}", value)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - began
    await store.close()
    return len(latencies) / elapsed, latencies


def report(name: str, rate: float, latencies: list[float]) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(f"{name:8s} {rate:10.0f} creates/s   p50 {q[49] * 1000:6.2f} ms   p99 {q[98] * 1000:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--creates", type=int, default=5000)
    parser.add_argument("--value-bytes", type=int, default=1000)
    args = parser.parse_args()
    value = b"x" * args.value_bytes
    work = Path(tempfile.mkdtemp(prefix="kubelite-bench-"))
    print(f"{args.creates} durable creates of {args.value_bytes} B from {args.clients} concurrent tasks")
    try:
        sqlite_rate, latencies = asyncio.run(
            measure(SqliteStorage(work / "state.db"), args.clients, args.creates, value)
        )
        report("sqlite", sqlite_rate, latencies)
        if not ETCD.exists():
            print("etcd     skipped: /usr/bin/etcd is not installed")
            return
        process, url = start_etcd(work / "etcd")
        try:
            etcd_rate, latencies = asyncio.run(measure(EtcdStorage([url]), args.clients, args.creates, value))
        finally:
            process.terminate()
            process.wait(15)
        report("etcd", etcd_rate, latencies)
        print(f"sqlite/etcd throughput ratio: {sqlite_rate / etcd_rate:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
