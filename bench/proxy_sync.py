"""Service proxy sync time: full sync and one-service partial sync, at 100 / 1,000 / 10,000 services.

    .venv/bin/python bench/proxy_sync.py [--sizes 100,1000,10000]          (needs root)

Each size gets a fresh namespace ``klbench-<pid>-<n>`` (deleted at the end, also after a failure;
the root namespace is not touched). Services have 3 endpoints each, one in ten a NodePort. Printed:
rule generation + apply wall time for a full sync, then for adding one service (partial), and the
first-packet latency (TCP connect, SYN -> SYN-ACK, 300 new connections) to the ClusterIP of the
*last* service, whose endpoint is a server inside the namespace. nftables and iptables (kube-proxy's
layout, the peer) are measured in the same run. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import time

from kubelite.host.ip import RealIp
from kubelite.host.netns import socket_in_netns
from kubelite.proxy.backend import ProxyBackend
from kubelite.proxy.iptables.backend import IptablesBackend
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName
from kubelite.proxy.nftables import NftablesBackend

SERVER_IP = "10.250.0.2"

_counter = itertools.count(1)


def state(n: int) -> ProxyState:
    services, endpoints = {}, {}
    for i in range(n):
        if i == n - 1:  # the measured service: its endpoint answers inside the namespace
            spn = ServicePortName("bench", f"svc{i}", "", "TCP")
            vip = f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}"
            services[spn] = ServicePort(spn, (vip,), 80, "TCP", 8080)
            endpoints[spn] = (Endpoint(SERVER_IP, 8080),)
            continue
        spn = ServicePortName("bench", f"svc{i}", "", "TCP")
        vip = f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}"
        services[spn] = ServicePort(spn, (vip,), 80, "TCP", 8080, node_port=30000 + i if i % 10 == 0 else 0)
        endpoints[spn] = tuple(
            Endpoint(f"10.244.{(i * 3 + k) // 250 % 256}.{(i * 3 + k) % 250 + 2}", 8080) for k in range(3)
        )
    return ProxyState(services, endpoints, node_ips=("172.31.0.11",))


def vip_of(i: int) -> str:
    return f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}"


async def connect_latency(netns: str, vip: str, count: int = 300) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    times = []
    socks = [await socket_in_netns(netns) for _ in range(count)]  # made first: not in the timing
    for sock in socks:
        t0 = time.perf_counter()
        await loop.sock_connect(sock, (vip, 80))
        times.append(time.perf_counter() - t0)
        sock.close()
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]


async def measure(ip: RealIp, mode: str, n: int) -> tuple[float, float, float, float]:
    netns = f"klbench-{os.getpid()}-{next(_counter)}"
    await ip.add_netns(netns)
    server: asyncio.base_events.Server | None = None
    try:
        await ip.batch(
            ["link set lo up", f"addr add {SERVER_IP}/32 dev lo", "route add 10.96.0.0/12 dev lo"],
            netns=netns,
        )
        lsock = await socket_in_netns(netns)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((SERVER_IP, 8080))
        lsock.listen(1024)
        server = await asyncio.start_server(lambda r, w: w.close(), sock=lsock)
        backend: ProxyBackend = (
            NftablesBackend(netns=netns) if mode == "nftables" else IptablesBackend(netns=netns)
        )
        base = state(n)
        t0 = time.perf_counter()
        await backend.sync(base, None)
        full = time.perf_counter() - t0
        p50, p99 = await connect_latency(netns, vip_of(n - 1))
        bigger = state(n + 1)
        # state(n + 1) moves the measured endpoint to the new last service: two services change.
        changed = frozenset(
            {
                ServicePortName("bench", f"svc{n}", "", "TCP"),
                ServicePortName("bench", f"svc{n - 1}", "", "TCP"),
            }
        )
        t0 = time.perf_counter()
        await backend.sync(bigger, changed)
        partial = time.perf_counter() - t0
        return full, partial, p50, p99
    finally:
        if server is not None:
            server.close()
        await ip.delete_netns(netns)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,10000")
    sizes = [int(x) for x in parser.parse_args().sizes.split(",")]
    ip = RealIp()
    results: dict[tuple[str, int], tuple[float, float, float, float]] = {}
    print(
        f"{'mode':<9} {'services':>9} {'full sync ms':>13} {'add one ms':>11}"
        f" {'connect p50 us':>15} {'p99 us':>8}"
    )
    for n in sizes:
        for mode in ("nftables", "iptables"):
            full, partial, p50, p99 = results[(mode, n)] = await measure(ip, mode, n)
            print(
                f"{mode:<9} {n:>9} {full * 1e3:>13.1f} {partial * 1e3:>11.1f}"
                f" {p50 * 1e6:>15.0f} {p99 * 1e6:>8.0f}"
            )
    first, last = sizes[0], sizes[-1]
    for mode in ("nftables", "iptables"):
        a, b = results[(mode, first)], results[(mode, last)]
        print(
            f"{mode}: connect p50 at {last} / at {first} services = {b[2] / a[2]:.2f}; "
            f"add-one {b[1] / a[1]:.1f}x"
        )
    n = last
    nft, ipt = results[("nftables", n)], results[("iptables", n)]
    print(
        f"nftables / iptables at {n}: full sync {nft[0] / ipt[0]:.2f}, add one {nft[1] / ipt[1]:.2f}, "
        f"connect p50 {nft[2] / ipt[2]:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
