"""``python -m kubelite.cni TYPE``: run one of kubelite's plugins as a CNI executable.

The runtime sets ``CNI_COMMAND`` (ADD, DEL, CHECK, VERSION), ``CNI_CONTAINERID``, ``CNI_NETNS``,
``CNI_IFNAME``, ``CNI_ARGS`` and ``CNI_PATH`` and writes the configuration on stdin; the result (ADD)
or an error ``{"cniVersion", "code", "msg", "details"}`` is printed on stdout, and the exit code is
non-zero on error. The plugin works in the namespace this process runs in (the node's).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from kubelite.cni.netops import RealPluginHost
from kubelite.cni.plugin import plugin_main
from kubelite.cni.registry import BUILTIN_TYPES, builtin_plugins
from kubelite.cni.types import CniError, ErrorCode


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in BUILTIN_TYPES:
        error = CniError(
            ErrorCode.INVALID_ENV,
            f"usage: python -m kubelite.cni TYPE, where TYPE is one of {', '.join(BUILTIN_TYPES)}",
        )
        sys.stdout.write(json.dumps(error.to_json()) + "\n")
        return 1
    kind = args[0]
    plugins = builtin_plugins()
    stdin = (
        b"" if os.environ.get("CNI_COMMAND") == "VERSION" and sys.stdin.isatty() else sys.stdin.buffer.read()
    )
    code, out = asyncio.run(
        plugin_main(kind, plugins[kind], os.environ, stdin, host=RealPluginHost(), plugins=plugins)
    )
    if out:
        sys.stdout.write(out + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
