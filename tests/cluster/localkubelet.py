"""``LocalKubelet``: the kubelet's streaming server on 127.0.0.1 with a ``StreamBackend`` for tests.

LocalBackend   exec/attach: local processes (spawn_session, pipes or a PTY)
               port_forward: 127.0.0.1:<port> (an echo server runs in the same loop)
               logs: lines per (pod, container), a "previous" set, and with follow a bounded
               number of further lines, one every ``follow_interval`` seconds
LocalKubelet   runs kubelet_app and the echo server in a LoopThread (tests are synchronous)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from fakekubelet import LoopThread

from kubelite.agent.streams import ExecSession, LogOptions, StreamError, kubelet_app, spawn_session


@dataclass
class LocalBackend:
    logs_by_container: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    previous_by_container: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    follow_lines: int = 40
    follow_interval: float = 0.05
    exec_calls: list[tuple[str, str, str, tuple[str, ...], bool]] = field(default_factory=list)

    async def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], *, tty: bool, stdin: bool
    ) -> ExecSession:
        self.exec_calls.append((namespace, pod, container, tuple(command), tty))
        env = {"PATH": "/usr/bin:/bin", "TERM": "xterm"}
        return await spawn_session(list(command), env=env, cwd="/", tty=tty, stdin=stdin)

    async def attach(
        self, namespace: str, pod: str, container: str, *, tty: bool, stdin: bool
    ) -> ExecSession:
        raise StreamError(400, "BadRequest", "attach is not supported by the test backend; use exec")

    async def port_forward(
        self, namespace: str, pod: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port)

    def logs(self, namespace: str, pod: str, container: str, opts: LogOptions) -> AsyncIterator[bytes]:
        source = self.previous_by_container if opts.previous else self.logs_by_container
        lines = source.get((pod, container))
        if lines is None:
            if opts.previous:
                raise StreamError(
                    400, "BadRequest", f'previous terminated container "{container}" in pod "{pod}" not found'
                )
            raise StreamError(404, "NotFound", f'container "{container}" in pod "{pod}" not found')
        return self._lines(lines, opts)

    async def _lines(self, lines: list[str], opts: LogOptions) -> AsyncIterator[bytes]:
        shown = (
            lines
            if opts.tail_lines is None
            else lines[len(lines) - opts.tail_lines :]
            if opts.tail_lines
            else []
        )
        for line in shown:
            yield f"{line}\n".encode()
        if opts.follow and not opts.previous:
            for i in range(self.follow_lines):
                await asyncio.sleep(self.follow_interval)
                yield f"more {i}\n".encode()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    writer.close()


class LocalKubelet:
    """kubelet_app on 127.0.0.1:``port`` and an echo server on 127.0.0.1:``echo_port``."""

    def __init__(self, backend: LocalBackend, token: str) -> None:
        self.backend = backend
        self.loop = LoopThread("local-kubelet")
        self.port = 0
        self.echo_port = 0
        self._runner: web.AppRunner | None = None
        self._echo: asyncio.Server | None = None
        self.loop.run(self._start(token))

    async def _start(self, token: str) -> None:
        self._runner = web.AppRunner(kubelet_app(self.backend, token=token), handler_cancellation=True)
        await self._runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        self.echo_port = self._echo.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._echo is not None:
            self._echo.close()
            await self._echo.wait_closed()

    def close(self) -> None:
        try:
            self.loop.run(self._stop())
        finally:
            self.loop.close()
