"""A transfer run (``kind: transfer``, the paper's Table 6): a pruned network of another
experiment (or the unpruned one) fine-tuned on Caltech-256 with a new 257-way classifier,
checkpointed so that a killed run continues where it was (:func:`_transfer`)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import Optional, Tuple

from ..errors import PrunenetError
from ..io.records import PARAMS_FILE, REPORT_FILE, RUN_ENTRIES, SHAPES_FILE
from .config import Experiment, Run
from .settings import decoders, _pretrained, _Settings, _smoke_epochs

__all__ = ["TRANSFER_CHECKPOINT_EVERY"]

TRANSFER_CHECKPOINT_EVERY = 500  # iterations


def _source_dir(exp: Experiment, run: Run, s: _Settings, out: str) -> Optional[str]:
    """Where a transfer run's pruned source network is: the run of experiment ``exp.source`` at
    the same target, in the results folder beside ``out``; None for the unpruned network."""
    if run.target is None:
        return None
    return os.path.join(os.path.dirname(out), exp.source + ("-smoke" if s.smoke else ""),
                        "runs", f"{exp.source}-{run.target:g}")


def _missing_source(exp: Experiment, run: Run, folder: str) -> PrunenetError:
    """The error for a transfer run whose source run is not in ``folder``."""
    return PrunenetError(f"transfer run {run.name} needs the pruned network of experiment "
                         f"{exp.source} at {run.target:g} in {folder}; run that experiment "
                         f"first (into the same results folder)")


def _source_network(exp: Experiment, run: Run, s: _Settings, out: str, ctx):
    """The network a transfer run starts from, with a new randomly initialised 257-way
    classifier, as (GluonCV shapes, GluonCV params, where it came from, its cost fraction): the
    pruned run of the source experiment at ``run.target`` (in ``<out>/../<source>/runs/``), or
    the pretrained base. A smoke run makes a data-free stand-in for a missing source run."""
    import numpy as np
    from ..io.files import load_params, read_json, read_shapes
    from ..core.graph import trace
    from ..training.models import input_shape, load_model
    from ..run.folder import prune_run
    from ..core.surgery import GLUONCV_PREFIX, full_keep, gluoncv_params, gluoncv_shapes, \
        network_params
    if run.target is None:
        net = load_model(exp.model, params=_pretrained(exp, s), seed=exp.seed, ctx=ctx,
                         input_size=s.input_size)
        graph = trace(net, input_shape(exp.model, s.input_size))
        shapes = gluoncv_shapes(graph, net.prefix, full_keep(graph))
        params = gluoncv_params(network_params(net), net.prefix)
        where, achieved = f"{exp.model} (unpruned)", 1.0
    else:
        folder = _source_dir(exp, run, s, out)
        if not os.path.exists(os.path.join(folder, SHAPES_FILE)):
            if not s.smoke:
                raise _missing_source(exp, run, folder)
            prune_run(exp.model, "uniform", exp.objective, run.target, folder,  # smoke stand-in
                      input_size=s.input_size, seed=exp.seed, log=lambda _: None,
                      overwrite=True)
        shapes, params = read_shapes(os.path.join(folder, SHAPES_FILE)), \
            load_params(os.path.join(folder, PARAMS_FILE))
        where = folder
        achieved = read_json(os.path.join(folder, REPORT_FILE), "run report").get("achieved")
    weight, bias = GLUONCV_PREFIX + "dense0_weight", GLUONCV_PREFIX + "dense0_bias"
    features = int(shapes[weight][1])
    rng = np.random.RandomState(exp.seed)
    shapes[weight], shapes[bias] = [257, features], [257]
    params[weight] = (rng.normal(0, 0.01, (257, features))).astype(np.float32)
    params[bias] = np.zeros(257, np.float32)
    return shapes, params, where, achieved


def _transfer(exp: Experiment, run: Run, run_dir: str, s: _Settings, out: str, log) -> None:
    """Fine-tune a pruned (or the unpruned) network on Caltech-256 with a new classifier,
    checkpointed every ``TRANSFER_CHECKPOINT_EVERY`` iterations (every one in smoke mode) in
    ``<run_dir>.checkpoint`` so that a killed run continues where it was."""
    from ..training import data as datasets
    from ..core.costs import count
    from ..io.devices import contexts
    from ..io.files import save_params, staged_dir, write_json
    from ..core.graph import trace
    from ..training.models import build_pruned_resnet, input_shape
    from ..core.replicas import host_copy
    from ..run.report import environment
    from ..core.surgery import GLUONCV_PREFIX
    from ..training.train import BatchStream
    if os.path.exists(os.path.join(run_dir, REPORT_FILE)):
        return
    ctx = contexts(s.gpus)
    split = os.path.join(out, "caltech-split")
    workers = 0 if s.smoke else decoders(exp)
    train = datasets.load("folder", split, train=True, input_size=s.input_size,
                          num_workers=workers)
    val = datasets.load("folder", split, train=False, input_size=s.input_size,
                        num_workers=workers)
    shapes, params, source, achieved = _source_network(exp, run, s, out, ctx[0])
    ft = exp.finetune
    batch = s.batch_size * len(ctx)  # batch_size is per device; the lr per 256 images
    epochs = _smoke_epochs(len(train), batch) if s.smoke else ft["epochs"]
    stream = BatchStream(lambda e, i: train.batches(batch, shuffle=True, seed=exp.seed,
                                                    epoch=e, start=i, drop_last=True))
    ckpt_dir = run_dir + ".checkpoint"
    recipe = {"source": source, "shapes": shapes, "epochs": epochs, "batch_size": s.batch_size,
              "devices": len(ctx), "lr_images": 256, "finetune": ft, "seed": exp.seed}
    params, resume, elapsed = _resume_point(ckpt_dir, recipe, params, stream, run, log)
    net = build_pruned_resnet(exp.model, shapes, params, ctx=ctx)
    shape = input_shape(exp.model, s.input_size)
    counted = count(trace(net, shape))
    t0 = time.time() - elapsed
    result = _checkpointed_finetune(net, stream, exp, s, ctx, epochs, batch, resume, ckpt_dir,
                                    recipe, t0)
    top1, top5 = datasets.accuracy(net, val.batches(batch), ctx)
    trained = {GLUONCV_PREFIX + name[len(net.prefix):]: value
               for name, value in host_copy(net).items()}
    report = {"model": exp.model, "method": exp.method if run.target is not None else "unpruned",
              "objective": exp.objective, "target": run.target, "achieved": achieved,
              "macs_after": counted["macs"], "params_after": counted["params"],
              "top1_after": top1, "top5_after": top5, "dataset": "caltech256",
              "input_shape": list(shape), "classes": 257, "source": source,
              "format": "gluoncv-pruned-resnet", "files": [SHAPES_FILE, PARAMS_FILE],
              "finetune_loss": result.get("loss"), "timings": {"finetune_s": time.time() - t0},
              "settings": {"epochs": epochs, "lr": ft["lr"], "batch_size": s.batch_size,
                           "train_images": len(train), "val_images": len(val)},
              "environment": environment(), "command": sys.argv}
    with staged_dir(run_dir, overwrite=True, own=RUN_ENTRIES) as stage:
        write_json(os.path.join(stage, SHAPES_FILE), shapes)
        save_params(os.path.join(stage, PARAMS_FILE), trained)
        write_json(os.path.join(stage, REPORT_FILE), report)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    log(f"{run.name}: top-1 {top1:.4f}, top-5 {top5 if top5 is None else round(top5, 4)} on "
        f"{len(val)} Caltech images after fine-tuning {source}")


def _resume_point(ckpt_dir: str, recipe: dict, params: dict, stream, run: Run,
                  log) -> Tuple[dict, Optional[dict], float]:
    """Where the fine-tuning starts, as (GluonCV params, the position to resume at or None, the
    seconds spent so far): the checkpoint in ``ckpt_dir`` when it was made with ``recipe`` (one
    made with other settings is removed), else ``params`` from the beginning."""
    from ..io.checkpoint import finetune_position, load_checkpoint
    from ..core.surgery import GLUONCV_PREFIX
    ckpt = load_checkpoint(ckpt_dir)
    if ckpt is not None and ckpt.get("recipe") != json.loads(json.dumps(recipe)):
        log(f"{run.name}: its checkpoint was made with other settings; starting afresh")
        shutil.rmtree(ckpt_dir)
        ckpt = None
    if ckpt is None:
        return params, None, 0.0
    # the network as checkpointed (GluonCV names), and where it was
    params = {GLUONCV_PREFIX + name: value for name, value in ckpt["arrays"].items()}
    state = finetune_position(ckpt, stream)
    log(f"{run.name}: resuming the fine-tuning after iteration {state['done']}")
    return params, state["resume"], state["elapsed"]


def _checkpointed_finetune(net, stream, exp: Experiment, s: _Settings, ctx, epochs: float,
                           batch: int, resume: Optional[dict], ckpt_dir: str, recipe: dict,
                           t0: float) -> dict:
    """Fine-tune ``net`` with ``exp``'s recipe (the lr scaled to ``batch`` images), saving a
    checkpoint every ``TRANSFER_CHECKPOINT_EVERY`` iterations (every one in smoke mode) and
    after the last; returns :func:`prunenet.training.train.finetune`'s result."""
    from ..io.checkpoint import save_finetune_checkpoint
    from ..failpoints import failpoint
    from ..core.replicas import host_copy
    from ..training.train import FinetuneConfig, finetune
    ft = exp.finetune
    params_now = {name[len(net.prefix):]: p for name, p in net.collect_params().items()}
    every = 1 if s.smoke else TRANSFER_CHECKPOINT_EVERY
    config = FinetuneConfig(epochs=epochs, lr=ft["lr"] * batch / 256,
                            warmup_epochs=ft["warmup_epochs"],
                            label_smoothing=ft["label_smoothing"])
    total = stream.count(epochs)

    def on_batch(trainer, done: int, sums: dict) -> None:
        if done % every == 0 or done == total:
            save_finetune_checkpoint(ckpt_dir, f"transfer-{done}", host_copy(params_now), trainer,
                                     stream, done, sums, time.time() - t0, recipe=recipe)
        failpoint("finetune")
    return finetune(net, stream, config, ctx, progress=not s.smoke, resume=resume,
                    on_batch=on_batch)
