"""Processes this program started: is one alive, its descendants, ending them by PID.

kubelite ends only processes it started, by PID (never by name). :func:`alive` treats a zombie as
dead and reaps it when it is our child; :func:`kill_tree` signals a process and every descendant
(found through ``/proc/<pid>/task/*/children``); :func:`kill_and_wait` signals a list of PIDs and
waits, bounded in time, until none is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable

__all__ = ["alive", "descendants", "kill_and_wait", "kill_tree"]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie is dead; ours is reaped on the way)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        if f.read().split(") ", 1)[-1].startswith("Z"):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(p) for p in f.read().split())
    return found


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, parents before children."""
    stack, seen = [pid], []
    while stack:
        p = stack.pop()
        seen.append(p)
        stack.extend(_children(p))
    return seen


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal ``pid`` and all its descendants."""
    for p in descendants(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


async def kill_and_wait(pids: Iterable[int], seconds: float = 5.0, sig: int = signal.SIGKILL) -> bool:
    """Signal every PID, then wait up to ``seconds`` until none is alive; False if some still is."""
    targets = [p for p in pids if p > 0]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while any(alive(p) for p in targets):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True
