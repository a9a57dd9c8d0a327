"""IPVS scheduler semantics (ip_vs_*.c) and ClientIP affinity of the userspace proxy."""

from __future__ import annotations

import collections

import pytest

from kubelite.proxy.userspace.schedulers import (
    HASH_TAB_SIZE,
    Balancer,
    ConnCount,
    Destination,
    Request,
    hash_32,
    make_scheduler,
)

A, B, C = Destination("10.0.0.1:80"), Destination("10.0.0.2:80"), Destination("10.0.0.3:80")


def picks(name: str, dests: list[Destination], n: int, **kw: object) -> str:
    s = make_scheduler(name)
    s.update(dests)
    names = {d.key: "ABCDEF"[i] for i, d in enumerate(dests)}
    out = []
    for _ in range(n):
        d = s.pick(Request("192.168.0.9", **kw))  # type: ignore[arg-type]
        out.append(names[d.key] if d else "-")
    return "".join(out)


def test_rr_cycles_and_skips_weight_zero_and_excluded() -> None:
    assert picks("rr", [A, B, C], 6) == "ABCABC"
    assert picks("rr", [A, Destination(B.key, 0), C], 4) == "ACAC"
    assert picks("rr", [A, B, C], 3, excluded=frozenset({B.key})) == "ACA"
    assert picks("rr", [], 1) == "-"


def test_rr_keeps_its_position_when_the_list_changes() -> None:
    s = make_scheduler("rr")
    s.update([A, B, C])
    assert s.pick(Request("1.1.1.1")) == A
    s.update([A, B, C, Destination("10.0.0.4:80")])
    assert s.pick(Request("1.1.1.1")) == B


def test_wrr_interleaves_by_weight_like_the_kernel() -> None:
    dests = [Destination(A.key, 4), Destination(B.key, 3), Destination(C.key, 2)]
    assert picks("wrr", dests, 9) == "AABABCABC"
    # gcd 2: weights 4 and 2 -> 2:1
    assert picks("wrr", [Destination(A.key, 4), Destination(B.key, 2)], 6) == "AABAAB"
    assert picks("wrr", [Destination(A.key, 0)], 1) == "-"


def test_lc_counts_active_256_times_inactive() -> None:
    load = {A.key: ConnCount(active=1), B.key: ConnCount(inactive=200), C.key: ConnCount(active=1)}
    assert picks("lc", [A, B, C], 1, load=load) == "B"
    assert picks("lc", [A, B, C], 1, load={}) == "A"  # tie: the first one


def test_wlc_divides_by_weight() -> None:
    dests = [Destination(A.key, 1), Destination(B.key, 3)]
    load = {A.key: ConnCount(active=1), B.key: ConnCount(active=2)}
    assert picks("wlc", dests, 1, load=load) == "B"  # 256/1 > 512/3


def test_sed_and_nq_differ_on_an_idle_server() -> None:
    dests = [Destination(A.key, 1), Destination(B.key, 10)]
    load = {B.key: ConnCount(active=5)}
    assert picks("sed", dests, 1, load=load) == "B"  # (0+1)/1 > (5+1)/10
    assert picks("nq", dests, 1, load=load) == "A"  # idle first


def test_sh_table_follows_weights_and_hash() -> None:
    s = make_scheduler("sh")
    s.update([Destination(A.key, 3), Destination(B.key, 1)])
    counts = collections.Counter(s._buckets[i].key for i in range(HASH_TAB_SIZE))  # type: ignore[attr-defined]
    assert counts == {A.key: 192, B.key: 64}
    first = s.pick(Request("172.16.5.7"))
    assert all(s.pick(Request("172.16.5.7")) == first for _ in range(5))
    assert hash_32(0) == 0 and 0 <= hash_32(0xAC100507) < HASH_TAB_SIZE


def test_sh_without_fallback_returns_none_for_an_unavailable_server() -> None:
    s = make_scheduler("sh")
    s.update([A, B])
    first = s.pick(Request("172.16.5.7"))
    assert first is not None
    assert s.pick(Request("172.16.5.7", excluded=frozenset({first.key}))) is None


def test_dh_hashes_on_the_service_address() -> None:
    s = make_scheduler("dh")
    s.update([A, B, C])
    chosen = {s.pick(Request(f"10.1.0.{i}", service_ip="10.96.0.10")) for i in range(20)}
    assert len(chosen) == 1


def test_unknown_scheduler_is_a_sentence() -> None:
    with pytest.raises(ValueError, match="unknown userspace proxy scheduler 'xx': use one of rr, wrr"):
        make_scheduler("xx")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_affinity_sticks_until_timeout_and_resets_on_retry() -> None:
    clock = Clock()
    bal = Balancer(make_scheduler("rr"), affinity_seconds=10, clock=clock)
    bal.set_destinations([A, B, C])
    first = bal.pick(Request("1.2.3.4"))
    assert [bal.pick(Request("1.2.3.4")) for _ in range(5)] == [first] * 5
    assert bal.pick(Request("5.6.7.8")) != first  # another client moves the round robin
    clock.now += 9
    assert bal.pick(Request("1.2.3.4")) == first  # refreshed
    clock.now += 11
    assert bal.pick(Request("1.2.3.4")) != first or len(bal.destinations) == 1
    retry = bal.pick(Request("9.9.9.9", excluded=frozenset({A.key})))
    assert retry is not None and retry.key != A.key


def test_affinity_forgets_removed_endpoints_and_can_be_switched_off() -> None:
    bal = Balancer(make_scheduler("rr"), affinity_seconds=100, clock=Clock())
    bal.set_destinations([A, B])
    first = bal.pick(Request("1.2.3.4"))
    assert first is not None
    bal.set_destinations([d for d in (A, B) if d != first])
    assert bal.pick(Request("1.2.3.4")) != first
    bal.set_affinity(0)
    bal.set_destinations([A, B])
    seen = {bal.pick(Request("1.2.3.4")) for _ in range(4)}
    assert seen == {A, B}
