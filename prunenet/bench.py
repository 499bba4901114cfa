"""Inference speed of hybridized networks on synthetic input, measured side by side.

As GluonCV measures its model zoo: each network hybridized with a static graph, a fixed batch of
random input, warm-up batches first, then the median of repeated timed batches. Several networks
are measured interleaved (one batch of each in turn, every round), so that a noisy machine slows
them alike and their ratios hold, and for as many rounds as :mod:`prunenet.timing`'s rule needs
to know each median (or to say it could not). ``prunenet bench`` is the command line over it.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from .errors import PrunenetError

__all__ = ["throughput", "speedup", "speed_check", "speed_line", "summarize", "device",
           "device_name", "DTYPES", "add_parser"]

DTYPES = ("float32", "float16")


def device(gpus: str = ""):
    """The one MXNet context that ``--gpus`` names: empty for the CPU, else a single GPU id."""
    import mxnet as mx
    ids = [g.strip() for g in (gpus or "").split(",") if g.strip()]
    if not ids:
        return mx.cpu()
    if len(ids) > 1:
        raise PrunenetError(f"--gpus {gpus}: a benchmark measures one device; give one GPU id")
    if not ids[0].isdigit():
        raise PrunenetError(f"--gpus {gpus!r} is not a GPU id; give e.g. --gpus 0, or omit it "
                            f"for the CPU")
    available = mx.context.num_gpus()
    if int(ids[0]) >= available:
        raise PrunenetError(f"unknown device gpu{ids[0]}: this machine has {available} GPU(s) "
                            f"for MXNet; omit --gpus to measure on the CPU")
    return mx.gpu(int(ids[0]))


def device_name(ctx) -> str:
    """``cpu`` or ``gpu0``: the device part of a latency table's key."""
    return "cpu" if ctx.device_type == "cpu" else f"gpu{ctx.device_id}"


def check_settings(batch_size: int, dtype: str = "float32", repeats: int = 1,
                   warmup: int = 0) -> None:
    """Refuse settings no measurement can run with, with a message that says what to give."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise PrunenetError(f"batch size {batch_size} must be a whole number of at least 1")
    if dtype not in DTYPES:
        raise PrunenetError(f"dtype {dtype!r} is not supported; choose {' or '.join(DTYPES)}")
    if repeats < 1 or warmup < 0:
        raise PrunenetError(f"repeats ({repeats}) must be at least 1 and warm-up ({warmup}) "
                            f"at least 0")


def summarize(seconds: Sequence[float], batch_size: int) -> Dict[str, float]:
    """Throughput and latency of timed batches: the median, its spread (IQR, min, max) and its
    noise (:func:`prunenet.timing.noise`)."""
    from .timing import noise
    ts = np.asarray(seconds, dtype=np.float64)
    median = float(np.median(ts))
    q25, q75 = np.percentile(ts, [25, 75])
    return {"throughput_img_s": batch_size / median, "latency_ms": median * 1e3,
            "latency_ms_iqr": float(q75 - q25) * 1e3, "latency_ms_min": float(ts.min()) * 1e3,
            "latency_ms_max": float(ts.max()) * 1e3, "noise": noise(ts),
            "throughput_img_s_iqr": [batch_size / float(q75), batch_size / float(q25)]}


def _calls(nets: Dict[str, object], image_shape: Sequence[int], batch_size: int, ctx,
           dtype: str) -> Dict[str, Callable[[], None]]:
    import mxnet as mx
    x = mx.nd.array(np.random.RandomState(0).normal(size=(batch_size,) + tuple(image_shape)),
                    ctx=ctx, dtype=dtype)
    calls = {}
    for name, net in nets.items():
        if dtype != "float32":
            net.cast(dtype)
        net.hybridize(static_alloc=True, static_shape=True)
        calls[name] = _forward(net, x)
    return calls


def _timed(calls, ctx, dtype: str, **rule):
    """``calls`` timed by the timing rule, a progress line every 10 s after the first 10."""
    import mxnet as mx
    from .timing import Progress, pct, time_until_stable
    progress = Progress(f"timing {', '.join(calls)}")

    def on_round(t) -> None:
        progress(f"round {t.repeats}, medians within {pct(t.worst)} so far")
    try:
        return time_until_stable(calls, on_round=on_round, **rule)
    except mx.base.MXNetError as err:
        why = "its CPU kernels do not compute in float16; measure float16 on a GPU (--gpus 0)" \
            if dtype == "float16" and ctx.device_type == "cpu" else _first_line(err)
        raise PrunenetError(f"MXNet cannot run the networks in {dtype} on {ctx}: {why}, or "
                            f"use --dtype float32") from None


def throughput(nets: Dict[str, object], image_shape: Sequence[int], batch_size: int = 64,
               repeats: int = 10, warmup: int = 3, ctx=None, dtype: str = "float32",
               max_repeats: Optional[int] = None, budget_s: Optional[float] = None,
               ) -> Dict[str, dict]:
    """Images per second of each network in ``nets`` (name -> Gluon block) on random input of
    ``image_shape`` (C, H, W): after ``warmup`` batches, the median of at least ``repeats``
    timed batches and more, up to ``max_repeats`` (default: the larger of ``repeats`` and
    :data:`prunenet.timing.MAX_REPEATS`), until every median is within the timing rule's
    tolerance; the networks take turns so that a noisy machine affects them alike. Each result
    also has the median latency (ms per batch), its spread and noise, ``rounds`` (timed batches
    run) and ``speedup`` over the first network with its noise (from the per-round ratios).
    ``float16`` casts the networks in place."""
    import mxnet as mx
    from .timing import MAX_REPEATS, ratio
    check_settings(batch_size, dtype, repeats, warmup)
    ctx = ctx or mx.cpu()
    calls = _calls(nets, image_shape, batch_size, ctx, dtype)
    timings = _timed(calls, ctx, dtype, min_repeats=repeats, warmup=warmup,
                     max_repeats=max(repeats, max_repeats or MAX_REPEATS), budget_s=budget_s)
    first = timings.seconds[next(iter(nets))]
    out = {}
    for name, ts in timings.seconds.items():
        gain = ratio(first, ts)
        out[name] = dict(summarize(ts, batch_size), batch_size=batch_size, repeats=repeats,
                         rounds=len(ts), warmup=warmup, dtype=dtype, device=device_name(ctx),
                         speedup=gain["ratio"], speedup_noise=gain["noise"],
                         noisy=name in timings.noisy)
    return out


def speedup(full, pruned, image_shape: Sequence[int], batch_size: int = 16, ctx=None,
            budget_s: float = 3.0) -> Dict[str, object]:
    """The pruned network's measured speed-up over the unpruned one: both timed interleaved by
    the timing rule within about ``budget_s`` seconds (at least three rounds), the speed-up the
    median of the per-round ratios, with its noise, the device and the batch size."""
    import mxnet as mx
    from .timing import ratio
    ctx = ctx or mx.cpu()
    from .devices import compute_dtype
    dtype = compute_dtype(full)  # a run's networks compute in its --dtype
    calls = _calls({"full": full, "pruned": pruned}, image_shape, batch_size, ctx, dtype)
    timings = _timed(calls, ctx, dtype, min_repeats=3, warmup=1, budget_s=budget_s)
    gain = ratio(timings.seconds["full"], timings.seconds["pruned"])
    return {"speedup": gain["ratio"], "noise": gain["noise"], "rounds": gain["repeats"],
            "latency_ms_full": float(np.median(timings.seconds["full"])) * 1e3,
            "latency_ms_pruned": float(np.median(timings.seconds["pruned"])) * 1e3,
            "device": device_name(ctx), "batch_size": batch_size,
            "threads": os.environ.get("OMP_NUM_THREADS", "")}


def speed_check(full, pruned, shape, macs_before: int, macs_after: int, ctx=None,
                batch_size: int = 16, budget_s: float = 3.0) -> dict:
    """The report's ``speed_check``: the pruned network's measured speed-up over the unpruned
    one on ``ctx`` (:func:`prunenet.bench.speedup`, a few seconds) beside its MACs reduction,
    and whether the gain is well below what the MACs promise (under half of it, or none)."""
    result = speedup(full, pruned, tuple(shape[1:]), batch_size, ctx, budget_s)
    reduction = macs_before / max(macs_after, 1)
    gain, noise = result["speedup"], result["noise"] * result["speedup"]
    result.update(macs_reduction=reduction,
                  below_macs=bool(gain + noise < 1 + 0.5 * (reduction - 1)) and reduction > 1.05)
    return result


def speed_line(report: dict) -> str:
    """The summary line's part for a report's ``speed_check`` (empty without one)."""
    check = report.get("speed_check")
    if not check:
        return ""
    line = (f"; measured speed-up {check['speedup']:.2f}x ±{check['noise'] * check['speedup']:.2f} "
            f"({check['device']}, batch {check['batch_size']}) for {check['macs_reduction']:.2f}x "
            f"fewer MACs")
    if check["below_macs"]:
        line += (" — well below what the MACs promise on this device" +
                 ("" if report.get("objective") == "latency" else
                  "; prune with --objective latency to prune for measured time"))
    return line


def _forward(net, x) -> Callable[[], None]:
    def run() -> None:
        out = net(x)
        (out[0] if isinstance(out, (list, tuple)) else out).wait_to_read()
    return run


def _first_line(err: BaseException) -> str:
    for line in str(err).strip().splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "Stack trace", "[bt]")):
            return line[:300]
    return type(err).__name__


# -- the command line -------------------------------------------------------------------------
def add_parser(subparsers) -> None:
    """Add ``prunenet bench`` to the command line."""
    from .cli import _positive_int
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
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--input-size", type=_positive_int, default=None,
                   help="input image size (default 224; 32 for cifar_* models)")
    p.add_argument("--gpus", default="", help="GPU id to measure on, e.g. 0 (default: CPU)")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--repeats", type=_positive_int, default=10,
                   help="timed batches per network at least; the median counts (default 10)")
    p.add_argument("--max-repeats", type=_positive_int, default=None,
                   help="timed batches at most, while a median is still uncertain by more "
                        "than ±2%% (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_bench)


def _shapes_label(path: str) -> str:
    """A --shapes row's name: a run's shape file by its run folder, any other by its file."""
    from .runs import SHAPES_FILE
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
    from .files import read_shapes
    from .models import input_shape, load_model
    if args.zoo is not None and not args.name:
        raise PrunenetError("--zoo ZOO needs --name NAME: the zoo model to measure")
    if not args.model and not args.name:
        raise PrunenetError("bench needs at least one --model NAME (or --zoo ZOO --name NAME)")
    if args.shapes and len(args.model) != 1:
        raise PrunenetError(f"--shapes resizes one --model; give exactly one --model, not "
                            f"{len(args.model)}")
    labels = iter(_labels(args))
    nets: Dict[str, tuple] = {}
    for name in args.model:
        nets[next(labels)] = (load_model(name, input_size=args.input_size, ctx=ctx),
                              input_shape(name, args.input_size)[1:])
    for path in args.shapes:
        model = args.model[0]
        nets[next(labels)] = (
            load_model(model, shapes=read_shapes(path), shapes_source=path,
                       input_size=args.input_size, ctx=ctx),
            input_shape(model, args.input_size)[1:])
    if args.name:
        try:
            from . import zoo
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
    from .costs import count
    from .graph import trace
    from .timing import TOLERANCE
    check_settings(args.batch_size, args.dtype, args.repeats, args.warmup)
    ctx = device(args.gpus)
    nets = _networks(args, ctx)
    shapes = {shape for _, shape in nets.values()}
    if len(shapes) > 1:
        raise PrunenetError(f"the networks take different input shapes ({sorted(shapes)}); "
                            f"give --input-size to measure them alike")
    shape = shapes.pop()
    counts = {label: count(trace(net, (1,) + tuple(shape))) for label, (net, _) in nets.items()}
    result = throughput({label: net for label, (net, _) in nets.items()}, shape,
                        batch_size=args.batch_size, repeats=args.repeats, warmup=args.warmup,
                        ctx=ctx, dtype=args.dtype, max_repeats=args.max_repeats)
    for label, r in result.items():
        r.update(counts[label])
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
            "dtype": args.dtype, "repeats": args.repeats, "rounds": rounds,
            "warmup": args.warmup, "noisy": note, "models": result}, indent=2))
        return 0
    print(f"{device_name(ctx)}, batch {args.batch_size}, {'x'.join(map(str, shape))}, "
          f"{args.dtype}: median of {rounds} interleaved batches after {args.warmup} warm-up")
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
