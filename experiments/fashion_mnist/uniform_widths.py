"""Why the Figure 1 uniform cells chose other widths on other seeds: the widths ``uniform``
selects at a latency target for seeds 0-2, from the latency table as one commit holds it, cut
to the networks it had measured before a given cell ran (the table's calibration grows by every
network a latency check measures; see docs/results/figure1.md). Nothing is measured: the
selection reads the table only (a copy in a temporary folder).

    OMP_NUM_THREADS=1 python experiments/fashion_mnist/uniform_widths.py --at 611721f --networks 4
    OMP_NUM_THREADS=1 python experiments/fashion_mnist/uniform_widths.py --at e1034b6 --networks 20

The first is the table as seed 0's uniform cell at 0.25 found it, the second as seed 1's did;
each line ends with the widths the cell itself recorded, for comparison.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RESULTS = "experiments/results/fashion_mnist_figure1"


def table_at(rev: str, networks: int, folder: str) -> str:
    """The latency table at ``rev`` with only its first ``networks`` networks, as a file."""
    text = subprocess.run(["git", "show", f"{rev}:{RESULTS}/latency-table.json"], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout
    table = json.loads(text)
    table["networks"] = dict(list(table["networks"].items())[:networks])
    path = os.path.join(folder, "latency-table.json")
    with open(path, "w") as f:
        json.dump(table, f)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--at", required=True, help="the commit whose latency table to read")
    ap.add_argument("--networks", type=int, required=True,
                    help="how many of its measured networks (in the order measured) to keep")
    ap.add_argument("--target", type=float, default=0.25, help="latency fraction (0.25)")
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    from prunenet.core.surgery import network_params, widths_of
    from prunenet.io.files import read_json
    from prunenet.run.pipeline import method_selection, objective_cost, traced
    from prunenet.training.models import load_model

    net = load_model("resnet50_v1b", classes=10, channels=1, input_size=64)
    graph = traced(net, (1, 1, 64, 64))
    params = network_params(net)
    with tempfile.TemporaryDirectory() as folder:
        cost = objective_cost(graph, "latency", model="resnet50_v1b", runtime="onnxruntime",
                              latency_table=table_at(args.at, args.networks, folder))
        for seed in (0, 1, 2):
            sel = method_selection("uniform", graph, params, cost, args.target, seed=seed)
            print(f"seed {seed}: predicted {sel.achieved:.4f}, widths "
                  f"{[int(w) for w in widths_of(sel.keep)]}")
    for seed in (0, 1, 2):
        path = os.path.join(ROOT, RESULTS, "cells", f"resnet50_v1b-uniform-{args.target:g}-s{seed}",
                            "report.json")
        if os.path.exists(path):
            widths = [w[0] for w in read_json(path, "run report")["group_widths"]]
            print(f"the cell of seed {seed} recorded {widths}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
