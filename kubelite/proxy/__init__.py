"""The service proxy (kube-proxy's job) in every agent.

model.py    Services + EndpointSlices -> ProxyState + changed service ports (pure)
backend.py  the ProxyBackend Protocol and the factory that picks nftables / iptables / userspace
runner.py   bounded-frequency sync runner (min interval between syncs, periodic full resync)
nftables/ iptables/ userspace/   the back ends
"""
