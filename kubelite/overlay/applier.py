"""Converging one node's kernel to a desired :class:`~kubelite.overlay.model.KernelState`, cheaply.

:class:`StateSync` is shared by both overlay modes. Its contract:

- :meth:`StateSync.converge` with the same desired state as last time, within ``resync_seconds``
  of the last kernel read and with no error since, starts no process at all;
- with a different desired state it diffs against what it applied last (no kernel read) and runs
  at most two processes (one ``bridge -batch``, one ``ip -batch``);
- the first call, every call ``resync_seconds`` after the last read, and the first call after an
  error or :meth:`StateSync.invalidate` read the kernel back (routes with our protocol, the main
  table for conflicts, and on the VXLAN device its permanent neighbours and FDB), so changes made
  behind our back are repaired.

The ``bridge`` binary (FDB entries) is run through a :class:`BridgeRunner`: anything with ``batch``
and ``run`` like :class:`~kubelite.host.ip.RealIp`, which runs any iproute2 binary given its path
(``bridge`` takes ``-n NETNS`` and ``-batch -`` like ``ip``); :func:`real_bridge` makes one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from kubelite.host.ip import HostCommandError, IpRunner, RealIp
from kubelite.host.netns import in_netns
from kubelite.overlay.diff import (
    Plan,
    foreign_destinations,
    parse_fdb,
    parse_neighbours,
    parse_routes,
    plan_changes,
)
from kubelite.overlay.model import ROUTE_PROTOCOL, KernelState

__all__ = [
    "BridgeRunner",
    "OverlayError",
    "StateSync",
    "load_json",
    "log_skipped",
    "missing_uplink",
    "real_bridge",
]

log = logging.getLogger(__name__)


class OverlayError(RuntimeError):
    """The overlay could not be set up or synced; the message says what failed and what to do."""


def missing_uplink(node: str, uplink: str, node_ip: str, netns: str | None) -> OverlayError:
    return OverlayError(
        f"node {node}: the uplink {uplink} does not exist{in_netns(netns)}; "
        f"pass the interface that carries the node IP {node_ip}"
    )


@runtime_checkable
class BridgeRunner(Protocol):
    """Runs iproute2's ``bridge``: ``bridge [-n NETNS] -batch -`` and ``bridge [-n NETNS] ARGS``."""

    async def batch(self, commands: Sequence[str], *, netns: str | None = None) -> None: ...

    async def run(self, args: Sequence[str], *, netns: str | None = None) -> str: ...


def real_bridge(timeout: float = 30.0) -> BridgeRunner:
    """A runner for the ``bridge`` binary (it shares ``ip``'s batch and ``-n`` conventions)."""
    return RealIp(shutil.which("bridge") or "/usr/sbin/bridge", timeout=timeout)


def load_json(out: str, what: str) -> list[dict[str, Any]]:
    """The list printed by an iproute2 ``-j`` command; ``what`` names the command in errors."""
    if not out.strip():
        return []
    try:
        parsed = json.loads(out)
    except json.JSONDecodeError as exc:
        raise OverlayError(f"could not parse the JSON of `{what}`: {exc}; is iproute2 at least 5.x?") from exc
    if not isinstance(parsed, list):
        raise OverlayError(f"`{what}` printed {type(parsed).__name__} JSON, expected a list")
    return [item for item in parsed if isinstance(item, dict)]


class StateSync:
    """Applies desired overlay state on one node, remembering what it applied (see module docstring)."""

    def __init__(
        self,
        *,
        node: str,
        ip: IpRunner,
        bridge: BridgeRunner,
        netns: str | None,
        device: str | None,
        protocol: int = ROUTE_PROTOCOL,
        resync_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.ip = ip
        self.bridge = bridge
        self.netns = netns
        self.device = device
        self.protocol = protocol
        self.resync_seconds = resync_seconds
        self.clock = clock
        self.kernel_reads = 0
        self.last_plan: Plan | None = None
        self._desired: KernelState | None = None  # what converge() was last asked for
        self._applied: KernelState | None = None  # None: unknown, read the kernel next time
        self._foreign: frozenset[str] = frozenset()
        self._read_at = -math.inf

    def invalidate(self) -> None:
        """Forget what was applied: the next :meth:`converge` reads the kernel back."""
        self._applied = None
        self._desired = None

    def _stale(self) -> bool:
        return self._applied is None or self.clock() - self._read_at >= self.resync_seconds

    async def _run_json(self, runner: IpRunner | BridgeRunner, args: list[str], binary: str) -> list[Any]:
        return load_json(await runner.run(args, netns=self.netns), f"{binary} {' '.join(args)}")

    async def observe(self, *, with_device: bool = True) -> tuple[KernelState, frozenset[str]]:
        """Read back the entries we own, and the destinations of routes we do not own.

        ``with_device=False`` reads routes only (for a teardown when the VXLAN device is gone).
        """
        device = self.device if with_device else None
        proto = str(self.protocol)
        reads: list[Any] = [
            self._run_json(self.ip, ["-j", "route", "show", "table", "main", "proto", proto], "ip"),
            self._run_json(self.ip, ["-j", "route", "show", "table", "main"], "ip"),
        ]
        if device is not None:
            reads += [
                self._run_json(self.ip, ["-j", "neigh", "show", "dev", device, "nud", "permanent"], "ip"),
                self._run_json(self.bridge, ["-j", "fdb", "show", "dev", device], "bridge"),
            ]
        try:
            results = await asyncio.gather(*reads)
        except HostCommandError as exc:
            self.invalidate()
            raise OverlayError(
                f"node {self.node}: could not read the overlay's routes{in_netns(self.netns)}: {exc.stderr}; "
                "was setup() run (it creates the VXLAN device)?"
            ) from exc
        owned, main = results[0], results[1]
        state = KernelState(routes=parse_routes(owned))
        if device is not None:
            state = KernelState(
                state.routes, parse_neighbours(results[2], device), parse_fdb(results[3], device)
            )
        self.kernel_reads += 1
        return state, foreign_destinations(main, owned)

    async def converge(self, desired: KernelState) -> Plan | None:
        """Make the kernel hold ``desired``; returns the plan run, or ``None`` when nothing was needed."""
        stale = self._stale()
        if not stale and desired == self._desired:
            return None
        if stale:
            observed, self._foreign = await self.observe()
            self._read_at = self.clock()
        else:
            assert self._applied is not None
            observed = self._applied
        plan = plan_changes(desired, observed, protocol=self.protocol, foreign=self._foreign)
        for sentence in plan.conflicts:
            log.warning("overlay on node %s: %s", self.node, sentence)
        await self.apply(plan)
        self._applied = plan.result
        self._desired = desired
        self.last_plan = plan
        return plan

    async def apply(self, plan: Plan) -> None:
        """Run a plan's batches (FDB first); on failure forget the applied state and raise."""
        for binary, runner, lines in (
            ("bridge", self.bridge, plan.bridge_lines),
            ("ip", self.ip, plan.ip_lines),
        ):
            if not lines:
                continue
            try:
                await runner.batch(lines, netns=self.netns)
            except HostCommandError as exc:
                self.invalidate()
                # RealIp names every binary "ip" in its messages; say which one really failed.
                shown = binary + " " + exc.command.split(" ", 1)[-1]
                raise OverlayError(
                    f"node {self.node}: could not program the overlay{in_netns(self.netns)}: `{shown}` "
                    f"failed: {exc.stderr or 'no message'}; the next sync reads the kernel back and retries"
                ) from exc

    async def remove_all(self, extra_lines: Sequence[str] = (), *, with_device: bool = True) -> None:
        """Delete every route we own (and, ``with_device``, our neighbours and FDB entries), then run
        ``extra_lines`` (e.g. ``link del flannel.1``) in the same ``ip`` batch."""
        observed, _ = await self.observe(with_device=with_device)
        plan = plan_changes(KernelState(), observed, protocol=self.protocol)
        await self.apply(Plan((*plan.ip_lines, *extra_lines), plan.bridge_lines, KernelState()))
        self.invalidate()


def log_skipped(node: str, before: Sequence[object], after: Sequence[object]) -> None:
    """Log each newly skipped remote node once (a sync that changes nothing stays quiet)."""
    for item in after:
        if item not in before:
            log.warning("overlay on node %s: %s", node, getattr(item, "reason", item))
