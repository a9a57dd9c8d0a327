"""The ``kubelite`` command.

kubelite server --data-dir DIR [--listen ADDR:PORT] [--store sqlite|etcd://host:port,...]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
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
    return p


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
    if args.command == "server":
        return _run_server(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
