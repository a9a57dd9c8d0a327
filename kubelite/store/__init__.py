"""Cluster state: a revisioned key-value log behind one protocol.

    interface.py   Storage / Watch protocols, KeyValue, StoreEvent, ListResult, ops, errors (the contract)
    base.py        StorageBase (create/update/delete via commit), QueueWatch, WatchHub, AutoCompactor
    sqlite.py      SqliteStorage: the embedded default, a kine-style log with group commit
    etcd.py        EtcdStorage: a real etcd through its JSON gateway
    factory.py     open_storage(spec, data_dir): the only place that picks a back end

Design notes: README.md in this directory.
"""

from kubelite.store.base import AutoCompactor
from kubelite.store.etcd import EtcdStorage
from kubelite.store.factory import open_storage
from kubelite.store.interface import (
    CompactedError,
    ConflictError,
    Create,
    Delete,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    Op,
    Storage,
    StoreError,
    StoreEvent,
    Update,
    Watch,
    WatchClosedError,
)
from kubelite.store.sqlite import SqliteStorage

__all__ = [
    "AutoCompactor",
    "CompactedError",
    "ConflictError",
    "Create",
    "Delete",
    "EtcdStorage",
    "FutureRevisionError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "ListResult",
    "Op",
    "SqliteStorage",
    "Storage",
    "StoreError",
    "StoreEvent",
    "Update",
    "Watch",
    "WatchClosedError",
    "open_storage",
]
