"""Network configuration lists, runtime parameters, and what a runtime hands each plugin (pure).

- :class:`NetworkConfigList` is a parsed ``.conflist`` (``{"cniVersion", "name", "plugins": [...]}``);
  a single-plugin ``.conf`` is accepted and becomes a list of one.
- :class:`RuntimeConf` is what the caller knows about one attachment: container id, netns path,
  interface name, ``CNI_ARGS`` pairs and capability arguments (``portMappings`` ...).
- :class:`PluginInput` is one plugin's stdin as the spec builds it: the plugin's object from the
  list plus ``name``, ``cniVersion``, ``runtimeConfig`` (only the capabilities the plugin declares)
  and ``prevResult``. In-process calls keep ``prevResult`` as a :class:`~kubelite.cni.types.CniResult`
  object; :meth:`PluginInput.stdin` renders the JSON an executable gets.
- :class:`Fields` reads typed fields from a plugin's JSON and turns every mistake into a sentence that
  names the field path, e.g. ``bridge plugin: ipam.ranges[0][0].subnet "10.1.0.0/33" is not a CIDR``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubelite.cni.types import (
    CniError,
    CniResult,
    ErrorCode,
    IpAddress,
    IpNetwork,
    PortMapping,
    check_version,
)

__all__ = [
    "Fields",
    "NetworkConfigList",
    "PluginConfig",
    "PluginInput",
    "RuntimeConf",
    "parse_cni_args",
]

JsonObject = dict[str, Any]

_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_IFNAME = re.compile(r"^[^/:\s]{1,15}$")


def _config_error(message: str) -> CniError:
    return CniError(ErrorCode.INVALID_CONFIG, message)


def _load_json(data: str | bytes | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise CniError(ErrorCode.DECODE_FAILURE, f"{what} is not valid JSON: {exc}") from None
    if not isinstance(parsed, Mapping):
        raise CniError(ErrorCode.DECODE_FAILURE, f"{what} must be a JSON object")
    return parsed


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """One entry of ``plugins``: its ``type``, the capabilities it declares and its JSON as written."""

    type: str
    raw: Mapping[str, Any]
    capabilities: frozenset[str] = frozenset()

    @classmethod
    def from_json(cls, data: Any, where: str) -> PluginConfig:
        if not isinstance(data, Mapping):
            raise _config_error(f"{where} must be an object")
        kind = data.get("type")
        if not isinstance(kind, str) or not kind or "/" in kind:
            raise _config_error(f'{where}.type must name a plugin (e.g. "bridge"), got {kind!r}')
        caps = data.get("capabilities") or {}
        if not isinstance(caps, Mapping):
            raise _config_error(f"{where}.capabilities must be an object of name: true")
        return cls(kind, dict(data), frozenset(k for k, v in caps.items() if v is True))


@dataclass(frozen=True, slots=True)
class NetworkConfigList:
    """A parsed network configuration list (``.conflist``)."""

    name: str
    cni_version: str
    plugins: tuple[PluginConfig, ...]
    disable_check: bool = False

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> NetworkConfigList:
        """Parse a conflist (or a single-plugin conf, which becomes a list of one)."""
        obj = _load_json(data, "the network configuration")
        name, version = obj.get("name"), obj.get("cniVersion")
        if not isinstance(name, str) or not name or "/" in name:
            raise _config_error(f'the network configuration needs a "name" (no "/"), got {name!r}')
        if not isinstance(version, str):
            raise _config_error(f'network "{name}": "cniVersion" must be a string like "1.0.0"')
        if "plugins" not in obj:
            if "type" not in obj:
                raise _config_error(f'network "{name}" has neither "plugins" nor "type"')
            single = {k: v for k, v in obj.items() if k not in ("cniVersion", "name")}
            plugins: tuple[PluginConfig, ...] = (PluginConfig.from_json(single, f'network "{name}"'),)
        else:
            items = obj["plugins"]
            if not isinstance(items, list) or not items:
                raise _config_error(f'network "{name}": "plugins" must be a non-empty list')
            plugins = tuple(PluginConfig.from_json(p, f"plugins[{i}]") for i, p in enumerate(items))
        disable = obj.get("disableCheck", False)
        if isinstance(disable, str):  # libcni accepts "true"/"false" strings too
            disable = disable.lower() == "true"
        return cls(name, version, plugins, bool(disable))

    @classmethod
    def from_file(cls, path: str | Path) -> NetworkConfigList:
        return cls.from_json(Path(path).read_bytes())

    def to_json(self) -> JsonObject:
        out: JsonObject = {"cniVersion": self.cni_version, "name": self.name}
        if self.disable_check:
            out["disableCheck"] = True
        out["plugins"] = [dict(p.raw) for p in self.plugins]
        return out


def parse_cni_args(text: str) -> tuple[tuple[str, str], ...]:
    """``"K8S_POD_NAMESPACE=ns;K8S_POD_NAME=x"`` -> pairs; raises :class:`CniError` (code 4)."""
    pairs = []
    for item in filter(None, text.split(";")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CniError(ErrorCode.INVALID_ENV, f'CNI_ARGS item "{item}" is not KEY=VALUE')
        pairs.append((key, value))
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class RuntimeConf:
    """One attachment: which container, which netns path, which interface name, and its arguments.

    ``args`` become ``CNI_ARGS`` (e.g. ``K8S_POD_NAMESPACE``, ``K8S_POD_NAME``); ``port_mappings`` and
    ``capability_args`` become ``runtimeConfig`` for the plugins that declare the capability.
    """

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: tuple[tuple[str, str], ...] = ()
    port_mappings: tuple[PortMapping, ...] = ()
    capability_args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _CONTAINER_ID.match(self.container_id):
            raise CniError(
                ErrorCode.INVALID_ENV,
                f'container id "{self.container_id}" must be letters, digits, "_", "." or "-"',
            )
        if not _IFNAME.match(self.ifname):
            raise CniError(ErrorCode.INVALID_ENV, f'interface name "{self.ifname}" is not a Linux name')

    def cni_args(self) -> str:
        """``CNI_ARGS``: ``IgnoreUnknown=1`` first (as the CRI runtimes send it: the reference plugins
        refuse arguments they do not know otherwise), then ``args``."""
        if not self.args:
            return ""
        pairs = (
            self.args
            if any(k == "IgnoreUnknown" for k, _ in self.args)
            else (("IgnoreUnknown", "1"), *self.args)
        )
        return ";".join(f"{k}={v}" for k, v in pairs)

    def runtime_config(self, capabilities: frozenset[str]) -> JsonObject:
        """The ``runtimeConfig`` for a plugin declaring ``capabilities``."""
        available: dict[str, Any] = dict(self.capability_args)
        if self.port_mappings:
            available["portMappings"] = [m.to_json() for m in self.port_mappings]
        return {k: v for k, v in available.items() if k in capabilities}


@dataclass(frozen=True, slots=True)
class PluginInput:
    """One plugin's configuration as the runtime gives it (stdin), with ``prevResult`` parsed."""

    conf: Mapping[str, Any]
    prev_result: CniResult | None = None

    @property
    def type(self) -> str:
        return str(self.conf.get("type", ""))

    @property
    def name(self) -> str:
        return str(self.conf.get("name", ""))

    @property
    def cni_version(self) -> str:
        return str(self.conf.get("cniVersion", ""))

    @property
    def runtime_config(self) -> Mapping[str, Any]:
        rc = self.conf.get("runtimeConfig")
        return rc if isinstance(rc, Mapping) else {}

    def stdin(self) -> bytes:
        """The JSON an executable plugin reads, ``prevResult`` included."""
        obj = {k: v for k, v in self.conf.items() if k != "prevResult"}
        if self.prev_result is not None:
            obj["prevResult"] = self.prev_result.to_json(self.cni_version)
        return json.dumps(obj, separators=(",", ":")).encode()

    @classmethod
    def for_chain(
        cls, net: NetworkConfigList, plugin: PluginConfig, rt: RuntimeConf, prev: CniResult | None
    ) -> PluginInput:
        """What the spec's runtime builds for ``plugin`` in ``net`` (name/cniVersion/runtimeConfig)."""
        conf = dict(plugin.raw)
        conf["name"] = net.name
        conf["cniVersion"] = net.cni_version
        conf.pop("prevResult", None)
        runtime_config = rt.runtime_config(plugin.capabilities)
        if runtime_config:
            conf["runtimeConfig"] = runtime_config
        return cls(conf, prev)

    @classmethod
    def from_stdin(cls, data: str | bytes | Mapping[str, Any]) -> PluginInput:
        """Parse a plugin's stdin; checks ``cniVersion`` and parses ``prevResult``."""
        obj = _load_json(data, "the plugin configuration on stdin")
        version = obj.get("cniVersion")
        if not isinstance(version, str):
            raise CniError(ErrorCode.INVALID_CONFIG, 'the plugin configuration needs a "cniVersion" string')
        check_version(version)
        raw_prev = obj.get("prevResult")
        prev = CniResult.from_json(raw_prev, "prevResult") if raw_prev else None
        return cls(dict(obj), prev)


class Fields:
    """Typed reads from one JSON object with errors that name the field's path.

    ``Fields(conf, plugin="bridge")`` reads the top level (``text``, ``flag``, ``integer``, ``items``,
    ``cidr``, ``ip``); ``.sub("ipam")``, ``.each("routes")`` and ``.item(key, i, value)`` descend.
    Every error is a :class:`CniError` with code 7 whose message starts ``"<plugin> plugin: <path>"``.
    """

    def __init__(self, data: Mapping[str, Any], *, plugin: str, path: str = "") -> None:
        self.data = data
        self.plugin = plugin
        self.path = path

    def where(self, key: str | None = None) -> str:
        if not key:
            return self.path or "the configuration"
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str | None, problem: str) -> CniError:
        return CniError(ErrorCode.INVALID_CONFIG, f"{self.plugin} plugin: {self.where(key)} {problem}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def text(self, key: str, default: str = "") -> str:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {json.dumps(value)}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {json.dumps(value)}")
        return value

    def integer(self, key: str, default: int = 0, *, low: int | None = None, high: int | None = None) -> int:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, f"must be an integer, got {json.dumps(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return value

    def sub(self, key: str) -> Fields | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be an object, got {json.dumps(value)}")
        return Fields(value, plugin=self.plugin, path=self.where(key))

    def items(self, key: str) -> Sequence[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, f"must be a list, got {json.dumps(value)}")
        return value

    def child(self, path: str, value: Any) -> Fields:
        """``Fields`` for an object found at the full ``path`` (e.g. ``ipam.ranges[0][1]``)."""
        if not isinstance(value, Mapping):
            raise CniError(ErrorCode.INVALID_CONFIG, f"{self.plugin} plugin: {path} must be an object")
        return Fields(value, plugin=self.plugin, path=path)

    def item(self, key: str, index: int, value: Any) -> Fields:
        """``Fields`` for element ``index`` (an object) of the list at ``key``: path ``key[index]``."""
        return self.child(f"{self.where(key)}[{index}]", value)

    def each(self, key: str) -> list[Fields]:
        """``Fields`` for every object of the list at ``key``."""
        return [self.item(key, i, value) for i, value in enumerate(self.items(key))]

    def cidr_at(self, key: str, index: int, value: Any) -> IpNetwork:
        """Element ``index`` of the list at ``key`` as a CIDR."""
        return Fields({"": value}, plugin=self.plugin, path=f"{self.where(key)}[{index}]").cidr("")

    def cidr(self, key: str) -> IpNetwork:
        """A network like ``10.1.0.0/24`` (host bits are cleared, as the reference plugins do)."""
        text = self.text(key)
        if not text:
            raise self.error(key, "is missing (a CIDR like 10.244.1.0/24)")
        try:
            if "/" not in text:
                raise ValueError(text)
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise self.error(key, f'"{text}" is not a CIDR') from None

    def ip(self, key: str) -> IpAddress | None:
        text = self.text(key)
        if not text:
            return None
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            raise self.error(key, f'"{text}" is not an IP address') from None
