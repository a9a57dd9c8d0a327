"""How kubelite's plugins are called: the :class:`Plugin` protocol, the per-call context, and the
spec's ``main`` for running one plugin as an executable.

A plugin is three coroutines (``add`` returns the result; ``delete`` and ``check`` return nothing
and raise :class:`~kubelite.cni.types.CniError`). They get the plugin's configuration
(:class:`~kubelite.cni.config.PluginInput`) and a :class:`CallContext`: the ``CNI_*`` values, the
node and pod namespaces, the kernel door (:class:`~kubelite.cni.netops.PluginHost`) and two queues.

The queues are why a pod costs few processes: a plugin *queues* pod-namespace ``ip`` lines and
node-namespace nft text instead of running them; :meth:`CallContext.flush` runs each queue as one
``ip -batch`` / one ``nft -f -``, concurrently. :class:`~kubelite.cni.invoke.InProcessCni` flushes
once per chain (so ``loopback`` and ``bridge`` share one batch in the pod), an executable once per
plugin. Anything that reads a namespace flushes that namespace's queue first.

:class:`PluginState` holds what one runner may remember across calls (the bridge's MAC, node set-up
already applied); a plugin executable starts with an empty one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubelite.cni.config import PluginInput, parse_cni_args
from kubelite.cni.exec import PluginCall, exec_plugin, find_plugin
from kubelite.cni.netops import Netns, PluginHost
from kubelite.cni.types import (
    CHECK_MIN_VERSION,
    CURRENT_VERSION,
    SUPPORTED_VERSIONS,
    CniError,
    CniResult,
    ErrorCode,
    version_tuple,
)
from kubelite.host.ip import HostCommandError
from kubelite.host.nft import NftError, netns_argv

__all__ = [
    "COMMANDS",
    "CallContext",
    "Plugin",
    "PluginState",
    "call_plugin",
    "delegate_ipam",
    "plugin_main",
]

JsonObject = dict[str, Any]
_GONE = re.compile(r"Cannot find device|does not exist|No such device|Cannot open network namespace")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION")


class Plugin(Protocol):
    """One CNI plugin run in-process."""

    async def add(self, inp: PluginInput, ctx: CallContext) -> CniResult:
        """Attach; return the result (the input's ``prevResult`` extended or passed on)."""
        ...

    async def delete(self, inp: PluginInput, ctx: CallContext) -> None:
        """Detach; idempotent and best effort (missing things are not errors)."""
        ...

    async def check(self, inp: PluginInput, ctx: CallContext) -> None:
        """Raise :class:`CniError` when what ADD set up is not (or no longer) in place."""
        ...


@dataclass
class PluginState:
    """What a runner remembers between calls: ``bridge_macs[(node, bridge)]`` and ``ensured`` keys of
    idempotent node set-up (masquerade chains, forwarding) already applied in this process."""

    bridge_macs: dict[tuple[str, str], str] = field(default_factory=dict)
    ensured: set[str] = field(default_factory=set)


class CallContext:
    """The ``CNI_*`` values of one call plus the kernel door and the deferred work queues."""

    def __init__(
        self,
        *,
        command: str,
        container_id: str,
        netns: str,
        ifname: str,
        host: PluginHost,
        args: tuple[tuple[str, str], ...] = (),
        cni_path: Sequence[str] = (),
        host_netns: str | None = None,
        state: PluginState | None = None,
        plugins: Mapping[str, Plugin] | None = None,
    ) -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.host = host
        self.args = args
        self.cni_path = tuple(cni_path)
        self.host_netns = host_netns
        self.state = state if state is not None else PluginState()
        self.plugins: Mapping[str, Plugin] = plugins or {}
        self.node = Netns.node(host_netns)
        self.pod = Netns.from_path(netns) if netns else Netns.current()
        self._pod_lines: list[tuple[str, bool]] = []
        self._node_nft: list[str] = []
        self._ensure: list[str] = []

    @property
    def node_key(self) -> str:
        """A string naming the node namespace, for :class:`PluginState` keys."""
        return self.node.ref or "-"

    def arg(self, key: str) -> str | None:
        """One ``CNI_ARGS`` value (e.g. ``K8S_POD_NAME``)."""
        return next((v for k, v in self.args if k == key), None)

    def queue_pod(self, lines: Sequence[str], *, optional: bool = False) -> None:
        """Defer ``ip -batch`` lines for the pod's namespace until :meth:`flush`.

        ``optional`` lines (DEL's ``link del``) may fail because the device or the namespace is gone
        already; the rest of the batch then still runs.
        """
        self._pod_lines.extend((line, optional) for line in lines)

    def queue_node_nft(self, ruleset: str, *, ensure: str | None = None) -> None:
        """Defer nft text for the node's namespace until :meth:`flush` (all of it: one transaction).

        With ``ensure``, the text is idempotent node set-up: it is skipped when that key is in
        :attr:`PluginState.ensured` (or already queued), and the key is recorded once it applied.
        """
        if not ruleset.strip():
            return
        if ensure is not None:
            if ensure in self.state.ensured or ensure in self._ensure:
                return
            self._ensure.append(ensure)
        self._node_nft.append(ruleset.rstrip("\n"))

    async def flush_pod(self) -> None:
        queued, self._pod_lines = self._pod_lines, []
        if not queued:
            return
        if all(optional for _, optional in queued) and not self.host.netns_exists(self.pod):
            return
        while queued:  # at most one more round per optional line that fails
            try:
                await self.host.ip_batch(self.pod, [line for line, _ in queued])
                return
            except HostCommandError as exc:
                failed = exc.line
                if failed is None or not queued[failed - 1][1] or not _GONE.search(exc.stderr):
                    raise
                queued = queued[failed:]

    async def flush_node(self) -> None:
        texts, self._node_nft = self._node_nft, []
        ensured, self._ensure = self._ensure, []
        if texts:
            await self.host.nft_apply(self.node, "\n".join(texts) + "\n")
            self.state.ensured.update(ensured)

    async def flush(self) -> None:
        """Run both queues (concurrently: they touch different namespaces)."""
        results = await asyncio.gather(self.flush_pod(), self.flush_node(), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def discard(self) -> None:
        """Drop queued work (after a failure, before cleaning up)."""
        self._pod_lines.clear()
        self._node_nft.clear()
        self._ensure.clear()

    async def pod_json(self, args: Sequence[str]) -> list[JsonObject]:
        """``ip -j ARGS`` in the pod (queued pod lines run first)."""
        await self.flush_pod()
        return await self.host.ip_json(self.pod, args)

    async def node_json(self, args: Sequence[str]) -> list[JsonObject]:
        return await self.host.ip_json(self.node, args)


def _as_cni_error(exc: BaseException, kind: str, command: str) -> CniError:
    if isinstance(exc, CniError):
        if exc.plugin is None:
            exc.plugin = kind
        return exc
    if isinstance(exc, HostCommandError | NftError):
        busy = "Resource busy" in exc.stderr or "Device or resource busy" in exc.stderr
        code = ErrorCode.TRY_AGAIN if busy else ErrorCode.INTERNAL
        return CniError(code, f"{kind} plugin: {command} failed: {exc}", plugin=kind)
    if isinstance(exc, OSError):
        return CniError(ErrorCode.IO_FAILURE, f"{kind} plugin: {command} failed: {exc}", plugin=kind)
    return CniError(ErrorCode.INTERNAL, f"{kind} plugin: {command} failed: {exc!r}", plugin=kind)


async def call_plugin(
    plugin: Plugin, kind: str, command: str, inp: PluginInput, ctx: CallContext
) -> CniResult | None:
    """Run one command on an in-process plugin; every failure becomes a :class:`CniError`."""
    try:
        if command == "ADD":
            return await plugin.add(inp, ctx)
        if command == "DEL":
            await plugin.delete(inp, ctx)
            return None
        if command == "CHECK":
            if version_tuple(inp.cni_version) < version_tuple(CHECK_MIN_VERSION):
                raise CniError(
                    ErrorCode.INCOMPATIBLE_VERSION,
                    f'cniVersion "{inp.cni_version}" has no CHECK; use {CHECK_MIN_VERSION} or later',
                )
            await plugin.check(inp, ctx)
            return None
        raise CniError(ErrorCode.INVALID_ENV, f'unknown CNI_COMMAND "{command}"')
    except Exception as exc:
        raise _as_cni_error(exc, kind, command) from exc


async def delegate_ipam(command: str, inp: PluginInput, ctx: CallContext, *, owner: str) -> CniResult | None:
    """Run the IPAM plugin named by ``ipam.type`` with the caller's whole configuration.

    In-process when kubelite has that plugin (``host-local``), else the executable from ``CNI_PATH``
    (run in the node namespace, like the calling plugin).
    """
    ipam = inp.conf.get("ipam")
    kind = ipam.get("type") if isinstance(ipam, Mapping) else None
    if not isinstance(kind, str) or not kind:
        raise CniError(ErrorCode.INVALID_CONFIG, f'{owner} plugin: ipam.type is missing (e.g. "host-local")')
    plugin = ctx.plugins.get(kind)
    if plugin is not None:
        return await call_plugin(plugin, kind, command, inp, ctx)
    call = PluginCall(command, ctx.container_id, ctx.netns, ctx.ifname, _args_text(ctx.args), ctx.cni_path)
    out = await exec_plugin(find_plugin(kind, ctx.cni_path), call, inp.stdin(), wrap=netns_argv(ctx.node.ref))
    if command != "ADD":
        return None
    if out is None:
        raise CniError(ErrorCode.INTERNAL, "ADD printed no result", plugin=kind)
    return CniResult.from_json(out, f"{kind} result")


def _args_text(args: tuple[tuple[str, str], ...]) -> str:
    return ";".join(f"{k}={v}" for k, v in args)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise CniError(ErrorCode.INVALID_ENV, f"{name} is not set; the runtime must set it for this command")
    return value


async def plugin_main(
    kind: str,
    plugin: Plugin,
    env: Mapping[str, str],
    stdin: bytes,
    *,
    host: PluginHost,
    plugins: Mapping[str, Plugin] | None = None,
) -> tuple[int, str]:
    """One plugin executable's whole run per the spec: returns (exit code, stdout text)."""
    version = CURRENT_VERSION
    try:
        command = _required(env, "CNI_COMMAND")
        if command == "VERSION":
            return 0, json.dumps(
                {"cniVersion": CURRENT_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}
            )
        if command not in COMMANDS:
            raise CniError(
                ErrorCode.INVALID_ENV, f'unknown CNI_COMMAND "{command}" (ADD, DEL, CHECK, VERSION)'
            )
        try:
            raw = json.loads(stdin)
            if isinstance(raw, dict) and isinstance(raw.get("cniVersion"), str):
                version = raw["cniVersion"]
        except ValueError:
            pass
        inp = PluginInput.from_stdin(stdin)
        version = inp.cni_version
        netns = env.get("CNI_NETNS", "") if command == "DEL" else _required(env, "CNI_NETNS")
        ctx = CallContext(
            command=command,
            container_id=_required(env, "CNI_CONTAINERID"),
            netns=netns,
            ifname=_required(env, "CNI_IFNAME"),
            host=host,
            args=parse_cni_args(env.get("CNI_ARGS", "")),
            cni_path=[p for p in env.get("CNI_PATH", "").split(":") if p],
            plugins=plugins,
        )
        result = await call_plugin(plugin, kind, command, inp, ctx)
        try:
            await ctx.flush()
        except Exception as exc:
            if command == "ADD":
                ctx.discard()
                with contextlib.suppress(Exception):  # best effort: leave nothing half-made
                    await call_plugin(plugin, kind, "DEL", inp, ctx)
                    await ctx.flush()
            raise _as_cni_error(exc, kind, command) from exc
        if result is None:
            return 0, ""
        return 0, json.dumps(result.to_json(version))
    except CniError as exc:
        if exc.plugin is None:
            exc.plugin = kind
        return 1, json.dumps(exc.to_json(version if version in SUPPORTED_VERSIONS else CURRENT_VERSION))
