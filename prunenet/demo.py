"""``prunenet demo``: train a ResNet-18 v1b on Fashion-MNIST, prune it with GCP to half its
FLOPs, fine-tune, and compare the two. The trained base is cached, so a second run skips it."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Optional

from .errors import PrunenetError
from .options import same_as, setting
from .run.settings import DataRun


__all__ = ["DemoConfig", "FULL", "QUICK", "run_demo", "train_base"]


@dataclass
class DemoConfig:
    """What the demo trains and prunes."""

    model: str = setting("resnet18_v1b", "the GluonCV network trained and pruned")
    base_epochs: float = setting(4.0, "epochs the base network is trained")
    base_lr: float = setting(0.1, "the base training's learning rate")
    target: float = setting(0.5, "fraction of the base's FLOPs to keep")
    steps: int = same_as(DataRun, "steps")
    reg: object = same_as(DataRun, "reg")  # λ, or "auto": chosen by the held-out debias loss
    shrink_grid: Optional[tuple] = same_as(DataRun, "shrink_grid")  # None: GCP's SHRINK_GRID
    epochs_per_step: float = same_as(DataRun, "epochs_per_step")
    finetune_epochs: float = same_as(DataRun, "finetune_epochs")
    finetune_lr: float = same_as(DataRun, "finetune_lr")
    lr: float = same_as(DataRun, "lr")
    batch_size: int = same_as(DataRun, "batch_size")
    train_limit: Optional[int] = same_as(DataRun, "train_limit")
    val_limit: Optional[int] = same_as(DataRun, "val_limit")
    seed: int = same_as(DataRun, "seed")
    # Fashion-MNIST upsampled to this (None: its 28 pixels)
    input_size: Optional[int] = same_as(DataRun, "input_size")

    def base_key(self) -> str:
        """Names the cached base: what determines its weights."""
        spec = {k: getattr(self, k) for k in ("model", "base_epochs", "base_lr", "batch_size",
                                              "train_limit", "seed")}
        if self.input_size is not None:  # the keys of 28-pixel bases as they were
            spec["input_size"] = self.input_size
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.model}-fashion-mnist-{digest}"


# the demo's budget, shorter than a pruning run's defaults
FULL = DemoConfig(steps=2, epochs_per_step=0.25, finetune_epochs=1.5, finetune_lr=0.02)
# Enough iterations (128) for BatchNorm's running statistics to settle.
QUICK = replace(FULL, base_epochs=2.0, steps=1, epochs_per_step=0.5, finetune_epochs=0.5,
                train_limit=8192, val_limit=2000, shrink_grid=(0.3, 1.0))


def _cached_top1(params_file: str, meta_file: str) -> float:
    """The top-1 a cached base's ``meta_file`` records, the cache refused (delete it to train
    the base again) when that is not a fraction or ``params_file`` is not a params file."""
    from .io.files import load_params, read_json
    again = f"delete {params_file} and {meta_file} to train the base again"
    meta = read_json(meta_file, "cached base")
    top1 = meta.get("top1") if isinstance(meta, dict) else None
    if isinstance(top1, bool) or not isinstance(top1, (int, float)) or not 0 <= top1 <= 1:
        raise PrunenetError(f"cached base {meta_file} records no top-1 (a fraction in [0, 1]; "
                            f"it holds {json.dumps(top1)}); {again}")
    try:
        load_params(params_file)
    except PrunenetError as err:
        raise PrunenetError(f"the cached base network is damaged: {err}; {again}") from None
    return float(top1)


def train_base(config: DemoConfig, data_dir: Optional[str], cache_dir: str, ctx, log=print,
               progress: bool = True) -> tuple:
    """The trained base network's ``save_parameters`` file and its test top-1; trained and
    cached under ``cache_dir`` unless already there."""
    import mxnet as mx
    from .training import data as datasets
    from .io.files import atomic_path, write_json
    from .training.models import load_model
    from .training.train import BatchStream, FinetuneConfig, finetune

    key = config.base_key()
    params_file = os.path.join(cache_dir, key + ".params")
    meta_file = os.path.join(cache_dir, key + ".json")
    if os.path.exists(params_file) and os.path.exists(meta_file):
        top1 = _cached_top1(params_file, meta_file)
        log(f"using the cached base network {params_file} (top-1 {top1:.4f})")
        return params_file, top1
    train = datasets.fashion_mnist(True, data_dir, limit=config.train_limit,
                                   input_size=config.input_size)
    val = datasets.fashion_mnist(False, data_dir, limit=config.val_limit,
                                 input_size=config.input_size)
    channels, size = train.image_shape[0], train.image_shape[-1]
    net = load_model(config.model, classes=train.classes, seed=config.seed, ctx=ctx[0],
                     input_size=size, channels=channels)
    stream = BatchStream(lambda e, s: train.batches(config.batch_size, shuffle=True,
                                                    seed=config.seed, epoch=e, start=s,
                                                    drop_last=True))
    log(f"training the base {config.model} on Fashion-MNIST for {config.base_epochs} epochs "
        f"({len(train)} images); cached afterwards in {cache_dir}")
    t0 = time.time()
    finetune(net, stream, FinetuneConfig(epochs=config.base_epochs, lr=config.base_lr,
                                         warmup_epochs=min(0.2, config.base_epochs / 4)),
             ctx, what="base training", progress=progress)
    mx.nd.waitall()
    top1, _ = datasets.accuracy(net, val.batches(config.batch_size), ctx)
    with atomic_path(params_file) as tmp:
        net.save_parameters(tmp)
    write_json(meta_file, {"top1": top1, "train_s": time.time() - t0, "config": asdict(config)})
    log(f"base network: top-1 {top1:.4f} on {len(val)} test images "
        f"({time.time() - t0:.0f} s)")
    return params_file, top1


def run_demo(out: str, quick: bool = False, data_dir: Optional[str] = None,
             cache_dir: Optional[str] = None, gpus: str = "", overwrite: bool = True,
             progress: bool = True, log=print, config: Optional[DemoConfig] = None) -> dict:
    """Train (or reuse) the base, prune it with GCP, fine-tune, benchmark, print the table;
    ``config`` replaces the full (or ``quick``) demo's settings."""
    from .latency.throughput import throughput
    from .training.models import load_model
    from .io.devices import contexts
    from .run.folder import data_run
    from .run.settings import DataRun

    config = config or (QUICK if quick else FULL)
    ctx = contexts(gpus)
    cache_dir = os.path.expanduser(cache_dir or os.environ.get(
        "PRUNENET_CACHE", os.path.join("~", ".cache", "prunenet")))
    start = time.time()
    params_file, base_top1 = train_base(config, data_dir, cache_dir, ctx, log, progress)
    report = data_run(DataRun(
        model=config.model, out=out, target=config.target, objective="flops",
        dataset="fashion-mnist", data_dir=data_dir, params=params_file, steps=config.steps,
        reg=config.reg, shrink_grid=list(config.shrink_grid) if config.shrink_grid else None,
        epochs_per_step=config.epochs_per_step,
        finetune_epochs=config.finetune_epochs, lr=config.lr, finetune_lr=config.finetune_lr,
        batch_size=config.batch_size, lr_images=config.batch_size, gpus=gpus, seed=config.seed,
        train_limit=config.train_limit, val_limit=config.val_limit, progress=progress,
        command=["prunenet", "demo"] + (["--quick"] if quick else [])),
        overwrite=overwrite, log=log)
    shape = report["input_shape"][1:]
    base = load_model(config.model, classes=report["classes"], params=params_file,
                      ctx=ctx[0], input_size=shape[-1], channels=shape[0])
    from .zoo.pruned import load_pruned
    pruned = load_pruned(out, ctx=ctx[0])
    speed = throughput({"base": base, "pruned": pruned}, shape, batch_size=64, ctx=ctx[0])
    rows = [("base", report["top1_before"], report["macs_before"], report["params_before"],
             speed["base"]["throughput_img_s"]),
            (f"GCP {config.target:g} FLOPs", report["top1_after"], report["macs_after"],
             report["params_after"], speed["pruned"]["throughput_img_s"])]
    device = "GPU" if gpus else "CPU"
    lines = [f"{'network':<18}{'top-1':>8}{'MACs':>10}{'params':>10}{device + ' img/s':>12}"]
    for name, top1, macs, params, ips in rows:
        lines.append(f"{name:<18}{top1 * 100:>7.2f}%{macs / 1e6:>9.1f}M{params / 1e6:>9.3f}M"
                     f"{ips:>12.0f}")
    table = "\n".join(lines)
    log(table)
    summary = {"table": table, "base_top1": base_top1, "report": report, "throughput": speed,
               "total_s": time.time() - start, "quick": quick,
               "config": asdict(config)}
    from .io.files import write_json
    from .io.records import DEMO_FILE
    write_json(os.path.join(out, DEMO_FILE), {k: v for k, v in summary.items()
                                                 if k != "report"})
    log(f"the pruned network is in {out} (GluonCV pair shapes.json + pruned.params); "
        f"total {summary['total_s'] / 60:.1f} min")
    return summary

