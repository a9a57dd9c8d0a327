"""The image catalog: which process a container's ``image``, ``command`` and ``args`` become.

kubelite has no container images: a container is a process on the host file system, inside the
pod's namespaces. An image name therefore selects an *image rule* — an ENTRYPOINT, a CMD and default
environment — and Kubernetes' entrypoint semantics combine it with the container:

=================  ================  ==============================
container command  container args    process argv
=================  ================  ==============================
set                any               command + args  (CMD ignored)
empty              set               ENTRYPOINT + args
empty              empty             ENTRYPOINT + CMD
=================  ================  ==============================

Rules, first match wins: the ``--image-config`` file's entries (:class:`ImageRule`), then the
built-ins —

- agnhost (``registry.k8s.io/e2e-test-images/agnhost``, ``k8s.gcr.io/e2e-test-images/agnhost``,
  ``gcr.io/kubernetes-e2e-test-images/agnhost``; any tag): ENTRYPOINT ``/agnhost``, CMD ``pause``;
  ``/agnhost`` runs ``python -S -m kubelite.images.agnhost``. Other commands run from the host with
  the busybox PATH (the real image has a shell).
- pause (``*/pause``, any tag): ``/pause`` runs ``agnhost pause`` (its arguments are ignored, as the
  real pause binary ignores them).
- busybox, alpine (any registry or tag): no ENTRYPOINT, CMD ``sh``; PATH starts with the busybox
  applet directory, so ``sh``, ``wget``, ``nc``, ``nslookup`` are busybox's. Absolute paths such as
  ``/bin/sh`` are the host's.
- debian, ubuntu: CMD ``bash``, the host's PATH.

Errors are :class:`ImageError` with the reason the kubelet would report in the container's waiting
state: ``InvalidImageName`` (unparsable reference), ``ErrImagePull`` (no rule for the image), and
``CreateContainerError`` when the rules leave nothing to run (no command and an image without
ENTRYPOINT or CMD) — the runtime's "no command specified", which the kubelet reports at create time.

Everything here is pure except :meth:`ImageCatalog.from_file`, which reads the config file.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from kubelite.images.busybox import find_busybox, prepare_busybox_bin_dir

__all__ = [
    "AGNHOST_MODULE",
    "HOST_PATH",
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

AGNHOST_MODULE = "kubelite.images.agnhost"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
MAX_NAME_LENGTH = 255

# The grammar of github.com/distribution/reference (regexp.go), anchored.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

AGNHOST_PATHS = (
    "e2e-test-images/agnhost",  # registry.k8s.io, k8s.gcr.io
    "kubernetes-e2e-test-images/agnhost",  # gcr.io (old)
)
PAUSE_NAMES = frozenset({"pause", "pause-amd64", "pause-arm64"})


class ImageError(Exception):
    """A container's image cannot be run.

    ``reason`` is the kubelet's waiting reason: ``InvalidImageName``, ``ErrImagePull`` or
    ``CreateContainerError``; ``message`` is a sentence for the pod status saying what to do.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ImageConfigError(ValueError):
    """The ``--image-config`` file is unreadable or malformed; the message names the file and entry."""


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed, normalised image reference: ``busybox`` -> docker.io / library/busybox / latest."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def name(self) -> str:
        """The last path component: ``busybox`` for ``docker.io/library/busybox``."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def familiar_repository(self) -> str:
        """Docker's short form: ``docker.io/library/nginx`` -> ``nginx``, ``docker.io/a/b`` -> ``a/b``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        return self.path.removeprefix(OFFICIAL_PREFIX)

    @property
    def normalized(self) -> str:
        """``docker.io/library/busybox:latest``; a digest-only reference keeps no tag."""
        return self._with_suffix(self.repository)

    def _with_suffix(self, base: str) -> str:
        text = base
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def forms(self, base: str) -> tuple[str, ...]:
        """``base`` alone and with the tag, digest, or both: the strings a rule's pattern may match."""
        forms = [base, self._with_suffix(base)]
        if self.tag is not None and self.digest is not None:
            forms += [f"{base}:{self.tag}", f"{base}@{self.digest}"]
        return tuple(dict.fromkeys(forms))


def _invalid(image: str, detail: str) -> ImageError:
    return ImageError(
        "InvalidImageName",
        f'Failed to apply default image tag "{image}": couldn\'t parse image reference "{image}": '
        f"invalid reference format{detail}. Fix the image field of the container.",
    )


def parse_reference(image: str) -> ImageReference:
    """Parse ``image`` as Docker does (registry host, path, ``:tag``, ``@digest``) and normalise it.

    Raises :class:`ImageError` with reason ``InvalidImageName``.
    """
    if not image:
        raise ImageError(
            "InvalidImageName", "The container has no image. Set the image field of the container."
        )
    name, at, digest = image.partition("@")
    tag: str | None = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise _invalid(image, f": {tag!r} is not a valid tag")
    if at:
        if not _DIGEST_RE.fullmatch(digest):
            raise _invalid(image, f": {digest!r} is not a valid digest")
        algorithm, _, encoded = digest.partition(":")
        expected = _DIGEST_LENGTHS.get(algorithm)
        if expected is not None and (len(encoded) != expected or encoded != encoded.lower()):
            raise _invalid(image, f": a {algorithm} digest is {expected} lower-case hex digits")
    if len(name) > MAX_NAME_LENGTH:
        raise _invalid(image, f": repository name must not be more than {MAX_NAME_LENGTH} characters")
    first, sep, rest = name.partition("/")
    is_domain = sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first)
    domain, path = (first, rest) if is_domain else (DEFAULT_DOMAIN, name)
    if is_domain and not _DOMAIN_RE.fullmatch(domain):
        raise _invalid(image, f": {domain!r} is not a valid registry host")
    if not _PATH_RE.fullmatch(path):
        if _PATH_RE.fullmatch(path.lower()):
            raise _invalid(image, ": repository name must be lowercase")
        raise _invalid(image, "")
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    if tag is None and not at:
        tag = "latest"  # the kubelet's applyDefaultImageTag
    return ImageReference(domain, path, tag, digest if at else None)


@dataclass(frozen=True, slots=True)
class ImageRule:
    """One ``--image-config`` entry: a pattern and the image's ENTRYPOINT, CMD and environment.

    ``match`` is an fnmatch pattern. With a ``/`` it is matched against the normalised reference
    (``docker.io/library/nginx:1.25``), the repository alone, and Docker's short forms
    (``bitnami/nginx:1.25``); without one, against the last path component with or without the
    tag (``nginx`` matches nginx from any registry with any tag, ``nginx:1.*`` some tags).
    """

    match: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def matches(self, ref: ImageReference) -> bool:
        if "/" in self.match:
            candidates = ref.forms(ref.repository) + ref.forms(ref.familiar_repository)
        else:
            candidates = ref.forms(ref.name)
        return any(fnmatchcase(candidate, self.match) for candidate in candidates)


@dataclass(frozen=True, slots=True)
class ResolvedCommand:
    """What to run for a container: ``argv`` to exec (``argv[0]`` found on the env's PATH when not
    absolute), the image's default environment (the container's ``env`` overrides it), and which
    kind of image rule produced it: ``agnhost``, ``pause``, ``busybox``, ``host`` or ``configured``."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    image_kind: str


def _kubelite_root() -> str:
    import kubelite

    return str(Path(kubelite.__file__).resolve().parent.parent)


class ImageCatalog:
    """Resolves images to processes; see the module docstring for the rules.

    ``python`` runs the agnhost image; ``busybox_bin_dir`` (from :func:`prepare_busybox_bin_dir`)
    heads the PATH of busybox-like images, or None to use the host's binaries; ``extra`` rules are
    consulted before the built-ins; ``pythonpath`` is where the ``kubelite`` package is found
    (default: this installation). agnhost runs with ``python -S`` — no site-packages, which saves
    about 20 ms and 2 MB per process — so PYTHONPATH is part of its image environment.
    """

    def __init__(
        self,
        *,
        python: str = sys.executable,
        busybox_bin_dir: str | None,
        extra: Sequence[ImageRule] = (),
        pythonpath: str | None = None,
    ) -> None:
        self.python = python
        self.busybox_bin_dir = busybox_bin_dir
        self.extra = tuple(extra)
        self.pythonpath = pythonpath if pythonpath is not None else _kubelite_root()
        self.busybox_path = f"{busybox_bin_dir}:{HOST_PATH}" if busybox_bin_dir else HOST_PATH

    @classmethod
    def from_file(cls, path: str, **kw: Any) -> ImageCatalog:
        """A catalog whose extra rules come from the YAML file at ``path`` (``--image-config``).

        Raises :class:`ImageConfigError` naming the file and the entry that is wrong.
        """
        return cls(extra=load_image_config(path), **kw)

    def agnhost_argv(self, *args: str) -> tuple[str, ...]:
        return (self.python, "-S", "-m", AGNHOST_MODULE, *args)

    def builtin_names(self) -> list[str]:
        return [
            "agnhost (registry.k8s.io/e2e-test-images/agnhost)",
            "pause (registry.k8s.io/pause)",
            "busybox",
            "alpine",
            "debian",
            "ubuntu",
        ]

    def resolve(self, image: str, command: Sequence[str], args: Sequence[str]) -> ResolvedCommand:
        """The process for a container; raises :class:`ImageError` (see the module docstring)."""
        ref = parse_reference(image)
        for rule in self.extra:
            if rule.matches(ref):
                argv = _combine(image, rule.entrypoint, rule.cmd, command, args)
                return ResolvedCommand(argv, rule.env, "configured")
        name = ref.name
        if any(ref.path == p or ref.path.endswith("/" + p) for p in AGNHOST_PATHS):
            argv = _combine(image, ("/agnhost",), ("pause",), command, args)
            env = (("PATH", self.busybox_path), ("PYTHONPATH", self.pythonpath))
            if argv[0] in ("/agnhost", "agnhost"):
                argv = self.agnhost_argv(*argv[1:])
            return ResolvedCommand(argv, env, "agnhost")
        if name in PAUSE_NAMES:
            argv = _combine(image, ("/pause",), (), command, args)
            env = (("PATH", HOST_PATH), ("PYTHONPATH", self.pythonpath))
            if argv[0] in ("/pause", "pause"):
                argv = self.agnhost_argv("pause")
            return ResolvedCommand(argv, env, "pause")
        if name in ("busybox", "alpine"):
            argv = _combine(image, (), ("sh",), command, args)
            return ResolvedCommand(argv, (("PATH", self.busybox_path),), "busybox")
        if name in ("debian", "ubuntu"):
            argv = _combine(image, (), ("bash",), command, args)
            return ResolvedCommand(argv, (("PATH", HOST_PATH),), "host")
        raise ImageError("ErrImagePull", self._cannot_pull(image))

    def _cannot_pull(self, image: str) -> str:
        can = ", ".join(self.builtin_names())
        if self.extra:
            can += ", and the configured " + ", ".join(f'"{rule.match}"' for rule in self.extra)
        return (
            f'kubelite cannot pull "{image}": it runs containers as processes on the host, not from images. '
            f"It can run: {can}. To run this image, add an entry that matches it (with the command to run) "
            "to the file given with `kubelite agent --image-config`; see kubelite/images/README.md."
        )


def _combine(
    image: str,
    entrypoint: Sequence[str],
    cmd: Sequence[str],
    command: Sequence[str],
    args: Sequence[str],
) -> tuple[str, ...]:
    """Kubernetes' rule: command replaces ENTRYPOINT (and drops CMD), args replace CMD."""
    if command:
        argv = (*command, *args)
    elif args:
        argv = (*entrypoint, *args)
    else:
        argv = (*entrypoint, *cmd)
    if not argv or not argv[0]:
        raise ImageError(
            "CreateContainerError",
            f'Image "{image}" has no entrypoint or default command and the container gives no command: '
            "no command specified. Set command in the container spec.",
        )
    return argv


# ---------------------------------------------------------------- the --image-config file


def load_image_config(path: str) -> list[ImageRule]:
    """Read the ``--image-config`` YAML file::

    images:
    - match: "docker.io/library/nginx:*"
      entrypoint: ["/usr/sbin/nginx", "-g", "daemon off;"]
      cmd: []
      env: {PATH: /usr/sbin:/usr/bin}
    """
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ImageConfigError(
            f"Cannot read the image config {path}: {exc.strerror or exc}. "
            "Check the path given with --image-config."
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ImageConfigError(f"The image config {path} is not valid YAML: {exc}") from None
    return parse_image_config(document, source=path)


def parse_image_config(document: object, *, source: str = "the image config") -> list[ImageRule]:
    """Rules from an already-parsed image config document; raises :class:`ImageConfigError`."""
    if document is None:
        return []
    if not isinstance(document, Mapping) or set(document) - {"images"}:
        raise ImageConfigError(
            f"{source} must be a mapping with one key, images, holding a list of "
            "{match, entrypoint, cmd, env} entries."
        )
    entries = document.get("images") or []
    if not isinstance(entries, list):
        raise ImageConfigError(f"{source}: images must be a list of {{match, entrypoint, cmd, env}} entries.")
    return [_parse_rule(entry, f"{source}: images[{i}]") for i, entry in enumerate(entries)]


def _parse_rule(entry: object, where: str) -> ImageRule:
    if not isinstance(entry, Mapping):
        raise ImageConfigError(f"{where} must be a mapping with match, entrypoint, cmd and env.")
    unknown = sorted(str(k) for k in entry if k not in ("match", "entrypoint", "cmd", "env"))
    if unknown:
        raise ImageConfigError(
            f"{where} has unknown field(s) {', '.join(unknown)}; allowed: match, entrypoint, cmd, env."
        )
    match = entry.get("match")
    if not isinstance(match, str) or not match.strip():
        raise ImageConfigError(
            f'{where}.match must be a non-empty string such as "nginx" or "docker.io/library/nginx:*".'
        )
    return ImageRule(
        match=match.strip(),
        entrypoint=_string_list(entry.get("entrypoint"), f"{where}.entrypoint"),
        cmd=_string_list(entry.get("cmd"), f"{where}.cmd"),
        env=_env(entry.get("env"), f"{where}.env"),
    )


def _string_list(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise ImageConfigError(
            f'{where} must be a list of strings, e.g. ["/usr/bin/app", "--flag"], not one string.'
        )
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ImageConfigError(f"{where} must be a list of strings.")
    return tuple(value)


def _env(value: object, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ImageConfigError(f"{where} must be a mapping of variable names to values.")
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise ImageConfigError(f"{where} has an invalid variable name {key!r}.")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ImageConfigError(f"{where}.{key} must be a string (quote it in the YAML file).")
        pairs.append((key, str(item)))
    return tuple(pairs)
