"""The iptables proxy back end: kube-proxy's iptables mode, applied with one ``iptables-restore``.

A sync, in phases: (1) on a full sync, make sure the jump rules from the built-in chains exist
(``iptables -C`` then ``-I``) and learn which per-service chains exist (``iptables-save -t nat``);
(2) compute the restore input (:func:`~kubelite.proxy.iptables.rules.build_rules`: a full rewrite,
or a partial one touching only the changed service ports' chains); (3) one ``iptables-restore
--noflush``; (4) delete stale UDP conntrack entries. After any failure the next sync is full.
"""

from __future__ import annotations

import logging

from kubelite.host.conntrack import ConntrackError, ConntrackRunner, RealConntrack
from kubelite.host.iptables import IptablesError, IptablesRunner, RealIptables
from kubelite.proxy.conntrack import stale_flows
from kubelite.proxy.iptables.rules import (
    JUMPS,
    RuleOptions,
    Ruleset,
    build_rules,
    chains_in_save,
    cleanup_rules,
)
from kubelite.proxy.model import ProxyState, ServicePortName

__all__ = ["IptablesBackend"]

log = logging.getLogger(__name__)


class IptablesBackend:
    """:class:`~kubelite.proxy.backend.ProxyBackend` with mode ``"iptables"``."""

    mode = "iptables"

    def __init__(
        self,
        *,
        netns: str | None = None,
        runner: IptablesRunner | None = None,
        conntrack: ConntrackRunner | None = None,
        options: RuleOptions | None = None,
    ) -> None:
        self.netns = netns
        self.runner: IptablesRunner = runner or RealIptables()
        self.conntrack: ConntrackRunner = conntrack or RealConntrack()
        self.options = options or RuleOptions()
        self._chains: frozenset[str] = frozenset()
        self._state: ProxyState | None = None
        self._healthy = False
        self.last_ruleset: Ruleset | None = None

    async def _ensure_jumps(self) -> None:
        for jump in JUMPS:
            try:
                await self.runner.run(["-t", jump.table, "-C", jump.chain, *jump.args], netns=self.netns)
            except IptablesError:
                # Missing: insert it (the restore before this created the chains it jumps to).
                await self.runner.run(["-t", jump.table, "-I", jump.chain, *jump.args], netns=self.netns)

    async def sync(self, state: ProxyState, changed: frozenset[ServicePortName] | None) -> None:
        full = changed is None or not self._healthy
        self._healthy = False
        if full:
            saved = await self.runner.save("nat", netns=self.netns)
            self._chains = chains_in_save(saved)
        ruleset = build_rules(
            state, changed=None if full else changed, existing=self._chains, options=self.options
        )
        await self.runner.restore(ruleset.text, netns=self.netns)
        if full:
            await self._ensure_jumps()
        self._chains = ruleset.nat_chains
        self.last_ruleset = ruleset
        self._healthy = True
        old, self._state = self._state, state
        for flow in stale_flows(old, state, None if full else changed):
            try:
                await self.conntrack.delete(flow.filters(), netns=self.netns)
            except (ConntrackError, OSError) as exc:
                log.warning("could not delete stale UDP conntrack entries %s: %s", flow.filters(), exc)

    async def cleanup(self) -> None:
        for jump in JUMPS:
            try:
                await self.runner.run(["-t", jump.table, "-D", jump.chain, *jump.args], netns=self.netns)
            except IptablesError:
                pass  # already gone
        saved = await self.runner.save("nat", netns=self.netns)
        await self.runner.restore(cleanup_rules(chains_in_save(saved) | self._chains), netns=self.netns)
        self._chains = frozenset()
        self._state = None
        self._healthy = False
