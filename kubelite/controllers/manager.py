"""The controller manager: builds the enabled controllers over one shared set of informers.

``kubelite server`` runs it in-process with a LocalClient; nothing here knows that, so the
same manager can run in its own process against the HTTP API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kubelite.client.interface import ApiClient
from kubelite.controllers.base import InformerFactory, QueueController
from kubelite.controllers.daemonset import DaemonSetController
from kubelite.controllers.deployment import DeploymentController
from kubelite.controllers.endpoints import (
    EndpointsController,
    EndpointSliceController,
    EndpointSliceMirroringController,
)
from kubelite.controllers.garbagecollector import GarbageCollector
from kubelite.controllers.loadbalancer import LoadBalancerController
from kubelite.controllers.nodeipam import NodeIpamController
from kubelite.controllers.replicaset import ReplicaSetController
from kubelite.scheduler.controller import SchedulerController

log = logging.getLogger("kubelite.controllers")


@dataclass(frozen=True, slots=True)
class ControllerOptions:
    cluster_cidr: str = "10.244.0.0/16"
    node_cidr_mask: int = 24
    load_balancer_pool: str = ""
    enabled: Sequence[str] = ("*",)
    """Controller names to run; "*" is all of them, "-name" turns one off."""


ControllerFactory = Callable[[ApiClient, InformerFactory, ControllerOptions], QueueController]


def builtin_factories() -> dict[str, ControllerFactory]:
    """Every controller ``kubelite server`` runs, by the name ``--controllers`` uses."""
    return {
        "endpoint": lambda c, i, _o: EndpointsController(c, i),
        "endpointslice": lambda c, i, _o: EndpointSliceController(c, i),
        "endpointslicemirroring": lambda c, i, _o: EndpointSliceMirroringController(c, i),
        "garbagecollector": lambda c, i, _o: GarbageCollector(c, i),
        "replicaset": ReplicaSetController,
        "deployment": DeploymentController,
        "daemonset": DaemonSetController,
        "nodeipam": NodeIpamController,
        "loadbalancer": LoadBalancerController,
        "scheduler": SchedulerController,
    }


def _wanted(name: str, enabled: Sequence[str]) -> bool:
    if f"-{name}" in enabled:
        return False
    return "*" in enabled or name in enabled


class ControllerManager:
    def __init__(
        self,
        client: ApiClient,
        options: ControllerOptions | None = None,
        factories: Mapping[str, ControllerFactory] | None = None,
    ) -> None:
        self.options = options or ControllerOptions()
        self.informers = InformerFactory(client)
        self.controllers: dict[str, QueueController] = {
            name: make(client, self.informers, self.options)
            for name, make in (factories if factories is not None else builtin_factories()).items()
            if _wanted(name, self.options.enabled)
        }

    async def start(self) -> None:
        """Start the informers, wait until every cache has synced, then the controllers' workers."""
        await self.informers.start()
        for controller in self.controllers.values():
            await controller.start()
        log.info("controllers running: %s", ", ".join(self.controllers))

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.controllers.values()))
        await self.informers.stop()
