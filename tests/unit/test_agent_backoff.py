"""Crash-loop and retry back-off with a fake clock: growth, cap, reset, messages, restart policy."""

from __future__ import annotations

import pytest

from kubelite.agent.backoff import CrashLoopBackOff, backoff_message, go_duration, should_restart


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


KEY = ("uid-1", "app")


def _crash_loop(backoff: CrashLoopBackOff, clock: FakeClock, exits: int, ran_for: float = 1.0) -> list[float]:
    """Run ``ran_for`` seconds and exit, ``exits`` times, waiting out each back-off in between."""
    delays = []
    for _ in range(exits):
        clock.now += ran_for
        delay = backoff.record_exit(KEY, ran_for)
        delays.append(delay)
        clock.now += delay
    return delays


def test_first_exit_restarts_at_once_then_doubles_up_to_five_minutes() -> None:
    clock = FakeClock()
    backoff = CrashLoopBackOff(clock=clock)
    assert _crash_loop(backoff, clock, 9) == [0, 10, 20, 40, 80, 160, 300, 300, 300]


def test_messages_as_the_kubelet_prints_them() -> None:
    clock = FakeClock()
    backoff = CrashLoopBackOff(clock=clock)
    delays = _crash_loop(backoff, clock, 7)[1:]
    texts = [backoff_message(d, "app", "web-1", "shop", "uid-1") for d in delays]
    assert texts[0] == "back-off 10s restarting failed container=app pod=web-1_shop(uid-1)"
    assert [t.split()[1] for t in texts] == ["10s", "20s", "40s", "1m20s", "2m40s", "5m0s"]


def test_a_long_run_resets_the_back_off() -> None:
    clock = FakeClock()
    backoff = CrashLoopBackOff(clock=clock)
    assert _crash_loop(backoff, clock, 4) == [0, 10, 20, 40]
    assert _crash_loop(backoff, clock, 1, ran_for=601) == [0]
    assert _crash_loop(backoff, clock, 2) == [10, 20]
    # A run of exactly 10 minutes is not enough (the kubelet wants more than twice the maximum).
    assert _crash_loop(backoff, clock, 1, ran_for=600) == [40]


def test_in_backoff_and_next_delay() -> None:
    clock = FakeClock()
    backoff = CrashLoopBackOff(clock=clock)
    assert backoff.in_backoff(KEY) == 0 and backoff.next_delay(KEY) == 0
    backoff.record_exit(KEY, 1.0)
    assert backoff.in_backoff(KEY) == 0  # restarts at once
    assert backoff.next_delay(KEY) == 10
    assert backoff.record_exit(KEY, 1.0) == 10
    clock.now += 4
    assert backoff.in_backoff(KEY) == pytest.approx(6)
    assert backoff.next_delay(KEY) == 20
    clock.now += 6
    assert backoff.in_backoff(KEY) == 0
    assert backoff.in_backoff(("uid-2", "app")) == 0  # keys are independent


def test_forget_and_gc() -> None:
    clock = FakeClock()
    backoff = CrashLoopBackOff(clock=clock)
    backoff.record_exit(KEY, 1.0)
    backoff.record_exit(("uid-2", "app"), 1.0)
    backoff.forget(KEY)
    assert len(backoff) == 1
    assert backoff.record_exit(KEY, 1.0) == 0
    clock.now += 601
    backoff.gc()
    assert len(backoff) == 0


def test_record_failure_always_waits() -> None:
    clock = FakeClock()
    backoff = CrashLoopBackOff(clock=clock)
    delays = []
    for _ in range(7):
        delays.append(backoff.record_failure(KEY))
        clock.now += delays[-1]
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    assert backoff.in_backoff(KEY) == 0
    backoff.record_failure(KEY)
    assert backoff.in_backoff(KEY) == 300
    clock.now += 900  # ten quiet minutes after the last wait: start over
    assert backoff.record_failure(KEY) == 10


def test_custom_limits_and_bad_ones() -> None:
    clock = FakeClock()
    backoff = CrashLoopBackOff(initial=1, maximum=4, reset_after=30, clock=clock)
    assert _crash_loop(backoff, clock, 5) == [0, 1, 2, 4, 4]
    with pytest.raises(ValueError, match="initial"):
        CrashLoopBackOff(initial=0, clock=clock)
    with pytest.raises(ValueError, match="maximum"):
        CrashLoopBackOff(initial=10, maximum=5, clock=clock)


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 137, True),
        ("Never", 0, False),
        ("Never", 1, False),
    ],
)
def test_should_restart(policy: str, code: int, restart: bool) -> None:
    assert should_restart(policy, code) is restart


def test_unknown_restart_policy() -> None:
    with pytest.raises(ValueError, match="restartPolicy 'Sometimes' is not one of Always, OnFailure, Never"):
        should_restart("Sometimes", 1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (10, "10s"),
        (80, "1m20s"),
        (300, "5m0s"),
        (3600, "1h0m0s"),
        (3725.5, "1h2m5.5s"),
        (1.5, "1.5s"),
        (0.5, "500ms"),
        (0.0015, "1.5ms"),
        (-2, "-2s"),
    ],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
