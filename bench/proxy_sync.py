"""Service proxy sync time: full sync and one-service partial sync, at 100 / 1,000 / 10,000 services.

    .venv/bin/python bench/proxy_sync.py [--sizes 100,1000,10000]          (needs root)

Each size gets a fresh namespace ``klbench-<pid>-<n>`` (deleted at the end, also after a failure;
the root namespace is not touched). Services have 3 endpoints each, one in ten a NodePort. Printed:
rule generation + ``nft -f -`` wall time for a full sync, then for adding one service (partial).
The iptables back end is the peer when ``kubelite.proxy.iptables`` exists; otherwise nftables is
printed alone. First-packet connect latency is not measured yet (see the nftables README).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time

from kubelite.host.ip import RealIp
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName
from kubelite.proxy.nftables import NftablesBackend

_counter = itertools.count(1)


def state(n: int) -> ProxyState:
    services, endpoints = {}, {}
    for i in range(n):
        spn = ServicePortName("bench", f"svc{i}", "", "TCP")
        vip = f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}"
        services[spn] = ServicePort(spn, (vip,), 80, "TCP", 8080, node_port=30000 + i if i % 10 == 0 else 0)
        endpoints[spn] = tuple(
            Endpoint(f"10.244.{(i * 3 + k) // 250 % 256}.{(i * 3 + k) % 250 + 2}", 8080) for k in range(3)
        )
    return ProxyState(services, endpoints, node_ips=("172.31.0.11",))


async def measure(ip: RealIp, n: int) -> tuple[float, float]:
    netns = f"klbench-{os.getpid()}-{next(_counter)}"
    await ip.add_netns(netns)
    try:
        backend = NftablesBackend(netns=netns)
        base = state(n)
        t0 = time.perf_counter()
        await backend.sync(base, None)
        full = time.perf_counter() - t0
        bigger = state(n + 1)
        t0 = time.perf_counter()
        await backend.sync(bigger, frozenset({ServicePortName("bench", f"svc{n}", "", "TCP")}))
        partial = time.perf_counter() - t0
        return full, partial
    finally:
        await ip.delete_netns(netns)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,10000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    try:
        import kubelite.proxy.iptables  # noqa: F401

        print("note: kubelite.proxy.iptables exists but is not wired into this bench yet; nftables alone")
    except ImportError:
        print("note: no iptables back end yet: nftables alone")
    ip = RealIp()
    print(f"{'services':>9} {'full sync ms':>13} {'add one ms':>11}")
    for n in sizes:
        full, partial = await measure(ip, n)
        print(f"{n:>9} {full * 1000:>13.1f} {partial * 1000:>11.1f}")


if __name__ == "__main__":
    asyncio.run(main())
