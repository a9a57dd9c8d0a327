"""kubelite's plugins by CNI type name (the names of the reference plugins they stand in for)."""

from __future__ import annotations

from kubelite.cni.bridge import BridgePlugin
from kubelite.cni.hostlocal import HostLocalPlugin
from kubelite.cni.loopback import LoopbackPlugin
from kubelite.cni.plugin import Plugin
from kubelite.cni.portmap import PortMapPlugin

__all__ = ["BUILTIN_TYPES", "builtin_plugins"]

BUILTIN_TYPES = ("bridge", "host-local", "loopback", "portmap")


def builtin_plugins() -> dict[str, Plugin]:
    """A fresh ``{type: plugin}`` map of kubelite's plugins."""
    return {
        "bridge": BridgePlugin(),
        "host-local": HostLocalPlugin(),
        "loopback": LoopbackPlugin(),
        "portmap": PortMapPlugin(),
    }
