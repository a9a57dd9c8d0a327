"""Pod network set-up cost: wall ms per pod for CNI ADD and DEL, kubelite vs the reference plugins.

    .venv/bin/python bench/cni_setup.py [--pods 50] [--variants basic,portmap]
                                        [--runners inprocess,exec,reference]   (needs root)

For each variant of one conflist (``basic`` = loopback + bridge + host-local with a default gateway
and ipMasq; ``portmap`` = the same + portmap, each pod mapping one host port) and each runner
(kubelite's ``InProcessCni``; kubelite's plugins as executables through ``ExecCni``; the reference
plugins from /usr/lib/cni through ``ExecCni``), the benchmark makes a fresh node namespace and N pod
namespaces, ADDs the pods one after the other, then DELs them, timing each call. Namespace creation
is timed separately and not included. Executables run inside the node namespace through
``nsenter --net=``; in-process plugins target it with ``ip -n``. Everything lives in namespaces
named ``klbench-<pid>-<n>``, deleted at the end (also after a failure); the root namespace is not
touched. Figures are printed, never asserted; the ratio column is kubelite / reference.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
from _support import percentile

from kubelite.cni import (
    CniRunner,
    ExecCni,
    InProcessCni,
    NetworkConfigList,
    PortMapping,
    RuntimeConf,
    install_plugin_executables,
)
from kubelite.host.ip import RealIp

REFERENCE_DIR = Path("/usr/lib/cni")
PREFIX = f"klbench-{os.getpid()}-"


@dataclass
class Figures:
    runner: str
    variant: str
    add_ms: list[float]
    del_ms: list[float]
    netns_ms: float


def conflist(data_dir: Path, portmap: bool) -> NetworkConfigList:
    plugins: list[dict[str, Any]] = [
        {"type": "loopback"},
        {
            "type": "bridge",
            "bridge": "cni0",
            "isDefaultGateway": True,
            "ipMasq": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.200.0.0/16"}]],
                "dataDir": str(data_dir),
            },
        },
    ]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    return NetworkConfigList.from_json({"cniVersion": "1.0.0", "name": "klbench", "plugins": plugins})


class Namespaces:
    """Every namespace the benchmark makes, deleted by :meth:`close`."""

    def __init__(self, ip: RealIp) -> None:
        self.ip = ip
        self.names: list[str] = []
        self.counter = itertools.count(1)

    async def make(self) -> str:
        name = f"{PREFIX}{next(self.counter)}"
        await self.ip.add_netns(name)
        self.names.append(name)
        return name

    async def close(self) -> None:
        for name in reversed(self.names):
            try:
                await self.ip.delete_netns(name)
            except Exception as exc:
                print(f"warning: could not delete {name}: {exc}", file=sys.stderr)
        self.names.clear()


async def run_one(
    spaces: Namespaces, runner_name: str, make_runner: Any, variant: str, pods: int, work: Path
) -> Figures:
    node = await spaces.make()
    await spaces.ip.batch(["link set dev lo up"], netns=node)
    runner: CniRunner = make_runner(node)
    net = conflist(work / f"{runner_name}-{variant}", variant == "portmap")
    start = time.perf_counter()
    pod_names = [await spaces.make() for _ in range(pods)]
    netns_ms = (time.perf_counter() - start) * 1000 / pods
    rts = [
        RuntimeConf(
            f"bench-{i}",
            f"/run/netns/{name}",
            args=(("K8S_POD_NAMESPACE", "default"), ("K8S_POD_NAME", f"pod-{i}")),
            port_mappings=(PortMapping(30000 + i, 80),) if variant == "portmap" else (),
        )
        for i, name in enumerate(pod_names)
    ]
    add_ms, del_ms = [], []
    for rt in rts:
        t = time.perf_counter()
        await runner.add(net, rt)
        add_ms.append((time.perf_counter() - t) * 1000)
    for rt in rts:
        t = time.perf_counter()
        await runner.delete(net, rt)
        del_ms.append((time.perf_counter() - t) * 1000)
    return Figures(runner_name, variant, add_ms, del_ms, netns_ms)


def show(results: Sequence[Figures]) -> None:
    def row(f: Figures, values: list[float]) -> str:
        return (
            f"{statistics.fmean(values):8.1f} {percentile(values, 50):7.1f} {percentile(values, 90):7.1f} "
            f"{percentile(values, 99):7.1f}"
        )

    print(f"\n{'runner':<12} {'variant':<8} | {'ADD ms/pod: mean':>16} {'p50':>7} {'p90':>7} {'p99':>7} |"
          f" {'DEL mean':>8} {'p50':>7} {'p90':>7} {'p99':>7} | netns add ms/pod")  # fmt: skip
    for f in results:
        print(
            f"{f.runner:<12} {f.variant:<8} | {row(f, f.add_ms):>40} | {row(f, f.del_ms)} | {f.netns_ms:6.1f}"
        )
    reference = {f.variant: f for f in results if f.runner == "reference"}
    if not reference:
        return
    print("\nratio kubelite / reference (mean wall ms per pod; < 1.00 means kubelite is faster)")
    for f in results:
        ref = reference.get(f.variant)
        if f.runner == "reference" or ref is None:
            continue
        add = statistics.fmean(f.add_ms) / statistics.fmean(ref.add_ms)
        dele = statistics.fmean(f.del_ms) / statistics.fmean(ref.del_ms)
        print(f"  {f.runner:<12} {f.variant:<8}  ADD {add:5.2f}   DEL {dele:5.2f}")


async def main_async(pods: int, variants: list[str], runners: list[str]) -> list[Figures]:
    ip = RealIp()
    spaces = Namespaces(ip)
    work = Path(tempfile.mkdtemp(prefix="kubelite-cni-bench-"))
    bin_dir = work / "bin"
    install_plugin_executables(bin_dir)
    makers = {
        "inprocess": lambda node: InProcessCni(host_netns=node),
        "exec": lambda node: ExecCni([bin_dir], host_netns=node),
        "reference": lambda node: ExecCni([REFERENCE_DIR], host_netns=node),
    }
    results = []
    try:
        for variant in variants:
            for name in runners:
                print(f"{name} / {variant}: {pods} pods ...", flush=True)
                results.append(await run_one(spaces, name, makers[name], variant, pods, work))
                await spaces.close()
    finally:
        await spaces.close()
        shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--variants", default="basic,portmap")
    parser.add_argument("--runners", default="inprocess,exec,reference")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the benchmark needs root (network namespaces)")
    runners = [r for r in args.runners.split(",") if r]
    if "reference" in runners and not (REFERENCE_DIR / "bridge").exists():
        print("the reference plugins are not installed (containernetworking-plugins): skipping them")
        runners.remove("reference")
    if not 1 <= args.pods <= 1000:
        raise SystemExit("--pods must be between 1 and 1000")
    results = uvloop.run(main_async(args.pods, [v for v in args.variants.split(",") if v], runners))
    show(results)


if __name__ == "__main__":
    main()
