"""What every ``prunenet`` command's parser shares: argument types that refuse bad values with
one line, the parser that prints usage errors on one line, :func:`one_line` itself, and the
flags made from a settings class's fields (:func:`settings_flags`)."""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import MISSING

from ..options import default_of, help_of

__all__ = ["Parser", "fraction", "whole_number", "positive_int", "real_number", "one_line",
           "network_args", "settings_flags", "flag_default"]


def fraction(text: str) -> float:
    """An argparse type: a fraction of a cost to keep, in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"{text} is outside (0, 1): give the fraction of the cost to keep, e.g. 0.5")
    return value


def whole_number(least: int):
    """An argparse type: a whole number, at least ``least``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{text} must be at least {least}")
        return value
    return parse


positive_int = whole_number(1)


def real_number(least: float = -math.inf, strict: bool = False, below: float = math.inf):
    """An argparse type: a finite number, at least ``least`` (above it when ``strict``) and
    below ``below``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if value < least or (strict and value == least) or value >= below:
            bound = f"above {least:g}" if strict else f"at least {least:g}"
            raise argparse.ArgumentTypeError(
                f"{text} must be {bound}" + (f" and below {below:g}" if below < math.inf else ""))
        return value
    return parse


_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(message) -> str:
    """``message`` on one line and printable: what ``str.splitlines`` breaks at (a name read
    from a file may hold it) and lone surrogates (a file name that is not UTF-8) escaped."""
    text = str(message).translate(_LINE_BREAKS)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Parser(argparse.ArgumentParser):
    """Usage errors on one line, naming the command and where to look for help. Flags are never
    abbreviated (GluonCV's ``--mode`` must not be taken for ``--model``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def network_args(parser, required: bool) -> None:
    """``--model NAME`` or ``--symbol FILE``: which network a command works on."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--model", default=None,
                       help="GluonCV model name, e.g. resnet50_v1d (or give --symbol)")
    group.add_argument("--symbol", default=None, metavar="FILE",
                       help="your own network: the NAME-symbol.json that HybridBlock.export "
                            "writes, with its NAME-0000.params as --params (default: none)")



def settings_flags(groups: dict, cls, only=None) -> None:
    """A flag for each field of the settings class ``cls`` that has one (see
    :func:`prunenet.options.setting`), or for the fields named in ``only``, added to
    ``groups[its group]``: its help, default, type and choices read from the field; GluonCV's
    names of it as aliases."""
    for f in dataclasses.fields(cls):
        flags = f.metadata.get("flags", ("--" + f.name.replace("_", "-"),))
        if flags is None or only is not None and f.name not in only:
            continue
        group, options = groups[f.metadata["group"]], _flag_options(cls, f)
        group.add_argument(*flags, dest=f.name, **options)
        for alias in f.metadata.get("aliases", ()):
            group.add_argument(alias, dest=f.name, default=argparse.SUPPRESS,
                               metavar=f.name.upper(), type=options.get("type"),
                               help=f"the same as {flags[-1]} (GluonCV's name)")


def _flag_options(cls, f: dataclasses.Field) -> dict:
    """``add_argument``'s keywords for the settings field ``f`` of ``cls``."""
    meta, default = f.metadata, flag_default(cls, f)
    options = {"default": default, "help": help_of(cls, f.name)}
    kind = _core(f.type)
    if kind == "bool":  # a switch away from the default
        return dict(options, action="store_false" if default else "store_true")
    options.update({k: meta[k] for k in ("metavar", "nargs") if k in meta})
    if "choices" in meta:
        options["choices"] = meta["choices"]()
    value = _value_type(kind, meta)
    if value is not None:
        options["type"] = value
    return options


def flag_default(cls, f: dataclasses.Field):
    """What the flag of the settings field ``f`` of ``cls`` is when not given."""
    default = default_of(cls, f.name)
    return f.metadata.get("flag_default", None if default is MISSING else default)


def _core(kind: str) -> str:
    """An annotation without its ``Optional[...]``."""
    return kind[len("Optional["):-1] if kind.startswith("Optional[") else kind


def _value_type(kind: str, meta) -> object:
    """The argparse type of a field of annotation ``kind`` and bounds ``meta``."""
    if meta.get("cli_type") == "fraction":
        return fraction
    bounds = {k: meta[k] for k in ("least", "strict", "below") if k in meta}
    if kind == "int":
        value = whole_number(bounds["least"]) if "least" in bounds else int
    elif kind in ("float", "List[float]", "Union[float, str]"):
        value = real_number(**bounds)
    else:
        return None
    if not meta.get("auto"):
        return value

    def or_auto(text: str):
        return "auto" if text == "auto" else value(text)
    return or_auto
