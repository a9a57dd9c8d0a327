"""A command as an ``ExecSession``: a local process with pipes, or on a pseudo-terminal.

    spawn_session(argv, tty=False)   stdin/stdout/stderr are pipes (stdin /dev/null unless asked for)
    spawn_session(argv, tty=True)    one PTY: the child starts a session (setsid) and makes the PTY its
                                     controlling terminal (TIOCSCTTY), so job control, ``tty`` and
                                     SIGWINCH work; ``resize`` sets the size (TIOCSWINSZ) and the kernel
                                     signals the foreground process group

The agent passes an ``nsenter ...`` argv to run inside a pod. The child always leads its own process
group, so ``kill`` ends it and whatever it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import struct
import termios
from collections.abc import Mapping, Sequence

from kubelite.agent.streams.interface import INITIAL_TERMINAL_SIZE, ExecSession, StdinWriter

__all__ = ["spawn_session"]

DEFAULT_SIZE = (80, 24)


def _set_size(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def _take_terminal() -> None:  # runs in the child between fork and exec, after setsid
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class _PipeSession:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.stdin: StdinWriter | None = proc.stdin
        assert proc.stdout is not None and proc.stderr is not None
        self.stdout: asyncio.StreamReader = proc.stdout
        self.stderr: asyncio.StreamReader | None = proc.stderr

    def resize(self, width: int, height: int) -> None:
        """Pipes have no window size."""

    async def wait(self) -> int:
        return _exit_code(await self._proc.wait())

    async def kill(self) -> None:
        await _kill_group(self._proc)


class _PtyReaderProtocol(asyncio.StreamReaderProtocol):
    """Reading a PTY master fails with EIO once the last slave fd closes: that is its EOF."""

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            exc = None
        super().connection_lost(exc)


class _PtySession:
    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        control: int,
        stdin: StdinWriter | None,
        stdout: asyncio.StreamReader,
    ) -> None:
        self._proc = proc
        self._control: int | None = control
        """Our own fd of the PTY master for TIOCSWINSZ (the pipe transports close theirs)."""
        self.stdin = stdin
        self.stdout = stdout
        self.stderr: asyncio.StreamReader | None = None

    def resize(self, width: int, height: int) -> None:
        if self._control is not None:
            with contextlib.suppress(OSError):
                _set_size(self._control, width, height)

    def _release(self) -> None:
        if self._control is not None:
            os.close(self._control)
            self._control = None

    async def wait(self) -> int:
        code = _exit_code(await self._proc.wait())
        self._release()
        return code

    async def kill(self) -> None:
        await _kill_group(self._proc)
        self._release()


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


async def spawn_session(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    tty: bool,
    stdin: bool,
    size: tuple[int, int] | None = None,
) -> ExecSession:
    """Start ``argv``; ``size`` (width, height) is the PTY's first size; when not given, the size the
    client announced (``INITIAL_TERMINAL_SIZE``), else 80x24.

    Raises StreamError-free OSError (e.g. FileNotFoundError) when the program cannot start: the
    caller turns it into the message the user sees.
    """
    if not argv:
        raise ValueError("spawn_session needs a command")
    environ = dict(env) if env is not None else None
    if not tty:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environ,
            cwd=cwd,
            start_new_session=True,
        )
        return _PipeSession(proc)
    if size is None and (announced := INITIAL_TERMINAL_SIZE.get()) is not None:
        size = (announced.width, announced.height)
    master, slave = os.openpty()
    try:
        _set_size(slave, *(size or DEFAULT_SIZE))
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environ,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)  # only the child holds the slave now: its exit makes the master read EOF
    loop = asyncio.get_running_loop()
    stdout = asyncio.StreamReader(limit=2**16, loop=loop)
    # Separate fds for the two pipe transports and for resizing, so each owner closes its own.
    read_fd, write_fd, control_fd = master, os.dup(master), os.dup(master)
    await loop.connect_read_pipe(lambda: _PtyReaderProtocol(stdout, loop=loop), os.fdopen(read_fd, "rb", 0))
    writer: StdinWriter | None = None
    if stdin:
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.streams.FlowControlMixin(loop=loop), os.fdopen(write_fd, "wb", 0)
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
    else:
        os.close(write_fd)
    return _PtySession(proc, control_fd, writer, stdout)
