"""Removing everything a ``kubelite up`` made: processes, namespaces, links.

The record of what was made lives in ``DATA_DIR/up-state.json`` (written before anything is
created, updated as things are), so ``kubelite down`` can clean up after an ``up`` that was killed.
Processes are found by the network namespace they run in: every process inside a cluster's node or
pod namespace was started by that cluster's agents, so it is ended by its PID.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kubelite.host.ip import IpRunner
from kubelite.host.netns import netns_path
from kubelite.host.procs import alive, kill_and_wait

__all__ = ["UpState", "pids_in_netns", "sweep"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class UpState:
    name: str
    host_netns: str | None = None
    """The namespace holding the node bridge; None = the one ``kubelite up`` ran in (the host's)."""
    created_host_netns: bool = False
    bridge: str = ""
    netns_prefix: str = ""
    pids: list[int] = field(default_factory=list)
    """Agent processes (by PID)."""

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> UpState:
        return cls(**json.loads(path.read_text()))


def pids_in_netns(name: str) -> list[int]:
    """PIDs of the processes whose network namespace is ``/run/netns/<name>``."""
    try:
        target = os.stat(netns_path(name))
    except OSError:
        return []
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            st = os.stat(f"/proc/{entry}/ns/net")
            if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
                found.append(int(entry))
    return found


async def _kill_all(pids: list[int], seconds: float = 5.0) -> None:
    await kill_and_wait([p for p in pids if p != os.getpid()], seconds)  # `up` may run in the host netns


async def sweep(state: UpState, ip: IpRunner) -> list[str]:
    """Kill the cluster's processes, delete its namespaces, bridge and host namespace; return problems."""
    problems: list[str] = []
    await _kill_all([p for p in state.pids if alive(p)])
    ours = [n for n in await ip.list_netns() if state.netns_prefix and n.startswith(state.netns_prefix)]
    # Pods' namespaces first (their names extend their node's), then the nodes'.
    ours.sort(key=len, reverse=True)
    for name in ours:
        await _kill_all(pids_in_netns(name))
    for name in ours:
        try:
            await ip.delete_netns(name)
        except Exception as exc:
            problems.append(f"could not delete network namespace {name}: {exc}")
    if state.bridge:
        host = state.host_netns
        exists = host is None or host in await ip.list_netns()
        if exists:
            with contextlib.suppress(Exception):
                await ip.batch([f"link del {state.bridge}"], netns=host)
    if state.host_netns and state.created_host_netns:
        await _kill_all(pids_in_netns(state.host_netns))
        try:
            await ip.delete_netns(state.host_netns)
        except Exception as exc:
            problems.append(f"could not delete network namespace {state.host_netns}: {exc}")
    return problems
