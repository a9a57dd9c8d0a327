"""Running one host tool (``ip``, ``nft``, ``iptables-restore``, ``conntrack``, ...) to completion.

Every runner in ``kubelite.host`` (and the CNI and proxy code that shells out) starts its tool the
same way: optional standard input, captured output, a time limit, and the process killed by its
handle if the caller is cancelled or the limit passes. This is that one way; callers turn the exit
code and messages into their own errors, subclasses of :class:`ToolError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

__all__ = ["ToolError", "run_tool"]


class ToolError(RuntimeError):
    """A host tool failed: ``command`` is what ran, ``stderr`` its message (stripped), ``returncode``
    its exit code and ``netns`` the namespace it ran in. Subclasses word the message."""

    def __init__(
        self, message: str, command: str, stderr: str, *, returncode: int | None, netns: str | None
    ) -> None:
        self.command = command
        self.stderr = stderr.strip()
        self.returncode = returncode
        self.netns = netns
        super().__init__(message)

    @staticmethod
    def detail(stderr: str, returncode: int | None) -> str:
        """What to say after the command: the tool's message, else its exit code."""
        return stderr.strip() or f"exit {returncode}"


async def run_tool(
    argv: Sequence[str], stdin: bytes | None = None, *, seconds: float
) -> tuple[int, str, str]:
    """Run ``argv``; return (exit code, stdout, stderr) decoded as text.

    Raises ``TimeoutError`` after ``seconds`` and ``FileNotFoundError`` when the tool is
    missing; either way, and on cancellation, nothing started here keeps running.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), seconds)
    except (TimeoutError, asyncio.CancelledError):
        if proc.returncode is None:
            proc.kill()  # the process we started, by its handle (PID)
            await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
