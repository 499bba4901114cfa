"""A pruning run: model in, pruned GluonCV pair and ``report.json`` out.

The run folder holds ``report.json``, ``shapes.json`` + ``pruned.params`` (GluonCV's pruned-ResNet
pair, for the ResNetV1b family) or ``pruned-symbol.json`` + ``pruned-0000.params`` (any other
network, loadable with ``gluon.SymbolBlock.imports``). It appears under its final name only when
complete.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from .bench import speed_line
from .costs import cost_model, count
from .devices import CPU_CONTEXTS, contexts  # noqa: F401  (re-exported)
from .distributed import LOCAL_KVSTORES, Workers
from .errors import PrunenetError
from .failpoints import failpoint
from .graph import ChannelGraph, trace
from .pruned import (PrunedNetwork, by_original_names, check_surgery, load_pruned,  # noqa: F401
                     probe, prune_network, renamed, save_pruned, surgery_check)
from .records import (CHECKPOINT_DIR, LOG_FILE, PARAMS_FILE, REPORT_FILE, RUN_FILE,  # noqa: F401
                      SHAPES_FILE, STEPS_FILE, SYMBOL_PREFIX, write_steps)  # (re-exported)
from .replicas import host_copy
from .report import (RANDOM_WEIGHTS, base_report, environment, latency_fields,  # noqa: F401
                     latency_line, latency_report, run_speed_check, transfer_line)
from .select import Selection, check_cost_target, check_reachable
from .surgery import network_params, zero_removed
from .tied import DEFAULT_RULE


__all__ = ["PrunedNetwork", "prune_network", "prune_run", "save_pruned", "surgery_check",
           "environment", "DataRun", "data_run", "contexts", "load_pruned",
           "CPU_CONTEXTS", "PARAMS_FILE", "SHAPES_FILE", "SYMBOL_PREFIX"]  # (re-exported)


def objective_cost(graph: ChannelGraph, objective: str, model: str = "", round_to: int = 8,
                   gpus: str = "", latency_table: Optional[str] = None,
                   latency_batch_size: int = 64, dtype: str = "float32"):
    """The cost model of ``objective``; for ``latency``, backed by the latency table of the
    first device in ``gpus`` (the CPU if none) at that batch size and dtype."""
    if objective != "latency":
        return cost_model(graph, objective)
    from .latency import LatencyTable
    first = (gpus or "").split(",")[0].strip()
    table = LatencyTable.open(latency_table, gpus=first, batch_size=latency_batch_size,
                              dtype=dtype)
    return cost_model(graph, "latency", table=table, round_to=round_to, name=model)


def select_with(select, cost, target: float) -> Tuple[Selection, dict]:
    """``select(target)``, and for the latency objective the selection checked by measuring the
    pruned network and refined (:func:`prunenet.latency.select_measured`); returns it with the
    report's latency fields (none for other objectives). A latency target still missed by more
    than the measurement's noise is refused, in one line."""
    if cost.name != "latency":
        return select(target), {}
    from .latency import select_measured
    selection, rounds = select_measured(select, cost, target)
    last = rounds[-1]
    if not last["met"]:
        raise PrunenetError(
            f"latency target {target} missed: the pruned network measured {last['measured']:.3f} "
            f"±{last['noise']:.3f} of the unpruned latency after {len(rounds)} rounds (predicted "
            f"{last['predicted']:.3f}); the latency table does not fit this machine now (it is "
            f"busy, or the table is stale): run again, delete {cost.table.path} to measure it "
            f"again, or prune with --objective flops")
    return selection, {"latency_rounds": rounds, **latency_fields(cost, last, target)}


def prune_run(model: str, method: str, objective: str, target: float, out: str,
              params: Optional[str] = None, input_size: Optional[int] = None,
              classes: Optional[int] = None, round_to: int = 8, min_width: int = 8,
              seed: int = 0, overwrite: bool = False, command: Optional[List[str]] = None,
              log=print, latency_table: Optional[str] = None, latency_batch_size: int = 64,
              dtype: str = "float32", gpus: str = "", symbol: Optional[str] = None,
              speed_check: bool = True) -> dict:
    """Prune ``model`` (or the exported ``symbol`` with its ``params``) with a data-free
    ``method`` to ``target`` × its cost; write the run folder ``out`` (see the module doc) and
    return the report. The ``latency`` objective measures on ``gpus``' first device (the CPU if
    none), at ``latency_batch_size`` and ``dtype``; unless ``speed_check`` is off, the pruned
    network's speed-up is measured there too."""
    from .methods import DATA_FREE

    if method not in DATA_FREE:
        raise PrunenetError(f"unknown method {method!r}: choose one of {', '.join(DATA_FREE)}")
    check_cost_target(target, "--target")
    if round_to < 1 or min_width < 1:
        raise PrunenetError(f"--round-to {round_to} and --min-width {min_width} must be at least 1")
    from .outputs import check_replace, check_target, exclusive
    out_path = check_target(out)
    check_replace(out_path, overwrite)
    with exclusive(out_path):  # held to the end: a second writer of --out stops at once
        return _prune_run(model, method, objective, target, out, params, input_size, classes,
                          round_to, min_width, seed, overwrite, command, log, latency_table,
                          latency_batch_size, dtype, gpus, symbol, speed_check)


def _prune_run(model, method, objective, target, out, params, input_size, classes, round_to,
               min_width, seed, overwrite, command, log, latency_table, latency_batch_size,
               dtype, gpus, symbol, speed_check) -> dict:
    from .files import staged_dir, write_json
    from .models import load_network
    timings = {}
    t0 = time.time()
    net, name, shape = load_network(model or None, symbol, classes, params, seed,
                                    input_size=input_size)
    transfer = getattr(net, "prunenet_transfer", None)
    if params is None:
        log(RANDOM_WEIGHTS)
    if transfer:
        log(transfer_line(transfer))
    graph = trace(net, shape)
    cost = objective_cost(graph, objective, name, round_to, gpus, latency_table,
                          latency_batch_size, dtype)
    check_reachable(graph, cost, target, round_to, min_width)
    before = count(graph)
    timings["load_and_trace_s"] = time.time() - t0

    t0 = time.time()
    params_now = network_params(net)
    selection, latency = select_with(
        lambda a: method_selection(method, graph, params_now, cost, a, round_to, min_width,
                                   seed), cost, target)
    timings["select_s"] = time.time() - t0

    t0 = time.time()
    pruned = prune_network(net, graph, selection.keep, model or None, classes)
    diff, scale = surgery_check(net, pruned.net, graph, selection.keep, seed=seed)
    timings["surgery_s"] = time.time() - t0
    check_surgery(diff, scale)
    speed = {}
    if speed_check:
        t0 = time.time()
        speed = {"speed_check": run_speed_check(net, pruned.net, shape, before, graph,
                                                 selection, gpus, objective,
                                                 latency_batch_size)}
        timings["speed_check_s"] = time.time() - t0

    report = base_report(name, method, objective, target, selection, graph, before, timings,
                          command)
    report.update({
        "input_shape": list(shape), "classes": classes, "round_to": round_to,
        "min_width": min_width, "seed": seed, "params_file": params, "symbol_file": symbol,
        "transfer": transfer,
        "surgery_max_abs_diff": diff,
        "format": "gluoncv-pruned-resnet" if pruned.gluoncv else "mxnet-symbol",
        **latency, **speed,
    })
    with staged_dir(out, overwrite=overwrite) as stage:
        report["files"] = save_pruned(pruned, stage)
        write_json(os.path.join(stage, REPORT_FILE), report)
    log(f"{name} {method}/{objective}: kept {report['achieved']:.4f} of the "
        f"{'predicted latency' if objective == 'latency' else 'cost'} (target {target}); MACs "
        f"{before['macs'] / 1e9:.3f}G -> {report['macs_after'] / 1e9:.3f}G, params "
        f"{before['params'] / 1e6:.2f}M -> {report['params_after'] / 1e6:.2f}M"
        f"{latency_line(report)}{speed_line(report)}; written to {out}")
    return report


# -- GCP: a data-driven run with checkpoints -------------------------------------------------------


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
    reg: Union[float, str] = "auto"  # λ, or "auto": chosen by the held-out debias loss
    reg_grid: Optional[List[float]] = None  # the candidates of "auto" (default GCP's REG_GRID)
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


class _Log:
    """Prints and appends to the run's log file."""

    def __init__(self, path: str, echo) -> None:
        self.path, self.echo = path, echo

    def __call__(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path, "a") as f:
            f.write(f"{stamp} {message}\n")
        if self.echo is not None:
            self.echo(message)


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


def data_run(run: DataRun, resume: bool = False, overwrite: bool = False, log=print,
             workers: Optional[Workers] = None, progress: Optional[bool] = None) -> dict:
    """Prune ``run.model`` with ``run.method`` (GCP on ``run.dataset``, or a data-free method),
    fine-tune and evaluate it, and write the run folder: ``report.json``, ``steps.csv``,
    ``log.txt``, the pruned pair, and for GCP a checkpoint after every step so that
    ``resume=True`` continues from the last finished one.

    With a distributed ``run.kvstore`` this process is one worker (``workers``, made from
    ``run.kvstore`` if not given): it trains on its share of every batch, and rank N > 0 writes
    its run folder to ``<out>.workerN``. ``progress``: show progress bars or not, instead of
    the resumed run's setting.

    The run holds the lock of its folder (:func:`prunenet.outputs.exclusive`) from the check of
    ``out`` to its last write, resumed or not."""
    import contextlib
    with contextlib.ExitStack() as held:
        return _data_run(run, resume, overwrite, log, workers, held, progress)


def _data_run(run: DataRun, resume: bool, overwrite: bool, log, workers: Optional[Workers],
              held, progress: Optional[bool] = None) -> dict:
    """:func:`data_run`'s phases in order, the folder's lock entered on ``held``."""
    phases = _RunPhases(resume, overwrite, log, held)
    phases.check_settings(run, progress)
    phases.set_up(workers)
    phases.open_folder()
    phases.evaluate_before()
    phases.select_and_cut()
    phases.load_teacher()
    phases.fine_tune()
    phases.evaluate_after()
    return phases.report()


def _check_fresh(run: DataRun) -> None:
    """Refuse the settings of a new run that no method, λ, schedule or batch can work with."""
    from .methods import get
    from .methods.gcp import GCPConfig, check_reg
    from .tied import check_rule as check_rule_name
    get(run.method)  # refuses an unknown name
    check_reg(run.reg, run.reg_grid)
    check_rule_name(run.stream_score)
    GCPConfig(target=run.target, steps=run.steps, reg=0.0 if run.reg == "auto" else run.reg,
              lr=run.lr, epochs_per_step=run.epochs_per_step).check()
    if run.finetune_epochs < 0 or run.batch_size < 1:
        raise PrunenetError("--finetune-epochs must be >= 0 and --batch-size >= 1")
    if run.checkpoint_every < 1:
        raise PrunenetError(f"--checkpoint-every {run.checkpoint_every} must be at least 1 "
                            f"(iterations between checkpoints inside an epoch)")


def _check_distributed(run: DataRun, resume: bool) -> None:
    """Refuse what a run with a distributed kvstore cannot do yet."""
    if run.kvstore in LOCAL_KVSTORES:
        return
    if resume:
        raise PrunenetError(f"--resume with --kvstore {run.kvstore}: resuming a distributed "
                            f"run is not supported yet; start it again")
    if run.objective == "latency":
        raise PrunenetError(f"--objective latency with --kvstore {run.kvstore}: each worker "
                            f"would measure its own latencies and choose its own widths; "
                            f"prune for latency on one machine")
    if run.reg == "auto" and _trained(run.method):
        raise PrunenetError(f"--reg auto with --kvstore {run.kvstore}: the λ search is not "
                            f"distributed yet; give --reg a number (e.g. the λ a "
                            f"one-machine run chose, in its report.json)")


class _RunPhases:
    """One run of :func:`data_run`, phase by phase: what a phase finds is kept on the object
    for the phases after it."""

    def __init__(self, resume: bool, overwrite: bool, log, held) -> None:
        self.resume, self.overwrite, self.log, self.held = resume, overwrite, log, held
        self.flag = "--resume" if resume else "--out"

    # -- the data ----------------------------------------------------------------------------

    def batches(self, dataset, epoch: int, start: int, shuffle: bool, on=None):
        """The batches of ``dataset`` from batch ``start`` of ``epoch``, whole (on ``on``)."""
        return dataset.batches(self.batch, shuffle=shuffle, seed=self.run.seed, epoch=epoch,
                               start=start, drop_last=shuffle, ctx=on)

    def shares(self, dataset, epoch: int, start: int):
        """This worker's share of each training batch (the whole batch in one process)."""
        return dataset.batches(self.batch, shuffle=True, seed=self.run.seed, epoch=epoch,
                               start=start, drop_last=True, part=self.workers.rank,
                               parts=self.workers.count, ctx=self.ctx)  # split onto the devices

    def val_top1(self, block) -> tuple:
        """``block``'s top-1 and top-5 accuracy on the validation set."""
        from . import data as datasets
        return datasets.accuracy(block, self.batches(self.val, 0, 0, False, self.ctx), self.ctx)

    def _network(self, model: Optional[str], symbol: Optional[str], params: Optional[str]):
        """:func:`prunenet.models.load_network` on the run's devices, for its data."""
        from .models import load_network
        return load_network(model, symbol, self.classes, params, self.run.seed, self.ctx,
                            self.size, self.channels)

    # -- the phases --------------------------------------------------------------------------

    def check_settings(self, run: DataRun, progress: Optional[bool]) -> None:
        """The run's settings: those saved in its folder when resuming, else ``run`` checked."""
        from .outputs import check_target
        self.out = check_target(run.out, self.flag)
        if self.resume:
            run = saved_run(self.out)
            if progress is not None:
                run.progress = progress
        else:
            _check_fresh(run)
        _check_distributed(run, self.resume)
        self.run = run

    def set_up(self, workers: Optional[Workers]) -> None:
        """This worker, its devices, data, folder lock and network, all workers agreeing on a
        failure; then the network's channel graph and cost, and the target checked on them."""
        import dataclasses
        self.workers = workers or Workers(self.run.kvstore)
        self.out = self.workers.output_folder(self.out)
        self.run = run = dataclasses.replace(self.run, out=self.out)
        failure = None
        try:  # what one worker finds wrong here (its GPUs, files, output folder) stops them all
            self._load()
        except Exception as err:  # noqa: BLE001 (raised again below, on this worker)
            failure = err
        self.workers.agree(failure)
        self.workers.broadcast(self.net.collect_params())
        self.transfer = getattr(self.net, "prunenet_transfer", None)
        self.graph = trace(self.net, self.shape)
        self.cost = objective_cost(self.graph, run.objective, self.net_name, run.round_to,
                                   run.gpus, run.latency_table, run.latency_batch_size, run.dtype)
        check_reachable(self.graph, self.cost, run.target, run.round_to, run.min_width)

    def _load(self) -> None:
        """The devices and datasets, checked against the settings; the folder's lock; the
        network."""
        from .devices import check_training_dtype
        from .outputs import check_replace, exclusive
        from .replicas import cast
        run = self.run
        self.ctx = contexts(run.gpus)
        check_training_dtype(run.dtype, self.ctx)
        self.train, self.val = _dataset(run, train=True), _dataset(run, train=False)
        self._check_data()
        self.held.enter_context(exclusive(self.out, self.flag))
        if not self.resume:
            check_replace(self.out, self.overwrite,
                          hint=f", or continue it with --resume {self.out}")
        self.net, self.net_name, self.shape = self._network(run.model or None, run.symbol,
                                                            run.params)
        self.net = cast(self.net, run.dtype)  # --dtype float16 trains in float16

    def _check_data(self) -> None:
        """The classes, batch and image size of the training set, refused where they do not
        match the settings."""
        run, train = self.run, self.train
        self.classes = run.classes or train.classes
        if self.classes != train.classes:
            raise PrunenetError(f"--classes {run.classes} does not match the {train.classes} "
                                f"classes of dataset {run.dataset}")
        self.batch = run.images_per_batch(len(self.ctx))
        if train.num_batches(self.batch, drop_last=True, parts=self.workers.count) < 1:
            raise PrunenetError(f"{len(train)} training images make no full batch of "
                                f"{self.batch} for each of {self.workers.count} worker(s); use "
                                f"a smaller --batch-size or more data")
        self.channels, self.size = train.image_shape[0], train.image_shape[-1]
        if run.input_size and run.input_size != self.size:
            raise PrunenetError(f"--input-size {run.input_size} differs from the dataset's "
                                f"{self.size}x{self.size} images")

    def open_folder(self) -> None:
        """The run folder made anew (kept, resuming) without a killed run's leftovers, its log,
        and its last checkpoint with the timings and rows so far."""
        import dataclasses
        import shutil
        from .checkpoint import load_checkpoint
        from .files import write_json
        from .outputs import check_replace, remove_leftovers
        out = self.out
        if not self.resume:
            # again, under the lock: a folder made meanwhile is kept
            check_replace(out, self.overwrite)
            if os.path.exists(out):
                shutil.rmtree(out)
            os.makedirs(out)
            write_json(os.path.join(out, RUN_FILE), dataclasses.asdict(self.run))
        self.ckpt_dir = os.path.join(out, CHECKPOINT_DIR)
        remove_leftovers(out)  # a killed run's temporary files
        remove_leftovers(self.ckpt_dir)
        self.say = _Log(os.path.join(out, LOG_FILE), self.log)
        self.before = count(self.graph)
        ckpt = load_checkpoint(self.ckpt_dir) if self.resume else None
        if ckpt is not None:
            ckpt["arrays"] = renamed(ckpt["arrays"], ckpt.get("net_prefix"), self.net.prefix)
        self.ckpt = ckpt
        self.timings: Dict[str, float] = dict(ckpt.get("timings", {})) if ckpt else {}
        self.rows: List[dict] = list(ckpt.get("rows", [])) if ckpt else []

    def evaluate_before(self) -> None:
        """The unpruned network's validation accuracy, logged (the checkpoint's, resuming)."""
        if self.ckpt is not None:
            self.top1_before, self.top5_before = self.ckpt["top1_before"], self.ckpt["top5_before"]
            return
        t0 = time.time()
        self.top1_before, self.top5_before = self.val_top1(self.net)
        self.timings["eval_before_s"] = time.time() - t0
        if self.run.params is None:
            self.say(RANDOM_WEIGHTS)
        if self.transfer:
            self.say(transfer_line(self.transfer))
        self.say(f"{self.net_name}: top-1 {self.top1_before:.4f} before pruning; "
                 f"{self.before['macs'] / 1e6:.1f}M MACs, "
                 f"{self.before['params'] / 1e6:.3f}M params")

    def select_and_cut(self) -> None:
        """The pruned network: selected and cut out, or rebuilt from a fine-tuning checkpoint."""
        t0 = time.time()
        self.stage = self.ckpt.get("stage", "gcp") if self.ckpt else "gcp"
        if self.stage == "finetune":  # resuming inside or after fine-tuning: rebuild its network
            self._rebuild()
        else:
            self._cut(*self._select(t0))

    def _rebuild(self) -> None:
        """The pruned network, its selection and what was measured of it, from the fine-tuning
        checkpoint."""
        ckpt = self.ckpt
        arrays, chosen = ckpt["arrays"], ckpt["selection"]
        keep = [arrays[f"keep:{g.index}"] > 0.5 for g in self.graph.groups]
        self.selection = Selection(keep, chosen["cost"], chosen["base_cost"],
                                   chosen["largest_block"], chosen["blocks_removed"])
        self.pruned = prune_network(self.net, self.graph, keep, self.run.model or None,
                                    self.classes, ctx=self.ctx)
        for name, param in by_original_names(self.pruned).items():
            param.set_data(arrays["net:" + name])
        self.top1_selected, self.diff = ckpt["top1_selected"], ckpt["surgery_max_abs_diff"]
        self.notes, self.latency = ckpt["notes"], ckpt["latency"]
        self.gcp_info = ckpt.get("gcp_info", {})
        self.say(f"resuming fine-tuning after batch {ckpt['finetune']['done']}")

    def _select(self, t0: float) -> tuple:
        """The selection, by GCP's steps or a method that trains nothing (timed from ``t0``);
        returns the masked network and the parameters to cut from."""
        run = self.run
        if _trained(run.method):
            self.selection, masked, params, self.notes, self.gcp_info = _gcp_steps(
                run, self.net, self.graph, self.cost, self.ctx, self.train, self.ckpt, self.rows,
                self.timings, self.say, self.shares,
                progress={"top1_before": self.top1_before, "top5_before": self.top5_before},
                workers=self.workers)
            self.latency = latency_report(self.cost, self.selection.keep, run.target)
            return masked, params
        params = network_params(self.net)
        selection, self.latency = select_with(
            lambda a: method_selection(run.method, self.graph, params, self.cost, a, run.round_to,
                                       run.min_width, run.seed, self.net,
                                       lambda: self.batches(self.train, 0, 0, True), self.ctx[0]),
            self.cost, run.target)
        self.selection = self.workers.rank0_selection(selection, self.cost)
        zero_removed(self.graph, self.net, self.selection.keep)
        self.notes, self.gcp_info = [], {}
        self.timings["select_s"] = time.time() - t0
        return self.net, params

    def _cut(self, masked, params) -> None:
        """The selection cut out of the network and checked against ``masked``; its row."""
        run, t0 = self.run, time.time()
        self.top1_selected, _ = self.val_top1(masked)
        self.pruned = prune_network(self.net, self.graph, self.selection.keep,
                                    run.model or None, self.classes, params=params, ctx=self.ctx)
        x = probe(self.shape, run.seed, self.ctx[0]).astype(run.dtype)
        masked_out = masked(x).asnumpy().astype(np.float32)
        self.diff = float(np.abs(self.pruned.net(x).asnumpy() - masked_out).max())
        check_surgery(self.diff, float(np.abs(masked_out).max()), run.dtype)
        self.timings["surgery_s"] = time.time() - t0
        self.rows.append({"step": run.steps if _trained(run.method) else 0,
                          "phase": "surgery",
                          "target": run.target, "achieved": self.selection.achieved, "loss": "",
                          "top1": self.top1_selected, "zeroed_channels": "", "lr": "",
                          "time_s": self.timings["surgery_s"]})
        self.say(f"after selection: top-1 {self.top1_selected:.4f}; cost "
                 f"{self.selection.achieved:.4f} of the unpruned (target {run.target})")

    def load_teacher(self) -> None:
        """The network to distil from: ``run.teacher``, the unpruned one (``distill``) or
        none."""
        from .replicas import cast
        run = self.run
        self.teacher = None
        if run.teacher:
            self.teacher = self._network(run.teacher, None, run.teacher_params)[0]
        elif run.distill:
            self.teacher = self._network(run.model or None, run.symbol, run.params)[0]
        if self.teacher is not None:
            cast(self.teacher, run.dtype)

    def fine_tune(self) -> None:
        """The pruned network fine-tuned, from where a checkpoint left off, with a checkpoint
        before the first batch and every ``checkpoint_every`` batches."""
        from .checkpoint import finetune_position
        from .train import BatchStream, FinetuneConfig, finetune
        run = self.run
        lr_factor = run.lr_factor(len(self.ctx), self.workers.count)
        self.ft = FinetuneConfig(epochs=run.finetune_epochs, lr=run.finetune_lr * lr_factor,
                                 momentum=run.momentum, wd=run.wd,
                                 warmup_epochs=run.warmup_epochs,
                                 label_smoothing=run.label_smoothing, lr_mode=run.lr_mode,
                                 hybridize=run.mode == "hybrid")
        self.stream = BatchStream(lambda e, s: self.shares(self.train, 1000 + e, s))
        if self.stage == "finetune":
            state = finetune_position(self.ckpt, self.stream)
        else:
            state = {"done": 0, "sums": None, "elapsed": 0.0, "resume": None}
            self.save_finetune(None, 0, None, 0.0)  # the surgery is not repeated after a kill
        t0 = time.time() - state["elapsed"]
        total = self.stream.count(run.finetune_epochs) if run.finetune_epochs > 0 else 0
        if state["done"] < total:
            def on_batch(trainer, done: int, sums: dict) -> None:
                if done % run.checkpoint_every == 0 or done == total:
                    self.save_finetune(trainer, done, sums, time.time() - t0)
                failpoint("finetune")
            result = finetune(self.pruned.net, self.stream, self.ft, self.ctx,
                              teacher=self.teacher, progress=run.progress,
                              resume=state["resume"], on_batch=on_batch, workers=self.workers,
                              sync_every=run.sync_every)
            self.loss = result["loss"]
        else:
            sums = state["sums"]
            self.loss = sums["loss"] / max(sums["n"], 1) if sums else float("nan")
        self.timings["finetune_s"] = time.time() - t0

    def save_finetune(self, trainer, done: int, sums: Optional[dict], elapsed: float) -> None:
        """A fine-tuning checkpoint after ``done`` batches: the pruned network, its selection
        and everything the report needs of the phases before."""
        from .checkpoint import save_finetune_checkpoint
        selection = self.selection
        arrays = {"net:" + name: value
                  for name, value in host_copy(by_original_names(self.pruned)).items()}
        arrays.update({f"keep:{g.index}": k.astype(np.float32)
                       for g, k in zip(self.graph.groups, selection.keep)})
        chosen = {"cost": selection.cost, "base_cost": selection.base_cost,
                  "largest_block": selection.largest_block,
                  "blocks_removed": selection.blocks_removed}
        save_finetune_checkpoint(self.ckpt_dir, f"finetune-{done}", arrays, trainer, self.stream,
                                 done, sums, elapsed, stage="finetune", step=self.run.steps,
                                 selection=chosen, top1_before=self.top1_before,
                                 top5_before=self.top5_before, top1_selected=self.top1_selected,
                                 surgery_max_abs_diff=self.diff, notes=self.notes,
                                 latency=self.latency, gcp_info=self.gcp_info, rows=self.rows,
                                 timings=self.timings, net_prefix=self.net.prefix)
        failpoint("checkpointed-surgery" if done == 0 else "checkpointed-finetune")

    def evaluate_after(self) -> None:
        """The fine-tuned network's validation accuracy, its row, and ``steps.csv``."""
        self.pruned.params = host_copy(by_original_names(self.pruned))
        self.top1_after, self.top5_after = self.val_top1(self.pruned.net)
        self.rows.append({"step": self.run.steps, "phase": "finetune", "target": self.run.target,
                          "achieved": self.selection.achieved, "loss": self.loss,
                          "top1": self.top1_after, "zeroed_channels": "", "lr": self.ft.lr,
                          "time_s": self.timings["finetune_s"]})
        write_steps(os.path.join(self.out, STEPS_FILE), self.rows)

    def _speed_check(self) -> dict:
        """The pruned network's measured speed-up (rank 0 only), as the report's field."""
        run = self.run
        if not (run.speed_check and self.workers.rank == 0):
            return {}
        t0 = time.time()
        speed = {"speed_check": run_speed_check(self.net, self.pruned.net, self.shape,
                                                 self.before, self.graph, self.selection,
                                                 run.gpus, run.objective,
                                                 run.latency_batch_size, self.ctx[0])}
        self.timings["speed_check_s"] = time.time() - t0
        return speed

    def report(self) -> dict:
        """The speed check, then the pruned files and ``report.json`` written; the report."""
        import dataclasses
        from .files import write_json
        run, before, speed = self.run, self.before, self._speed_check()
        report = base_report(self.net_name, run.method, run.objective, run.target,
                             self.selection, self.graph, before, self.timings, run.command)
        report.update({
            "top1_before": self.top1_before, "top5_before": self.top5_before,
            "top1_selected": self.top1_selected, "top1_after": self.top1_after,
            "top5_after": self.top5_after, "dataset": run.dataset,
            "input_shape": list(self.shape), "classes": self.classes,
            "surgery_max_abs_diff": self.diff, "notes": self.notes, "transfer": self.transfer,
            **self.gcp_info,
            "format": "gluoncv-pruned-resnet" if self.pruned.gluoncv else "mxnet-symbol",
            "settings": dataclasses.asdict(run), **self.latency, **speed,
        })
        report["files"] = save_pruned(self.pruned, self.out)
        failpoint("export")
        write_json(os.path.join(self.out, REPORT_FILE), report)
        self.say(f"done: top-1 {self.top1_before:.4f} -> {self.top1_after:.4f}; MACs "
                 f"{before['macs'] / 1e6:.1f}M -> {report['macs_after'] / 1e6:.1f}M, params "
                 f"{before['params'] / 1e6:.3f}M -> {report['params_after'] / 1e6:.3f}M"
                 f"{latency_line(report)}{speed_line(report)}; written to {self.out}")
        return report


def _gcp_steps(run: DataRun, net, graph: ChannelGraph, cost, ctx, train, ckpt, rows, timings,
               say, shares, progress: dict, workers=None):
    """The GCP steps of a run, resuming from ``ckpt``, with a checkpoint after each; returns the
    selection, the masked network, its parameters for surgery and GCP's notes."""
    steps = _GCPSteps(run, net, graph, cost, ctx, train, ckpt, rows, timings, say, shares,
                      progress, workers)
    if ckpt is not None:
        steps.restore(ckpt)
    if steps.searching:
        steps.search_reg()
    elif steps.search is not None:
        steps.gcp.config.reg = steps.search["chosen"]
    for t in range(steps.done + 1, run.steps + 1):
        steps.step(t)
    return steps.result()


class _GCPSteps:
    """GCP's steps in one run (:func:`_gcp_steps`): the masked network, its trainers, their
    batches, the λ search's state, and the checkpoints of them all."""

    def __init__(self, run: DataRun, net, graph: ChannelGraph, cost, ctx, train, ckpt,
                 rows: List[dict], timings: Dict[str, float], say, shares, progress: dict,
                 workers: Optional[Workers]) -> None:
        from .methods import get
        from .methods.gcp import GCP
        from .train import BatchStream
        from .wrapper import MaskedNetwork
        self.run, self.net, self.graph, self.ctx = run, net, graph, ctx
        self.rows, self.timings, self.say, self.progress = rows, timings, say, progress
        self.ckpt_dir = os.path.join(run.out, CHECKPOINT_DIR)
        self.wrapper = MaskedNetwork(net, graph, ctx, stream_score=run.stream_score)
        auto = run.reg == "auto"
        settings = dict(target=run.target, steps=run.steps, reg=0.0 if auto else run.reg,
                        epochs_per_step=run.epochs_per_step, debias_epochs=run.debias_epochs,
                        lr=run.lr * run.lr_factor(len(ctx), workers.count if workers else 1),
                        momentum=run.momentum, round_to=run.round_to, min_width=run.min_width)
        config = get(run.method).config(**settings)
        self.gcp = GCP(self.wrapper, cost, config, ctx, progress=run.progress, workers=workers,
                       sync_every=run.sync_every)
        if auto:  # the λ candidates are scored on training images the steps never see
            train = self._hold_out(train)
        self.stream = BatchStream(lambda e, s: shares(train, e, s))
        self.done, self.step_state = 0, None
        self.search = ckpt.get("search") if ckpt is not None else None
        self.searching = auto and not (self.search or {}).get("done") and \
            (ckpt is None or self.search is not None)
        # every candidate's starting point
        self.start = self.gcp.snapshot(self.stream) if self.searching else None
        self.best = None

    def _hold_out(self, train):
        """``train`` without the images held out to score the λ candidates."""
        from .data import holdout
        self.held_count = min(self.run.search_holdout, max(1, len(train) // 10))
        train, held = holdout(train, self.held_count, self.run.seed)
        self.held_batches = held.batches(self.run.batch_size, shuffle=False)
        return train

    def heldout_loss(self) -> float:
        """The debiased network's mean loss on the held-out images."""
        from .data import mean_loss
        from .wrapper import DEBIAS
        return mean_loss(self.wrapper.block(DEBIAS), self.held_batches, self.ctx)

    def restore(self, ckpt: dict) -> None:
        """The masks, weights, trainers, batch position and progress of checkpoint ``ckpt``."""
        from .checkpoint import restore_trainer
        gcp, wrapper = self.gcp, self.wrapper
        arrays = ckpt["arrays"]
        for name, value in arrays.items():
            wrapper.set(name, value)
        wrapper.keep = [arrays[wrapper.keep_name(g.index)] > 0.5 if g.prunable
                        else np.ones(g.width, dtype=bool) for g in self.graph.groups]
        restore_trainer(gcp.reg_trainer, ckpt["states"]["regularize"])
        restore_trainer(gcp.debias_trainer, ckpt["states"]["debias"])
        self.stream.epoch, self.stream.index = ckpt["stream"]["epoch"], ckpt["stream"]["index"]
        gcp.notes = list(ckpt.get("notes", []))
        gcp.zeros_pruned = int(ckpt.get("zeros_pruned", 0))
        self.done, self.step_state = int(ckpt["step"]), ckpt.get("step_state")
        if ckpt.get("largest_block") is not None:
            gcp.last_selection = Selection([k.copy() for k in wrapper.keep], 0.0,
                                           gcp.base_cost, ckpt["largest_block"],
                                           ckpt["blocks_removed"])
        if self.searching:  # the checkpoint holds the best candidate so far
            self.best = gcp.snapshot(self.stream)
            gcp.restore(self.start, self.stream)
            tried = sum(v is not None for v in self.search["losses"])
            self.say(f"resuming the λ search after {tried} of {len(self.search['grid'])} "
                     f"candidates")
        else:
            step_state = self.step_state
            where = f"after step {self.done}" if step_state is None else \
                f"in step {self.done + 1}, {step_state['phase']} batch {step_state['done']}"
            self.say(f"resuming {where} of {self.run.steps}")

    def save(self, tag: str, finished: int, state: Optional[dict]) -> None:
        """A checkpoint ``tag`` after ``finished`` steps (inside the next, at ``state``)."""
        from .checkpoint import save_checkpoint
        gcp = self.gcp
        last = gcp.last_selection
        save_checkpoint(self.ckpt_dir, tag, gcp.arrays(),
                        {"regularize": gcp.reg_trainer, "debias": gcp.debias_trainer},
                        stage="gcp", step=finished, step_state=state, stream=self.stream.state(),
                        notes=gcp.notes, rows=self.rows, search=self.search,
                        zeros_pruned=gcp.zeros_pruned,
                        largest_block=last.largest_block if last else None,
                        blocks_removed=last.blocks_removed if last else None,
                        timings=self.timings, net_prefix=self.net.prefix, **self.progress)
        failpoint("checkpointed-phase" if state is not None else "checkpointed-step")

    def search_reg(self) -> None:
        """Step 1 once per λ of the grid, from the same start; the λ of the lowest held-out
        loss is kept, with its step 1 (a checkpoint after each candidate)."""
        from .methods.gcp import REG_GRID
        gcp, timings = self.gcp, self.timings
        grid = list(self.run.reg_grid or REG_GRID)
        self.say(f"choosing λ from {grid} by the debias loss of step 1 on {self.held_count} "
                 f"held-out training images")
        t0 = time.time() - timings.get("reg_search_s", 0.0)

        def on_candidate(state: dict, improved: bool) -> None:
            self.search = state
            timings["reg_search_s"] = time.time() - t0
            k = sum(v is not None for v in state["losses"])
            self.save(f"search-{k}", 1, None)  # the best candidate's state is in force
            failpoint("search")
        records = gcp.search_reg(self.stream, self.heldout_loss, grid, state=self.search,
                                 best=self.best, on_candidate=on_candidate)
        self.search = dict(gcp.search, done=True, holdout_images=self.held_count,
                           chosen=gcp.config.reg)
        timings["reg_search_s"] = time.time() - t0
        self.say("λ search: " + ", ".join(f"{g:g} → {v:.4f}"
                                          for g, v in zip(grid, self.search["losses"]))
                 + f" (held-out debias loss); chose λ = {gcp.config.reg:g}")
        timings["step1_s"] = records[-1].time_s + records[0].time_s
        self._add_rows(records)
        self.save("step1", 1, None)
        self.done = 1

    def step(self, t: int) -> None:
        """Step ``t`` (from inside it, resuming), with checkpoints in its phases and at its
        end."""
        run, timings = self.run, self.timings
        t0 = time.time() - (timings.get(f"step{t}_s", 0.0) if self.step_state else 0.0)

        def on_progress(state: dict) -> None:
            timings[f"step{t}_s"] = time.time() - t0
            if state["done"] == 0 or state["done"] % run.checkpoint_every == 0:
                self.save(f"step{t}-{state['phase']}-{state['done']}", t - 1, state)
            if state["done"]:
                failpoint(state["phase"])
        records = self.gcp.run_step(t, self.stream, state=self.step_state,
                                    on_progress=on_progress)
        self.step_state = None
        timings[f"step{t}_s"] = time.time() - t0
        self._add_rows(records)
        self.save(f"step{t}", t, None)
        ran = [r for r in records if np.isfinite(r.loss)]  # slimming has no debias phase
        loss = f"{ran[-1].phase} loss {ran[-1].loss:.4f}" if ran else "no training"
        self.say(f"step {t}/{run.steps}: cost {records[-1].achieved:.4f} of the unpruned "
                 f"(target {records[-1].target:.4f}); {loss}, "
                 f"{records[0].zeroed_channels} channels zeroed by the regulariser")

    def _add_rows(self, records) -> None:
        """``records``' rows added to the run's, and ``steps.csv`` written."""
        import dataclasses
        for record in records:
            self.rows.append(dataclasses.asdict(record))
        write_steps(os.path.join(self.run.out, STEPS_FILE), self.rows)

    def result(self) -> tuple:
        """GCP's notes logged; the selection, the masked network, its parameters for surgery,
        the notes and the report's GCP fields."""
        import mxnet as mx
        from .wrapper import REGULARIZE
        gcp = self.gcp
        for note in gcp.notes:
            self.say(note)
        info = {"reg": gcp.config.reg, "reg_search": self.search,
                "zeros_pruned": gcp.zeros_pruned, "stream_score": self.run.stream_score}
        mx.nd.waitall()  # static_alloc: read the parameters only once they are written
        return (gcp.selection(), self.wrapper.block(REGULARIZE), self.wrapper.folded_params(),
                gcp.notes, info)


def method_selection(method: str, graph: ChannelGraph, params, cost, target: float,
                     round_to: int = 8, min_width: int = 8, seed: int = 0, net=None,
                     train_batches=None, ctx=None) -> Selection:
    """The selection of a method that trains nothing, at ``target``: from the weights, or (a
    method that needs data) reading the batches ``train_batches()`` gives."""
    from .methods import get
    chosen = get(method)
    options = {"round_to": round_to, "min_width": min_width}
    if chosen.needs == "data":
        options.update(net=net, batches=train_batches(), ctx=ctx)
    if chosen.seeded:
        options["seed"] = seed
    return chosen.select(graph, params, cost, target, **options)


def _trained(method: str) -> bool:
    """Whether ``method`` trains the network while pruning it (GCP's schedule)."""
    from .methods import get
    return get(method).needs == "training"


def _dataset(run: DataRun, train: bool):
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
