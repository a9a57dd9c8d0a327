"""Processes we started: alive (zombies count as dead), descendants, and ending them by PID."""

from __future__ import annotations

import asyncio

from kubelite.host.procs import alive, descendants, kill_and_wait, kill_tree


async def test_a_tree_is_found_and_ended_by_pid() -> None:
    # sh starts a sleep in the background and waits: a parent with one child.
    proc = await asyncio.create_subprocess_exec("sh", "-c", "sleep 30 & wait")
    try:
        for _ in range(100):  # bounded: the child appears within a second
            tree = descendants(proc.pid)
            if len(tree) == 2:
                break
            await asyncio.sleep(0.01)
        assert tree[0] == proc.pid and len(tree) == 2 and all(alive(p) for p in tree)
        kill_tree(proc.pid)
        await asyncio.wait_for(proc.wait(), 5)
        assert not alive(proc.pid)
        assert await kill_and_wait(tree, seconds=5)
    finally:
        if proc.returncode is None:
            kill_tree(proc.pid)
            await proc.wait()


async def test_kill_and_wait_ignores_what_is_gone() -> None:
    proc = await asyncio.create_subprocess_exec("sleep", "30")
    assert await kill_and_wait([proc.pid, 0], seconds=5)
    await proc.wait()
    assert not alive(proc.pid)
