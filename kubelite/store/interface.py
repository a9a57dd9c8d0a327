"""The Storage contract every back end implements.

The store is a revisioned key-value log, the model etcd and kine share:

    revision 1 ── 2 ── 3 ── ... ── N          one global counter, +1 per written key
                 │
                 └─ each KeyValue carries create_revision (when the key was created)
                    and mod_revision (when this value was written) ── the API server
                    publishes mod_revision as metadata.resourceVersion

Every write is durable when its call returns. Writes are compare-and-swap on
mod_revision so the API server's optimistic concurrency (409 Conflict) maps 1:1.
Watches deliver every change with a revision greater than the one asked for, in
revision order, without gaps; asking for a revision older than the last compaction
raises :class:`CompactedError` (the API server turns it into 410 Gone).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


class StoreError(Exception):
    """Base class of every error a Storage raises."""


class KeyExistsError(StoreError):
    """create() of a key that exists."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} already exists")
        self.key = key


class KeyNotFoundError(StoreError):
    """update() or delete() of a key that does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} not found")
        self.key = key


class ConflictError(StoreError):
    """A compare-and-swap whose expected mod_revision is not the key's current one."""

    def __init__(self, key: str, current: KeyValue | None) -> None:
        super().__init__(f"key {key!r} was modified concurrently")
        self.key = key
        self.current = current


class CompactedError(StoreError):
    """A list or watch at a revision that compaction has already removed."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted (oldest available revision is {compacted + 1})"
        )
        self.requested = requested
        self.compacted = compacted


class FutureRevisionError(StoreError):
    """A list at a revision that the store has not reached yet."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"revision {requested} is newer than the store's current revision {current}")
        self.requested = requested
        self.current = current


class WatchClosedError(StoreError):
    """The watch was closed (by its owner, by the store shutting down, or because it fell too far behind)."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """One change. For PUT, ``kv`` is the new value and ``prev`` the old one (None on create).

    For DELETE, ``kv`` holds the last value before the delete with ``mod_revision`` set to the
    revision of the delete itself, and ``prev`` is that same last value with its own revision.
    """

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev: KeyValue | None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision

    @property
    def is_create(self) -> bool:
        return self.type == "PUT" and self.prev is None


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    revision: int
    """The revision the list was read at (the store's current revision when 0 was asked)."""
    more: bool
    """True when ``limit`` cut the list; continue from ``items[-1].key`` at ``revision``."""
    remaining: int = 0
    """How many keys are left after the cut (best effort, 0 when unknown)."""


# --- transactions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Update:
    key: str
    value: bytes
    expected_mod_revision: int
    """0 means unconditional (the key must still exist)."""


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    expected_mod_revision: int = 0
    """0 means unconditional (the key must still exist)."""


Op = Create | Update | Delete


class Watch(Protocol):
    async def next(self) -> list[StoreEvent]:
        """Wait for and return the next non-empty batch of events, in revision order.

        Raises WatchClosedError once the watch is closed; CompactedError if the start
        revision was compacted before its history could be read.
        """
        ...

    def close(self) -> None:
        """Stop the watch; a pending next() raises WatchClosedError. Idempotent."""
        ...


class Storage(Protocol):
    async def start(self) -> None:
        """Open or connect; after this returns every other call may be used."""
        ...

    async def close(self) -> None:
        """Flush, close every watch, release files and connections. Idempotent."""
        ...

    async def current_revision(self) -> int: ...

    async def get(self, key: str) -> KeyValue | None:
        """The key's current value, or None."""
        ...

    async def list(
        self, prefix: str, *, revision: int = 0, start_key: str = "", limit: int = 0
    ) -> ListResult:
        """Keys under ``prefix`` in key order, as of ``revision`` (0: now).

        ``start_key`` (exclusive) continues an earlier page. ``limit`` 0 means no limit.
        """
        ...

    async def commit(self, ops: Sequence[Op]) -> builtins.list[KeyValue]:
        """Apply every op atomically or none of them; durable on return.

        A key may appear at most once in ``ops`` (ValueError otherwise). Every revision
        written by a commit is greater than every revision of the commits acknowledged
        before it; the keys of one multi-op commit get consecutive revisions (sqlite) or
        share one (etcd), so callers must not assume either.

        Returns one KeyValue per op: the new value for Create/Update, the deleted value for
        Delete (with mod_revision = the delete's revision). Raises KeyExistsError,
        KeyNotFoundError or ConflictError for the first op whose condition fails.
        """
        ...

    async def create(self, key: str, value: bytes) -> KeyValue: ...

    async def update(self, key: str, value: bytes, expected_mod_revision: int) -> KeyValue: ...

    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue: ...

    async def watch(self, prefix: str, after_revision: int = 0) -> Watch:
        """Events for keys under ``prefix`` with revision > ``after_revision`` (0: from now).

        Raises CompactedError at once when ``after_revision`` is older than the last compaction.
        """
        ...

    async def compact(self, revision: int) -> None:
        """Forget history at and below ``revision`` (current values always remain)."""
        ...

    async def compacted_revision(self) -> int: ...
