"""WorkQueue and run_workers, on a FakeClock: no test sleeps."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kubelite.client.workqueue import FakeClock, ShutDown, WorkQueue, run_workers, sleep


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(10):
        await asyncio.sleep(0)


def test_fake_clock_runs_due_timers_in_order() -> None:
    clock = FakeClock(100.0)
    fired: list[tuple[str, float]] = []
    clock.call_later(2, lambda: fired.append(("b", clock.now())))
    clock.call_later(1, lambda: fired.append(("a", clock.now())))
    cancelled = clock.call_later(1.5, lambda: fired.append(("x", clock.now())))
    cancelled.cancel()
    assert clock.pending == 2 and clock.next_due() == 101.0
    clock.advance(1.5)
    assert fired == [("a", 101.0)] and clock.now() == 101.5
    clock.advance(10)
    assert fired == [("a", 101.0), ("b", 102.0)] and clock.pending == 0


async def test_sleep_on_a_fake_clock() -> None:
    clock = FakeClock()
    sleeper = asyncio.create_task(sleep(clock, 5))
    await settle()
    clock.advance(4.9)
    await settle()
    assert not sleeper.done()
    clock.advance(0.1)
    await settle()
    assert sleeper.done()
    cancelled = asyncio.create_task(sleep(clock, 5))
    await settle()
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert clock.pending == 0


async def test_add_deduplicates_while_queued() -> None:
    queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
    for key in ("a", "b", "a", "c", "b"):
        queue.add(key)
    assert len(queue) == 3
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]
    assert len(queue) == 0


async def test_a_key_added_while_processing_is_queued_again_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0, "never handed to a second worker while the first holds it"
    queue.done(key)
    assert len(queue) == 1
    assert await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_get_waits_for_an_add() -> None:
    queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
    getter = asyncio.create_task(queue.get())
    await settle()
    assert not getter.done()
    queue.add("k")
    assert await asyncio.wait_for(getter, 1) == "k"


async def test_add_after_keeps_the_earliest_time() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 10)
    queue.add_after("a", 20)  # later: ignored
    queue.add_after("b", 5)
    queue.add_after("b", 1)  # earlier: replaces
    queue.add_after("c", 0)  # now
    assert len(queue) == 1 and clock.pending == 2
    clock.advance(1)
    assert len(queue) == 2
    clock.advance(8.9)
    assert len(queue) == 2
    clock.advance(0.1)
    assert [await queue.get() for _ in range(3)] == ["c", "b", "a"]
    assert clock.pending == 0


async def test_rate_limited_backoff_doubles_to_the_cap_and_forget_resets() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    delays = []
    for _ in range(15):
        delays.append(queue.when("k"))
        queue.add_rate_limited("k")
        clock.advance(queue.when("k"))  # past the timer
        assert await queue.get() == "k"
        queue.done("k")
    assert delays[:5] == [0.005, 0.01, 0.02, 0.04, 0.08]
    assert delays[-1] == 30.0 and max(delays) == 30.0
    assert queue.num_requeues("k") == 15
    assert queue.when("other") == 0.005, "backoff is per key"
    queue.forget("k")
    assert queue.when("k") == 0.005 and queue.num_requeues("k") == 0
    for _ in range(200):
        queue.add_rate_limited("k")
    assert queue.when("k") == 30.0


async def test_rate_limited_key_waits_its_delay() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_rate_limited("k")
    queue.add_rate_limited("k")  # a second failure while waiting: the earlier timer stands
    assert len(queue) == 0
    clock.advance(0.004)
    assert len(queue) == 0
    clock.advance(0.001)
    assert len(queue) == 1


async def test_shutdown_wakes_getters_and_drops_work() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await settle()
    queue.add_after("later", 5)
    queue.shutdown()
    for getter in getters:
        with pytest.raises(ShutDown):
            await getter
    assert clock.pending == 0
    queue.add("x")
    queue.add_after("y", 1)
    queue.add_rate_limited("z")
    assert len(queue) == 0 and queue.shutting_down
    with pytest.raises(ShutDown):
        await queue.get()


async def test_run_workers_retries_failures_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    calls: list[str] = []
    failures = {"bad": 2}

    async def sync(key: str) -> None:
        calls.append(key)
        if failures.get(key, 0) > 0:
            failures[key] -= 1
            raise RuntimeError(f"cannot sync {key} yet")

    with caplog.at_level(logging.ERROR, logger="kubelite.client.workqueue"):
        workers = asyncio.create_task(run_workers(queue, sync, 2, name="test-sync"))
        queue.add("good")
        queue.add("bad")
        await settle()
        assert sorted(calls) == ["bad", "good"]
        assert queue.num_requeues("bad") == 1 and queue.num_requeues("good") == 0
        clock.advance(0.005)
        await settle()
        assert calls.count("bad") == 2 and queue.num_requeues("bad") == 2
        clock.advance(0.009)
        await settle()
        assert calls.count("bad") == 2, "the second retry waits 10 ms"
        clock.advance(0.001)
        await settle()
        assert calls.count("bad") == 3
        assert queue.num_requeues("bad") == 0, "a success forgets the key's failures"
        queue.shutdown()
        await asyncio.wait_for(workers, 1)
    assert "test-sync of 'bad' failed; retrying in 0.005s (attempt 1)" in caplog.text
    assert "cannot sync bad yet" in caplog.text


async def test_run_workers_never_syncs_one_key_twice_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
    running: set[str] = set()
    overlaps: list[str] = []
    calls = 0
    release = asyncio.Event()

    async def sync(key: str) -> None:
        nonlocal calls
        calls += 1
        if key in running:
            overlaps.append(key)
        running.add(key)
        await release.wait()
        running.discard(key)

    workers = asyncio.create_task(run_workers(queue, sync, 4))
    queue.add("k")
    await settle()
    queue.add("k")  # while the first sync runs
    await settle()
    assert calls == 1
    release.set()
    await settle()
    assert calls == 2 and overlaps == []
    queue.shutdown()
    await asyncio.wait_for(workers, 1)


async def test_cancelling_run_workers_cancels_the_sync() -> None:
    queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
    cancelled = asyncio.Event()

    async def sync(key: str) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    workers = asyncio.create_task(run_workers(queue, sync, 1))
    queue.add("k")
    await settle()
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers
    assert cancelled.is_set()
