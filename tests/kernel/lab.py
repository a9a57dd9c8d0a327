"""A network lab for kernel tests: uniquely named namespaces, processes inside them, full teardown.

Every namespace is named ``kltest-<pid>-<n>`` and tracked; teardown kills every process the lab
started (by PID) and deletes every namespace it made, which also removes the links, veths (both
ends), addresses and routes inside them. Nothing is ever created in the root network namespace.

Use the ``lab`` fixture (``from lab import lab_fixture, root_unchanged  # noqa: F401``; ``root_unchanged``
is autouse and asserts the root namespace's links, addresses, routes and rules are untouched),
or ``async with Lab() as lab:``.
Deliberately not a ``conftest.py``: that would shadow the top-level ``conftest`` module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest

from kubelite.host.ip import RealIp, link_master, link_up, veth_pair

PREFIX = f"kltest-{os.getpid()}-"
_counter = itertools.count(1)


def kernel_skip_reason() -> str | None:
    """Why kernel tests cannot run here, or ``None`` if they can."""
    if os.geteuid() != 0:
        return "kernel tests need root (network namespaces); run the suite as root"
    binary = shutil.which("ip") or "/usr/sbin/ip"
    if not os.path.exists(binary):
        return "kernel tests need iproute2's `ip` (Debian package iproute2)"
    try:
        subprocess.run([binary, "netns", "list"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns` is unavailable here: {exc}"
    return None


class Lab:
    """Owns namespaces and processes; :meth:`close` removes them all, also after a failure."""

    def __init__(self, ip: RealIp | None = None) -> None:
        self.ip = ip or RealIp()
        self.namespaces: list[str] = []
        self.processes: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Lab:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def netns(self) -> str:
        """Create a new namespace with a unique name; it is deleted in teardown."""
        name = f"{PREFIX}{next(_counter)}"
        await self.ip.add_netns(name)
        self.namespaces.append(name)
        return name

    async def delete(self, name: str) -> None:
        """Delete one of this lab's namespaces now."""
        self.namespaces.remove(name)
        await self.ip.delete_netns(name)

    async def plug(
        self, bridge_netns: str, port: str, into: str, *, bridge: str = "br0", extra: Sequence[str] = ()
    ) -> None:
        """A veth from ``bridge`` in ``bridge_netns`` (that end named ``port``) to ``eth0`` in ``into``;
        ``extra`` are more ``ip -batch`` lines for ``bridge_netns`` (e.g. hairpin on the port)."""
        lines = [veth_pair(port, "eth0", into), link_master(port, bridge), link_up(port), *extra]
        await self.ip.batch(lines, netns=bridge_netns)

    async def spawn(self, netns: str, argv: Sequence[str], **kwargs: Any) -> asyncio.subprocess.Process:
        """Start ``argv`` inside ``netns`` (``ip netns exec`` execs it, so the PID is the program's)."""
        if netns not in self.namespaces:
            raise ValueError(f"{netns} is not one of this lab's namespaces")
        kwargs.setdefault("stdout", asyncio.subprocess.PIPE)
        kwargs.setdefault("stderr", asyncio.subprocess.PIPE)
        kwargs.setdefault("stdin", asyncio.subprocess.DEVNULL)
        proc = await asyncio.create_subprocess_exec(self.ip.binary, "netns", "exec", netns, *argv, **kwargs)
        self.processes.append(proc)
        return proc

    async def exec(self, netns: str, argv: Sequence[str], seconds: float = 10.0) -> tuple[int, str, str]:
        """Run ``argv`` inside ``netns`` to completion; return (exit code, stdout, stderr)."""
        proc = await self.spawn(netns, argv)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), seconds)
        finally:
            await self._stop(proc)
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, 9)  # only a process this lab started, by its PID
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        if proc in self.processes:
            self.processes.remove(proc)

    async def close(self) -> None:
        errors: list[str] = []
        for proc in list(self.processes):
            await self._stop(proc)
        for name in reversed(self.namespaces):
            try:
                await self.ip.delete_netns(name)
            except Exception as exc:
                errors.append(f"{name}: {exc}")
        self.namespaces.clear()
        if errors:
            raise RuntimeError("lab teardown could not delete: " + "; ".join(errors))


@pytest.fixture(name="lab")
async def lab_fixture() -> AsyncIterator[Lab]:
    """A :class:`Lab` torn down after the test; skips when kernel tests cannot run here."""
    reason = kernel_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    async with Lab() as the_lab:
        yield the_lab


_OTHER_RUN = re.compile(r"^kl(?:test|bench)-(\d+)-")


def _ip_json(*args: str) -> Any:
    out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True, timeout=10).stdout
    return json.loads(out) if out.strip() else []


def _netns_names() -> list[str]:
    names = [str(n["name"]) for n in _ip_json("netns", "list")]
    # Another run of this suite (a different PID) may add or remove its own namespaces concurrently.
    return sorted(n for n in names if not ((m := _OTHER_RUN.match(n)) and int(m.group(1)) != os.getpid()))


def _root_snapshot() -> dict[str, Any]:
    links = [
        {k: link.get(k) for k in ("ifindex", "ifname", "flags", "mtu", "master", "address", "link_type")}
        for link in _ip_json("link", "show")
    ]
    addrs = [
        (a.get("ifname"), [(i.get("local"), i.get("prefixlen")) for i in a.get("addr_info", [])])
        for a in _ip_json("addr", "show")
    ]
    return {
        "netns": _netns_names(),
        "links": links,
        "addresses": addrs,
        "routes4": _ip_json("route", "show", "table", "all"),
        "routes6": _ip_json("-6", "route", "show", "table", "all"),
        "rules": _ip_json("rule", "show"),
    }


@pytest.fixture(autouse=True)
def root_unchanged() -> Iterator[None]:
    """Autouse, so it is set up before ``lab`` and checked after the lab's teardown."""
    if kernel_skip_reason() is not None:
        yield
        return
    before = _root_snapshot()
    yield
    after = _root_snapshot()
    assert not [n for n in after["netns"] if n.startswith(PREFIX)], "a test namespace survived teardown"
    for key in before:
        assert after[key] == before[key], f"the root network namespace's {key} changed"
