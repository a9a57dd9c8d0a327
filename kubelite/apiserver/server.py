"""``kubelite server``: open the store, bootstrap, serve HTTPS, write the kubeconfig when ready.

Shutdown (SIGTERM/SIGINT, or ``stop`` being set) closes listeners first, then watches and
the store, so every acknowledged write is already durable when the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from kubelite.api.resources import RESOURCES
from kubelite.apiserver.allocators import cluster_ip_allocator, node_port_allocator
from kubelite.apiserver.app import AppState, build_app
from kubelite.apiserver.bootstrap import bootstrap
from kubelite.apiserver.certs import ensure_credentials, kubeconfig, serving_hosts, write_kubeconfig
from kubelite.apiserver.nsfinalizer import NamespaceFinalizer
from kubelite.apiserver.objects import ObjectStore
from kubelite.apiserver.registry import RegistryConfig, RegistryContext, strategy_for
from kubelite.apiserver.repair import AllocationRepair
from kubelite.apiserver.rest import Rest
from kubelite.store.base import AutoCompactor
from kubelite.store.factory import open_storage
from kubelite.store.interface import Storage, StoreError

if TYPE_CHECKING:
    from kubelite.controllers.manager import ControllerManager

log = logging.getLogger("kubelite.server")


@dataclass(slots=True)
class ServerOptions:
    data_dir: Path
    listen: str = "127.0.0.1:6443"
    store: str = "sqlite"
    service_cidr: str = "10.96.0.0/12"
    node_port_range: tuple[int, int] = (30000, 32767)
    cluster_cidr: str = "10.244.0.0/16"
    advertise_address: str = ""
    bookmark_interval: float = 60.0
    compaction_interval: float = 300.0
    repair_interval: float = 180.0
    controllers: tuple[str, ...] = ("*",)
    """Controllers to run in this process ("*" all, "-name" without one, () none)."""
    load_balancer_pool: str = ""
    extra_sockets: tuple[socket.socket, ...] = ()
    """Listening sockets to serve on as well (``kubelite up``: the host's loopback, from another netns)."""
    kubeconfig_server: str = ""
    """The server URL written into ``DATA_DIR/kubeconfig`` (default: the listen address)."""


def split_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:6443' / '[::1]:6443' / ':6443' -> (host, port); ValueError with a sentence."""
    host, sep, port_text = listen.rpartition(":")
    if not sep:
        raise ValueError(f"--listen {listen!r}: write it as ADDRESS:PORT, e.g. 127.0.0.1:6443")
    host = host.strip("[]") or "0.0.0.0"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--listen {listen!r}: the port must be a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"--listen {listen!r}: the port must be 0-65535")
    return host, port


def default_advertise_address(listen_host: str) -> str:
    """The address other nodes reach the API on: the listen address when it is a real one."""
    try:
        addr = ipaddress.ip_address(listen_host)
    except ValueError:
        return ""
    if addr.is_loopback or addr.is_unspecified:
        return ""
    return listen_host


async def build_registry(storage: Storage, config: RegistryConfig) -> tuple[Rest, RegistryContext]:
    """The REST layer over a started store: allocators loaded, one strategy per resource."""
    ctx = RegistryContext(
        config,
        cluster_ip_allocator(storage, config.service_cidr),
        node_port_allocator(storage, *config.node_port_range),
    )
    await ctx.cluster_ips.load()
    await ctx.node_ports.load()
    strategies = {rt: strategy_for(rt, ctx) for rt in RESOURCES}
    return Rest(ObjectStore(storage), strategies), ctx


class RunningServer:
    """A started API server; ``url`` and ``kubeconfig_path`` are valid once ``start`` returns."""

    def __init__(self, opts: ServerOptions) -> None:
        self.opts = opts
        self.url = ""
        self.rest: Rest | None = None
        """The REST layer once started (in-process clients such as controllers use it)."""
        self.kubeconfig_path = opts.data_dir / "kubeconfig"
        self._runner: web.AppRunner | None = None
        self._finalizer: NamespaceFinalizer | None = None
        self._repair: AllocationRepair | None = None
        self._controllers: ControllerManager | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._warm: asyncio.Task[object] | None = None
        self._storage = open_storage(opts.store, opts.data_dir)

    async def start(self) -> None:
        opts = self.opts
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        host, port = split_listen(opts.listen)
        await self._storage.start()
        config = RegistryConfig(opts.service_cidr, opts.node_port_range, opts.cluster_cidr)
        rest, ctx = await build_registry(self._storage, config)
        self.rest = rest
        self._finalizer = NamespaceFinalizer(rest)
        rest.on_namespace_terminating = self._finalizer.enqueue
        creds = ensure_credentials(
            opts.data_dir, serving_hosts(host, [opts.advertise_address] if opts.advertise_address else None)
        )
        state = AppState(rest, creds.tokens, "", bookmark_interval=opts.bookmark_interval)
        # handler_cancellation: a watch whose client went away must not wait forever for an event.
        self._runner = web.AppRunner(
            build_app(state), access_log=None, handle_signals=False, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=creds.ssl_context(), reuse_address=True)
        await site.start()
        for sock in opts.extra_sockets:
            await web.SockSite(self._runner, sock, ssl_context=creds.ssl_context()).start()
        bound_port = _bound_port(self._runner) or port
        url_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
        if ":" in url_host and not url_host.startswith("["):
            url_host = f"[{url_host}]"
        self.url = f"https://{url_host}:{bound_port}"
        state.server_address = f"{url_host}:{bound_port}"
        advertise = opts.advertise_address or default_advertise_address(host)
        await bootstrap(rest, service_cidr=opts.service_cidr, advertise_address=advertise, port=bound_port)
        self._repair = AllocationRepair(rest, ctx.cluster_ips, ctx.node_ports, opts.repair_interval)
        await self._repair.start()
        await self._finalizer.start()
        if opts.controllers:
            from kubelite.client.local import LocalClient
            from kubelite.controllers.manager import ControllerManager, ControllerOptions

            self._controllers = ControllerManager(
                LocalClient(rest),
                ControllerOptions(cluster_cidr=opts.cluster_cidr, load_balancer_pool=opts.load_balancer_pool,
                                  enabled=tuple(opts.controllers)),
            )  # fmt: skip
            await self._controllers.start()
        self._compactor = asyncio.create_task(self._compact_loop())
        if state.warm_up is not None:
            # Built off the event loop so the first kubectl call does not wait for it.
            self._warm = asyncio.create_task(asyncio.to_thread(state.warm_up))
        state.ready = True
        write_kubeconfig(self.kubeconfig_path, kubeconfig(creds, opts.kubeconfig_server or self.url))
        log.info("kubelite API server ready at %s (kubeconfig: %s)", self.url, self.kubeconfig_path)

    async def _compact_loop(self) -> None:
        """Keep history for one interval (watch resumption), like kube-apiserver's 5-minute compaction."""
        compactor = AutoCompactor(self._storage, keep_revisions=0, min_age=self.opts.compaction_interval)
        while True:
            await asyncio.sleep(self.opts.compaction_interval)
            try:
                await compactor.tick()
            except StoreError:
                log.exception("compaction failed; trying again in %.0f s", self.opts.compaction_interval)

    async def stop(self) -> None:
        if self._controllers is not None:
            await self._controllers.stop()
        if self._warm is not None:
            with contextlib.suppress(Exception):
                await self._warm
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        if self._finalizer is not None:
            await self._finalizer.stop()
        if self._repair is not None:
            await self._repair.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self._storage.close()


def _bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        for sock in getattr(server, "sockets", None) or []:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
    return 0


async def serve(opts: ServerOptions, stop: asyncio.Event) -> None:
    server = RunningServer(opts)
    try:
        await server.start()
        await stop.wait()
    finally:
        await server.stop()
