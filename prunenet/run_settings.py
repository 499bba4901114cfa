"""A pruning run's settings: :class:`DataRun`, as saved in a run folder's ``run.json`` and read
back for ``--resume``, and the datasets they name."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Union

from .errors import PrunenetError
from .methods.gcp import DEFAULT_REG
from .records import RUN_FILE
from .tied import DEFAULT_RULE

__all__ = ["DataRun", "saved_run", "run_dataset"]


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
        import dataclasses
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


def saved_run(out: str) -> DataRun:
    """The settings saved in run folder ``out`` (``run.json``), with the meaning they were made
    with: a folder from before ``batch_size`` was per device keeps its whole-process batch and
    unscaled learning rates."""
    import dataclasses
    from .files import read_json
    saved = os.path.join(out, RUN_FILE)
    if not os.path.exists(saved):
        raise PrunenetError(f"--resume {out}: no {RUN_FILE} there; it is not a GCP run folder")
    fields = {f.name for f in dataclasses.fields(DataRun)}
    settings = read_json(saved, "run file")
    if not isinstance(settings, dict) or not {"model", "target"} <= set(settings):
        raise PrunenetError(f"--resume {out}: {saved} is not a prunenet run file (a JSON "
                            f"object with the run's settings); start the run again")
    settings.setdefault("batch_per", "process")  # made before batch_size was per device
    settings.setdefault("stream_score", "sum")  # made before the stream rule was a setting
    return DataRun(**dict({k: v for k, v in settings.items() if k in fields}, out=out))


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
    if run.dataset in ("imagenet", "folder"):
        if run.input_size:
            options["input_size"] = run.input_size
        if run.num_data_workers < 0:
            raise PrunenetError(f"-j/--num-data-workers {run.num_data_workers} must be >= 0")
        options["num_workers"] = run.num_data_workers
    if run.dataset == "imagenet" and run.classes:
        options["classes"] = run.classes  # a RecordIO file does not say how many it holds
    return options
