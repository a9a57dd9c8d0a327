"""One container's life inside a pod: image, environment, start, probes, exit, restart with back-off.

    ┌─► resolve image ──ImageError──► Waiting ErrImagePull → ImagePullBackOff (10 s … 5 min) ─┐
    │   build env ─────EnvSourceError─► Waiting CreateContainerConfigError ─────────────────────┤ retry
    │   start process ─StartError────► Terminated StartError (exit 128) ─┐                       │
    │   Running: startup → readiness / liveness probes                   │                       │
    │   exit (or liveness kill) ─► Terminated Completed / Error ─────────┤                       │
    └── restartPolicy says restart: Waiting CrashLoopBackOff (back-off) ◄┘ ◄─────────────────────┘

The worker owns a :class:`ContainerRecord` (what ``containerStatuses`` shows) and calls
``host.changed()`` whenever it changes; the pod worker turns records into the pod's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from kubelite.agent.backoff import CrashLoopBackOff, backoff_message, should_restart
from kubelite.agent.envvars import EnvSourceError, expand
from kubelite.agent.probes import (
    ProbeKind,
    ProbeResult,
    ProbeWorker,
    parse_probe,
    probe_failed_message,
    run_probe,
)
from kubelite.agent.runtime import ContainerProcess, StartError, enter_argv, rfc3339_nano, start_container
from kubelite.agent.status import ContainerRecord, terminated_reason
from kubelite.images.catalog import ImageCatalog, ImageError, ResolvedCommand

__all__ = ["ContainerHost", "ContainerWorker"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class ContainerHost(Protocol):
    """What a container worker needs from its pod."""

    pod: Obj
    pause_pid: int
    pod_ip: str
    pod_dir: Path
    terminating: asyncio.Event
    catalog: ImageCatalog
    crash_backoff: CrashLoopBackOff
    image_backoff: CrashLoopBackOff

    def changed(self) -> None: ...

    async def environment(self, container: Obj) -> list[tuple[str, str]]: ...

    async def event(self, event_type: str, reason: str, message: str) -> None: ...


def _waiting(rec: ContainerRecord, reason: str, message: str) -> ContainerRecord:
    return replace(rec, state="waiting", reason=reason, message=message, ready=False, exit_code=None)


class ContainerWorker:
    def __init__(self, host: ContainerHost, spec: Obj, *, init: bool = False) -> None:
        self.host = host
        self.spec = spec
        self.name = str(spec.get("name", ""))
        self.init = init
        self.record = ContainerRecord(
            name=self.name,
            image=str(spec.get("image", "")),
            container_id="",
            restart_count=0,
            state="waiting",
            reason="ContainerCreating",
            message="",
            started_at=None,
            finished_at=None,
            exit_code=None,
            ready=False,
            started=False,
            last_state=None,
        )
        self.process: ContainerProcess | None = None
        self.terminal = False
        self.exit_code: int | None = None
        self.env: dict[str, str] = {}
        self.working_dir = str(spec.get("workingDir") or "/")
        self._probe_tasks: list[asyncio.Task[None]] = []
        self._liveness_failed = asyncio.Event()
        self._events: set[asyncio.Task[None]] = set()
        self._started_mono = 0.0
        self._key = (str(host.pod.get("metadata", {}).get("uid", "")), self.name)

    # --- status --------------------------------------------------------------------------------

    def _set(self, rec: ContainerRecord) -> None:
        self.record = rec
        self.host.changed()

    @property
    def pod_ref(self) -> tuple[str, str, str]:
        meta = self.host.pod.get("metadata") or {}
        return str(meta.get("name", "")), str(meta.get("namespace", "")), str(meta.get("uid", ""))

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> int | None:
        """Run until the container will not be restarted (or the pod terminates); the last exit code."""
        policy = str((self.host.pod.get("spec") or {}).get("restartPolicy") or "Always")
        if self.init and policy == "Always":
            policy = "OnFailure"  # init containers run to completion
        while not self.host.terminating.is_set():
            resolved = await self._resolve_image()
            if resolved is None:
                return None
            argv = await self._prepare(resolved)
            if argv is None:
                return None
            code = await self._run_once(argv)
            # The terminated state stays visible as lastState from now on (also while waiting).
            self.record = replace(self.record, last_state=replace(self.record, last_state=None))
            if self.host.terminating.is_set():
                return code
            if not should_restart(policy, code):
                self.terminal = True
                return code
            delay = self.host.crash_backoff.record_exit(self._key, self._ran_for())
            if delay <= 0:  # the first restart is immediate: one exit is not a crash loop
                self._set(replace(self.record, restart_count=self.record.restart_count + 1))
                continue
            name, ns, uid = self.pod_ref
            message = backoff_message(delay, self.name, name, ns, uid)
            self._set(_waiting(self.record, "CrashLoopBackOff", message))
            await self.host.event(
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {self.name} in pod {name}_{ns}({uid})",
            )
            if await self._sleep_unless_terminating(delay):
                return code
            self._set(replace(self.record, restart_count=self.record.restart_count + 1))
        return self.exit_code

    def _ran_for(self) -> float:
        proc = self.process
        if proc is None:
            return 0.0
        from datetime import datetime

        try:
            started = datetime.fromisoformat(proc.started_at.replace("Z", "+00:00")[:26] + "+00:00")
            finished = datetime.fromisoformat(proc.finished_at.replace("Z", "+00:00")[:26] + "+00:00")
        except ValueError:
            return 0.0
        return max((finished - started).total_seconds(), 0.0)

    async def _sleep_unless_terminating(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; True when the pod started terminating meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.host.terminating.wait(), delay)
        return self.host.terminating.is_set()

    async def _resolve_image(self) -> ResolvedCommand | None:
        key = ("image", *self._key)
        while not self.host.terminating.is_set():
            try:
                resolved = self.host.catalog.resolve(
                    self.record.image, self.spec.get("command") or [], self.spec.get("args") or []
                )
            except ImageError as exc:
                reason = exc.reason if exc.reason != "ErrImagePull" else "ErrImagePull"
                self._set(_waiting(self.record, reason, exc.message))
                await self.host.event(
                    "Warning", "Failed", f'Failed to pull image "{self.record.image}": {exc.message}'
                )
                delay = self.host.image_backoff.record_failure(key)
                if reason == "ErrImagePull":
                    if await self._sleep_unless_terminating(min(delay, 1.0)):
                        return None
                    self._set(
                        _waiting(
                            self.record, "ImagePullBackOff", f'Back-off pulling image "{self.record.image}"'
                        )
                    )
                    delay = max(delay - 1.0, 0.0)
                if await self._sleep_unless_terminating(delay):
                    return None
                continue
            self.host.image_backoff.forget(key)
            return resolved
        return None

    async def _prepare(self, resolved: ResolvedCommand) -> list[str] | None:
        """The final argv with the environment in ``self.env``; None when the pod terminated first."""
        key = ("config", *self._key)
        while not self.host.terminating.is_set():
            try:
                pairs = await self.host.environment(self.spec)
            except EnvSourceError as exc:
                self._set(_waiting(self.record, "CreateContainerConfigError", exc.message))
                await self.host.event("Warning", "Failed", f"Error: {exc.message}")
                if await self._sleep_unless_terminating(self.host.image_backoff.record_failure(key)):
                    return None
                continue
            env = dict(resolved.env)
            env.update(pairs)
            self.env = env
            # The image's argv is already entrypoint + cmd (or the container's command/args);
            # $(VAR) references in command/args expand against the container's environment.
            return [expand(arg, env) for arg in resolved.argv]
        return None

    async def _run_once(self, argv: Sequence[str]) -> int:
        name, ns, _uid = self.pod_ref
        container_id = f"kubelite://{uuid.uuid4().hex}"
        try:
            proc = await start_container(
                name=self.name,
                restart=self.record.restart_count,
                pause_pid=self.host.pause_pid,
                argv=argv,
                env=self.env,
                working_dir=self.working_dir,
                log_dir=self.host.pod_dir / "logs" / self.name,
                stdin_open=bool(self.spec.get("stdin")),
            )
        except StartError as exc:
            now = rfc3339_nano()
            self.exit_code = 128
            self._set(
                replace(
                    self.record,
                    container_id=container_id,
                    state="terminated",
                    reason="StartError",
                    message=str(exc),
                    started_at=None,
                    finished_at=now,
                    exit_code=128,
                    ready=False,
                    started=False,
                )
            )
            await self.host.event("Warning", "Failed", f"Error: {exc}")
            self.process = None
            return 128
        self.process = proc
        self._started_mono = asyncio.get_running_loop().time()
        self._liveness_failed.clear()
        self._set(
            replace(
                self.record,
                container_id=container_id,
                state="running",
                reason="",
                message="",
                started_at=proc.started_at,
                finished_at=None,
                exit_code=None,
                ready=not self.spec.get("readinessProbe") and not self.spec.get("startupProbe"),
                started=not self.spec.get("startupProbe"),
            )
        )
        await self.host.event("Normal", "Started", f"Started container {self.name}")
        self._start_probes()
        waiter = asyncio.create_task(proc.wait())
        killer = asyncio.create_task(self._liveness_failed.wait())
        try:
            await asyncio.wait({waiter, killer}, return_when=asyncio.FIRST_COMPLETED)
            if killer.done() and not waiter.done():
                grace = self._grace_seconds()
                await self.host.event(
                    "Normal", "Killing", f"Container {self.name} failed liveness probe, will be restarted"
                )
                await proc.stop(grace)
            code = await waiter
        finally:
            killer.cancel()
            await self._stop_probes()
        self.exit_code = code
        self._set(
            replace(
                self.record,
                state="terminated",
                reason=terminated_reason(code),
                message="",
                finished_at=proc.finished_at,
                exit_code=code,
                ready=False,
                last_state=None,
            )
        )
        log.debug("container %s/%s %s exited with %d", ns, name, self.name, code)
        return code

    def _grace_seconds(self) -> float:
        spec = self.host.pod.get("spec") or {}
        grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(grace if isinstance(grace, int) else 30)

    async def stop(self, grace: float) -> None:
        proc = self.process
        if proc is not None and proc.proc.returncode is None:
            await proc.stop(grace)

    # --- probes --------------------------------------------------------------------------------

    def _start_probes(self) -> None:
        startup = self.spec.get("startupProbe")
        if startup:
            self._add_probe("startup", startup, self._startup_changed)
        else:
            self._start_steady_probes()

    def _start_steady_probes(self) -> None:
        if self.spec.get("readinessProbe"):
            self._add_probe("readiness", self.spec["readinessProbe"], self._readiness_changed)
        if self.spec.get("livenessProbe"):
            self._add_probe("liveness", self.spec["livenessProbe"], self._liveness_changed)

    def _add_probe(self, kind: ProbeKind, probe: Obj, on_change: Callable[[bool, str], None]) -> None:
        try:
            spec = parse_probe(probe, self.spec, kind=kind)
        except ValueError as exc:
            log.warning("%s probe of %s ignored: %s", kind, self.name, exc)
            return

        def run() -> Awaitable[ProbeResult]:
            return run_probe(spec, pod_ip=self.host.pod_ip or "127.0.0.1", executor=_PodExec(self))

        def on_result(result: ProbeResult) -> None:
            if not result.success:
                text = probe_failed_message(kind, result.output)
                self._spawn_event("Warning", "Unhealthy", text)

        elapsed = 0.0
        if kind != "startup" and self.process is not None and self._started_mono:
            elapsed = asyncio.get_running_loop().time() - self._started_mono
        worker = ProbeWorker(spec, kind, run, on_change, on_result=on_result, elapsed=elapsed)
        self._probe_tasks.append(asyncio.create_task(worker.run(), name=f"probe-{kind}-{self.name}"))

    async def _stop_probes(self) -> None:
        tasks, self._probe_tasks = self._probe_tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _startup_changed(self, ok: bool, message: str) -> None:
        if ok and not self.record.started:
            self._set(replace(self.record, started=True, ready=not self.spec.get("readinessProbe")))
            self._start_steady_probes()
        elif not ok:
            self._liveness_failed.set()  # a failed startup probe kills the container like liveness

    def _readiness_changed(self, ok: bool, message: str) -> None:
        if ok != self.record.ready and self.record.state == "running":
            self._set(replace(self.record, ready=ok))

    def _liveness_changed(self, ok: bool, message: str) -> None:
        if not ok:
            self._liveness_failed.set()

    def _spawn_event(self, event_type: str, reason: str, message: str) -> None:
        task = asyncio.get_running_loop().create_task(self.host.event(event_type, reason, message))
        self._events.add(task)
        task.add_done_callback(self._events.discard)


class _PodExec:
    """Runs exec probes inside the container's pod, with the container's environment."""

    def __init__(self, worker: ContainerWorker) -> None:
        self.worker = worker

    async def exec(self, command: Sequence[str], timeout: float) -> tuple[int, str]:  # noqa: ASYNC109
        w = self.worker
        proc = await asyncio.create_subprocess_exec(
            *enter_argv(w.host.pause_pid, command, working_dir=w.working_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=w.env,
            start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        return proc.returncode or 0, out.decode(errors="replace")
