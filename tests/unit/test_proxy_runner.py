"""The bounded-frequency runner: batching, periodic full resyncs, retries, health."""

from __future__ import annotations

import asyncio

from kubelite.proxy.runner import BoundedFrequencyRunner


async def test_requests_batch_and_failures_retry_full() -> None:
    calls: list[bool] = []
    fail = [True]

    async def sync(full: bool) -> None:
        calls.append(full)
        if fail[0]:
            fail[0] = False
            raise RuntimeError("nft said no")

    runner = BoundedFrequencyRunner(sync, min_interval=0.0, max_interval=60.0, retry_interval=0.0)
    task = asyncio.create_task(runner.run())
    for _ in range(5):
        runner.request()
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(calls) >= 2:
            break
    task.cancel()
    assert calls[:2] == [True, True]  # the first sync is full; the retry after a failure too
    assert runner.stats.failures == 1 and runner.stats.syncs >= 1


def test_health_follows_kube_proxy_rule() -> None:
    now = [100.0]

    async def sync(full: bool) -> None:
        return None

    runner = BoundedFrequencyRunner(sync, max_interval=30.0, clock=lambda: now[0])
    assert runner.healthy()
    runner.request()
    now[0] += 59
    assert runner.healthy()
    now[0] += 2
    assert not runner.healthy()
    asyncio.run(runner.run_once())
    assert runner.healthy()
