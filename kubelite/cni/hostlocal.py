"""``host-local`` IPAM: addresses from local ranges, one file per allocated address (pure Python).

Configuration (the ``ipam`` object of the calling plugin), as the reference plugin reads it::

    {"type": "host-local",
     "ranges": [[{"subnet": "10.244.1.0/24", "rangeStart": "10.244.1.10", "rangeEnd": "10.244.1.250",
                  "gateway": "10.244.1.1"}]],           # a list of range sets; one address per set
     "subnet": "10.244.1.0/24",                         # the old single-range form (prepended)
     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/var/lib/cni/networks", "resolvConf": "/etc/..."}

Store layout (compatible with the reference plugin, so either can take over a node):
``<dataDir>/<network name>/<ip>`` holds ``<container id>\\r\\n<ifname>``; ``last_reserved_ip.<set
index>`` holds the last address handed out; ``lock`` is taken with ``flock`` around every change.

Allocation is round robin: the next free address after the last reserved one, wrapping through
the set's ranges; the gateway, the network address and (IPv4) the broadcast address are never
handed out. A container gets at most one address per range set (a second ADD is an error, as in
the spec); DEL releases by container id + ifname and is idempotent.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import ipaddress
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubelite.cni.config import Fields, PluginInput
from kubelite.cni.plugin import CallContext
from kubelite.cni.types import (
    DNS,
    CniError,
    CniResult,
    ErrorCode,
    IpAddress,
    IPConfig,
    IpNetwork,
    Route,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "AllocationStore",
    "HostLocalConfig",
    "HostLocalPlugin",
    "IpRange",
    "candidates",
    "parse_host_local",
]

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
LAST_RESERVED = "last_reserved_ip."
LINE_BREAK = "\r\n"
LOCK_WAIT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class IpRange:
    """One range: ``start``..``end`` (inclusive) inside ``subnet``; ``gateway`` is never handed out."""

    subnet: IpNetwork
    start: IpAddress
    end: IpAddress
    gateway: IpAddress

    def __contains__(self, address: object) -> bool:
        return (
            isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
            and address.version == self.subnet.version
            and self.start <= address <= self.end  # type: ignore[operator]
        )

    def usable(self, address: IpAddress) -> bool:
        if address == self.gateway or address == self.subnet.network_address:
            return False
        return not (self.subnet.version == 4 and address == self.subnet.broadcast_address)

    def __str__(self) -> str:
        return f"{self.subnet} ({self.start}-{self.end})"


RangeSet = tuple[IpRange, ...]


@dataclass(frozen=True, slots=True)
class HostLocalConfig:
    """The parsed ``ipam`` object; ``network`` is the network's name (the store's directory)."""

    network: str
    ranges: tuple[RangeSet, ...]
    routes: tuple[Route, ...] = ()
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    resolv_conf: str = ""
    requested: tuple[IpAddress, ...] = ()

    @property
    def store_dir(self) -> Path:
        return self.data_dir / self.network


def _parse_range(f: Fields) -> IpRange:
    subnet = f.cidr("subnet")
    if subnet.prefixlen > subnet.max_prefixlen - 2:
        raise f.error(
            "subnet", f'"{subnet}" is too small to allocate from (use /{subnet.max_prefixlen - 2} or larger)'
        )
    first, last = subnet.network_address + 1, subnet.broadcast_address - (1 if subnet.version == 4 else 0)
    gateway = f.ip("gateway") or first
    for key, value in (("gateway", gateway),):
        if value not in subnet:
            raise f.error(key, f'"{value}" is not in the subnet {subnet}')
    start = f.ip("rangeStart") or first
    end = f.ip("rangeEnd") or last
    for key, value in (("rangeStart", start), ("rangeEnd", end)):
        if value.version != subnet.version or value not in subnet:
            raise f.error(key, f'"{value}" is not in the subnet {subnet}')
    if start > end:  # type: ignore[operator]
        raise f.error("rangeStart", f'"{start}" comes after rangeEnd "{end}"')
    return IpRange(subnet, start, end, gateway)


def _overlap(a: IpRange, b: IpRange) -> bool:
    return a.subnet.version == b.subnet.version and not (a.end < b.start or b.end < a.start)  # type: ignore[operator]


def parse_host_local(inp: PluginInput, ctx_args: Sequence[tuple[str, str]] = ()) -> HostLocalConfig:
    """Read the ``ipam`` section of ``inp`` (errors name the calling plugin, e.g. ``bridge plugin:``)."""
    top = Fields(inp.conf, plugin=inp.type or "host-local")
    ipam = top.sub("ipam")
    if ipam is None:
        raise top.error("ipam", 'is missing (e.g. {"type": "host-local", "ranges": [[{"subnet": ...}]]})')
    sets: list[RangeSet] = []
    if ipam.has("subnet"):
        sets.append((_parse_range(ipam),))
    for i, raw_set in enumerate(ipam.items("ranges")):
        if not isinstance(raw_set, list) or not raw_set:
            raise ipam.error(f"ranges[{i}]", "must be a non-empty list of ranges")
        base = f"{ipam.where('ranges')}[{i}]"
        parsed = tuple(_parse_range(ipam.child(f"{base}[{j}]", r)) for j, r in enumerate(raw_set))
        if len({r.subnet.version for r in parsed}) != 1:
            raise ipam.error(f"ranges[{i}]", "mixes IPv4 and IPv6 ranges; put each family in its own set")
        sets.append(parsed)
    if not sets:
        raise ipam.error("ranges", 'is missing: give "ranges": [[{"subnet": "10.244.1.0/24"}]] or "subnet"')
    flat = [(i, r) for i, s in enumerate(sets) for r in s]
    for n, (i, a) in enumerate(flat):
        for j, b in flat[n + 1 :]:
            if _overlap(a, b):
                raise ipam.error("ranges", f"has overlapping ranges {a} (set {i}) and {b} (set {j})")
    routes = []
    for rf in ipam.each("routes"):
        routes.append(Route(rf.cidr("dst"), rf.ip("gw")))
    requested: list[IpAddress] = []
    for key, value in ctx_args:
        if key == "IP":
            requested.extend(_requested(ipam, "CNI_ARGS IP", value.split(",")))
    rc_ips = inp.runtime_config.get("ips")
    if isinstance(rc_ips, list):
        requested.extend(_requested(ipam, "runtimeConfig.ips", rc_ips))
    return HostLocalConfig(
        network=inp.name,
        ranges=tuple(sets),
        routes=tuple(routes),
        data_dir=Path(ipam.text("dataDir") or DEFAULT_DATA_DIR),
        resolv_conf=ipam.text("resolvConf"),
        requested=tuple(requested),
    )


def _requested(f: Fields, where: str, values: Sequence[object]) -> list[IpAddress]:
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_interface(str(value).strip()).ip)
        except ValueError:
            raise f.error(None, f'{where}: "{value}" is not an IP address') from None
    return out


def _span(r: IpRange, low: int, high: int) -> Iterator[tuple[IpAddress, IpRange]]:
    make = type(r.start)
    for value in range(low, high + 1):
        address = make(value)
        if r.usable(address):
            yield address, r


def candidates(ranges: RangeSet, last_reserved: IpAddress | None) -> Iterator[tuple[IpAddress, IpRange]]:
    """Every usable address of ``ranges`` once, starting after ``last_reserved`` (round robin).

    Like the reference: from ``last_reserved + 1`` to the end of its range, through the following
    ranges (wrapping), and finally the start of its own range up to ``last_reserved`` itself.
    """
    first = next((i for i, r in enumerate(ranges) if last_reserved is not None and last_reserved in r), None)
    if first is None or last_reserved is None:
        for r in ranges:
            yield from _span(r, int(r.start), int(r.end))
        return
    own = ranges[first]
    yield from _span(own, int(last_reserved) + 1, int(own.end))
    for index in [*range(first + 1, len(ranges)), *range(first)]:
        r = ranges[index]
        yield from _span(r, int(r.start), int(r.end))
    yield from _span(own, int(own.start), int(last_reserved))


class AllocationStore:
    """The reference plugin's on-disk store for one network (``<dataDir>/<network>``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None

    async def __aenter__(self) -> AllocationStore:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() > deadline:
                os.close(fd)
                raise CniError(
                    ErrorCode.TRY_AGAIN,
                    f"host-local: {self.directory}/lock is held by another process; try again",
                )
            await asyncio.sleep(0.002)
        self._fd = fd
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def allocations(self) -> dict[str, str]:
        """``{ip: "<id>\\r\\n<ifname>"}`` for every allocated address."""
        out: dict[str, str] = {}
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return out
        for entry in entries:
            name = entry.name
            if name == "lock" or name.startswith(LAST_RESERVED) or not entry.is_file():
                continue
            try:
                with open(entry.path, "rb") as handle:  # binary: the separator is \r\n
                    out[name] = handle.read().decode(errors="replace").strip()
            except FileNotFoundError:
                continue
        return out

    def owned_by(self, container_id: str, ifname: str) -> list[str]:
        """Addresses allocated to (container id, ifname) (old files holding only the id count too)."""
        key, old = f"{container_id.strip()}{LINE_BREAK}{ifname}", container_id.strip()
        return [ip for ip, owner in self.allocations().items() if owner in (key, old)]

    def last_reserved(self, index: int) -> IpAddress | None:
        try:
            text = (self.directory / f"{LAST_RESERVED}{index}").read_text().strip()
            return ipaddress.ip_address(text)
        except (FileNotFoundError, ValueError):
            return None

    def reserve(self, address: IpAddress, container_id: str, ifname: str, index: int) -> bool:
        """Create ``<ip>`` exclusively; ``False`` when somebody holds it already."""
        path = self.directory / str(address)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, f"{container_id.strip()}{LINE_BREAK}{ifname}".encode())
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        (self.directory / f"{LAST_RESERVED}{index}").write_text(str(address))
        return True

    def release(self, container_id: str, ifname: str) -> list[str]:
        """Remove every allocation of (container id, ifname); returns the addresses released."""
        released = self.owned_by(container_id, ifname)
        for ip in released:
            (self.directory / ip).unlink(missing_ok=True)
        return released


def _allocate_set(
    store: AllocationStore,
    index: int,
    ranges: RangeSet,
    container_id: str,
    ifname: str,
    taken: set[str],
    requested: IpAddress | None,
) -> tuple[IpAddress, IpRange]:
    if requested is not None:
        r = next((r for r in ranges if requested in r), None)
        if r is None or not r.usable(requested):
            shown = ", ".join(str(r) for r in ranges)
            raise CniError(
                ErrorCode.INTERNAL, f"host-local: requested address {requested} is not usable in {shown}"
            )
        if str(requested) in taken or not store.reserve(requested, container_id, ifname, index):
            raise CniError(
                ErrorCode.INTERNAL, f"host-local: requested address {requested} is already allocated"
            )
        return requested, r
    for address, r in candidates(ranges, store.last_reserved(index)):
        if str(address) not in taken and store.reserve(address, container_id, ifname, index):
            return address, r
    shown = ", ".join(str(r) for r in ranges)
    raise CniError(
        ErrorCode.INTERNAL,
        f"host-local: no free address left in {shown}: all are allocated (see {store.directory}); "
        "release addresses with DEL or configure a larger range",
    )


def _resolv_conf(path: str) -> DNS:
    if not path:
        return DNS()
    servers, search, options, domain = [], [], [], ""
    for line in Path(path).read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        if words[0] == "nameserver":
            servers.append(words[1])
        elif words[0] == "domain":
            domain = words[1]
        elif words[0] == "search":
            search = words[1:]
        elif words[0] == "options":
            options.extend(words[1:])
    return DNS(tuple(servers), domain, tuple(search), tuple(options))


class HostLocalPlugin:
    """The ``host-local`` IPAM plugin (in-process or as an executable)."""

    async def add(self, inp: PluginInput, ctx: CallContext) -> CniResult:
        conf = parse_host_local(inp, ctx.args)
        ips: list[IPConfig] = []
        async with AllocationStore(conf.store_dir) as store:
            owners = store.allocations()
            key = {f"{ctx.container_id.strip()}{LINE_BREAK}{ctx.ifname}", ctx.container_id.strip()}
            mine = [ipaddress.ip_address(ip) for ip, owner in owners.items() if owner in key and _is_ip(ip)]
            taken = set(owners)
            pending = list(conf.requested)
            try:
                for index, ranges in enumerate(conf.ranges):
                    dup = next((a for a in mine if any(a in r for r in ranges)), None)
                    if dup is not None:
                        raise CniError(
                            ErrorCode.INTERNAL,
                            f"host-local: {dup} is already allocated to container {ctx.container_id} "
                            f"({ctx.ifname}); DEL it before a second ADD",
                        )
                    wanted = next((a for a in pending if any(a in r for r in ranges)), None)
                    if wanted is not None:
                        pending.remove(wanted)
                    address, r = _allocate_set(
                        store, index, ranges, ctx.container_id, ctx.ifname, taken, wanted
                    )
                    taken.add(str(address))
                    ips.append(IPConfig(ipaddress.ip_interface(f"{address}/{r.subnet.prefixlen}"), r.gateway))
                if pending:
                    raise CniError(
                        ErrorCode.INTERNAL,
                        "host-local: requested addresses outside every range: "
                        + ", ".join(map(str, pending)),
                    )
            except BaseException:
                for ip in ips:
                    (store.directory / str(ip.address.ip)).unlink(missing_ok=True)
                raise
        return CniResult(
            cni_version=inp.cni_version,
            ips=tuple(ips),
            routes=conf.routes,
            dns=_resolv_conf(conf.resolv_conf),
        )

    async def delete(self, inp: PluginInput, ctx: CallContext) -> None:
        conf = parse_host_local(inp)
        if not conf.store_dir.is_dir():
            return
        async with AllocationStore(conf.store_dir) as store:
            store.release(ctx.container_id, ctx.ifname)

    async def check(self, inp: PluginInput, ctx: CallContext) -> None:
        conf = parse_host_local(inp)
        store = AllocationStore(conf.store_dir)
        if not store.owned_by(ctx.container_id, ctx.ifname):
            raise CniError(
                ErrorCode.INTERNAL,
                f"host-local: no address is allocated to container {ctx.container_id} ({ctx.ifname}) "
                f"in {conf.store_dir}",
            )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def allocations_of(directory: Path) -> Mapping[str, str]:
    """Read-only view of a store directory (for tests and tools)."""
    return AllocationStore(directory).allocations()
