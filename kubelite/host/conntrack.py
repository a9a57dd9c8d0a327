"""Deleting conntrack entries with the ``conntrack`` tool, in the current or another network namespace.

:class:`ConntrackRunner` has one method, :meth:`~ConntrackRunner.delete`: it runs ``conntrack -D``
with the given filters (e.g. ``-p udp --orig-dst 10.96.0.10 --dst-nat 10.244.1.5``) and returns how
many entries went away. Finding nothing to delete is not an error (``conntrack`` itself exits 1
then). :class:`RealConntrack` enters another namespace with ``nsenter --net=``; :class:`FakeConntrack`
records the calls for tests.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from kubelite.host.netns import in_netns
from kubelite.host.nft import netns_argv
from kubelite.host.run import run_tool

__all__ = ["ConntrackError", "ConntrackRunner", "FakeConntrack", "RealConntrack"]

_DELETED = re.compile(r"(\d+) flow entries have been deleted")


class ConntrackError(RuntimeError):
    """``conntrack`` failed for a reason other than "nothing matched"."""


@runtime_checkable
class ConntrackRunner(Protocol):
    async def delete(self, filters: Sequence[str], *, netns: str | None = None) -> int:
        """``conntrack -D FILTERS...``; the number of entries deleted (0 when none matched)."""
        ...


class RealConntrack:
    """Runs the ``conntrack`` binary (conntrack-tools), through ``nsenter --net=`` for another namespace."""

    def __init__(self, binary: str | None = None, *, nsenter: str | None = None, timeout: float = 10.0):
        self.binary = binary or shutil.which("conntrack") or "/usr/sbin/conntrack"
        self.nsenter = nsenter or shutil.which("nsenter") or "/usr/bin/nsenter"
        self.timeout = timeout

    async def delete(self, filters: Sequence[str], *, netns: str | None = None) -> int:
        argv = [*netns_argv(netns, self.nsenter), self.binary, "-D", *filters]
        try:
            rc, out, err = await run_tool(argv, seconds=self.timeout)
        except FileNotFoundError as exc:
            raise ConntrackError(
                f"cannot run {self.binary}: install conntrack-tools (Debian package conntrack)"
            ) from exc
        text = out + err
        match = _DELETED.search(text)
        if match is not None:
            return int(match.group(1))
        if rc == 0:
            return 0
        raise ConntrackError(f"conntrack -D {' '.join(filters)} failed{in_netns(netns)}: {text.strip()}")


@dataclass
class FakeConntrack:
    """Records ``(netns, filters)`` for every call; returns ``deleted`` for each."""

    deleted: int = 0
    calls: list[tuple[str | None, tuple[str, ...]]] = field(default_factory=list)

    async def delete(self, filters: Sequence[str], *, netns: str | None = None) -> int:
        self.calls.append((netns, tuple(filters)))
        return self.deleted
