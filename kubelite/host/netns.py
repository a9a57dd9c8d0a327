"""Entering network namespaces from Python: sockets made inside another namespace, and the path of one.

A socket belongs to the network namespace of the thread that created it, for its whole life. So a
process can listen or connect in a namespace it does not run in: a short-lived thread calls
``setns(2)`` on the namespace, creates the socket and ends; the socket keeps working in the caller's
event loop. That is how the agent opens a port-forward connection inside a pod's namespace (so a
server bound to the pod's ``127.0.0.1`` is reachable, as with the kubelet) and how ``kubelite up``
keeps a listener on the host's loopback while everything else runs in the node network's namespace.

``setns`` on the main thread (:func:`enter_netns`) moves the whole process: use it only at start-up,
before any other thread exists. Python 3.11 has no ``os.setns``, so libc is called through ctypes.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import socket
import threading
from pathlib import Path

__all__ = [
    "CLONE_NEWNET",
    "NETNS_RUN_DIR",
    "enter_netns",
    "netns_path",
    "socket_in_netns",
]

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/run/netns")


def netns_path(name_or_path: str) -> str:
    """``/run/netns/NAME`` for a name made by ``ip netns add``; a path (``/proc/PID/ns/net``) is kept."""
    if "/" in name_or_path:
        return name_or_path
    return str(NETNS_RUN_DIR / name_or_path)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter_netns(name_or_path: str) -> None:
    """Move the calling thread (at start-up: the whole process) into a network namespace."""
    fd = os.open(netns_path(name_or_path), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def _make_socket(path: str, family: int, kind: int) -> socket.socket:
    result: list[socket.socket] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            enter_netns(path)  # this thread only; it ends right after
            result.append(socket.socket(family, kind))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, name="netns-socket", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


async def socket_in_netns(
    name_or_path: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    """A new non-blocking socket that lives in the given network namespace.

    Raises ``FileNotFoundError`` when the namespace does not exist and ``OSError`` when ``setns``
    is refused (not root).
    """
    path = netns_path(name_or_path)
    sock = await asyncio.to_thread(_make_socket, path, family, kind)
    sock.setblocking(False)
    return sock
