"""The API client every kubelite component uses to reach cluster state.

    interface.py   ApiClient (the Protocol), WatchEvent, ListResult: the contract
    http.py        HttpClient: the contract over HTTPS, from a kubeconfig
    local.py       LocalClient: the contract in the server process, over its REST layer
    informer.py    Informer: list + watch into a cache with add/update/delete callbacks and indexes
    workqueue.py   WorkQueue, run_workers: client-go's rate-limited queue of keys; Clock / FakeClock

A controller: Informer(client, rt).add_handler(... queue.add(key) ...), then
run_workers(queue, sync, n) where sync(key) reads the informer and writes through the client.

``LocalClient`` is imported on first use, so components outside the server process do not load
the API server's modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubelite.client.http import HttpClient
from kubelite.client.informer import Backoff, Informer
from kubelite.client.interface import ApiClient, ListResult, PatchType, WatchEvent
from kubelite.client.workqueue import Clock, FakeClock, LoopClock, ShutDown, WorkQueue, run_workers

if TYPE_CHECKING:
    from kubelite.client.local import LocalClient

__all__ = [
    "ApiClient",
    "Backoff",
    "Clock",
    "FakeClock",
    "HttpClient",
    "Informer",
    "ListResult",
    "LocalClient",
    "LoopClock",
    "PatchType",
    "ShutDown",
    "WatchEvent",
    "WorkQueue",
    "run_workers",
]


def __getattr__(name: str) -> Any:
    if name == "LocalClient":
        from kubelite.client.local import LocalClient

        return LocalClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
