"""The ``prunenet`` command line. Flags follow GluonCV's training scripts where they overlap."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from .errors import PrunenetError

__all__ = ["main", "build_parser"]


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"{text} is outside (0, 1): give the fraction of the cost to keep, e.g. 0.5")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line, naming the command and where to look for help."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .costs import OBJECTIVES
    from .methods import METHODS

    parser = _Parser(
        prog="prunenet", description="Global channel pruning (PruneNet) for GluonCV networks.")
    parser.add_argument("--version", action="version", version=f"prunenet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def model_args(p):
        p.add_argument("--model", required=True, help="GluonCV model name, e.g. resnet50_v1d")
        p.add_argument("--input-size", type=_positive_int, default=None,
                       help="input image size in pixels (default 224; 32 for cifar_* models)")
        p.add_argument("--classes", type=_positive_int, default=None,
                       help="number of output classes (default: the model's, 1000 for ImageNet)")

    p = sub.add_parser("count", help="count MACs and parameters of a model")
    model_args(p)
    p.add_argument("--shapes", default=None,
                   help="a GluonCV pruned-ResNet shape file (JSON) to count instead of the "
                        "full-width model")
    p.add_argument("--json", action="store_true", help="print one JSON object {macs, params}")
    p.set_defaults(func=_count)

    p = sub.add_parser("prune", help="prune a model to a cost target")
    model_args(p)
    p.add_argument("--params", default=None,
                   help="Gluon save_parameters file of the unpruned model (default: seeded random "
                        "initialisation)")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--objective", default="flops", choices=sorted(OBJECTIVES))
    p.add_argument("--target", required=True, type=_fraction,
                   help="fraction of the objective's cost to keep, in (0, 1)")
    p.add_argument("--round-to", type=_positive_int, default=8,
                   help="channels are removed in blocks of this many (default 8)")
    p.add_argument("--min-width", type=_positive_int, default=8,
                   help="no group keeps fewer channels than this (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (must not exist)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(func=_prune)
    return parser


def _count(args) -> int:
    from .costs import count
    from .files import read_shapes
    from .graph import trace
    from .models import input_shape, load_model

    shapes = read_shapes(args.shapes) if args.shapes else None
    net = load_model(args.model, classes=args.classes, shapes=shapes, shapes_source=args.shapes,
                     input_size=args.input_size)
    result = count(trace(net, input_shape(args.model, args.input_size)))
    if args.json:
        print(json.dumps({"macs": result["macs"], "params": result["params"]}))
    else:
        name = args.model + (f" ({args.shapes})" if args.shapes else "")
        print(f"{name}: {result['macs'] / 1e9:.3f} GMACs, {result['params'] / 1e6:.2f} M params "
              f"({result['macs']} MACs, {result['params']} params)")
    return 0


def _prune(args) -> int:
    from .runs import prune_run
    prune_run(args.model, args.method, args.objective, args.target, args.out,
              params=args.params, input_size=args.input_size, classes=args.classes,
              round_to=args.round_to, min_width=args.min_width, seed=args.seed,
              overwrite=args.overwrite, command=["prunenet"] + sys.argv[1:])
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; a :class:`PrunenetError` becomes one line on stderr and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except PrunenetError as err:
        print(f"prunenet: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunenet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
