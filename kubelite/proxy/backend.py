"""One Protocol for the proxy's back ends, and the one place that chooses between them.

A back end turns a :class:`~kubelite.proxy.model.ProxyState` into something that moves packets
(nftables or iptables rules through the ``kubelite.host`` runners, or userspace listeners). It is
told which service ports changed since its last sync (``None`` = rewrite everything), so a change
costs in proportion to its size.
"""

from __future__ import annotations

from typing import Protocol

from kubelite.proxy.model import ProxyState, ServicePortName

__all__ = ["MODES", "ProxyBackend"]

MODES = ("nftables", "iptables", "userspace")


class ProxyBackend(Protocol):
    mode: str

    async def sync(self, state: ProxyState, changed: frozenset[ServicePortName] | None) -> None:
        """Make the data path match ``state``. ``changed`` lists the service ports whose service
        or endpoints changed since the previous call; ``None`` asks for a full rewrite (first sync,
        periodic resync, or after an error). Also deletes stale UDP conntrack entries for endpoints
        that went away. Raises on failure; the runner retries with a full sync."""
        ...

    async def cleanup(self) -> None:
        """Remove everything this back end installed (rules, tables, listeners)."""
        ...
