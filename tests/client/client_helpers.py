"""Helpers the client tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from kubelite.api.errors import StatusError
from kubelite.api.resources import INDEX, ResourceType
from kubelite.apiserver.rest import Rest
from kubelite.apiserver.server import RunningServer, ServerOptions
from kubelite.client.interface import WatchEvent

BOOKMARK_INTERVAL = 0.25
PAGE_SIZE = 3  # small, so every list with a few objects follows continue tokens
WaitCompacted = Callable[[int], Awaitable[None]]


def resource(api_version: str, kind: str) -> ResourceType:
    rt = INDEX.for_kind(api_version, kind)
    assert rt is not None
    return rt


CONFIGMAPS = resource("v1", "ConfigMap")
NAMESPACES = resource("v1", "Namespace")


def configmap(name: str, data: dict[str, str] | None = None, **labels: str) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data or {}}


async def raises(code: int, reason: str, call: Awaitable[Any]) -> StatusError:
    with pytest.raises(StatusError) as info:
        await call
    assert (info.value.code, info.value.reason) == (code, reason), info.value
    return info.value


def closing(stream: AsyncIterator[WatchEvent]) -> aclosing[AsyncGenerator[WatchEvent, None]]:
    """``async with closing(client.watch(...)) as events``: the stream is closed on the way out.

    (Both clients return async generators; the Protocol only promises an AsyncIterator.)
    """
    assert isinstance(stream, AsyncGenerator)
    return aclosing(stream)


async def next_change(events: AsyncIterator[WatchEvent]) -> WatchEvent:
    """The next non-BOOKMARK event within 5 s (the test servers send bookmarks every 0.25 s)."""
    while True:
        event = await asyncio.wait_for(anext(events), 5.0)
        if event.type != "BOOKMARK":
            return event


def server_rest(server: RunningServer) -> Rest:
    assert server.rest is not None, "start the server first"
    return server.rest


def server_options(
    data_dir: Path, listen: str = "127.0.0.1:0", compaction_interval: float = 300.0
) -> ServerOptions:
    """A test server: frequent bookmarks, and no controllers (they would write objects of their own)."""
    return ServerOptions(
        data_dir=data_dir,
        listen=listen,
        bookmark_interval=BOOKMARK_INTERVAL,
        compaction_interval=compaction_interval,
        controllers=(),
    )
