"""nftables rulesets through the ``nft`` command, in the current or another network namespace.

Everything goes through the :class:`NftRunner` protocol:

- :meth:`NftRunner.apply` feeds a ruleset text (``add table ...``, ``table ip t { ... }``, ``flush
  chain ...``, ``delete chain ...``) to one ``nft -f -``. nft applies a whole input as **one
  transaction**: either every line takes effect or none does, so callers can write "create if
  missing, flush, refill" idempotently in one call;
- :meth:`NftRunner.run` runs ``nft ARGS...`` and returns its standard output (e.g. ``-j list ruleset``);
- :meth:`NftRunner.list_tables` and :meth:`NftRunner.list_table` are the views most callers need.

``netns`` is ``None`` for the namespace the process runs in, a name made by ``ip netns add`` or a
path (``/proc/PID/ns/net``); :class:`RealNft` then starts ``nsenter --net=PATH nft ...`` (nft has no
``-n`` option of its own). :class:`FakeNft` records what it was asked and answers listings from a
small table model, so rule *generation* is tested without root.

nft 1.0.6 (Debian 12) rejects the ``dstnat`` priority name on the ``output`` hook: write numeric
priorities (``priority -100``).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from kubelite.host.netns import in_netns, netns_path
from kubelite.host.run import ToolError, run_tool

__all__ = ["FakeNft", "NftCall", "NftError", "NftRunner", "RealNft", "netns_argv"]

_FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
_TABLE_LINE = re.compile(
    r"^\s*(add|create|delete|flush)?\s*table\s+(ip6?|inet|arp|bridge|netdev)\s+(\S+?)\s*\{?$"
)


class NftError(ToolError):
    """``nft`` failed: ``command`` is what ran (``nft -f -`` or ``nft ARGS``), ``stderr`` nft's message."""

    def __init__(self, command: str, stderr: str, *, returncode: int | None = None, netns: str | None = None):
        message = f"nft command failed{in_netns(netns)}: {command!r}: {self.detail(stderr, returncode)}"
        super().__init__(message, command, stderr, returncode=returncode, netns=netns)


def netns_argv(netns: str | None, nsenter: str = "nsenter") -> list[str]:
    """The argv prefix that runs a program inside ``netns`` (empty for the current namespace)."""
    if netns is None:
        return []
    return [nsenter, f"--net={netns_path(netns)}"]


@runtime_checkable
class NftRunner(Protocol):
    """What the rest of kubelite uses to read and change nftables."""

    async def apply(self, ruleset: str, *, netns: str | None = None) -> None:
        """Apply ``ruleset`` through one ``nft -f -`` (one transaction)."""
        ...

    async def run(self, args: Sequence[str], *, netns: str | None = None) -> str:
        """Run ``nft ARGS...`` and return its standard output."""
        ...

    async def list_tables(self, *, netns: str | None = None) -> list[tuple[str, str]]:
        """``(family, name)`` of every table."""
        ...

    async def list_table(self, family: str, name: str, *, netns: str | None = None) -> str | None:
        """``nft list table FAMILY NAME`` as text, or ``None`` when there is no such table."""
        ...


class RealNft:
    """Runs the ``nft`` binary (through ``nsenter --net=`` for another namespace)."""

    def __init__(self, binary: str | None = None, *, nsenter: str | None = None, timeout: float = 30.0):
        self.binary = binary or shutil.which("nft") or "/usr/sbin/nft"
        self.nsenter = nsenter or shutil.which("nsenter") or "/usr/bin/nsenter"
        self.timeout = timeout

    async def _exec(self, args: Sequence[str], stdin: bytes | None, netns: str | None) -> str:
        argv = [*netns_argv(netns, self.nsenter), self.binary, *args]
        rc, out, err = await run_tool(argv, stdin, seconds=self.timeout)
        if rc != 0:
            raise NftError(" ".join(["nft", *args]), err, returncode=rc, netns=netns)
        return out

    async def apply(self, ruleset: str, *, netns: str | None = None) -> None:
        if not ruleset.strip():
            return
        await self._exec(["-f", "-"], ruleset.encode(), netns)

    async def run(self, args: Sequence[str], *, netns: str | None = None) -> str:
        return await self._exec(list(args), None, netns)

    async def list_tables(self, *, netns: str | None = None) -> list[tuple[str, str]]:
        out = await self.run(["-j", "list", "tables"], netns=netns)
        parsed = json.loads(out) if out.strip() else {}
        tables: list[tuple[str, str]] = []
        for item in parsed.get("nftables", []):
            table = item.get("table") if isinstance(item, dict) else None
            if isinstance(table, dict):
                tables.append((str(table.get("family")), str(table.get("name"))))
        return tables

    async def list_table(self, family: str, name: str, *, netns: str | None = None) -> str | None:
        try:
            return await self.run(["list", "table", family, name], netns=netns)
        except NftError as exc:
            if "No such file or directory" in exc.stderr:
                return None
            raise


@dataclass(frozen=True)
class NftCall:
    """One recorded call on :class:`FakeNft`: ``kind`` is ``"apply"`` or ``"run"``."""

    kind: str
    netns: str | None
    text: str


@dataclass
class FakeNft:
    """Records every call; keeps a rough model of which tables exist per namespace.

    The model follows ``add/create/delete table`` lines and ``table FAMILY NAME {`` blocks, and
    remembers the lines applied that mention a table, which :meth:`list_table` returns joined (enough
    to assert on generated rules; it is not an nft interpreter). ``fail`` is called with
    ``(netns, text)`` for every call and, if it returns a message, the call raises :class:`NftError`.
    ``responses`` maps a joined ``run`` argument line to its standard output.
    """

    responses: dict[str, str] = field(default_factory=dict)
    fail: Callable[[str | None, str], str | None] | None = None
    calls: list[NftCall] = field(default_factory=list)
    tables: dict[tuple[str | None, str, str], list[str]] = field(default_factory=dict)

    def applied(self, netns: str | None = None) -> list[str]:
        """The ruleset texts applied in ``netns``, in order."""
        return [c.text for c in self.calls if c.kind == "apply" and c.netns == netns]

    def _check(self, netns: str | None, text: str, command: str) -> None:
        if self.fail is not None and (message := self.fail(netns, text)) is not None:
            raise NftError(command, message, returncode=1, netns=netns)

    async def apply(self, ruleset: str, *, netns: str | None = None) -> None:
        if not ruleset.strip():
            return
        self.calls.append(NftCall("apply", netns, ruleset))
        self._check(netns, ruleset, "nft -f -")
        current: tuple[str | None, str, str] | None = None
        for line in ruleset.splitlines():
            match = _TABLE_LINE.match(line)
            if match:
                verb, family, name = match.groups()
                key = (netns, family, name)
                if verb == "delete":
                    self.tables.pop(key, None)
                    current = None
                    continue
                self.tables.setdefault(key, [])
                current = key if line.rstrip().endswith("{") else None
                continue
            words = line.split()
            if len(words) >= 5 and words[2] in _FAMILIES and (netns, words[2], words[3]) in self.tables:
                self._chain_line(self.tables[(netns, words[2], words[3])], words, line.strip())
                continue
            if current is not None and line.strip():
                self.tables[current].append(line.strip())

    @staticmethod
    def _chain_line(lines: list[str], words: list[str], line: str) -> None:
        verb, what, chain = words[0], words[1], words[4]
        if verb in ("delete", "flush") and what == "chain":
            kinds = ("chain", "rule") if verb == "delete" else ("rule",)
            lines[:] = [
                kept
                for kept in lines
                if not ((w := kept.split()) and len(w) >= 5 and w[1] in kinds and w[4] == chain)
            ]
            return
        lines.append(line)

    async def run(self, args: Sequence[str], *, netns: str | None = None) -> str:
        line = " ".join(args)
        self.calls.append(NftCall("run", netns, line))
        self._check(netns, line, f"nft {line}")
        return self.responses.get(line, "")

    async def list_tables(self, *, netns: str | None = None) -> list[tuple[str, str]]:
        self.calls.append(NftCall("run", netns, "-j list tables"))
        return [(family, name) for (ns, family, name) in self.tables if ns == netns]

    async def list_table(self, family: str, name: str, *, netns: str | None = None) -> str | None:
        self.calls.append(NftCall("run", netns, f"list table {family} {name}"))
        lines = self.tables.get((netns, family, name))
        return None if lines is None else "\n".join(lines)
