"""``kubelite agent``: the node agent (the kubelet's job, plus the node's share of the pod network).

Start-up, in order:
1. register the Node and start the Lease heartbeat (node.py);
2. wait for node IPAM to assign ``spec.podCIDR``; write the CNI configuration for it (network.py);
3. the overlay to the other nodes (kubelite.overlay), kept in sync by a Node informer;
4. the kubelet server (logs / exec / port-forward) on ``<node IP>:<port>``;
5. the pod manager (pods on this node, by informer) and the Service informer for env vars.

The agent runs inside the node's network namespace; everything it creates for pods lives there or
in the pods' own namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from kubelite.agent.backend import PodStreams
from kubelite.agent.dnsconfig import ClusterDNS
from kubelite.agent.manager import PodManager
from kubelite.agent.network import CniPodNetwork
from kubelite.agent.node import NodeAgent, NodeIdentity
from kubelite.agent.pods import AgentContext
from kubelite.agent.streams.server import kubelet_app
from kubelite.api.resources import INDEX
from kubelite.client.http import HttpClient
from kubelite.client.informer import Informer
from kubelite.controllers.events import EventRecorder
from kubelite.host.arp import RealArpResponder
from kubelite.host.ip import RealIp
from kubelite.images.catalog import ImageCatalog, prepare_busybox_bin_dir
from kubelite.overlay import NodeRoute, Overlay, make_overlay, node_route_from, vtep_annotations
from kubelite.proxy.announce import L2Announcer

__all__ = ["AgentOptions", "run_agent"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentOptions:
    kubeconfig: Path
    node_name: str
    node_ip: str
    data_dir: Path
    overlay: str = "vxlan"
    """vxlan, host-gw or none."""
    uplink: str = "eth0"
    cni: str = "kubelite"
    """kubelite (built-in plugins, in process) or reference (the OS's containernetworking-plugins)."""
    cni_bin_dir: str = "/usr/lib/cni"
    netns_prefix: str = ""
    kubelet_port: int = 10250
    cluster_dns: tuple[str, ...] = ("10.96.0.10",)
    cluster_domain: str = "cluster.local"
    image_config: Path | None = None
    kill_pods_on_exit: bool = False
    proxy_mode: str = "nftables"
    """nftables, iptables, userspace, or none (no service proxy on this node)."""
    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    resolv_conf: Path = Path("/etc/resolv.conf")


def _token(kubeconfig: Path) -> str:
    import yaml

    doc = yaml.safe_load(kubeconfig.read_text()) or {}
    for user in doc.get("users") or []:
        token = (user.get("user") or {}).get("token")
        if token:
            return str(token)
    return ""


class OverlaySync:
    """Keeps the overlay in step with the Node list."""

    def __init__(self, overlay: Overlay, informer: Informer, local: str) -> None:
        self.overlay = overlay
        self.informer = informer
        self.local = local
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self, *_args: Any) -> None:
        self._wake.set()

    def remotes(self) -> list[NodeRoute]:
        routes = []
        for node in self.informer.list():
            if node["metadata"]["name"] == self.local:
                continue
            route = node_route_from(node)
            if route is not None:
                routes.append(route)
        return routes

    async def start(self) -> None:
        await self.overlay.setup()
        self.informer.add_handler(self.poke, lambda _o, _n: self.poke(), self.poke)
        self._task = asyncio.create_task(self._loop(), name="overlay-sync")

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.overlay.sync(self.remotes())
            except Exception:
                log.exception("overlay sync failed; retrying")
                await asyncio.sleep(1)
                self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _l2_announcer(opts: AgentOptions) -> L2Announcer | None:
    """ARP answers for the LoadBalancer IPs this node is elected for, on the uplink (None if it cannot)."""
    try:
        responder = RealArpResponder(opts.uplink)
        await responder.start()
    except OSError as exc:
        log.warning("LoadBalancer IPs will not be announced from this node (%s: %s)", opts.uplink, exc)
        return None
    return L2Announcer(opts.node_name, responder)


async def run_agent(opts: AgentOptions, stop: asyncio.Event) -> None:
    client = HttpClient.from_kubeconfig(opts.kubeconfig)
    ip = RealIp()
    opts.data_dir.mkdir(parents=True, exist_ok=True)
    cleanups: list[Any] = []
    try:
        ident = NodeIdentity(
            opts.node_name,
            opts.node_ip,
            kubelet_port=opts.kubelet_port,
            annotations=vtep_annotations(opts.node_ip) if opts.overlay == "vxlan" else {},
        )
        node_agent = NodeAgent(client, ident)
        await node_agent.register()
        node_agent.start()
        cleanups.append(node_agent.stop)
        pod_cidr = await node_agent.wait_pod_cidr()
        log.info("node %s: podCIDR %s", opts.node_name, pod_cidr)

        network = CniPodNetwork.create(
            mode=opts.cni, pod_cidr=pod_cidr, data_dir=opts.data_dir, ip=ip, cni_bin_dir=opts.cni_bin_dir
        )
        await network.prepare()

        nodes = Informer(client, INDEX.by_kind[("v1", "Node")])
        await nodes.start()
        cleanups.append(nodes.stop)
        if opts.overlay != "none":
            local = NodeRoute(name=opts.node_name, node_ip=opts.node_ip, pod_cidr=pod_cidr, vtep_mac=None)
            overlay = make_overlay(opts.overlay, local, uplink=opts.uplink, netns=None, ip=ip)  # type: ignore[arg-type]
            sync = OverlaySync(overlay, nodes, opts.node_name)
            await sync.start()
            cleanups.append(sync.stop)
            if opts.kill_pods_on_exit:
                cleanups.append(overlay.teardown)
        await nodes.wait_synced()

        services = Informer(client, INDEX.by_kind[("v1", "Service")])
        await services.start()
        cleanups.append(services.stop)
        await services.wait_synced()

        if opts.proxy_mode != "none":
            from kubelite.proxy.app import ServiceProxy
            from kubelite.proxy.factory import make_backend

            announcer = await _l2_announcer(opts)
            if announcer is not None:
                cleanups.append(announcer.responder.close)
            proxy = ServiceProxy(
                client,
                make_backend(opts.proxy_mode),
                node_name=opts.node_name,
                node_ips=[opts.node_ip],
                cluster_cidr=opts.cluster_cidr,
                service_cidr=opts.service_cidr,
                services=services,
                health_check_host="0.0.0.0",  # health check node ports answer on every node address
                announcer=announcer,
                nodes=nodes,
            )
            await proxy.start()

            async def stop_proxy() -> None:
                await proxy.stop(cleanup=opts.kill_pods_on_exit)

            cleanups.append(stop_proxy)
            proxy_runner = web.AppRunner(proxy.app(), access_log=None)
            await proxy_runner.setup()
            for port in (10256, 10249):  # kube-proxy's healthz and metrics ports
                await web.TCPSite(proxy_runner, opts.node_ip, port, reuse_address=True).start()
            cleanups.append(proxy_runner.cleanup)
            log.info("service proxy (%s mode) is running", opts.proxy_mode)

        busybox_dir = None
        with contextlib.suppress(Exception):
            busybox_dir = str(prepare_busybox_bin_dir(opts.data_dir / "images" / "busybox-bin"))
        if opts.image_config is not None:
            catalog = ImageCatalog.from_file(str(opts.image_config), busybox_bin_dir=busybox_dir)
        else:
            catalog = ImageCatalog(busybox_bin_dir=busybox_dir)
        host_resolv = ""
        with contextlib.suppress(OSError):
            host_resolv = opts.resolv_conf.read_text()
        ctx = AgentContext(
            client=client,
            node_name=opts.node_name,
            node_ip=opts.node_ip,
            data_dir=opts.data_dir,
            ip=ip,
            network=network,
            catalog=catalog,
            dns=ClusterDNS(
                servers=opts.cluster_dns, domain=opts.cluster_domain, host_resolv_conf=str(opts.resolv_conf)
            ),
            netns_prefix=opts.netns_prefix or opts.node_name,
            events=EventRecorder(client, "kubelet", opts.node_name),
            services=services,
            host_resolv_text=host_resolv,
        )
        manager = PodManager(ctx)

        # handler_cancellation: a `logs -f` whose client went away stops at once.
        runner = web.AppRunner(
            kubelet_app(PodStreams(manager), token=_token(opts.kubeconfig)),
            access_log=None,
            handler_cancellation=True,
        )
        await runner.setup()
        await web.TCPSite(runner, opts.node_ip, opts.kubelet_port, reuse_address=True).start()
        cleanups.append(runner.cleanup)

        await manager.start()

        async def stop_manager() -> None:
            await manager.stop(kill_pods=opts.kill_pods_on_exit)

        cleanups.append(stop_manager)
        log.info("agent for node %s is running", opts.node_name)
        await stop.wait()
    finally:
        for cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("agent shutdown step failed")
        await client.close()


def parse_dns(servers: str) -> Sequence[str]:
    return tuple(s.strip() for s in servers.split(",") if s.strip())
