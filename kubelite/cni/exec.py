"""Executing a CNI plugin binary per the spec: environment, stdin, and result or error on stdout.

Used by :class:`kubelite.cni.invoke.ExecCni` (every plugin of a chain) and by kubelite's ``bridge``
when its ``ipam.type`` is not one kubelite runs in-process (the IPAM plugin is then found in
``CNI_PATH`` and executed, as the reference plugins do).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelite.cni.types import CniError, ErrorCode

__all__ = ["PluginCall", "exec_plugin", "find_plugin"]

JsonObject = dict[str, Any]


def find_plugin(kind: str, dirs: Sequence[str | Path]) -> Path:
    """The executable named ``kind`` in the first of ``dirs`` that has it; raises :class:`CniError`."""
    for directory in dirs:
        candidate = Path(directory) / kind
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    searched = ", ".join(str(d) for d in dirs) or "(no directories)"
    raise CniError(
        ErrorCode.INTERNAL,
        f'no executable CNI plugin named "{kind}" in {searched}; install it or fix the plugin directories',
        plugin=kind,
    )


@dataclass(frozen=True, slots=True)
class PluginCall:
    """The ``CNI_*`` environment of one call."""

    command: str
    container_id: str
    netns: str
    ifname: str
    args: str = ""
    cni_path: tuple[str, ...] = ()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CNI_COMMAND=self.command,
            CNI_CONTAINERID=self.container_id,
            CNI_NETNS=self.netns,
            CNI_IFNAME=self.ifname,
            CNI_ARGS=self.args,
            CNI_PATH=":".join(self.cni_path),
        )
        return env


async def exec_plugin(
    path: Path,
    call: PluginCall,
    stdin: bytes,
    *,
    wrap: Sequence[str] = (),
    time_limit: float = 60.0,
) -> JsonObject | None:
    """Run the plugin at ``path``; return its parsed stdout (``None`` when empty).

    ``wrap`` is an argv prefix (e.g. ``nsenter --net=/run/netns/node``) to run the plugin in another
    namespace. A non-zero exit raises :class:`CniError` built from the error JSON on stdout (or from
    stderr when the plugin printed none).
    """
    kind = path.name
    proc = await asyncio.create_subprocess_exec(
        *wrap,
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=call.env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), time_limit)
    except (TimeoutError, asyncio.CancelledError):
        if proc.returncode is None:
            proc.kill()  # the process we started, by its handle
            await proc.wait()
        raise
    text = out.decode(errors="replace").strip()
    parsed: Any = None
    if text:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    if proc.returncode != 0:
        if isinstance(parsed, dict) and "msg" in parsed:
            raise CniError.from_json(parsed, plugin=kind)
        message = err.decode(errors="replace").strip() or text or f"exit code {proc.returncode}"
        raise CniError(ErrorCode.INTERNAL, f"{call.command} failed: {message}", plugin=kind)
    if not text:
        return None
    if not isinstance(parsed, dict):
        raise CniError(
            ErrorCode.DECODE_FAILURE,
            f"{call.command} printed something that is not a JSON object",
            text[:200],
        )
    return parsed
