"""Restart back-off for crashing containers and failing image pulls, with an injected clock.

The kubelet's crash loop (``kuberuntime doBackOff`` over ``flowcontrol.Backoff``, no jitter):

    exit 1 ─► restart at once          (the back-off starts at 10 s)
    exit 2 ─► wait 10 s ─► restart     "back-off 10s restarting failed container=…"
    exit 3 ─► wait 20 s … 40 s, 1m20s, 2m40s, then 5m0s for every later exit
    a run longer than 10 min (twice the maximum) forgets the history: the next exit restarts at once.

:meth:`CrashLoopBackOff.record_exit` gives that delay. :meth:`CrashLoopBackOff.record_failure` is
the plain ``Backoff.Next`` for retries that always wait (image pulls, config errors): 10 s,
20 s, 40 s … 5 min, forgotten after 10 min without a failure. Use one of the two per key.
Keys are any hashable value, e.g. ``(pod_uid, container_name)``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["CrashLoopBackOff", "backoff_message", "go_duration", "should_restart"]


@dataclass(slots=True)
class _Entry:
    backoff: float  # the wait the next back-off imposes
    last_update: float  # when the back-off last moved (a restart, or a recorded failure)
    until: float  # no restart before this time


class CrashLoopBackOff:
    """Per-key exponential back-off: ``initial`` doubling up to ``maximum``, reset after ``reset_after``."""

    def __init__(
        self,
        *,
        initial: float = 10.0,
        maximum: float = 300.0,
        reset_after: float = 600.0,
        clock: Callable[[], float],
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(
                f"back-off needs 0 < initial <= maximum, got initial={initial} maximum={maximum}"
            )
        self.initial = initial
        self.maximum = maximum
        self.reset_after = reset_after
        self.clock = clock
        self._entries: dict[Hashable, _Entry] = {}

    def _live(self, key: Hashable, now: float, ran_for: float = 0.0) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if ran_for > self.reset_after or now - entry.last_update > self.reset_after:
            del self._entries[key]  # stable for long enough: start over
            return None
        return entry

    def record_exit(self, key: Hashable, ran_for: float) -> float:
        """A container exited after running ``ran_for`` seconds and will be restarted: the seconds
        to wait before the restart (0 for the first exit, then 10, 20, 40 … ``maximum``)."""
        now = self.clock()
        entry = self._live(key, now, ran_for)
        if entry is None:
            self._entries[key] = _Entry(backoff=self.initial, last_update=now, until=now)
            return 0.0
        delay = entry.backoff
        entry.backoff = min(delay * 2, self.maximum)
        entry.last_update = now + delay  # the restart happens then
        entry.until = now + delay
        return delay

    def record_failure(self, key: Hashable) -> float:
        """An attempt failed (image pull, config): the seconds to wait before the next one
        (``initial``, doubling up to ``maximum``)."""
        now = self.clock()
        entry = self._live(key, now)
        delay = self.initial if entry is None else min(entry.backoff * 2, self.maximum)
        self._entries[key] = _Entry(backoff=delay, last_update=now, until=now + delay)
        return delay

    def next_delay(self, key: Hashable) -> float:
        """The wait :meth:`record_exit` would give if the container exited now after a short run."""
        entry = self._live(key, self.clock())
        return 0.0 if entry is None else entry.backoff

    def in_backoff(self, key: Hashable) -> float:
        """Seconds left before ``key`` may restart; 0 when it may restart now."""
        now = self.clock()
        entry = self._live(key, now)
        return 0.0 if entry is None else max(entry.until - now, 0.0)

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def gc(self) -> None:
        """Drop the keys whose history expired (the kubelet's housekeeping does this)."""
        now = self.clock()
        for key in [k for k, e in self._entries.items() if now - e.last_update > self.reset_after]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


def go_duration(seconds: float) -> str:
    """A duration the way Go prints ``time.Duration``: 10s, 1m20s, 5m0s, 1h0m0s, 500ms, 1.5s."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _decimal(nanos, size) + unit
    hours, rest = divmod(nanos, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = _decimal(rest, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def backoff_message(delay: float, container: str, pod: str, namespace: str, uid: str) -> str:
    """The waiting message of a container in CrashLoopBackOff, as the kubelet words it."""
    return (
        f"back-off {go_duration(delay)} restarting failed container={container} pod={pod}_{namespace}({uid})"
    )


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a container that exited with ``exit_code`` restarts under the pod's ``restartPolicy``."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    if policy == "Never":
        return False
    raise ValueError(f"restartPolicy {policy!r} is not one of Always, OnFailure, Never")
