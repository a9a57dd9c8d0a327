"""Containers as processes: start one inside its pod's namespaces, capture its output, stop it gracefully.

A container is ``nsenter -t <pause pid> --net --uts --mount --wd=<workingDir> -- <argv>``: the
process joins the namespaces the pause process holds (see ``sandbox.py``) and runs from the host's
filesystem. Its stdout and stderr are read by the agent and written to
``<pod dir>/<container>/<restart>.log`` in the CRI log format the kubelet reads
(``<RFC3339Nano> stdout|stderr F|P <text>``), so ``kubectl logs`` (and ``--previous``,
``--timestamps``) work as with containerd.

Stopping follows the kubelet: SIGTERM to the container's process group, then SIGKILL after the grace
period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "ContainerProcess",
    "StartError",
    "enter_argv",
    "find_executable",
    "read_log",
    "start_container",
]

_MAX_LINE = 16 * 1024


class StartError(Exception):
    """The container could not start (as containerd's StartError): exit code 128 and this message."""


def rfc3339_nano() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond * 1000:09d}Z"


def enter_argv(pause_pid: int, argv: Sequence[str], *, working_dir: str = "/") -> list[str]:
    """The command line that runs ``argv`` inside the pod whose pause process is ``pause_pid``."""
    nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
    return [nsenter, "-t", str(pause_pid), "--net", "--uts", "--mount", f"--wd={working_dir}", "--", *argv]


def find_executable(name: str, path_env: str) -> str | None:
    if "/" in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name, path=path_env)


@dataclass(slots=True)
class ContainerProcess:
    name: str
    restart: int
    log_path: Path
    proc: asyncio.subprocess.Process
    started_at: str
    pump: asyncio.Task[None] | None = None
    finished_at: str = ""
    exit_code: int | None = None
    stopping: bool = False
    killed_by_agent: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait(self) -> int:
        code = await self.proc.wait()
        if self.pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.pump), 2)
        if self.exit_code is None:
            # A negative code is "killed by signal N": the container runtime reports 128 + N.
            self.exit_code = 128 - code if code < 0 else code
            self.finished_at = rfc3339_nano()
        return self.exit_code

    async def stop(self, grace: float) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; returns when the process is gone."""
        if self.proc.returncode is not None:
            await self.wait()
            return
        self.stopping = True
        self._signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        try:
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), max(grace, 0.0) or 0.001)
        except TimeoutError:
            self.killed_by_agent = True
            self._signal(signal.SIGKILL)
        await self.wait()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.proc.pid, sig)


async def _pump(reader: asyncio.StreamReader, stream: str, out: asyncio.Queue[bytes | None]) -> None:
    while True:
        try:
            line = await reader.readuntil(b"\n")
            partial = False
        except asyncio.IncompleteReadError as exc:
            line, partial = exc.partial, True
            if not line:
                break
        except asyncio.LimitOverrunError as exc:
            line, partial = await reader.readexactly(exc.consumed), True
        text = line.rstrip(b"\n")
        tag = b"P" if partial else b"F"
        await out.put(rfc3339_nano().encode() + b" " + stream.encode() + b" " + tag + b" " + text + b"\n")
    await out.put(None)


async def _write_log(path: Path, readers: Sequence[tuple[asyncio.StreamReader, str]]) -> None:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    tasks = [asyncio.create_task(_pump(r, name, queue)) for r, name in readers]
    remaining = len(tasks)
    with _open_append(path) as f:
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
                continue
            f.write(item)
    await asyncio.gather(*tasks, return_exceptions=True)


def _open_append(path: Path) -> Any:
    return open(path, "ab", buffering=0)  # small appends; the event loop may do them


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


async def start_container(
    *,
    name: str,
    restart: int,
    pause_pid: int,
    argv: Sequence[str],
    env: Mapping[str, str],
    working_dir: str,
    log_dir: Path,
    stdin_open: bool = False,
) -> ContainerProcess:
    """Start one container process; StartError when the executable is missing (nothing started)."""
    if not argv:
        raise StartError("no command specified: the container has no command and its image no entrypoint")
    if find_executable(argv[0], env.get("PATH", os.defpath)) is None:
        raise StartError(
            f"failed to create containerd task: failed to create shim task: OCI runtime create failed: "
            f'runc create failed: unable to start container process: exec: "{argv[0]}": '
            f"executable file not found in $PATH: unknown"
        )
    os.makedirs(log_dir, exist_ok=True)
    log_path = log_dir / f"{restart}.log"
    proc = await asyncio.create_subprocess_exec(
        *enter_argv(pause_pid, argv, working_dir=working_dir or "/"),
        stdin=asyncio.subprocess.PIPE if stdin_open else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
        limit=_MAX_LINE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    cp = ContainerProcess(name, restart, log_path, proc, rfc3339_nano())
    cp.pump = asyncio.create_task(_write_log(log_path, [(proc.stdout, "stdout"), (proc.stderr, "stderr")]))
    return cp


def _parse_line(raw: bytes) -> tuple[str, bytes, bool] | None:
    """(timestamp, text, complete) from one CRI log line."""
    parts = raw.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    text = parts[3] if len(parts) == 4 else b""
    return parts[0].decode(), text, parts[2] == b"F"


def _message_lines(data: bytes, *, timestamps: bool, since: str | None = None) -> list[bytes]:
    out: list[bytes] = []
    pending, first_ts = b"", ""
    for raw in data.splitlines():
        parsed = _parse_line(raw)
        if parsed is None:
            continue
        ts, text, complete = parsed
        if not pending:
            first_ts = ts
            if timestamps:
                pending = ts.encode() + b" "
        pending += text
        if complete:
            if since is None or first_ts >= since:
                out.append(pending + b"\n")
            pending = b""
    if pending and (since is None or first_ts >= since):
        out.append(pending)
    return out


async def read_log(
    path: Path,
    *,
    follow: bool,
    tail_lines: int | None,
    timestamps: bool,
    limit_bytes: int | None,
    since: str | None = None,
    alive: asyncio.Event | None = None,
) -> AsyncIterator[bytes]:
    """The container's output as the user wrote it; with ``follow``, new lines until ``alive`` is cleared."""
    sent = 0
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        data = b""
    complete_len = data.rfind(b"\n") + 1
    head, offset = data[:complete_len], complete_len
    lines = _message_lines(head, timestamps=timestamps, since=since)
    if tail_lines is not None:
        lines = lines[-tail_lines:] if tail_lines > 0 else []
    for line in lines:
        if limit_bytes is not None and sent + len(line) > limit_bytes:
            yield line[: limit_bytes - sent]
            return
        sent += len(line)
        yield line
    if not follow:
        return
    while True:
        more = await asyncio.to_thread(_read_from, path, offset)
        complete_len = more.rfind(b"\n") + 1
        if complete_len:
            for line in _message_lines(more[:complete_len], timestamps=timestamps):
                if limit_bytes is not None and sent + len(line) > limit_bytes:
                    yield line[: limit_bytes - sent]
                    return
                sent += len(line)
                yield line
            offset += complete_len
        elif alive is not None and not alive.is_set():
            return
        await asyncio.sleep(0.1)
