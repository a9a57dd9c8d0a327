"""open_storage(): spec parsing and the sentences it answers bad specs with."""

from __future__ import annotations

from pathlib import Path

import pytest

import kubelite.store
from kubelite.store import EtcdStorage, SqliteStorage, open_storage


def test_sqlite_lives_in_the_data_dir(tmp_path: Path) -> None:
    store = open_storage("sqlite", tmp_path)
    assert isinstance(store, SqliteStorage)
    assert repr(store) == f"SqliteStorage({str(tmp_path / 'state.db')!r})"


@pytest.mark.parametrize(
    ("spec", "endpoints"),
    [
        ("etcd://127.0.0.1:2379", ["http://127.0.0.1:2379"]),
        ("etcd://a:1,b:2, c:3", ["http://a:1", "http://b:2", "http://c:3"]),
        ("etcd://[::1]:2379", ["http://[::1]:2379"]),
    ],
)
def test_etcd_endpoints(spec: str, endpoints: list[str], tmp_path: Path) -> None:
    store = open_storage(spec, tmp_path)
    assert isinstance(store, EtcdStorage)
    assert repr(store) == f"EtcdStorage({endpoints!r}, prefix='/kubelite')"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "is not understood"),
        ("postgres", "is not understood"),
        ("mysql://db:3306", "scheme 'mysql' is not supported"),
        ("etcd://", "names no etcd endpoint"),
        ("etcd://localhost", "is not HOST:PORT"),
        ("etcd://:2379", "is not HOST:PORT"),
        ("etcd://a:1,", "is not HOST:PORT"),
        ("etcd://a:http", "no valid port"),
        ("etcd://a:70000", "no valid port"),
        ("etcd://a:2379/prefix", "without a path"),
        ("etcd://::1:2379", "IPv6 address in brackets"),
    ],
)
def test_bad_specs_are_explained(spec: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        open_storage(spec, tmp_path)
    assert "etcd://" in str(caught.value) or "HOST:PORT" in str(caught.value) or "port" in str(caught.value)


def test_exported_members() -> None:
    """The package's public surface is exactly __all__ (keeps the layout comment honest)."""
    public = {name for name in dir(kubelite.store) if not name.startswith("_")}
    modules = {"base", "etcd", "factory", "interface", "sqlite"}
    assert public - modules == set(kubelite.store.__all__)
