"""Command-line flags parsed the way agnhost's (Cobra / pflag, and Go ``flag``) parser does.

Accepted forms, for a flag named ``http-port``: ``--http-port=8080``, ``--http-port 8080``,
``-http-port=8080`` and ``-http-port 8080`` (Go's ``flag`` package allows one dash). A boolean flag
takes no separate value: ``--tcp`` sets it, ``--tcp=false`` clears it, and in ``--tcp false`` the
``false`` is a positional argument, exactly as in Go. ``--`` ends the flags. Integers follow
``strconv.ParseInt(s, 0, 64)`` (``0x1f`` is accepted). klog's logging flags (``--v=2``,
``--logtostderr`` ...), which agnhost accepts on every subcommand, are accepted and ignored.

:func:`parse_flags` is pure: it raises :class:`FlagError` whose message is the same sentence pflag
prints (``unknown flag: --foo``), and never exits. It imports nothing, because it runs on the start-up
path of every agnhost process.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["KLOG_FLAGS", "FlagError", "Flags", "parse_flags"]

# klog's flags (k8s.io/klog/v2 InitFlags): name -> default, which gives the flag its type.
KLOG_FLAGS: Mapping[str, bool | int | str] = {
    "add_dir_header": False,
    "alsologtostderr": False,
    "log_backtrace_at": "",
    "log_dir": "",
    "log_file": "",
    "log_file_max_size": 1800,
    "logtostderr": True,
    "one_output": False,
    "skip_headers": False,
    "skip_log_headers": False,
    "stderrthreshold": "2",
    "v": 0,
    "vmodule": "",
}

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class FlagError(Exception):
    """A command line that the subcommand's flags do not accept; ``str()`` is pflag's sentence."""


class Flags:
    """Parsed flag values (every declared flag, defaults filled in) and the positional arguments."""

    __slots__ = ("_values", "args", "explicit")

    def __init__(self, values: dict[str, bool | int | str], args: list[str], explicit: set[str]) -> None:
        self._values = values
        self.args = args
        self.explicit = explicit  # names given on the command line, for "only if passed" semantics

    def get_int(self, name: str) -> int:
        value = self._values[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"flag --{name} is not an integer flag")
        return value

    def get_str(self, name: str) -> str:
        value = self._values[name]
        if not isinstance(value, str):
            raise TypeError(f"flag --{name} is not a string flag")
        return value

    def get_bool(self, name: str) -> bool:
        value = self._values[name]
        if not isinstance(value, bool):
            raise TypeError(f"flag --{name} is not a boolean flag")
        return value


def _convert(name: str, default: bool | int | str, text: str) -> bool | int | str:
    if isinstance(default, bool):
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise FlagError(
            f'invalid argument "{text}" for "--{name}" flag: '
            f'strconv.ParseBool: parsing "{text}": invalid syntax'
        )
    if isinstance(default, int):
        try:
            return int(text, 0)
        except ValueError:
            pass
        try:
            return int(text, 10)  # Go accepts "010"; Python's base 0 does not
        except ValueError:
            raise FlagError(
                f'invalid argument "{text}" for "--{name}" flag: '
                f'strconv.ParseInt: parsing "{text}": invalid syntax'
            ) from None
    return text


def parse_flags(
    spec: Mapping[str, bool | int | str], argv: Sequence[str], *, max_args: int | None = 0
) -> Flags:
    """Parse ``argv`` (without the subcommand) against ``spec`` (flag name -> default value).

    The default's type is the flag's type (``bool``, ``int`` or ``str``). ``-h``/``--help`` is
    declared implicitly. ``max_args`` bounds the positional arguments (Cobra's ``MaximumNArgs``;
    ``None`` = any). Raises :class:`FlagError`.
    """
    known: dict[str, bool | int | str] = {**KLOG_FLAGS, "help": False, **spec}
    values: dict[str, bool | int | str] = dict(known)
    explicit: set[str] = set()
    args: list[str] = []
    i = 0
    while i < len(argv):
        item = argv[i]
        i += 1
        if item == "--":
            args.extend(argv[i:])
            break
        if len(item) < 2 or not item.startswith("-"):
            args.append(item)
            continue
        body = item[2:] if item.startswith("--") else item[1:]
        dashes = item[: len(item) - len(body)]
        name, has_value, text = body.partition("=")
        if name == "h" and dashes == "-":
            name = "help"
        if not name or name.startswith("-"):
            raise FlagError(f"bad flag syntax: {item}")
        if name not in known:
            if dashes == "-" and len(name) == 1:
                raise FlagError(f"unknown shorthand flag: {name!r} in {item}")
            raise FlagError(f"unknown flag: --{name}")
        default = known[name]
        if not has_value:
            if isinstance(default, bool):
                text = "true"
            elif i < len(argv):
                text = argv[i]
                i += 1
            else:
                raise FlagError(f"flag needs an argument: --{name}")
        values[name] = _convert(name, default, text)
        explicit.add(name)
    if max_args is not None and len(args) > max_args:
        raise FlagError(f"accepts at most {max_args} arg(s), received {len(args)}")
    return Flags(values, args, explicit)
