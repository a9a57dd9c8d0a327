"""Walk iptables rules for one packet without a kernel (like kube-proxy's iptables test tracer).

:class:`Tracer` reads ``iptables-restore`` text (what :func:`~kubelite.proxy.iptables.rules.build_rules`
produces, applied in order, so a partial-sync input on top of a full one works as ``--noflush``
would) plus the jump rules of the built-in chains, and answers: a new packet from S to D:port/proto
arrives on ``prerouting`` (from another host or a pod) or ``output`` (sent by the node itself):
which outcomes can happen, with which probability? An :class:`Outcome` says the verdict (ACCEPT,
DROP, REJECT), the DNAT destination (``ip:port``) if any and whether it is masqueraded.

Random choice (``-m statistic``) is explored on both branches, so the outcomes list every endpoint
with its probability. ``-m recent`` is modelled by :attr:`Tracer.recent` (name -> source IPs):
``--rcheck`` matches a remembered source; call :meth:`Tracer.remember` with the outcome you
"sent" to record its ``--set``. The packet path is: nat PREROUTING|OUTPUT, then filter INPUT (if the
destination after DNAT is a local address) / FORWARD / OUTPUT, then nat POSTROUTING. Only the
matches and targets the rules module writes are understood; anything else raises ``ValueError``.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

__all__ = ["Outcome", "Packet", "Tracer"]

_TERMINAL = ("ACCEPT", "DROP", "REJECT")
_FLAGS_WITH_VALUE = {
    "-s", "-d", "-p", "-i", "-o", "-m", "--dport", "--dst-type", "--src-type", "--comment", "--mode",
    "--probability", "--name", "--mask", "--seconds", "--mark", "--ctstate",
}  # fmt: skip
_FLAGS_ALONE = {"--rsource", "--rcheck", "--reap", "--set"}


@dataclass(frozen=True, slots=True)
class Packet:
    src: str
    dst: str
    dport: int
    protocol: str = "TCP"
    hook: str = "prerouting"
    """``prerouting`` (arrives from outside or from a pod) or ``output`` (sent by this node)."""
    iif: str = ""
    """Input interface (e.g. the pod bridge) for ``prerouting``."""


@dataclass(frozen=True, slots=True)
class Outcome:
    probability: float
    verdict: str
    dnat: str | None = None
    masquerade: bool = False
    recent: tuple[str, ...] = ()
    """``-m recent --set`` names this packet recorded."""
    chains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Rule:
    matches: tuple[tuple[str, bool, str], ...]
    target: str
    target_args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Ctx:
    dst: str
    dport: int
    mark: int = 0
    dnat: str | None = None
    recent: tuple[str, ...] = ()
    chains: tuple[str, ...] = ()


def _parse_rule(tokens: list[str]) -> _Rule:
    matches: list[tuple[str, bool, str]] = []
    negate = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            negate = True
            i += 1
            continue
        if tok == "-j":
            return _Rule(tuple(matches), tokens[i + 1], tuple(tokens[i + 2 :]))
        if tok in _FLAGS_WITH_VALUE:
            if tok not in ("-m", "--comment"):
                matches.append((tok, negate, tokens[i + 1]))
            i += 2
        elif tok in _FLAGS_ALONE:
            matches.append((tok, negate, ""))
            i += 1
        else:
            raise ValueError(f"the tracer does not understand {tok!r} in {' '.join(tokens)!r}")
        negate = False
    raise ValueError(f"rule without a target: {' '.join(tokens)!r}")


@dataclass
class Tracer:
    local_ips: tuple[str, ...] = ()
    """The node's addresses (``--dst-type LOCAL`` / ``--src-type LOCAL``); 127.0.0.1 is added."""
    tables: dict[str, dict[str, list[_Rule]]] = field(default_factory=dict)
    recent: dict[str, set[str]] = field(default_factory=dict)

    def load(self, text: str) -> None:
        """Apply one ``iptables-restore --noflush`` input."""
        table: dict[str, list[_Rule]] | None = None
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or line == "COMMIT":
                continue
            if line.startswith("*"):
                table = self.tables.setdefault(line[1:], {})
                continue
            if table is None:
                raise ValueError(f"rule outside a table: {line!r}")
            if line.startswith(":"):
                table[line[1:].split()[0]] = []
                continue
            tokens = shlex.split(line)
            if tokens[0] == "-X":
                table.pop(tokens[1], None)
            elif tokens[0] in ("-A", "-I"):
                rule = _parse_rule(tokens[2:])
                chain = table.setdefault(tokens[1], [])
                chain.append(rule) if tokens[0] == "-A" else chain.insert(0, rule)
            else:
                raise ValueError(f"the tracer does not understand {line!r}")

    def load_jumps(self, jumps: Iterable[tuple[str, str]]) -> None:
        """``(table, "-A CHAIN args")`` lines for built-in chains."""
        for table, line in jumps:
            self.load(f"*{table}\n{line}\nCOMMIT\n")

    def remember(self, packet: Packet, outcome: Outcome) -> None:
        for name in outcome.recent:
            self.recent.setdefault(name, set()).add(packet.src)

    # ------------------------------------------------------------------ walking

    def trace(self, packet: Packet) -> list[Outcome]:
        """Every outcome for a new connection's first packet, most probable first."""
        first = "OUTPUT" if packet.hook == "output" else "PREROUTING"
        results: list[Outcome] = []
        for p, ctx, verdict in self._chain("nat", first, packet, _Ctx(packet.dst, packet.dport)):
            if verdict in ("DROP", "REJECT"):
                results.append(Outcome(p, verdict, ctx.dnat, False, ctx.recent, ctx.chains))
                continue
            filt = "INPUT" if self._is_local(ctx.dst) else "FORWARD"
            if packet.hook == "output":
                filt = "OUTPUT"
            for q, ctx2, v2 in self._chain("filter", filt, packet, ctx):
                if v2 in ("DROP", "REJECT"):
                    results.append(Outcome(p * q, v2, ctx2.dnat, False, ctx2.recent, ctx2.chains))
                    continue
                for r, ctx3, _v3 in self._chain("nat", "POSTROUTING", packet, ctx2):
                    masq = ctx3.chains.count("MASQUERADE") > 0
                    results.append(Outcome(p * q * r, "ACCEPT", ctx3.dnat, masq, ctx3.recent, ctx3.chains))
        results.sort(key=lambda o: (-o.probability, o.dnat or ""))
        return results

    def _is_local(self, ip: str) -> bool:
        return ip in self.local_ips or ipaddress.ip_address(ip).is_loopback

    def _chain(self, table: str, chain: str, pkt: Packet, ctx: _Ctx) -> list[tuple[float, _Ctx, str | None]]:
        """Outcomes of running ``chain``: (probability, context, verdict or None = fell off / RETURN)."""
        rules = self.tables.get(table, {}).get(chain)
        if rules is None:
            if chain in ("PREROUTING", "OUTPUT", "POSTROUTING", "INPUT", "FORWARD"):
                return [(1.0, ctx, None)]
            raise ValueError(f"jump to a missing chain {table}/{chain}")
        ctx = replace(ctx, chains=(*ctx.chains, chain))
        return self._rules(table, rules, 0, pkt, ctx)

    def _rules(
        self, table: str, rules: list[_Rule], start: int, pkt: Packet, ctx: _Ctx
    ) -> list[tuple[float, _Ctx, str | None]]:
        for i in range(start, len(rules)):
            rule = rules[i]
            chance, ctx2 = self._match(rule, pkt, ctx)
            if chance == 0.0:
                continue
            taken = self._target(table, rule, pkt, ctx2)
            out: list[tuple[float, _Ctx, str | None]] = []
            for p, c, v in taken:
                if v == "RETURN":
                    out.append((chance * p, c, None))
                elif v is None:
                    out += [
                        (chance * p * q, c2, v2) for q, c2, v2 in self._rules(table, rules, i + 1, pkt, c)
                    ]
                else:
                    out.append((chance * p, c, v))
            if chance < 1.0:
                rest = self._rules(table, rules, i + 1, pkt, ctx)
                out += [((1 - chance) * q, c2, v2) for q, c2, v2 in rest]
            return out
        return [(1.0, ctx, None)]

    def _match(self, rule: _Rule, pkt: Packet, ctx: _Ctx) -> tuple[float, _Ctx]:
        chance = 1.0
        for flag, neg, value in rule.matches:
            if flag == "--probability":
                chance *= float(value)
                continue
            if flag == "--set":
                ctx = replace(ctx, recent=(*ctx.recent, dict(self._opts(rule))["--name"]))
                continue
            ok = self._test(flag, value, rule, pkt, ctx)
            if ok is None:
                continue
            if ok == neg:
                return 0.0, ctx
        return chance, ctx

    @staticmethod
    def _opts(rule: _Rule) -> list[tuple[str, str]]:
        return [(f, v) for f, _n, v in rule.matches]

    def _test(self, flag: str, value: str, rule: _Rule, pkt: Packet, ctx: _Ctx) -> bool | None:
        """True/False for a match; None for an option that is not a test by itself."""
        if flag == "-s":
            return ipaddress.ip_address(pkt.src) in ipaddress.ip_network(value, strict=False)
        if flag == "-d":
            return ipaddress.ip_address(ctx.dst) in ipaddress.ip_network(value, strict=False)
        if flag == "-p":
            return value == pkt.protocol.lower()
        if flag == "-i":
            return pkt.hook == "prerouting" and value == pkt.iif
        if flag == "-o":
            return False
        if flag == "--dport":
            return int(value) == ctx.dport
        if flag == "--dst-type":
            return value == "LOCAL" and self._is_local(ctx.dst)
        if flag == "--src-type":
            return value == "LOCAL" and (pkt.hook == "output" or self._is_local(pkt.src))
        if flag == "--ctstate":
            return "NEW" in value.split(",")
        if flag == "--mark":
            want, _, mask = value.partition("/")
            m = int(mask or "0xffffffff", 16)
            return (ctx.mark & m) == int(want, 16)
        if flag == "--rcheck":
            name = dict(self._opts(rule))["--name"]
            return pkt.src in self.recent.get(name, set())
        if flag in ("--mode", "--name", "--mask", "--seconds", "--rsource", "--reap"):
            return None
        raise ValueError(f"the tracer does not understand match {flag}")

    def _target(
        self, table: str, rule: _Rule, pkt: Packet, ctx: _Ctx
    ) -> list[tuple[float, _Ctx, str | None]]:
        target, args = rule.target, rule.target_args
        if target in _TERMINAL:
            return [(1.0, ctx, target)]
        if target == "RETURN":
            return [(1.0, ctx, "RETURN")]
        if target == "MARK":
            op, value = args[0], int(args[1], 16)
            mark = ctx.mark | value if op == "--or-mark" else ctx.mark ^ value
            return [(1.0, replace(ctx, mark=mark), None)]
        if target == "DNAT":
            dest = args[args.index("--to-destination") + 1]
            ip, _, port = dest.rpartition(":")
            return [(1.0, replace(ctx, dnat=dest, dst=ip, dport=int(port)), "ACCEPT")]
        if target == "MASQUERADE":
            return [(1.0, replace(ctx, chains=(*ctx.chains, "MASQUERADE")), "ACCEPT")]
        # A jump to a user chain: continue after it unless it ended in a verdict.
        return self._chain(table, target, pkt, ctx)
