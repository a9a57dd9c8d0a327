"""Watch: store events turned into Kubernetes watch events for one resource (and selectors).

    store watch (prefix, after rev) ──► pump task ──► queue ──► events() ──► HTTP chunks
                                                         ▲
                                       bookmark / timeout ticks

An object that stops matching the selectors is reported DELETED, one that starts matching
ADDED, as kube-apiserver's watch cache does. A start revision older than the last compaction
ends the stream with an ERROR event carrying a 410 Expired Status.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from kubelite.api import errors
from kubelite.api.resources import ResourceType
from kubelite.apiserver.objects import ObjectStore, decode
from kubelite.store.interface import CompactedError, StoreEvent, WatchClosedError

Obj = dict[str, Any]
Event = dict[str, Any]
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(frozen=True, slots=True)
class WatchRequest:
    resource_version: str = ""
    keep: Callable[[Obj], bool] | None = None
    bookmarks: bool = False
    send_initial_events: bool | None = None
    timeout: float | None = None
    bookmark_interval: float = 60.0


def _matches(keep: Callable[[Obj], bool] | None, obj: Obj) -> bool:
    return keep is None or keep(obj)


def translate(ev: StoreEvent, keep: Callable[[Obj], bool] | None) -> Event | None:
    """One store event as a watch event for a client with these selectors, or None."""
    obj = decode(ev.kv)
    if ev.type == "DELETE":
        return {"type": "DELETED", "object": obj} if _matches(keep, obj) else None
    now_match = _matches(keep, obj)
    if ev.prev is None:
        return {"type": "ADDED", "object": obj} if now_match else None
    was_match = keep is None or keep(decode(ev.prev))
    if now_match and was_match:
        return {"type": "MODIFIED", "object": obj}
    if now_match:
        return {"type": "ADDED", "object": obj}
    if was_match:
        return {"type": "DELETED", "object": obj}
    return None


def bookmark(rt: ResourceType, revision: int, *, initial_end: bool = False) -> Event:
    md: Obj = {"resourceVersion": str(revision)}
    if initial_end:
        md["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": md}}


def parse_resource_version(text: str) -> int:
    try:
        rv = int(text)
    except ValueError:
        raise errors.bad_request(f'resourceVersion: Invalid value: "{text}": must be a number') from None
    if rv < 0:
        raise errors.bad_request(f'resourceVersion: Invalid value: "{text}": must be >= 0')
    return rv


async def events(
    objects: ObjectStore, rt: ResourceType, namespace: str, req: WatchRequest
) -> AsyncGenerator[Event, None]:
    """The watch events for one request, until the timeout or the client goes away."""
    rv_text = req.resource_version
    initial = req.send_initial_events if req.send_initial_events is not None else rv_text in ("", "0")
    start_rev = 0
    if initial:
        page = await objects.list_page(rt, namespace or None, keep=req.keep)
        for obj in page.items:
            yield {"type": "ADDED", "object": obj}
        start_rev = page.revision
        if req.send_initial_events and req.bookmarks:
            yield bookmark(rt, start_rev, initial_end=True)
    else:
        start_rev = parse_resource_version(rv_text)
    try:
        watch = await objects.storage.watch(rt.prefix(namespace or None), start_rev)
    except CompactedError as e:
        yield {
            "type": "ERROR",
            "object": errors.gone(f"too old resource version: {start_rev} ({e.compacted})").to_status(),
        }
        return
    queue: asyncio.Queue[list[StoreEvent] | BaseException] = asyncio.Queue()

    async def pump() -> None:
        try:
            while True:
                queue.put_nowait(await watch.next())
        except (WatchClosedError, CompactedError) as e:
            queue.put_nowait(e)

    pump_task = asyncio.create_task(pump())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + req.timeout if req.timeout else None
    last_rev = start_rev
    try:
        while True:
            wait = req.bookmark_interval if req.bookmarks else None
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    return
                wait = left if wait is None else min(wait, left)
            try:
                item = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                if req.bookmarks and (deadline is None or loop.time() < deadline):
                    yield bookmark(rt, last_rev)
                continue
            if isinstance(item, CompactedError):
                yield {
                    "type": "ERROR",
                    "object": errors.gone(
                        f"too old resource version: {start_rev} ({item.compacted})"
                    ).to_status(),
                }
                return
            if isinstance(item, BaseException):
                return
            for ev in item:
                last_rev = ev.revision
                out = translate(ev, req.keep)
                if out is not None:
                    yield out
    finally:
        watch.close()
        pump_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump_task
