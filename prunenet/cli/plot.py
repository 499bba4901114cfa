"""``prunenet plot tradeoff|widths|curves``: figures of results and runs."""
from __future__ import annotations

from ..plot import (FRONTS, REFERENCES, curves_figure, figure_paths, save_figure, tradeoff,
                    widths_figure)
from ..latency.runtimes import RUNTIMES
from ..latency.settings import BenchConfig, bench_default
from .args import Parser, positive_int, settings_flags


def add_parser(subparsers) -> None:
    """Add ``prunenet plot tradeoff|widths|curves`` to the command line."""
    p = subparsers.add_parser("plot", help="figures of results and runs (PNG or SVG)",
                              description="Figures of pruning results and runs, as PNG or SVG "
                                          "(--out names the one file written).")
    sub = p.add_subparsers(dest="figure", metavar="FIGURE", parser_class=Parser)
    sub.required = True

    q = sub.add_parser("tradeoff", help="top-1 against throughput, with GluonCV's ResNets",
                       description="Top-1 against throughput (images/s, log scale) of a results "
                                   "CSV or a zoo, with GluonCV's ResNets and pruned ResNets: "
                                   "their published top-1, their throughput measured here "
                                   "(random weights), or GluonCV's V100 figures apart.")
    q.add_argument("source", metavar="RESULTS.csv|ZOO_DIR|ZOO_URL")
    q.add_argument("--reference", choices=REFERENCES, default="auto",
                   help="GluonCV's ImageNet ResNets beside the results. auto (default): local "
                        "when the results have ImageNet rows or --reference-models is given, "
                        "else none; local: measure their architectures on this device (a few "
                        "minutes at 224 px); v100: GluonCV's published V100 throughput, in a "
                        "panel of its own; none: no reference points")
    q.add_argument("--reference-models", default=None, metavar="A,B,...",
                   help="which of GluonCV's models to show (default: all eleven; naming some "
                        "draws them whatever the results' dataset)")
    q.add_argument("--batch-size", type=positive_int, default=None,
                   help="batch size to measure the references at (default: the results', "
                        f"else {bench_default('batch_size')})")
    q.add_argument("--input-size", type=positive_int, default=224,
                   help="image size to measure the references at (default 224)")
    settings_flags({"timing": q}, BenchConfig, only=("repeats", "warmup"))
    q.add_argument("--gpus", default="", help="GPU id to measure the references on "
                                              "(default: the CPU)")
    q.add_argument("--title", default=None)
    q.add_argument("--mean-over-seeds", action="store_true",
                   help="one point per network and method: the mean over the CSV's seeds, "
                        "with an error bar of ± their standard deviation")
    q.add_argument("--front", choices=FRONTS, default="family",
                   help="family (default): each method's Pareto front; all: also the front "
                        "over every point (dashed)")
    q.add_argument("--runtime", choices=RUNTIMES, default="mxnet",
                   help="whose throughput to draw: mxnet (default), or onnxruntime (a results "
                        "CSV's throughput_img_s_onnxruntime column, a zoo published with "
                        "--runtime onnxruntime or both); local references are measured there")
    q.add_argument("--out", default="tradeoff.png", help="the file to write, .png or .svg")
    _file_flags(q)
    q.set_defaults(func=_tradeoff)

    q = sub.add_parser("widths", help="kept fraction of channels per layer, runs side by side")
    q.add_argument("runs", nargs="+", metavar="RUN_DIR")
    q.add_argument("--title", default=None)
    q.add_argument("--out", default="widths.png", help="the file to write, .png or .svg")
    _file_flags(q)
    q.set_defaults(func=_widths)

    q = sub.add_parser("curves", help="loss, top-1, cost and zeroed channels per step")
    q.add_argument("run", metavar="RUN_DIR")
    q.add_argument("--title", default=None)
    q.add_argument("--out", default="curves.png", help="the file to write, .png or .svg")
    _file_flags(q)
    q.set_defaults(func=_curves)


def _file_flags(q) -> None:
    q.add_argument("--svg", action="store_true",
                   help="also write the figure as an SVG beside the --out PNG (same name)")
    q.add_argument("--overwrite", action="store_true", help="replace existing files")


def _save(args, draw) -> int:
    """Check ``--out`` (before drawing, which may measure), draw, write only what was named."""
    figure_paths(args.out, args.svg, args.overwrite)
    print("wrote " + " and ".join(save_figure(draw(), args.out, args.svg, args.overwrite)))
    return 0


def _tradeoff(args) -> int:
    return _save(args, lambda: tradeoff(args.source, args.reference, args.reference_models,
                                        args.batch_size, args.input_size, args.repeats,
                                        args.warmup, args.gpus, args.title, log=print,
                                        mean_over_seeds=args.mean_over_seeds,
                                        front=args.front, runtime=args.runtime))


def _widths(args) -> int:
    return _save(args, lambda: widths_figure(args.runs, args.title))


def _curves(args) -> int:
    return _save(args, lambda: curves_figure(args.run, args.title))
