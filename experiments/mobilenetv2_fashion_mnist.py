"""Is a pruned large network better than the expert-designed smaller one? Asked of MobileNetV2
on Fashion-MNIST: ``mobilenetv2_1.0`` pruned by GCP to 0.7 of its FLOPs and fine-tuned, against
``mobilenetv2_0.75`` trained from scratch for the same total number of epochs.

    python experiments/mobilenetv2_fashion_mnist.py [--base-epochs 3] [--out DIR]

Writes ``results.csv`` (the shared results schema) and ``summary.md`` into ``--out``; the trained
networks are cached (``--cache-dir``), so a rerun only repeats what is missing. Expect about an
hour on 2 CPU cores with the defaults (about 8.5 epochs of Fashion-MNIST in all).
"""
import argparse
import csv
import os
import sys

import prunenet  # noqa: F401  (sets OMP_NUM_THREADS before MXNet loads)
from prunenet import count, trace
from prunenet.latency.throughput import throughput
from prunenet.training.data import accuracy, fashion_mnist
from prunenet.demo import DemoConfig, train_base
from prunenet.io.files import atomic_path
from prunenet.training.models import input_shape, load_model
from prunenet.io.devices import contexts
from prunenet.run.folder import data_run
from prunenet.run.settings import DataRun
from prunenet.zoo.pruned import load_pruned

COLUMNS = ["model", "method", "objective", "target", "achieved", "macs", "params", "top1", "top5",
           "throughput_img_s", "batch_size", "device", "dataset", "seed", "run_dir"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-epochs", type=float, default=3.0)
    p.add_argument("--target", type=float, default=0.7)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--epochs-per-step", type=float, default=0.25)
    p.add_argument("--reg", type=float, default=0.1)
    p.add_argument("--finetune-epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=0.1, help="base training learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join("experiments", "results",
                                                 "mobilenetv2_fashion_mnist"))
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/prunenet"))
    p.add_argument("--gpus", default="")
    args = p.parse_args(argv)
    ctx = contexts(args.gpus)
    os.makedirs(args.out, exist_ok=True)

    big = DemoConfig(model="mobilenetv2_1.0", base_epochs=args.base_epochs, base_lr=args.lr,
                     seed=args.seed)
    base_file, base_top1 = train_base(big, None, args.cache_dir, ctx)
    run_dir = os.path.join(args.out, "gcp")
    report = data_run(DataRun(
        model=big.model, out=run_dir, target=args.target, objective="flops",
        dataset="fashion-mnist", params=base_file, steps=args.steps, reg=args.reg,
        epochs_per_step=args.epochs_per_step, finetune_epochs=args.finetune_epochs,
        lr=0.01, finetune_lr=0.02, lr_images=128, seed=args.seed, gpus=args.gpus,
        command=[sys.executable] + sys.argv), overwrite=True)
    total = args.base_epochs + args.steps * 2 * args.epochs_per_step + args.finetune_epochs
    small = DemoConfig(model="mobilenetv2_0.75", base_epochs=total, base_lr=args.lr,
                       seed=args.seed)
    small_file, small_top1 = train_base(small, None, args.cache_dir, ctx)

    test = fashion_mnist(False)
    shape = input_shape(big.model, 28, 1)
    nets = {
        "mobilenetv2_1.0": load_model(big.model, 10, base_file, ctx=ctx[0], input_size=28,
                                      channels=1),
        "mobilenetv2_1.0 GCP": load_pruned(run_dir, ctx=ctx[0]),
        "mobilenetv2_0.75": load_model(small.model, 10, small_file, ctx=ctx[0], input_size=28,
                                       channels=1),
    }
    speed = throughput(nets, shape[1:], batch_size=64, ctx=ctx[0])
    device = "gpu" if args.gpus else "cpu"
    rows = []
    for name, net in nets.items():
        model = name.split()[0]
        counted = count(trace(net, shape)) if "GCP" not in name else \
            {"macs": report["macs_after"], "params": report["params_after"]}
        top1, top5 = accuracy(net, test.batches(256), ctx)
        rows.append({
            "model": model, "method": "gcp" if "GCP" in name else "standard",
            "objective": "flops" if "GCP" in name else "", "target": args.target if "GCP" in name
            else "", "achieved": report["achieved"] if "GCP" in name else "",
            "macs": counted["macs"], "params": counted["params"], "top1": top1, "top5": top5,
            "throughput_img_s": speed[name]["throughput_img_s"], "batch_size": 64,
            "device": device, "dataset": "fashion-mnist", "seed": args.seed,
            "run_dir": run_dir if "GCP" in name else ""})
    with atomic_path(os.path.join(args.out, "results.csv")) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    lines = ["| network | epochs | top-1 | MACs | params | CPU img/s (batch 64) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        ep = total if row["method"] == "gcp" or row["model"].endswith("0.75") else args.base_epochs
        label = row["model"] + (f" GCP {args.target:g} FLOPs" if row["method"] == "gcp" else "")
        lines.append(f"| {label} | {ep:g} | {row['top1'] * 100:.2f}% | {row['macs'] / 1e6:.2f}M "
                     f"| {row['params'] / 1e6:.3f}M | {row['throughput_img_s']:.0f} |")
    text = "\n".join(lines) + "\n"
    with atomic_path(os.path.join(args.out, "summary.md")) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
