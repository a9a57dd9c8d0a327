"""NftablesBackend: the proxy's default back end (rules from :mod:`.rules`, applied with ``nft -f -``).

Contract (see :class:`kubelite.proxy.backend.ProxyBackend`): ``sync(state, None)`` replaces the whole
``ip kubelite-proxy`` table in one transaction; ``sync(state, changed)`` rewrites only the changed
service ports, assuming the kernel still holds what the previous successful sync wrote. When the
back end does not know what the kernel holds (first sync, or a failed sync) it does a full sync even
if asked for a partial one; when a sync fails it forgets, so the next one is full. After the rules,
stale UDP conntrack entries are deleted (:mod:`kubelite.proxy.conntrack`); a failure there is
logged, not raised: the rules are right and the next sync retries nothing, as kube-proxy does.
Conntrack is never flushed, so established connections survive restarts and full syncs.
"""

from __future__ import annotations

import logging

from kubelite.host.conntrack import ConntrackError, ConntrackRunner, RealConntrack
from kubelite.host.nft import NftRunner, RealNft
from kubelite.proxy.conntrack import stale_flows
from kubelite.proxy.model import ProxyState, ServicePortName
from kubelite.proxy.nftables.rules import (
    TABLE,
    Refs,
    ServiceRules,
    all_service_rules,
    count_refs,
    delete_ruleset,
    full_ruleset,
    partial_ruleset,
    service_rules,
)

__all__ = ["NftablesBackend"]

log = logging.getLogger(__name__)


class NftablesBackend:
    """Programs the service proxy as one nftables table in ``netns`` (None = this namespace)."""

    mode = "nftables"

    def __init__(
        self,
        *,
        netns: str | None = None,
        nft: NftRunner | None = None,
        conntrack: ConntrackRunner | None = None,
    ) -> None:
        self.netns = netns
        self.nft: NftRunner = nft or RealNft()
        self.conntrack: ConntrackRunner = conntrack or RealConntrack()
        self._state: ProxyState | None = None
        self._rules: dict[ServicePortName, ServiceRules] | None = None
        self._refs = Refs()
        self.full_syncs = 0
        self.partial_syncs = 0

    async def _intact(self) -> bool:
        """Cheap check that our table still dispatches (someone may have deleted or flushed it)."""
        try:
            text = await self.nft.run(["list", "chain", "ip", TABLE, "nat-prerouting"], netns=self.netns)
            dispatch = await self.nft.run(["list", "chain", "ip", TABLE, "services"], netns=self.netns)
        except Exception:
            return False
        return "jump services" in text and "vmap @service-ips" in dispatch

    async def sync(self, state: ProxyState, changed: frozenset[ServicePortName] | None) -> None:
        old_state, old_rules = self._state, self._rules
        fresh: dict[ServicePortName, ServiceRules] | None = None
        if (
            changed is None
            and old_rules is not None
            and old_state is not None
            and (old_state.node_ips, old_state.cluster_cidr, old_state.service_cidr)
            == (state.node_ips, state.cluster_cidr, state.service_cidr)
            and await self._intact()
        ):
            # A periodic resync while the table is intact: rewrite only the service ports whose rules
            # differ, so affinity sets and counters of the others survive (a full rewrite would
            # recreate the table and forget every client's affinity).
            fresh = all_service_rules(state)
            changed = frozenset(
                spn for spn in set(fresh) | set(old_rules) if fresh.get(spn) != old_rules.get(spn)
            )
        self._rules = None  # unknown until the transaction succeeds
        if changed is None or old_rules is None or old_state is None:
            rules = all_service_rules(state)
            refs = count_refs(rules.values())
            await self.nft.apply(full_ruleset(state, rules, refs), netns=self.netns)
            self._refs = refs
            self.full_syncs += 1
        else:
            if fresh is not None:  # the periodic resync above already computed every port's rules
                rules = fresh
            else:
                rules = dict(old_rules)
                for spn in changed:
                    sp = state.services.get(spn)
                    if sp is None or not sp.cluster_ips:
                        rules.pop(spn, None)
                    else:
                        rules[spn] = service_rules(sp, state.endpoints_of(spn), state.cluster_cidr)
            text = partial_ruleset(old_rules, rules, changed, self._refs)  # counts the new rules
            await self.nft.apply(text, netns=self.netns)
            self.partial_syncs += 1
        self._rules, self._state = rules, state
        await self._delete_stale(old_state, state, changed)

    async def _delete_stale(
        self, old: ProxyState | None, new: ProxyState, changed: frozenset[ServicePortName] | None
    ) -> None:
        for flow in stale_flows(old, new, changed):
            try:
                await self.conntrack.delete(flow.filters(), netns=self.netns)
            except (ConntrackError, OSError) as exc:
                log.warning("could not delete stale UDP conntrack entries: %s", exc)

    async def cleanup(self) -> None:
        await self.nft.apply(delete_ruleset(), netns=self.netns)
        self._state, self._rules, self._refs = None, None, Refs()
