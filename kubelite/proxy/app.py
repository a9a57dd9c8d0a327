"""The service proxy as the agent runs it: informers → ChangeTracker → runner → back end, plus
kube-proxy's health and metrics endpoints.

    Service informer ──┐
                       ├─► ChangeTracker ─► BoundedFrequencyRunner ─► ProxyBackend.sync(state, changed)
    EndpointSlice inf. ┘                     (min interval, periodic full resync, retry)

``/healthz`` answers 503 when an update waited longer than 2 x the resync period; ``/metrics`` is
Prometheus text with kube-proxy's metric names, including ``network_programming_duration_seconds``
measured from the EndpointSlice ``endpoints.kubernetes.io/last-change-trigger-time`` annotation.
With ``health_check_host``, every Service's ``healthCheckNodePort`` is served after each sync
(:mod:`kubelite.proxy.healthcheck`); with an ``announcer`` and a Node informer, this node answers
ARP for the LoadBalancer IPs it is elected for (:mod:`kubelite.proxy.announce`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiohttp import web

from kubelite.api.resources import INDEX
from kubelite.client.informer import Informer
from kubelite.client.interface import ApiClient
from kubelite.proxy.announce import L2Announcer, ready_node_names
from kubelite.proxy.backend import ProxyBackend
from kubelite.proxy.healthcheck import HealthCheckServer, health_checks
from kubelite.proxy.model import SERVICE_NAME_LABEL, ChangeTracker
from kubelite.proxy.runner import BoundedFrequencyRunner

__all__ = ["ServiceProxy", "metrics_text"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SERVICES = INDEX.by_kind[("v1", "Service")]
SLICES = INDEX.by_kind[("discovery.k8s.io/v1", "EndpointSlice")]
TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _parse_time(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(_BUCKETS)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, bound in enumerate(_BUCKETS):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, name: str) -> list[str]:
        out = [f"# TYPE {name} histogram"]
        out += [f'{name}_bucket{{le="{b}"}} {c}' for b, c in zip(_BUCKETS, self.counts, strict=True)]
        out += [
            f'{name}_bucket{{le="+Inf"}} {self.total}',
            f"{name}_sum {self.sum}",
            f"{name}_count {self.total}",
        ]
        return out


class ServiceProxy:
    def __init__(
        self,
        client: ApiClient,
        backend: ProxyBackend,
        *,
        node_name: str,
        node_ips: Sequence[str],
        cluster_cidr: str = "10.244.0.0/16",
        service_cidr: str = "10.96.0.0/12",
        min_sync_interval: float = 0.0,
        resync_interval: float = 30.0,
        services: Informer | None = None,
        health_check_host: str | None = None,
        announcer: L2Announcer | None = None,
        nodes: Informer | None = None,
    ) -> None:
        """``services``: a Service informer the caller already runs (the agent's, for env vars), so
        the node keeps one Service watch; without it the proxy starts and stops its own.
        ``health_check_host``: where health check node ports listen (None: not served).
        ``announcer`` + ``nodes`` (a Node informer the caller runs): LoadBalancer IP announcements."""
        self.backend = backend
        self.tracker = ChangeTracker(
            node_name, tuple(node_ips), service_cidr=service_cidr, cluster_cidr=cluster_cidr
        )
        self.runner = BoundedFrequencyRunner(
            self._sync, min_interval=min_sync_interval, max_interval=resync_interval
        )
        self._own_services = services is None
        self.services = services if services is not None else Informer(client, SERVICES)
        self.slices = Informer(client, SLICES)
        self.sync_duration = Histogram()
        self.programming = Histogram()
        self.service_changes = 0
        self.endpoint_changes = 0
        self._triggers: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self.announcer = announcer
        self.nodes = nodes
        self._ready_nodes: frozenset[str] = frozenset()
        self.health: HealthCheckServer | None = None
        if health_check_host is not None:
            self.health = HealthCheckServer(health_check_host, proxy_healthy=self.runner.healthy)

    # --- informer events -----------------------------------------------------------------------

    def _service(self, obj: Obj, deleted: bool = False) -> None:
        self.service_changes += 1
        self.tracker.service(None if deleted else obj, _key(obj))
        self.runner.request()

    def _node(self, *_objs: Obj) -> None:
        """Node readiness decides who announces LoadBalancer IPs: re-elect when it changes."""
        ready = ready_node_names(self.nodes.list()) if self.nodes is not None else frozenset()
        if ready != self._ready_nodes:
            self._ready_nodes = ready
            self.runner.request()

    def _slice(self, obj: Obj, deleted: bool = False) -> None:
        self.endpoint_changes += 1
        meta = obj.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not service:
            return
        trigger = (meta.get("annotations") or {}).get(TRIGGER_ANNOTATION)
        if trigger and (at := _parse_time(str(trigger))) is not None:
            self._triggers.append(at)
        self.tracker.slice(None if deleted else obj, _key(obj), str(service))
        self.runner.request()

    async def _sync(self, full: bool) -> None:
        if full:
            self.tracker.force_full()
        state, changed = self.tracker.take()
        triggers, self._triggers = self._triggers, []
        started = time.monotonic()
        try:
            await self.backend.sync(state, changed)
        except Exception:
            self._triggers = triggers + self._triggers
            raise
        self.sync_duration.observe(time.monotonic() - started)
        now = time.time()
        for at in triggers:
            self.programming.observe(max(now - at, 0.0))
        if self.health is not None:
            await self.health.update(health_checks(state))
        if self.announcer is not None:
            await self.announcer.update(state=state, ready_nodes=self._ready_nodes)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.services.add_handler(
            self._service, lambda _o, n: self._service(n), lambda o: self._service(o, True)
        )
        self.slices.add_handler(self._slice, lambda _o, n: self._slice(n), lambda o: self._slice(o, True))
        if self.announcer is not None and self.nodes is not None:
            self.nodes.add_handler(self._node, self._node, self._node)
            self._node()
        if self._own_services:
            await self.services.start()
        await self.slices.start()
        await self.services.wait_synced()
        await self.slices.wait_synced()
        await self.runner.run_once()  # rules in place before the agent says it is running
        self._task = asyncio.create_task(self.runner.run(), name="proxy-sync")

    async def stop(self, *, cleanup: bool) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._own_services:
            await self.services.stop()
        await self.slices.stop()
        if self.health is not None:
            await self.health.close()
        if cleanup:
            await self.backend.cleanup()

    # --- health and metrics --------------------------------------------------------------------

    def app(self) -> web.Application:
        async def healthz(_request: web.Request) -> web.Response:
            ok = self.runner.healthy()
            body = {"lastUpdated": self.runner.stats.last_success, "currentTime": time.monotonic()}
            return web.json_response(body, status=200 if ok else 503)

        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(text=metrics_text(self), content_type="text/plain")

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/livez", healthz)
        app.router.add_get("/metrics", metrics)
        return app


def metrics_text(proxy: ServiceProxy) -> str:
    p = "kubeproxy_"
    lines = proxy.sync_duration.lines(p + "sync_proxy_rules_duration_seconds")
    lines += proxy.programming.lines(p + "network_programming_duration_seconds")
    lines += [
        f"# TYPE {p}sync_proxy_rules_service_changes_total counter",
        f"{p}sync_proxy_rules_service_changes_total {proxy.service_changes}",
        f"# TYPE {p}sync_proxy_rules_endpoint_changes_total counter",
        f"{p}sync_proxy_rules_endpoint_changes_total {proxy.endpoint_changes}",
        f"# TYPE {p}sync_proxy_rules_last_timestamp_seconds gauge",
        f"{p}sync_proxy_rules_last_timestamp_seconds {proxy.runner.stats.last_success}",
        f"# TYPE {p}sync_proxy_rules_changes_pending gauge",
        f"{p}sync_proxy_rules_changes_pending {1 if proxy.tracker.pending() else 0}",
        f"# TYPE {p}sync_proxy_rules_failures_total counter",
        f"{p}sync_proxy_rules_failures_total {proxy.runner.stats.failures}",
    ]
    return "\n".join(lines) + "\n"
