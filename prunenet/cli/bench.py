"""``prunenet bench``: throughput and latency of networks, measured side by side."""
from __future__ import annotations

import os
from typing import Dict

from ..latency.throughput import DTYPES, check_settings, device, device_name, throughput
from ..errors import PrunenetError
from ..latency.runtimes import RUNTIMES, runtime_label
from ..latency.settings import BenchConfig
from .args import positive_int, settings_flags


def add_parser(subparsers) -> None:
    """Add ``prunenet bench`` to the command line."""
    p = subparsers.add_parser(
        "bench", help="throughput and latency of networks, measured side by side",
        description="Throughput (images/s) and latency (ms/batch) of hybridized networks on "
                    "random input: warm-up batches, then the median of timed batches, the "
                    "networks taking turns so their ratios hold on a noisy machine.")
    p.add_argument("--model", action="append", default=[],
                   help="GluonCV model name, e.g. resnet50_v1d (repeat to compare several)")
    p.add_argument("--shapes", action="append", default=[], metavar="FILE",
                   help="a GluonCV pruned-ResNet shape file: measure --model resized to it too "
                        "(repeatable; needs exactly one --model); a run's shapes.json is named "
                        "by its run folder")
    p.add_argument("--label", action="append", default=[],
                   help="name of the row of each --shapes file, in order (repeatable)")
    p.add_argument("--zoo", default=None, metavar="FOLDER_OR_URL",
                   help="a prunenet model zoo, a folder or its http(s):// URL (with --name; "
                        "default $PRUNENET_ZOO)")
    p.add_argument("--name", action="append", default=[],
                   help="a model of --zoo, or one of GluonCV's pruned ResNets (repeatable)")
    p.add_argument("--input-size", type=positive_int, default=None,
                   help="input image size (default 224; 32 for cifar_* models)")
    p.add_argument("--channels", type=positive_int, default=None,
                   help="input channels of each --model (default: the first --shapes file's, "
                        "else 3)")
    p.add_argument("--gpus", default="", help="GPU id to measure on, e.g. 0 (default: CPU)")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--runtime", default="mxnet", choices=RUNTIMES + ("both",),
                   help="where the networks run: mxnet, onnxruntime (each exported to ONNX and "
                        "run in an InferenceSession), or both, interleaved in one timing "
                        "(default mxnet)")
    p.add_argument("--max-repeats", type=positive_int, default=None,
                   help="timed batches at most, while a median is still uncertain by more "
                        "than ±2%% (default 30)")
    settings_flags({"timing": p}, BenchConfig)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_bench)


def _shapes_label(path: str) -> str:
    """A --shapes row's name: a run's shape file by its run folder, any other by its file."""
    from ..io.records import SHAPES_FILE
    path = os.path.abspath(path)
    if os.path.basename(path) == SHAPES_FILE:
        return os.path.basename(os.path.dirname(path))
    return os.path.basename(path)


def _labels(args) -> list:
    """The rows' names, in order: each --model, each --shapes file (its --label, else the model
    and the file's name or run folder), each --name; two alike are refused."""
    labels = list(getattr(args, "label", []) or [])
    if len(labels) > len(args.shapes):
        raise PrunenetError(f"{len(labels)} --label for {len(args.shapes)} --shapes file(s): "
                            f"give one --label per --shapes file, in order")
    named = [(name, f"--model {name}") for name in args.model]
    for i, path in enumerate(args.shapes):
        model = args.model[0] if args.model else ""
        named.append((labels[i] if i < len(labels) else f"{model}:{_shapes_label(path)}", path))
    named += [(name, f"--name {name}") for name in args.name]
    sources: Dict[str, str] = {}
    for label, source in named:
        if label in sources:
            raise PrunenetError(f"two networks would both be named {label!r} ({sources[label]} "
                                f"and {source}); give each --shapes file a --label")
        sources[label] = source
    return [label for label, _ in named]


def _networks(args, ctx) -> Dict[str, tuple]:
    """label -> (network, image shape C×H×W) for the command line's models."""
    from ..io.files import read_shapes
    from ..training.models import image_channels, input_channels, input_shape, load_model
    if args.zoo is not None and not args.name:
        raise PrunenetError("--zoo ZOO needs --name NAME: the zoo model to measure")
    if not args.model and not args.name:
        raise PrunenetError("bench needs at least one --model NAME (or --zoo ZOO --name NAME)")
    if args.shapes and len(args.model) != 1:
        raise PrunenetError(f"--shapes resizes one --model; give exactly one --model, not "
                            f"{len(args.model)}")
    labels = iter(_labels(args))
    shapes = [read_shapes(path) for path in args.shapes]
    # the images' channels: --channels, else the shape files' stem's (1 for Fashion-MNIST runs)
    channels = args.channels or (image_channels(shapes[0]) if shapes else None)
    nets: Dict[str, tuple] = {}
    for name in args.model:
        net = load_model(name, input_size=args.input_size, ctx=ctx, channels=channels)
        nets[next(labels)] = (net, input_shape(name, args.input_size, input_channels(net) or 3)[1:])
    for path, resized in zip(args.shapes, shapes):
        model = args.model[0]
        net = load_model(model, shapes=resized, shapes_source=path, input_size=args.input_size,
                         ctx=ctx, channels=args.channels)
        nets[next(labels)] = (net, input_shape(model, args.input_size,
                                               input_channels(net) or 3)[1:])
    if args.name:
        try:
            from ..zoo import store as zoo
        except ImportError:
            raise PrunenetError("--zoo needs prunenet.zoo, which this installation lacks; "
                                "measure shape files with --model NAME --shapes FILE") from None
        root = args.zoo if args.zoo is not None else zoo.default_root()  # GluonCV's own need none
        for name in args.name:
            entry = zoo.describe(name, root)
            shape = tuple(entry.get("input_shape") or (1, 3, 224, 224))[1:]
            if args.input_size:
                shape = (shape[0], args.input_size, args.input_size)
            nets[next(labels)] = (zoo.get_model(name, pretrained=False, root=root, ctx=ctx),
                                  shape)
    return nets


def _bench(args) -> int:
    import json
    from ..core.costs import count
    from ..core.graph import trace
    from ..latency.timing import TOLERANCE
    check_settings(args.batch_size, args.dtype, args.repeats, args.warmup)
    ctx = device(args.gpus)
    nets = _networks(args, ctx)
    shapes = {shape for _, shape in nets.values()}
    if len({shape[0] for shape in shapes}) > 1:
        takes = ", ".join(f"{label} {shape[0]}" for label, (_, shape) in nets.items())
        raise PrunenetError(f"the networks take different input channels ({takes}); build "
                            f"the --model networks for the others' with --channels, or measure "
                            f"networks of one input")
    if len(shapes) > 1:
        raise PrunenetError(f"the networks take different input shapes ({sorted(shapes)}); "
                            f"give --input-size to measure them alike")
    shape = shapes.pop()
    counts = {label: count(trace(net, (1,) + tuple(shape))) for label, (net, _) in nets.items()}
    result = throughput({label: net for label, (net, _) in nets.items()}, shape,
                        batch_size=args.batch_size, repeats=args.repeats, warmup=args.warmup,
                        ctx=ctx, dtype=args.dtype, max_repeats=args.max_repeats,
                        runtime=args.runtime)
    for row, r in result.items():
        r.update(counts[row.rsplit("@", 1)[0] if args.runtime == "both" else row])
    noisy = [label for label, r in result.items() if r["noisy"]]
    rounds = max(r["rounds"] for r in result.values())
    note = ""
    if noisy:
        worst = max(noisy, key=lambda k: result[k]["noise"])
        note = (f"too noisy: after {rounds} interleaved batches the median of {worst} was still "
                f"uncertain by ±{result[worst]['noise']:.1%} (IQR "
                f"{result[worst]['latency_ms_iqr']:.1f} ms of {result[worst]['latency_ms']:.1f}; "
                f"±{TOLERANCE:.0%} needed): trust the speed-ups only as far as their ± says")
    if args.json:
        print(json.dumps({"device": device_name(ctx), "threads": os.environ.get(
            "OMP_NUM_THREADS", ""), "batch_size": args.batch_size, "input_shape": list(shape),
            "dtype": args.dtype, "runtime": args.runtime, "repeats": args.repeats, "rounds": rounds,
            "warmup": args.warmup, "noisy": note, "models": result}, indent=2))
        return 0
    where = " and ".join(sorted({runtime_label(r["runtime"]) for r in result.values()}))
    print(f"{where}, {device_name(ctx)}, batch {args.batch_size}, {'x'.join(map(str, shape))}, "
          f"{args.dtype}: median of {rounds} interleaved batches after {args.warmup} warm-up"
          + ("; speed-ups within each runtime" if args.runtime == "both" else ""))
    width = max(len(label) for label in result)
    print(f"{'model':<{width}}  {'img/s':>8}  {'ms/batch':>9}  {'IQR ms':>7}  {'±':>6}  "
          f"{'GMACs':>6}  speed-up")
    for label, r in result.items():
        print(f"{label:<{width}}  {r['throughput_img_s']:8.1f}  {r['latency_ms']:9.1f}  "
              f"{r['latency_ms_iqr']:7.1f}  {r['noise']:6.1%}  {r['macs'] / 1e9:6.3f}  "
              f"{r['speedup']:.2f}x ±{r['speedup_noise'] * r['speedup']:.2f}")
    if note:
        print(note)
    return 0
