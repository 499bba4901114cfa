"""The ``prunenet`` command line. Flags follow GluonCV's training scripts where they overlap."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import List, Optional

from .distributed import KVSTORES, LOCAL_KVSTORES
from .errors import PrunenetError
from .tied import DEFAULT_RULE, RULES

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


def _whole_number(least: int):
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


_positive_int = _whole_number(1)


def _real_number(least: float = -math.inf, strict: bool = False, below: float = math.inf):
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


def _reg(text: str):
    """``--reg``: 'auto' or a finite number (a negative one is refused with the run's other
    settings, before anything is written)."""
    return "auto" if text == "auto" else _real_number()(text)


_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(message) -> str:
    """``message`` on one line and printable: what ``str.splitlines`` breaks at (a name read
    from a file may hold it) and lone surrogates (a file name that is not UTF-8) escaped."""
    text = str(message).translate(_LINE_BREAKS)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line, naming the command and where to look for help. Flags are never
    abbreviated (GluonCV's ``--mode`` must not be taken for ``--model``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .bench import DTYPES
    from .costs import OBJECTIVES
    from .methods import METHODS, TRAINED
    from .train import LR_MODES

    parser = _Parser(
        prog="prunenet", description="Global channel pruning (PruneNet) for GluonCV networks.")
    parser.add_argument("--version", action="version", version=f"prunenet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def network_args(p, required: bool):
        p = p.add_mutually_exclusive_group(required=required)
        p.add_argument("--model", default=None,
                       help="GluonCV model name, e.g. resnet50_v1d (or give --symbol)")
        p.add_argument("--symbol", default=None, metavar="FILE",
                       help="your own network: the NAME-symbol.json that HybridBlock.export "
                            "writes, with its NAME-0000.params as --params (default: none)")

    p = sub.add_parser("count", help="count MACs and parameters of a model")
    network_args(p, required=True)
    p.add_argument("--params", default=None,
                   help="with --symbol: its params file (default: none)")
    p.add_argument("--input-size", type=_positive_int, default=None,
                   help="input image size in pixels (default 224; 32 for cifar_* models)")
    p.add_argument("--classes", type=_positive_int, default=None,
                   help="number of output classes (default: the model's, 1000 for ImageNet)")
    p.add_argument("--shapes", default=None,
                   help="a GluonCV pruned-ResNet shape file (JSON) to count instead of the "
                        "full-width model")
    p.add_argument("--json", action="store_true", help="print one JSON object {macs, params}")
    p.set_defaults(func=_count)

    p = sub.add_parser("prune", help="prune a model to a cost target")
    network_args(p, required=False)
    p.add_argument("--input-size", type=_positive_int, default=None,
                   help="input image size in pixels (default 224; 32 for cifar_* models; for "
                        "--method gcp: the dataset's)")
    p.add_argument("--classes", type=_positive_int, default=None,
                   help="number of output classes (default: the model's, or the dataset's)")
    p.add_argument("--params", default=None,
                   help="Gluon save_parameters file of the unpruned model, or with --symbol "
                        "its export params file; with --classes of another count the output "
                        "layer is replaced (default: seeded random initialisation)")
    p.add_argument("--pretrained", action="store_true",
                   help="start from GluonCV's pretrained weights (downloads them)")
    p.add_argument("--method", choices=METHODS + TRAINED,
                   help="pruning method: gcp (the paper's, trains on --dataset), slimming, or a "
                        "data-free ranking (required unless --resume)")
    p.add_argument("--objective", default="flops", choices=sorted(OBJECTIVES),
                   help="the cost --target is a fraction of (default flops)")
    p.add_argument("--target", type=_fraction,
                   help="fraction of the objective's cost to keep, in (0, 1)")
    p.add_argument("--round-to", type=_positive_int, default=8,
                   help="channels are removed in blocks of this many (default 8)")
    p.add_argument("--min-width", type=_positive_int, default=8,
                   help="no group keeps fewer channels than this (default 8)")
    p.add_argument("--seed", type=_whole_number(0), default=0,
                   help="random seed of initialisation and data order (default 0)")
    lat = p.add_argument_group("latency", "the latency objective (--objective latency): the "
                                          "target is a fraction of the measured latency")
    lat.add_argument("--latency-table", default=None, metavar="FILE",
                     help="latency table to use and extend (default: one per device, batch "
                          "size, dtype and thread count in ~/.cache/prunenet)")
    lat.add_argument("--latency-batch-size", type=_positive_int, default=64,
                     help="batch size the latency is measured at (default 64)")
    lat.add_argument("--dtype", default="float32", choices=DTYPES,
                     help="data type the latency is measured in (default float32)")
    p.add_argument("--out", help="output folder (must not exist)")
    p.add_argument("--save-dir", dest="out", default=argparse.SUPPRESS, metavar="OUT",
                   help="the same as --out (GluonCV's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--no-speed-check", dest="speed_check", action="store_false",
                   help="skip measuring the pruned network's speed-up against the unpruned one "
                        "(a few seconds) at the end")
    g = p.add_argument_group("gcp", "the data-driven method (--method gcp)")
    g.add_argument("--dataset", default=None,
                   help="fashion-mnist (default for gcp), synthetic, imagenet (RecordIO) or "
                        "folder; with a data-free method it adds fine-tuning and evaluation")
    g.add_argument("--data-dir", default=None, help="where the dataset's files are")
    g.add_argument("--rec-train", default=None, metavar="FILE",
                   help="ImageNet training RecordIO file (default: DATA_DIR/train.rec)")
    g.add_argument("--rec-train-idx", default=None, metavar="FILE",
                   help="its index (default: the same name ending .idx)")
    g.add_argument("--rec-val", default=None, metavar="FILE",
                   help="ImageNet validation RecordIO file (default: DATA_DIR/val.rec)")
    g.add_argument("--rec-val-idx", default=None, metavar="FILE",
                   help="its index (default: the same name ending .idx)")
    g.add_argument("-j", "--num-data-workers", type=int, default=os.cpu_count() or 1,
                   metavar="N", help="image decoding threads for imagenet and folder (default: "
                                     "this machine's cores)")
    g.add_argument("--steps", type=int, default=3, help="pruning steps T (default 3)")
    g.add_argument("--reg", type=_reg, default="auto",
                   help="L1 weight λ, or 'auto': each λ of --reg-grid runs step 1 and the one "
                        "of least debias loss on held-out training images is kept (default "
                        "auto, the paper's rule)")
    g.add_argument("--reg-grid", type=_real_number(0), nargs="+", default=None, metavar="λ",
                   help="the candidates of --reg auto (default 0.01 0.03 0.1 0.3 1)")
    g.add_argument("--search-holdout", type=_positive_int, default=2048, metavar="N",
                   help="training images held out to score the λ candidates (at most a "
                        "tenth of the training set; default 2048)")
    g.add_argument("--stream-score", choices=RULES, default=DEFAULT_RULE,
                   help="how a residual stream's score combines its producers and consumers: "
                        "sum (every pair; default), reach (each consumer with the producers "
                        "upstream of it) or mean (one average connection); see prunenet.tied")
    g.add_argument("--epochs-per-step", type=_real_number(), default=1.0,
                   help="regularize epochs per step; fractions allowed (default 1)")
    g.add_argument("--debias-epochs", type=_real_number(0), default=None,
                   help="debias epochs per step (default: --epochs-per-step)")
    g.add_argument("--finetune-epochs", type=_real_number(0), default=1.0,
                   help="fine-tuning epochs after pruning; fractions allowed (default 1)")
    g.add_argument("--num-epochs", dest="finetune_epochs", type=_real_number(0),
                   default=argparse.SUPPRESS, metavar="FINETUNE_EPOCHS",
                   help="the same as --finetune-epochs (GluonCV's name)")
    g.add_argument("--lr", type=_real_number(), default=0.01,
                   help="learning rate of the pruning steps per 256 images, scaled to the "
                        "global batch (default 0.01)")
    g.add_argument("--finetune-lr", type=_real_number(0, strict=True), default=0.01,
                   help="fine-tuning learning rate per 256 images, scaled likewise "
                        "(default 0.01)")
    g.add_argument("--lr-mode", default="cosine", choices=LR_MODES,
                   help="fine-tuning's learning-rate schedule (default cosine)")
    g.add_argument("--momentum", type=_real_number(0, below=1), default=0.9,
                   help="SGD momentum of the pruning steps and fine-tuning (default 0.9)")
    g.add_argument("--wd", type=_real_number(0), default=1e-4,
                   help="fine-tuning's weight decay, not on BN and biases (default 1e-4)")
    g.add_argument("--mode", default="hybrid", choices=["hybrid", "imperative"],
                   help="fine-tune the hybridized network or run it imperatively (default "
                        "hybrid)")
    g.add_argument("--warmup-epochs", type=_real_number(0), default=0.0,
                   help="fine-tuning's linear warm-up epochs (default 0)")
    g.add_argument("--label-smoothing", type=_real_number(0, below=1), default=0.1,
                   help="fine-tuning's label smoothing (default 0.1)")
    g.add_argument("--distill", action="store_true",
                   help="fine-tune with distillation from the unpruned network")
    g.add_argument("--teacher", default=None, metavar="MODEL",
                   help="fine-tune with distillation from this GluonCV model instead (default: "
                        "none)")
    g.add_argument("--teacher-params", default=None, metavar="FILE",
                   help="the --teacher's save_parameters file (default: GluonCV's pretrained "
                        "weights, downloaded)")
    g.add_argument("--batch-size", type=_positive_int, default=128,
                   help="images per device, as in GluonCV: a step trains on batch-size x "
                        "devices x workers (default 128)")
    g.add_argument("--gpus", default="", help="GPU ids, e.g. 0,1 (default: CPU)")
    g.add_argument("--kvstore", default="device", choices=KVSTORES,
                   help="device/local: one process; dist_sync, dist_sync_device: one worker of "
                        "a parameter-server job started by mxnet/tools/launch.py (default "
                        "device)")
    g.add_argument("--train-limit", type=_positive_int, default=None,
                   help="use only the first N training images")
    g.add_argument("--val-limit", type=_positive_int, default=None,
                   help="use only the first N validation images")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--checkpoint-every", type=_positive_int, default=500, metavar="N",
                   help="also checkpoint every N iterations inside an epoch (default 500); "
                        "every phase's end is checkpointed regardless")
    g.add_argument("--sync-every", type=_positive_int, default=50, metavar="N",
                   help="read the training loss and accuracy from the devices every N "
                        "iterations (default 50): the host waits for the GPUs only then")
    g.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the interrupted GCP run in DIR with its saved settings")
    p.set_defaults(func=_prune)
    p = sub.add_parser("demo", help="train, prune with GCP and compare a ResNet-18 on "
                                    "Fashion-MNIST (the README's main job)")
    p.add_argument("--quick", action="store_true", help="a small subset, for tests (~2 min)")
    p.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder")
    p.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--cache-dir", default=None,
                   help="where the trained base is cached (default ~/.cache/prunenet or "
                        "$PRUNENET_CACHE)")
    p.add_argument("--gpus", default="", help="GPU ids, e.g. 0 (default: CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_demo)

    from . import bench, plot, zoo
    bench.add_parser(sub)
    zoo.add_parser(sub)
    plot.add_parser(sub)
    from . import experiment
    experiment.add_parser(sub)
    return parser


def _count(args) -> int:
    from .costs import count
    from .files import read_shapes
    from .graph import trace
    from .models import input_shape, load_model, load_network

    if args.shapes or args.symbol is None:
        if args.symbol is not None or args.params is not None:
            raise PrunenetError("--shapes goes with --model, --params with --symbol")
        shapes = read_shapes(args.shapes) if args.shapes else None
        net = load_model(args.model, classes=args.classes, shapes=shapes,
                         shapes_source=args.shapes, input_size=args.input_size)
        name, shape = args.model, input_shape(args.model, args.input_size)
    else:
        net, name, shape = load_network(args.model, args.symbol, args.classes, args.params,
                                        input_size=args.input_size)
    result = count(trace(net, shape))
    if args.json:
        print(json.dumps({"macs": result["macs"], "params": result["params"]}))
    else:
        name = name + (f" ({args.shapes})" if args.shapes else "")
        print(f"{name}: {result['macs'] / 1e9:.3f} GMACs, {result['params'] / 1e6:.2f} M params "
              f"({result['macs']} MACs, {result['params']} params)")
    return 0


def _prune(args) -> int:
    from .runs import DataRun, contexts, data_run, prune_run
    command = args.command_line
    if args.resume:
        progress = _resume_flags(args)
        data_run(DataRun(model="", out=args.resume, target=0.5), resume=True, progress=progress)
        return 0
    missing = [flag for flag, value in (("--model", args.model or args.symbol),
                                        ("--method", args.method),
                                        ("--target", args.target), ("--out", args.out))
               if value is None]
    if missing:
        raise PrunenetError(f"prune needs {', '.join(missing)} (or --resume DIR)".replace(
            "--model", "--model or --symbol"))
    contexts(args.gpus)  # refuses GPU ids that are not there, whatever the method
    params = args.params
    if args.pretrained:
        if params:
            raise PrunenetError("give --params or --pretrained, not both")
        if args.symbol:
            raise PrunenetError("--pretrained downloads GluonCV's weights of a --model; a "
                                "--symbol network takes its own --params file")
        from .models import pretrained_params
        params = pretrained_params(args.model)
    if args.teacher_params and not args.teacher:
        raise PrunenetError("--teacher-params goes with --teacher MODEL")
    if args.teacher and args.teacher_params is None:
        from .models import pretrained_params
        args.teacher_params = pretrained_params(args.teacher)
    from .methods import DATA_DRIVEN
    if args.method in DATA_DRIVEN and args.dataset is None:
        raise PrunenetError(f"--method {args.method} needs data: add --dataset "
                            f"(e.g. fashion-mnist)")
    from .methods import TRAINED
    if (args.rec_train or args.rec_val) and args.dataset is None:
        args.dataset = "imagenet"
    if args.kvstore not in LOCAL_KVSTORES and args.method not in TRAINED and \
            args.dataset is None:
        raise PrunenetError(f"--kvstore {args.kvstore}: --method {args.method} without "
                            f"--dataset trains nothing to share among workers; run it in one "
                            f"process (no --kvstore)")
    if args.method in TRAINED or args.dataset is not None:
        data_run(DataRun(
            model=args.model or "", out=args.out, target=args.target, method=args.method,
            objective=args.objective, dataset=args.dataset or "fashion-mnist", data_dir=args.data_dir, params=params, steps=args.steps,
            reg=args.reg, reg_grid=args.reg_grid, search_holdout=args.search_holdout,
            stream_score=args.stream_score,
            epochs_per_step=args.epochs_per_step, debias_epochs=args.debias_epochs,
            finetune_epochs=args.finetune_epochs, lr=args.lr, finetune_lr=args.finetune_lr,
            warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing,
            distill=args.distill, batch_size=args.batch_size, gpus=args.gpus, seed=args.seed,
            input_size=args.input_size, classes=args.classes, round_to=args.round_to,
            min_width=args.min_width, train_limit=args.train_limit, val_limit=args.val_limit,
            checkpoint_every=args.checkpoint_every, sync_every=args.sync_every,
            latency_table=args.latency_table,
            latency_batch_size=args.latency_batch_size,
            dtype=args.dtype, kvstore=args.kvstore, rec_train=args.rec_train,
            rec_train_idx=args.rec_train_idx, rec_val=args.rec_val, rec_val_idx=args.rec_val_idx,
            num_data_workers=args.num_data_workers, progress=not args.no_progress,
            command=command, symbol=args.symbol, momentum=args.momentum, wd=args.wd,
            lr_mode=args.lr_mode, mode=args.mode, teacher=args.teacher,
            teacher_params=args.teacher_params, speed_check=args.speed_check),
            overwrite=args.overwrite)
        return 0
    prune_run(args.model, args.method, args.objective, args.target, args.out,
              params=params, input_size=args.input_size, classes=args.classes,
              round_to=args.round_to, min_width=args.min_width, seed=args.seed,
              overwrite=args.overwrite, command=command, latency_table=args.latency_table,
              latency_batch_size=args.latency_batch_size, dtype=args.dtype, gpus=args.gpus,
              symbol=args.symbol, speed_check=args.speed_check)
    return 0


_RESUME_FREE = {"resume", "command_line", "func", "command", "no_progress"}


def _resume_flags(args) -> Optional[bool]:
    """Refuse flags given with ``--resume`` that differ from the run's saved settings (the run
    continues as it was started); returns the progress-bar setting (``--no-progress`` may be
    given), or None to keep the run's."""
    import dataclasses
    from .files import read_json
    from .runs import RUN_FILE, DataRun
    defaults = vars(build_parser().parse_args(["prune"]))
    given = {k: v for k, v in vars(args).items()
             if k in defaults and k not in _RESUME_FREE and v != defaults[k]}
    if not given:
        return False if args.no_progress else None
    path = os.path.join(args.resume, RUN_FILE)
    saved = read_json(path, "run file") if os.path.isfile(path) else None
    if not isinstance(saved, dict):
        return None  # data_run says what is wrong with the folder
    fields = {f.name for f in dataclasses.fields(DataRun)}
    for key, value in given.items():
        flag = "--" + key.replace("_", "-")
        if key not in fields:
            raise PrunenetError(f"{flag} cannot be given with --resume, which continues the run "
                                f"in {args.resume} as it was started; drop {flag}")
        if key == "out" and os.path.abspath(value) == os.path.abspath(args.resume):
            continue
        if saved.get(key) != value:
            raise PrunenetError(f"--resume continues the run in {args.resume} with the settings "
                                f"it was started with: {flag} {value} differs from its "
                                f"{saved.get(key)} ({path}); drop {flag}, or start a new run "
                                f"with another --out")
    return False if args.no_progress else None


def _demo(args) -> int:
    from .demo import run_demo
    for flag, path in (("--out", args.out), ("--cache-dir", args.cache_dir)):
        if path and os.path.isfile(os.path.expanduser(path)):
            raise PrunenetError(f"{flag} {path} is a file; give a folder")
    run_demo(args.out, quick=args.quick, data_dir=args.data_dir, cache_dir=args.cache_dir,
             gpus=args.gpus, progress=not args.no_progress)
    return 0


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
        from .outputs import write_error
        print(f"prunenet: error: {one_line(write_error(err, writing=False))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunenet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
