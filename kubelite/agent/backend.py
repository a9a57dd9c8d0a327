"""The agent's side of ``kubectl exec``, ``logs`` and ``port-forward``: find the container, enter its pod.

Implements ``StreamBackend`` for the kubelet server in ``streams/server.py``:

- exec: ``nsenter -t <pause pid> --net --uts --mount`` with the container's environment, as a
  session with pipes or a PTY;
- port-forward: a TCP connection made *inside* the pod's network namespace to ``127.0.0.1:<port>``
  (like the kubelet, so a server bound to the pod's loopback is reachable);
- logs: the CRI log files of the container (``--previous`` reads the restart before the current one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

from kubelite.agent.containers import ContainerWorker
from kubelite.agent.manager import PodManager
from kubelite.agent.pods import PodWorker
from kubelite.agent.runtime import enter_argv, read_log
from kubelite.agent.streams.interface import ExecSession, LogOptions, StreamError
from kubelite.agent.streams.process import spawn_session
from kubelite.host.netns import socket_in_netns

__all__ = ["PodStreams"]


class PodStreams:
    def __init__(self, manager: PodManager) -> None:
        self.manager = manager

    def _pod(self, namespace: str, pod: str) -> PodWorker:
        for worker in self.manager.workers.values():
            if worker.namespace == namespace and worker.name == pod:
                return worker
        raise StreamError(404, "NotFound", f'pod "{pod}" not found on this node')

    def _container(self, namespace: str, pod: str, container: str) -> tuple[PodWorker, ContainerWorker]:
        worker = self._pod(namespace, pod)
        for c in worker.workers + worker.init_workers:
            if c.name == container:
                return worker, c
        raise StreamError(400, "BadRequest", f"container {container} is not valid for pod {pod}")

    def _running(self, namespace: str, pod: str, container: str) -> tuple[PodWorker, ContainerWorker]:
        worker, c = self._container(namespace, pod, container)
        if c.record.state != "running" or not worker.pause_pid:
            raise StreamError(
                400,
                "BadRequest",
                f'unable to upgrade connection: container not found ("{container}")',
            )
        return worker, c

    async def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], *, tty: bool, stdin: bool
    ) -> ExecSession:
        worker, c = self._running(namespace, pod, container)
        env = dict(c.env)
        if tty:
            env.setdefault("TERM", "xterm")
        argv = enter_argv(worker.pause_pid, command, working_dir=c.working_dir)
        return await spawn_session(argv, env=env, cwd="/", tty=tty, stdin=stdin)

    async def attach(
        self, namespace: str, pod: str, container: str, *, tty: bool, stdin: bool
    ) -> ExecSession:
        raise StreamError(
            400, "BadRequest", "kubelite does not support attach yet: use kubectl logs -f or kubectl exec"
        )

    async def port_forward(
        self, namespace: str, pod: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        worker = self._pod(namespace, pod)
        sandbox = worker.sandbox
        if sandbox is None or not worker.sandbox_ready:
            raise StreamError(400, "BadRequest", f"pod {pod} has no running sandbox")
        if sandbox.netns is None:
            return await asyncio.open_connection("127.0.0.1", port)
        sock = await socket_in_netns(sandbox.netns)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except OSError as exc:
            sock.close()
            raise StreamError(
                500,
                "InternalError",
                f"error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} "
                f"inside namespace: {exc.strerror or exc}",
            ) from None
        return await asyncio.open_connection(sock=sock)

    def logs(self, namespace: str, pod: str, container: str, opts: LogOptions) -> AsyncIterator[bytes]:
        worker, c = self._container(namespace, pod, container)
        current = c.process
        latest = current.restart if current is not None else c.record.restart_count
        restart = latest - 1 if opts.previous else latest
        if restart < 0:
            raise StreamError(
                400, "BadRequest", f'previous terminated container "{container}" in pod "{pod}" not found'
            )
        path = worker.pod_dir / "logs" / container / f"{max(restart, 0)}.log"
        alive = asyncio.Event()
        if not opts.previous and current is not None and current.proc.returncode is None:
            alive.set()
            asyncio.get_running_loop().create_task(_clear_when_done(current.proc, alive))
        since = None
        if opts.since_seconds:
            since = (datetime.now(UTC) - timedelta(seconds=opts.since_seconds)).strftime("%Y-%m-%dT%H:%M:%S")
        return read_log(
            path,
            follow=opts.follow,
            tail_lines=opts.tail_lines,
            timestamps=opts.timestamps,
            limit_bytes=opts.limit_bytes,
            since=since,
            alive=alive,
        )


async def _clear_when_done(proc: asyncio.subprocess.Process, alive: asyncio.Event) -> None:
    await proc.wait()
    await asyncio.sleep(0.3)  # let the log pump flush the last lines
    alive.clear()
