"""Pod-to-pod TCP throughput across two nodes, host-gw and VXLAN, against node-to-node in the same run.

    sudo .venv/bin/python bench/overlay_throughput.py [--seconds 3] [--repeat 1]

Builds two sandbox nodes in network namespaces named ``klbench-<pid>-<n>`` (a segment bridge, node
IPs 172.31.0.11-12/24, a ``cni0`` bridge and one pod per node on 10.244.<i>.0/24), then runs
``iperf3 -c ... -t SECONDS -J`` against a one-shot ``iperf3 -s -1`` for:

- node-to-node (node IP to node IP over the segment: the peer),
- pod-to-pod with kubelite's host-gw overlay (pod MTU 1500),
- pod-to-pod with kubelite's vxlan overlay (pod MTU 1450, as flannel configures it).

Prints Gbit/s (median over ``--repeat`` rounds, modes interleaved) and pod/node ratios. Every
namespace and process is removed at the end, also on Ctrl-C or SIGTERM; nothing is created in the
root network namespace, and no namespace has a route out of the lab.
Published for flannel (one test): vxlan about 45% of host-to-host, host-gw about 93%.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

from kubelite.host.ip import RealIp, addr_add, bridge, link_master, link_up, route_add
from kubelite.overlay import NodeRoute, OverlayKind, make_overlay

IPERF3 = shutil.which("iperf3") or "/usr/bin/iperf3"
PREFIX = f"klbench-{os.getpid()}-"
PORT = 5201


class Sandbox:
    """Namespaces and processes this benchmark made; :meth:`cleanup` removes them (synchronously)."""

    def __init__(self) -> None:
        self.ip = RealIp()
        self.counter = itertools.count(1)
        self.namespaces: list[str] = []
        self.processes: list[asyncio.subprocess.Process] = []

    async def netns(self) -> str:
        name = f"{PREFIX}{next(self.counter)}"
        await self.ip.add_netns(name)
        self.namespaces.append(name)
        return name

    async def spawn(self, netns: str, argv: Sequence[str]) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            self.ip.binary, "netns", "exec", netns, *argv,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self.processes.append(proc)
        return proc

    async def run(self, netns: str, argv: Sequence[str], seconds: float) -> str:
        proc = await self.spawn(netns, argv)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), seconds)
        finally:
            await self.stop(proc)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed in {netns}: {err.decode(errors='replace').strip()}")
        return out.decode()

    async def stop(self, proc: asyncio.subprocess.Process) -> None:
        self.kill(proc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
        if proc in self.processes:
            self.processes.remove(proc)

    def kill(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)  # a process this benchmark started, by its PID

    def cleanup(self) -> None:
        """Kill what is left (after Ctrl-C the event loop is gone) and delete every namespace."""
        for proc in self.processes:
            self.kill(proc)
        self.processes.clear()
        for name in reversed(self.namespaces):
            subprocess.run(
                [self.ip.binary, "netns", "del", name], capture_output=True, timeout=30, check=False
            )
        self.namespaces.clear()


class Lab:
    """Two nodes on a segment bridge, one pod each; the overlay under test is set up per mode."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.nodes: list[str] = []
        self.pods: list[str] = []
        self.locals = [NodeRoute(f"node-{i}", f"172.31.0.1{i}", f"10.244.{i}.0/24") for i in (1, 2)]

    async def build(self) -> None:
        ip = self.box.ip
        segment = await self.box.netns()
        await ip.batch([link_up("lo"), bridge("br0"), link_up("br0")], netns=segment)
        for i in (1, 2):
            node, pod = await self.box.netns(), await self.box.netns()
            await ip.batch(
                [
                    f"link add s{i} type veth peer name eth0 netns {node}",
                    link_master(f"s{i}", "br0"),
                    link_up(f"s{i}"),
                ],
                netns=segment,
            )
            await ip.batch(
                [
                    link_up("lo"), addr_add(f"172.31.0.1{i}/24", "eth0"), link_up("eth0"),
                    bridge("cni0"), addr_add(f"10.244.{i}.1/24", "cni0"), link_up("cni0"),
                    f"link add vpod type veth peer name eth0 netns {pod}",
                    link_master("vpod", "cni0"), link_up("vpod"),
                ],
                netns=node,
            )  # fmt: skip
            await ip.batch(
                [
                    link_up("lo"),
                    addr_add(f"10.244.{i}.2/24", "eth0"),
                    link_up("eth0"),
                    route_add("default", via=f"10.244.{i}.1"),
                ],
                netns=pod,
            )
            await self.box.run(node, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], 10)
            self.nodes.append(node)
            self.pods.append(pod)

    async def pod_mtu(self, mtu: int) -> None:
        for node, pod in zip(self.nodes, self.pods, strict=True):
            await self.box.ip.batch([f"link set dev vpod mtu {mtu}"], netns=node)
            await self.box.ip.batch([f"link set dev eth0 mtu {mtu}"], netns=pod)

    async def iperf(self, server_ns: str, server_ip: str, client_ns: str, seconds: int) -> float:
        """Gbit/s received by a one-shot iperf3 server from a client in another namespace."""
        server = await self.box.spawn(
            server_ns, [IPERF3, "-s", "-1", "--forceflush", "-B", server_ip, "-p", str(PORT)]
        )
        try:
            assert server.stdout is not None
            async with asyncio.timeout(10):
                while b"listening" not in (line := await server.stdout.readline()):
                    if not line:
                        raise SystemExit("iperf3 server exited before listening")
            out = await self.box.run(
                client_ns, [IPERF3, "-c", server_ip, "-p", str(PORT), "-t", str(seconds), "-J"], seconds + 20
            )
        finally:
            await self.box.stop(server)
        result = json.loads(out)
        return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9

    async def node_to_node(self, seconds: int) -> float:
        return await self.iperf(self.nodes[1], "172.31.0.12", self.nodes[0], seconds)

    async def pod_to_pod(self, mode: OverlayKind, seconds: int) -> float:
        await self.pod_mtu(1450 if mode == "vxlan" else 1500)
        overlays = [
            make_overlay(mode, local, uplink="eth0", netns=node, ip=self.box.ip)
            for node, local in zip(self.nodes, self.locals, strict=True)
        ]
        try:
            for overlay in overlays:
                await overlay.setup()
                await overlay.sync(self.locals)
            return await self.iperf(self.pods[1], "10.244.2.2", self.pods[0], seconds)
        finally:
            for overlay in overlays:
                await overlay.teardown()


async def measure(box: Sandbox, seconds: int, repeat: int) -> dict[str, list[float]]:
    lab = Lab(box)
    await lab.build()
    figures: dict[str, list[float]] = {"node-to-node": [], "host-gw": [], "vxlan": []}
    for _ in range(repeat):
        figures["node-to-node"].append(await lab.node_to_node(seconds))
        figures["host-gw"].append(await lab.pod_to_pod("host-gw", seconds))
        figures["vxlan"].append(await lab.pod_to_pod("vxlan", seconds))
    return figures


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 -t per measurement (1-30)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the three measurements (1-10)")
    args = parser.parse_args()
    if not 1 <= args.seconds <= 30 or not 1 <= args.repeat <= 10:
        parser.error("--seconds must be 1-30 and --repeat 1-10")
    if os.geteuid() != 0:
        raise SystemExit("this benchmark needs root (it makes network namespaces); run it with sudo")
    if not os.path.exists(IPERF3):
        raise SystemExit("iperf3 is not installed (Debian package iperf3)")
    signal.signal(signal.SIGTERM, _terminate)
    box = Sandbox()
    print(f"iperf3 TCP, {args.seconds} s per run, {args.repeat} round(s), 2 nodes in network namespaces")
    try:
        figures = asyncio.run(measure(box, args.seconds, args.repeat))
    except KeyboardInterrupt:
        print("interrupted; removing the namespaces", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        box.cleanup()
    median = {name: statistics.median(values) for name, values in figures.items()}
    node = median["node-to-node"]
    runs = {name: ", ".join(f"{v:.2f}" for v in values) for name, values in figures.items()}
    print(f"{'node-to-node':20s} {node:7.2f} Gbit/s                    runs: {runs['node-to-node']}")
    for mode in ("host-gw", "vxlan"):
        ratio = median[mode] / node
        label = f"pod-to-pod {mode}"
        print(f"{label:20s} {median[mode]:7.2f} Gbit/s   pod/node {ratio:5.0%}   runs: {runs[mode]}")
    print("published (flannel, one test): host-gw ≈ 93%, vxlan ≈ 45% of host-to-host")


if __name__ == "__main__":
    main()
