"""CNI wire types: results, errors, port mappings and spec versions (pure; no I/O).

A plugin's ADD prints a *result* (``interfaces``, ``ips``, ``routes``, ``dns``); any command that
fails prints an *error* ``{"cniVersion", "code", "msg", "details"}`` and exits non-zero. Both become
frozen dataclasses here the moment they arrive, and turn back into JSON only at the edge
(:meth:`CniResult.to_json`, :meth:`CniError.to_json`).

Versions: kubelite speaks spec 0.3.0, 0.3.1, 0.4.0 and 1.0.0. The result formats differ in one point
that matters: before 1.0.0 each ``ips[]`` entry carries ``"version": "4"|"6"``. CHECK exists from
0.4.0 on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CHECK_MIN_VERSION",
    "CURRENT_VERSION",
    "DNS",
    "SUPPORTED_VERSIONS",
    "CniError",
    "CniResult",
    "ErrorCode",
    "IPConfig",
    "Interface",
    "IpAddress",
    "IpInterface",
    "IpNetwork",
    "PortMapping",
    "Route",
    "check_version",
    "version_tuple",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
JsonObject = dict[str, Any]

CURRENT_VERSION = "1.0.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
CHECK_MIN_VERSION = "0.4.0"


class ErrorCode:
    """Well-known error codes from the CNI spec (1-99 are reserved; 100+ are plugin specific)."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENV = 4
    IO_FAILURE = 5
    DECODE_FAILURE = 6
    INVALID_CONFIG = 7
    TRY_AGAIN = 11
    # What libcni's skel uses for "anything else".
    INTERNAL = 999


class CniError(Exception):
    """A CNI error: ``code`` (see :class:`ErrorCode`), ``msg`` (a sentence), ``details`` (more text).

    ``plugin`` names the plugin type that failed when known (set by the runners).
    """

    def __init__(self, code: int, msg: str, details: str = "", *, plugin: str | None = None) -> None:
        self.code = code
        self.msg = msg
        self.details = details
        self.plugin = plugin
        text = msg if not details else f"{msg} ({details})"
        super().__init__(f"{plugin} plugin: {text}" if plugin and not msg.startswith(plugin) else text)

    @property
    def try_again(self) -> bool:
        """The plugin asked the runtime to retry later (code 11)."""
        return self.code == ErrorCode.TRY_AGAIN

    def to_json(self, cni_version: str = CURRENT_VERSION) -> JsonObject:
        out: JsonObject = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, plugin: str | None = None) -> CniError:
        code = data.get("code")
        return cls(
            code if isinstance(code, int) else ErrorCode.INTERNAL,
            str(data.get("msg") or "the plugin failed without a message"),
            str(data.get("details") or ""),
            plugin=plugin,
        )


def version_tuple(version: str) -> tuple[int, int, int]:
    """``"0.4.0"`` -> ``(0, 4, 0)``; raises :class:`CniError` (code 1) for something else."""
    parts = version.split(".")
    try:
        if len(parts) != 3:
            raise ValueError(version)
        major, minor, patch = (int(p) for p in parts)
    except ValueError:
        raise CniError(
            ErrorCode.INCOMPATIBLE_VERSION, f'cniVersion "{version}" is not a version like "1.0.0"'
        ) from None
    return major, minor, patch


def check_version(version: str) -> str:
    """Return ``version`` if kubelite's plugins speak it, else raise :class:`CniError` (code 1)."""
    if version not in SUPPORTED_VERSIONS:
        version_tuple(version)
        raise CniError(
            ErrorCode.INCOMPATIBLE_VERSION,
            f'cniVersion "{version}" is not supported; use one of {", ".join(SUPPORTED_VERSIONS)}',
        )
    return version


# --------------------------------------------------------------------------- results


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise CniError(ErrorCode.DECODE_FAILURE, f"{where}.{key} must be a string, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Interface:
    """An interface a plugin created: ``sandbox`` is the netns path for one inside the container."""

    name: str
    mac: str = ""
    sandbox: str = ""

    def to_json(self) -> JsonObject:
        out: JsonObject = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if self.sandbox:
            out["sandbox"] = self.sandbox
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "interfaces[]") -> Interface:
        return cls(_str(data, "name", where), _str(data, "mac", where), _str(data, "sandbox", where))


@dataclass(frozen=True, slots=True)
class IPConfig:
    """An address (with prefix) given to ``interfaces[interface]``, and its gateway."""

    address: IpInterface
    gateway: IpAddress | None = None
    interface: int | None = None

    def to_json(self, cni_version: str) -> JsonObject:
        out: JsonObject = {}
        if version_tuple(cni_version) < (1, 0, 0):
            out["version"] = str(self.address.version)
        out["address"] = self.address.with_prefixlen
        if self.gateway is not None:
            out["gateway"] = str(self.gateway)
        if self.interface is not None:
            out["interface"] = self.interface
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "ips[]") -> IPConfig:
        try:
            address = ipaddress.ip_interface(_str(data, "address", where))
            gw = data.get("gateway")
            gateway = ipaddress.ip_address(gw) if gw else None
        except ValueError as exc:
            raise CniError(ErrorCode.DECODE_FAILURE, f"{where}: {exc}") from None
        index = data.get("interface")
        if index is not None and not isinstance(index, int):
            raise CniError(ErrorCode.DECODE_FAILURE, f"{where}.interface must be an integer, got {index!r}")
        return cls(address, gateway, index)


@dataclass(frozen=True, slots=True)
class Route:
    """A route in the container: ``dst`` through ``gw`` (``None``: the interface's default gateway)."""

    dst: IpNetwork
    gw: IpAddress | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"dst": self.dst.with_prefixlen}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "routes[]") -> Route:
        try:
            dst = ipaddress.ip_network(_str(data, "dst", where), strict=False)
            gw = data.get("gw")
            return cls(dst, ipaddress.ip_address(gw) if gw else None)
        except ValueError as exc:
            raise CniError(ErrorCode.DECODE_FAILURE, f"{where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class DNS:
    """DNS settings a plugin suggests (kubelite's agent writes resolv.conf itself; kept for callers)."""

    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.nameservers or self.domain or self.search or self.options)

    def to_json(self) -> JsonObject:
        out: JsonObject = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "dns") -> DNS:
        if not data:
            return cls()
        if not isinstance(data, Mapping):
            raise CniError(ErrorCode.DECODE_FAILURE, f"{where} must be an object, got {data!r}")

        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise CniError(ErrorCode.DECODE_FAILURE, f"{where}.{key} must be a list of strings")
            return tuple(value)

        return cls(strings("nameservers"), _str(data, "domain", where), strings("search"), strings("options"))


@dataclass(frozen=True, slots=True)
class CniResult:
    """The result of ADD (also the ``prevResult`` handed to the next plugin of a chain)."""

    cni_version: str = CURRENT_VERSION
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = field(default_factory=DNS)

    def to_json(self, cni_version: str | None = None) -> JsonObject:
        """The result as JSON in ``cni_version``'s format (default: the result's own version)."""
        version = cni_version or self.cni_version
        out: JsonObject = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [i.to_json() for i in self.interfaces]
        if self.ips:
            out["ips"] = [ip.to_json(version) for ip in self.ips]
        if self.routes:
            out["routes"] = [r.to_json() for r in self.routes]
        out["dns"] = self.dns.to_json()
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "result") -> CniResult:
        """Parse any supported version's result (0.3.0 .. 1.0.0); raises :class:`CniError` (code 6)."""
        if not isinstance(data, Mapping):
            raise CniError(ErrorCode.DECODE_FAILURE, f"{where} must be a JSON object, got {data!r}")
        version = data.get("cniVersion") or CURRENT_VERSION
        if not isinstance(version, str):
            raise CniError(ErrorCode.DECODE_FAILURE, f"{where}.cniVersion must be a string")

        def items(key: str) -> list[Mapping[str, Any]]:
            value = data.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
                raise CniError(ErrorCode.DECODE_FAILURE, f"{where}.{key} must be a list of objects")
            return value

        return cls(
            version,
            tuple(
                Interface.from_json(i, f"{where}.interfaces[{n}]") for n, i in enumerate(items("interfaces"))
            ),
            tuple(IPConfig.from_json(i, f"{where}.ips[{n}]") for n, i in enumerate(items("ips"))),
            tuple(Route.from_json(r, f"{where}.routes[{n}]") for n, r in enumerate(items("routes"))),
            DNS.from_json(data.get("dns"), f"{where}.dns"),
        )

    def container_ips(self, sandbox: str | None = None) -> tuple[IPConfig, ...]:
        """The addresses that belong to an interface inside a container (any sandbox if ``None``)."""
        chosen = []
        for ip in self.ips:
            if ip.interface is None or not 0 <= ip.interface < len(self.interfaces):
                chosen.append(ip)
                continue
            box = self.interfaces[ip.interface].sandbox
            if box and (sandbox is None or box == sandbox):
                chosen.append(ip)
        return tuple(chosen)


# --------------------------------------------------------------------------- port mappings

_PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True, slots=True)
class PortMapping:
    """One ``portMappings`` capability entry: ``hostIP:hostPort/protocol`` -> the pod's ``containerPort``."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def __post_init__(self) -> None:
        for name, port in (("hostPort", self.host_port), ("containerPort", self.container_port)):
            if not 1 <= port <= 65535:
                raise CniError(
                    ErrorCode.INVALID_CONFIG, f"portMappings: {name} {port} is not a port (1-65535)"
                )
        if self.protocol not in _PROTOCOLS:
            raise CniError(
                ErrorCode.INVALID_CONFIG,
                f'portMappings: protocol "{self.protocol}" is not one of {", ".join(_PROTOCOLS)}',
            )
        if self.host_ip:
            try:
                ipaddress.ip_address(self.host_ip)
            except ValueError:
                raise CniError(
                    ErrorCode.INVALID_CONFIG, f'portMappings: hostIP "{self.host_ip}" is not an IP address'
                ) from None

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
        }
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "portMappings[]") -> PortMapping:
        if not isinstance(data, Mapping):
            raise CniError(ErrorCode.INVALID_CONFIG, f"{where} must be an object, got {data!r}")
        host_port, container_port = data.get("hostPort"), data.get("containerPort")
        if not isinstance(host_port, int) or not isinstance(container_port, int):
            raise CniError(ErrorCode.INVALID_CONFIG, f"{where} needs integer hostPort and containerPort")
        protocol = data.get("protocol") or "tcp"
        host_ip = data.get("hostIP") or ""
        if not isinstance(protocol, str) or not isinstance(host_ip, str):
            raise CniError(ErrorCode.INVALID_CONFIG, f"{where}: protocol and hostIP must be strings")
        return cls(
            host_port, container_port, protocol.lower(), "" if host_ip in ("0.0.0.0", "::") else host_ip
        )
