"""The ``kubelite`` command.

kubelite server --data-dir DIR [--listen ADDR:PORT] [--store sqlite|etcd://host:port,...]
kubelite agent  --kubeconfig F --node-name N --node-ip IP --data-dir DIR [--overlay vxlan|host-gw]
kubelite up     --data-dir DIR [--nodes N] [--overlay vxlan|host-gw] [--host-netns NAME]
kubelite down   --data-dir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from kubelite.apiserver.allocators import parse_port_range


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubelite", description="A lightweight Kubernetes whose network is real."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("server", help="run the API server, store and controllers (one per cluster)")
    s.add_argument(
        "--data-dir", required=True, type=Path, help="state, certificates and kubeconfig live here"
    )
    s.add_argument(
        "--listen", default="127.0.0.1:6443", help="ADDRESS:PORT to serve HTTPS on (default %(default)s)"
    )
    s.add_argument(
        "--store", default="sqlite", help="sqlite (embedded, the default) or etcd://HOST:PORT[,HOST:PORT...]"
    )
    s.add_argument(
        "--service-cluster-ip-range", default="10.96.0.0/12", help="service CIDR (default %(default)s)"
    )
    s.add_argument(
        "--service-node-port-range", default="30000-32767", help="NodePort range (default %(default)s)"
    )
    s.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pod CIDR (default %(default)s)")
    s.add_argument("--advertise-address", default="", help="address written into the kubernetes Endpoints")
    s.add_argument(
        "--compaction-interval",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="forget store history older than this many seconds (default %(default)s)",
    )
    s.add_argument(
        "--watch-bookmark-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how often watches that allow bookmarks get one (default %(default)s)",
    )
    s.add_argument(
        "--controllers",
        default="*",
        help="controllers to run, comma-separated: * for all, -name to leave one out, "
        "none for none (default %(default)s)",
    )
    s.add_argument(
        "--loadbalancer-pool",
        default="",
        help="addresses for LoadBalancer Services: ranges A-B and CIDRs, comma-separated",
    )
    s.add_argument("-v", "--verbose", action="store_true", help="log more")
    _agent_parser(sub)
    _up_parser(sub)
    return p


def _agent_parser(sub: Any) -> None:
    a = sub.add_parser(
        "agent", help="run the node agent (pods, CNI, overlay) inside a node's network namespace"
    )
    a.add_argument("--kubeconfig", required=True, type=Path, help="how to reach the API server")
    a.add_argument("--node-name", required=True, help="the Node to register")
    a.add_argument("--node-ip", required=True, help="this node's address (InternalIP)")
    a.add_argument("--data-dir", required=True, type=Path, help="pod sandboxes, logs and CNI state live here")
    a.add_argument("--overlay", choices=("vxlan", "host-gw", "none"), default="vxlan", help="between nodes")
    a.add_argument("--uplink", default="eth0", help="the interface toward the other nodes (default eth0)")
    a.add_argument(
        "--cni",
        choices=("kubelite", "reference"),
        default="kubelite",
        help="kubelite's own plugins (in process) or the reference plugins from --cni-bin-dir",
    )
    a.add_argument("--cni-bin-dir", default="/usr/lib/cni", help="where the reference plugins are")
    a.add_argument("--netns-prefix", default="", help="pod network namespaces are named PREFIX-<hash>")
    a.add_argument("--kubelet-port", type=int, default=10250, help="logs/exec/port-forward server port")
    a.add_argument("--cluster-dns", default="10.96.0.10", help="nameserver(s) for ClusterFirst pods")
    a.add_argument("--cluster-domain", default="cluster.local")
    a.add_argument(
        "--image-config", type=Path, default=None, help="YAML file mapping more images to commands"
    )
    a.add_argument("--kill-pods-on-exit", action="store_true", help="stop every pod when the agent stops")
    a.add_argument(
        "--proxy-mode",
        choices=("nftables", "iptables", "userspace", "none"),
        default="nftables",
        help="the service proxy's back end (default nftables; none: no proxy)",
    )
    a.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pod CIDR (for masquerade decisions)")
    a.add_argument("--service-cidr", default="10.96.0.0/12", help="service CIDR")
    a.add_argument("-v", "--verbose", action="store_true", help="log more")


def _up_parser(sub: Any) -> None:
    u = sub.add_parser("up", help="start a server and N agents in node namespaces on this machine")
    u.add_argument("--data-dir", required=True, type=Path, help="state; DATA_DIR/kubeconfig is written here")
    u.add_argument("--nodes", type=int, default=1, help="how many nodes (default 1)")
    u.add_argument("--overlay", choices=("vxlan", "host-gw"), default="vxlan", help="between nodes")
    u.add_argument("--name", default="kubelite", help="cluster name: prefixes namespaces and links")
    u.add_argument("--node-cidr", default="172.30.0.0/24", help="the node network (default %(default)s)")
    u.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pod CIDR (default %(default)s)")
    u.add_argument("--service-cidr", default="10.96.0.0/12", help="service CIDR (default %(default)s)")
    u.add_argument(
        "--host-netns",
        default=None,
        help="build the node network inside this network namespace, not the host's (created if missing)",
    )
    u.add_argument("--api-port", type=int, default=6443, help="API port on 127.0.0.1 (0: any free port)")
    u.add_argument("--cni", choices=("kubelite", "reference"), default="kubelite", help="which CNI plugins")
    u.add_argument(
        "--proxy-mode",
        choices=("nftables", "iptables", "userspace", "none"),
        default="nftables",
        help="every node's service proxy back end (default nftables)",
    )
    u.add_argument("--store", default="sqlite", help="sqlite or etcd://HOST:PORT")
    u.add_argument(
        "--loadbalancer-pool",
        default="",
        help="addresses for LoadBalancer Services: ranges A-B and CIDRs (default: the top of --node-cidr)",
    )
    u.add_argument("-v", "--verbose", action="store_true", help="log more")
    d = sub.add_parser("down", help="remove what a killed `kubelite up` left behind")
    d.add_argument("--data-dir", required=True, type=Path)


def _run_agent(args: argparse.Namespace) -> int:
    from kubelite.agent.app import AgentOptions, parse_dns, run_agent

    opts = AgentOptions(
        kubeconfig=args.kubeconfig,
        node_name=args.node_name,
        node_ip=args.node_ip,
        data_dir=args.data_dir,
        overlay=args.overlay,
        uplink=args.uplink,
        cni=args.cni,
        cni_bin_dir=args.cni_bin_dir,
        netns_prefix=args.netns_prefix,
        kubelet_port=args.kubelet_port,
        cluster_dns=tuple(parse_dns(args.cluster_dns)),
        cluster_domain=args.cluster_domain,
        image_config=args.image_config,
        kill_pods_on_exit=args.kill_pods_on_exit,
        proxy_mode=args.proxy_mode,
        cluster_cidr=args.cluster_cidr,
        service_cidr=args.service_cidr,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        _watch_children_with_pidfds(loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_agent(opts, stop)

    try:
        # Not uvloop: the agent starts many short processes, and CPython's own spawn uses vfork,
        # whose cost does not grow with the agent's memory (uvloop forks: ~5x the CPU per spawn).
        asyncio.run(main())
    except (OSError, ValueError, TimeoutError) as e:
        print(f"kubelite agent: {e}", file=sys.stderr)
        return 1
    return 0


def _watch_children_with_pidfds(loop: asyncio.AbstractEventLoop) -> None:
    """Reap children through pidfds on the loop, not one waiting thread per child (3.11's default)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            watcher = asyncio.PidfdChildWatcher()
            asyncio.set_child_watcher(watcher)
            watcher.attach_loop(loop)
        except (AttributeError, OSError):
            pass  # no pidfds here: keep the default watcher


def _run_up(args: argparse.Namespace) -> int:
    from kubelite.cluster.up import UpError, UpOptions, prepare_host_netns, run_up

    try:
        original, created = prepare_host_netns(args.host_netns)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"kubelite up: cannot use --host-netns {args.host_netns}: {e}", file=sys.stderr)
        return 1
    opts = UpOptions(
        data_dir=args.data_dir.resolve(),
        nodes=args.nodes,
        overlay=args.overlay,
        name=args.name,
        node_cidr=args.node_cidr,
        cluster_cidr=args.cluster_cidr,
        service_cidr=args.service_cidr,
        host_netns=args.host_netns,
        api_port=args.api_port,
        cni=args.cni,
        store=args.store,
        load_balancer_pool=args.loadbalancer_pool,
        original_netns=original,
        created_host_netns=created,
        agent_args=("--proxy-mode", args.proxy_mode, *(("--verbose",) if args.verbose else ())),
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_up(opts, stop, out=lambda text: print(text, flush=True))

    try:
        _run(main())
    except (UpError, ValueError) as e:
        print(f"kubelite up: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"kubelite up: cannot start: {e}", file=sys.stderr)
        return 1
    finally:
        if created and args.host_netns:
            subprocess.run(["ip", "netns", "del", args.host_netns], capture_output=True)
    return 0


def _run_down(args: argparse.Namespace) -> int:
    from kubelite.cluster.up import UpError, run_down

    async def main() -> list[str]:
        return await run_down(args.data_dir.resolve())

    try:
        problems = asyncio.run(main())
    except UpError as e:
        print(f"kubelite down: {e}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"kubelite down: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _run_server(args: argparse.Namespace) -> int:
    import ipaddress

    from kubelite.apiserver.server import ServerOptions, serve, split_listen

    try:
        split_listen(args.listen)
        ports = parse_port_range(args.service_node_port_range)
        ipaddress.ip_network(args.service_cluster_ip_range)
        ipaddress.ip_network(args.cluster_cidr)
        if args.compaction_interval <= 0 or args.watch_bookmark_interval <= 0:
            raise ValueError("--compaction-interval and --watch-bookmark-interval must be positive")
    except ValueError as e:
        print(f"kubelite server: {e}", file=sys.stderr)
        return 2
    opts = ServerOptions(
        data_dir=args.data_dir,
        listen=args.listen,
        store=args.store,
        service_cidr=args.service_cluster_ip_range,
        node_port_range=ports,
        cluster_cidr=args.cluster_cidr,
        advertise_address=args.advertise_address,
        bookmark_interval=args.watch_bookmark_interval,
        compaction_interval=args.compaction_interval,
        controllers=()
        if args.controllers == "none"
        else tuple(c.strip() for c in args.controllers.split(",")),
        load_balancer_pool=args.loadbalancer_pool,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(opts, stop)

    try:
        _run(main())
    except OSError as e:
        print(f"kubelite server: cannot start: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"kubelite server: {e}", file=sys.stderr)
        return 2
    return 0


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (several times faster TLS and sockets), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    commands = {"server": _run_server, "agent": _run_agent, "up": _run_up, "down": _run_down}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
