"""The iptables service proxy back end (kube-proxy's iptables mode).

rules.py      ProxyState -> iptables-restore input (pure; full and partial sync)
tracer.py     walks those rules for one packet (tests without root)
conntrack.py  stale UDP conntrack entries (pure) + a small ``conntrack -D`` runner
backend.py    IptablesBackend: applies the rules through kubelite.host.iptables
"""

from kubelite.proxy.iptables.backend import IptablesBackend

__all__ = ["IptablesBackend"]
