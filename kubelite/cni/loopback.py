"""``loopback``: bring ``lo`` up in the pod's namespace.

ADD queues ``link set dev lo up`` for the pod's batch (so in a chain it shares the ``bridge``
plugin's single ``ip -batch`` in the pod) and returns the ``prevResult`` when there is one, else a
result naming ``lo`` with 127.0.0.1/8. DEL sets ``lo`` down when the namespace still exists (never an
error otherwise). CHECK verifies ``lo`` is up.
"""

from __future__ import annotations

import ipaddress

from kubelite.cni.config import PluginInput
from kubelite.cni.plugin import CallContext
from kubelite.cni.types import CniError, CniResult, ErrorCode, Interface, IPConfig

__all__ = ["LoopbackPlugin"]


class LoopbackPlugin:
    """The ``loopback`` plugin."""

    async def add(self, inp: PluginInput, ctx: CallContext) -> CniResult:
        if not ctx.host.netns_exists(ctx.pod):
            raise CniError(
                ErrorCode.UNKNOWN_CONTAINER, f"loopback plugin: network namespace {ctx.netns} does not exist"
            )
        ctx.queue_pod(["link set dev lo up"])
        if inp.prev_result is not None:
            return inp.prev_result
        return CniResult(
            cni_version=inp.cni_version,
            interfaces=(Interface("lo", "00:00:00:00:00:00", ctx.netns),),
            ips=(IPConfig(ipaddress.ip_interface("127.0.0.1/8"), None, 0),),
        )

    async def delete(self, inp: PluginInput, ctx: CallContext) -> None:
        if ctx.netns:
            ctx.queue_pod(["link set dev lo down"], optional=True)

    async def check(self, inp: PluginInput, ctx: CallContext) -> None:
        links = await ctx.pod_json(["link", "show", "dev", "lo"])
        if not links or "UP" not in links[0].get("flags", []):
            raise CniError(ErrorCode.INTERNAL, f"loopback plugin: lo is not up in {ctx.netns}")
