"""IptablesBackend against FakeIptables / FakeConntrack (the stale UDP flow computation itself is
``kubelite.proxy.conntrack``, shared by the back ends, tested in test_proxy_conntrack.py)."""

from __future__ import annotations

import pytest

from kubelite.host.conntrack import FakeConntrack
from kubelite.host.iptables import FakeIptables, IptablesError, RealIptables
from kubelite.proxy.backend import ProxyBackend
from kubelite.proxy.iptables import IptablesBackend
from kubelite.proxy.iptables.rules import JUMPS
from kubelite.proxy.model import Endpoint, ProxyState, ServicePort, ServicePortName, chain_suffix

WEB = ServicePortName("default", "web", "")
DNS = ServicePortName("kube-system", "dns", "dns", "UDP")


def sp(spn: ServicePortName, ip: str, **kw: object) -> ServicePort:
    return ServicePort(spn, (ip,), 53 if spn.protocol == "UDP" else 80, spn.protocol, 8080, **kw)  # type: ignore[arg-type]


def ep(ip: str) -> Endpoint:
    return Endpoint(ip, 8080, node_name="n2")


def st(web: tuple[Endpoint, ...] = (), dns: tuple[Endpoint, ...] = (), **kw: object) -> ProxyState:
    return ProxyState(
        services={WEB: sp(WEB, "10.96.0.20"), DNS: sp(DNS, "10.96.0.10", **kw)},
        endpoints={WEB: web, DNS: dns},
        node_ips=("172.31.0.11",),
    )


def backend() -> tuple[IptablesBackend, FakeIptables, FakeConntrack]:
    fake, ct = FakeIptables(), FakeConntrack()
    return IptablesBackend(netns="node-1", runner=fake, conntrack=ct), fake, ct


def test_is_a_proxy_backend() -> None:
    b: ProxyBackend = IptablesBackend(runner=FakeIptables(), conntrack=FakeConntrack())
    assert b.mode == "iptables"


async def test_first_sync_is_full_inserts_jumps_once_then_partial() -> None:
    b, fake, _ = backend()
    await b.sync(st(web=(ep("10.244.2.2"),)), None)
    kinds = [c.kind for c in fake.calls]
    assert kinds[0] == "save" and kinds[1] == "restore"
    assert all(c.netns == "node-1" for c in fake.calls)
    assert len(fake.rules) == len(JUMPS)
    assert "-t nat -I PREROUTING" in " | ".join(c.text for c in fake.calls)
    # A second full sync only checks the jumps (-C), it does not insert them again.
    await b.sync(st(web=(ep("10.244.2.2"),)), None)
    assert len(fake.rules) == len(JUMPS)
    fake.calls.clear()
    await b.sync(st(web=(ep("10.244.2.3"),)), frozenset({WEB}))
    assert [c.kind for c in fake.calls] == ["restore"]
    text = fake.calls[0].text
    assert f"-X KUBE-SEP-{chain_suffix(WEB, '10.244.2.2:8080')}" in text
    assert f":KUBE-SEP-{chain_suffix(WEB, '10.244.2.3:8080')} - [0:0]" in text


async def test_full_sync_deletes_chains_it_finds_but_no_longer_wants() -> None:
    b, fake, _ = backend()
    leftover = "KUBE-SVC-AAAAAAAAAAAAAAAA"
    fake.saves["nat"] = (
        f"*nat\n:PREROUTING ACCEPT [0:0]\n:{leftover} - [0:0]\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"
    )
    await b.sync(st(), None)
    assert f"-X {leftover}" in fake.restored()[0]
    assert "-X KUBE-SERVICES" not in fake.restored()[0]


async def test_failed_restore_makes_the_next_sync_full() -> None:
    b, fake, _ = backend()
    await b.sync(st(), None)
    fake.fail = lambda kind, text: "line 3 failed" if kind == "restore" else None
    with pytest.raises(IptablesError, match="line 3 failed"):
        await b.sync(st(web=(ep("10.244.2.2"),)), frozenset({WEB}))
    fake.fail = None
    fake.calls.clear()
    await b.sync(st(web=(ep("10.244.2.2"),)), frozenset({WEB}))
    assert [c.kind for c in fake.calls][:2] == ["save", "restore"]


async def test_stale_udp_entries_are_deleted_after_sync() -> None:
    b, _, ct = backend()
    await b.sync(st(dns=()), None)
    await b.sync(st(dns=(ep("10.244.2.2"), ep("10.244.2.3"))), frozenset({DNS}))
    # The service went from nothing to endpoints: its rejected (not DNATed) entries go.
    assert ct.calls == [("node-1", ("-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53"))]
    ct.calls.clear()
    await b.sync(st(dns=(ep("10.244.2.3"),)), frozenset({DNS}))
    flow = ("-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53", "--dst-nat", "10.244.2.2")
    assert ct.calls == [("node-1", flow)]


async def test_cleanup_removes_jumps_and_chains() -> None:
    b, fake, _ = backend()
    await b.sync(st(web=(ep("10.244.2.2"),)), None)
    chains = b.last_ruleset.nat_chains if b.last_ruleset else frozenset()
    await b.cleanup()
    assert fake.rules == []
    last = fake.restored()[-1]
    assert all(f"-X {c}" in last for c in chains)
    assert "-X KUBE-POSTROUTING" in last


def test_real_runner_validates_variant() -> None:
    with pytest.raises(ValueError, match="use 'nft' or 'legacy'"):
        RealIptables("ebtables")
    assert RealIptables("legacy")._binary("-restore").endswith("iptables-legacy-restore")
