"""A pruning run's settings: :class:`DataRun`, as saved in a run folder's ``run.json`` and read
back for ``--resume``, and the datasets they name."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import MISSING, dataclass
from typing import List, Optional, Union

from ..errors import PrunenetError
from ..gcp.schedule import DEFAULT_REG, GCPConfig
from ..options import default_of, same_as, setting
from ..io.records import CHECKPOINT_DIR, RUN_FILE
from ..gcp.streams import DEFAULT_RULE
from ..training.train import FinetuneConfig

__all__ = ["DataRun", "RUN_DEFAULTS", "saved_run", "run_dataset", "STARTED_FILE", "FREE_ON_RESUME"]


def _choices(module: str, name: str):
    """The choices a flag takes: ``name`` of ``prunenet.module``, read when the parser is
    built."""
    def choices():
        import importlib
        return tuple(getattr(importlib.import_module(f"prunenet.{module}"), name))
    return choices


def _methods() -> tuple:
    from ..methods import METHODS, TRAINED
    return tuple(METHODS + TRAINED)


def _method_help() -> str:
    from ..methods import names
    return (f"gcp (the paper's) or slimming, which train on --dataset; {', '.join(names('data'))}"
            f", which read it; or a data-free ranking: {', '.join(names('weights'))} (required "
            f"unless --resume)")


def _shrink_help() -> str:
    from ..gcp.schedule import SHRINK_GRID
    return ("the candidates of --reg auto as shrink levels: the soft threshold one step applies "
            "to a channel of average cost, in units of the median importance per unit cost (1: "
            "half the channels zeroed if the loss did not resist); 0 is always tried (default "
            f"{' '.join(f'{v:g}' for v in SHRINK_GRID)})")


def _search_help() -> str:
    from ..gcp.schedule import SEARCH_SHARE
    return ("the fraction of step 1's batches each λ candidate runs (default: the candidates "
            f"run {SEARCH_SHARE:g} of the pruning steps' batches, and the search takes under a "
            "quarter of their time)")


_FT, _GCP = FinetuneConfig, GCPConfig


@dataclass
class DataRun:
    """Everything a pruning run with data needs — GCP, or a data-free method followed by the
    same fine-tuning — saved as ``run.json`` so that ``--resume`` continues with the same
    settings. Each field is a setting (:mod:`prunenet.options`): ``prunenet prune``'s flags,
    the API's keywords and experiment configs take their defaults from here, or from
    :class:`~prunenet.gcp.schedule.GCPConfig` and :class:`~prunenet.training.train.FinetuneConfig` for
    the fields that mean theirs. ``group`` is the help's group of the flag."""

    model: str = setting(help="GluonCV model name, e.g. resnet50_v1d (or give --symbol)",
                         flags=None, group="network")
    out: str = setting(help="output folder (must not exist)", group="output",
                       aliases=("--save-dir",))
    target: float = same_as(_GCP, "target", group="pruning", cli_type="fraction")
    # network
    symbol: Optional[str] = setting(None, "your own network: the NAME-symbol.json that "
                                    "HybridBlock.export writes, with its NAME-0000.params as "
                                    "--params (default: none)", flags=None, group="network")
    params: Optional[str] = setting(
        None, "Gluon save_parameters file of the unpruned model, or with --symbol its export "
              "params file; with --classes of another count the output layer is replaced "
              "(default: seeded random initialisation)", group="network")
    input_size: Optional[int] = setting(
        None, "input image size in pixels (default 224; 32 for cifar_* models; for --method "
              "gcp: the dataset's)", least=1, group="network")
    classes: Optional[int] = setting(None, "number of output classes (default: the model's, or "
                                           "the dataset's)", least=1, group="network")
    # pruning
    method: str = setting("gcp", _method_help, choices=_methods, metavar="METHOD",
                          group="pruning", flag_default=None)
    objective: str = setting("flops", "the cost --target is a fraction of (default {default})",
                             choices=lambda: tuple(sorted(
                                 _choices("core.costs", "OBJECTIVES")())), group="pruning")
    round_to: int = same_as(_GCP, "round_to", help=(
        "channels are removed in blocks of this many (default {default}), or auto: the block "
        "of 1, 4, 8, 16 or 32 that saves the most measured time per channel in --runtime for "
        "this network's layers (data-free methods)"), least=1, auto=True, group="pruning")
    min_width: int = same_as(_GCP, "min_width", least=1, group="pruning")
    seed: int = setting(0, "random seed of initialisation and data order (default {default})",
                        least=0, group="pruning")
    # output
    speed_check: bool = setting(True, "skip measuring the pruned network's speed-up against the "
                                      "unpruned one (a few seconds) at the end",
                                flags=("--no-speed-check",), group="output")
    # latency
    latency_table: Optional[str] = setting(
        None, "latency table to use and extend (default: one per device, batch size, dtype and "
              "thread count in ~/.cache/prunenet)", metavar="FILE", group="latency")
    latency_batch_size: int = setting(64, "batch size the latency is measured at (default "
                                          "{default})", least=1, group="latency")
    runtime: str = setting("mxnet", "where the latency and the speed check are measured: "
                                    "mxnet, or onnxruntime (the network exported to ONNX; "
                                    "default {default})",
                           choices=_choices("latency.runtimes", "RUNTIMES"), group="latency")  # (.runtimes)
    dtype: str = setting("float32", "data type the latency is measured in (default {default})",
                         choices=_choices("latency.throughput", "DTYPES"), group="latency")
    # data
    dataset: str = setting("fashion-mnist", "fashion-mnist (default for gcp), synthetic, "
                           "imagenet (RecordIO) or folder; with a data-free method it adds "
                           "fine-tuning and evaluation", group="data", flag_default=None)
    data_dir: Optional[str] = setting(None, "where the dataset's files are", group="data")
    rec_train: Optional[str] = setting(None, "ImageNet training RecordIO file (default: "
                                             "DATA_DIR/train.rec)", metavar="FILE", group="data")
    rec_train_idx: Optional[str] = setting(None, "its index (default: the same name ending "
                                                 ".idx)", metavar="FILE", group="data")
    rec_val: Optional[str] = setting(None, "ImageNet validation RecordIO file (default: "
                                           "DATA_DIR/val.rec)", metavar="FILE", group="data")
    rec_val_idx: Optional[str] = setting(None, "its index (default: the same name ending .idx)",
                                         metavar="FILE", group="data")
    num_data_workers: int = setting(
        help="image decoding threads for imagenet and folder (default: this machine's cores)",
        factory=lambda: os.cpu_count() or 1, flags=("-j", "--num-data-workers"), metavar="N",
        group="data")
    max_bad_images: float = setting(
        0.0, "skip the images of a folder dataset that do not decode while they are at most "
             "this fraction of them (default {default}: refuse)", least=0, below=1,
        metavar="FRACTION", group="data")
    batch_size: int = setting(128, "images per device, as in GluonCV: a step trains on "
                                   "batch-size x devices x workers (default {default})", least=1,
                              group="data")  # see batch_per
    train_limit: Optional[int] = setting(None, "use only the first N training images", least=1,
                                         group="data")
    val_limit: Optional[int] = setting(None, "use only the first N validation images", least=1,
                                       group="data")
    # gcp
    steps: int = same_as(_GCP, "steps", least=1, group="gcp")
    reg: Union[float, str] = setting(
        DEFAULT_REG, "L1 weight λ, or 'auto': each candidate of --shrink-grid runs a short step 1 "
                     "and the most regularising one within one standard error of the least "
                     "held-out debias loss is kept (default {default}, the paper's rule)",
        least=0, auto=True, group="gcp")
    shrink_grid: Optional[List[float]] = setting(None, _shrink_help, least=0, nargs="+",
                                                 metavar="ρ", group="gcp")
    reg_grid: Optional[List[float]] = setting(
        None, "the candidates of --reg auto as raw λ instead of --shrink-grid", least=0,
        nargs="+", metavar="λ", group="gcp")
    search_fraction: Optional[float] = setting(None, _search_help, least=0, strict=True,
                                               metavar="F", group="gcp")
    search_holdout: int = setting(2048, "training images held out to score the λ candidates "
                                        "(at most a tenth of the training set; default "
                                        "{default})", least=1, metavar="N", group="gcp")
    stream_score: str = setting(
        DEFAULT_RULE, "how a residual stream's score combines its producers and consumers: sum "
                      "(every pair), reach (each consumer with the producers upstream of it) or "
                      "mean (one average connection); default {default}; see prunenet.gcp.streams",
        choices=_choices("gcp.streams", "RULES"), group="gcp")
    epochs_per_step: float = same_as(_GCP, "epochs_per_step", least=0, strict=True, group="gcp")
    debias_epochs: Optional[float] = same_as(_GCP, "debias_epochs", least=0, group="gcp")
    lr: float = same_as(_GCP, "lr", least=0, strict=True, group="gcp")
    momentum: float = same_as(_FT, "momentum", least=0, below=1, group="gcp")
    # fine-tuning
    finetune_epochs: float = same_as(_FT, "epochs", least=0, group="fine-tuning",
                                     aliases=("--num-epochs",))
    finetune_lr: float = setting(0.01, "fine-tuning learning rate per 256 images, scaled "
                                       "likewise (default {default})", least=0, strict=True,
                                 group="fine-tuning")
    lr_mode: str = same_as(_FT, "lr_mode", group="fine-tuning")
    wd: float = same_as(_FT, "wd", least=0, group="fine-tuning")
    mode: str = setting("hybrid", "fine-tune the hybridized network or run it imperatively "
                                  "(default {default})", choices=lambda: ("hybrid", "imperative"),
                        group="fine-tuning")
    warmup_epochs: float = same_as(_FT, "warmup_epochs", least=0, group="fine-tuning")
    label_smoothing: float = same_as(_FT, "label_smoothing", least=0, below=1,
                                     group="fine-tuning")
    distill: bool = setting(False, "fine-tune with distillation from the unpruned network",
                            group="fine-tuning")
    teacher: Optional[str] = setting(None, "fine-tune with distillation from this GluonCV model "
                                           "instead (default: none)", metavar="MODEL",
                                     group="fine-tuning")
    teacher_params: Optional[str] = setting(
        None, "the --teacher's save_parameters file (default: GluonCV's pretrained weights, "
              "downloaded)", metavar="FILE", group="fine-tuning")
    # devices and long runs
    gpus: str = setting("", "GPU ids, e.g. 0,1 (default: CPU)", group="devices")
    kvstore: str = setting("device", "device/local: one process; dist_sync, dist_sync_device: "
                                     "one worker of a parameter-server job started by "
                                     "mxnet/tools/launch.py (default {default})",
                           choices=_choices("training.distributed", "KVSTORES"), group="devices")
    progress: bool = setting(True, "no progress bars", flags=("--no-progress",), group="devices")
    checkpoint_every: int = setting(500, "also checkpoint every N iterations inside an epoch "
                                         "(default {default}); every phase's end is "
                                         "checkpointed regardless", least=1, metavar="N",
                                    group="devices")
    sync_every: int = setting(50, "read the training loss and accuracy from the devices every N "
                                  "iterations (default {default}): the host waits for the GPUs "
                                  "only then", least=1, metavar="N", group="devices")
    # not flags
    command: Optional[List[str]] = setting(None, "the command line the run was started with",
                                           flags=None)
    # "device": batch_size per device and the learning rates per lr_images images, scaled to
    # the global batch; "process": run folders made before, whose batch_size was the process's
    # whole batch and whose learning rates were used as given
    batch_per: str = setting("device", "what batch_size is of: a device, or (run folders made "
                                       "before) the whole process", flags=None)
    lr_images: int = setting(256, "the images per batch the learning rates are stated for",
                             flags=None)

    @classmethod
    def from_settings(cls, *sources, **given) -> "DataRun":
        """A run from objects holding settings under the fields' names (parsed flags, an
        experiment config), later sources winning, and ``given`` over all of them."""
        values = {}
        for source in sources:
            values.update({f.name: getattr(source, f.name) for f in dataclasses.fields(cls)
                           if hasattr(source, f.name)})
        return cls(**{**values, **given})

    def images_per_batch(self, devices: int) -> int:
        """This process's batch: ``batch_size`` on each of its ``devices``."""
        return self.batch_size * (devices if self.batch_per == "device" else 1)

    def lr_factor(self, devices: int, workers: int = 1) -> float:
        """What the stated learning rates are multiplied by: the global batch (over the
        devices and workers) over ``lr_images``."""
        if self.batch_per != "device":
            return 1.0
        return self.images_per_batch(devices) * workers / self.lr_images


class _Defaults:
    """:class:`DataRun`'s defaults as attributes, each read from its field when asked
    (``RUN_DEFAULTS.seed``): what the API's keywords default to."""

    def __getattr__(self, name: str):
        value = default_of(DataRun, name) if name in _FIELDS else MISSING
        if value is MISSING:
            raise AttributeError(f"DataRun has no setting {name!r} with a default")
        return value


RUN_DEFAULTS = _Defaults()

# the settings a resumed run may hold otherwise than when it started: where its files are,
# how it shows progress and how often it checkpoints, none of which changes its result
FREE_ON_RESUME = {"out", "command", "progress", "num_data_workers", "speed_check",
                  "checkpoint_every", "data_dir", "params", "teacher_params", "latency_table",
                  "rec_train", "rec_train_idx", "rec_val", "rec_val_idx"}
# the copy of run.json made when the run starts, in its checkpoint folder: what --resume holds
# run.json to
STARTED_FILE = "started.json"


def saved_run(out: str) -> DataRun:
    """The settings saved in run folder ``out`` (``run.json``), with the meaning they were made
    with: a folder from before ``batch_size`` was per device keeps its whole-process batch and
    unscaled learning rates. A setting of the wrong type, or one (outside
    :data:`FREE_ON_RESUME`) that differs from the copy the run made when it started, is
    refused: the run's checkpoints were made with the first."""
    from ..io.files import read_json
    saved = os.path.join(out, RUN_FILE)
    if not os.path.exists(saved):
        raise PrunenetError(f"--resume {out}: no {RUN_FILE} there; it is not a GCP run folder")
    run = _settings(read_json(saved, "run file"), out, saved)
    started = os.path.join(out, CHECKPOINT_DIR, STARTED_FILE)
    if os.path.isfile(started):
        first = _settings(read_json(started, "run file"), out, started)
        for name in _FIELDS:
            now, then = getattr(run, name), getattr(first, name)
            if name not in FREE_ON_RESUME and now != then:
                raise PrunenetError(
                    f"--resume {out}: {RUN_FILE} has {name} {json.dumps(now)}, but the run was "
                    f"started with {json.dumps(then)} ({started}); its checkpoints cannot honour "
                    f"the change: put {json.dumps(then)} back, or start a new run with --out")
    return run


def _settings(settings, out: str, path: str) -> DataRun:
    """The run of the settings read from ``path``, each checked for its field's type."""
    if not isinstance(settings, dict) or not {"model", "target"} <= set(settings):
        raise PrunenetError(f"--resume {out}: {path} is not a prunenet run file (a JSON "
                            f"object with the run's settings); start the run again")
    settings.setdefault("batch_per", "process")  # made before batch_size was per device
    settings.setdefault("stream_score", "sum")  # made before the stream rule was a setting
    for name, value in settings.items():
        wanted = _misfit(value, _FIELDS[name]) if name in _FIELDS else None
        if wanted:
            raise PrunenetError(f"--resume {out}: {path} has {name} {json.dumps(value)}, not "
                                f"{wanted}; put back the value the run was started with")
    return DataRun(**dict({k: v for k, v in settings.items() if k in _FIELDS}, out=out))


_FIELDS = {f.name: f.type for f in dataclasses.fields(DataRun)}
_WORDS = {"str": "a string", "int": "a whole number", "float": "a finite number",
          "bool": "true or false", "Union[float, str]": "a number or a string",
          "List[float]": "a list of numbers", "List[str]": "a list of strings"}


def _misfit(value, kind: str) -> Optional[str]:
    """What a setting of type ``kind`` (its annotation) must be, when ``value`` is not that."""
    optional = kind.startswith("Optional[")
    core = kind[len("Optional["):-1] if optional else kind
    if value is None:
        return None if optional else _WORDS[core]
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)
    fits = {"str": isinstance(value, str), "bool": isinstance(value, bool),
            "int": number and isinstance(value, int), "float": number,
            "Union[float, str]": number or isinstance(value, str),
            "List[float]": isinstance(value, list) and all(_misfit(v, "float") is None
                                                           for v in value),
            "List[str]": isinstance(value, list) and all(isinstance(v, str) for v in value)}
    return None if fits[core] else _WORDS[core] + (" or null" if optional else "")


def run_dataset(run: DataRun, train: bool):
    """The run's training or validation set: ``run.dataset`` from ``run.data_dir``, or the
    RecordIO files ``--rec-train``/``--rec-val`` name."""
    from ..training import data as datasets
    rec, idx = (run.rec_train, run.rec_train_idx) if train else (run.rec_val, run.rec_val_idx)
    if not (run.rec_train or run.rec_val):
        return datasets.load(run.dataset, run.data_dir, train=train, **_data_options(run, train))
    if run.dataset != "imagenet":
        raise PrunenetError(f"--rec-train and --rec-val are ImageNet RecordIO files; they go "
                            f"with --dataset imagenet, not {run.dataset}")
    if not (run.rec_train and run.rec_val):
        raise PrunenetError("give --rec-train and --rec-val together (and --rec-train-idx, "
                            "--rec-val-idx unless the index files sit beside them as .idx)")
    return datasets.imagenet_record(rec, idx, train=train, **_data_options(run, train))


def _data_options(run: DataRun, train: bool) -> dict:
    limit = run.train_limit if train else run.val_limit
    options = {}
    if limit:
        if run.dataset not in ("fashion-mnist", "synthetic"):
            raise PrunenetError(f"--train-limit and --val-limit work with fashion-mnist and "
                                f"synthetic, not {run.dataset}")
        options["limit" if run.dataset != "synthetic" else "num_examples"] = limit
    if run.dataset == "fashion-mnist" and run.input_size:
        options["input_size"] = run.input_size  # upsampled (bilinear), still one channel
    if run.dataset in ("imagenet", "folder"):
        if run.input_size:
            options["input_size"] = run.input_size
        if run.num_data_workers < 0:
            raise PrunenetError(f"-j/--num-data-workers {run.num_data_workers} must be >= 0")
        options["num_workers"] = run.num_data_workers
    if run.dataset == "folder":
        options["max_bad_images"] = run.max_bad_images
    if run.dataset == "imagenet" and run.classes:
        options["classes"] = run.classes  # a RecordIO file does not say how many it holds
    return options
