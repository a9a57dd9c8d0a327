"""Strategies per resource; ``strategy_for`` picks the one a resource type uses."""

from __future__ import annotations

from kubelite.api.resources import ResourceType
from kubelite.apiserver.registry.base import RegistryConfig, RegistryContext, Strategy
from kubelite.apiserver.registry.namespace import NamespaceStrategy
from kubelite.apiserver.registry.pod import PodStrategy
from kubelite.apiserver.registry.service import ServiceStrategy

__all__ = ["RegistryConfig", "RegistryContext", "Strategy", "strategy_for"]

_CREATE_ON_UPDATE = frozenset({"Endpoints", "Event", "Node", "Lease", "EndpointSlice"})


def strategy_for(rt: ResourceType, ctx: RegistryContext) -> Strategy:
    cls: type[Strategy] = {
        "Service": ServiceStrategy,
        "Pod": PodStrategy,
        "Namespace": NamespaceStrategy,
    }.get(rt.kind, Strategy)
    strategy = cls(rt, ctx)
    strategy.allow_create_on_update = rt.kind in _CREATE_ON_UPDATE
    return strategy
