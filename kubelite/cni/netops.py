"""The plugins' only door to the kernel: ``ip`` batches, nft rulesets and sysctls, in a namespace.

A plugin works in two network namespaces: the *node's* (where the bridge, the host end of the veth
and the NAT rules live: the namespace the plugin process runs in, or a lab namespace named by the
runner's ``host_netns`` knob) and the *pod's* (``CNI_NETNS``, a path). :class:`Netns` names either.

:class:`PluginHost` is the protocol the plugins call; :class:`RealPluginHost` runs
``ip [-n NAME] -batch -`` through :class:`kubelite.host.ip.RealIp` and ``nft -f -`` through
:class:`kubelite.host.nft.RealNft`. A netns path that is not ``/run/netns/NAME`` (or
``/var/run/netns/NAME``) is entered with ``nsenter --net=PATH ip ...``. Sysctls under
``/proc/sys/net`` belong to the namespace of the *thread* that opens them, so another namespace's
are written from a short-lived thread that ``setns``-es first. :class:`FakePluginHost` records every
call for unit tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kubelite.host.ip import HostCommandError, IpRunner, RealIp
from kubelite.host.netns import enter_netns
from kubelite.host.nft import FakeNft, NftRunner, RealNft
from kubelite.host.run import run_tool

__all__ = ["FakePluginHost", "Netns", "PluginHost", "RealPluginHost"]

JsonObject = dict[str, Any]
T = TypeVar("T")

_NAMED = re.compile(r"^(?:/var)?/run/netns/([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")
_BATCH_FAILED = re.compile(r"Command failed (?:-|\S+):(\d+)")
_SYSCTL_KEY = re.compile(r"^[A-Za-z0-9_.\-/]+$")


@dataclass(frozen=True, slots=True)
class Netns:
    """A network namespace: the current one (both ``None``), a named one, or one known by path."""

    name: str | None = None
    path: str | None = None

    @classmethod
    def current(cls) -> Netns:
        return cls()

    @classmethod
    def named(cls, name: str) -> Netns:
        return cls(name, f"/run/netns/{name}")

    @classmethod
    def from_path(cls, path: str) -> Netns:
        """``/run/netns/NAME`` and ``/var/run/netns/NAME`` become named (so ``ip -n NAME`` works)."""
        match = _NAMED.match(path)
        return cls(match.group(1), path) if match else cls(None, path)

    @classmethod
    def node(cls, host_netns: str | None) -> Netns:
        """The node side: the current namespace, or a named one (tests) or a path."""
        if host_netns is None:
            return cls()
        return cls.from_path(host_netns) if "/" in host_netns else cls.named(host_netns)

    @property
    def is_current(self) -> bool:
        return self.name is None and self.path is None

    @property
    def ref(self) -> str | None:
        """What :mod:`kubelite.host` runners take: the name, else the path, else ``None``."""
        return self.name if self.name is not None else self.path

    def __str__(self) -> str:
        return self.ref or "the current network namespace"


class PluginHost(Protocol):
    """Kernel access for plugins. ``where`` says which namespace."""

    async def ip_batch(self, where: Netns, lines: Sequence[str]) -> None:
        """Run ``ip -batch`` lines in ``where``; raises :class:`HostCommandError` on the first failure."""
        ...

    async def ip_json(self, where: Netns, args: Sequence[str]) -> list[JsonObject]:
        """``ip -j ARGS`` in ``where`` as parsed JSON."""
        ...

    async def nft_apply(self, where: Netns, ruleset: str) -> None:
        """Apply a ruleset (one transaction) in ``where``."""
        ...

    async def nft_list_table(self, where: Netns, family: str, name: str) -> str | None:
        """The table's listing, or ``None`` when it does not exist."""
        ...

    async def read_sysctl(self, where: Netns, key: str) -> str | None:
        """``/proc/sys/<key>`` (e.g. ``net/ipv4/ip_forward``) in ``where``, ``None`` if absent."""
        ...

    async def write_sysctl(self, where: Netns, key: str, value: str) -> None:
        """Write ``/proc/sys/<key>`` in ``where``."""
        ...

    def netns_exists(self, where: Netns) -> bool:
        """Whether the namespace's file exists (the current namespace always does)."""
        ...


def _sysctl_path(key: str) -> Path:
    """``net/ipv4/ip_forward`` -> ``/proc/sys/net/ipv4/ip_forward`` (slash form: names may hold dots)."""
    if not _SYSCTL_KEY.match(key) or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"invalid sysctl key {key!r} (write it like net/ipv4/ip_forward)")
    return Path("/proc/sys") / key


async def _in_netns_thread(path: str, work: Callable[[], T]) -> T:
    """Run ``work`` in a new thread that first enters ``path``'s network namespace, then ends."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            enter_netns(path)  # this thread only; it ends right after
            result = work()
        except BaseException as exc:
            loop.call_soon_threadsafe(deliver, None, exc)
        else:
            loop.call_soon_threadsafe(deliver, result, None)

    threading.Thread(target=run, name="cni-netns", daemon=True).start()
    return await done


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


class RealPluginHost:
    """:class:`PluginHost` on the real kernel (``ip``, ``nft``, ``nsenter``, ``/proc/sys``)."""

    def __init__(
        self,
        ip: IpRunner | None = None,
        nft: NftRunner | None = None,
        *,
        nsenter: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.timeout = timeout
        self.ip: IpRunner = ip or RealIp()
        self.nft: NftRunner = nft or RealNft()
        self.nsenter = nsenter or shutil.which("nsenter") or "/usr/bin/nsenter"
        self.ip_binary = getattr(self.ip, "binary", None) or shutil.which("ip") or "/usr/sbin/ip"

    async def _nsenter_ip(self, path: str, args: Sequence[str], stdin: bytes | None) -> str:
        argv = [self.nsenter, f"--net={path}", self.ip_binary, *args]
        rc, out, message = await run_tool(argv, stdin, seconds=self.timeout)
        if rc != 0:
            failed = _BATCH_FAILED.search(message)
            shown = f"nsenter --net={path} ip {' '.join(args)}"
            raise HostCommandError(
                shown, message, returncode=rc, line=int(failed.group(1)) if failed else None
            )
        return out

    async def ip_batch(self, where: Netns, lines: Sequence[str]) -> None:
        if not lines:
            return
        if where.name is not None or where.path is None:
            await self.ip.batch(lines, netns=where.name)
            return
        await self._nsenter_ip(where.path, ["-batch", "-"], ("\n".join(lines) + "\n").encode())

    async def ip_json(self, where: Netns, args: Sequence[str]) -> list[JsonObject]:
        if where.name is not None or where.path is None:
            out = await self.ip.run(["-j", *args], netns=where.name)
        else:
            out = await self._nsenter_ip(where.path, ["-j", *args], None)
        parsed = json.loads(out) if out.strip() else []
        return [item for item in parsed if isinstance(item, dict)] if isinstance(parsed, list) else []

    async def nft_apply(self, where: Netns, ruleset: str) -> None:
        await self.nft.apply(ruleset, netns=where.ref)

    async def nft_list_table(self, where: Netns, family: str, name: str) -> str | None:
        return await self.nft.list_table(family, name, netns=where.ref)

    async def read_sysctl(self, where: Netns, key: str) -> str | None:
        path = _sysctl_path(key)
        if where.path is None:
            return _read(path)
        return await _in_netns_thread(where.path, lambda: _read(path))

    async def write_sysctl(self, where: Netns, key: str, value: str) -> None:
        path = _sysctl_path(key)
        if where.path is None:
            path.write_text(value)
            return
        await _in_netns_thread(where.path, lambda: path.write_text(value))

    def netns_exists(self, where: Netns) -> bool:
        return where.path is None or os.path.exists(where.path)


def _key(where: Netns) -> str:
    return where.ref or "-"


@dataclass
class FakePluginHost:
    """Records what plugins ask for; nothing touches the kernel.

    ``batches`` holds ``(netns ref or "-", lines)``; ``json`` maps ``"<ref> <args>"`` to the parsed
    answer of :meth:`ip_json`; ``sysctls`` maps ``"<ref> <key>"`` to values; ``missing`` lists netns
    refs that do not exist; ``fail(ref, line)`` may return an error message for a batch line.
    """

    nft: FakeNft = field(default_factory=FakeNft)
    batches: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    json: dict[str, list[JsonObject]] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    fail: Callable[[str, str], str | None] | None = None

    def lines(self, where: str | None = None) -> list[str]:
        """Every batch line (of one namespace ref when given), in order."""
        return [line for ref, lines in self.batches if where in (None, ref) for line in lines]

    async def ip_batch(self, where: Netns, lines: Sequence[str]) -> None:
        if not lines:
            return
        self.batches.append((_key(where), tuple(lines)))
        for index, line in enumerate(lines, start=1):
            if self.fail is not None and (message := self.fail(_key(where), line)) is not None:
                raise HostCommandError(f"ip {line}", message, returncode=1, netns=where.name, line=index)

    async def ip_json(self, where: Netns, args: Sequence[str]) -> list[JsonObject]:
        query = f"{_key(where)} {' '.join(args)}"
        self.queries.append(query)
        if self.fail is not None and (message := self.fail(_key(where), " ".join(args))) is not None:
            raise HostCommandError(f"ip -j {' '.join(args)}", message, returncode=1, netns=where.name)
        return list(self.json.get(query, []))

    async def nft_apply(self, where: Netns, ruleset: str) -> None:
        await self.nft.apply(ruleset, netns=where.ref)

    async def nft_list_table(self, where: Netns, family: str, name: str) -> str | None:
        return await self.nft.list_table(family, name, netns=where.ref)

    async def read_sysctl(self, where: Netns, key: str) -> str | None:
        return self.sysctls.get(f"{_key(where)} {key}")

    async def write_sysctl(self, where: Netns, key: str, value: str) -> None:
        self.sysctls[f"{_key(where)} {key}"] = value

    def netns_exists(self, where: Netns) -> bool:
        return _key(where) not in self.missing
