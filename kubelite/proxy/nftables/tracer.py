"""A simulated packet walking the proxy's nftables text (pure; for tests without root).

:class:`Tracer` reads a table written by :func:`~kubelite.proxy.nftables.rules.full_ruleset`
(optionally followed by partial-sync texts, see :meth:`Tracer.apply`) and answers: a new connection
from S to D:port/proto arrives on ``prerouting`` (from a link) or ``output`` (from this node) — where
is it DNATed, is it masqueraded, is it dropped or rejected? It understands exactly the rule
vocabulary the rules module writes, and fails loudly on anything else, so a rule the tracer cannot
read is a test failure rather than a silent pass. ``numgen random`` draws ``pick`` (modulo N), so a
test can enumerate every endpoint, whether the draw goes into the mark (affinity chains) or into an
endpoint map's key (shared pickers); affinity sets remember sources across :meth:`Tracer.trace` calls.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

__all__ = ["Packet", "Trace", "Tracer", "TracerError"]


_VERDICT, _LEAVE = "verdict", "leave"


class TracerError(ValueError):
    """The ruleset holds something the tracer does not understand."""


@dataclass(frozen=True, slots=True)
class Packet:
    src: str
    dst: str
    dport: int
    protocol: str = "TCP"
    hook: str = "prerouting"
    """``prerouting`` (arrives on a link) or ``output`` (sent by a process of this node)."""


@dataclass(frozen=True, slots=True)
class Trace:
    verdict: str
    """``accept``, ``drop`` or ``reject``."""
    dnat: str | None = None
    """``ip:port`` the connection is DNATed to, if any."""
    masquerade: bool = False
    chains: tuple[str, ...] = ()
    """The chains the packet went through, in order."""


@dataclass
class _Packet:
    pkt: Packet
    pick: int
    mark: int = 0
    dnat: str | None = None
    verdict: str | None = None
    path: list[str] = field(default_factory=list)


_SET = re.compile(
    r"^(set|map) (\S+) \{ (?:type|typeof) ([^;]+);(?: flags [^;]+;)?(?: timeout \d+s;)?"
    r"(?: elements = \{ (.*) \};)? \}$"
)


class Tracer:
    def __init__(self, ruleset: str) -> None:
        self.sets: dict[str, set[str]] = {}
        self.maps: dict[str, dict[str, str]] = {}
        self.chains: dict[str, list[str]] = {}
        self.apply(ruleset)

    def apply(self, text: str) -> None:
        """Read a full table text or a partial-sync text (``add/delete element``, ``add rule``, ...)."""
        current: str | None = None
        prefix = re.compile(r"^(add|delete|flush) (element|chain|rule|set) ip kubelite-proxy (\S+) ?(.*)$")
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("add table", "delete table", "table ")) or line == "}":
                if line.startswith("delete table"):
                    self.sets.clear()
                    self.maps.clear()
                    self.chains.clear()
                current = None if line == "}" else current
                continue
            if current is not None:
                if not line.startswith("type "):
                    self.chains[current].append(line)
                continue
            if m := re.match(r"^chain (\S+) \{$", line):
                current = m.group(1)
                self.chains[current] = []
            elif m := _SET.match(line):
                self._declare(m.group(1), m.group(2), m.group(4) or "")
            elif m := prefix.match(line):
                self._change(*m.groups())
            else:
                raise TracerError(f"cannot read line: {line!r}")

    def _declare(self, kind: str, name: str, elements: str) -> None:
        items = [e.strip() for e in elements.split(",") if e.strip()]
        if kind == "set":
            self.sets[name] = set(items)
        else:
            self.maps[name] = dict(tuple(i.split(" : ", 1)) for i in items)  # type: ignore[misc]

    def _change(self, verb: str, what: str, name: str, rest: str) -> None:
        if what == "chain":
            if verb == "add":
                self.chains.setdefault(name, [])
            elif verb == "flush":
                self.chains[name] = []
            else:
                del self.chains[name]
        elif what == "rule":
            self.chains[name].append(rest)
        elif what == "set":
            if verb == "add":
                self.sets.setdefault(name, set())
            else:
                del self.sets[name]
        else:
            items = [e.strip() for e in rest.strip("{} ").split(",") if e.strip()]
            for item in items:
                key, _, value = item.partition(" : ")
                target: dict[str, str] | set[str] = self.maps[name] if name in self.maps else self.sets[name]
                if verb == "delete":
                    if key not in target:
                        raise TracerError(f"delete of missing element {key!r} in {name}")
                    target.pop(key) if isinstance(target, dict) else target.discard(key)
                elif isinstance(target, dict):
                    target[key] = value
                else:
                    target.add(key)

    def trace(self, packet: Packet, pick: int = 0) -> Trace:
        """Where a new connection goes; ``pick`` is what every ``numgen random`` draws."""
        p = _Packet(packet, pick)
        if f"firewall-{packet.hook}" in self.chains:
            self._run(p, f"firewall-{packet.hook}")
            if p.verdict == "drop":
                return Trace("drop", chains=tuple(p.path))
        self._run(p, "nat-prerouting" if packet.hook == "prerouting" else "nat-output")
        if p.verdict == "drop":
            return Trace("drop", chains=tuple(p.path))
        if p.dnat is None:
            self._run(p, f"filter-{packet.hook}")
            if p.verdict in ("drop", "reject"):
                return Trace(p.verdict, chains=tuple(p.path))
            return Trace("accept", chains=tuple(p.path))
        hairpin = f"{packet.src} . {p.dnat.split(':')[0]}" in self.sets.get("hairpin", set())
        return Trace("accept", p.dnat, bool(p.mark & 0x4000) or hairpin, tuple(p.path))

    def _run(self, p: _Packet, chain: str) -> bool:
        """Run ``chain``; True when a terminal verdict ended the packet's walk, False when the chain
        fell off its end or returned (its caller goes on)."""
        if chain not in self.chains:
            raise TracerError(f"no chain {chain}")
        p.path.append(chain)
        for rule in self.chains[chain]:
            outcome = self._rule(p, rule)
            if outcome is not None:
                return outcome == _VERDICT
        return False

    def _match(self, p: _Packet, field_: str, neg: bool, value: str) -> bool:
        addr = p.pkt.src if field_ == "saddr" else p.pkt.dst
        if value.startswith("@"):
            hit = addr in self.sets[value[1:]]
        else:
            hit = ipaddress.ip_address(addr) in ipaddress.ip_network(value, strict=False)
        return hit != neg

    def _rule(self, p: _Packet, rule: str) -> str | None:
        """None: go on with the next rule; ``_VERDICT``: the walk ended; ``_LEAVE``: this chain ended
        (``return``, or a ``goto`` whose chain ended without a verdict)."""
        proto = p.pkt.protocol.lower()
        rest = rule
        while rest:
            if m := re.match(r"^ct state new (.*)$", rest):
                rest = m.group(1)
            elif m := re.match(r"^ip daddr \. meta l4proto \. th dport vmap @(\S+)$", rest):
                verdict = self.maps[m.group(1)].get(f"{p.pkt.dst} . {proto} . {p.pkt.dport}")
                return self._verdict(p, verdict) if verdict else None
            elif m := re.match(r"^meta l4proto \. th dport vmap @(\S+)$", rest):
                verdict = self.maps[m.group(1)].get(f"{proto} . {p.pkt.dport}")
                return self._verdict(p, verdict) if verdict else None
            elif m := re.match(r"^ip (saddr|daddr) (!= )?(\S+) (.*)$", rest):
                if not self._match(p, m.group(1), bool(m.group(2)), m.group(3)):
                    return None
                rest = m.group(4)
            elif m := re.match(r"^meta mark & (0x[0-9a-f]+) == (\S+) (.*)$", rest):
                if p.mark & int(m.group(1), 16) != int(m.group(2), 0):
                    return None
                rest = m.group(3)
            elif m := re.match(r"^meta mark set numgen random mod (\d+)$", rest):
                p.mark = p.pick % int(m.group(1))
                return None
            elif m := re.match(r"^meta mark set meta mark \| (0x[0-9a-f]+)$", rest):
                p.mark |= int(m.group(1), 16)
                return None
            elif m := re.match(r"^update @(\S+) \{ ip saddr \} (.*)$", rest):
                self.sets[m.group(1)].add(p.pkt.src)
                rest = m.group(2)
            elif m := re.match(r"^meta l4proto (\w+) (.*)$", rest):
                if m.group(1) != proto:
                    return None
                rest = m.group(2)
            elif m := re.match(r"^dnat ip addr \. port to (.+) map @(\S+)$", rest):
                key = " . ".join(self._field(p, part) for part in m.group(1).split(" . "))
                target = self.maps[m.group(2)].get(key)
                if target is None:  # a miss ends the rule, as the kernel's lookup does
                    return None
                p.dnat = target.replace(" . ", ":")
                return _VERDICT
            elif m := re.match(r"^dnat to (\S+)$", rest):
                p.dnat = m.group(1)
                return _VERDICT
            elif rest == "reject with tcp reset" or rest == "reject":
                p.verdict = "reject"
                return _VERDICT
            else:
                return self._verdict(p, rest)
        return None

    @staticmethod
    def _field(p: _Packet, part: str) -> str:
        """One field of an endpoint map's key, read from the packet."""
        if part == "ip daddr":
            return p.pkt.dst
        if part == "meta l4proto":
            return p.pkt.protocol.lower()
        if part == "th dport":
            return str(p.pkt.dport)
        if m := re.match(r"^numgen random mod (\d+)$", part):
            return str(p.pick % int(m.group(1)))
        raise TracerError(f"cannot read key field: {part!r}")

    def _verdict(self, p: _Packet, verdict: str) -> str | None:
        if verdict in ("drop", "accept"):
            p.verdict = verdict
            return _VERDICT
        if verdict == "return":
            return _LEAVE
        kind, _, chain = verdict.partition(" ")
        if kind == "jump":
            return _VERDICT if self._run(p, chain) else None
        if kind == "goto":
            return _VERDICT if self._run(p, chain) else _LEAVE
        raise TracerError(f"cannot read rule part: {verdict!r}")
