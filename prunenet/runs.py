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
           "environment", "DataRun", "data_run", "contexts", "load_pruned"]


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
    import dataclasses
    import shutil
    from .outputs import check_replace, check_target, exclusive, remove_leftovers
    from . import data as datasets
    from .checkpoint import finetune_position, load_checkpoint, save_finetune_checkpoint
    from .devices import check_training_dtype
    from .replicas import cast
    from .files import write_json
    from .methods.gcp import GCPConfig, check_reg
    from .models import load_network
    from .tied import check_rule as check_rule_name
    from .train import BatchStream, FinetuneConfig, finetune

    out = check_target(run.out, "--resume" if resume else "--out")
    if resume:
        run = saved_run(out)
        if progress is not None:
            run.progress = progress
    else:
        from .methods import get
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
    if run.kvstore not in LOCAL_KVSTORES:
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
    workers = workers or Workers(run.kvstore)
    out = workers.output_folder(out)
    run = dataclasses.replace(run, out=out)
    failure = None
    try:  # what one worker finds wrong here (its GPUs, files, output folder) stops them all
        ctx = contexts(run.gpus)
        check_training_dtype(run.dtype, ctx)
        train, val = _dataset(run, train=True), _dataset(run, train=False)
        classes = run.classes or train.classes
        if classes != train.classes:
            raise PrunenetError(f"--classes {run.classes} does not match the {train.classes} "
                                f"classes of dataset {run.dataset}")
        batch = run.images_per_batch(len(ctx))
        if train.num_batches(batch, drop_last=True, parts=workers.count) < 1:
            raise PrunenetError(f"{len(train)} training images make no full batch of "
                                f"{batch} for each of {workers.count} worker(s); use a "
                                f"smaller --batch-size or more data")
        channels, size = train.image_shape[0], train.image_shape[-1]
        if run.input_size and run.input_size != size:
            raise PrunenetError(f"--input-size {run.input_size} differs from the dataset's "
                                f"{size}x{size} images")
        held.enter_context(exclusive(out, "--resume" if resume else "--out"))
        if not resume:
            check_replace(out, overwrite, hint=f", or continue it with --resume {out}")
        net, net_name, shape = load_network(run.model or None, run.symbol, classes, run.params,
                                            run.seed, ctx, size, channels)
        net = cast(net, run.dtype)  # --dtype float16 trains in float16
    except Exception as err:  # noqa: BLE001 (raised again below, on this worker)
        failure = err
    workers.agree(failure)
    workers.broadcast(net.collect_params())
    transfer = getattr(net, "prunenet_transfer", None)
    graph = trace(net, shape)
    cost = objective_cost(graph, run.objective, net_name, run.round_to, run.gpus,
                          run.latency_table, run.latency_batch_size, run.dtype)
    check_reachable(graph, cost, run.target, run.round_to, run.min_width)
    if not resume:
        check_replace(out, overwrite)  # again, under the lock: a folder made meanwhile is kept
        if os.path.exists(out):
            shutil.rmtree(out)
        os.makedirs(out)
        write_json(os.path.join(out, RUN_FILE), dataclasses.asdict(run))
    remove_leftovers(out)  # a killed run's temporary files
    remove_leftovers(os.path.join(out, CHECKPOINT_DIR))
    say = _Log(os.path.join(out, LOG_FILE), log)
    before = count(graph)
    ckpt_dir = os.path.join(out, CHECKPOINT_DIR)
    ckpt = load_checkpoint(ckpt_dir) if resume else None
    if ckpt is not None:
        ckpt["arrays"] = renamed(ckpt["arrays"], ckpt.get("net_prefix"), net.prefix)
    timings: Dict[str, float] = dict(ckpt.get("timings", {})) if ckpt else {}
    rows: List[dict] = list(ckpt.get("rows", [])) if ckpt else []

    def batches(dataset, epoch, start, shuffle, on=None):
        return dataset.batches(batch, shuffle=shuffle, seed=run.seed, epoch=epoch,
                               start=start, drop_last=shuffle, ctx=on)

    def shares(dataset, epoch, start):
        """This worker's share of each training batch (the whole batch in one process)."""
        return dataset.batches(batch, shuffle=True, seed=run.seed, epoch=epoch,
                               start=start, drop_last=True, part=workers.rank,
                               parts=workers.count, ctx=ctx)  # split onto the devices

    def val_top1(block) -> tuple:
        return datasets.accuracy(block, batches(val, 0, 0, False, ctx), ctx)

    if ckpt is None:
        t0 = time.time()
        top1_before, top5_before = val_top1(net)
        timings["eval_before_s"] = time.time() - t0
        if run.params is None:
            say(RANDOM_WEIGHTS)
        if transfer:
            say(transfer_line(transfer))
        say(f"{net_name}: top-1 {top1_before:.4f} before pruning; "
            f"{before['macs'] / 1e6:.1f}M MACs, {before['params'] / 1e6:.3f}M params")
    else:
        top1_before, top5_before = ckpt["top1_before"], ckpt["top5_before"]
    t0 = time.time()
    stage = ckpt.get("stage", "gcp") if ckpt else "gcp"
    if stage == "finetune":  # resuming inside or after fine-tuning: rebuild its network
        from .select import Selection
        arrays = ckpt["arrays"]
        keep = [arrays[f"keep:{g.index}"] > 0.5 for g in graph.groups]
        s_ = ckpt["selection"]
        selection = Selection(keep, s_["cost"], s_["base_cost"], s_["largest_block"],
                              s_["blocks_removed"])
        pruned = prune_network(net, graph, keep, run.model or None, classes, ctx=ctx)
        for name, param in by_original_names(pruned).items():
            param.set_data(arrays["net:" + name])
        top1_selected, diff = ckpt["top1_selected"], ckpt["surgery_max_abs_diff"]
        notes, latency = ckpt["notes"], ckpt["latency"]
        gcp_info = ckpt.get("gcp_info", {})
        say(f"resuming fine-tuning after batch {ckpt['finetune']['done']}")
    else:
        if _trained(run.method):
            selection, masked, params, notes, gcp_info = _gcp_steps(
                run, net, graph, cost, ctx, train, ckpt, rows, timings, say, shares,
                progress={"top1_before": top1_before, "top5_before": top5_before},
                workers=workers)
            latency = latency_report(cost, selection.keep, run.target)
        else:
            params = network_params(net)
            selection, latency = select_with(
                lambda a: method_selection(run.method, graph, params, cost, a, run.round_to,
                                           run.min_width, run.seed, net,
                                           lambda: batches(train, 0, 0, True), ctx[0]),
                cost, run.target)
            selection = workers.rank0_selection(selection, cost)
            zero_removed(graph, net, selection.keep)
            masked, notes, gcp_info = net, [], {}
            timings["select_s"] = time.time() - t0
        t0 = time.time()
        top1_selected, _ = val_top1(masked)
        pruned = prune_network(net, graph, selection.keep, run.model or None, classes, params=params,
                               ctx=ctx)
        x = probe(shape, run.seed, ctx[0]).astype(run.dtype)
        masked_out = masked(x).asnumpy().astype(np.float32)
        diff = float(np.abs(pruned.net(x).asnumpy() - masked_out).max())
        check_surgery(diff, float(np.abs(masked_out).max()), run.dtype)
        timings["surgery_s"] = time.time() - t0
        rows.append({"step": run.steps if _trained(run.method) else 0,
                     "phase": "surgery",
                     "target": run.target, "achieved": selection.achieved, "loss": "",
                     "top1": top1_selected, "zeroed_channels": "", "lr": "",
                     "time_s": timings["surgery_s"]})
        say(f"after selection: top-1 {top1_selected:.4f}; cost {selection.achieved:.4f} of the "
            f"unpruned (target {run.target})")

    def save_finetune(trainer, done: int, sums: Optional[dict], elapsed: float) -> None:
        arrays = {"net:" + name: value
                  for name, value in host_copy(by_original_names(pruned)).items()}
        arrays.update({f"keep:{g.index}": k.astype(np.float32)
                       for g, k in zip(graph.groups, selection.keep)})
        chosen = {"cost": selection.cost, "base_cost": selection.base_cost,
                  "largest_block": selection.largest_block,
                  "blocks_removed": selection.blocks_removed}
        save_finetune_checkpoint(ckpt_dir, f"finetune-{done}", arrays, trainer, stream, done,
                                 sums, elapsed, stage="finetune", step=run.steps,
                                 selection=chosen, top1_before=top1_before,
                                 top5_before=top5_before, top1_selected=top1_selected,
                                 surgery_max_abs_diff=diff, notes=notes, latency=latency,
                                 gcp_info=gcp_info, rows=rows, timings=timings,
                                 net_prefix=net.prefix)
        failpoint("checkpointed-surgery" if done == 0 else "checkpointed-finetune")

    teacher = None
    if run.teacher:
        teacher = load_network(run.teacher, None, classes, run.teacher_params, run.seed, ctx,
                               size, channels)[0]
    elif run.distill:
        teacher = load_network(run.model or None, run.symbol, classes, run.params, run.seed,
                               ctx, size, channels)[0]
    if teacher is not None:
        cast(teacher, run.dtype)
    lr_factor = run.lr_factor(len(ctx), workers.count)
    ft = FinetuneConfig(epochs=run.finetune_epochs, lr=run.finetune_lr * lr_factor,
                        momentum=run.momentum, wd=run.wd, warmup_epochs=run.warmup_epochs,
                        label_smoothing=run.label_smoothing, lr_mode=run.lr_mode,
                        hybridize=run.mode == "hybrid")
    stream = BatchStream(lambda e, s: shares(train, 1000 + e, s))
    if stage == "finetune":
        state = finetune_position(ckpt, stream)
    else:
        state = {"done": 0, "sums": None, "elapsed": 0.0, "resume": None}
        save_finetune(None, 0, None, 0.0)  # the surgery is not repeated after a kill
    t0 = time.time() - state["elapsed"]
    total = stream.count(run.finetune_epochs) if run.finetune_epochs > 0 else 0
    if state["done"] < total:
        def on_batch(trainer, done: int, sums: dict) -> None:
            if done % run.checkpoint_every == 0 or done == total:
                save_finetune(trainer, done, sums, time.time() - t0)
            failpoint("finetune")
        result = finetune(pruned.net, stream, ft, ctx, teacher=teacher, progress=run.progress,
                          resume=state["resume"], on_batch=on_batch, workers=workers,
                          sync_every=run.sync_every)
        loss = result["loss"]
    else:
        sums = state["sums"]
        loss = sums["loss"] / max(sums["n"], 1) if sums else float("nan")
    timings["finetune_s"] = time.time() - t0
    pruned.params = host_copy(by_original_names(pruned))
    top1_after, top5_after = val_top1(pruned.net)
    rows.append({"step": run.steps, "phase": "finetune", "target": run.target,
                 "achieved": selection.achieved, "loss": loss, "top1": top1_after,
                 "zeroed_channels": "", "lr": ft.lr, "time_s": timings["finetune_s"]})
    write_steps(os.path.join(out, STEPS_FILE), rows)
    speed = {}
    if run.speed_check and workers.rank == 0:
        t0 = time.time()
        speed = {"speed_check": run_speed_check(net, pruned.net, shape, before, graph,
                                                 selection, run.gpus, run.objective,
                                                 run.latency_batch_size, ctx[0])}
        timings["speed_check_s"] = time.time() - t0
    report = base_report(net_name, run.method, run.objective, run.target, selection, graph,
                          before, timings, run.command)
    report.update({
        "top1_before": top1_before, "top5_before": top5_before,
        "top1_selected": top1_selected, "top1_after": top1_after, "top5_after": top5_after,
        "dataset": run.dataset, "input_shape": list(shape), "classes": classes,
        "surgery_max_abs_diff": diff, "notes": notes, "transfer": transfer, **gcp_info,
        "format": "gluoncv-pruned-resnet" if pruned.gluoncv else "mxnet-symbol",
        "settings": dataclasses.asdict(run), **latency, **speed,
    })
    report["files"] = save_pruned(pruned, out)
    failpoint("export")
    write_json(os.path.join(out, REPORT_FILE), report)
    say(f"done: top-1 {top1_before:.4f} -> {top1_after:.4f}; MACs {before['macs'] / 1e6:.1f}M -> "
        f"{report['macs_after'] / 1e6:.1f}M, params {before['params'] / 1e6:.3f}M -> "
        f"{report['params_after'] / 1e6:.3f}M{latency_line(report)}{speed_line(report)}; "
        f"written to {out}")
    return report


def _gcp_steps(run: DataRun, net, graph: ChannelGraph, cost, ctx, train, ckpt, rows, timings,
               say, shares, progress: dict, workers=None):
    """The GCP steps of a run, resuming from ``ckpt``, with a checkpoint after each; returns the
    selection, the masked network, its parameters for surgery and GCP's notes."""
    import dataclasses
    from .checkpoint import restore_trainer, save_checkpoint
    from .methods.gcp import GCP, REG_GRID
    from .train import BatchStream
    from .wrapper import DEBIAS, REGULARIZE, MaskedNetwork

    out = run.out
    ckpt_dir = os.path.join(out, CHECKPOINT_DIR)
    wrapper = MaskedNetwork(net, graph, ctx, stream_score=run.stream_score)
    auto = run.reg == "auto"
    settings = dict(target=run.target, steps=run.steps, reg=0.0 if auto else run.reg,
                    epochs_per_step=run.epochs_per_step, debias_epochs=run.debias_epochs,
                    lr=run.lr * run.lr_factor(len(ctx), workers.count if workers else 1),
                    momentum=run.momentum, round_to=run.round_to, min_width=run.min_width)
    from .methods import get
    config = get(run.method).config(**settings)
    gcp = GCP(wrapper, cost, config, ctx, progress=run.progress, workers=workers,
              sync_every=run.sync_every)
    if auto:  # the λ candidates are scored on training images the steps never see
        from .data import holdout, mean_loss
        held_count = min(run.search_holdout, max(1, len(train) // 10))
        train, held = holdout(train, held_count, run.seed)
        held_batches = held.batches(run.batch_size, shuffle=False)

        def heldout_loss() -> float:
            return mean_loss(wrapper.block(DEBIAS), held_batches, ctx)
    stream = BatchStream(lambda e, s: shares(train, e, s))
    done, step_state = 0, None
    search = ckpt.get("search") if ckpt is not None else None
    searching = auto and not (search or {}).get("done") and (ckpt is None or search is not None)
    start = gcp.snapshot(stream) if searching else None  # every candidate's starting point
    best = None
    if ckpt is not None:
        arrays = ckpt["arrays"]
        for name, value in arrays.items():
            wrapper.set(name, value)
        wrapper.keep = [arrays[wrapper.keep_name(g.index)] > 0.5 if g.prunable
                        else np.ones(g.width, dtype=bool) for g in graph.groups]
        restore_trainer(gcp.reg_trainer, ckpt["states"]["regularize"])
        restore_trainer(gcp.debias_trainer, ckpt["states"]["debias"])
        stream.epoch, stream.index = ckpt["stream"]["epoch"], ckpt["stream"]["index"]
        gcp.notes = list(ckpt.get("notes", []))
        gcp.zeros_pruned = int(ckpt.get("zeros_pruned", 0))
        done, step_state = int(ckpt["step"]), ckpt.get("step_state")
        if ckpt.get("largest_block") is not None:
            from .select import Selection
            gcp.last_selection = Selection([k.copy() for k in wrapper.keep], 0.0,
                                           gcp.base_cost, ckpt["largest_block"],
                                           ckpt["blocks_removed"])
        if searching:  # the checkpoint holds the best candidate so far
            best = gcp.snapshot(stream)
            gcp.restore(start, stream)
            tried = sum(v is not None for v in search["losses"])
            say(f"resuming the λ search after {tried} of {len(search['grid'])} candidates")
        else:
            where = f"after step {done}" if step_state is None else \
                f"in step {done + 1}, {step_state['phase']} batch {step_state['done']}"
            say(f"resuming {where} of {run.steps}")

    def save(tag: str, finished: int, state: Optional[dict]) -> None:
        last = gcp.last_selection
        save_checkpoint(ckpt_dir, tag, gcp.arrays(),
                        {"regularize": gcp.reg_trainer, "debias": gcp.debias_trainer},
                        stage="gcp", step=finished, step_state=state, stream=stream.state(),
                        notes=gcp.notes, rows=rows, search=search,
                        zeros_pruned=gcp.zeros_pruned,
                        largest_block=last.largest_block if last else None,
                        blocks_removed=last.blocks_removed if last else None,
                        timings=timings, net_prefix=net.prefix, **progress)
        failpoint("checkpointed-phase" if state is not None else "checkpointed-step")

    if searching:
        grid = list(run.reg_grid or REG_GRID)
        say(f"choosing λ from {grid} by the debias loss of step 1 on {held_count} held-out "
            f"training images")
        t0 = time.time() - timings.get("reg_search_s", 0.0)

        def on_candidate(state: dict, improved: bool) -> None:
            nonlocal search
            search = state
            timings["reg_search_s"] = time.time() - t0
            k = sum(v is not None for v in state["losses"])
            save(f"search-{k}", 1, None)  # the best candidate's state is in force
            failpoint("search")
        records = gcp.search_reg(stream, heldout_loss, grid, state=search, best=best,
                                 on_candidate=on_candidate)
        search = dict(gcp.search, done=True, holdout_images=held_count,
                      chosen=gcp.config.reg)
        timings["reg_search_s"] = time.time() - t0
        say("λ search: " + ", ".join(f"{g:g} → {v:.4f}" for g, v in zip(grid, search["losses"]))
            + f" (held-out debias loss); chose λ = {gcp.config.reg:g}")
        timings["step1_s"] = records[-1].time_s + records[0].time_s
        for record in records:
            rows.append(dataclasses.asdict(record))
        write_steps(os.path.join(out, STEPS_FILE), rows)
        save("step1", 1, None)
        done = 1
    elif search is not None:
        gcp.config.reg = search["chosen"]

    for t in range(done + 1, run.steps + 1):
        t0 = time.time() - (timings.get(f"step{t}_s", 0.0) if step_state else 0.0)

        def on_progress(state: dict) -> None:
            timings[f"step{t}_s"] = time.time() - t0
            if state["done"] == 0 or state["done"] % run.checkpoint_every == 0:
                save(f"step{t}-{state['phase']}-{state['done']}", t - 1, state)
            if state["done"]:
                failpoint(state["phase"])
        records = gcp.run_step(t, stream, state=step_state, on_progress=on_progress)
        step_state = None
        timings[f"step{t}_s"] = time.time() - t0
        for record in records:
            rows.append(dataclasses.asdict(record))
        write_steps(os.path.join(out, STEPS_FILE), rows)
        save(f"step{t}", t, None)
        ran = [r for r in records if np.isfinite(r.loss)]  # slimming has no debias phase
        loss = f"{ran[-1].phase} loss {ran[-1].loss:.4f}" if ran else "no training"
        say(f"step {t}/{run.steps}: cost {records[-1].achieved:.4f} of the unpruned "
            f"(target {records[-1].target:.4f}); {loss}, "
            f"{records[0].zeroed_channels} channels zeroed by the regulariser")
    for note in gcp.notes:
        say(note)
    info = {"reg": gcp.config.reg, "reg_search": search, "zeros_pruned": gcp.zeros_pruned,
            "stream_score": run.stream_score}
    import mxnet as mx
    mx.nd.waitall()  # static_alloc: read the parameters only once they are written
    return (gcp.selection(), wrapper.block(REGULARIZE), wrapper.folded_params(), gcp.notes,
            info)


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
