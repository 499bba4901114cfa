"""The Fashion-MNIST study of GCP as the paper runs it (λ chosen by the debias loss, streams scored
per connection, zeroed channels pruned) against the paper's naive uniform baseline and others.

    python experiments/fashion_mnist/study.py --list            # the cells and their state
    python experiments/fashion_mnist/study.py [--cells PATTERN]  # run what is missing, in order
    python experiments/fashion_mnist/study.py --report           # results.csv, table.md, figure

A cell prunes one trained base with one method at one FLOPs target α and seed (a ``prunenet``
run folder with no fine-tuning: its top-1 is the method's "head start"), then fine-tunes that
pruned network for each budget of ``FINETUNE_BUDGETS`` epochs with the demo's recipe, and, for
the cells named in ``SCRATCH``, trains the same widths from a random start for as many epochs as
the pruned network had in all (the architecture-only control). Every piece is written when done
and skipped when found, so the study runs in pieces; an interrupted pruning run resumes. A folder
holds one base per network (``bases.json``: its SHA-1 and top-1); a cell pruned from another
base, such as one trained anew after the cache was lost, is refused: give it another ``--out``.

The cells are listed in the order they run — the comparisons the paper's claims rest on first
(GCP against naive uniform at α 0.5 and 0.25), the stream rules side by side (``gcp`` uses the
default ``sum``), further seeds, α 0.15, the other baselines, a second network and GCP with the
parameters as its cost (``gcp-params``, α then of the parameters) later — so a study cut short
still answers the main question. ``streams.md`` gives each ResNet-18 cell's stream and inner widths beside the authors' released
``resnet18_v1b_0.89``. ``depth.md`` says where each GCP cell pruned (early, middle or
late layers), the paper's claim about the FLOPs and parameter objectives.
``--quick`` runs a few cells on 4096 training images and 2000 test images, to check the study
end to end.
"""
import argparse
import csv
import fnmatch
import glob
import math
import os
import statistics
import sys
import time

import prunenet  # noqa: F401  (sets OMP_NUM_THREADS before MXNet loads)
import numpy as np
from prunenet.demo import DemoConfig, train_base
from prunenet.errors import PrunenetError
from prunenet.io.files import atomic_path, read_json, sha1_of, write_json
from prunenet.io.records import RESULTS_COLUMNS
from prunenet.io.devices import contexts
from prunenet.run.folder import data_run
from prunenet.run.settings import DataRun
from prunenet.zoo.pruned import load_pruned

COLUMNS = RESULTS_COLUMNS + ["finetune_epochs", "top1_selected", "reg", "stream_score",
                             "zeros_pruned"]
FINETUNE_BUDGETS = (0.5, 1.5)  # besides 0 (the pruned network as selected)
# the plans: "quarter", the first study (¼ epoch per step; its cells, in
# experiments/results/fashion_mnist*, were chosen by the λ search of that time and are kept as
# they are), and "epoch", the paper's budget (one epoch per regularize step, T = 2, λ by the
# one-standard-error rule over shrink levels) with the λ = 0 ablation beside GCP
PRUNING = dict(steps=2, reg="auto", epochs_per_step=0.25, lr=0.01, finetune_epochs=0.0,
               batch_size=128, lr_images=128)  # learning rates for one device's 128 images
PLANS = {"quarter": PRUNING, "epoch": dict(PRUNING, epochs_per_step=1.0)}
OUT = {"quarter": os.path.join("experiments", "results", "fashion_mnist"),
       "epoch": os.path.join("experiments", "results", "fashion_mnist_epoch")}
FINETUNE = dict(lr=0.02, label_smoothing=0.1)
# method name in the study -> (prunenet method, extra DataRun settings)
METHODS = {"gcp": ("gcp", {}), "gcp-mean": ("gcp", {"stream_score": "mean"}),
           "gcp-reach": ("gcp", {"stream_score": "reach"}),
           "uniform": ("uniform", {}), "uniform-l1": ("uniform-l1", {}), "l1": ("l1", {}),
           "slimming": ("slimming", {}), "qcqp": ("qcqp", {}), "wsp": ("wsp", {}),
           "activation-vote": ("activation-vote", {}), "globalpru": ("globalpru", {}),
           "gcp-params": ("gcp", {"objective": "params"}),  # α is then of the parameters
           "gcp-lambda0": ("gcp", {"reg": 0.0}),  # what the regulariser adds
           # λ held at what the rule's shrink levels ρ 0.1 and 0.3 were on the epoch plan's
           # ResNet-18 base (reg_search of resnet18-gcp-0.25-s0): is the λ the rule turned down
           # better after fine-tuning than the one it chose?
           "gcp-rho0.1": ("gcp", {"reg": 0.06792983798481488}),
           "gcp-rho0.3": ("gcp", {"reg": 0.20378951395444456})}
BASES = {"resnet18": DemoConfig(), "resnet20": DemoConfig(model="cifar_resnet20_v1")}
TOP1_TOLERANCE = 5e-5  # two top-1s of one base (on 10,000 images, recorded to 4 decimals)
SCRATCH = ("resnet18-gcp-0.25-s0", "resnet18-uniform-0.25-s0", "resnet18-uniform-l1-0.25-s0",
           "resnet18-l1-0.25-s0", "resnet18-slimming-0.25-s0")


def _order_epoch():
    """(base, method, α, seed) of the "epoch" plan's cells, in the order they run: seed 0 of
    ResNet-18 at every α first (GCP beside its λ = 0 ablation and the two uniform baselines),
    then seeds 1 and 2, then ResNet-20 likewise; last, GCP at α 0.25 with λ held at two of the
    levels the rule turned down."""
    methods = ("gcp", "gcp-lambda0", "uniform", "uniform-l1")
    fixed = [("resnet18", m, 0.25, 0) for m in ("gcp-rho0.1", "gcp-rho0.3")]
    return [(b, m, a, s) for b in ("resnet18", "resnet20") for s in (0, 1, 2)
            for a in (0.25, 0.5, 0.15) for m in methods] + fixed


def _order():
    """(base, method, α, seed) of every cell of the "quarter" plan, in the order they ran."""
    main = [("resnet18", m, a, 0) for a in (0.5, 0.25) for m in ("gcp", "uniform", "uniform-l1")]
    rule = [("resnet18", m, a, 0) for a in (0.5, 0.25) for m in ("gcp-reach", "gcp-mean")]
    heavy = [("resnet18", m, 0.15, 0) for m in ("gcp", "uniform", "uniform-l1")]
    seeds = [("resnet18", m, a, s) for s in (1, 2) for a in (0.5, 0.25, 0.15)
             for m in ("gcp", "uniform", "uniform-l1")]
    others = [("resnet18", m, a, 0) for a in (0.5, 0.25, 0.15) for m in ("l1", "slimming")]
    seed_papers = [("resnet18", m, a, 0) for a in (0.5, 0.25)
                   for m in ("qcqp", "wsp", "activation-vote", "globalpru")]
    second = [("resnet20", m, a, s) for s in (0, 1, 2) for a in (0.5, 0.25)
              for m in ("gcp", "uniform")]
    second += [("resnet20", "uniform-l1", a, 0) for a in (0.5, 0.25)]
    objectives = [(b, "gcp-params", 0.5, 0) for b in ("resnet20", "resnet18")]
    return main + rule + heavy + seeds + others + seed_papers + second + objectives


def cells(quick: bool, plan: str = "quarter"):
    """name -> (DemoConfig of its base, DataRun settings) for every cell, in running order."""
    limit = 4096 if quick else None
    order = (_order() if plan == "quarter" else _order_epoch()) if not quick else \
        [("resnet18", "gcp", 0.5, 0), ("resnet18", "uniform", 0.5, 0)]
    out = {}
    for base_name, method, target, seed in order:
        base = BASES[base_name]
        # --quick: 64 iterations, validated on 2000 images (the quick demo's)
        quick_base = {"train_limit": limit, "base_epochs": 2.0, "val_limit": 2000} if quick \
            else {}
        base = DemoConfig(**{**base.__dict__, **quick_base})
        name_, extra = METHODS[method]
        settings = dict(PLANS[plan] if not quick else PRUNING, model=base.model,
                        method=name_, target=target, seed=seed, **extra)
        if quick:
            settings["shrink_grid"] = [1.0]
        out[f"{base_name}-{method}-{target:g}-s{seed}"] = (base, settings)
    return out


def _budgets(quick: bool):
    return (0.25,) if quick else FINETUNE_BUDGETS


def state(folder: str, quick: bool = False) -> str:
    if not os.path.exists(os.path.join(folder, "report.json")):
        return "interrupted" if os.path.exists(os.path.join(folder, "run.json")) else "missing"
    done = all(os.path.exists(os.path.join(folder, f"finetune-{b:g}.json"))
               for b in _budgets(quick))
    return "done" if done else "pruned"


def run_cell(name, base, settings, args, ctx):
    folder = os.path.join(args.out, "cells", name)
    t0 = time.time()
    base_file, top1 = train_base(base, None, args.cache_dir, ctx, progress=False)
    check_base(args.out, name.split("-", 1)[0], base_file, top1)
    if state(folder) == "interrupted":
        data_run(DataRun(model="", out=folder, target=0.5), resume=True)
    elif state(folder) == "missing":
        data_run(DataRun(out=folder, dataset="fashion-mnist", params=base_file,
                         train_limit=base.train_limit, val_limit=base.val_limit,
                         progress=False,
                         command=[sys.executable] + sys.argv, **settings))
    if args.plan != "quarter":
        _recalibrate(folder, base, settings, ctx)
    for budget in _budgets(args.quick):
        _finetune(folder, base, settings, budget, ctx)
    if name in SCRATCH and not args.quick:
        _scratch(folder, base, settings, ctx)
    print(f"{name}: {time.time() - t0:.0f} s", flush=True)


def check_base(out: str, base_name: str, base_file: str, top1: float) -> None:
    """Refuse to prune with a base other than the one this folder's cells of the same network
    were pruned from (``bases.json`` records each base's SHA-1 and top-1 when first used)."""
    path = os.path.join(out, "bases.json")
    known = read_json(path, "the study's bases") if os.path.exists(path) else {}
    mine = {"params": os.path.basename(base_file), "sha1": sha1_of(base_file), "top1": top1}
    if base_name in known:
        theirs = known[base_name]
        if theirs["sha1"] != mine["sha1"]:
            raise PrunenetError(
                f"{base_file} (sha1 {mine['sha1'][:8]}, top-1 {top1:.4f}) is not the base "
                f"{out}'s {base_name} cells were pruned from (sha1 {theirs['sha1'][:8]}, top-1 "
                f"{theirs['top1']:.4f}): run these cells with another --out")
        return
    pattern = os.path.join(out, "cells", base_name + "-*", "report.json")
    for report_file in sorted(glob.glob(pattern)):  # cells from before bases.json
        before = read_json(report_file, "run report")["top1_before"]
        if abs(before - top1) > TOP1_TOLERANCE:
            raise PrunenetError(
                f"{base_file} has top-1 {top1:.4f}, but {os.path.dirname(report_file)} was "
                f"pruned from a base with top-1 {before:.4f}: run these cells with another --out")
    write_json(path, dict(known, **{base_name: mine}))


def _train_stream(base, seed: int, epoch_offset: int):
    from prunenet.training.data import fashion_mnist
    from prunenet.training.train import BatchStream
    train = fashion_mnist(True, limit=base.train_limit)
    return BatchStream(lambda e, s: train.batches(base.batch_size, shuffle=True, seed=seed,
                                                  epoch=epoch_offset + e, start=s,
                                                  drop_last=True))


def _evaluate(net, base, ctx):
    from prunenet.training.data import accuracy, fashion_mnist
    val = fashion_mnist(False, limit=base.val_limit)
    return accuracy(net, val.batches(base.batch_size), ctx)


def _finetune(folder, base, settings, budget: float, ctx) -> None:
    """Fine-tune the cell's pruned network for ``budget`` epochs (the pipeline's recipe and
    batch order) and write ``finetune-<budget>.json``."""
    from prunenet.training.train import FinetuneConfig, finetune
    path = os.path.join(folder, f"finetune-{budget:g}.json")
    if os.path.exists(path):
        return
    t0 = time.time()
    net = load_pruned(folder, ctx=ctx[0])
    stream = _train_stream(base, settings["seed"], 1000)
    finetune(net, stream, FinetuneConfig(epochs=budget, **FINETUNE), ctx, progress=False)
    top1, top5 = _evaluate(net, base, ctx)
    write_json(path, {"finetune_epochs": budget, "top1": top1, "top5": top5,
                      "time_s": time.time() - t0})


def _recalibrate(folder, base, settings, ctx) -> None:
    """The cell's pruned network as selected, evaluated with its BatchNorm statistics
    re-estimated on the first ``RECALIBRATE_BATCHES`` training batches of the run's seed (the
    pipeline's images, the same for every method): ``recalibrated.json``, the table's
    fine-tuning 0."""
    from itertools import islice
    from prunenet.training.data import fashion_mnist
    from prunenet.training.train import RECALIBRATE_BATCHES, recalibrated
    path = os.path.join(folder, "recalibrated.json")
    if os.path.exists(path):
        return
    net = load_pruned(folder, ctx=ctx[0])
    train = fashion_mnist(True, limit=base.train_limit)
    batches = islice(train.batches(base.batch_size, shuffle=True, seed=settings["seed"],
                                   epoch=0, drop_last=True), RECALIBRATE_BATCHES)
    with recalibrated(net, batches, ctx):
        top1, top5 = _evaluate(net, base, ctx)
    write_json(path, {"batches": RECALIBRATE_BATCHES, "top1": top1, "top5": top5})


def _scratch(folder, base, settings, ctx) -> None:
    """The cell's widths from a random start, trained with the base's recipe for all the epochs
    its pruned network had (base, pruning steps, the largest fine-tuning budget)."""
    from prunenet.training.train import FinetuneConfig, finetune
    path = os.path.join(folder, "scratch.json")
    if os.path.exists(path):
        return
    t0 = time.time()
    net = load_pruned(folder, ctx=ctx[0])
    import mxnet as mx
    mx.random.seed(settings["seed"])
    net.collect_params().initialize(mx.init.Xavier(), ctx=ctx[0], force_reinit=True)
    for name, p in net.collect_params().items():  # BatchNorm at its usual start
        if name.endswith(("_gamma", "running_var")):
            p.set_data(mx.nd.ones(p.shape, ctx=ctx[0]))
        elif name.endswith(("_beta", "running_mean")):
            p.set_data(mx.nd.zeros(p.shape, ctx=ctx[0]))
    epochs = base.base_epochs + _pruning_epochs(read_json(os.path.join(folder, "report.json"),
                                                          "run report")) + max(FINETUNE_BUDGETS)
    finetune(net, _train_stream(base, settings["seed"], 2000),
             FinetuneConfig(epochs=epochs, lr=base.base_lr, warmup_epochs=0.2), ctx,
             what="training from scratch", progress=False)
    top1, top5 = _evaluate(net, base, ctx)
    write_json(path, {"epochs": epochs, "top1": top1, "top5": top5, "time_s": time.time() - t0})


def _pruning_epochs(report) -> float:
    """The epochs of training inside a pruning run (the λ search's candidates not counted)."""
    s = report["settings"]
    if report["method"] == "gcp":
        debias = s["epochs_per_step"] if s["debias_epochs"] is None else s["debias_epochs"]
        return s["steps"] * (s["epochs_per_step"] + debias)
    if report["method"] == "slimming":  # no debias step
        return s["steps"] * s["epochs_per_step"]
    return 0.0


def report(args) -> None:
    """results.csv (the shared schema, one row per cell and fine-tuning budget), table.md with
    mean ± std over seeds and paired tests, and top-1 against fine-tuning epochs (PNG + SVG)."""
    rows, bases = [], {}
    names = list(cells(args.quick, args.plan))
    for name in names:
        folder = os.path.join(args.out, "cells", name)
        if state(folder, args.quick) in ("missing", "interrupted"):
            continue
        r = read_json(os.path.join(folder, "report.json"), "run report")
        first = bases.setdefault(r["model"], (name, r["top1_before"]))
        if abs(first[1] - r["top1_before"]) > TOP1_TOLERANCE:
            raise PrunenetError(f"cells {first[0]} and {name} were pruned from different bases "
                                f"(top-1 {first[1]:.4f} and {r['top1_before']:.4f}): one folder "
                                "holds one base per network")
        study_method = name.split("-", 1)[1].rsplit("-", 2)[0]
        common = {"model": r["model"], "method": study_method, "objective": r["objective"],
                  "target": r["target"], "achieved": r["achieved"], "macs": r["macs_after"],
                  "params": r["params_after"], **_throughput(r), "dataset": "fashion-mnist",
                  "seed": r["settings"]["seed"], "run_dir": os.path.relpath(folder, args.out),
                  "top1_selected": r["top1_selected"], "reg": r.get("reg", ""),
                  "stream_score": r.get("stream_score", ""),
                  "zeros_pruned": r.get("zeros_pruned", "")}
        # "right after selection": with BatchNorm re-estimated where the study measured it
        path = os.path.join(folder, "recalibrated.json")
        top1 = read_json(path, "re-estimated result")["top1"] if os.path.exists(path) else \
            r["top1_selected"]
        rows.append(dict(common, finetune_epochs=0.0, top5="", top1=top1))
        for budget in _budgets(args.quick):
            path = os.path.join(folder, f"finetune-{budget:g}.json")
            if os.path.exists(path):
                ft = read_json(path, "fine-tuning result")
                rows.append(dict(common, finetune_epochs=budget, top1=ft["top1"],
                                 top5=ft["top5"] if ft["top5"] is not None else ""))
        path = os.path.join(folder, "scratch.json")
        if os.path.exists(path):
            sc = read_json(path, "from-scratch result")
            rows.append(dict(common, method=study_method + "-scratch", top1_selected="",
                             finetune_epochs=sc["epochs"], top1=sc["top1"], top5=sc["top5"]))
    with atomic_path(os.path.join(args.out, "results.csv")) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    lines = _table(rows)
    for file, text in (("table.md", lines), ("depth.md", _depth_table(args.out, names)),
                       ("streams.md", _streams_table(args.out, names))):
        with atomic_path(os.path.join(args.out, file)) as tmp:
            with open(tmp, "w") as f:
                f.write("\n".join(text) + "\n")
    if rows:
        _figure(rows, args.out)
    print("\n".join(lines))


def _throughput(report) -> dict:
    """The pruned network's throughput from its run's speed check (images per second at the
    check's batch, on the machine the cell ran on), for the accuracy-vs-throughput figure."""
    speed = report.get("speed_check") or {}
    if not speed.get("latency_ms_pruned"):
        return {"batch_size": "", "device": "", "throughput_img_s": ""}
    return {"batch_size": speed["batch_size"], "device": speed["device"],
            "throughput_img_s": 1000.0 * speed["batch_size"] / speed["latency_ms_pruned"]}


def _table(rows):
    """table.md's lines: mean ± std over seeds per (model, α, fine-tuning, method), paired
    against naive uniform; with the λ = 0 ablation among the rows (the "epoch" plan), also the
    channels the regulariser zeroed and the pairing against GCP at λ = 0."""
    groups = {}
    for row in rows:
        key = (row["model"], row["target"], row["finetune_epochs"], row["method"])
        groups.setdefault(key, []).append(row)
    extended = any(r["method"] == "gcp-lambda0" for r in rows)
    head = ("| model | α | fine-tune epochs | method | achieved | MACs | top-1 (mean ± std) | "
            "seeds | λ chosen | vs uniform (paired over seeds) |")
    lines = [head + (" zeros pruned | vs gcp-lambda0 |" if extended else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if extended else "")]
    for (model, target, ft, method), rs in sorted(groups.items(), key=lambda kv: (
            kv[0][0], -kv[0][1], kv[0][2], kv[0][3])):
        top1 = [r["top1"] * 100 for r in rs]
        spread = f" ± {statistics.stdev(top1):.2f}" if len(top1) > 1 else ""
        regs = sorted({f"{r['reg']:g}" for r in rs if isinstance(r["reg"], float)})
        versus = paired(rs, groups.get((model, target, ft, "uniform")), method, "uniform")
        line = (f"| {model} | {target:g} | {ft:g} | {method} | "
                f"{statistics.mean(r['achieved'] for r in rs):.3f} | "
                f"{statistics.mean(r['macs'] for r in rs) / 1e6:.1f}M | "
                f"{statistics.mean(top1):.2f}%{spread} | {len(rs)} | {', '.join(regs)} | "
                f"{versus} |")
        if extended:
            zeros = [float(r["zeros_pruned"]) for r in rs if r.get("zeros_pruned") != ""]
            zeros_text = f"{statistics.mean(zeros):g}" if zeros else ""
            ablation = paired(rs, groups.get((model, target, ft, "gcp-lambda0")), method,
                               "gcp-lambda0") if method.startswith("gcp") else ""
            line += f" {zeros_text} | {ablation} |"
        lines.append(line)
    return lines


def paired(rs, ref, method, name) -> str:
    """``rs``' top-1 minus ``ref``'s, paired by seed, with a paired t-test's p where the
    differences vary."""
    if method == name or not ref or rs[0]["objective"] != ref[0]["objective"]:
        return ""
    by_seed = {r["seed"]: r["top1"] for r in ref}
    pairs = [(r["top1"], by_seed[r["seed"]]) for r in rs if r["seed"] in by_seed]
    diff = [100 * (a - b) for a, b in pairs]
    if not diff:
        return ""
    versus = f"{statistics.mean(diff):+.2f} pt over {len(diff)}"
    if len({round(d, 6) for d in diff}) > 1:  # identical differences: no test
        from scipy import stats
        p = stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).pvalue
        versus += f", p = {p:.2g}" if math.isfinite(p) else ""
    return versus


def _depth_table(out: str, names) -> list:
    """Where each GCP cell pruned: the kept fraction of output channels (mean over layers) in
    the first, middle and last third of its prunable layers, in network order (the classifier's
    fixed output left out), beside the objective that chose them."""
    lines = ["| cell | objective | α | achieved | MACs kept | params kept | first third | "
             "middle third | last third |", "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        path = os.path.join(out, "cells", name, "report.json")
        if not name.split("-", 1)[1].startswith("gcp") or not os.path.exists(path):
            continue
        r = read_json(path, "run report")
        kept = [k / o for k, o in list(r["widths"].values())[:-1]]
        thirds = [kept[i * len(kept) // 3:(i + 1) * len(kept) // 3] for i in range(3)]
        lines.append(f"| {name} | {r['objective']} | {r['target']:g} | {r['achieved']:.3f} | "
                     f"{r['macs_after'] / r['macs_before']:.3f} | "
                     f"{r['params_after'] / r['params_before']:.3f} | "
                     + " | ".join(f"{statistics.mean(t):.2f}" for t in thirds) + " |")
    return lines


# GluonCV's resnet18_v1b_0.89, pruned by the paper's authors on ImageNet (0.887 GFLOPs of
# ResNet-18's 1.82, α about 0.49): its shape file ships inside GluonCV
AUTHORS_RESNET18 = ("resnet18_v1b_0.89", "resnet18_v1b_2.6x.json", 0.887 / 1.82)


def _resnet18_widths(width) -> list:
    """A ResNet-18's widths as the streams table gives them: per stage, its residual stream
    (the output of each block) then the two blocks' inner widths; ``width(stage, conv)`` is
    conv ``conv``'s output width in stage ``stage`` (GluonCV's ``layersN_convM``)."""
    return [(width(k, 1), width(k, 0), width(k, 2)) for k in range(1, 5)]


def _authors_widths() -> list:
    """The widths of the authors' pruned ResNet-18 from its shape file inside GluonCV."""
    import gluoncv
    path = os.path.join(os.path.dirname(gluoncv.__file__), "model_zoo", "pruned_resnet",
                        AUTHORS_RESNET18[1])
    shapes = read_json(path, "GluonCV's pruned ResNet-18 shape file")
    return _resnet18_widths(lambda k, m: shapes[f"resnetv1d_layers{k}_conv{m}_weight"][0])


def _streams_table(out: str, names) -> list:
    """Each ResNet-18 cell's residual-stream widths per stage and its blocks' inner widths,
    beside those of the authors' ``resnet18_v1b_0.89`` (ImageNet) and the unpruned network."""
    lines = ["| cell | α | stage 1 stream · inner | stage 2 | stage 3 | stage 4 |",
             "|---|---|---|---|---|---|"]

    def row(label, alpha, widths) -> str:
        return (f"| {label} | {alpha} | " + " | ".join(
            f"{s} · {a}, {b}" for s, a, b in widths) + " |")
    lines.append(row("unpruned ResNet-18", "1", _resnet18_widths(lambda k, m: 64 * 2 ** (k - 1))))
    lines.append(row(f"{AUTHORS_RESNET18[0]} (GluonCV, ImageNet)", f"{AUTHORS_RESNET18[2]:.2f}",
                     _authors_widths()))
    for name in names:
        path = os.path.join(out, "cells", name, "report.json")
        if not name.startswith("resnet18-") or not os.path.exists(path):
            continue
        r = read_json(path, "run report")
        widths = {k.split("_", 1)[1]: v[0] for k, v in r["widths"].items()}
        lines.append(row(name, f"{r['target']:g}", _resnet18_widths(
            lambda k, m: widths[f"layers{k}_conv{m}_fwd"])))
    return lines


def _figure(rows, out: str) -> None:
    """Top-1 against fine-tuning epochs, one panel per (model, α of the FLOPs), a line per method
    (mean over seeds), each method in one colour throughout."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in rows if not r["method"].endswith("-scratch") and r["objective"] == "flops"]
    methods = sorted({r["method"] for r in rows})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    lines = {}
    panels = sorted({(r["model"], r["target"]) for r in rows}, key=lambda p: (p[0], -p[1]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0), squeeze=False)
    for ax, (model, target) in zip(axes[0], panels):
        mine = [r for r in rows if r["model"] == model and r["target"] == target]
        for method in sorted({r["method"] for r in mine}):
            by_ft = {}
            for r in mine:
                if r["method"] == method:
                    by_ft.setdefault(r["finetune_epochs"], []).append(100 * r["top1"])
            xs = sorted(by_ft)
            lines[method] = ax.errorbar(
                xs, [np.mean(by_ft[x]) for x in xs],
                yerr=[np.std(by_ft[x]) if len(by_ft[x]) > 1 else 0 for x in xs],
                marker="o", capsize=2, color=colours[method], label=method)
        ax.set_title(f"{model}, α {target:g} of the FLOPs", fontsize=9)
        ax.set_xlabel("fine-tuning epochs")
        ax.set_ylabel("top-1 (%)")
        ax.grid(alpha=0.3)
    fig.legend([lines[m] for m in methods], methods, fontsize=7, loc="center right")
    fig.tight_layout(rect=(0, 0, 1 - 1.1 / fig.get_figwidth(), 1))
    for ext in ("png", "svg"):
        with atomic_path(os.path.join(out, f"finetune_curves.{ext}")) as tmp:
            fig.savefig(tmp, format=ext, dpi=150)
    plt.close(fig)


def cell_flags(p, report_help: str, quick_help: str) -> None:
    """The flags an experiment script of cells shares (this one and ``figure1.py``) but
    ``--out``."""
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/prunenet"))
    p.add_argument("--cells", default="*", help="run only the cells matching this pattern")
    p.add_argument("--list", action="store_true", help="list the cells and their state")
    p.add_argument("--report", action="store_true", help=report_help)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--gpus", default="")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", choices=sorted(PLANS), default="epoch",
                   help="epoch: the paper's budget (default); quarter: the first study's cells")
    p.add_argument("--out", default=None, help="the study's folder (default: the plan's)")
    cell_flags(p, "write results.csv, table.md, figure", "4096 training images, to check it runs")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = OUT[args.plan] + ("-quick" if args.quick else "")
    todo = {n: c for n, c in cells(args.quick, args.plan).items()
            if fnmatch.fnmatch(n, args.cells)}

    def run_one(name, cell) -> None:  # the devices (and MXNet) only to run a cell
        run_cell(name, *cell, args, contexts(args.gpus))
        report(args)
    return drive(args, todo, lambda name: state(os.path.join(args.out, "cells", name),
                                                args.quick),
                 run_one, lambda: report(args), "study.py")


def drive(args, todo: dict, state_of, run_one, report_all, script: str) -> int:
    """What an experiment script of cells does with its flags: ``--list`` the cells of
    ``todo`` (name -> cell) with ``state_of`` each, ``--report`` (``report_all``), or run them
    in order (``run_one(name, cell)``). A :class:`PrunenetError` is one line and exit 2; a cell
    refused so does not stop the cells after it (an experiment runs for hours unattended), and
    when others ran, a last line names the refused ones."""
    if args.list:
        for name in todo:
            print(f"{state_of(name):12} {name}")
        return 0
    if args.report:
        try:
            report_all()
        except PrunenetError as err:
            print(f"{script}: {err}", file=sys.stderr)
            return 2
        return 0
    refused = []
    for name, cell in todo.items():
        try:
            run_one(name, cell)
        except PrunenetError as err:
            print(f"{script}: {name}: {err}", file=sys.stderr)
            refused.append(name)
    if refused and len(refused) < len(todo):
        print(f"{script}: {len(refused)} of {len(todo)} cell(s) refused ({', '.join(refused)}); "
              f"the others ran", file=sys.stderr)
    return 2 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
