"""The nftables back end (the default): one table ``ip kubelite-proxy``, verdict-map dispatch.

rules.py    ProxyState -> ``nft -f -`` text for a full and for a partial sync (pure)
tracer.py   walks that text for a simulated packet: DNAT, masquerade, drop or reject (pure, for tests)
backend.py  NftablesBackend: applies the text through kubelite.host.nft, deletes stale UDP conntrack
"""

from kubelite.proxy.nftables.backend import NftablesBackend

__all__ = ["NftablesBackend"]
