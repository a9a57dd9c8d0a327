"""The pod manager: one worker per pod bound to this node, from sandbox to final delete.

    pods informer (spec.nodeName=<node>) ──► PodManager ──► PodWorker (one task per pod)
                                                              1. sandbox: netns + CNI ADD + pause
                                                              2. init containers, one after another
                                                              3. containers (ContainerWorker each)
                                                              4. terminal pod: sandbox removed
                                                              5. deletionTimestamp: stop containers
                                                                 (grace), remove sandbox, delete
                                                                 the pod with grace period 0
    every change ──► StatusWriter (coalesced PATCH pods/status)

Nothing here talks to the kernel directly: the sandbox and runtime modules start processes, the
``PodNetwork`` (CNI) plumbs interfaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kubelite.agent.backoff import CrashLoopBackOff
from kubelite.agent.containers import ContainerWorker
from kubelite.agent.dnsconfig import ClusterDNS, hosts_file, kernel_hostname, pod_hostname, resolv_conf
from kubelite.agent.envvars import ServiceInfo, container_env, service_env, service_info, services_for_pod
from kubelite.agent.runtime import rfc3339_nano
from kubelite.agent.sandbox import Sandbox, SandboxError, kill_process_tree, start_pause, stop_pause
from kubelite.agent.status import pod_status
from kubelite.api.errors import StatusError
from kubelite.api.resources import INDEX
from kubelite.client.informer import Informer
from kubelite.client.interface import ApiClient
from kubelite.controllers.events import EventRecorder
from kubelite.host.ip import IpRunner
from kubelite.images.catalog import ImageCatalog

__all__ = ["AgentContext", "PodNetwork", "PodWorker", "port_mappings"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
PODS = INDEX.by_kind[("v1", "Pod")]
CONFIGMAPS = INDEX.by_kind[("v1", "ConfigMap")]
SECRETS = INDEX.by_kind[("v1", "Secret")]


class PodNetwork(Protocol):
    """Plumbs a pod's network namespace (CNI ADD/DEL)."""

    async def setup(self, sandbox: Sandbox, pod: Obj, port_mappings: Sequence[Obj]) -> str:
        """Give the sandbox its interface; return the pod IP."""
        ...

    async def teardown(self, sandbox: Sandbox, pod: Obj, port_mappings: Sequence[Obj]) -> None: ...


@dataclass(slots=True)
class AgentContext:
    client: ApiClient
    node_name: str
    node_ip: str
    data_dir: Path
    ip: IpRunner
    network: PodNetwork
    catalog: ImageCatalog
    dns: ClusterDNS
    netns_prefix: str
    events: EventRecorder
    services: Informer | None = None
    host_resolv_text: str = ""
    crash_backoff: CrashLoopBackOff = field(default_factory=lambda: CrashLoopBackOff(clock=_monotonic))
    image_backoff: CrashLoopBackOff = field(default_factory=lambda: CrashLoopBackOff(clock=_monotonic))

    @property
    def pods_dir(self) -> Path:
        return self.data_dir / "pods"


def _monotonic() -> float:
    return asyncio.get_running_loop().time()


def port_mappings(pod: Obj) -> list[Obj]:
    """CNI ``portMappings`` for every container port with a hostPort (not for hostNetwork pods)."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        return []
    out: list[Obj] = []
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                mapping: Obj = {
                    "hostPort": int(p["hostPort"]),
                    "containerPort": int(p.get("containerPort") or p["hostPort"]),
                    "protocol": str(p.get("protocol") or "TCP").lower(),
                }
                if p.get("hostIP"):
                    mapping["hostIP"] = p["hostIP"]
                out.append(mapping)
    return out


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


class PodWorker:
    """Runs one pod; implements the ``ContainerHost`` its container workers use."""

    def __init__(self, ctx: AgentContext, pod: Obj, on_changed: Any) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = pod.get("metadata") or {}
        self.uid = str(meta.get("uid", ""))
        self.namespace = str(meta.get("namespace", ""))
        self.name = str(meta.get("name", ""))
        self.pod_dir = ctx.pods_dir / self.uid
        self.terminating = asyncio.Event()
        self.sandbox: Sandbox | None = None
        self.pause: asyncio.subprocess.Process | None = None
        self.pause_pid = 0
        self.pod_ip = ""
        self.start_time = rfc3339_nano()[:19] + "Z"
        self.init_workers = [
            ContainerWorker(self, c, init=True) for c in (pod.get("spec") or {}).get("initContainers") or []
        ]
        self.workers = [ContainerWorker(self, c) for c in (pod.get("spec") or {}).get("containers") or []]
        self.init_done = not self.init_workers
        self.sandbox_ready = False
        self.sandbox_message = ""
        self.finished = False
        self._on_changed = on_changed
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self.catalog = ctx.catalog
        self.crash_backoff = ctx.crash_backoff
        self.image_backoff = ctx.image_backoff

    # --- ContainerHost ------------------------------------------------------------------------

    def changed(self) -> None:
        self._on_changed(self)

    async def event(self, event_type: str, reason: str, message: str) -> None:
        with contextlib.suppress(Exception):
            await self.ctx.events.event(self.pod, event_type, reason, message)

    async def environment(self, container: Obj) -> list[tuple[str, str]]:
        spec = self.pod.get("spec") or {}
        pairs: list[tuple[str, ServiceInfo]] = []
        if self.ctx.services is not None:
            pairs = [service_info(s) for s in self.ctx.services.list()]
        svc_vars = service_env(
            services_for_pod(self.namespace, pairs, spec.get("enableServiceLinks", True) is not False)
        )
        config_maps, secrets = await self._fetch_sources(container)
        hostname, _fqdn = pod_hostname(self.pod, domain=self.ctx.dns.domain)
        base = [
            ("HOSTNAME", hostname if not spec.get("hostNetwork") else self.ctx.node_name),
            ("HOME", "/root"),
        ]
        env = container_env(
            container,
            self.pod,
            service_vars=svc_vars,
            config_maps=config_maps.get,
            secrets=secrets.get,
            node_ip=self.ctx.node_ip,
            pod_ip=self.pod_ip,
            pod_ips=[self.pod_ip] if self.pod_ip else [],
        )
        return base + env

    async def _fetch_sources(self, container: Obj) -> tuple[dict[str, Obj], dict[str, Obj]]:
        cms: set[str] = set()
        secs: set[str] = set()
        for src in container.get("envFrom") or []:
            if (ref := src.get("configMapRef")) and ref.get("name"):
                cms.add(ref["name"])
            if (ref := src.get("secretRef")) and ref.get("name"):
                secs.add(ref["name"])
        for var in container.get("env") or []:
            value_from = var.get("valueFrom") or {}
            if (ref := value_from.get("configMapKeyRef")) and ref.get("name"):
                cms.add(ref["name"])
            if (ref := value_from.get("secretKeyRef")) and ref.get("name"):
                secs.add(ref["name"])

        async def fetch(rt: Any, names: set[str]) -> dict[str, Obj]:
            found: dict[str, Obj] = {}
            for n in names:
                with contextlib.suppress(StatusError):
                    found[n] = await self.ctx.client.get(rt, self.namespace, n)
            return found

        return await fetch(CONFIGMAPS, cms), await fetch(SECRETS, secs)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod-{self.namespace}/{self.name}")

    def update(self, pod: Obj) -> None:
        self.pod = pod

    async def _run(self) -> None:
        try:
            if not await self._create_sandbox():
                return
            for worker in self.init_workers:
                code = await worker.run()
                if self.terminating.is_set():
                    return
                if code != 0:
                    self.finished = True
                    self.changed()
                    await self._remove_sandbox()
                    return
            self.init_done = True
            self.changed()
            await asyncio.gather(*(w.run() for w in self.workers))
            if not self.terminating.is_set():
                self.finished = True
                self.changed()
                await self._remove_sandbox()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s: worker failed", self.namespace, self.name)
        finally:
            self._stopped.set()

    def _netns_name(self) -> str:
        digest = hashlib.sha1(self.uid.encode()).hexdigest()[:10]
        return f"{self.ctx.netns_prefix}-{digest}"

    async def _create_sandbox(self) -> bool:
        spec = self.pod.get("spec") or {}
        host_network = bool(spec.get("hostNetwork"))
        delay = 1.0
        while not self.terminating.is_set():
            self.pod_dir.mkdir(parents=True, exist_ok=True)
            sandbox = Sandbox(
                uid=self.uid,
                namespace=self.namespace,
                name=self.name,
                directory=str(self.pod_dir),
                netns=None if host_network else self._netns_name(),
                container_id=hashlib.sha256(self.uid.encode()).hexdigest()[:32],
            )
            self.sandbox = sandbox
            try:
                await self._build_sandbox(sandbox, host_network)
                self.sandbox_ready = True
                self.changed()
                return True
            except (SandboxError, Exception) as exc:
                message = f"Failed to create pod sandbox: {exc}"
                log.warning("pod %s/%s: %s", self.namespace, self.name, message)
                self.sandbox_message = message
                await self.event("Warning", "FailedCreatePodSandBox", message)
                await self._remove_sandbox()
                self.changed()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.terminating.wait(), delay)
                delay = min(delay * 2, 30.0)
        return False

    async def _build_sandbox(self, sandbox: Sandbox, host_network: bool) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sandbox.save()
        if sandbox.netns is not None:
            await self.ctx.ip.add_netns(sandbox.netns)
            t1 = loop.time()
            sandbox.pod_ip = await self.ctx.network.setup(sandbox, self.pod, port_mappings(self.pod))
            log.debug(
                "pod %s/%s: netns %.0f ms, CNI ADD %.0f ms",
                self.namespace,
                self.name,
                (t1 - t0) * 1000,
                (loop.time() - t1) * 1000,
            )
        else:
            sandbox.pod_ip = self.ctx.node_ip
        self.pod_ip = sandbox.pod_ip
        hostname, _fqdn = pod_hostname(self.pod, domain=self.ctx.dns.domain)
        node_hosts = _read_text("/etc/hosts") if host_network else None  # the kubelet: the node's file
        hosts = hosts_file(
            self.pod,
            pod_ips=[self.pod_ip],
            hostname=hostname,
            domain=self.ctx.dns.domain,
            node_hosts_text=node_hosts,
        )
        resolv = resolv_conf(self.pod, self.ctx.dns, host_resolv_text=self.ctx.host_resolv_text)
        domain = self.ctx.dns.domain
        shown = self.ctx.node_name if host_network else kernel_hostname(self.pod, domain=domain)
        t2 = loop.time()
        self.pause = await start_pause(sandbox, hostname=shown, hosts=hosts, resolv=resolv)
        log.debug("pod %s/%s: pause %.0f ms", self.namespace, self.name, (loop.time() - t2) * 1000)
        self.pause_pid = sandbox.pause_pid = self.pause.pid
        sandbox.save()

    async def _remove_sandbox(self) -> None:
        sandbox = self.sandbox
        if sandbox is None:
            return
        if self.pause is not None:
            kill_process_tree(self.pause.pid)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pause.wait(), 5)
            self.pause = None
        elif sandbox.pause_pid:
            await stop_pause(sandbox.pause_pid)
        if sandbox.netns is not None:
            with contextlib.suppress(Exception):
                await self.ctx.network.teardown(sandbox, self.pod, port_mappings(self.pod))
            with contextlib.suppress(Exception):
                await self.ctx.ip.delete_netns(sandbox.netns)
        self.sandbox_ready = False
        with contextlib.suppress(OSError):
            (self.pod_dir / "sandbox.json").unlink()

    async def terminate(self, grace: float, *, final_delete: bool) -> None:
        """Stop every container (SIGTERM, then SIGKILL after ``grace``), remove the sandbox, and
        with ``final_delete`` delete the pod object with grace period 0 (the kubelet's last word)."""
        if not self.terminating.is_set():
            self.terminating.set()
            await asyncio.gather(*(w.stop(grace) for w in self.init_workers + self.workers))
            if self._task is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._stopped.wait()), 5)
                if not self._task.done():
                    self._task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self._task
            await self._remove_sandbox()
        if final_delete:
            with contextlib.suppress(StatusError):
                await self.ctx.client.delete(
                    PODS, self.namespace, self.name, grace_period_seconds=0, precondition_uid=self.uid
                )

    async def forget(self) -> None:
        """The pod is gone from the API: remove what is left on disk."""
        await asyncio.to_thread(shutil.rmtree, self.pod_dir, True)

    def status(self) -> Obj:
        records = [w.record for w in self.workers]
        init_records = [w.record for w in self.init_workers]
        return pod_status(
            self.pod,
            records,
            pod_ips=[self.pod_ip] if self.pod_ip else [],
            host_ip=self.ctx.node_ip,
            start_time=self.start_time,
            now=rfc3339_nano()[:19] + "Z",
            sandbox_ready=self.sandbox_ready,
            init_records=init_records,
        )
