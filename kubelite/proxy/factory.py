"""The one place that picks a proxy back end by mode."""

from __future__ import annotations

from kubelite.proxy.backend import MODES, ProxyBackend

__all__ = ["make_backend"]


def make_backend(mode: str, *, netns: str | None = None) -> ProxyBackend:
    """``nftables`` (default), ``iptables`` or ``userspace``; ValueError with a sentence otherwise."""
    if mode == "nftables":
        from kubelite.proxy.nftables.backend import NftablesBackend

        return NftablesBackend(netns=netns)
    if mode == "iptables":
        from kubelite.proxy.iptables.backend import IptablesBackend

        return IptablesBackend(netns=netns)
    if mode == "userspace":
        from kubelite.proxy.userspace.backend import UserspaceBackend

        return UserspaceBackend(netns=netns)
    raise ValueError(f"--proxy-mode {mode!r}: choose one of {', '.join(MODES)} (or none)")
