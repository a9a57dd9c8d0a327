"""open_storage(): the one place that turns a ``--storage`` spec into a Storage back end."""

from __future__ import annotations

from pathlib import Path

from kubelite.store.etcd import EtcdStorage
from kubelite.store.interface import Storage
from kubelite.store.sqlite import SqliteStorage

SQLITE_FILE_NAME = "state.db"

_EXAMPLES = 'use "sqlite" or "etcd://HOST:PORT[,HOST:PORT...]", for example "etcd://127.0.0.1:2379"'


def open_storage(spec: str, data_dir: Path) -> Storage:
    """The back end named by ``spec``, not started yet (the caller awaits ``start()``).

    ``sqlite``                         one file, ``data_dir / "state.db"``
    ``etcd://host:port[,host:port]``   an etcd cluster over plain HTTP, keys under ``/kubelite``

    Raises ValueError with a sentence saying what is wrong with ``spec``.
    """
    spec = spec.strip()
    if spec == "sqlite":
        return SqliteStorage(data_dir / SQLITE_FILE_NAME)
    scheme, separator, rest = spec.partition("://")
    if not separator:
        raise ValueError(f"storage {spec!r} is not understood; {_EXAMPLES}")
    if scheme != "etcd":
        raise ValueError(f"storage scheme {scheme!r} is not supported; {_EXAMPLES}")
    if not rest:
        raise ValueError(f"storage {spec!r} names no etcd endpoint; {_EXAMPLES}")
    return EtcdStorage([_endpoint_url(spec, endpoint) for endpoint in rest.split(",")])


def _endpoint_url(spec: str, endpoint: str) -> str:
    host, colon, port = endpoint.strip().rpartition(":")
    if not colon or not host or host == "[]":
        raise ValueError(f"etcd endpoint {endpoint!r} in {spec!r} is not HOST:PORT; {_EXAMPLES}")
    if "/" in host or "/" in port:
        raise ValueError(f"etcd endpoint {endpoint!r} in {spec!r} must be HOST:PORT, without a path")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"etcd endpoint {endpoint!r} in {spec!r} has no valid port (1-65535)")
    if ":" in host and not host.startswith("["):
        raise ValueError(
            f"etcd endpoint {endpoint!r} in {spec!r}: write an IPv6 address in brackets, [::1]:2379"
        )
    return f"http://{host}:{int(port)}"
