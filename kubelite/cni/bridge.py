"""``bridge``: a Linux bridge in the node's namespace, a veth pair per pod, IPAM, gateway, masquerade.

Fields (named as the reference plugin's, so one conflist serves either set): ``bridge`` (``cni0``),
``isGateway``, ``isDefaultGateway`` (implies ``isGateway``), ``ipMasq``, ``mtu``, ``hairpinMode``,
``promiscMode``, ``ipam``, ``dns``; kubelite extension: ``ipMasqExclude`` (CIDRs that keep the pod's
source address, ignored by the reference plugin). ``runtimeConfig.mac`` / ``CNI_ARGS MAC`` set the
pod interface's MAC.

ADD, in order: IPAM (in-process ``host-local``, or the executable named by ``ipam.type``); ONE
``ip -batch`` in the node's namespace (bridge if missing, its gateway address, a veth pair named
``veth`` + 8 hex digits whose peer is created directly inside the pod's namespace as ``CNI_IFNAME``,
bridge port, hairpin); ``net.ipv4.ip_forward=1`` when ``isGateway``; the masquerade chain when
``ipMasq`` (see :mod:`kubelite.cni.nftrules`); then the pod's address, link and routes are *queued*
for the pod's single batch (see :class:`~kubelite.cni.plugin.CallContext`). MAC addresses are chosen
here (random, locally administered) so the result needs no extra query; the bridge's MAC is read
once per runner and pinned (as the reference does) so it does not change as ports come and go.

DEL deletes ``CNI_IFNAME`` in the pod (which removes both veth ends) and releases the IPAM
allocation; the per-network masquerade chain stays. CHECK compares the node and the pod with the
``prevResult``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubelite.cni.config import Fields, PluginInput
from kubelite.cni.netops import Netns
from kubelite.cni.nftrules import masq_ruleset
from kubelite.cni.plugin import CallContext, delegate_ipam
from kubelite.cni.types import (
    DNS,
    CniError,
    CniResult,
    ErrorCode,
    Interface,
    IpAddress,
    IPConfig,
    IpInterface,
    IpNetwork,
    Route,
)
from kubelite.host.ip import HostCommandError, validate_ifname

__all__ = [
    "BridgeConfig",
    "BridgePlugin",
    "VethPlan",
    "container_lines",
    "host_veth_name",
    "node_lines",
    "parse_bridge",
    "random_mac",
]

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_PATH = re.compile(r"^/[^\s]*$")


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """The parsed ``bridge`` configuration."""

    network: str
    bridge: str = "cni0"
    is_gateway: bool = False
    is_default_gateway: bool = False
    ip_masq: bool = False
    ip_masq_exclude: tuple[IpNetwork, ...] = ()
    mtu: int = 0
    hairpin_mode: bool = False
    promisc_mode: bool = False
    ipam_type: str = ""
    dns: DNS = field(default_factory=DNS)
    mac: str = ""


def parse_bridge(inp: PluginInput, args: Sequence[tuple[str, str]] = ()) -> BridgeConfig:
    f = Fields(inp.conf, plugin=inp.type or "bridge")
    name = f.text("bridge", "cni0") or "cni0"
    try:
        validate_ifname(name)
    except ValueError:
        raise f.error("bridge", f'"{name}" is not a Linux interface name (1-15 characters)') from None
    default_gw = f.flag("isDefaultGateway")
    hairpin, promisc = f.flag("hairpinMode"), f.flag("promiscMode")
    if hairpin and promisc:
        raise f.error("hairpinMode", "and promiscMode cannot both be true; choose one")
    exclude = [f.cidr_at("ipMasqExclude", i, raw) for i, raw in enumerate(f.items("ipMasqExclude"))]
    ipam = f.sub("ipam")
    mac = str(inp.runtime_config.get("mac") or dict(args).get("MAC") or "").lower()
    if mac and not _MAC.match(mac):
        raise f.error("runtimeConfig.mac", f'"{mac}" is not a MAC address like 02:42:ac:11:00:02')
    dns_f = f.sub("dns")
    try:
        dns = DNS.from_json(dns_f.data if dns_f else None)
    except CniError as exc:
        raise f.error("dns", exc.msg) from None
    return BridgeConfig(
        network=inp.name,
        bridge=name,
        is_gateway=f.flag("isGateway") or default_gw,
        is_default_gateway=default_gw,
        ip_masq=f.flag("ipMasq"),
        ip_masq_exclude=tuple(exclude),
        mtu=f.integer("mtu", 0, low=0, high=65535),
        hairpin_mode=hairpin,
        promisc_mode=promisc,
        ipam_type=ipam.text("type") if ipam else "",
        dns=dns,
        mac=mac,
    )


def host_veth_name() -> str:
    """``veth`` + 8 random hex digits, like the reference plugin's host-side names."""
    return f"veth{secrets.token_hex(4)}"


def random_mac() -> str:
    """A random locally administered unicast MAC."""
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in octets)


def gateway_of(address: IpInterface) -> IpAddress:
    """The reference's default gateway: the first address of the interface's network."""
    return address.network.network_address + 1


@dataclass(frozen=True, slots=True)
class VethPlan:
    """The names and MACs one ADD chose for its veth pair."""

    host_veth: str
    host_mac: str
    ifname: str
    container_mac: str
    pod_netns_path: str


def node_lines(
    conf: BridgeConfig,
    veth: VethPlan,
    *,
    create_bridge: bool,
    bridge_mac: str,
    gateways: Sequence[IpInterface],
) -> list[str]:
    """The node-side ``ip -batch`` lines of one ADD. The first line fails when a bridge believed to
    exist is gone (so a stale cache is noticed before anything else runs)."""
    if not _PATH.match(veth.pod_netns_path):
        raise ValueError(f"network namespace path {veth.pod_netns_path!r} must be absolute, without spaces")
    br = validate_ifname(conf.bridge)
    mtu = f" mtu {conf.mtu}" if conf.mtu else ""
    lines = []
    if create_bridge:
        lines.append(f"link add name {br} address {bridge_mac}{mtu} type bridge")
    else:
        lines.append(f"link set dev {br} address {bridge_mac}")
    if conf.promisc_mode:
        lines.append(f"link set dev {br} promisc on")
    lines.append(f"link set dev {br} up")
    for gw in gateways:
        nodad = " nodad" if gw.version == 6 else ""
        lines.append(f"addr replace {gw.with_prefixlen} dev {br}{nodad}")
    host, peer = validate_ifname(veth.host_veth), validate_ifname(veth.ifname)
    lines.append(
        f"link add {host} address {veth.host_mac}{mtu} type veth "
        f"peer name {peer} address {veth.container_mac}{mtu} netns {veth.pod_netns_path}"
    )
    lines.append(f"link set dev {host} master {br}")
    if conf.hairpin_mode:
        lines.append(f"link set dev {host} type bridge_slave hairpin on")
    lines.append(f"link set dev {host} up")
    return lines


def container_lines(ifname: str, ips: Sequence[IPConfig], routes: Sequence[Route]) -> list[str]:
    """The pod-side lines: addresses, link up, routes (a route without ``gw`` uses its family's gateway)."""
    dev = validate_ifname(ifname)
    lines = [
        f"addr add {ip.address.with_prefixlen} dev {dev}{' nodad' if ip.address.version == 6 else ''}"
        for ip in ips
    ]
    lines.append(f"link set dev {dev} up")
    gateways: dict[int, IpAddress] = {}
    for ip in ips:
        if ip.gateway is not None:
            gateways.setdefault(ip.address.version, ip.gateway)
    for route in routes:
        gw = route.gw or gateways.get(route.dst.version)
        via = f" via {gw}" if gw is not None else ""
        lines.append(f"route add {route.dst.with_prefixlen}{via} dev {dev}")
    return lines


def _result_routes(conf: BridgeConfig, ips: Sequence[IPConfig], routes: Sequence[Route]) -> list[Route]:
    out = list(routes)
    if conf.is_default_gateway:
        for ip in ips:
            default = ipaddress.ip_network("0.0.0.0/0" if ip.address.version == 4 else "::/0")
            if ip.gateway is not None and not any(r.dst == default for r in out):
                out.append(Route(default, ip.gateway))
    return out


class BridgePlugin:
    """The ``bridge`` plugin."""

    async def _bridge_state(self, ctx: CallContext, conf: BridgeConfig) -> tuple[bool, str]:
        """(create it?, its MAC): from the runner's memory, else one query of the node."""
        key = (ctx.node_key, conf.bridge)
        if key in ctx.state.bridge_macs:
            return False, ctx.state.bridge_macs[key]
        try:
            links = await ctx.node_json(["-d", "link", "show", "dev", conf.bridge])
        except HostCommandError as exc:
            if "does not exist" not in exc.stderr:
                raise
            return True, random_mac()
        if not links:
            return True, random_mac()
        link = links[0]
        kind = (link.get("linkinfo") or {}).get("info_kind")
        if kind != "bridge":
            raise CniError(
                ErrorCode.INVALID_CONFIG,
                f'bridge plugin: "{conf.bridge}" already exists in {ctx.node} but is a {kind or "plain"} '
                'interface, not a bridge; choose another "bridge" name',
            )
        return False, str(link.get("address") or random_mac())

    async def _plumb(
        self, ctx: CallContext, conf: BridgeConfig, veth: VethPlan, gateways: list[IpInterface]
    ) -> str:
        """Run the node batch; returns the bridge's MAC. Retries once when the remembered bridge is gone."""
        key = (ctx.node_key, conf.bridge)
        for attempt in (1, 2):
            create, bridge_mac = await self._bridge_state(ctx, conf)
            lines = node_lines(conf, veth, create_bridge=create, bridge_mac=bridge_mac, gateways=gateways)
            try:
                await ctx.host.ip_batch(ctx.node, lines)
            except HostCommandError as exc:
                ctx.state.bridge_macs.pop(key, None)
                if attempt == 1 and exc.line == 1 and ("Cannot find device" in exc.stderr or create):
                    continue  # the bridge we remembered is gone, or a concurrent ADD just made it
                if (
                    "File exists" in exc.stderr
                    and exc.line is not None
                    and "type veth" in lines[exc.line - 1]
                ):
                    raise CniError(
                        ErrorCode.INTERNAL,
                        f"bridge plugin: {veth.ifname} already exists in {ctx.netns} (or {veth.host_veth} in "
                        f"{ctx.node}); DEL the container before adding it again",
                    ) from exc
                raise
            ctx.state.bridge_macs[key] = bridge_mac
            return bridge_mac
        raise AssertionError("unreachable")

    async def _enable_forwarding(self, ctx: CallContext, versions: set[int]) -> None:
        for version in sorted(versions):
            key = "net/ipv4/ip_forward" if version == 4 else "net/ipv6/conf/all/forwarding"
            marker = f"forward:{ctx.node_key}:{version}"
            if marker in ctx.state.ensured:
                continue
            if await ctx.host.read_sysctl(ctx.node, key) != "1":
                await ctx.host.write_sysctl(ctx.node, key, "1")
            ctx.state.ensured.add(marker)

    async def add(self, inp: PluginInput, ctx: CallContext) -> CniResult:
        conf = parse_bridge(inp, ctx.args)
        if not ctx.host.netns_exists(ctx.pod) or ctx.pod.path is None:
            raise CniError(
                ErrorCode.UNKNOWN_CONTAINER, f"bridge plugin: network namespace {ctx.netns!r} does not exist"
            )
        ipam = await delegate_ipam("ADD", inp, ctx, owner="bridge") if conf.ipam_type else None
        host_veth, host_mac = host_veth_name(), random_mac()
        container_mac = conf.mac or random_mac()
        try:
            ips = []
            for ip in ipam.ips if ipam else ():
                gw = ip.gateway if ip.gateway is not None or not conf.is_gateway else gateway_of(ip.address)
                ips.append(IPConfig(ip.address, gw, 2))
            if ipam is not None and not ips:
                raise CniError(
                    ErrorCode.INTERNAL, f"bridge plugin: IPAM plugin {conf.ipam_type} returned no address"
                )
            routes = _result_routes(conf, ips, ipam.routes if ipam else ())
            gateways = [
                ipaddress.ip_interface(f"{ip.gateway}/{ip.address.network.prefixlen}")
                for ip in ips
                if conf.is_gateway and ip.gateway is not None
            ]
            veth = VethPlan(host_veth, host_mac, ctx.ifname, container_mac, ctx.pod.path)
            bridge_mac = await self._plumb(ctx, conf, veth, gateways)
            if gateways:
                await self._enable_forwarding(ctx, {g.version for g in gateways})
            if conf.ip_masq and ips:
                subnets = [ip.address.network for ip in ips]
                marker = (
                    f"masq:{ctx.node_key}:{conf.network}:{sorted(map(str, subnets))}:{conf.ip_masq_exclude}"
                )
                ctx.queue_node_nft(masq_ruleset(conf.network, subnets, conf.ip_masq_exclude), ensure=marker)
            if ipam is not None:
                ctx.queue_pod(container_lines(ctx.ifname, ips, routes))
            else:
                ctx.queue_pod([f"link set dev {ctx.ifname} up"])
        except BaseException:
            if ipam is not None:
                with contextlib.suppress(Exception):
                    await delegate_ipam("DEL", inp, ctx, owner="bridge")
            with contextlib.suppress(Exception):
                await ctx.host.ip_batch(ctx.node, [f"link del dev {host_veth}"])
            raise
        return CniResult(
            cni_version=inp.cni_version,
            interfaces=(
                Interface(conf.bridge, bridge_mac),
                Interface(host_veth, host_mac),
                Interface(ctx.ifname, container_mac, ctx.netns),
            ),
            ips=tuple(ips),
            routes=tuple(routes),
            dns=conf.dns if conf.dns else (ipam.dns if ipam else DNS()),
        )

    async def delete(self, inp: PluginInput, ctx: CallContext) -> None:
        conf = parse_bridge(inp, ctx.args)
        if ctx.netns and ctx.host.netns_exists(ctx.pod):
            ctx.queue_pod([f"link del dev {validate_ifname(ctx.ifname)}"], optional=True)
        if conf.ipam_type:
            await delegate_ipam("DEL", inp, ctx, owner="bridge")

    async def check(self, inp: PluginInput, ctx: CallContext) -> None:
        conf = parse_bridge(inp, ctx.args)
        if conf.ipam_type:
            await delegate_ipam("CHECK", inp, ctx, owner="bridge")
        prev = inp.prev_result
        if prev is None:
            raise CniError(ErrorCode.INVALID_CONFIG, "bridge plugin: CHECK needs the prevResult of ADD")
        await _check_links(ctx, conf, prev)
        await _check_addresses(ctx, prev)


def _problem(message: str) -> CniError:
    return CniError(ErrorCode.INTERNAL, f"bridge plugin: {message}")


async def _link(ctx: CallContext, where: Netns, name: str) -> dict[str, Any] | None:
    try:
        links = await (ctx.pod_json if where == ctx.pod else ctx.node_json)(
            ["-d", "link", "show", "dev", name]
        )
    except HostCommandError:
        return None
    return links[0] if links else None


def _kind(link: dict[str, Any]) -> str:
    info = link.get("linkinfo")
    return str(info.get("info_kind", "")) if isinstance(info, dict) else ""


async def _check_links(ctx: CallContext, conf: BridgeConfig, prev: CniResult) -> None:
    bridge = await _link(ctx, ctx.node, conf.bridge)
    if bridge is None or _kind(bridge) != "bridge":
        raise _problem(f"bridge {conf.bridge} is missing in {ctx.node}")
    listed = next((i for i in prev.interfaces if i.name == conf.bridge and not i.sandbox), None)
    if listed and listed.mac and listed.mac != bridge.get("address"):
        raise _problem(f"bridge {conf.bridge} has MAC {bridge.get('address')}, the result said {listed.mac}")
    if conf.promisc_mode and "PROMISC" not in (bridge.get("flags") or []):
        raise _problem(f"bridge {conf.bridge} is not in promiscuous mode")
    inside = next((i for i in prev.interfaces if i.name == ctx.ifname and i.sandbox == ctx.netns), None)
    if inside is None:
        raise _problem(f"the prevResult lists no interface {ctx.ifname} in sandbox {ctx.netns}")
    pod_link = await _link(ctx, ctx.pod, ctx.ifname)
    if pod_link is None or _kind(pod_link) != "veth":
        raise _problem(f"{ctx.ifname} (a veth) is missing in {ctx.netns}")
    if inside.mac and inside.mac != pod_link.get("address"):
        raise _problem(f"{ctx.ifname} has MAC {pod_link.get('address')}, the result said {inside.mac}")
    for candidate in prev.interfaces:
        if candidate.sandbox or candidate.name in (conf.bridge, ctx.ifname):
            continue
        host = await _link(ctx, ctx.node, candidate.name)
        if host and host.get("master") == conf.bridge and host.get("ifindex") == pod_link.get("link_index"):
            return
    raise _problem(f"no veth on bridge {conf.bridge} is the peer of {ctx.ifname} in {ctx.netns}")


async def _check_addresses(ctx: CallContext, prev: CniResult) -> None:
    addrs = await ctx.pod_json(["addr", "show", "dev", ctx.ifname])
    have = {
        (str(a.get("local")), int(a.get("prefixlen", -1)))
        for item in addrs
        for a in item.get("addr_info", [])
        if isinstance(a, dict)
    }
    for ip in prev.container_ips(ctx.netns):
        if (str(ip.address.ip), ip.address.network.prefixlen) not in have:
            raise _problem(f"{ip.address} is not on {ctx.ifname} in {ctx.netns}")
    for version in sorted({r.dst.version for r in prev.routes}):
        table = await ctx.pod_json([*(["-6"] if version == 6 else []), "route", "show"])
        routes = {(str(r.get("dst")), str(r.get("gateway", ""))) for r in table}
        for route in (r for r in prev.routes if r.dst.version == version):
            dst = "default" if route.dst.prefixlen == 0 else route.dst.with_prefixlen
            if route.dst.prefixlen == route.dst.max_prefixlen:
                dst = str(route.dst.network_address)
            wanted = {(dst, str(route.gw))} if route.gw else {(d, g) for d, g in routes if d == dst}
            if not wanted or not wanted & routes:
                raise _problem(f"route {route.dst} via {route.gw or '(gateway)'} is missing in {ctx.netns}")
