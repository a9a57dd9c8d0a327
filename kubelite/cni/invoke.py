"""The caller side: running a network configuration list for one container (ADD, DEL, CHECK).

Both runners implement :class:`CniRunner`, which the agent's pod network set-up calls:

- :class:`InProcessCni` (the agent's default) calls kubelite's plugins as coroutines: no process per
  plugin, one ``ip -batch`` in the node namespace and one in the pod per ADD (pod lines of the whole
  chain are queued and flushed together), nft only when there is something to write, and a
  :class:`~kubelite.cni.plugin.PluginState` that remembers the bridge and the node set-up. A type it
  does not have is executed from ``cni_path`` like :class:`ExecCni` would.
- :class:`ExecCni` executes plugin binaries per the spec (``CNI_*`` environment, config on stdin,
  result or error on stdout): the reference plugins in ``/usr/lib/cni``, or kubelite's own through
  the shims :func:`install_plugin_executables` writes.

Chains follow the spec: ADD runs the plugins in order, each getting the previous result as
``prevResult``; DEL runs them in reverse with the cached ADD result, goes on after a failure and
raises the first error at the end; CHECK (cniVersion >= 0.4.0, skipped when ``disableCheck``) runs in
order with the cached result. A failed ADD is undone (DEL of the whole chain, best effort) before the
error is raised. Results are cached by :class:`ResultCache` (memory, or files like libcni's).

``host_netns`` (tests and benchmarks) makes a lab namespace play the node: in-process plugins target
it with ``ip -n``/``nsenter``, executables are started inside it with ``nsenter --net=``. ``None``
(the agent, which runs inside its node's namespace) means the current namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from kubelite.cni.config import NetworkConfigList, PluginConfig, PluginInput, RuntimeConf
from kubelite.cni.exec import PluginCall, exec_plugin, find_plugin
from kubelite.cni.netops import PluginHost, RealPluginHost
from kubelite.cni.plugin import CallContext, Plugin, PluginState, call_plugin
from kubelite.cni.registry import BUILTIN_TYPES, builtin_plugins
from kubelite.cni.types import CHECK_MIN_VERSION, CniError, CniResult, ErrorCode, version_tuple
from kubelite.host.nft import netns_argv

__all__ = [
    "CniRunner",
    "ExecCni",
    "InProcessCni",
    "ResultCache",
    "install_plugin_executables",
]


@runtime_checkable
class CniRunner(Protocol):
    """Attach, detach and verify one container on a network configuration list."""

    async def add(self, net: NetworkConfigList, rt: RuntimeConf) -> CniResult:
        """ADD the whole chain; returns the last plugin's result (in the list's cniVersion)."""
        ...

    async def delete(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        """DEL the whole chain (idempotent; a second DEL is not an error)."""
        ...

    async def check(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        """CHECK the whole chain against the cached ADD result; raises :class:`CniError`."""
        ...


class ResultCache:
    """ADD results kept for CHECK and DEL, keyed by network name, container id and interface.

    With ``directory`` the results are files ``<network>-<container id>-<ifname>`` (JSON, like
    libcni's ``/var/lib/cni/results``) and survive a restart; without, they live in this object.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._memory: dict[str, CniResult] = {}

    @staticmethod
    def key(net: NetworkConfigList, rt: RuntimeConf) -> str:
        return f"{net.name}-{rt.container_id}-{rt.ifname}"

    def get(self, net: NetworkConfigList, rt: RuntimeConf) -> CniResult | None:
        key = self.key(net, rt)
        if self.directory is None:
            return self._memory.get(key)
        try:
            data = json.loads((self.directory / key).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return CniResult.from_json(data.get("result"), "cached result") if isinstance(data, dict) else None

    def put(self, net: NetworkConfigList, rt: RuntimeConf, result: CniResult) -> None:
        key = self.key(net, rt)
        if self.directory is None:
            self._memory[key] = result
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        record = {
            "kind": "cniCacheV1",
            "containerId": rt.container_id,
            "ifName": rt.ifname,
            "networkName": net.name,
            "cniArgs": [list(pair) for pair in rt.args],
            "result": result.to_json(net.cni_version),
        }
        tmp = self.directory / f".{key}.tmp"
        tmp.write_text(json.dumps(record))
        tmp.replace(self.directory / key)

    def remove(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        key = self.key(net, rt)
        self._memory.pop(key, None)
        if self.directory is not None:
            (self.directory / key).unlink(missing_ok=True)


def _check_allowed(net: NetworkConfigList) -> bool:
    if net.disable_check:
        return False
    if version_tuple(net.cni_version) < version_tuple(CHECK_MIN_VERSION):
        raise CniError(
            ErrorCode.INCOMPATIBLE_VERSION,
            f'network "{net.name}" has cniVersion {net.cni_version}, which has no CHECK '
            f"(needs {CHECK_MIN_VERSION} or later)",
        )
    return True


def _no_cached_result(net: NetworkConfigList, rt: RuntimeConf) -> CniError:
    return CniError(
        ErrorCode.INVALID_CONFIG,
        f'no cached ADD result for container {rt.container_id} ({rt.ifname}) on network "{net.name}"; '
        "CHECK needs a previous ADD by this runner",
    )


async def _exec_in_chain(
    pc: PluginConfig,
    command: str,
    inp: PluginInput,
    rt: RuntimeConf,
    dirs: tuple[str, ...],
    host_netns: str | None,
    time_limit: float = 60.0,
) -> CniResult | None:
    """Execute ``pc``'s plugin binary from ``dirs``; ADD's parsed result, None for DEL and CHECK."""
    call = PluginCall(command, rt.container_id, rt.netns, rt.ifname, rt.cni_args(), dirs)
    out = await exec_plugin(
        find_plugin(pc.type, dirs), call, inp.stdin(), wrap=netns_argv(host_netns), time_limit=time_limit
    )
    if command != "ADD":
        return None
    if out is None:
        raise CniError(ErrorCode.INTERNAL, "ADD printed no result", plugin=pc.type)
    return CniResult.from_json(out, f"{pc.type} result")


class _Chain:
    """The conflist semantics every runner shares: ADD in order with prevResult, DEL in reverse
    (every plugin runs, the first error is reported), CHECK with the cached result, a failed ADD
    undone by a DEL, results cached. Subclasses say how one plugin runs within one call
    (``_begin`` a call's context, ``_call`` a plugin, ``_end`` the call, ``_abandon`` a failed ADD)."""

    cache: ResultCache

    def _begin(self, command: str, rt: RuntimeConf) -> CallContext | None:
        return None

    async def _call(
        self, ctx: CallContext | None, pc: PluginConfig, command: str, inp: PluginInput, rt: RuntimeConf
    ) -> CniResult | None:
        raise NotImplementedError

    async def _end(self, ctx: CallContext | None, command: str) -> None:
        return None

    def _abandon(self, ctx: CallContext | None) -> None:
        return None

    async def add(self, net: NetworkConfigList, rt: RuntimeConf) -> CniResult:
        ctx = self._begin("ADD", rt)
        prev: CniResult | None = None
        try:
            for pc in net.plugins:
                prev = await self._call(ctx, pc, "ADD", PluginInput.for_chain(net, pc, rt, prev), rt)
            await self._end(ctx, "ADD")
        except BaseException:
            self._abandon(ctx)
            with contextlib.suppress(Exception):
                await self.delete(net, rt, prev_result=prev)
            raise
        assert prev is not None
        result = replace(prev, cni_version=net.cni_version)
        self.cache.put(net, rt, result)
        return result

    async def delete(
        self, net: NetworkConfigList, rt: RuntimeConf, *, prev_result: CniResult | None = None
    ) -> None:
        prev = prev_result or self.cache.get(net, rt)
        ctx = self._begin("DEL", rt)
        errors: list[CniError] = []
        for pc in reversed(net.plugins):
            try:
                await self._call(ctx, pc, "DEL", PluginInput.for_chain(net, pc, rt, prev), rt)
            except CniError as exc:
                errors.append(exc)
        try:
            await self._end(ctx, "DEL")
        except CniError as exc:
            errors.append(exc)
        if errors:
            raise errors[0]
        self.cache.remove(net, rt)

    async def check(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        if not _check_allowed(net):
            return
        prev = self.cache.get(net, rt)
        if prev is None:
            raise _no_cached_result(net, rt)
        ctx = self._begin("CHECK", rt)
        for pc in net.plugins:
            await self._call(ctx, pc, "CHECK", PluginInput.for_chain(net, pc, rt, prev), rt)
        await self._end(ctx, "CHECK")


class InProcessCni(_Chain):
    """Runs kubelite's plugins as coroutines in this process (see the module docstring)."""

    def __init__(
        self,
        *,
        host_netns: str | None = None,
        host: PluginHost | None = None,
        plugins: Mapping[str, Plugin] | None = None,
        cni_path: Sequence[str | Path] = (),
        cache: ResultCache | None = None,
        state: PluginState | None = None,
    ) -> None:
        self.host_netns = host_netns
        self.host: PluginHost = host or RealPluginHost()
        self.plugins: Mapping[str, Plugin] = plugins if plugins is not None else builtin_plugins()
        self.cni_path = tuple(str(p) for p in cni_path)
        self.cache = cache or ResultCache()
        self.state = state or PluginState()

    def _begin(self, command: str, rt: RuntimeConf) -> CallContext:
        return CallContext(
            command=command,
            container_id=rt.container_id,
            netns=rt.netns,
            ifname=rt.ifname,
            host=self.host,
            args=rt.args,
            cni_path=self.cni_path,
            host_netns=self.host_netns,
            state=self.state,
            plugins=self.plugins,
        )

    async def _call(
        self, ctx: CallContext | None, pc: PluginConfig, command: str, inp: PluginInput, rt: RuntimeConf
    ) -> CniResult | None:
        assert ctx is not None
        plugin = self.plugins.get(pc.type)
        if plugin is not None:
            return await call_plugin(plugin, pc.type, command, inp, ctx)
        if not self.cni_path:
            raise CniError(
                ErrorCode.INTERNAL,
                f'kubelite has no in-process plugin "{pc.type}" (it has {", ".join(sorted(self.plugins))}); '
                "give InProcessCni a cni_path to execute it, or use ExecCni",
                plugin=pc.type,
            )
        await ctx.flush()  # an executable must see what the plugins before it did
        return await _exec_in_chain(pc, command, inp, rt, self.cni_path, self.host_netns)

    async def _end(self, ctx: CallContext | None, command: str) -> None:
        assert ctx is not None
        try:
            await ctx.flush()
        except CniError:
            raise
        except Exception as exc:
            raise CniError(
                ErrorCode.INTERNAL, f"{command} failed applying the queued changes: {exc}"
            ) from exc

    def _abandon(self, ctx: CallContext | None) -> None:
        if ctx is not None:
            ctx.discard()


class ExecCni(_Chain):
    """Executes plugin binaries found in ``plugin_dirs`` (see the module docstring)."""

    def __init__(
        self,
        plugin_dirs: Sequence[str | Path],
        *,
        host_netns: str | None = None,
        cache: ResultCache | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.plugin_dirs = tuple(str(d) for d in plugin_dirs)
        self.host_netns = host_netns
        self.cache = cache or ResultCache()
        self.timeout = timeout

    async def _call(
        self, ctx: CallContext | None, pc: PluginConfig, command: str, inp: PluginInput, rt: RuntimeConf
    ) -> CniResult | None:
        return await _exec_in_chain(pc, command, inp, rt, self.plugin_dirs, self.host_netns, self.timeout)


def install_plugin_executables(directory: str | Path, python: str | None = None) -> list[Path]:
    """Write executable shims ``bridge``, ``host-local``, ``loopback``, ``portmap`` into ``directory``.

    Each is ``#!/bin/sh`` + ``exec <python> -m kubelite.cni <type> "$@"``, so :class:`ExecCni` (or any
    CNI runtime) can run kubelite's plugins like the reference binaries.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    interpreter = python or sys.executable
    written = []
    for kind in BUILTIN_TYPES:
        path = target / kind
        tmp = target / f".{kind}.tmp"
        tmp.write_text(f'#!/bin/sh\nexec {shlex.quote(interpreter)} -m kubelite.cni {kind} "$@"\n')
        os.chmod(tmp, 0o755)
        tmp.replace(path)
        written.append(path)
    return written
