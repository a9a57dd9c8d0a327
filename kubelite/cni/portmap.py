"""``portmap``: host ports to the pod, with nftables in the node's namespace (a chained plugin).

Configuration: ``{"type": "portmap", "capabilities": {"portMappings": true}, "snat": true,
"markMasqBit": 13}``; the runtime passes ``runtimeConfig.portMappings`` =
``[{"hostPort", "containerPort", "protocol", "hostIP"}]``. The pod's address comes from the
``prevResult`` (the first IPv4 address on an interface inside the sandbox); the result is the
``prevResult`` unchanged.

Rules (text in :mod:`kubelite.cni.nftrules`): two base chains per container in ``table ip
kubelite-hostport`` DNAT ``hostIP:hostPort`` (or any local address) on prerouting (traffic from
outside and from pods) and output (traffic from the node itself, 127.0.0.1 included); with ``snat``
(default) connections from 127.0.0.0/8 and from the pod subnet are masqueraded so replies return
through the node, and ``route_localnet`` is set on the first host-side interface of the
``prevResult`` (the bridge) so a DNAT-ed packet from 127.0.0.1 may leave the node's loopback.

DEL deletes the container's two chains (one nft transaction). A runner that saw the ADD without
mappings remembers it and skips nft on DEL.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kubelite.cni.config import Fields, PluginInput
from kubelite.cni.nftrules import (
    HOSTPORT_TABLE,
    hostport_chains,
    hostport_delete_ruleset,
    hostport_masq_ruleset,
    hostport_ruleset,
)
from kubelite.cni.plugin import CallContext
from kubelite.cni.types import CniError, CniResult, ErrorCode, PortMapping

__all__ = ["PortMapConfig", "PortMapPlugin", "parse_portmap"]


@dataclass(frozen=True, slots=True)
class PortMapConfig:
    """The parsed ``portmap`` configuration."""

    network: str
    mappings: tuple[PortMapping, ...] = ()
    snat: bool = True
    mark_bit: int = 13


def parse_portmap(inp: PluginInput) -> PortMapConfig:
    f = Fields(inp.conf, plugin=inp.type or "portmap")
    rc = f.sub("runtimeConfig")
    mappings = []
    if rc is not None:
        for i, raw in enumerate(rc.items("portMappings")):
            try:
                mappings.append(PortMapping.from_json(raw, rc.where(f"portMappings[{i}]")))
            except CniError as exc:
                msg = exc.msg.removeprefix("portMappings: ")
                where = rc.where(f"portMappings[{i}]")
                raise CniError(ErrorCode.INVALID_CONFIG, f"{f.plugin} plugin: {where}: {msg}") from None
    seen: dict[tuple[str, int, str], PortMapping] = {}
    for m in mappings:
        key = (m.host_ip, m.host_port, m.protocol)
        if key in seen:
            raise f.error(
                "runtimeConfig.portMappings", f"maps {m.host_ip or '*'}:{m.host_port}/{m.protocol} twice"
            )
        seen[key] = m
    return PortMapConfig(
        network=inp.name,
        mappings=tuple(mappings),
        snat=f.flag("snat", True),
        mark_bit=f.integer("markMasqBit", 13, low=0, high=31),
    )


def _pod_address(prev: CniResult, sandbox: str) -> ipaddress.IPv4Interface | None:
    for ip in prev.container_ips(sandbox or None):
        if isinstance(ip.address, ipaddress.IPv4Interface):
            return ip.address
    return None


class PortMapPlugin:
    """The ``portmap`` plugin."""

    def _marker(self, ctx: CallContext, network: str) -> str:
        return f"no-hostports:{ctx.node_key}:{network}:{ctx.container_id}"

    async def add(self, inp: PluginInput, ctx: CallContext) -> CniResult:
        conf = parse_portmap(inp)
        prev = inp.prev_result
        if prev is None:
            raise CniError(
                ErrorCode.INVALID_CONFIG,
                "portmap plugin: needs a prevResult; put it after an interface plugin (e.g. bridge) "
                "in the plugin list",
            )
        if not conf.mappings:
            ctx.state.ensured.add(self._marker(ctx, conf.network))
            return prev
        pod = _pod_address(prev, ctx.netns)
        if pod is None:
            raise CniError(
                ErrorCode.INVALID_CONFIG,
                "portmap plugin: the prevResult has no IPv4 address inside the container to forward to",
            )
        if conf.snat:
            await self._route_localnet(ctx, prev)
        ctx.state.ensured.discard(self._marker(ctx, conf.network))
        if conf.snat:
            marker = f"hostport-masq:{ctx.node_key}:{conf.mark_bit}"
            ctx.queue_node_nft(hostport_masq_ruleset(conf.mark_bit), ensure=marker)
        ctx.queue_node_nft(
            hostport_ruleset(
                conf.network, ctx.container_id, pod, conf.mappings, snat=conf.snat, mark_bit=conf.mark_bit
            )
        )
        return prev

    async def _route_localnet(self, ctx: CallContext, prev: CniResult) -> None:
        # The first host-side interface routes to the pod: the bridge (bridge), the veth (ptp).
        for interface in [i for i in prev.interfaces if not i.sandbox][:1]:
            key = f"net/ipv4/conf/{interface.name}/route_localnet"
            marker = f"localnet:{ctx.node_key}:{interface.name}"
            if marker in ctx.state.ensured:
                continue
            current = await ctx.host.read_sysctl(ctx.node, key)
            if current is None:
                continue  # not an interface of this namespace
            if current != "1":
                await ctx.host.write_sysctl(ctx.node, key, "1")
            ctx.state.ensured.add(marker)

    async def delete(self, inp: PluginInput, ctx: CallContext) -> None:
        conf = parse_portmap(inp)
        marker = self._marker(ctx, conf.network)
        if marker in ctx.state.ensured:
            ctx.state.ensured.discard(marker)
            return
        ctx.queue_node_nft(hostport_delete_ruleset(conf.network, ctx.container_id))

    async def check(self, inp: PluginInput, ctx: CallContext) -> None:
        conf = parse_portmap(inp)
        if not conf.mappings:
            return
        if inp.prev_result is None:
            raise CniError(ErrorCode.INVALID_CONFIG, "portmap plugin: CHECK needs the prevResult of ADD")
        pod = _pod_address(inp.prev_result, ctx.netns)
        listing = await ctx.host.nft_list_table(ctx.node, "ip", HOSTPORT_TABLE) or ""
        words = set(listing.split())
        for chain in hostport_chains(conf.network, ctx.container_id):
            if chain not in words:
                raise CniError(
                    ErrorCode.INTERNAL, f"portmap plugin: chain {chain} is missing from {HOSTPORT_TABLE}"
                )
        for m in conf.mappings:
            target = f"{pod.ip}:{m.container_port}" if pod else f":{m.container_port}"
            if not any(target in line and f"dport {m.host_port}" in line for line in listing.splitlines()):
                raise CniError(
                    ErrorCode.INTERNAL,
                    f"portmap plugin: no rule forwards {m.host_ip or '*'}:{m.host_port}/{m.protocol} "
                    f"to {target}",
                )
