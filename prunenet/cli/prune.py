"""``prunenet prune``: a network pruned to a cost target, with or without data, and
``--resume`` of an interrupted run."""
from __future__ import annotations

import argparse
import os
from typing import Optional

from ..training.distributed import LOCAL_KVSTORES
from ..errors import PrunenetError
from .args import flag_default, network_args, positive_int, settings_flags


def add_parser(sub) -> None:
    """Add ``prunenet prune`` to the command line: a flag for each setting of
    :class:`~prunenet.run.settings.DataRun` (help, default, type and choices from its field),
    the network, output and resume flags, and GluonCV's names."""
    from ..run.settings import DataRun
    p = sub.add_parser("prune", help="prune a model to a cost target", description=_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage="prunenet prune (--model NAME | --symbol FILE) --method METHOD "
                             "--target F --out DIR [flags]\n       prunenet prune --resume DIR")
    groups = {name: p.add_argument_group(title, what) for name, title, what in _GROUPS}
    network_args(groups["network"], required=False)
    settings_flags(groups, DataRun)
    groups["network"].add_argument("--pretrained", action="store_true",
                                   help="start from GluonCV's pretrained weights (downloads them)")
    groups["output"].add_argument("--overwrite", action="store_true",
                                  help="replace an existing --out folder")
    groups["output"].add_argument("--resume", metavar="DIR", default=None,
                                  help="continue the interrupted GCP run in DIR with its saved "
                                       "settings")
    _gluoncv_flags(p)
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

# the help's groups, in order: the fields' group, its title, what it applies to
_GROUPS = (
    ("network", "network", "which network to prune"),
    ("pruning", "pruning", "every method"),
    ("output", "output", None),
    ("latency", "latency", "the latency objective (--objective latency): the target is a "
                           "fraction of the measured latency"),
    ("data", "data", "--method gcp or slimming; a data-free method with --dataset adds "
                     "fine-tuning and evaluation"),
    ("gcp", "gcp", "the paper's method (--method gcp)"),
    ("fine-tuning", "fine-tuning", "after a data run's pruning"),
    ("devices", "devices and long runs", None),
)


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


def _prune(args) -> int:
    from ..io.devices import contexts
    from ..options import default_of
    from ..run.folder import data_run, prune_run
    from ..run.settings import DataRun
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
        from ..training.models import pretrained_params
        params = pretrained_params(args.model)
    if args.teacher_params and not args.teacher:
        raise PrunenetError("--teacher-params goes with --teacher MODEL")
    if args.teacher and args.teacher_params is None:
        from ..training.models import pretrained_params
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
        dataset = args.dataset or default_of(DataRun, "dataset")
        data_run(DataRun.from_settings(args, model=args.model or "", dataset=dataset,
                                       params=params, command=command),
                 overwrite=args.overwrite)
        return 0
    prune_run(args.model, args.method, args.objective, args.target, args.out,
              params=params, input_size=args.input_size, classes=args.classes,
              round_to=args.round_to, min_width=args.min_width, seed=args.seed,
              overwrite=args.overwrite, command=command, latency_table=args.latency_table,
              latency_batch_size=args.latency_batch_size, dtype=args.dtype, gpus=args.gpus,
              symbol=args.symbol, speed_check=args.speed_check, runtime=args.runtime)
    return 0


_RESUME_FREE = {"resume", "command_line", "func", "command", "progress"}


def _resume_flags(args) -> Optional[bool]:
    """Refuse flags given with ``--resume`` that differ from the run's saved settings (the run
    continues as it was started); returns the progress-bar setting (``--no-progress`` may be
    given), or None to keep the run's."""
    import dataclasses
    from ..io.files import read_json
    from ..io.records import RUN_FILE
    from ..run.settings import FREE_ON_RESUME
    from ..run.settings import DataRun
    fields = {f.name: f for f in dataclasses.fields(DataRun)}
    progress = None if args.progress else False
    given = {k: v for k, v in vars(args).items() if k not in _RESUME_FREE and (
        v != flag_default(DataRun, fields[k]) if k in fields else v not in (None, False))}
    if not given:
        return progress
    path = os.path.join(args.resume, RUN_FILE)
    saved = read_json(path, "run file") if os.path.isfile(path) else None
    if not isinstance(saved, dict):
        return None  # data_run says what is wrong with the folder
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
    return progress

