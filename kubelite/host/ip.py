"""Links, addresses, routes and network namespaces through iproute2's ``ip``.

Two ways to run commands, both behind the :class:`IpRunner` protocol:

- :meth:`IpRunner.batch` feeds many commands to one ``ip [-n NETNS] -batch -`` process (about 4x
  cheaper per pod than one process per command, see the pod-network reference notes);
- :meth:`IpRunner.run` runs one ``ip`` command and returns its standard output; the ``-j`` helpers
  :meth:`~IpRunner.links`, :meth:`~IpRunner.addresses` and :meth:`~IpRunner.routes` parse JSON.

:class:`RealIp` starts the processes; :class:`FakeIp` only records what it was asked to run, so code
that *computes* commands is tested without root. The module-level builders (:func:`veth_pair`,
:func:`bridge`, :func:`addr_add`, :func:`link_up`, :func:`link_master`, :func:`route_add`) return
one ``ip -batch`` line each (without the leading ``ip``) and validate their arguments, so a name
can never smuggle a second command into a batch.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kubelite.host.run import ToolError, run_tool

__all__ = [
    "FakeIp",
    "HostCommandError",
    "IpRunner",
    "RealIp",
    "addr_add",
    "bridge",
    "link_master",
    "link_up",
    "route_add",
    "validate_ifname",
    "validate_netns",
    "veth_pair",
]

JsonObject = dict[str, Any]

# Linux: IFNAMSIZ is 16 including the NUL; '/', ':' and whitespace are not allowed.
_IFNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,14}$")
# A netns name is a file name under /run/netns; keep it to a conservative alphabet.
_NETNS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_BATCH_FAILED = re.compile(r"Command failed (?:-|\S+):(\d+)")


class HostCommandError(ToolError):
    """An ``ip`` command failed. ``command`` is the failing command line, ``stderr`` ip's message."""

    def __init__(
        self,
        command: str,
        stderr: str,
        *,
        returncode: int | None = None,
        netns: str | None = None,
        line: int | None = None,
    ) -> None:
        self.line = line
        where = f" (line {line} of a batch)" if line is not None else ""
        message = f"ip command failed{where}: {command!r}: {self.detail(stderr, returncode)}"
        super().__init__(message, command, stderr, returncode=returncode, netns=netns)


# --------------------------------------------------------------------------- validation


def validate_ifname(name: str) -> str:
    """Return ``name`` if it is a valid Linux interface name, else raise :class:`ValueError`."""
    if not _IFNAME.match(name):
        raise ValueError(f"invalid interface name {name!r} (1-15 characters of [A-Za-z0-9_.@-])")
    return name


def validate_netns(name: str) -> str:
    """Return ``name`` if it is an acceptable network namespace name, else raise :class:`ValueError`."""
    if not _NETNS.match(name) or name in (".", ".."):
        raise ValueError(f"invalid network namespace name {name!r}")
    return name


def _check_line(command: str) -> str:
    if not command.strip() or any(c in command for c in "\n\r\0"):
        raise ValueError(f"a batch command must be one non-empty line: {command!r}")
    return command


# --------------------------------------------------------------------------- command builders


def veth_pair(host_if: str, peer_if: str, peer_netns: str | None = None) -> str:
    """A veth pair: ``host_if`` where the batch runs, ``peer_if`` moved into ``peer_netns``."""
    line = f"link add {validate_ifname(host_if)} type veth peer name {validate_ifname(peer_if)}"
    if peer_netns is not None:
        line += f" netns {validate_netns(peer_netns)}"
    return line


def bridge(name: str) -> str:
    """A Linux bridge named ``name``."""
    return f"link add name {validate_ifname(name)} type bridge"


def addr_add(cidr: str, dev: str) -> str:
    """Add the address ``cidr`` (e.g. ``10.244.1.1/24``) to ``dev``."""
    iface = ipaddress.ip_interface(cidr)
    if "/" not in cidr:
        raise ValueError(f"address {cidr!r} needs a prefix length")
    return f"addr add {iface.with_prefixlen} dev {validate_ifname(dev)}"


def link_up(dev: str) -> str:
    """Bring ``dev`` up."""
    return f"link set dev {validate_ifname(dev)} up"


def link_master(dev: str, master: str) -> str:
    """Attach ``dev`` to the bridge ``master``."""
    return f"link set dev {validate_ifname(dev)} master {validate_ifname(master)}"


def route_add(dst: str, via: str | None = None, dev: str | None = None, onlink: bool = False) -> str:
    """A route to ``dst`` (a network or ``default``) through the gateway ``via`` and/or device ``dev``."""
    if dst != "default":
        dst = ipaddress.ip_network(dst, strict=True).with_prefixlen
    if via is None and dev is None:
        raise ValueError("a route needs a gateway (via), a device (dev) or both")
    if onlink and (via is None or dev is None):
        raise ValueError("an onlink route needs both a gateway (via) and a device (dev)")
    parts = ["route", "add", dst]
    if via is not None:
        parts += ["via", str(ipaddress.ip_address(via))]
    if dev is not None:
        parts += ["dev", validate_ifname(dev)]
    if onlink:
        parts.append("onlink")
    return " ".join(parts)


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class IpRunner(Protocol):
    """What the rest of kubelite uses to change links, addresses, routes and namespaces."""

    async def batch(self, commands: Sequence[str], *, netns: str | None = None) -> None:
        """Run ``commands`` through one ``ip [-n NETNS] -batch -``; stop at the first failure."""
        ...

    async def run(self, args: Sequence[str], *, netns: str | None = None) -> str:
        """Run ``ip [-n NETNS] ARGS...`` and return its standard output."""
        ...

    async def links(self, netns: str | None = None) -> list[JsonObject]:
        """``ip -j link show``."""
        ...

    async def addresses(self, netns: str | None = None) -> list[JsonObject]:
        """``ip -j addr show``."""
        ...

    async def routes(self, netns: str | None = None) -> list[JsonObject]:
        """``ip -j route show`` (main table)."""
        ...

    async def add_netns(self, name: str) -> None:
        """``ip netns add NAME``."""
        ...

    async def delete_netns(self, name: str) -> None:
        """``ip netns del NAME`` (removes every link inside it, and both ends of its veths)."""
        ...

    async def list_netns(self) -> list[str]:
        """Names from ``ip netns list``."""
        ...


class _IpBase:
    """The parts of :class:`IpRunner` that are the same for the real and the fake runner."""

    async def run(self, args: Sequence[str], *, netns: str | None = None) -> str:
        raise NotImplementedError

    async def _json(self, args: Sequence[str], netns: str | None) -> list[JsonObject]:
        out = await self.run(["-j", *args], netns=netns)
        if not out.strip():
            return []
        parsed = json.loads(out)
        if not isinstance(parsed, list):
            raise HostCommandError(" ".join(["ip", "-j", *args]), f"expected a JSON list, got: {out[:200]}")
        return [item for item in parsed if isinstance(item, dict)]

    async def links(self, netns: str | None = None) -> list[JsonObject]:
        return await self._json(["link", "show"], netns)

    async def addresses(self, netns: str | None = None) -> list[JsonObject]:
        return await self._json(["addr", "show"], netns)

    async def routes(self, netns: str | None = None) -> list[JsonObject]:
        return await self._json(["route", "show"], netns)

    async def add_netns(self, name: str) -> None:
        await self.run(["netns", "add", validate_netns(name)])

    async def delete_netns(self, name: str) -> None:
        await self.run(["netns", "del", validate_netns(name)])

    async def list_netns(self) -> list[str]:
        return [str(item["name"]) for item in await self._json(["netns", "list"], None) if "name" in item]


def _argv_prefix(binary: str, netns: str | None) -> list[str]:
    return [binary] if netns is None else [binary, "-n", validate_netns(netns)]


class RealIp(_IpBase):
    """Runs the ``ip`` binary with :func:`asyncio.create_subprocess_exec`."""

    def __init__(self, binary: str | None = None, *, timeout: float = 30.0) -> None:
        found = binary or shutil.which("ip") or "/usr/sbin/ip"
        self.binary = found
        self.timeout = timeout

    async def _exec(self, argv: list[str], stdin: bytes | None) -> tuple[int, str, str]:
        return await run_tool(argv, stdin, seconds=self.timeout)

    async def batch(self, commands: Sequence[str], *, netns: str | None = None) -> None:
        lines = [_check_line(c) for c in commands]
        if not lines:
            return
        argv = [*_argv_prefix(self.binary, netns), "-batch", "-"]
        rc, _out, err = await self._exec(argv, ("\n".join(lines) + "\n").encode())
        if rc != 0:
            line: int | None = None
            match = _BATCH_FAILED.search(err)
            if match and 1 <= int(match.group(1)) <= len(lines):
                line = int(match.group(1))
            failing = lines[line - 1] if line is not None else "; ".join(lines)
            prefix = "ip" if netns is None else f"ip -n {netns}"
            raise HostCommandError(f"{prefix} {failing}", err, returncode=rc, netns=netns, line=line)

    async def run(self, args: Sequence[str], *, netns: str | None = None) -> str:
        argv = [*_argv_prefix(self.binary, netns), *args]
        rc, out, err = await self._exec(argv, None)
        if rc != 0:
            shown = " ".join(["ip", *argv[1:]])
            raise HostCommandError(shown, err, returncode=rc, netns=netns)
        return out

    async def add_netns(self, name: str) -> None:
        """Like ``ip netns add``; without a process once ``ip`` has set up /run/netns (fork is costly)."""
        from kubelite.host import netns

        if not netns.in_process_netns_ready():
            await super().add_netns(name)
            return
        try:
            await netns.add_named_netns(validate_netns(name))
        except OSError as exc:
            raise HostCommandError(f"ip netns add {name}", f"cannot create it: {exc}", returncode=1) from None

    async def delete_netns(self, name: str) -> None:
        from kubelite.host import netns

        if not netns.in_process_netns_ready():
            await super().delete_netns(name)
            return
        try:
            await netns.delete_named_netns(validate_netns(name))
        except OSError as exc:
            raise HostCommandError(f"ip netns del {name}", f"cannot remove it: {exc}", returncode=1) from None


@dataclass(frozen=True)
class IpCall:
    """One recorded call on :class:`FakeIp`: ``kind`` is ``"batch"`` or ``"run"``."""

    kind: str
    netns: str | None
    commands: tuple[str, ...]


@dataclass
class FakeIp(_IpBase):
    """Records every command instead of running it.

    ``responses`` maps a joined ``run`` argument line (e.g. ``"-j link show"``) to the stdout to
    return (default: empty, so the JSON helpers return ``[]``). ``fail`` is called with each command
    line (``netns``, line) and, if it returns a message, that command raises :class:`HostCommandError`
    like the real runner would. Namespaces added and deleted are tracked in ``namespaces``.
    """

    responses: dict[str, str] = field(default_factory=dict)
    fail: Callable[[str | None, str], str | None] | None = None
    calls: list[IpCall] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    @property
    def commands(self) -> list[str]:
        """Every command line in order, as ``ip [-n NS] ...`` (batch lines are expanded)."""
        result: list[str] = []
        for call in self.calls:
            prefix = "ip" if call.netns is None else f"ip -n {call.netns}"
            result.extend(f"{prefix} {c}" for c in call.commands)
        return result

    def _maybe_fail(self, netns: str | None, line: str, index: int | None) -> None:
        if self.fail is None:
            return
        message = self.fail(netns, line)
        if message is not None:
            prefix = "ip" if netns is None else f"ip -n {netns}"
            raise HostCommandError(f"{prefix} {line}", message, returncode=1, netns=netns, line=index)

    async def batch(self, commands: Sequence[str], *, netns: str | None = None) -> None:
        lines = tuple(_check_line(c) for c in commands)
        if netns is not None:
            validate_netns(netns)
        if not lines:
            return
        self.calls.append(IpCall("batch", netns, lines))
        for i, line in enumerate(lines, start=1):
            self._maybe_fail(netns, line, i)

    async def run(self, args: Sequence[str], *, netns: str | None = None) -> str:
        if netns is not None:
            validate_netns(netns)
        line = " ".join(args)
        self.calls.append(IpCall("run", netns, (line,)))
        self._maybe_fail(netns, line, None)
        if netns is None and len(args) >= 3 and args[0] == "netns":
            if args[1] == "add":
                if args[2] in self.namespaces:
                    raise HostCommandError(
                        f"ip {line}", f'Cannot create namespace file "/run/netns/{args[2]}"'
                    )
                self.namespaces.append(args[2])
            elif args[1] in ("del", "delete"):
                if args[2] not in self.namespaces:
                    raise HostCommandError(
                        f"ip {line}", f'Cannot remove namespace file "/run/netns/{args[2]}"'
                    )
                self.namespaces.remove(args[2])
        return self.responses.get(line, "")

    async def list_netns(self) -> list[str]:
        await self.run(["-j", "netns", "list"])
        return list(self.namespaces)
