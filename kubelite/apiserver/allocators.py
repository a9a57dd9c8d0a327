"""ClusterIP and NodePort allocators, transactional with the store.

An allocation is a key (``/registry/ranges/serviceips/10.96.0.10``) created in the same
commit as the Service that owns it, so an allocation exists exactly when its Service does:
two concurrent creates that pick the same value cannot both commit, and a crash can never
leave one without the other. The in-memory set of known-used values is only a hint that
makes random picks cheap; the store is the truth.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable

from kubelite.store.interface import Create, Delete, Storage

IP_PREFIX = "/registry/ranges/serviceips/"
NODEPORT_PREFIX = "/registry/ranges/servicenodeports/"


class RangeFullError(Exception):
    pass


class RangeAllocator:
    """Values ``index_to_value(i)`` for i in [0, size), allocated as keys under ``prefix``."""

    def __init__(
        self,
        storage: Storage,
        prefix: str,
        size: int,
        index_to_value: Callable[[int], str],
        reserved: frozenset[str] = frozenset(),
    ) -> None:
        self._storage = storage
        self.prefix = prefix
        self.size = size
        self._value = index_to_value
        self._reserved = reserved
        self._used: set[str] = set()
        self._rng = random.Random()

    async def load(self) -> None:
        res = await self._storage.list(self.prefix)
        self._used = {kv.key[len(self.prefix) :] for kv in res.items}

    def key(self, value: str) -> str:
        return self.prefix + value

    def create_op(self, value: str, owner: str) -> Create:
        return Create(self.key(value), owner.encode())

    def release_op(self, value: str) -> Delete:
        return Delete(self.key(value))

    def mark_used(self, value: str) -> None:
        self._used.add(value)

    def mark_free(self, value: str) -> None:
        self._used.discard(value)

    async def pick(self, avoid: set[str]) -> str:
        """A value that is free as far as we know; the commit that creates its key decides."""
        free_hint = self.size - len(self._used) - len(self._reserved)
        if free_hint > self.size // 4:
            for _ in range(64):
                v = self._value(self._rng.randrange(self.size))
                if v not in self._used and v not in avoid and v not in self._reserved:
                    return v
        # Dense range: refresh from the store and scan from a random offset.
        await self.load()
        start = self._rng.randrange(self.size)
        for i in range(self.size):
            v = self._value((start + i) % self.size)
            if v not in self._used and v not in avoid and v not in self._reserved:
                return v
        raise RangeFullError(self.prefix)


def cluster_ip_allocator(storage: Storage, cidr: str) -> RangeAllocator:
    net = ipaddress.ip_network(cidr)
    base = int(net.network_address)
    # Network and broadcast addresses are never handed out; .1 (the kubernetes Service) is
    # reserved for the bootstrap and is only given when asked for by address.
    size = net.num_addresses - 2

    def value(i: int) -> str:
        return str(ipaddress.ip_address(base + 1 + i))

    return RangeAllocator(storage, IP_PREFIX, size, value, reserved=frozenset({str(net.network_address + 1)}))


def node_port_allocator(storage: Storage, first: int, last: int) -> RangeAllocator:
    return RangeAllocator(storage, NODEPORT_PREFIX, last - first + 1, lambda i: str(first + i))


def parse_port_range(text: str) -> tuple[int, int]:
    """'30000-32767' -> (30000, 32767); ValueError with a sentence for anything else."""
    try:
        a, b = text.split("-", 1)
        first, last = int(a), int(b)
    except ValueError:
        raise ValueError(f"invalid port range {text!r}: write it as FIRST-LAST, e.g. 30000-32767") from None
    if not 0 < first <= last <= 65535:
        raise ValueError(f"invalid port range {text!r}: ports must be 1-65535 and FIRST <= LAST")
    return first, last
