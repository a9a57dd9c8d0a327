"""Images: what process a container's ``image`` + ``command`` + ``args`` become.

kubelite runs containers as plain processes on the host file system inside the pod's namespaces;
there are no image layers. Layout::

    catalog.py          ImageCatalog.resolve(image, command, args) -> ResolvedCommand (pure), the
                        image reference parser and the ``--image-config`` file
    busybox.py          a directory of busybox applet links, the PATH of busybox/alpine containers
    agnhost.py          ``python -m kubelite.images.agnhost <subcommand>``: the agnhost test image
    agnhost_netexec.py  its ``netexec`` subcommand
    agnhost_servers.py  ``serve-hostname``, ``porter``, ``liveness``, ``test-webserver``
    agnhost_net.py      the stdlib-only HTTP/UDP/TCP runtime those share
    goflags.py          Go/pflag-style flag parsing

The names below are imported on first use, so ``python -m kubelite.images.agnhost`` (which runs
this file first) pays nothing for the catalog.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kubelite.images.busybox import find_busybox, prepare_busybox_bin_dir
    from kubelite.images.catalog import (
        ImageCatalog,
        ImageConfigError,
        ImageError,
        ImageReference,
        ImageRule,
        ResolvedCommand,
        parse_reference,
    )

__all__ = [
    "ImageCatalog",
    "ImageConfigError",
    "ImageError",
    "ImageReference",
    "ImageRule",
    "ResolvedCommand",
    "find_busybox",
    "parse_reference",
    "prepare_busybox_bin_dir",
]


def __getattr__(name: str) -> object:
    if name in ("find_busybox", "prepare_busybox_bin_dir"):
        from kubelite.images import busybox

        return getattr(busybox, name)
    if name in __all__:
        from kubelite.images import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
