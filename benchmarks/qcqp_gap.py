"""How far qcqp-greedy (with and without its swap step) and l1 fall below the exact qcqp optimum
on small conv chains, on qcqp's own objective.

    PYTHONPATH=. python benchmarks/qcqp_gap.py [--seeds 10] [--width 16] [--round-to 4]

Chains: three 3×3 conv-BN-ReLU layers of ``width`` channels and a 10-way dense layer, Xavier
weights with per-filter scales spread over [0.1, 3], BN γ in [0.2, 2], σ² in [0.5, 2]. The exact
solution is ``qcqp`` at the channel level, proven optimal by HiGHS (checked per case).
"""
import argparse
import itertools
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from conftest import conv_chain  # noqa: E402
from prunenet import cost_model, trace  # noqa: E402
from prunenet.methods import DATA_FREE, qcqp, qcqp_exact  # noqa: E402
from prunenet.core.surgery import network_params  # noqa: E402


def chain(seed: int, width: int):
    import mxnet as mx
    net = conv_chain(3, width, seed, prefix=f"gap{seed}_")
    rng = np.random.RandomState(seed)
    for name, p in net.collect_params().items():
        if name.endswith("gamma"):
            p.set_data(mx.nd.array(rng.uniform(0.2, 2.0, p.shape)))
        elif name.endswith("running_var"):
            p.set_data(mx.nd.array(rng.uniform(0.5, 2.0, p.shape)))
        elif name.endswith("weight"):
            scale = rng.uniform(0.1, 3.0, (p.shape[0],) + (1,) * (len(p.shape) - 1))
            p.set_data(p.data() * mx.nd.array(scale))
    return trace(net, (1, 3, 8, 8)), network_params(net)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--round-to", type=int, default=4)
    args = ap.parse_args()
    gaps = {"qcqp-greedy, no swap": [], "qcqp-greedy": [], "l1": []}
    for seed, objective, target in itertools.product(range(args.seeds), ["flops", "params"],
                                                     [0.5, 0.3]):
        graph, params = chain(seed, args.width)
        cost = cost_model(graph, objective)
        opts = dict(round_to=args.round_to, min_width=args.round_to)
        exact = qcqp_exact.select_channels(graph, params, cost, target, level="channel", **opts)
        assert exact.solver["proven_optimal"], exact.solver
        best = qcqp.kept_importance(graph, params, exact.keep)
        runs = {"qcqp-greedy, no swap": qcqp.select_channels(graph, params, cost, target,
                                                             swaps=False, **opts),
                "qcqp-greedy": DATA_FREE["qcqp-greedy"](graph, params, cost, target, **opts),
                "l1": DATA_FREE["l1"](graph, params, cost, target, **opts)}
        for name, sel in runs.items():
            gaps[name].append(1 - qcqp.kept_importance(graph, params, sel.keep) / best)
    n = len(gaps["l1"])
    print(f"{n} cases (seeds {args.seeds} x flops/params x alpha 0.5/0.3), width {args.width}, "
          f"blocks of {args.round_to}: shortfall below the exact optimum")
    for name, g in gaps.items():
        g = np.array(g)
        print(f"  {name:22s} mean {100 * g.mean():5.2f} %  max {100 * g.max():5.2f} %  "
              f"optimal in {int((g < 1e-9).sum())}/{n}")


if __name__ == "__main__":
    main()
