"""The only code in kubelite that touches the kernel.

Layout (one module per tool; every runner is an async ``typing.Protocol`` with a real
implementation that starts the tool and a fake that records what it was asked to do):

- ``ip``        links, addresses, routes and network namespaces through iproute2 (``ip -batch``,
                ``ip -j``): :class:`~kubelite.host.ip.IpRunner`, ``RealIp``, ``FakeIp`` and pure
                command builders; ``add_netns``/``delete_netns`` need no process once /run/netns
                is set up.
- ``nft``       nftables rulesets through ``nft -f -`` (``nsenter --net`` for another namespace):
                :class:`~kubelite.host.nft.NftRunner`, ``RealNft``, ``FakeNft``.
- ``run``       ``run_tool``: start one tool to completion (stdin, output, time limit, kill on cancel);
                every runner here and the CNI and proxy code that shell out use it.
- ``netns``     sockets created inside another namespace (``setns`` in a short-lived thread), named
                namespaces created with ``unshare`` + a bind mount.

Planned, same pattern: ``iptables`` (``iptables-restore``), ``conntrack``, ``sysctl``. Code
elsewhere computes *what* the rules should be (pure, tested without root) and hands command lines
to a runner from this package.
"""
