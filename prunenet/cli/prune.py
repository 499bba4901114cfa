"""``prunenet prune``: a network pruned to a cost target, with or without data, and
``--resume`` of an interrupted run."""
from __future__ import annotations

import argparse
import os
from typing import Optional

from ..distributed import KVSTORES, LOCAL_KVSTORES
from ..errors import PrunenetError
from ..tied import DEFAULT_RULE, RULES
from .args import Parser, fraction, network_args, positive_int, real_number, reg, \
    whole_number


def add_parser(sub) -> None:
    """Add ``prunenet prune`` to the command line."""
    from ..bench import DTYPES
    from ..costs import OBJECTIVES
    from ..methods import METHODS, TRAINED
    from ..methods.gcp import DEFAULT_REG, SEARCH_SHARE, SHRINK_GRID
    from ..runtimes import RUNTIMES
    from ..train import LR_MODES

    p = sub.add_parser("prune", help="prune a model to a cost target", description=_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage="prunenet prune (--model NAME | --symbol FILE) --method METHOD "
                             "--target F --out DIR [flags]\n       prunenet prune --resume DIR")
    network_args(p, required=False)
    p.add_argument("--input-size", type=positive_int, default=None,
                   help="input image size in pixels (default 224; 32 for cifar_* models; for "
                        "--method gcp: the dataset's)")
    p.add_argument("--classes", type=positive_int, default=None,
                   help="number of output classes (default: the model's, or the dataset's)")
    p.add_argument("--params", default=None,
                   help="Gluon save_parameters file of the unpruned model, or with --symbol "
                        "its export params file; with --classes of another count the output "
                        "layer is replaced (default: seeded random initialisation)")
    p.add_argument("--pretrained", action="store_true",
                   help="start from GluonCV's pretrained weights (downloads them)")
    from ..methods import names
    p.add_argument("--method", choices=METHODS + TRAINED, metavar="METHOD",
                   help="gcp (the paper's) or slimming, which train on --dataset; "
                        f"{', '.join(names('data'))}, which read it; or a data-free ranking: "
                        f"{', '.join(names('weights'))} (required unless --resume)")
    p.add_argument("--objective", default="flops", choices=sorted(OBJECTIVES),
                   help="the cost --target is a fraction of (default flops)")
    p.add_argument("--target", type=fraction,
                   help="fraction of the objective's cost to keep, in (0, 1)")
    p.add_argument("--round-to", type=_round_to, default=8,
                   help="channels are removed in blocks of this many (default 8), or auto: the "
                        "block of 1, 4, 8, 16 or 32 that saves the most measured time per "
                        "channel in --runtime for this network's layers (data-free methods)")
    p.add_argument("--min-width", type=positive_int, default=8,
                   help="no group keeps fewer channels than this (default 8)")
    p.add_argument("--seed", type=whole_number(0), default=0,
                   help="random seed of initialisation and data order (default 0)")
    lat = p.add_argument_group("latency", "the latency objective (--objective latency): the "
                                          "target is a fraction of the measured latency")
    lat.add_argument("--latency-table", default=None, metavar="FILE",
                     help="latency table to use and extend (default: one per device, batch "
                          "size, dtype and thread count in ~/.cache/prunenet)")
    lat.add_argument("--latency-batch-size", type=positive_int, default=64,
                     help="batch size the latency is measured at (default 64)")
    lat.add_argument("--runtime", default="mxnet", choices=RUNTIMES,
                     help="where the latency and the speed check are measured: mxnet, or "
                          "onnxruntime (the network exported to ONNX; default mxnet)")
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
    g.add_argument("--max-bad-images", type=real_number(0, below=1), default=0.0,
                   metavar="FRACTION", help="skip the images of a folder dataset that do not "
                   "decode while they are at most this fraction of them (default 0: refuse)")
    g.add_argument("--steps", type=int, default=3, help="pruning steps T (default 3)")
    g.add_argument("--reg", type=reg, default=DEFAULT_REG,
                   help="L1 weight λ, or 'auto': each candidate of --shrink-grid runs a short "
                        "step 1 and the most regularising one within one standard error of the "
                        f"least held-out debias loss is kept (default {DEFAULT_REG}, the "
                        "paper's rule)")
    g.add_argument("--shrink-grid", type=real_number(0), nargs="+", default=None, metavar="ρ",
                   help="the candidates of --reg auto as shrink levels: the soft threshold one "
                        "step applies to a channel of average cost, in units of the median "
                        "importance per unit cost (1: half the channels zeroed if the loss did "
                        "not resist); 0 is always tried (default "
                        f"{' '.join(f'{v:g}' for v in SHRINK_GRID)})")
    g.add_argument("--reg-grid", type=real_number(0), nargs="+", default=None, metavar="λ",
                   help="the candidates of --reg auto as raw λ instead of --shrink-grid")
    g.add_argument("--search-fraction", type=real_number(0, strict=True), default=None, metavar="F",
                   help="the fraction of step 1's batches each λ candidate runs (default: "
                        f"the search takes about {SEARCH_SHARE:g} of the pruning steps' time)")
    g.add_argument("--search-holdout", type=positive_int, default=2048, metavar="N",
                   help="training images held out to score the λ candidates (at most a "
                        "tenth of the training set; default 2048)")
    g.add_argument("--stream-score", choices=RULES, default=DEFAULT_RULE,
                   help="how a residual stream's score combines its producers and consumers: "
                        "sum (every pair; default), reach (each consumer with the producers "
                        "upstream of it) or mean (one average connection); see prunenet.tied")
    g.add_argument("--epochs-per-step", type=real_number(), default=1.0,
                   help="regularize epochs per step; fractions allowed (default 1)")
    g.add_argument("--debias-epochs", type=real_number(0), default=None,
                   help="debias epochs per step (default: --epochs-per-step)")
    g.add_argument("--finetune-epochs", type=real_number(0), default=1.0,
                   help="fine-tuning epochs after pruning; fractions allowed (default 1)")
    g.add_argument("--num-epochs", dest="finetune_epochs", type=real_number(0),
                   default=argparse.SUPPRESS, metavar="FINETUNE_EPOCHS",
                   help="the same as --finetune-epochs (GluonCV's name)")
    g.add_argument("--lr", type=real_number(), default=0.01,
                   help="learning rate of the pruning steps per 256 images, scaled to the "
                        "global batch (default 0.01)")
    g.add_argument("--finetune-lr", type=real_number(0, strict=True), default=0.01,
                   help="fine-tuning learning rate per 256 images, scaled likewise "
                        "(default 0.01)")
    g.add_argument("--lr-mode", default="cosine", choices=LR_MODES,
                   help="fine-tuning's learning-rate schedule (default cosine)")
    g.add_argument("--momentum", type=real_number(0, below=1), default=0.9,
                   help="SGD momentum of the pruning steps and fine-tuning (default 0.9)")
    g.add_argument("--wd", type=real_number(0), default=1e-4,
                   help="fine-tuning's weight decay, not on BN and biases (default 1e-4)")
    g.add_argument("--mode", default="hybrid", choices=["hybrid", "imperative"],
                   help="fine-tune the hybridized network or run it imperatively (default "
                        "hybrid)")
    g.add_argument("--warmup-epochs", type=real_number(0), default=0.0,
                   help="fine-tuning's linear warm-up epochs (default 0)")
    g.add_argument("--label-smoothing", type=real_number(0, below=1), default=0.1,
                   help="fine-tuning's label smoothing (default 0.1)")
    g.add_argument("--distill", action="store_true",
                   help="fine-tune with distillation from the unpruned network")
    g.add_argument("--teacher", default=None, metavar="MODEL",
                   help="fine-tune with distillation from this GluonCV model instead (default: "
                        "none)")
    g.add_argument("--teacher-params", default=None, metavar="FILE",
                   help="the --teacher's save_parameters file (default: GluonCV's pretrained "
                        "weights, downloaded)")
    g.add_argument("--batch-size", type=positive_int, default=128,
                   help="images per device, as in GluonCV: a step trains on batch-size x "
                        "devices x workers (default 128)")
    g.add_argument("--gpus", default="", help="GPU ids, e.g. 0,1 (default: CPU)")
    g.add_argument("--kvstore", default="device", choices=KVSTORES,
                   help="device/local: one process; dist_sync, dist_sync_device: one worker of "
                        "a parameter-server job started by mxnet/tools/launch.py (default "
                        "device)")
    g.add_argument("--train-limit", type=positive_int, default=None,
                   help="use only the first N training images")
    g.add_argument("--val-limit", type=positive_int, default=None,
                   help="use only the first N validation images")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--checkpoint-every", type=positive_int, default=500, metavar="N",
                   help="also checkpoint every N iterations inside an epoch (default 500); "
                        "every phase's end is checkpointed regardless")
    g.add_argument("--sync-every", type=positive_int, default=50, metavar="N",
                   help="read the training loss and accuracy from the devices every N "
                        "iterations (default 50): the host waits for the GPUs only then")
    g.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the interrupted GCP run in DIR with its saved settings")
    _gluoncv_flags(p)
    _regroup(p)
    p.set_defaults(func=_prune)


_EXAMPLES = """Prune a network's channels to a fraction of its FLOPs, parameters or measured latency.

examples:
  # data-free: GluonCV's pretrained ResNet-18 to half its FLOPs by L1 norm, then count it
  prunenet prune --model resnet18_v1b --pretrained --method l1 --target 0.5 --out runs/r18_l1
  prunenet count --model resnet18_v1b --shapes runs/r18_l1/shapes.json
  # the paper's GCP on Fashion-MNIST (λ chosen by --reg auto), fine-tuned 1 epoch
  prunenet prune --model resnet18_v1b --method gcp --dataset fashion-mnist --target 0.5 \\
      --out runs/r18_gcp
  # your own network, as HybridBlock.export wrote it, to 70 % of its measured latency
  prunenet prune --symbol net-symbol.json --params net-0000.params --input-size 224 \\
      --method l1 --objective latency --target 0.7 --out runs/mine
  # continue a killed GCP run
  prunenet prune --resume runs/r18_gcp

The flags below are grouped by what they apply to; GluonCV's train_imagenet.py names are
taken where they mean the same (--num-epochs, --save-dir, --use-pretrained, ...)."""

# the help's groups, in order: title, what they apply to, their flags (the first option string)
_GROUPS = (
    ("network", "which network to prune", ["--model", "--symbol", "--params", "--pretrained",
                                           "--input-size", "--classes"]),
    ("pruning", "every method", ["--method", "--objective", "--target", "--round-to",
                                 "--min-width", "--seed"]),
    ("output", None, ["--out", "--save-dir", "--overwrite", "--no-speed-check", "--resume"]),
    ("data", "--method gcp or slimming; a data-free method with --dataset adds fine-tuning and "
             "evaluation", ["--dataset", "--data-dir", "--rec-train", "--rec-train-idx",
                            "--rec-val", "--rec-val-idx", "-j", "--max-bad-images",
                            "--batch-size", "--train-limit", "--val-limit"]),
    ("gcp", "the paper's method (--method gcp)", ["--steps", "--reg", "--shrink-grid",
                                                 "--reg-grid", "--search-fraction",
                                                 "--search-holdout", "--stream-score",
                                                 "--epochs-per-step", "--debias-epochs", "--lr",
                                                 "--momentum"]),
    ("fine-tuning", "after a data run's pruning", [
        "--finetune-epochs", "--num-epochs", "--finetune-lr", "--lr-mode", "--wd", "--mode",
        "--warmup-epochs", "--label-smoothing", "--distill", "--teacher", "--teacher-params"]),
    ("devices and long runs", None, ["--gpus", "--kvstore", "--no-progress",
                                     "--checkpoint-every", "--sync-every"]),
)


def _regroup(parser) -> None:
    """Put the flags into the help's groups (:data:`_GROUPS`), in this order: network, pruning,
    output, latency, data, gcp, fine-tuning, devices, GluonCV's flags."""
    by_flag = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    options, others = parser._action_groups[1], parser._action_groups[2:]
    groups = []
    for title, what, flags in _GROUPS:
        group = parser.add_argument_group(title, what)
        group._group_actions[:] = [by_flag[flag] for flag in flags]
        groups.append(group)
    moved = {id(a) for g in groups for a in g._group_actions}
    titled = {g.title: g for g in groups}
    for group in [options] + others:
        group._group_actions[:] = [a for a in group._group_actions if id(a) not in moved]
        if group.title in titled:  # a flag added to its group but not listed above: kept there
            titled[group.title]._group_actions += group._group_actions
            group._group_actions[:] = []
    kept = [g for g in others if g._group_actions]  # latency, GluonCV's flags
    parser._action_groups[:] = parser._action_groups[:2] + groups[:3] + kept[:1] + \
        groups[3:] + kept[1:]


class _GluonCVFlag(argparse.Action):
    """A flag of GluonCV's ``train_imagenet.py`` whose meaning prunenet does not have: refused
    when parsed, naming what to use instead; ``accept``: the values (or, for a switch, True)
    that mean in GluonCV what prunenet does anyway."""

    def __init__(self, option_strings, dest, instead: str, accept=(), **kwargs) -> None:
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)
        self.instead, self.accept = instead, accept

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if (values if self.nargs != 0 else True) not in self.accept:
            raise argparse.ArgumentError(self, self.instead)


def _gluoncv_flags(parser) -> None:
    """GluonCV's ``train_imagenet.py`` flags that prunenet takes in its own meaning or refuses
    naming what to use."""
    g = parser.add_argument_group("GluonCV's train_imagenet.py flags",
                                  "taken where prunenet does the same, else refused naming "
                                  "what to use")
    g.add_argument("--use-pretrained", dest="pretrained", action="store_true",
                   default=argparse.SUPPRESS, help="the same as --pretrained")
    g.add_argument("--log-interval", dest="sync_every", type=positive_int,
                   default=argparse.SUPPRESS, metavar="N",
                   help="the same as --sync-every (the training loss is read every N batches)")
    g.add_argument("--no-wd", action=_GluonCVFlag, nargs=0, accept=(True,),
                   instead="", help="accepted: fine-tuning never decays BN parameters and "
                                    "biases (--wd applies to the weights only)")
    g.add_argument("--warmup-lr", action=_GluonCVFlag, type=float, accept=(0.0,),
                   metavar="LR", instead="prunenet's warm-up starts at 0 (GluonCV's default): "
                                         "give --warmup-epochs alone",
                   help="accepted as 0 only: the warm-up starts at 0 (--warmup-epochs)")
    g.add_argument("--crop-ratio", action=_GluonCVFlag, type=float, accept=(0.875,),
                   metavar="R", instead="evaluation resizes to --input-size / 0.875 and "
                                        "center-crops (GluonCV's default); other ratios are "
                                        "not supported",
                   help="accepted as 0.875 only, the evaluation crop prunenet uses")
    decay = ("fine-tuning's --lr-mode step decays by 0.1 at 50% and 75% of "
             "--finetune-epochs; use it (or --lr-mode cosine, the default)")
    for flag, metavar in (("--lr-decay", "F"), ("--lr-decay-epoch", "E,E"),
                          ("--lr-decay-period", "N")):
        g.add_argument(flag, action=_GluonCVFlag, metavar=metavar, instead=decay,
                       help="refused: use --lr-mode step")
    g.add_argument("--last-gamma", action=_GluonCVFlag, nargs=0,
                   instead="zero-initialising each block's last BN γ is for training from "
                           "scratch; prunenet prunes the weights of --params or --pretrained",
                   help="refused: prunenet starts from trained weights")
    g.add_argument("--mixup", action=_GluonCVFlag, nargs=0,
                   instead="mixup is not supported; use --label-smoothing or --distill",
                   help="refused: use --label-smoothing or --distill")
    g.add_argument("--save-frequency", action=_GluonCVFlag, metavar="N",
                   instead="prunenet checkpoints every phase's end and every --checkpoint-every "
                           "N iterations (resume with --resume DIR)",
                   help="refused: use --checkpoint-every")


def _round_to(text: str):
    """``--round-to``: a whole number from 1, or ``auto``."""
    return text if text == "auto" else positive_int(text)


def _prune(args) -> int:
    from ..devices import contexts
    from ..runs import DataRun, data_run, prune_run
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
        from ..models import pretrained_params
        params = pretrained_params(args.model)
    if args.teacher_params and not args.teacher:
        raise PrunenetError("--teacher-params goes with --teacher MODEL")
    if args.teacher and args.teacher_params is None:
        from ..models import pretrained_params
        args.teacher_params = pretrained_params(args.teacher, flag="--teacher-params")
    from ..methods import DATA_DRIVEN
    if args.method in DATA_DRIVEN and args.dataset is None:
        raise PrunenetError(f"--method {args.method} needs data: add --dataset "
                            f"(e.g. fashion-mnist)")
    from ..methods import TRAINED
    if (args.rec_train or args.rec_val) and args.dataset is None:
        args.dataset = "imagenet"
    if args.kvstore not in LOCAL_KVSTORES and args.method not in TRAINED and \
            args.dataset is None:
        raise PrunenetError(f"--kvstore {args.kvstore}: --method {args.method} without "
                            f"--dataset trains nothing to share among workers; run it in one "
                            f"process (no --kvstore)")
    if args.method in TRAINED or args.dataset is not None:
        if args.round_to == "auto":
            raise PrunenetError("--round-to auto works with the data-free methods (no "
                                "--dataset); give --round-to N")
        data_run(DataRun.from_settings(args, model=args.model or "",
                                       dataset=args.dataset or "fashion-mnist", params=params,
                                       progress=not args.no_progress, command=command),
                 overwrite=args.overwrite)
        return 0
    prune_run(args.model, args.method, args.objective, args.target, args.out,
              params=params, input_size=args.input_size, classes=args.classes,
              round_to=args.round_to, min_width=args.min_width, seed=args.seed,
              overwrite=args.overwrite, command=command, latency_table=args.latency_table,
              latency_batch_size=args.latency_batch_size, dtype=args.dtype, gpus=args.gpus,
              symbol=args.symbol, speed_check=args.speed_check, runtime=args.runtime)
    return 0


_RESUME_FREE = {"resume", "command_line", "func", "command", "no_progress"}


def _resume_flags(args) -> Optional[bool]:
    """Refuse flags given with ``--resume`` that differ from the run's saved settings (the run
    continues as it was started); returns the progress-bar setting (``--no-progress`` may be
    given), or None to keep the run's."""
    import dataclasses
    from ..files import read_json
    from ..records import RUN_FILE
    from ..run_settings import FREE_ON_RESUME
    from ..runs import DataRun
    defaults = _defaults()
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
            moved = f"; if the file moved, write its new place as {key} in {path}" \
                if key in FREE_ON_RESUME else ""
            raise PrunenetError(f"--resume continues the run in {args.resume} with the settings "
                                f"it was started with: {flag} {value} differs from its "
                                f"{saved.get(key)} ({path}); drop {flag}, or start a new run "
                                f"with another --out{moved}")
    return False if args.no_progress else None


def _defaults() -> dict:
    """``prunenet prune``'s flags at their defaults."""
    parser = Parser(prog="prunenet")
    add_parser(parser.add_subparsers(dest="command"))
    return vars(parser.parse_args(["prune"]))
