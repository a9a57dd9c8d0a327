"""What the kubelet's streaming server needs from the node's runtime, and the small types around it.

    StreamBackend      the agent's runtime implements it: exec / attach / port_forward / logs
      └─ ExecSession   one running command: stdin, stdout, stderr, resize, wait, kill
    StreamError        an error the user sees: its HTTP code, Kubernetes reason and message become a
                       metav1.Status (an HTTP error before an upgrade, the error stream after one)
    ByteConn           a bidirectional byte pipe (an upgraded HTTP connection, a WebSocket that tunnels
                       SPDY, a TCP connection) that the SPDY session runs over

Contract for back ends:
- ``exec``/``attach`` return once the command runs; its output is read until EOF after ``wait``.
  With ``tty`` there is one output stream (``stderr`` is None) and ``resize`` sets the window size.
- ``port_forward`` returns a connection to ``port`` as seen from inside the pod's network namespace.
- ``logs`` may raise StreamError when called or on the first iteration; with ``opts.follow`` it keeps
  yielding until the container stops (the server closes it when the client goes away).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from kubelite.api.errors import StatusError

__all__ = [
    "INITIAL_TERMINAL_SIZE",
    "ByteConn",
    "ExecSession",
    "LogOptions",
    "StdinWriter",
    "StreamBackend",
    "StreamError",
    "TerminalSize",
]


class StreamError(Exception):
    """An error for the user: ``status`` (HTTP code), ``reason`` (Kubernetes reason) and ``message``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def to_status(self) -> dict[str, Any]:
        """The metav1.Status body of this error (the API server's, without details)."""
        return StatusError(self.status, self.reason, self.message).to_status()


@dataclass(frozen=True, slots=True)
class TerminalSize:
    width: int
    height: int


INITIAL_TERMINAL_SIZE: ContextVar[TerminalSize | None] = ContextVar("initial_terminal_size", default=None)
"""The client's first window size while ``StreamBackend.exec``/``attach`` runs for a TTY session.

A command must start with the right size (``stty size`` may run before any resize could reach it),
and the back-end methods take no size: ``spawn_session`` reads this when it is not given ``size``.
Being a context variable, it is private to the task serving that one session.
"""


@dataclass(frozen=True, slots=True)
class LogOptions:
    """The kubelet's ``containerLogs`` query: what PodLogOptions the API server passed on."""

    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: str | None = None
    """RFC 3339, as sent (``sinceTime``); None when not given."""
    limit_bytes: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> LogOptions:
        """Parse the query parameters; StreamError(400) for a malformed number."""

        def flag(name: str) -> bool:
            return query.get(name, "").lower() in ("true", "1")

        def number(name: str) -> int | None:
            text = query.get(name, "")
            if text == "":
                return None
            try:
                value = int(text)
            except ValueError:
                raise StreamError(
                    400, "BadRequest", f'{name}: Invalid value: "{text}": must be an integer'
                ) from None
            if value < 0:
                raise StreamError(400, "BadRequest", f"{name}: Invalid value: {value}: must not be negative")
            return value

        return cls(
            follow=flag("follow"),
            previous=flag("previous"),
            timestamps=flag("timestamps"),
            tail_lines=number("tailLines"),
            since_seconds=number("sinceSeconds"),
            since_time=query.get("sinceTime") or None,
            limit_bytes=number("limitBytes"),
        )


class StdinWriter(Protocol):
    """The writing half of a command's stdin (``asyncio.StreamWriter`` is one)."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...


class ExecSession(Protocol):
    """One running command (exec) or container (attach)."""

    @property
    def stdin(self) -> StdinWriter | None: ...
    @property
    def stdout(self) -> asyncio.StreamReader: ...
    @property
    def stderr(self) -> asyncio.StreamReader | None: ...
    def resize(self, width: int, height: int) -> None: ...
    async def wait(self) -> int:
        """The exit code (128 + N when signal N ended it)."""
        ...

    async def kill(self) -> None: ...


class StreamBackend(Protocol):
    """The node runtime's side of exec, attach, port-forward and logs; errors are StreamError."""

    async def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], *, tty: bool, stdin: bool
    ) -> ExecSession: ...

    async def attach(
        self, namespace: str, pod: str, container: str, *, tty: bool, stdin: bool
    ) -> ExecSession:
        """May raise StreamError(400, "BadRequest", "attach is not supported ...")."""
        ...

    async def port_forward(
        self, namespace: str, pod: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...

    def logs(self, namespace: str, pod: str, container: str, opts: LogOptions) -> AsyncIterator[bytes]: ...


class ByteConn(Protocol):
    """A bidirectional byte pipe; ``read`` returns b"" at EOF."""

    async def read(self) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...
