"""A directory of busybox applet links: the PATH head of ``busybox`` and ``alpine`` containers.

In the real busybox image ``sh``, ``wget``, ``nc``, ``nslookup`` and ``sleep`` are busybox applets.
kubelite runs containers on the host file system, so it makes one directory holding a symbolic link
per applet (``<dir>/wget -> /bin/busybox``; busybox picks the applet from ``argv[0]``) and puts that
directory first on those containers' PATH. :func:`prepare_busybox_bin_dir` is idempotent and safe
to run from several agents at once (each link is made under a temporary name and renamed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["BUSYBOX_CANDIDATES", "busybox_applets", "find_busybox", "prepare_busybox_bin_dir"]

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/sbin/busybox", "/usr/sbin/busybox")


def find_busybox() -> str | None:
    """The busybox binary on this machine (PATH first, then the usual places), or None."""
    found = shutil.which("busybox")
    if found:
        return os.path.abspath(found)
    for candidate in BUSYBOX_CANDIDATES:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def busybox_applets(busybox: str) -> list[str]:
    """The applet names ``busybox --list`` prints; raises FileNotFoundError or RuntimeError."""
    if not os.path.isfile(busybox):
        raise FileNotFoundError(
            f"busybox was not found at {busybox}: install it (apt-get install busybox) or give the path "
            "of the busybox binary"
        )
    try:
        done = subprocess.run([busybox, "--list"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"could not run {busybox} --list: {exc}") from exc
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"{busybox} --list failed with exit code {done.returncode}: {stderr}")
    names = [line.strip() for line in done.stdout.decode(errors="replace").splitlines()]
    return [n for n in names if n and "/" not in n and n not in (".", "..")]


def prepare_busybox_bin_dir(directory: Path, busybox: str = "/bin/busybox") -> Path:
    """Make ``directory`` hold a link to ``busybox`` for every applet; return ``directory``.

    Links already right are left alone; links to another busybox are replaced; links of applets
    this busybox no longer has are removed. Other files in the directory are never touched.
    """
    target = os.path.abspath(busybox)
    applets = set(busybox_applets(target))
    directory.mkdir(parents=True, exist_ok=True)
    for name in sorted(applets):
        link = directory / name
        try:
            if os.readlink(link) == target:
                continue
        except OSError:
            pass  # missing, or not a link
        temporary = directory / f".{name}.{os.getpid()}.tmp"
        temporary.unlink(missing_ok=True)
        os.symlink(target, temporary)
        os.replace(temporary, link)
    for entry in directory.iterdir():
        stale = entry.name not in applets and not entry.name.startswith(".")  # "." = another agent's
        if stale and entry.is_symlink() and "busybox" in os.readlink(entry):
            entry.unlink(missing_ok=True)
    return directory
