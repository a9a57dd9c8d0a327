"""iptables-restore time, kube-proxy-style rules: 100 / 1,000 / 10,000 services x 3 endpoints.

Runs in its own network namespaces (``klbench-<pid>-<n>``, deleted at the end; nothing in the root
namespace). For each size: a full restore into an empty namespace (the first sync), a second full
restore over it (the periodic resync), and a partial sync that changes one service's endpoints.
Both iptables-legacy (kubelite's default) and the nft-based iptables (Debian's default) are
timed in the same run, and the ratio printed. Prints figures, asserts nothing.

    .venv/bin/python bench/proxy_iptables_sync.py [--sizes 100,1000,10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from kubelite.host.ip import RealIp
from kubelite.host.iptables import RealIptables
from kubelite.proxy.iptables.rules import build_rules
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName


def make_state(services: int, *, shift: int = 0) -> ProxyState:
    sps, eps = {}, {}
    for i in range(services):
        spn = ServicePortName("bench", f"svc-{i}", "http")
        ip = f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}"
        sps[spn] = ServicePort(spn, (ip,), 80, "TCP", 8080, node_port=30000 + i % 2700)
        eps[spn] = tuple(
            Endpoint(
                f"10.244.{(i * 3 + k) // 250 % 250}.{(i * 3 + k) % 250 + 2 + (shift if i == 0 else 0)}", 8080
            )
            for k in range(3)
        )
    return ProxyState(sps, eps, node_ips=("172.31.0.11",))


async def measure(variant: str, services: int, netns: str) -> tuple[float, float, float, int]:
    runner = RealIptables(variant)
    state = make_state(services)
    full = build_rules(state)
    t0 = time.perf_counter()
    await runner.restore(full.text, netns=netns)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    await runner.restore(full.text, netns=netns)
    again = time.perf_counter() - t0
    changed = make_state(services, shift=1)
    spn = ServicePortName("bench", "svc-0", "http")
    part = build_rules(changed, changed=frozenset({spn}), existing=full.nat_chains)
    t0 = time.perf_counter()
    await runner.restore(part.text, netns=netns)
    partial = time.perf_counter() - t0
    return first, again, partial, full.text.count("\n-A ")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    args = parser.parse_args()
    ip = RealIp()
    made: list[str] = []
    try:
        print(f"{'services':>8} {'rules':>7} {'variant':>7} {'full 1st':>9} {'full 2nd':>9} {'partial':>8}")
        for n, size in enumerate(int(s) for s in args.sizes.split(",")):
            results = {}
            for k, variant in enumerate(("nft", "legacy")):
                name = f"klbench-{os.getpid()}-{n * 2 + k}"
                await ip.add_netns(name)
                made.append(name)
                first, again, partial, rules = await measure(variant, size, name)
                results[variant] = first
                print(f"{size:>8} {rules:>7} {variant:>7} {first:>8.3f}s {again:>8.3f}s {partial:>7.3f}s")
                await ip.delete_netns(name)
                made.remove(name)
            print(f"{'':>8} ratio nft/legacy (first full restore): {results['nft'] / results['legacy']:.2f}")
    finally:
        for name in made:
            await ip.delete_netns(name)


if __name__ == "__main__":
    asyncio.run(main())
