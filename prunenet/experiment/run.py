"""Running an experiment (:func:`run_experiment`): every run that is not finished is pruned,
fine-tuned and evaluated (or, for a transfer, fine-tuned on Caltech-256), benchmarked next to
the unpruned network, published to the experiment's zoo and written as a row of
``OUT/results.csv``; what would fail later is refused first."""
from __future__ import annotations

import os
import sys
import time
from typing import List, Optional

from ..training.distributed import LOCAL_KVSTORES
from ..errors import PrunenetError
from ..io.records import REPORT_FILE, RUN_FILE, SHAPES_FILE, has_result, put_result, read_results
from ..training.caltech import caltech_split
from .config import Experiment, Run, _selected
from .settings import decoders, _pretrained, _settings, _Settings, _smoke_epochs
from .transfer import _missing_source, _source_dir, _transfer

__all__ = ["run_experiment"]


def _preflight(exp: Experiment, s: _Settings, out: str, runs: List[Run]) -> None:
    """Refuse what would fail later, before any training: a distributed transfer or latency
    experiment, missing or mismatched data, a transfer's missing source runs."""
    from ..training import data as datasets
    if exp.kvstore not in LOCAL_KVSTORES and (exp.kind == "transfer"
                                              or exp.objective == "latency"):
        what = "a transfer" if exp.kind == "transfer" else "the latency objective"
        raise PrunenetError(f"experiment config {exp.path}: key kvstore {exp.kvstore!r}: "
                            f"{what} runs on one machine; use device or local")
    from ..io.devices import contexts
    contexts(s.gpus)
    if exp.kind == "transfer":
        for run in runs:
            folder = _source_dir(exp, run, s, out)
            if folder and not s.smoke and not os.path.exists(os.path.join(folder, SHAPES_FILE)):
                raise _missing_source(exp, run, folder)
        caltech_split(s.data_dir, os.path.join(out, "caltech-split"),
                      exp.data["train_per_class"], exp.seed)
        return
    for train in (True, False):
        datasets.load("imagenet", s.data_dir, train=train, input_size=s.input_size)


def run_experiment(exp: Experiment, out: Optional[str] = None, smoke: bool = False,
                   only: Optional[str] = None, data_dir: Optional[str] = None,
                   log=print) -> List[dict]:
    """Run every run of ``exp`` that is not finished into ``out`` (default
    ``experiments/results/<name>``, with ``-smoke`` in smoke mode); return the results rows."""
    import contextlib
    from ..io.outputs import check_target
    out = check_target(out or os.path.join("experiments", "results",
                                           exp.name + ("-smoke" if smoke else "")))
    _check_results_folder(out)
    with contextlib.ExitStack() as held:
        return _run_experiment(exp, out, smoke, only, data_dir, log, held)


def _check_results_folder(out: str) -> None:
    """Refuse a folder that is neither new, empty, nor an experiment's results folder."""
    from ..io.outputs import MARKER, kind_of
    if not (os.path.isdir(out) and os.listdir(out)):
        return
    kind = kind_of(out)
    if kind not in (None, "", "experiment"):
        raise PrunenetError(f"--out {out} is a prunenet {kind} folder, not an experiment's "
                            f"results; give a new folder, or the results folder of this "
                            f"experiment to continue it")
    if kind is None and not any(os.path.exists(os.path.join(out, n))
                                for n in ("results.csv", "runs")):
        raise PrunenetError(f"--out {out} holds files that are not an experiment's results "
                            f"(no results.csv, runs/ or {MARKER}); give a new folder, or the "
                            f"results folder of this experiment to continue it")


def _run_experiment(exp: Experiment, out: str, smoke: bool, only: Optional[str],
                    data_dir: Optional[str], log, held) -> List[dict]:
    """:func:`run_experiment` in a checked results folder ``out``; ``held`` keeps its lock."""
    from ..io.outputs import exclusive, mark
    runs = _selected(exp, only)
    s = _settings(exp, out, smoke, data_dir)
    _preflight(exp, s, out, runs)
    from ..training.distributed import Workers
    workers = Workers(exp.kvstore)  # rank N > 0 only trains; rank 0 benchmarks and publishes
    # one experiment (one worker of it) writes a results folder at a time
    held.enter_context(exclusive(workers.output_folder(out)))
    os.makedirs(out, exist_ok=True)
    mark(out, "experiment")
    results = os.path.join(out, "results.csv")
    rows = []
    for run in runs:
        run_dir = os.path.join(out, "runs", run.name)
        finished = os.path.exists(os.path.join(run_dir, REPORT_FILE)) and \
            has_result(results, run_dir)
        if _rank0_says(workers, finished, "finished"):  # all workers skip it, or none
            log(f"{run.name}: finished already ({run_dir})")
            continue
        t0 = time.time()
        if exp.kind == "transfer":
            _transfer(exp, run, run_dir, s, out, log)
        else:
            _prune(exp, run, run_dir, s, log, workers)
        if workers.rank > 0:
            continue
        rows.append(_finish(exp, run, run_dir, s, out, results, log))
        log(f"{run.name}: done in {time.time() - t0:.0f} s")
    return rows


def _rank0_says(workers, yes: bool, what: str) -> bool:
    """Rank 0's answer on every worker (each worker sees its own files)."""
    import numpy as np
    return bool(workers.from_rank0([np.array([float(yes)])], kind=what)[0][0] > 0.5)


def _prune(exp: Experiment, run: Run, run_dir: str, s: _Settings, log, workers) -> None:
    """Prune, fine-tune and evaluate one target into ``run_dir`` (resumed if interrupted)."""
    from ..run.folder import data_run
    from ..run.settings import DataRun
    if _rank0_says(workers, os.path.exists(os.path.join(run_dir, REPORT_FILE)), "pruned"):
        return
    if os.path.exists(os.path.join(run_dir, RUN_FILE)) and not workers.distributed:
        log(f"{run.name}: resuming {run_dir}")
        data_run(DataRun(model="", out=run_dir, target=0.5), resume=True, log=log)
        return
    ft = exp.finetune
    epochs = dict(epochs_per_step=exp.epochs_per_step, debias_epochs=exp.debias_epochs,
                  finetune_epochs=ft["epochs"])
    if s.smoke:
        from ..training import data as datasets
        n = len(datasets.load("imagenet", s.data_dir, train=True, input_size=s.input_size))
        e = _smoke_epochs(n, s.batch_size)
        epochs = dict(epochs_per_step=e, debias_epochs=e, finetune_epochs=e)
    data_run(DataRun.from_settings(
        exp, s, out=run_dir, target=run.target, dataset="imagenet", params=_pretrained(exp, s),
        shrink_grid=[0.3] if s.smoke and exp.reg == "auto" else None,
        finetune_lr=ft["lr"], warmup_epochs=ft["warmup_epochs"],
        label_smoothing=ft["label_smoothing"], distill=ft["distill"],
        latency_table=os.path.join(run_dir + ".latency.json") if s.smoke else None,
        progress=not s.smoke, num_data_workers=decoders(exp),
        command=[os.path.basename(sys.argv[0])] + sys.argv[1:], **epochs),
        overwrite=True, log=log, workers=workers)


def _finish(exp: Experiment, run: Run, run_dir: str, s: _Settings, out: str, results: str,
            log) -> dict:
    """Benchmark the finished run next to the unpruned network, publish it to ``out/zoo`` and
    put its row into the results CSV."""
    from ..zoo import store as zoo
    from ..latency.throughput import device, device_name, throughput
    from ..io.files import read_json, write_json
    from ..training.models import input_shape, load_model
    from ..zoo.pruned import load_pruned
    ctx = device((s.gpus or "").split(",")[0])
    report_path = os.path.join(run_dir, REPORT_FILE)
    report = read_json(report_path, "run report")
    shape = tuple(input_shape(exp.model, s.input_size)[1:])
    if not report.get("throughput_img_s"):
        nets = {"pruned": load_pruned(run_dir, ctx=ctx),
                "unpruned": load_model(exp.model, classes=report.get("classes"),
                                       input_size=s.input_size, ctx=ctx)}
        speed = throughput(nets, shape, batch_size=s.bench_batch, repeats=s.bench_repeats,
                           ctx=ctx, warmup=1 if s.smoke else 3)
        report.update(throughput_img_s=speed["pruned"]["throughput_img_s"],
                      throughput_img_s_unpruned=speed["unpruned"]["throughput_img_s"],
                      batch_size=s.bench_batch, device=device_name(ctx))
        write_json(report_path, report)
    zoo.publish(run_dir, os.path.join(out, "zoo"), run.name, overwrite=True, bench=False,
                ctx=ctx, log=log)
    dataset = report.get("dataset") or "imagenet"
    if exp.kind == "prune" and not any(r["method"] == "unpruned" and r["model"] == exp.model
                                       for r in read_results(results)):
        put_result(results, {"model": exp.model, "method": "unpruned", "objective": "",
                           "target": 1.0, "achieved": 1.0, "macs": report["macs_before"],
                           "params": report["params_before"], "top1": report["top1_before"],
                           "top5": report["top5_before"],
                           "throughput_img_s": report["throughput_img_s_unpruned"],
                           "batch_size": s.bench_batch, "device": report["device"],
                           "dataset": dataset, "seed": exp.seed,
                           "run_dir": run_dir})  # the run whose evaluation it is
    row = {"model": exp.model, "method": report["method"], "objective": report["objective"],
           "target": report.get("target") if report.get("target") is not None else 1.0,
           "achieved": report.get("achieved"), "macs": report["macs_after"],
           "params": report["params_after"], "top1": report.get("top1_after"),
           "top5": report.get("top5_after"), "throughput_img_s": report["throughput_img_s"],
           "batch_size": report["batch_size"], "device": report["device"], "dataset": dataset,
           "seed": exp.seed, "run_dir": run_dir}
    put_result(results, row)
    return row
