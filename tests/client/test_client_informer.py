"""Informer against a real server, through HttpClient and LocalClient.

``GatedClient`` wraps a real client so a test can end the informer's current watch, hold its
next one back, or make it fail: that is how a test makes the informer miss events and then
meet a real 410 (or a failed watch) from the real server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from client_fixtures import *  # noqa: F403  (the fixtures)
from client_helpers import CONFIGMAPS, WaitCompacted, closing, configmap, server_options, server_rest

from kubelite.api.errors import StatusError
from kubelite.apiserver.server import RunningServer
from kubelite.client.http import HttpClient
from kubelite.client.informer import Backoff, Informer
from kubelite.client.interface import ApiClient, ListResult, Obj, WatchEvent
from kubelite.client.local import LocalClient
from kubelite.client.workqueue import FakeClock


def name_of(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


class Recorder:
    """Handler callbacks that remember what they were told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.updates: list[tuple[Obj, Obj]] = []
        self._changed = asyncio.Event()

    def attach(self, informer: Informer) -> None:
        informer.add_handler(self.on_add, self.on_update, self.on_delete)

    def on_add(self, obj: Obj) -> None:
        self._note("add", obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        self.updates.append((old, new))
        self._note("update", new)

    def on_delete(self, obj: Obj) -> None:
        self._note("delete", obj)

    def _note(self, kind: str, obj: Obj) -> None:
        self.events.append((kind, name_of(obj)))
        self._changed.set()

    async def wait_for(self, count: int) -> list[tuple[str, str]]:
        async with asyncio.timeout(5):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events


async def until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


class GatedClient:
    """A real client whose watches the test controls: ``cut()`` ends the current one cleanly,
    ``gate`` holds new ones back, ``fail_next`` makes the next one raise."""

    def __init__(self, inner: ApiClient) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next: BaseException | None = None
        self.watch_versions: list[str] = []
        self._cut: asyncio.Event | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def cut(self) -> None:
        assert self._cut is not None, "no watch is running"
        self._cut.set()

    async def list(self, *args: Any, **kwargs: Any) -> ListResult:
        return await self.inner.list(*args, **kwargs)

    async def watch(self, *args: Any, **kwargs: Any) -> AsyncGenerator[WatchEvent, None]:
        self.watch_versions.append(kwargs.get("resource_version", ""))
        await self.gate.wait()
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        cut = self._cut = asyncio.Event()
        cut_wait = asyncio.ensure_future(cut.wait())
        stream = cast(AsyncGenerator[WatchEvent, None], self.inner.watch(*args, **kwargs))
        step: asyncio.Future[WatchEvent] | None = None
        try:
            while True:
                step = asyncio.ensure_future(anext(stream))
                await asyncio.wait({step, cut_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    return
                try:
                    event = step.result()
                except StopAsyncIteration:
                    return
                yield event
        finally:
            # Stop the inner generator's pending step before closing it.
            for task in (step, cut_wait):
                if task is not None and not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            await stream.aclose()


def informer_for(client: Any, namespace: str | None = "default", **kwargs: Any) -> Informer:
    return Informer(cast(ApiClient, client), CONFIGMAPS, namespace, **kwargs)


@pytest.fixture
async def stopping() -> Any:
    """Informers registered here are stopped at the end of the test, whatever happened."""
    informers: list[Informer] = []
    yield informers.append
    for informer in informers:
        await informer.stop()


# --- sync and events ------------------------------------------------------------------------------


async def test_syncs_then_follows_changes(client: ApiClient, namespace: str, stopping: Any) -> None:
    await client.create(CONFIGMAPS, namespace, configmap("a", {"v": "1"}))
    await client.create(CONFIGMAPS, namespace, configmap("b"))
    await client.create(CONFIGMAPS, "default", configmap("elsewhere"))
    informer = informer_for(client, namespace)
    recorder = Recorder()
    recorder.attach(informer)
    stopping(informer)
    await informer.start()
    await informer.wait_synced()
    assert informer.synced
    assert sorted(recorder.events) == [("add", "a"), ("add", "b")]
    assert sorted(name_of(o) for o in informer.list()) == ["a", "b"]
    assert informer.get(namespace, "a") is not None
    assert informer.get("default", "elsewhere") is None

    await client.create(CONFIGMAPS, namespace, configmap("c"))
    await client.patch(CONFIGMAPS, namespace, "a", {"data": {"v": "2"}})
    await client.delete(CONFIGMAPS, namespace, "b")
    events = await recorder.wait_for(5)
    assert events[2:] == [("add", "c"), ("update", "a"), ("delete", "b")]
    old, new = recorder.updates[0]
    assert (old["data"], new["data"]) == ({"v": "1"}, {"v": "2"})
    assert sorted(name_of(o) for o in informer.list(namespace)) == ["a", "c"]
    got = informer.get(namespace, "a")
    assert got is not None and got["data"] == {"v": "2"}
    assert informer.lists == 1


async def test_all_namespaces_and_late_handlers(client: ApiClient, namespace: str, stopping: Any) -> None:
    await client.create(CONFIGMAPS, namespace, configmap("a"))
    await client.create(CONFIGMAPS, "default", configmap("b"))
    informer = informer_for(client, None)
    stopping(informer)
    await informer.start()
    await informer.wait_synced()
    assert {("t", "a"), ("default", "b")} <= {
        (o["metadata"]["namespace"], name_of(o)) for o in informer.list()
    }
    assert [name_of(o) for o in informer.list("default")] == ["b"]
    late = Recorder()
    late.attach(informer)  # the cache so far arrives as adds
    assert sorted(late.events) == [("add", "a"), ("add", "b")]


async def test_selectors_and_indexes(client: ApiClient, namespace: str, stopping: Any) -> None:
    await client.create(CONFIGMAPS, namespace, configmap("a", app="web", tier="front"))
    await client.create(CONFIGMAPS, namespace, configmap("b", app="web", tier="back"))
    await client.create(CONFIGMAPS, namespace, configmap("c", app="db", tier="back"))
    informer = informer_for(client, namespace, label_selector="app=web")
    informer.add_index("tier", lambda o: [o["metadata"]["labels"]["tier"]])
    recorder = Recorder()
    recorder.attach(informer)
    stopping(informer)
    await informer.start()
    await informer.wait_synced()
    assert [name_of(o) for o in informer.by_index("tier", "back")] == ["b"]
    assert [name_of(o) for o in informer.by_index("tier", "front")] == ["a"]

    await client.patch(CONFIGMAPS, namespace, "a", {"metadata": {"labels": {"tier": "back"}}})
    await client.patch(CONFIGMAPS, namespace, "b", {"metadata": {"labels": {"app": "gone"}}})
    await client.patch(CONFIGMAPS, namespace, "c", {"metadata": {"labels": {"app": "web"}}})
    events = await recorder.wait_for(5)
    assert events[2:] == [("update", "a"), ("delete", "b"), ("add", "c")]
    assert [name_of(o) for o in informer.by_index("tier", "back")] == ["a", "c"]
    assert informer.by_index("tier", "front") == []
    informer.add_index("app", lambda o: [o["metadata"]["labels"]["app"]])  # built from the cache
    assert len(informer.by_index("app", "web")) == 2
    with pytest.raises(KeyError, match="no index named 'nope'"):
        informer.by_index("nope", "x")
    with pytest.raises(ValueError, match="already has an index"):
        informer.add_index("tier", lambda o: [])


async def test_bookmarks_only_advance_the_resource_version(client: ApiClient, stopping: Any) -> None:
    informer = informer_for(client, None, label_selector="app=watched")
    recorder = Recorder()
    recorder.attach(informer)
    stopping(informer)
    await informer.start()
    await informer.wait_synced()
    start = int(informer.resource_version)
    last = 0
    for i in range(3):  # outside the selection: the watch sends no event, only bookmarks
        last = int(
            (await client.create(CONFIGMAPS, "default", configmap(f"other-{i}")))["metadata"][
                "resourceVersion"
            ]
        )
    await until(lambda: int(informer.resource_version) >= last, "a bookmark carried the new revision")
    assert last > start
    assert recorder.events == []
    assert informer.list() == []


async def test_handler_errors_are_logged_and_do_not_stop_events(
    client: ApiClient, namespace: str, stopping: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(obj: Obj) -> None:
        raise RuntimeError("handler bug")

    informer = informer_for(client, namespace)
    informer.add_handler(on_add=broken)
    recorder = Recorder()
    recorder.attach(informer)
    stopping(informer)
    await informer.start()
    await informer.wait_synced()
    with caplog.at_level(logging.ERROR, logger="kubelite.client.informer"):
        await client.create(CONFIGMAPS, namespace, configmap("a"))
        await client.create(CONFIGMAPS, namespace, configmap("b"))
        assert await recorder.wait_for(2) == [("add", "a"), ("add", "b")]
    assert "informer handler failed" in caplog.text


# --- recovery -------------------------------------------------------------------------------------


async def test_relist_after_410_reports_what_was_missed(
    compacting_client: ApiClient, wait_compacted: WaitCompacted, stopping: Any
) -> None:
    client = compacting_client
    for name in ("a", "b", "c"):
        await client.create(CONFIGMAPS, "default", configmap(name, {"v": "1"}))
    gated = GatedClient(client)
    clock = FakeClock()  # any backoff would hang this test: the first 410 must relist at once
    informer = informer_for(gated, clock=clock)
    recorder = Recorder()
    recorder.attach(informer)
    stopping(informer)
    await informer.start()
    await informer.wait_synced()
    await until(lambda: len(gated.watch_versions) == 1, "the informer watches")
    seen_rv = informer.resource_version

    gated.gate.clear()
    gated.cut()  # the watch ends cleanly; the informer's next watch waits at the gate
    await until(lambda: len(gated.watch_versions) == 2, "the informer watches again")
    assert gated.watch_versions == [seen_rv, seen_rv]
    await client.patch(CONFIGMAPS, "default", "a", {"data": {"v": "2"}})
    await client.delete(CONFIGMAPS, "default", "b")
    await client.create(CONFIGMAPS, "default", configmap("d"))
    await wait_compacted(int(seen_rv))
    gated.gate.set()  # the held watch now asks for a compacted revision: 410, relist

    events = await recorder.wait_for(6)
    assert sorted(events[3:]) == [("add", "d"), ("delete", "b"), ("update", "a")]
    assert informer.lists == 2
    assert sorted(name_of(o) for o in informer.list()) == ["a", "c", "d"]
    current = await client.list(CONFIGMAPS, "default")
    assert informer.resource_version == current.resource_version
    assert clock.pending == 0


async def test_failed_watch_relists_after_a_jittered_backoff(
    client: ApiClient, namespace: str, stopping: Any
) -> None:
    await client.create(CONFIGMAPS, namespace, configmap("a"))
    gated = GatedClient(client)
    clock = FakeClock()
    informer = informer_for(gated, namespace, clock=clock, backoff=Backoff(initial=2.0, cap=4.0))
    recorder = Recorder()
    recorder.attach(informer)
    stopping(informer)
    await informer.start()
    await informer.wait_synced()
    await until(lambda: len(gated.watch_versions) == 1, "the informer watches")

    gated.fail_next = StatusError(503, "ServiceUnavailable", "connection lost")
    gated.cut()
    await until(lambda: clock.pending == 1, "the informer backs off")
    due = clock.next_due()
    assert due is not None and 1.0 <= due - clock.now() <= 2.0  # 2 s, jittered down by up to half
    await client.create(CONFIGMAPS, namespace, configmap("b"))
    clock.advance(2.0)
    assert await recorder.wait_for(2) == [("add", "a"), ("add", "b")]
    assert informer.lists == 2

    # Failures in a row back off longer, up to the cap.
    gated.fail_next = StatusError(503, "ServiceUnavailable", "connection lost")
    gated.cut()
    await until(lambda: clock.pending == 1, "the informer backs off again")
    assert informer.lists == 2


async def test_http_informer_survives_a_server_restart(tmp_path: Path, stopping: Any) -> None:
    """A real dropped stream: the server goes away and comes back on the same port and data dir."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = server_options(tmp_path / "server", listen=f"127.0.0.1:{port}")
    first = RunningServer(opts)
    await first.start()
    second: RunningServer | None = None
    http = HttpClient.from_kubeconfig(first.kubeconfig_path)
    try:
        await http.create(CONFIGMAPS, "default", configmap("a"))
        await http.create(CONFIGMAPS, "default", configmap("b"))
        clock = FakeClock()
        informer = informer_for(http, clock=clock)
        recorder = Recorder()
        recorder.attach(informer)
        stopping(informer)
        await informer.start()
        await informer.wait_synced()

        await first.stop()
        await until(lambda: clock.pending == 1, "the informer backs off from the lost server")
        second = RunningServer(opts)
        await second.start()
        local = LocalClient(server_rest(second))
        await local.patch(CONFIGMAPS, "default", "a", {"data": {"v": "2"}})
        await local.delete(CONFIGMAPS, "default", "b")
        await local.create(CONFIGMAPS, "default", configmap("c"))
        while len(recorder.events) < 5:  # retry after retry until one reaches the new server
            clock.advance(30)
            await asyncio.sleep(0.05)
        events = await recorder.wait_for(5)
        assert sorted(events[2:]) == [("add", "c"), ("delete", "b"), ("update", "a")]
        await http.create(CONFIGMAPS, "default", configmap("d"))
        assert (await recorder.wait_for(6))[5] == ("add", "d")
    finally:
        await http.close()
        if second is not None:
            await second.stop()
        else:
            await first.stop()


# --- resync and lifecycle -------------------------------------------------------------------------


async def test_resync_redelivers_every_object_as_an_update(client: ApiClient, stopping: Any) -> None:
    await client.create(CONFIGMAPS, "default", configmap("a"))
    clock = FakeClock()
    informer = informer_for(client, clock=clock, resync_seconds=10)
    recorder = Recorder()
    recorder.attach(informer)
    stopping(informer)
    await informer.start()
    await informer.wait_synced()
    await until(lambda: clock.pending == 1, "the resync timer is set")
    clock.advance(10)
    assert await recorder.wait_for(2) == [("add", "a"), ("update", "a")]
    old, new = recorder.updates[-1]
    assert old is new


async def test_start_stop_and_wait_synced_errors(tmp_path: Path) -> None:
    unreachable = HttpClient("https://127.0.0.1:9", ssl_context=False)
    clock = FakeClock()
    informer = informer_for(unreachable, clock=clock)
    try:
        with pytest.raises(RuntimeError, match="start"):
            await informer.wait_synced()
        await informer.start()
        with pytest.raises(RuntimeError, match="already started"):
            await informer.start()
        await until(lambda: clock.pending == 1, "the informer backs off")
        waiter = asyncio.create_task(informer.wait_synced())
        await informer.stop()
        with pytest.raises(RuntimeError, match="stopped before its first list"):
            await waiter
        assert not informer.synced
        await informer.stop()  # twice is fine
    finally:
        await unreachable.close()


async def test_watch_stream_is_closed_when_the_informer_stops(client: ApiClient) -> None:
    informer = informer_for(client)
    await informer.start()
    await informer.wait_synced()
    await asyncio.sleep(0.05)  # let it open its watch
    await informer.stop()
    async with closing(cast(AsyncGenerator[WatchEvent, None], client.watch(CONFIGMAPS, "default"))) as events:
        await asyncio.wait_for(anext(events), 5)  # the client still works
