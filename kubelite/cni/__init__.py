"""CNI-spec plugins (bridge, host-local, loopback, portmap) and the caller side.

Layout (one module per concern):

- ``types``     results, errors, port mappings, spec versions (pure)
- ``config``    network configuration lists, runtime parameters, a plugin's stdin, typed field reads (pure)
- ``netops``    the plugins' door to the kernel (``ip -batch``, nft, sysctls) with a fake
- ``plugin``    the :class:`Plugin` protocol, the per-call context with its deferred queues, the spec's main
- ``hostlocal`` / ``bridge`` / ``loopback`` / ``portmap``   the plugins; ``nftrules`` their nft text (pure)
- ``exec``      executing plugin binaries per the spec
- ``invoke``    :class:`CniRunner`, :class:`InProcessCni`, :class:`ExecCni`, result cache, shims
- ``__main__``  ``python -m kubelite.cni TYPE`` runs one plugin as an executable

See README.md for the fields supported, the nft table layout and measured figures.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubelite.cni.config import NetworkConfigList, PluginConfig, PluginInput, RuntimeConf
    from kubelite.cni.invoke import CniRunner, ExecCni, InProcessCni, ResultCache, install_plugin_executables
    from kubelite.cni.netops import FakePluginHost, Netns, PluginHost, RealPluginHost
    from kubelite.cni.plugin import CallContext, Plugin, PluginState
    from kubelite.cni.registry import BUILTIN_TYPES, builtin_plugins
    from kubelite.cni.types import (
        DNS,
        CniError,
        CniResult,
        ErrorCode,
        Interface,
        IPConfig,
        PortMapping,
        Route,
    )

# Loaded on first use, so ``python -m kubelite.cni TYPE`` (one plugin per process) imports only
# what that plugin needs.
_EXPORTS = {
    "kubelite.cni.config": ("NetworkConfigList", "PluginConfig", "PluginInput", "RuntimeConf"),
    "kubelite.cni.invoke": (
        "CniRunner", "ExecCni", "InProcessCni", "ResultCache", "install_plugin_executables",
    ),
    "kubelite.cni.netops": ("FakePluginHost", "Netns", "PluginHost", "RealPluginHost"),
    "kubelite.cni.plugin": ("CallContext", "Plugin", "PluginState"),
    "kubelite.cni.registry": ("BUILTIN_TYPES", "builtin_plugins"),
    "kubelite.cni.types": (
        "DNS", "CniError", "CniResult", "ErrorCode", "IPConfig", "Interface", "PortMapping", "Route",
    ),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "BUILTIN_TYPES",
    "DNS",
    "CallContext",
    "CniError",
    "CniResult",
    "CniRunner",
    "ErrorCode",
    "ExecCni",
    "FakePluginHost",
    "IPConfig",
    "InProcessCni",
    "Interface",
    "Netns",
    "NetworkConfigList",
    "Plugin",
    "PluginConfig",
    "PluginHost",
    "PluginInput",
    "PluginState",
    "PortMapping",
    "RealPluginHost",
    "ResultCache",
    "Route",
    "RuntimeConf",
    "builtin_plugins",
    "install_plugin_executables",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'kubelite.cni' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
