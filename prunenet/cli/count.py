"""``prunenet count``: the MACs and parameters of a network."""
from __future__ import annotations

import json

from ..errors import PrunenetError
from .args import network_args, positive_int


def add_parser(sub) -> None:
    """Add ``prunenet count`` to the command line."""
    p = sub.add_parser("count", help="count MACs and parameters of a model")
    network_args(p, required=True)
    p.add_argument("--params", default=None,
                   help="with --symbol: its params file (default: none)")
    p.add_argument("--input-size", type=positive_int, default=None,
                   help="input image size in pixels (default 224; 32 for cifar_* models)")
    p.add_argument("--classes", type=positive_int, default=None,
                   help="number of output classes (default: the model's, 1000 for ImageNet)")
    p.add_argument("--channels", type=positive_int, default=None,
                   help="input channels, where neither --shapes nor --params says them "
                        "(default 3)")
    p.add_argument("--shapes", default=None,
                   help="a GluonCV pruned-ResNet shape file (JSON) to count instead of the "
                        "full-width model")
    p.add_argument("--json", action="store_true", help="print one JSON object {macs, params}")
    p.set_defaults(func=_count)


def _count(args) -> int:
    from ..core.costs import count
    from ..io.files import read_shapes
    from ..core.graph import trace
    from ..training.models import input_channels, input_shape, load_model, load_network

    if args.shapes or args.symbol is None:
        if args.symbol is not None or args.params is not None:
            raise PrunenetError("--shapes goes with --model, --params with --symbol")
        shapes = read_shapes(args.shapes) if args.shapes else None
        net = load_model(args.model, classes=args.classes, shapes=shapes,
                         shapes_source=args.shapes, input_size=args.input_size,
                         channels=args.channels)
        name = args.model
        shape = input_shape(args.model, args.input_size, input_channels(net) or 3)
    else:
        net, name, shape = load_network(args.model, args.symbol, args.classes, args.params,
                                        input_size=args.input_size, channels=args.channels)
    result = count(trace(net, shape))
    if args.json:
        print(json.dumps({"macs": result["macs"], "params": result["params"]}))
    else:
        name = name + (f" ({args.shapes})" if args.shapes else "")
        print(f"{name}: {result['macs'] / 1e9:.3f} GMACs, {result['params'] / 1e6:.2f} M params "
              f"({result['macs']} MACs, {result['params']} params)")
    return 0
