"""The pod sandbox: the network namespace and the "pause" process that holds the pod's other namespaces.

Kubernetes starts a pause container first; every other container of the pod joins its namespaces.
kubelite does the same with processes:

    ip netns add <pod netns>                 network namespace (CNI plumbs eth0 into it)
    nsenter --net=/run/netns/<pod netns> \\
      unshare --uts --mount --propagation private -- sh -c '<set hostname; bind-mount the
              per-pod /etc/hosts, /etc/resolv.conf, /etc/hostname>; exec sleep infinity'

The pause process owns a UTS namespace (the pod's hostname) and a private mount namespace where the
pod's own ``/etc/hosts`` and ``/etc/resolv.conf`` (written by the kubelet) cover the host's. Each
container is started with ``nsenter -t <pause pid> --net --uts --mount``, so the containers of a pod
share localhost, hostname and those files. A ``hostNetwork`` pod gets no network namespace: its pause
process stays in the node's, with the node's name as hostname.

State (netns name, pause PID) is written to ``<pod dir>/sandbox.json`` so an agent that restarts can
find and remove what an earlier run left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

from kubelite.host.ip import IpRunner
from kubelite.host.netns import netns_path
from kubelite.host.procs import alive, kill_tree

__all__ = ["Sandbox", "SandboxError", "kill_process_tree", "start_pause", "stop_pause"]

log = logging.getLogger(__name__)

_PAUSE_SCRIPT = r"""
set -e
if [ -n "$1" ]; then printf '%s' "$1" > /proc/sys/kernel/hostname; fi
mount --bind "$2" /etc/hosts
mount --bind "$3" /etc/resolv.conf
mount --bind "$4" /etc/hostname
echo ready
exec sleep infinity
"""


class SandboxError(RuntimeError):
    """The sandbox could not be created; the message says which step failed."""


@dataclass(slots=True)
class Sandbox:
    uid: str
    namespace: str
    name: str
    directory: str
    netns: str | None
    """Name under /run/netns, or None for hostNetwork pods."""
    pause_pid: int = 0
    pod_ip: str = ""
    container_id: str = ""
    """The CNI container id (the "sandbox id")."""

    @property
    def netns_path(self) -> str | None:
        return netns_path(self.netns) if self.netns else None

    def save(self) -> None:
        path = Path(self.directory) / "sandbox.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)

    @classmethod
    def load(cls, directory: Path) -> Sandbox | None:
        try:
            data = json.loads((directory / "sandbox.json").read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


async def start_pause(
    sandbox: Sandbox, *, hostname: str, hosts: str, resolv: str
) -> asyncio.subprocess.Process:
    """Write the pod's files and start the pause process; return it once the mounts are in place."""
    directory = Path(sandbox.directory)
    files = {"hosts": hosts, "resolv.conf": resolv, "hostname": (hostname or "") + "\n"}
    for fname, text in files.items():
        (directory / fname).write_text(text)
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    # Its own UTS namespace even for a hostNetwork pod: the "node" shares this machine's kernel, and
    # the pod must see the node's name as its hostname (``hostname`` is the node name then).
    inner = [unshare, "--uts", "--mount", "--propagation", "private"]
    argv = [*inner, "--", "/bin/sh", "-c", _PAUSE_SCRIPT, "pause", hostname]
    argv += [str(directory / "hosts"), str(directory / "resolv.conf"), str(directory / "hostname")]
    if sandbox.netns is not None:
        nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        argv = [nsenter, f"--net={sandbox.netns_path}", "--", *argv]
    read_fd, write_fd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            start_new_session=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
    finally:
        os.close(write_fd)
    try:
        output = await asyncio.to_thread(_read_until_ready, read_fd, 10.0)
    finally:
        os.close(read_fd)  # sleep never writes; nothing of the pause process stays open here
    if not output.endswith("ready"):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise SandboxError(f"the pod's pause process did not start: {output.strip() or 'no output'}")
    return proc


def _read_until_ready(fd: int, timeout: float) -> str:
    import select
    import time

    deadline = time.monotonic() + timeout
    data = b""
    while not data.rstrip().endswith(b"ready"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def kill_process_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal ``pid`` and all its descendants (which this agent started through it)."""
    kill_tree(pid, sig)


async def stop_pause(pid: int) -> None:
    if pid <= 0 or not alive(pid):
        return
    kill_tree(pid)
    for _ in range(100):  # the agent is the parent: alive() reaps it, or another reaper did
        if not alive(pid):
            return
        await asyncio.sleep(0.02)


async def delete_netns(ip: IpRunner, name: str) -> None:
    with contextlib.suppress(Exception):
        await ip.delete_netns(name)
