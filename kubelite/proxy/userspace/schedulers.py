"""IPVS's scheduling algorithms, and ClientIP session affinity, as pure Python.

The Linux kernel of this machine has no IPVS, so the userspace proxy carries the schedulers that
kube-proxy's ipvs mode offered (``--ipvs-scheduler``). Each follows the kernel's
``net/netfilter/ipvs/ip_vs_<name>.c``:

====  ===============================================================================================
rr    round robin from the last pick, skipping unavailable servers
wrr   interleaved weighted round robin: current weight ``cw`` steps down by gcd(weights) per pass
lc    least connections: overhead = active * 256 + inactive, lowest wins (first one on a tie)
wlc   weighted lc: lowest overhead / weight (compared as ``loh * dw > doh * lw``)
sh    source hashing: 256 buckets filled in weight proportion; bucket = hash_32(client IP, 8)
dh    destination hashing: the same table without weights, hashed on the service (VIP) address
sed   shortest expected delay: lowest (active + 1) / weight
nq    never queue: an idle server (no active connection) first, otherwise sed
====  ===============================================================================================

A server is *unavailable* when its weight is 0 or it is in the ``excluded`` set of the request
(IPVS's overloaded flag): the proxy excludes the endpoints it already failed to dial, so a retry
goes to another one. Every scheduler returns ``None`` when no server is available.

The proxy counts connections: TCP connections are *active*; UDP sessions are *inactive* (as IPVS
shows them in ``ipvsadm -L``). Endpoints carry no weight in Kubernetes, so :class:`Destination`
defaults to weight 1; callers may pass a weight mapping.

:class:`ClientIPAffinity` is ``sessionAffinity: ClientIP``: a client IP sticks to the endpoint it
last used until ``timeout`` seconds pass without a new connection (kube-proxy userspace's
``affinityState``). :class:`Balancer` puts a scheduler and the affinity together for one service
port; it has no I/O and takes an injected clock.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "SCHEDULERS",
    "Balancer",
    "ClientIPAffinity",
    "ConnCount",
    "Destination",
    "Request",
    "Scheduler",
    "hash_32",
    "make_scheduler",
]

GOLDEN_RATIO_32 = 0x61C88647
HASH_TAB_BITS = 8
HASH_TAB_SIZE = 1 << HASH_TAB_BITS


def hash_32(value: int, bits: int = HASH_TAB_BITS) -> int:
    """The kernel's ``hash_32``: multiplicative hash keeping the top ``bits`` bits."""
    return ((value * GOLDEN_RATIO_32) & 0xFFFFFFFF) >> (32 - bits)


@dataclass(frozen=True, slots=True)
class Destination:
    """One real server: ``key`` is ``ip:port`` (an :attr:`Endpoint.address`)."""

    key: str
    weight: int = 1

    @property
    def ip(self) -> str:
        return self.key.rsplit(":", 1)[0]


@dataclass(frozen=True, slots=True)
class ConnCount:
    active: int = 0
    inactive: int = 0

    @property
    def overhead(self) -> int:
        """``ip_vs_dest_conn_overhead``: active connections weigh 256 times an inactive one."""
        return (self.active << 8) + self.inactive


@dataclass(frozen=True, slots=True)
class Request:
    """What a scheduler may look at for one new connection."""

    client_ip: str
    service_ip: str = "0.0.0.0"
    load: Mapping[str, ConnCount] = field(default_factory=dict)
    excluded: frozenset[str] = frozenset()


class Scheduler(Protocol):
    name: str

    def update(self, destinations: Sequence[Destination]) -> None:
        """The server list changed (also called once at start); rebuild any table."""
        ...

    def pick(self, request: Request) -> Destination | None:
        """The server for a new connection, or ``None`` when none is available."""
        ...


def _available(d: Destination, request: Request) -> bool:
    return d.weight > 0 and d.key not in request.excluded


def _ip_int(ip: str) -> int:
    try:
        return int(ipaddress.IPv4Address(ip))
    except ValueError:
        return 0


class RoundRobin:
    name = "rr"

    def __init__(self) -> None:
        self._dests: tuple[Destination, ...] = ()
        self._last = -1

    def update(self, destinations: Sequence[Destination]) -> None:
        previous = self._dests[self._last] if 0 <= self._last < len(self._dests) else None
        self._dests = tuple(destinations)
        # Keep the cursor on the same server when it survives, as the kernel keeps its list position.
        self._last = self._dests.index(previous) if previous in self._dests else -1

    def pick(self, request: Request) -> Destination | None:
        n = len(self._dests)
        for step in range(1, n + 1):
            i = (self._last + step) % n
            if _available(self._dests[i], request):
                self._last = i
                return self._dests[i]
        return None


class WeightedRoundRobin:
    name = "wrr"

    def __init__(self) -> None:
        self._dests: tuple[Destination, ...] = ()
        self._pos = -1  # -1 = the list head
        self._di = 1
        self._mw = 0
        self._cw = 0

    def update(self, destinations: Sequence[Destination]) -> None:
        self._dests = tuple(destinations)
        weights = [d.weight for d in self._dests if d.weight > 0]
        self._pos = -1
        self._di = math.gcd(*weights) if weights else 1
        self._mw = (max(weights) - (self._di - 1)) if weights else 0
        # ip_vs_wrr_dest_changed: keep cw unless it is out of range.
        if self._cw > self._mw or not self._cw:
            self._cw = self._mw
        elif self._di > 1:
            self._cw = (self._cw // self._di) * self._di + 1

    def pick(self, request: Request) -> Destination | None:
        n = len(self._dests)
        if self._mw == 0 or n == 0:
            return None
        # Bounded: every pass over the list lowers cw by di; two full cycles cover every weight.
        for _ in range(2 * (n + 1) * (self._mw // self._di + 1)):
            self._pos += 1
            if self._pos >= n:
                self._pos = -1
                self._cw -= self._di
                if self._cw <= 0:
                    self._cw = self._mw
                continue
            d = self._dests[self._pos]
            if d.key not in request.excluded and d.weight >= self._cw and d.weight > 0:
                return d
        return None


class _LeastBase:
    """Shared walk of lc, wlc, sed and nq: the first available server, then better ones."""

    name = ""

    def __init__(self) -> None:
        self._dests: tuple[Destination, ...] = ()

    def update(self, destinations: Sequence[Destination]) -> None:
        self._dests = tuple(destinations)

    def _overhead(self, count: ConnCount) -> int:
        raise NotImplementedError

    def pick(self, request: Request) -> Destination | None:
        least: Destination | None = None
        loh = 0
        for d in self._dests:
            if not _available(d, request):
                continue
            count = request.load.get(d.key, ConnCount())
            if self.name == "nq" and count.active == 0:
                return d
            doh = self._overhead(count)
            if least is None or self._better(doh, d, loh, least):
                least, loh = d, doh
        return least

    def _better(self, doh: int, d: Destination, loh: int, least: Destination) -> bool:
        return loh * d.weight > doh * least.weight


class LeastConnection(_LeastBase):
    name = "lc"

    def _overhead(self, count: ConnCount) -> int:
        return count.overhead

    def _better(self, doh: int, d: Destination, loh: int, least: Destination) -> bool:
        return doh < loh


class WeightedLeastConnection(_LeastBase):
    name = "wlc"

    def _overhead(self, count: ConnCount) -> int:
        return count.overhead


class ShortestExpectedDelay(_LeastBase):
    name = "sed"

    def _overhead(self, count: ConnCount) -> int:
        return count.active + 1


class NeverQueue(ShortestExpectedDelay):
    name = "nq"


class _HashBase:
    """sh and dh: a 256-bucket table of servers, looked up by a hashed address."""

    name = ""
    weighted = True

    def __init__(self, *, fallback: bool = False) -> None:
        self.fallback = fallback
        self._buckets: tuple[Destination | None, ...] = (None,) * HASH_TAB_SIZE

    def update(self, destinations: Sequence[Destination]) -> None:
        dests = tuple(destinations)
        buckets: list[Destination | None] = []
        i = count = 0
        for _ in range(HASH_TAB_SIZE):
            if not dests:
                buckets.append(None)
                continue
            d = dests[i % len(dests)]
            buckets.append(d)
            count += 1
            # ip_vs_sh_reassign: stay on a server until it fills `weight` buckets (dh: one each).
            if not self.weighted or count >= d.weight:
                i, count = i + 1, 0
        self._buckets = tuple(buckets)

    def _key(self, request: Request) -> int:
        raise NotImplementedError

    def pick(self, request: Request) -> Destination | None:
        key = self._key(request)
        d = self._buckets[hash_32(key)]
        if d is not None and _available(d, request):
            return d
        if not self.fallback or d is None:
            return None
        for offset in range(1, HASH_TAB_SIZE):  # ip_vs_sh_get_fallback, deterministic from the hash
            d = self._buckets[(hash_32(key) + offset) % HASH_TAB_SIZE]
            if d is not None and _available(d, request):
                return d
        return None


class SourceHashing(_HashBase):
    name = "sh"

    def _key(self, request: Request) -> int:
        return _ip_int(request.client_ip)


class DestinationHashing(_HashBase):
    name = "dh"
    weighted = False

    def _key(self, request: Request) -> int:
        return _ip_int(request.service_ip)


SCHEDULERS: Mapping[str, Callable[[], Scheduler]] = {
    "rr": RoundRobin,
    "wrr": WeightedRoundRobin,
    "lc": LeastConnection,
    "wlc": WeightedLeastConnection,
    "sh": SourceHashing,
    "dh": DestinationHashing,
    "sed": ShortestExpectedDelay,
    "nq": NeverQueue,
}


def make_scheduler(name: str) -> Scheduler:
    """A fresh scheduler by its ipvsadm name: rr, wrr, lc, wlc, sh, dh, sed or nq."""
    try:
        return SCHEDULERS[name]()
    except KeyError:
        raise ValueError(
            f"unknown userspace proxy scheduler {name!r}: use one of {', '.join(SCHEDULERS)}"
        ) from None


@dataclass
class ClientIPAffinity:
    """``sessionAffinity: ClientIP``: client IP -> (endpoint key, last used), expiring after ``timeout``."""

    timeout: float
    clock: Callable[[], float] = time.monotonic
    _table: dict[str, tuple[str, float]] = field(default_factory=dict)

    def lookup(self, client_ip: str, valid: Mapping[str, Destination]) -> Destination | None:
        entry = self._table.get(client_ip)
        if entry is None:
            return None
        key, last = entry
        if self.clock() - last > self.timeout or key not in valid:
            del self._table[client_ip]
            return None
        return valid[key]

    def record(self, client_ip: str, key: str) -> None:
        self._table[client_ip] = (key, self.clock())

    def forget(self, keep: Mapping[str, Destination]) -> None:
        """Drop entries for servers that are gone, and expired ones."""
        now = self.clock()
        for client, (key, last) in list(self._table.items()):
            if key not in keep or now - last > self.timeout:
                del self._table[client]

    def __len__(self) -> int:
        return len(self._table)


@dataclass
class Balancer:
    """One service port's endpoint choice: affinity first, then the scheduler."""

    scheduler: Scheduler
    affinity_seconds: float = 0.0
    clock: Callable[[], float] = time.monotonic
    _dests: dict[str, Destination] = field(default_factory=dict)
    _affinity: ClientIPAffinity | None = None

    def __post_init__(self) -> None:
        self.scheduler.update(())
        self.set_affinity(self.affinity_seconds)

    def set_affinity(self, seconds: float) -> None:
        if seconds <= 0:
            self._affinity = None
        elif self._affinity is None or self._affinity.timeout != seconds:
            self._affinity = ClientIPAffinity(seconds, self.clock)
        self.affinity_seconds = seconds

    def set_destinations(self, destinations: Sequence[Destination]) -> None:
        new = {d.key: d for d in destinations}
        if list(new.values()) != list(self._dests.values()):
            self._dests = new
            self.scheduler.update(tuple(new.values()))
        if self._affinity is not None:
            self._affinity.forget(self._dests)

    @property
    def destinations(self) -> tuple[Destination, ...]:
        return tuple(self._dests.values())

    def pick(self, request: Request) -> Destination | None:
        """The endpoint for a new connection; a retry passes the failed ones in ``request.excluded``
        and resets the client's affinity (kube-proxy's ``sessionAffinityReset``)."""
        if self._affinity is not None and not request.excluded:
            sticky = self._affinity.lookup(request.client_ip, self._dests)
            if sticky is not None:
                self._affinity.record(request.client_ip, sticky.key)
                return sticky
        chosen = self.scheduler.pick(request)
        if chosen is not None and self._affinity is not None:
            self._affinity.record(request.client_ip, chosen.key)
        return chosen
