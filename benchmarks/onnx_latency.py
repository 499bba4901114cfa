"""Issue #28's benchmark: pruned for FLOPs, for latency in MXNet, for latency in ONNX Runtime —
each network's latency in both runtimes, as a fraction of the unpruned one, side by side.

For each case (network, input size) and batch size, the unpruned network is pruned to α = 0.5 by

  (i)   l1, flops objective
  (ii)  l1, latency objective measured in MXNet          (--runtime mxnet)
  (iii) l1, latency objective measured in ONNX Runtime   (--runtime onnxruntime)

plus, for resnet50_v1d, GluonCV's own resnet50_v1d_0.86 and _0.48 architectures (the shape files
shipped in gluoncv/model_zoo/pruned_resnet: 1.8x and 3.6x). Then every network is timed in both
runtimes in ONE interleaved run (``prunenet.latency.throughput.throughput(..., runtime="both")``), and the table
gives its latency as a fraction of the unpruned network's in the same runtime (the median of
per-round ratios, ± its noise) and its gain per MACs reduction: measured speed-up ÷ MACs
reduction (1.0: every MAC removed bought its share of time).

Weights are random (latency does not depend on their values) and nothing is downloaded. Not a
test: run it on an idle machine, one thread per core as deployed, e.g.

    OMP_NUM_THREADS=2 python benchmarks/onnx_latency.py --out benchmarks/onnx_latency.json
    python benchmarks/onnx_latency.py --quick --batch-sizes 1   # resnet18_v1b at 64 px

Latency tables go to $PRUNENET_CACHE as usual (reused by later runs on this machine).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

CASES = {"resnet18_v1b": 64, "resnet50_v1d": 224}
GLUONCV_SHAPES = {"resnet50_v1d": {"gluoncv_0.86": "resnet50_v1d_1.8x.json",
                                   "gluoncv_0.48": "resnet50_v1d_3.6x.json"}}


def _networks(model: str, size: int, batch: int, alpha: float, log) -> dict:
    """label -> (network, MACs per image, note) for one case and batch size."""
    import gluoncv
    from prunenet import PrunenetError, trace
    from prunenet.core.costs import count
    from prunenet.io.files import read_shapes
    from prunenet.training.models import load_model
    from prunenet.zoo.pruned import prune_network
    from prunenet.run.pipeline import method_selection, objective_cost, select_with
    from prunenet.core.surgery import network_params, widths_of
    net = load_model(model, input_size=size)
    shape = (1, 3, size, size)
    graph = trace(net, shape)
    params = network_params(net)
    out = {"unpruned": (net, count(graph)["macs"], "")}
    for label, objective, runtime in (("l1-flops", "flops", "mxnet"),
                                      ("l1-latency-mxnet", "latency", "mxnet"),
                                      ("l1-latency-onnxruntime", "latency", "onnxruntime")):
        t0 = time.time()
        try:
            cost = objective_cost(graph, objective, model, latency_batch_size=batch,
                                  runtime=runtime)
            selection, fields = select_with(
                lambda a: method_selection("l1", graph, params, cost, a), cost, alpha)
        except PrunenetError as err:
            log(f"{model} {size}px batch {batch} {label}: refused: {err}")
            out[label] = (None, None, f"refused: {err}")
            continue
        pruned = prune_network(net, graph, selection.keep, model).net
        note = ""
        if fields:
            note = (f"measured {fields['latency_fraction_measured']:.3f} "
                    f"±{fields['latency_fraction_noise']:.3f} in its runtime at selection")
        log(f"{model} {size}px batch {batch} {label}: selected in {time.time() - t0:.0f} s; "
            f"{note}")
        out[label] = (pruned, count(graph, widths_of(selection.keep))["macs"], note)
    folder = os.path.join(os.path.dirname(gluoncv.__file__), "model_zoo", "pruned_resnet")
    for label, fname in GLUONCV_SHAPES.get(model, {}).items():
        path = os.path.join(folder, fname)
        pruned = load_model(model, shapes=read_shapes(path), shapes_source=path,
                            input_size=size)
        out[label] = (pruned, count(trace(pruned, shape))["macs"], fname)
    return out


def run(cases: dict, batches, alpha: float, repeats: int, log=print) -> list:
    from prunenet.latency.throughput import throughput
    rows = []
    for model, size in cases.items():
        for batch in batches:
            nets = _networks(model, size, batch, alpha, log)
            timed = {k: v[0] for k, v in nets.items() if v[0] is not None}
            result = throughput(timed, (3, size, size), batch_size=batch, repeats=repeats,
                                warmup=2, runtime="both")
            full_macs = nets["unpruned"][1]
            for label, (_, macs, note) in nets.items():
                row = {"model": model, "input_size": size, "batch_size": batch,
                       "network": label, "macs": macs, "note": note}
                if macs is not None:
                    row["macs_reduction"] = full_macs / macs
                    for rt in ("mxnet", "onnxruntime"):
                        r = result[f"{label}@{rt}"]
                        row[rt] = {"latency_ms": r["latency_ms"],
                                   "fraction": 1 / r["speedup"],
                                   "noise": r["speedup_noise"] / r["speedup"],
                                   "gain_per_macs_reduction":
                                       r["speedup"] / row["macs_reduction"],
                                   "noisy": r["noisy"]}
                rows.append(row)
    return rows


def table(rows: list) -> str:
    lines = ["| network | input | batch | pruned | MACs reduction | latency fraction, MXNet | "
             "latency fraction, ONNX Runtime | gain per MACs reduction, MXNet | "
             "gain per MACs reduction, ONNX Runtime |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "mxnet" not in r:
            lines.append(f"| {r['model']} | {r['input_size']} | {r['batch_size']} | "
                         f"{r['network']} | {r['note']} | | | | |")
            continue
        cells = [f"{r[rt]['fraction']:.3f} ±{r[rt]['noise'] * r[rt]['fraction']:.3f}"
                 for rt in ("mxnet", "onnxruntime")]
        gains = [f"{r[rt]['gain_per_macs_reduction']:.2f}" for rt in ("mxnet", "onnxruntime")]
        lines.append(f"| {r['model']} | {r['input_size']} | {r['batch_size']} | {r['network']} | "
                     f"{r['macs_reduction']:.2f}x | {cells[0]} | {cells[1]} | {gains[0]} | "
                     f"{gains[1]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="resnet18_v1b at 64 px only (a few minutes per batch size)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=10, help="timed rounds at least")
    p.add_argument("--out", default=None, help="write the rows as JSON here too")
    args = p.parse_args(argv)
    cases = {"resnet18_v1b": 64} if args.quick else CASES
    batches = args.batch_sizes
    log = (lambda line: print(line, file=sys.stderr, flush=True))
    rows = run(cases, batches, args.alpha, args.repeats, log)
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(all)')}; α "
          f"{args.alpha}; command: python benchmarks/onnx_latency.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}")
    print(table(rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
