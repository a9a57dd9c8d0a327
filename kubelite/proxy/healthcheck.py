"""Service health check node ports: what a load balancer asks each node (kube-proxy's service health server).

A LoadBalancer Service with ``externalTrafficPolicy: Local`` gets ``spec.healthCheckNodePort`` from
the API server. Every node answers HTTP on that port, any path: ``200`` with
``{"service": {"namespace": ..., "name": ...}, "localEndpoints": N, "serviceProxyHealthy": true}``
when N > 0 (this node has ready endpoints of the Service, so a load balancer may send it traffic
that keeps the client's source address), ``503`` otherwise, or when the proxy itself is unhealthy.

:func:`health_checks` is pure (a :class:`ProxyState` in, one :class:`HealthCheck` per port out);
:class:`HealthCheckServer` opens and closes the listeners to match after every sync. A port that
cannot be bound (something else holds it) is logged and retried at the next sync.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from kubelite.proxy.model import ProxyState

__all__ = ["HealthCheck", "HealthCheckServer", "health_checks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    namespace: str
    name: str
    local_endpoints: int


def health_checks(state: ProxyState) -> dict[int, HealthCheck]:
    """Health check port -> its Service and the number of this node's ready endpoint addresses."""
    local: dict[tuple[str, str], set[str]] = {}
    for spn, eps in state.endpoints.items():
        key = (spn.namespace, spn.name)
        local.setdefault(key, set()).update(e.ip for e in eps if e.is_local and e.ready)
    checks: dict[int, HealthCheck] = {}
    for spn, sp in state.services.items():
        if sp.health_check_node_port and sp.external_local:
            key = (spn.namespace, spn.name)
            checks[sp.health_check_node_port] = HealthCheck(spn.namespace, spn.name, len(local.get(key, ())))
    return checks


class HealthCheckServer:
    """One HTTP listener per health check port on ``host`` (``0.0.0.0``: every node address)."""

    def __init__(self, host: str, *, proxy_healthy: Callable[[], bool] = lambda: True) -> None:
        self.host = host
        self.proxy_healthy = proxy_healthy
        self.checks: dict[int, HealthCheck] = {}
        self._sites: dict[int, web.TCPSite] = {}
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        check = self.checks.get(int(sockname[1])) if sockname else None
        if check is None:
            return web.json_response({"message": "no such service health check"}, status=404)
        healthy = self.proxy_healthy()
        body = {
            "service": {"namespace": check.namespace, "name": check.name},
            "localEndpoints": check.local_endpoints,
            "serviceProxyHealthy": healthy,
        }
        status = 200 if check.local_endpoints > 0 and healthy else 503
        return web.json_response(body, status=status, headers={"X-Content-Type-Options": "nosniff"})

    async def update(self, checks: Mapping[int, HealthCheck]) -> None:
        """Serve exactly ``checks``: new ports are opened, gone ones closed, counts replaced."""
        self.checks = dict(checks)
        if self._runner is None:
            if not checks:
                return
            app = web.Application()
            app.router.add_route("GET", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
        for port in [p for p in self._sites if p not in checks]:
            await self._sites.pop(port).stop()
        for port, check in checks.items():
            if port in self._sites:
                continue
            site = web.TCPSite(self._runner, self.host, port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                why = "is in use" if exc.errno == errno.EADDRINUSE else f"could not be opened: {exc}"
                log.warning(
                    "health check node port %s of service %s/%s %s; retrying at the next sync",
                    port,
                    check.namespace,
                    check.name,
                    why,
                )
                continue
            self._sites[port] = site

    @property
    def ports(self) -> list[int]:
        return sorted(self._sites)

    async def close(self) -> None:
        self._sites.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
