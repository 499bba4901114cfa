"""A pruning run: model in, pruned GluonCV pair and ``report.json`` out.

The run folder holds ``report.json``, ``shapes.json`` + ``pruned.params`` (GluonCV's pruned-ResNet
pair, for the ResNetV1b family) or ``pruned-symbol.json`` + ``pruned-0000.params`` (any other
network, loadable with ``gluon.SymbolBlock.imports``). It appears under its final name only when
complete.
"""
from __future__ import annotations

import os
import time
from types import SimpleNamespace
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..latency.throughput import speed_line
from ..core.costs import cost_model
from ..io.devices import contexts
from ..training.distributed import LOCAL_KVSTORES, Workers
from ..errors import PrunenetError
from ..failpoints import failpoint
from .gcp_steps import gcp_steps
from ..core.graph import ChannelGraph
from ..zoo.pruned import by_original_names, renamed, save_pruned
from ..io.records import (CHECKPOINT_DIR, LOG_FILE, REPORT_FILE, RUN_ENTRIES, RUN_FILE,
                          STEPS_FILE, write_steps)
from ..core.replicas import host_copy
from .settings import STARTED_FILE, DataRun, run_dataset, saved_run
from .report import RANDOM_WEIGHTS, kept_whole_line, latency_line, run_speed_check, transfer_line
from ..core.select import Selection, check_cost_target, check_reachable
from .pipeline import Pipeline, open_latency_table
from ..core.surgery import network_params
from ..training.train import RECALIBRATE_BATCHES, recalibrated


__all__ = ["prune_run", "data_run", "auto_round_to"]


def auto_round_to(graph: ChannelGraph, gpus: str, latency_table: Optional[str],
                  latency_batch_size: int, dtype: str, runtime: str, log=print,
                  fits=lambda block: True) -> Tuple[int, dict]:
    """``--round-to auto``: of the block sizes that can reach the target (``fits``), the one
    that saves the most measured time per channel in ``runtime``
    (:mod:`prunenet.latency.blocks`), logged, and the report's field with the measurement."""
    from ..latency.blocks import block_gains, blocks_line, choose_block
    table = open_latency_table(latency_table, gpus, latency_batch_size, dtype, runtime)
    gains = block_gains(table, graph)
    feasible = {b: g for b, g in gains.items() if fits(b)}
    if not feasible:
        raise PrunenetError(f"--round-to auto: no block size of {', '.join(map(str, gains))} "
                            f"can reach the target; raise --target or lower --min-width")
    chosen = choose_block(feasible)
    log(blocks_line(gains, chosen, table.runtime) + "".join(
        f" ({b} cannot reach the target)" for b in gains if b not in feasible))
    return chosen, {"round_to_auto": {"runtime": table.runtime, "chosen": chosen,
                                      "ms_saved_per_channel": {str(b): g
                                                               for b, g in gains.items()}}}


def prune_run(model: str, method: str, objective: str, target: float, out: str,
              params: Optional[str] = None, input_size: Optional[int] = None,
              classes: Optional[int] = None, round_to: int = 8, min_width: int = 8,
              seed: int = 0, overwrite: bool = False, command: Optional[List[str]] = None,
              log=print, latency_table: Optional[str] = None, latency_batch_size: int = 64,
              dtype: str = "float32", gpus: str = "", symbol: Optional[str] = None,
              speed_check: bool = True, runtime: str = "mxnet") -> dict:
    """Prune ``model`` (or the exported ``symbol`` with its ``params``) with a data-free
    ``method`` to ``target`` × its cost; write the run folder ``out`` (see the module doc) and
    return the report. The ``latency`` objective measures on ``gpus``' first device (the CPU if
    none), at ``latency_batch_size`` and ``dtype``, in ``runtime`` (mxnet or onnxruntime);
    unless ``speed_check`` is off, the pruned network's speed-up is measured there too."""
    settings = SimpleNamespace(**locals())  # _prune_run's arguments, by name
    from ..methods import DATA_FREE

    if method not in DATA_FREE:
        raise PrunenetError(f"unknown method {method!r}: choose one of {', '.join(DATA_FREE)}")
    check_cost_target(target, "--target")
    if round_to != "auto" and round_to < 1 or min_width < 1:
        raise PrunenetError(f"--round-to {round_to} and --min-width {min_width} must be at least 1")
    from ..io.outputs import check_replace, check_target, exclusive
    out_path = check_target(out)
    check_replace(out_path, overwrite, own=RUN_ENTRIES)
    _check_input_outside(out_path, overwrite, params=params, symbol=symbol)
    with exclusive(out_path):  # held to the end: a second writer of --out stops at once
        return _prune_run(settings)


def _prune_run(o) -> dict:
    """:func:`prune_run` on its arguments ``o`` (by name), its folder locked: the network loaded,
    :class:`prunenet.run.pipeline.Pipeline` run, the speed checked, the folder written."""
    from ..io.files import staged_dir, write_json
    from ..training.models import load_network
    timings, log = {}, o.log
    t0 = time.time()
    net, name, shape = load_network(o.model or None, o.symbol, o.classes, o.params, o.seed,
                                    input_size=o.input_size)
    transfer = getattr(net, "prunenet_transfer", None)
    if o.params is None:
        log(RANDOM_WEIGHTS)
    if transfer:
        log(transfer_line(transfer))
    pipe = Pipeline(net, o.method, o.target, seed=o.seed)
    graph = pipe.trace(shape)
    round_to, blocks = o.round_to, {}
    if round_to == "auto":
        def fits(block: int) -> bool:  # latency: judged by the MACs, not measured five times
            proxy = o.objective if o.objective in ("flops", "params") else "flops"
            try:
                check_reachable(graph, cost_model(graph, proxy), o.target, block, o.min_width)
            except PrunenetError:
                return False
            return True
        round_to, blocks = auto_round_to(graph, o.gpus, o.latency_table, o.latency_batch_size,
                                         o.dtype, o.runtime, log, fits)
    if kept_whole_line(graph):
        log(kept_whole_line(graph))
    pipe.price(o.objective, name, round_to, o.min_width, o.gpus, o.latency_table,
               o.latency_batch_size, o.runtime, dtype=o.dtype)  # the latency table's dtype
    before = pipe.before
    timings["load_and_trace_s"] = time.time() - t0

    t0 = time.time()
    selection = pipe.fit().select()
    timings["select_s"] = time.time() - t0

    t0 = time.time()
    pruned = pipe.cut(o.model or None, o.classes)
    pipe.check()
    timings["surgery_s"] = time.time() - t0
    speed = {}
    if o.speed_check:
        t0 = time.time()
        speed = {"speed_check": run_speed_check(net, pruned.net, shape, before, graph,
                                                 selection, o.gpus, o.objective,
                                                 o.latency_batch_size, runtime=o.runtime)}
        timings["speed_check_s"] = time.time() - t0

    report = pipe.report(name, timings, o.command, classes=o.classes, round_to=round_to,
                         min_width=o.min_width, seed=o.seed, params_file=o.params,
                         symbol_file=o.symbol, transfer=transfer, **blocks)
    report.update(speed)
    with staged_dir(o.out, overwrite=o.overwrite, own=RUN_ENTRIES) as stage:
        report["files"] = save_pruned(pruned, stage)
        write_json(os.path.join(stage, REPORT_FILE), report)
    # the latency objective's selection is always measured (select_with): lead with that
    kept = (f"{report['latency_fraction_measured']:.3f} ±{report['latency_fraction_noise']:.3f} "
            f"of the measured latency" if o.objective == "latency" else
            f"{report['achieved']:.4f} of the cost")
    log(f"{name} {o.method}/{o.objective}: kept {kept} (target {o.target}); MACs "
        f"{before['macs'] / 1e9:.3f}G -> {report['macs_after'] / 1e9:.3f}G, params "
        f"{before['params'] / 1e6:.2f}M -> {report['params_after'] / 1e6:.2f}M"
        f"{latency_line(report)}{speed_line(report)}; written to {o.out}")
    return report


# -- GCP: a data-driven run with checkpoints -------------------------------------------------------


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

    The run holds the lock of its folder (:func:`prunenet.io.outputs.exclusive`) from the check of
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
    from ..methods import get
    from ..gcp.schedule import GCPConfig, check_reg
    from ..gcp.streams import check_rule as check_rule_name
    get(run.method)  # refuses an unknown name
    check_reg(run.reg, run.reg_grid, run.shrink_grid)
    if run.search_fraction is not None and not 0 < run.search_fraction <= 1:
        raise PrunenetError(f"--search-fraction {run.search_fraction} must be in (0, 1]")
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
        from ..training import data as datasets
        return datasets.accuracy(block, self.batches(self.val, 0, 0, False, self.ctx), self.ctx)

    def _network(self, model: Optional[str], symbol: Optional[str], params: Optional[str]):
        """:func:`prunenet.training.models.load_network` on the run's devices, for its data."""
        from ..training.models import load_network
        return load_network(model, symbol, self.classes, params, self.run.seed, self.ctx,
                            self.size, self.channels)

    # -- the phases --------------------------------------------------------------------------

    def check_settings(self, run: DataRun, progress: Optional[bool]) -> None:
        """The run's settings: those saved in its folder when resuming, else ``run`` checked."""
        from ..io.outputs import check_target
        self.out = check_target(run.out, self.flag)
        if self.resume:
            run = saved_run(self.out)
            if progress is not None:
                run.progress = progress
            try:  # run.json edited by hand before the run had a copy of it to compare with
                _check_fresh(run)
            except PrunenetError as err:
                raise PrunenetError(f"--resume {self.out}: {RUN_FILE}: {err}") from None
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
        self.pipe = Pipeline(self.net, run.method, run.target, seed=run.seed, ctx=self.ctx,
                             dtype=run.dtype)
        self.graph = self.pipe.trace(self.shape)
        self.cost = self.pipe.price(run.objective, self.net_name, run.round_to, run.min_width,
                                    run.gpus, run.latency_table, run.latency_batch_size,
                                    run.runtime)

    def _load(self) -> None:
        """The devices and datasets, checked against the settings; the folder's lock; the
        network."""
        from ..io.devices import check_training_dtype
        from ..io.outputs import check_replace, exclusive
        from ..core.replicas import cast
        run = self.run
        self.ctx = contexts(run.gpus)
        check_training_dtype(run.dtype, self.ctx)
        self.train, self.val = run_dataset(run, train=True), run_dataset(run, train=False)
        self._check_data()
        if run.teacher_params:  # read before any training, not after it
            from ..io.files import load_params
            load_params(run.teacher_params)
        self.held.enter_context(exclusive(self.out, self.flag))
        if not self.resume:
            check_replace(self.out, self.overwrite, own=RUN_ENTRIES,
                          hint=f", or continue it with --resume {self.out}")
            _check_input_outside(self.out, self.overwrite, params=run.params,
                                 symbol=run.symbol, teacher_params=run.teacher_params)
        self.net, self.net_name, self.shape = self._network(run.model or None, run.symbol,
                                                            run.params)
        self.net = cast(self.net, run.dtype)  # --dtype float16 trains in float16

    def _check_data(self) -> None:
        """The classes, batch and image size of the training set, refused where they do not
        match the settings."""
        run, train = self.run, self.train
        self.classes = run.classes or train.classes
        if train.classes < 2:
            raise PrunenetError(f"the training set of dataset {run.dataset} has {train.classes} "
                                f"class: a one-class classifier has no loss to train or prune "
                                f"by; give at least two classes")
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
        from ..io.checkpoint import check_run_checkpoint, load_checkpoint
        from ..io.files import write_json
        from ..io.outputs import check_replace, mark, remove_leftovers
        out = self.out
        if not self.resume:
            # again, under the lock: a folder made meanwhile is kept
            check_replace(out, self.overwrite, own=RUN_ENTRIES)
            self.held.push(_set_aside(out))
            os.makedirs(out, exist_ok=True)
            mark(out, "run")
            write_json(os.path.join(out, RUN_FILE), dataclasses.asdict(self.run))
        else:
            self.held.push(_drop_aside(out))
        self.ckpt_dir = os.path.join(out, CHECKPOINT_DIR)
        if not self.resume:  # what --resume holds run.json to
            os.makedirs(self.ckpt_dir)
            write_json(os.path.join(self.ckpt_dir, STARTED_FILE), dataclasses.asdict(self.run))
        remove_leftovers(out)  # a killed run's temporary files
        remove_leftovers(self.ckpt_dir)
        self.say = _Log(os.path.join(out, LOG_FILE), self.log)
        self.before = self.pipe.before
        ckpt = load_checkpoint(self.ckpt_dir) if self.resume else None
        if self.resume and ckpt is None and os.path.exists(os.path.join(out, REPORT_FILE)):
            raise PrunenetError(f"--resume {out}: the run has finished ({REPORT_FILE}) and its "
                                f"{CHECKPOINT_DIR} folder is gone, so there is nothing to resume; "
                                f"its results are kept: to run it again, start a new run with "
                                f"--out")
        if ckpt is not None:
            check_run_checkpoint(self.ckpt_dir, ckpt,
                                 [f"keep:{g.index}" for g in self.graph.groups])
            made_for = {row.get("target") for row in ckpt.get("rows", [])
                        if row.get("phase") == "surgery"}
            if made_for and made_for != {self.run.target}:  # a run older than its started.json
                raise PrunenetError(f"--resume {out}: {RUN_FILE} has target {self.run.target}, "
                                    f"but its checkpoint was made for {min(made_for)}; put it "
                                    f"back, or start a new run with --out")
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
        if kept_whole_line(self.graph):
            self.say(kept_whole_line(self.graph))

    def select_and_cut(self) -> None:
        """The pruned network: selected and cut out, or rebuilt from a fine-tuning checkpoint."""
        t0 = time.time()
        self.stage = self.ckpt.get("stage", "gcp") if self.ckpt else "gcp"
        if self.stage == "finetune":  # resuming inside or after fine-tuning: rebuild its network
            self._rebuild()
        else:
            self._select(t0)
            self._cut()

    def _rebuild(self) -> None:
        """The pruned network, its selection and what was measured of it, from the fine-tuning
        checkpoint."""
        ckpt = self.ckpt
        arrays, chosen = ckpt["arrays"], ckpt["selection"]
        self.selection = Selection(self._pruned_from(arrays), chosen["cost"], chosen["base_cost"],
                                   chosen["largest_block"], chosen["blocks_removed"])
        self.top1_selected, self.diff = ckpt["top1_selected"], ckpt["surgery_max_abs_diff"]
        self.top1_recalibrated = ckpt.get("top1_recalibrated")
        self.notes, self.latency = ckpt["notes"], ckpt["latency"]
        self.gcp_info = ckpt.get("gcp_info", {})
        self.say(f"resuming fine-tuning after batch {ckpt['finetune']['done']}")

    def _pruned_from(self, arrays: Dict[str, np.ndarray]) -> list:
        """``self.pruned`` built anew from a fine-tuning checkpoint's ``arrays`` (its masks and
        weights); returns the masks. Fine-tuning always starts from a network built here, killed
        or not: with oneDNN, an inference pass (the surgery check) leaves the convolution
        weights in oneDNN's own layout, and training such arrays under MXNet's threaded engine
        is not reproducible (docs/resuming.md)."""
        keep = [arrays[f"keep:{g.index}"] > 0.5 for g in self.graph.groups]
        self.pruned = self.pipe.cut(self.run.model or None, self.classes, keep=keep,
                                    params=network_params(self.net))
        for name, param in by_original_names(self.pruned).items():
            param.set_data(arrays["net:" + name])
        return keep

    def _select(self, t0: float) -> None:
        """The selection, by GCP's steps or a method that trains nothing (timed from ``t0``)."""
        run, pipe = self.run, self.pipe
        if _trained(run.method):
            self.notes, self.gcp_info = gcp_steps(
                run, pipe, self.train, self.ckpt, self.rows, self.timings, self.say, self.shares,
                progress={"top1_before": self.top1_before, "top5_before": self.top5_before},
                workers=self.workers)
            self.selection = pipe.select()
        else:
            self.selection = pipe.fit().select(lambda: self.batches(self.train, 0, 0, True),
                                               self.workers)
            self.notes, self.gcp_info = [], {}
            self.timings["select_s"] = time.time() - t0
        self.latency = pipe.latency

    def _cut(self) -> None:
        """The selection cut out of the network and checked against the masked one; its row."""
        run, t0 = self.run, time.time()
        self.top1_selected, _ = self.val_top1(self.pipe.masked)
        self.pruned = self.pipe.cut(run.model or None, self.classes)
        self.diff = self.pipe.check()
        self.timings["surgery_s"] = time.time() - t0
        self.top1_recalibrated = self._recalibrated_top1()
        self.rows.append({"step": run.steps if _trained(run.method) else 0,
                          "phase": "surgery",
                          "target": run.target, "achieved": self.selection.achieved, "loss": "",
                          "top1": self.top1_selected, "zeroed_channels": "", "lr": "",
                          "time_s": self.timings["surgery_s"]})
        self.say(f"after selection: top-1 {self.top1_selected:.4f} "
                 f"({self.top1_recalibrated:.4f} with BatchNorm's statistics re-estimated on "
                 f"{RECALIBRATE_BATCHES} training batches); cost "
                 f"{self.selection.achieved:.4f} of the unpruned (target {run.target})")

    def _recalibrated_top1(self) -> float:
        """The pruned network's top-1 with its BatchNorm statistics re-estimated on the same
        training batches for every method (its own statistics are left as they were)."""
        from itertools import islice
        t0 = time.time()
        batches = islice(self.batches(self.train, 0, 0, True, self.ctx), RECALIBRATE_BATCHES)
        with recalibrated(self.pruned.net, batches, self.ctx):
            top1 = self.val_top1(self.pruned.net)[0]
        self.timings["recalibrate_s"] = time.time() - t0
        return top1

    def load_teacher(self) -> None:
        """The network to distil from: ``run.teacher``, the unpruned one (``distill``) or
        none."""
        from ..core.replicas import cast
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
        from ..io.checkpoint import finetune_position
        from ..training.train import BatchStream, FinetuneConfig, finetune
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
            # the surgery is not repeated after a kill; the network fine-tuned is the one a
            # resumed run builds from this checkpoint
            self._pruned_from(self.save_finetune(None, 0, None, 0.0))
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

    def save_finetune(self, trainer, done: int, sums: Optional[dict], elapsed: float) -> dict:
        """A fine-tuning checkpoint after ``done`` batches: the pruned network, its selection
        and everything the report needs of the phases before. Returns its arrays."""
        from ..io.checkpoint import save_finetune_checkpoint
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
                                 top1_recalibrated=self.top1_recalibrated,
                                 surgery_max_abs_diff=self.diff, notes=self.notes,
                                 latency=self.latency, gcp_info=self.gcp_info, rows=self.rows,
                                 timings=self.timings, net_prefix=self.net.prefix)
        failpoint("checkpointed-surgery" if done == 0 else "checkpointed-finetune")
        return arrays

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
                                                 run.latency_batch_size, self.ctx[0],
                                                 run.runtime)}
        self.timings["speed_check_s"] = time.time() - t0
        return speed

    def report(self) -> dict:
        """The speed check, then the pruned files and ``report.json`` written; the report."""
        import dataclasses
        from ..io.files import write_json
        run, before, speed = self.run, self.before, self._speed_check()
        pipe = self.pipe  # resumed in fine-tuning: what the checkpoint holds of the cut
        pipe.selection, pipe.pruned, pipe.diff, pipe.latency = \
            self.selection, self.pruned, self.diff, self.latency
        report = pipe.report(self.net_name, self.timings, run.command,
                             top1_before=self.top1_before, top5_before=self.top5_before,
                             top1_selected=self.top1_selected,
                             top1_recalibrated=self.top1_recalibrated,
                             top1_after=self.top1_after, top5_after=self.top5_after,
                             dataset=run.dataset, classes=self.classes, notes=self.notes,
                             transfer=self.transfer, **self.gcp_info,
                             settings=dataclasses.asdict(run))
        report.update(speed)
        report["files"] = save_pruned(self.pruned, self.out)
        failpoint("export")
        write_json(os.path.join(self.out, REPORT_FILE), report)
        self.say(f"done: top-1 {self.top1_before:.4f} -> {self.top1_after:.4f}; MACs "
                 f"{before['macs'] / 1e6:.1f}M -> {report['macs_after'] / 1e6:.1f}M, params "
                 f"{before['params'] / 1e6:.3f}M -> {report['params_after'] / 1e6:.3f}M"
                 f"{latency_line(report)}{speed_line(report)}; written to {self.out}")
        return report


def _check_input_outside(out: str, overwrite: bool, **inputs: Optional[str]) -> None:
    """Refuse an ``--overwrite`` of ``out`` that would replace a file the run reads (its
    ``--params``, ``--symbol``, ...): the report would name a file that no longer holds it."""
    if not (overwrite and os.path.isdir(out)):
        return
    inside = os.path.realpath(out) + os.sep
    for name, path in inputs.items():
        if path and os.path.realpath(path).startswith(inside):
            flag = "--" + name.replace("_", "-")
            raise PrunenetError(f"{flag} {path} is inside --out {out}, which --overwrite would "
                                f"replace (the report would name a file that no longer holds "
                                f"the input); write the run to another --out")


def _set_aside(out: str):
    """Move the folder ``out`` that an ``--overwrite`` replaces aside (:func:`prunenet.io.outputs
    .set_aside`), so that the new run is built in ``out`` (and ``--resume out`` continues it
    after a kill); returns the exit callback that deletes the old folder once the run is whole,
    or puts it back when the run fails or is interrupted (Ctrl-C). After a hard kill the old
    folder stays aside until the run is resumed to its end or replaced again."""
    import shutil
    from ..io.outputs import set_aside
    old = set_aside(out)
    if os.path.exists(out):
        if os.path.exists(old):  # ``out`` is a killed run that was replacing ``old``: drop it
            shutil.rmtree(out)
        else:
            os.replace(out, old)

    def done(kind, value, tb) -> bool:
        if kind is None:
            shutil.rmtree(old, ignore_errors=True)
        elif os.path.exists(old):
            shutil.rmtree(out, ignore_errors=True)
            os.replace(old, out)
        return False
    return done


def _drop_aside(out: str):
    """The exit callback of a resumed run: once it is whole, the folder an interrupted
    ``--overwrite`` set aside is deleted."""
    import shutil
    from ..io.outputs import set_aside

    def done(kind, value, tb) -> bool:
        if kind is None:
            shutil.rmtree(set_aside(out), ignore_errors=True)
        return False
    return done


def _trained(method: str) -> bool:
    """Whether ``method`` trains the network while pruning it (GCP's schedule)."""
    from ..methods import get
    return get(method).needs == "training"
