"""A pruning run's settings: :class:`DataRun`, as saved in a run folder's ``run.json`` and read
back for ``--resume``, and the datasets they name."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import List, Optional, Union

from .errors import PrunenetError
from .methods.gcp import DEFAULT_REG
from .records import CHECKPOINT_DIR, RUN_FILE
from .tied import DEFAULT_RULE

__all__ = ["DataRun", "saved_run", "run_dataset", "STARTED_FILE", "FREE_ON_RESUME"]


@dataclass
class DataRun:
    """Everything a pruning run with data needs — GCP, or a data-free method followed by the
    same fine-tuning — saved as ``run.json`` so that ``--resume`` continues with the same
    settings."""

    model: str
    out: str
    target: float
    method: str = "gcp"
    objective: str = "flops"
    dataset: str = "fashion-mnist"
    data_dir: Optional[str] = None
    params: Optional[str] = None
    steps: int = 3
    reg: Union[float, str] = DEFAULT_REG  # λ, or "auto": chosen by the held-out debias loss
    reg_grid: Optional[List[float]] = None  # "auto"'s candidates as raw λ (instead of shrink)
    shrink_grid: Optional[List[float]] = None  # "auto"'s candidates as shrink levels ρ
    # (default GCP's SHRINK_GRID)
    search_fraction: Optional[float] = None  # of step 1 each candidate runs (default: ~0.2 of
    # the pruning steps' time in all)
    search_holdout: int = 2048  # training images held out to score the candidates
    stream_score: str = DEFAULT_RULE  # how a tied group's score combines its layers (.tied)
    epochs_per_step: float = 1.0
    debias_epochs: Optional[float] = None
    finetune_epochs: float = 1.0
    lr: float = 0.01
    finetune_lr: float = 0.01
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.1
    distill: bool = False
    batch_size: int = 128  # images per device (GluonCV's meaning; see batch_per)
    gpus: str = ""
    seed: int = 0
    input_size: Optional[int] = None
    classes: Optional[int] = None
    round_to: int = 8
    min_width: int = 8
    train_limit: Optional[int] = None
    val_limit: Optional[int] = None
    checkpoint_every: int = 500
    sync_every: int = 50  # iterations between host reads of the training loss and accuracy
    latency_table: Optional[str] = None
    latency_batch_size: int = 64
    runtime: str = "mxnet"  # where latency and the speed check are measured (.runtimes)
    dtype: str = "float32"
    speed_check: bool = True  # measure the pruned network's speed-up at the end
    kvstore: str = "device"
    rec_train: Optional[str] = None  # ImageNet RecordIO files (default: data_dir/train.rec ...)
    rec_train_idx: Optional[str] = None
    rec_val: Optional[str] = None
    rec_val_idx: Optional[str] = None
    num_data_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    # decoding threads (ImageNet, image folders): the machine's cores unless given
    max_bad_images: float = 0.0  # the fraction of an image folder's images that may not decode
    progress: bool = True
    command: Optional[List[str]] = None
    symbol: Optional[str] = None  # a HybridBlock.export symbol file, instead of ``model``
    momentum: float = 0.9  # of the pruning steps and fine-tuning
    wd: float = 1e-4  # fine-tuning's weight decay
    lr_mode: str = "cosine"  # fine-tuning's schedule (prunenet.train.LR_MODES)
    mode: str = "hybrid"  # fine-tune hybridized, or "imperative"
    teacher: Optional[str] = None  # a GluonCV model to distil from (else the unpruned, --distill)
    teacher_params: Optional[str] = None
    # "device": batch_size per device and the learning rates per lr_images images, scaled to
    # the global batch; "process": run folders made before, whose batch_size was the process's
    # whole batch and whose learning rates were used as given
    batch_per: str = "device"
    lr_images: int = 256

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
    from .files import read_json
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
    from . import data as datasets
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
