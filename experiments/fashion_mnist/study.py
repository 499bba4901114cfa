"""The baselines study on Fashion-MNIST: every pruning method at α = 0.5 and 0.25 of the FLOPs of
one trained ResNet-18, the same fine-tuning budget for all, several seeds for GCP and uniform; and
the headline comparison: ResNet-34 pruned by GCP to ResNet-18's MACs against ResNet-18 trained
for the same total number of epochs.

    python experiments/fashion_mnist/study.py --list            # the cells and their state
    python experiments/fashion_mnist/study.py [--cells PATTERN]  # run what is missing
    python experiments/fashion_mnist/study.py --report           # results.csv and table.md

Each cell is its own pruning run folder under ``--out``/cells: a finished one is skipped, an
interrupted one resumed (``prunenet prune --resume``), so the study runs in pieces. The trained
bases are cached (``--cache-dir``). ``--quick`` runs everything on 4096 training images, to check
the study end to end.
"""
import argparse
import csv
import fnmatch
import os
import statistics
import sys
import time

import prunenet  # noqa: F401  (sets OMP_NUM_THREADS before MXNet loads)
from prunenet.bench import throughput
from prunenet.demo import DemoConfig, train_base
from prunenet.files import atomic_path, read_json
from prunenet.models import input_shape, load_model
from prunenet.runs import DataRun, contexts, data_run, load_pruned

COLUMNS = ["model", "method", "objective", "target", "achieved", "macs", "params", "top1", "top5",
           "throughput_img_s", "batch_size", "device", "dataset", "seed", "run_dir"]
METHODS = ["gcp", "slimming", "uniform", "l1", "random", "wsp", "qcqp", "attention"]
TARGETS = [0.5, 0.25]
SEEDS = {"gcp": [0, 1, 2], "uniform": [0, 1, 2]}  # the others: seed 0
BASE = DemoConfig()  # ResNet-18, 4 epochs: the demo's base
PRUNING = dict(steps=2, reg=0.3, epochs_per_step=0.25, lr=0.01, finetune_epochs=1.5,
               finetune_lr=0.02, batch_size=128, lr_images=128)  # lrs for one device's 128
# a pruned network's whole training: its base's epochs, then regularize and debias epochs of
# every step, then fine-tuning
TOTAL_EPOCHS = BASE.base_epochs + PRUNING["steps"] * 2 * PRUNING["epochs_per_step"] + \
    PRUNING["finetune_epochs"]


def cells(quick: bool):
    """name -> (DemoConfig of its base, DataRun settings) for every cell of the study."""
    limit = 4096 if quick else None
    base = DemoConfig(train_limit=limit)
    out = {}
    for method in METHODS:
        for target in TARGETS:
            for seed in SEEDS.get(method, [0]):
                out[f"{method}-{target:g}-s{seed}"] = (base, dict(
                    model=base.model, method=method, target=target, seed=seed, **PRUNING))
    # the headline: ResNet-34 pruned to ResNet-18's MACs, against ResNet-18 trained as long
    deep = DemoConfig(model="resnet34_v1b", train_limit=limit)
    out["resnet34-gcp-to-resnet18-s0"] = (deep, dict(model=deep.model, method="gcp",
                                                     target=_macs_ratio(), seed=0, **PRUNING))
    longer = DemoConfig(base_epochs=TOTAL_EPOCHS, train_limit=limit)
    out[f"resnet18-trained-{TOTAL_EPOCHS:g}ep-s0"] = (longer, None)  # trained only, as long
    return out


def _macs_ratio() -> float:
    from prunenet import count, trace
    macs = {m: count(trace(load_model(m, classes=10, input_size=28, channels=1),
                           input_shape(m, 28, 1)))["macs"] for m in ("resnet18_v1b", "resnet34_v1b")}
    return round(macs["resnet18_v1b"] / macs["resnet34_v1b"], 4)


def state(folder: str) -> str:
    if os.path.exists(os.path.join(folder, "report.json")):
        return "done"
    return "interrupted" if os.path.exists(os.path.join(folder, "run.json")) else "missing"


def run_cell(name, base, settings, args, ctx):
    folder = os.path.join(args.out, "cells", name)
    if state(folder) == "done":
        return
    t0 = time.time()
    base_file, top1 = train_base(base, None, args.cache_dir, ctx, progress=False)
    if settings is None:  # a standard network trained for as many epochs as a pruned one
        _trained_report(folder, base, base_file, top1, time.time() - t0, ctx)
        return
    t0 = time.time()
    if state(folder) == "interrupted":
        data_run(DataRun(model="", out=folder, target=0.5), resume=True)
    else:
        data_run(DataRun(out=folder, dataset="fashion-mnist", params=base_file,
                         train_limit=base.train_limit, progress=False,
                         command=[sys.executable] + sys.argv, **settings))
    print(f"{name}: {time.time() - t0:.0f} s", flush=True)


def _trained_report(folder, base, params_file, top1, seconds, ctx) -> None:
    """A report.json for a network that was trained, not pruned: the row it makes in the
    table, and where its parameters are."""
    from prunenet import count, trace
    from prunenet.data import accuracy, fashion_mnist
    from prunenet.files import write_json
    net = load_model(base.model, classes=10, params=params_file, ctx=ctx[0], input_size=28,
                     channels=1)
    val = fashion_mnist(False, limit=base.val_limit)
    top1_again, top5 = accuracy(net, val.batches(base.batch_size), ctx)
    assert abs(top1_again - top1) < 1e-6, (top1_again, top1)
    macs = count(trace(net, input_shape(base.model, 28, 1)))
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, "report.json"), {
        "model": base.model, "method": "unpruned", "objective": "", "target": 1.0,
        "achieved": 1.0, "macs_after": macs["macs"], "params_after": macs["params"],
        "top1_after": top1, "top5_after": top5, "params_file": params_file,
        "epochs": base.base_epochs, "timings": {"train_s": seconds},
        "settings": {"seed": base.seed}})


def _network(folder, report, ctx):
    if report["method"] == "unpruned":
        return load_model(report["model"], classes=10, params=report["params_file"],
                          ctx=ctx, input_size=28, channels=1)
    return load_pruned(folder, ctx=ctx)


def _epochs(report) -> float:
    """All the epochs a cell's network was trained for: its base's, then pruning's."""
    if report["method"] == "unpruned":
        return report["epochs"]
    base = read_json(os.path.splitext(report["settings"]["params"])[0] + ".json", "cached base")
    s = report["settings"]
    if report["method"] == "gcp":
        debias = s["epochs_per_step"] if s["debias_epochs"] is None else s["debias_epochs"]
        pruning = s["steps"] * (s["epochs_per_step"] + debias)
    elif report["method"] == "slimming":  # no debias step
        pruning = s["steps"] * s["epochs_per_step"]
    else:  # chosen without training
        pruning = 0.0
    return base["config"]["base_epochs"] + pruning + s["finetune_epochs"]


def report(args, ctx) -> None:
    """results.csv (the shared schema) and table.md from the finished cells, with the bases
    the cells start from as rows of their own."""
    rows, nets, bases = [], {}, {}
    for name in sorted(os.listdir(os.path.join(args.out, "cells"))):
        folder = os.path.join(args.out, "cells", name)
        if state(folder) != "done":
            continue
        r = read_json(os.path.join(folder, "report.json"), "run report")
        rows.append({"model": r["model"], "method": r["method"], "objective": r["objective"],
                     "target": r["target"], "achieved": r["achieved"], "macs": r["macs_after"],
                     "params": r["params_after"], "top1": r["top1_after"],
                     "top5": r["top5_after"], "batch_size": 64, "device": "cpu",
                     "dataset": "fashion-mnist", "seed": r["settings"]["seed"],
                     "run_dir": folder, "epochs": _epochs(r), "net": folder})
        nets[folder] = _network(folder, r, ctx[0])
        base_file = r["settings"].get("params")
        if r["method"] != "unpruned" and base_file not in bases:
            meta = read_json(os.path.splitext(base_file)[0] + ".json", "cached base")
            bases[base_file] = {
                "model": r["model"], "method": "unpruned", "objective": "", "target": 1.0,
                "achieved": 1.0, "macs": r["macs_before"], "params": r["params_before"],
                "top1": r["top1_before"], "top5": r["top5_before"], "batch_size": 64,
                "device": "cpu", "dataset": "fashion-mnist", "seed": meta["config"]["seed"],
                "run_dir": folder,  # the run whose evaluation it is
                "epochs": meta["config"]["base_epochs"], "net": base_file}
            nets[base_file] = load_model(r["model"], classes=10, params=base_file, ctx=ctx[0],
                                         input_size=28, channels=1)
    rows += bases.values()
    # 30 timed batches each, all networks interleaved: the column's ratios hold on a busy CPU
    speed = throughput(nets, (1, 28, 28), batch_size=64, ctx=ctx[0], repeats=30,
                       warmup=3) if nets else {}
    for row in rows:
        row["throughput_img_s"] = speed[row["net"]]["throughput_img_s"]
    with atomic_path(os.path.join(args.out, "results.csv")) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    groups = {}
    for row in rows:
        groups.setdefault((row["model"], row["method"], row["target"], row["epochs"]),
                          []).append(row)
    lines = ["| model | method | α | epochs | MACs | params | top-1 (mean ± std) | seeds | "
             "CPU img/s |", "|---|---|---|---|---|---|---|---|---|"]
    for (model, method, target, epochs), rs in sorted(groups.items()):
        top1 = [r["top1"] * 100 for r in rs]
        spread = f" ± {statistics.stdev(top1):.2f}" if len(top1) > 1 else ""
        lines.append(f"| {model} | {method} | {target:g} | {epochs:g} | "
                     f"{rs[0]['macs'] / 1e6:.1f}M | {rs[0]['params'] / 1e6:.3f}M | "
                     f"{statistics.mean(top1):.2f}%{spread} | {len(rs)} | "
                     f"{statistics.mean(r['throughput_img_s'] for r in rs):.0f} |")
    with atomic_path(os.path.join(args.out, "table.md")) as tmp:
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join("experiments", "results", "fashion_mnist"))
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/prunenet"))
    p.add_argument("--cells", default="*", help="run only the cells matching this pattern")
    p.add_argument("--list", action="store_true", help="list the cells and their state")
    p.add_argument("--report", action="store_true", help="write results.csv and table.md")
    p.add_argument("--quick", action="store_true", help="4096 training images, to check it runs")
    p.add_argument("--gpus", default="")
    args = p.parse_args(argv)
    ctx = contexts(args.gpus)
    if args.quick and args.out == p.get_default("out"):
        args.out += "-quick"
    todo = {n: c for n, c in cells(args.quick).items() if fnmatch.fnmatch(n, args.cells)}
    if args.list:
        for name in todo:
            print(f"{state(os.path.join(args.out, 'cells', name)):12} {name}")
        return 0
    if args.report:
        report(args, ctx)
        return 0
    for name, (base, settings) in todo.items():
        run_cell(name, base, settings, args, ctx)
    report(args, ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
