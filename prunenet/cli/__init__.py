"""The ``prunenet`` command line: one module per command, each adding its parser, and the
argument types they share (:mod:`.args`). Flags follow GluonCV's training scripts where they
overlap. Nothing below the command line imports it."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from ..errors import PrunenetError
from .args import Parser, one_line

__all__ = ["main", "build_parser", "check_environment", "one_line"]
_Parser = Parser  # the name notebooks and tests of older versions import

COMMANDS = ("count", "prune", "demo", "bench", "zoo", "plot", "experiment")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``prunenet`` command."""
    import importlib
    from ..version import __version__
    parser = Parser(
        prog="prunenet", description="Global channel pruning (PruneNet) for GluonCV networks.")
    parser.add_argument("--version", action="version", version=f"prunenet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def check_environment(env=os.environ) -> None:
    """Refuse settings that make MXNet abort when it loads (``OMP_NUM_THREADS=abc`` ends the
    process with SIGABRT): checked before MXNet is imported."""
    value = env.get("OMP_NUM_THREADS")
    if value is None or not value.strip():
        return
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if not 1 <= threads <= MAX_THREADS:
        raise PrunenetError(f"OMP_NUM_THREADS={value!r} is not a thread count MXNet accepts: "
                            f"set it to a whole number from 1 to {MAX_THREADS} (e.g. "
                            f"OMP_NUM_THREADS={os.cpu_count() or 1}) or unset it")


MAX_THREADS = 1024  # MXNet 1.9.1 aborts on 99999


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; a :class:`PrunenetError` becomes one line on stderr and exit 2, and
    so does an ``OSError`` (a full disk, a read-only place), naming the path."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # name the subcommand whose --help lists the flags
        prog = f"{parser.prog} {args.command}"
        parser.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(unknown)} "
                       f"(see {prog} --help)\n")
    args.command_line = ["prunenet"] + argv  # recorded in reports
    try:
        check_environment()
        return args.func(args)
    except PrunenetError as err:
        print(f"prunenet: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        from ..io.outputs import write_error
        print(f"prunenet: error: {one_line(write_error(err, writing=False))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunenet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
