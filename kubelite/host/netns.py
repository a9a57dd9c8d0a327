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
import contextlib
import ctypes
import ctypes.util
import errno
import os
import socket
import threading
from pathlib import Path

__all__ = [
    "CLONE_NEWNET",
    "NETNS_RUN_DIR",
    "add_named_netns",
    "delete_named_netns",
    "enter_netns",
    "in_process_netns_ready",
    "netns_path",
    "socket_in_netns",
]

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/run/netns")


def in_netns(netns: str | None) -> str:
    """`` in network namespace NAME`` for messages about ``netns`` ("" for this process's own)."""
    return f" in network namespace {netns}" if netns else ""


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


def _make_socket(path: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    result: list[socket.socket] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            enter_netns(path)  # this thread only; it ends right after
            result.append(socket.socket(family, kind, proto))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, name="netns-socket", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


async def socket_in_netns(
    name_or_path: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
) -> socket.socket:
    """A new non-blocking socket that lives in the given network namespace.

    Raises ``FileNotFoundError`` when the namespace does not exist and ``OSError`` when ``setns``
    is refused (not root).
    """
    path = netns_path(name_or_path)
    sock = await asyncio.to_thread(_make_socket, path, family, kind, proto)
    sock.setblocking(False)
    return sock


# --- named namespaces without a process per call ---------------------------------------------------

_MS_BIND = 4096
_MNT_DETACH = 2


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _add_named(name: str) -> None:
    path = NETNS_RUN_DIR / name
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)
    errors: list[BaseException] = []

    def work() -> None:
        # unshare(CLONE_NEWNET) moves only this thread; the bind mount keeps the namespace alive
        # after the thread ends, exactly what `ip netns add` does in its own process.
        try:
            libc = _libc()
            _check(libc.unshare(CLONE_NEWNET), "unshare")
            _check(libc.mount(b"/proc/thread-self/ns/net", str(path).encode(), None, _MS_BIND, None), "mount")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, name="netns-add", daemon=True)
    thread.start()
    thread.join()
    if errors:
        with contextlib.suppress(OSError):
            path.unlink()
        raise errors[0]


def _delete_named(name: str) -> None:
    path = NETNS_RUN_DIR / name
    libc = _libc()
    if libc.umount2(str(path).encode(), _MNT_DETACH) != 0 and ctypes.get_errno() not in (
        errno.EINVAL,
        errno.ENOENT,
    ):
        _check(-1, "umount")
    path.unlink()


def in_process_netns_ready() -> bool:
    """True when ``/run/netns`` is the shared mount point ``ip netns add`` sets up on first use.

    (It is a bind mount of itself, so ``os.path.ismount`` cannot tell; mountinfo can.)
    """
    targets = {str(NETNS_RUN_DIR), "/var" + str(NETNS_RUN_DIR)}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if (
                    len(fields) > 6
                    and fields[4] in targets
                    and any(o.startswith("shared:") for o in fields[6:])
                ):
                    return True
    except OSError:
        pass
    return False


async def add_named_netns(name: str) -> None:
    """``ip netns add NAME`` without starting ``ip`` (needs :func:`in_process_netns_ready`)."""
    await asyncio.to_thread(_add_named, name)


async def delete_named_netns(name: str) -> None:
    """``ip netns del NAME`` without starting ``ip``."""
    await asyncio.to_thread(_delete_named, name)
