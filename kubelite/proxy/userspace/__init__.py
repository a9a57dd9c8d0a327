"""The userspace proxy back end (kube-proxy's old ``userspace`` mode, with IPVS's schedulers).

schedulers.py  rr, wrr, lc, wlc, sh, dh, sed, nq and ClientIP affinity (pure)
rules.py       the ``ip kubelite-userspace`` nft table that redirects service traffic to listeners (pure)
proxier.py     asyncio TCP / UDP proxies: dial with retries, backpressured copy, UDP sessions
backend.py     UserspaceBackend: listeners per service port + rules, partial syncs
"""

from kubelite.proxy.userspace.backend import UserspaceBackend
from kubelite.proxy.userspace.schedulers import SCHEDULERS, Balancer, make_scheduler

__all__ = ["SCHEDULERS", "Balancer", "UserspaceBackend", "make_scheduler"]
