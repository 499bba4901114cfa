"""Pruning-step speed and the latency objective, measured side by side on this machine.

(a) Time per image of a GCP regularize step over that of a full training step, same network and
    batch (ResNet-50 v1d, 224 px, batch 16), and of a step with every weight frozen (forward
    plus the input-gradient backward: what is left when nothing but the input needs a
    gradient, the floor). Then where the time goes: MXNet's profiler per operator, and oneDNN's log
    per primitive (which shows the convolutions that compute a weight gradient anyway).
(b) ResNet-50 v1d at batch 32: pruned data-free (``l1``) by the ``latency`` objective to α = 0.5
    of the measured latency and by the ``flops`` objective to α = 0.5 of the MACs, and GluonCV's
    ``resnet50_v1d_0.86`` and ``resnet50_v1d_0.48`` architectures: each one's measured throughput
    gain over the unpruned network next to its MACs reduction, all measured in one interleaved
    run.
(c) The latency objective's predicted latency next to the measured one.
(d) A whole GCP run's pruning time (``--reg auto``: the λ search included) as a
    multiple of one training epoch of the unpruned network on the same images.

Every timing follows prunenet's timing rule (interleaved rounds until the medians are known, a
one-line note when they cannot be); ratios are medians of per-round ratios, with their ±. Run it
on an idle machine: figures from a busy one are noise.

Run from the repository root (about 10 minutes the first time, while the latency table is
measured; it is cached in ``~/.cache/prunenet``)::

    .venv/bin/python benchmarks/pruning_and_latency.py
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict

import numpy as np

import prunenet  # noqa: F401  (sets OMP_NUM_THREADS before MXNet loads)
import mxnet as mx
from mxnet import autograd, gluon

from prunenet import cost_model, trace
from prunenet.latency import throughput as bench
from prunenet.core.costs import count
from prunenet.latency import LatencyTable, default_table_path, select_measured
from prunenet.methods import DATA_FREE
from prunenet.training.models import load_model, randomize_batchnorm
from prunenet.zoo.pruned import prune_network
from prunenet.core.surgery import network_params, widths_of
from prunenet.latency.timing import ratio, time_until_stable
from prunenet.gcp.masked import REGULARIZE, MaskedNetwork

MODEL = "resnet50_v1d"


# -- (a) pruning-step time --------------------------------------------------------------------------
def _step_functions(size: int, batch: int) -> Dict[str, object]:
    """name -> a function running one step on a fixed batch."""
    import prunenet.gcp.prox  # noqa: F401  (registers 'proxsgd')
    shape = (batch, 3, size, size)
    x = mx.nd.array(np.random.RandomState(0).normal(size=shape).astype(np.float32))
    y = mx.nd.array(np.random.RandomState(1).randint(0, 1000, batch).astype(np.float32))
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def step(block, trainer):
        def run():
            with autograd.record():
                loss = loss_fn(block(x), y)
            loss.backward()
            if trainer is not None:
                trainer.step(batch)
            mx.nd.waitall()
        return run

    full = load_model(MODEL, input_size=size, seed=0)
    full.hybridize(static_alloc=True, static_shape=True)
    steps = {"full training step (SGD, every weight)": step(full, gluon.Trainer(
        full.collect_params(), "sgd", {"learning_rate": 1e-4, "momentum": 0.9}))}
    net = load_model(MODEL, input_size=size, seed=1)
    randomize_batchnorm(net, seed=1)
    graph = trace(net, (1, 3, size, size))
    wrapper = MaskedNetwork(net, graph)
    wrapper.rescale()
    weights = wrapper.cost_weights(cost_model(graph, "flops").marginal())
    trainer = gluon.Trainer(wrapper.trainable_params(REGULARIZE), "proxsgd", {
        "learning_rate": 1e-4, "momentum": 0.9,
        "thresholds": {k: 1e-3 * v for k, v in weights.items()}})
    steps["GCP regularize step (BN scales, masks, classifier)"] = step(
        wrapper.block(REGULARIZE), trainer)
    floor = load_model(MODEL, input_size=size, seed=2)
    for p in floor.collect_params().values():
        p.grad_req = "null"
    floor.hybridize(static_alloc=True, static_shape=True)
    x_grad = x.copy()
    x_grad.attach_grad()

    def floor_step():
        with autograd.record():
            loss = loss_fn(floor(x_grad), y)
        loss.backward()
        mx.nd.waitall()
    steps["all weights frozen: forward + input-gradient backward"] = floor_step
    # MXNet's static memory allocation (hybridize(static_alloc=True)) computes the weight
    # gradient of some frozen convolutions anyway (12 of ResNet-50 v1d's, one per repeated
    # shape; 26 with static_alloc alone; none without it; BlockGrad on the weights changes
    # nothing): the same two steps hybridized without it, to weigh that work against what
    # static allocation saves
    plain = load_model(MODEL, input_size=size, seed=1)
    randomize_batchnorm(plain, seed=1)
    plain_wrapper = MaskedNetwork(plain, trace(plain, (1, 3, size, size)))
    plain_wrapper.rescale()
    plain_block = plain_wrapper.block(REGULARIZE)
    plain_block.hybridize()
    plain_trainer = gluon.Trainer(plain_wrapper.trainable_params(REGULARIZE), "proxsgd", {
        "learning_rate": 1e-4, "momentum": 0.9,
        "thresholds": {k: 1e-3 * v for k, v in weights.items()}})
    steps["GCP regularize step, hybridized without static_alloc"] = step(plain_block,
                                                                           plain_trainer)
    floor_plain = load_model(MODEL, input_size=size, seed=2)
    for p in floor_plain.collect_params().values():
        p.grad_req = "null"
    floor_plain.hybridize()

    def floor_plain_step():
        with autograd.record():
            loss = loss_fn(floor_plain(x_grad), y)
        loss.backward()
        mx.nd.waitall()
    steps["all weights frozen, hybridized without static_alloc"] = floor_plain_step
    return steps


def part_a(args) -> dict:
    print(f"(a) pruning-step time: {MODEL}, {args.size} px, batch {args.step_batch}, "
          f"{_threads()}; median of at least {args.step_repeats} interleaved steps (the timing "
          f"rule's, at most 15) after {args.step_warmup} warm-up", flush=True)
    steps = _step_functions(args.size, args.step_batch)
    timed = time_until_stable(steps, min_repeats=args.step_repeats, warmup=args.step_warmup,
                              max_repeats=max(args.step_repeats, 15))
    times = timed.seconds
    med = {k: float(np.median(v)) for k, v in times.items()}
    first = next(iter(times))
    ratios = {k: ratio(v, times[first]) for k, v in times.items()}
    width = max(len(k) for k in med)
    print(f"    {'':<{width}}  {'ms/image':>9}  {'IQR':>6}  {'/ training step':>15}  {'±':>6}")
    for k, v in med.items():
        q25, q75 = np.percentile(times[k], [25, 75])
        print(f"    {k:<{width}}  {v / args.step_batch * 1e3:9.1f}  "
              f"{(q75 - q25) / args.step_batch * 1e3:6.1f}  {ratios[k]['ratio']:15.3f}  "
              f"{ratios[k]['noise'] * ratios[k]['ratio']:6.3f}")
    print(f"    ({timed.describe()}; the ratios are medians of per-round ratios)")
    result = {"ms_per_image": {k: v / args.step_batch * 1e3 for k, v in med.items()},
              "ratio": {k: r["ratio"] for k, r in ratios.items()},
              "ratio_noise": {k: r["noise"] * r["ratio"] for k, r in ratios.items()},
              "noisy": timed.describe() if timed.noisy else ""}
    if args.profile:
        result["profile"] = _profile(args)
    return result


def _profile(args) -> dict:
    """Where a step's time goes: MXNet's profiler per operator (operator bulking off, so that
    each op is timed on its own), and oneDNN's own log per primitive with bulking on, as the
    steps above ran: the log shows which convolutions compute a weight gradient."""
    worker = [sys.executable, __file__, "--size", str(args.size), "--step-batch",
              str(args.step_batch)]
    env = dict(os.environ, MXNET_EXEC_BULK_EXEC_TRAIN="0", MXNET_EXEC_BULK_EXEC_INFERENCE="0")
    out = subprocess.run(worker + ["--profile-worker"], env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    ops = json.loads(out.strip().splitlines()[-1])
    labels = list(ops)
    names = sorted(set().union(*[set(v) for v in ops.values()]),
                   key=lambda n: -max(v.get(n, 0.0) for v in ops.values()))
    print("    MXNet profiler, ms per step by operator (operator bulking off):")
    print(f"    {'operator':<30}" + "".join(f"{lab:>12}" for lab in labels))
    for name in names[:args.profile_rows]:
        print(f"    {name:<30}" + "".join(f"{ops[lab].get(name, 0.0):12.0f}" for lab in labels))
    print(f"    {'total':<30}" + "".join(f"{sum(ops[lab].values()):12.0f}" for lab in labels))

    env = dict(os.environ, DNNL_VERBOSE="1", MKLDNN_VERBOSE="1")
    out = subprocess.run(worker + ["--dnnl-worker"], env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    prims: Dict[str, Dict[str, list]] = {}
    label = None
    for line in out.splitlines():
        if line.startswith("=== "):  # "=== <label>" before the logged step, "=== end" after
            label = line[4:].strip()
            label = None if label == "end" else label
            if label:
                prims[label] = {}
        elif label and line.startswith(("dnnl_verbose,exec", "mkldnn_verbose,exec")):
            f = line.split(",")
            kind = f[3] + ("" if f[5] in ("undef", "") else " " + f[5])
            entry = prims[label].setdefault(kind, [0, 0.0])
            entry[0] += 1
            entry[1] += float(f[-1])
    labels = list(prims)
    kinds = sorted(set().union(*[set(v) for v in prims.values()]),
                   key=lambda k: -max(v.get(k, [0, 0.0])[1] for v in prims.values()))
    print("    oneDNN primitives, count and ms per step (DNNL_VERBOSE; operator bulking on, as "
          "timed above):")
    print(f"    {'primitive':<40}" + "".join(f"{lab:>16}" for lab in labels))
    for kind in kinds:
        cells = [prims[lab].get(kind, [0, 0.0]) for lab in labels]
        print(f"    {kind:<40}" + "".join(f"{c:>5d} {ms:9.0f}ms" for c, ms in cells))
    totals = {lab: sum(v[1] for v in prims[lab].values()) for lab in labels}
    print(f"    {'total (oneDNN primitives only)':<40}" +
          "".join(f"{totals[lab]:14.0f}ms" for lab in labels))
    return {"operators": ops, "onednn": prims}


def _chosen_steps(args) -> Dict[str, object]:
    steps = _step_functions(args.size, args.step_batch)
    return dict(zip(("training", "regularize", "frozen", "reg-plain", "frozen-plain"),
                    steps.values()))


def profile_worker(args) -> None:
    from mxnet import profiler
    result = {}
    for label, run in _chosen_steps(args).items():
        run()
        run()
        profiler.set_config(profile_all=True, aggregate_stats=True, filename=os.devnull)
        profiler.set_state("run")
        run()
        profiler.set_state("stop")
        stats = json.loads(profiler.dumps(reset=True, format="json"))["Time"]
        result[label] = {name: v["Total"] for name, v in stats.get("operator", {}).items()}
    print(json.dumps(result))


def dnnl_worker(args) -> None:
    for label, run in _chosen_steps(args).items():
        run()
        run()
        sys.stdout.flush()
        print(f"=== {label}", flush=True)
        run()
        sys.stdout.flush()
        print("=== end", flush=True)


# -- (b) and (c): the latency objective ----------------------------------------------------------
def part_bc(args) -> dict:
    size, batch = args.size, args.latency_batch
    shape = (3, size, size)
    net = load_model(MODEL, input_size=size, seed=0)
    graph = trace(net, (1,) + shape)
    params = network_params(net)
    path = args.table or default_table_path("cpu", batch, "float32")
    t0 = time.time()
    table = LatencyTable.open(path, batch_size=batch, repeats=args.table_repeats, warmup=2)
    latency = cost_model(graph, "latency", table=table, name=MODEL)

    def by_latency(target):
        return DATA_FREE["l1"](graph, params, latency, target)
    calibrated = len(latency.calibration)
    first = by_latency(args.target)
    first_predicted = latency.total(widths_of(first.keep))
    final, rounds = select_measured(by_latency, latency, args.target)
    table_s = time.time() - t0
    selections = {f"l1, latency α={args.target}": final}
    if any(not np.array_equal(a, b) for a, b in zip(first.keep, final.keep)):
        selections[f"l1, latency α={args.target}, 1st pass"] = first
    selections[f"l1, flops α={args.target}"] = DATA_FREE["l1"](
        graph, params, cost_model(graph, "flops"), args.target)
    print(f"\n(b) {MODEL}, batch {batch}, {size} px, {_threads()}; latency table {path}: "
          f"{table.measured} timings this run ({table_s:.0f} s)"
          f"{'' if table.measured else ', cached'}", flush=True)
    print(f"    latency objective: the 1st pass selects by the table and a calibration on "
          f"{calibrated} networks measured whole (the unpruned and uniformly halved ones"
          f"{', and pruned ones from earlier runs' if calibrated > 2 else ''}); each pruned "
          f"network chosen is then measured, added to the calibration, and the selection "
          f"repeated:")
    for r in rounds:
        print(f"      round {r['round']}: predicted {r['predicted']:.3f}, measured "
              f"{r['measured']:.3f} ±{r['noise']:.3f} of the unpruned latency (measured side by "
              f"side, {r['rounds']} interleaved batches){'' if r['met'] else ', target missed'}")

    from prunenet.training.models import build_pruned_resnet
    from prunenet.io.files import read_shapes
    import gluoncv
    zoo_dir = os.path.join(os.path.dirname(gluoncv.__file__), "model_zoo", "pruned_resnet")
    nets = {MODEL: net}
    widths = {}
    for label, sel in selections.items():
        nets[label] = prune_network(net, graph, sel.keep, MODEL).net
        widths[label] = widths_of(sel.keep)
    for name, tag in (("resnet50_v1d_0.86", "resnet50_v1d_1.8x"),
                      ("resnet50_v1d_0.48", "resnet50_v1d_3.6x")):
        shapes_file = os.path.join(zoo_dir, tag + ".json")
        nets[name] = build_pruned_resnet(MODEL, read_shapes(shapes_file), None,
                                         shapes_source=shapes_file)
    macs = {k: count(trace(n, (1,) + shape))["macs"] for k, n in nets.items()}
    speed = bench.throughput(nets, shape, batch_size=batch, repeats=args.repeats,
                             warmup=args.warmup)
    full = speed[MODEL]
    width = max(len(k) for k in nets)
    rounds = next(iter(speed.values()))["rounds"]
    print(f"    measured interleaved, median of {rounds} batches after {args.warmup} warm-up"
          + ("; TOO NOISY, see the ± column" if any(r["noisy"] for r in speed.values()) else ""))
    print(f"    {'network':<{width}}  {'GMACs':>6}  {'img/s':>6}  {'ms/batch':>8}  {'IQR':>5}  "
          f"{'latency':>7}  {'throughput':>10}  {'MACs':>9}  {'gain per':>8}")
    print(f"    {'':<{width}}  {'':>6}  {'':>6}  {'':>8}  {'':>5}  {'fraction':>7}  "
          f"{'gain':>10}  {'reduction':>9}  {'MACs red.':>8}")
    rows = {}
    for k, r in speed.items():
        gain = r["speedup"]  # the median of per-round ratios to the unpruned network
        red = macs[MODEL] / macs[k]
        rows[k] = {"macs": macs[k], "throughput_img_s": r["throughput_img_s"],
                   "latency_ms": r["latency_ms"], "latency_ms_iqr": r["latency_ms_iqr"],
                   "latency_ms_min": r["latency_ms_min"],
                   "latency_fraction": r["latency_ms"] / full["latency_ms"],
                   "throughput_gain": gain, "throughput_gain_noise": r["speedup_noise"] * gain,
                   "macs_reduction": red, "gain_per_reduction": gain / red}
        print(f"    {k:<{width}}  {macs[k] / 1e9:6.3f}  {r['throughput_img_s']:6.2f}  "
              f"{r['latency_ms']:8.0f}  {r['latency_ms_iqr']:5.0f}  "
              f"{rows[k]['latency_fraction']:7.3f}  {gain:9.2f}x  {red:8.2f}x  "
              f"{gain / red:8.2f}")

    print(f"\n(c) predicted (latency table) vs measured latency, ms per batch of {batch}")
    print(f"    {'network':<{width}}  {'predicted':>9}  {'measured':>8}  {'error':>6}  "
          f"{'min':>6}  {'error':>6}  {'pred. frac.':>11}  {'meas. frac.':>11}")
    predicted = {MODEL: latency.total()}
    predicted.update({k: latency.total(w) for k, w in widths.items()})
    first_label = f"l1, latency α={args.target}, 1st pass"
    if first_label in predicted:  # as predicted before any pruned network was measured
        predicted[first_label] = first_predicted
    for k, p in predicted.items():
        r = rows[k]
        rows[k]["predicted_ms"] = p
        print(f"    {k:<{width}}  {p:9.0f}  {r['latency_ms']:8.0f}  "
              f"{(p / r['latency_ms'] - 1) * 100:+5.1f}%  {r['latency_ms_min']:6.0f}  "
              f"{(p / r['latency_ms_min'] - 1) * 100:+5.1f}%  {p / predicted[MODEL]:11.3f}  "
              f"{r['latency_fraction']:11.3f}")
    print(f"    (predicted: the latency model after the measured rounds, except the 1st pass's "
          f"own prediction; the table's unpruned {latency.network_ms:.0f} ms and uniformly "
          f"halved {latency.half_ms:.0f} ms; near full width latency = {latency.scale:.3f} x "
          f"units {latency.constant:+.0f} ms)")
    return {"table": path, "networks": rows}


# -- (d) pruning time in training epochs, the λ search included -----------------------------------
def part_d(args) -> dict:
    """A whole GCP run (``--reg auto``: the λ search on the first step) on synthetic 32-px
    images, its pruning time (everything but the
    evaluations, the speed check and fine-tuning) over one training epoch of the unpruned
    network on the same images, measured in the same process."""
    import tempfile
    from prunenet.training import data as datasets
    from prunenet.gcp.schedule import SHRINK_GRID
    from prunenet.run.folder import data_run
    from prunenet.run.settings import DataRun
    from prunenet.training.train import BatchStream, FinetuneConfig, finetune
    images, batch = args.epoch_images, args.step_batch
    print(f"\n(d) pruning time in training epochs: {MODEL}, synthetic 3x32x32, {images} images, "
          f"batch {batch}, {_threads()}", flush=True)
    train = datasets.load("synthetic", None, train=True, num_examples=images)
    net = load_model(MODEL, classes=train.classes, input_size=32, seed=0)
    stream = BatchStream(lambda e, s: train.batches(batch, shuffle=True, seed=0, epoch=e,
                                                    start=s, drop_last=True))
    t0 = time.time()
    finetune(net, stream, FinetuneConfig(epochs=1.0), [mx.cpu()], progress=False)
    epoch_s = time.time() - t0
    rows = {}
    for label, reg in (("GCP, --reg auto", "auto"), ("GCP, λ 0.01 fixed", 0.01)):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            report = data_run(DataRun(
                model=MODEL, out=os.path.join(tmp, "run"), target=0.5, method="gcp",
                dataset="synthetic", reg=reg, steps=args.gcp_steps, epochs_per_step=1.0,
                finetune_epochs=0, batch_size=batch, train_limit=images, val_limit=batch,
                progress=False, speed_check=False), log=None)
            total = time.time() - t0
        timings = report["timings"]
        outside = sum(v for k, v in timings.items() if k.startswith(("eval", "finetune")))
        pruning = total - outside
        search_s = timings.get("reg_search_s", 0.0)
        steps_s = sum(v for k, v in timings.items() if k.startswith("step"))
        rows[label] = {"pruning_s": pruning, "epochs": pruning / epoch_s, "reg": report["reg"],
                       "steps": args.gcp_steps, "timings": timings, "search_s": search_s,
                       "search_share": search_s / steps_s if steps_s else None}
        how = (f"the λ search over {len(SHRINK_GRID)} shrink levels on short first steps, λ "
               f"{report['reg']:.3g} chosen; the search took {search_s:.0f} s, "
               f"{search_s / steps_s:.2f} of the pruning steps' {steps_s:.0f} s"
               if reg == "auto" else "no search")
        print(f"    {label} ({args.gcp_steps} steps of 1 epoch each, regularize then debias; "
              f"{how}): {pruning:.0f} s = {pruning / epoch_s:.2f} training epochs "
              f"(one epoch of the unpruned network: {epoch_s:.1f} s)")
    ratio = rows["GCP, --reg auto"]["pruning_s"] / rows["GCP, λ 0.01 fixed"]["pruning_s"]
    print(f"    the λ search makes the pruning {ratio:.2f}x as long as a fixed λ")
    return {"epoch_s": epoch_s, "runs": rows, "search_ratio": ratio}


def _threads() -> str:
    return f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=224, help="input size in pixels (default 224)")
    p.add_argument("--step-batch", type=int, default=16, help="batch of part (a) (default 16)")
    p.add_argument("--step-repeats", type=int, default=5)
    p.add_argument("--step-warmup", type=int, default=2)
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the profiler breakdown of part (a)")
    p.add_argument("--profile-rows", type=int, default=10)
    p.add_argument("--latency-batch", type=int, default=32, help="batch of (b), (c) (default 32)")
    p.add_argument("--target", type=float, default=0.5, help="α of (b) (default 0.5)")
    p.add_argument("--repeats", type=int, default=10, help="timed batches in (b) (default 10)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--table", default=None, help="latency table file (default: the cache's)")
    p.add_argument("--table-repeats", type=int, default=5,
                   help="timings per table entry; the fastest counts (default 5)")
    p.add_argument("--epoch-images", type=int, default=2048,
                   help="images in an epoch of part (d) (default 2048: fewer leave a step so "
                        "few batches that the λ candidates' 8-batch floor decides their cost)")
    p.add_argument("--gcp-steps", type=int, default=3, help="GCP steps of part (d) (default 3)")
    p.add_argument("--parts", default="abcd", help="which parts to run (default abcd)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--profile-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dnnl-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.profile_worker:
        profile_worker(args)
        return 0
    if args.dnnl_worker:
        dnnl_worker(args)
        return 0
    start = time.time()
    print(f"prunenet {prunenet.__version__}, MXNet {mx.__version__}, {os.cpu_count()} cores, "
          f"{_threads()}")
    results = {}
    if "a" in args.parts:
        results["a"] = part_a(args)
    if "b" in args.parts or "c" in args.parts:
        results["bc"] = part_bc(args)
    if "d" in args.parts:
        results["d"] = part_d(args)
    print(f"\ntotal {time.time() - start:.0f} s")
    if args.json:
        from prunenet.io.files import write_json
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
