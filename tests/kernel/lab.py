"""A network lab for kernel tests: uniquely named namespaces, processes inside them, full teardown.

Every namespace is named ``kltest-<pid>-<n>`` and tracked; teardown kills every process the lab
started (by PID) and deletes every namespace it made, which also removes the links, veths (both
ends), addresses and routes inside them. Nothing is ever created in the root network namespace.

Use the ``lab`` fixture (``from lab import lab_fixture  # noqa: F401``), or ``async with Lab() as lab:``.
Deliberately not a ``conftest.py``: that would shadow the top-level ``conftest`` module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from kubelite.host.ip import RealIp

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
