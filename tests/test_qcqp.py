"""qcqp solved exactly: brute-force optima on small chains, never below its greedy or l1 on its
own objective, the budget kept, and a time-limited solve that reports its gap."""
import itertools
import time

import mxnet as mx
import numpy as np
import pytest

from prunenet import PrunenetError, cost_model, trace
from prunenet.core.costs import MacsCost
from prunenet.methods import DATA_FREE, qcqp, qcqp_exact
from prunenet.core.surgery import network_params, widths_of

WIDTH, ROUND, FLOOR = 8, 2, 2


def _chain(conv_chain, seed):
    """conv-BN-ReLU ×3 (width 8) then a 10-way dense layer, with spread-out filter scales."""
    net = conv_chain(3, WIDTH, seed, prefix=f"chain{seed}_")
    rng = np.random.RandomState(seed)
    for name, p in net.collect_params().items():
        if name.endswith("gamma"):
            p.set_data(mx.nd.array(rng.uniform(0.2, 2.0, p.shape)))
        elif name.endswith("running_var"):
            p.set_data(mx.nd.array(rng.uniform(0.5, 2.0, p.shape)))
        elif name.endswith("weight"):
            scale = rng.uniform(0.1, 3.0, (p.shape[0],) + (1,) * (len(p.shape) - 1))
            p.set_data(p.data() * mx.nd.array(scale))
    graph = trace(net, (1, 3, 8, 8))
    return graph, network_params(net)


@pytest.fixture(scope="module")
def chains(conv_chain):
    return [_chain(conv_chain, seed) for seed in range(3)]


def _energies(graph, params):
    """Per layer, the squared BN-folded kernel norms over their total, straight from params."""
    out = {}
    for name, layer in graph.layers.items():
        w = np.asarray(params[layer.weight], dtype=np.float64)
        w = w.reshape(w.shape[0], w.shape[1], -1)
        norm = next((n for n in graph.norms.values() if n.producer == name), None)
        if norm is not None:
            w = w * (np.abs(params[norm.gamma]) / np.sqrt(params[norm.running_var] + norm.eps)
                     )[:, None, None]
        e = (w ** 2).sum(axis=2)
        out[name] = e / e.sum()
    return out


def _brute_force(graph, params, cost, target):
    """The best I(keep) over every keep mask (blocks of 2, at least 2 kept) within the budget:
    every mask of the middle group, and for each the best masks of the outer two per width."""
    first, middle, last = [g.index for g in graph.prunable_groups]
    energy = _energies(graph, params)
    layer = {(graph.space_group[lay.out_space], graph.space_group[lay.in_layout[0]]): energy[n]
             for n, lay in graph.layers.items()}
    masks = np.array([m for m in itertools.product([0, 1], repeat=WIDTH)
                      if sum(m) >= FLOOR and (WIDTH - sum(m)) % ROUND == 0], dtype=np.float64)
    sizes = masks.sum(axis=1).astype(int)
    into_first = layer[(first, 0)].sum(axis=1)  # the input image is never pruned
    out_of_last = layer[(graph.groups[-1].index, last)].sum(axis=0)  # the classifier's rows stay
    budget, full, best = target * cost.total(), graph.full_widths(), -np.inf
    for x2 in masks:
        v1 = masks @ (into_first + layer[(middle, first)].T @ x2)
        v3 = masks @ (layer[(last, middle)] @ x2 + out_of_last)
        for w1, w3 in itertools.product(np.unique(sizes), repeat=2):
            widths = full.copy()
            widths[[first, middle, last]] = w1, int(x2.sum()), w3
            if cost.total(widths) <= budget:
                best = max(best, v1[sizes == w1].max() + v3[sizes == w3].max())
    return best


@pytest.mark.parametrize("objective", ["flops", "params"])
@pytest.mark.parametrize("target", [0.5, 0.3])
def test_equals_the_brute_force_optimum_on_chains(chains, objective, target):
    for graph, params in chains:
        cost = cost_model(graph, objective)
        sel = qcqp_exact.select_channels(graph, params, cost, target, round_to=ROUND,
                                         min_width=FLOOR)
        best = _brute_force(graph, params, cost, target)
        value = qcqp.kept_importance(graph, params, sel.keep)
        assert sel.solver["level"] == "channel" and sel.solver["proven_optimal"]
        assert value == pytest.approx(best, rel=1e-9), (objective, target)
        assert sel.solver["objective"] == pytest.approx(value)
        assert sel.achieved <= target and sel.cost == cost.total(widths_of(sel.keep))
        for other in ("qcqp-greedy", "l1"):
            other_keep = DATA_FREE[other](graph, params, cost, target, round_to=ROUND,
                                          min_width=FLOOR).keep
            assert value >= qcqp.kept_importance(graph, params, other_keep) - 1e-12


def test_swap_step_reaches_what_removal_and_refill_miss(chains):
    """On the chains, the swap step never loses and gains somewhere, getting closer to optimal."""
    gained = 0
    for (graph, params), objective, target in itertools.product(chains, ["flops", "params"],
                                                                [0.5, 0.3]):
        cost = cost_model(graph, objective)
        runs = [qcqp.select_channels(graph, params, cost, target, round_to=ROUND,
                                     min_width=FLOOR, swaps=s) for s in (False, True)]
        plain, swapped = (qcqp.kept_importance(graph, params, r.keep) for r in runs)
        assert swapped >= plain and runs[1].achieved <= target
        gained += swapped > plain * (1 + 1e-9)
    assert gained >= 1


@pytest.fixture(scope="module")
def resnet20(random_net):
    net = random_net("cifar_resnet20_v1", 32, classes=10)
    return trace(net, (1, 3, 32, 32)), network_params(net)


@pytest.mark.parametrize("objective", ["flops", "params"])
def test_never_below_greedy_l1_or_uniform_on_a_resnet(resnet20, objective):
    graph, params = resnet20
    cost = cost_model(graph, objective)
    sel = qcqp_exact.select_channels(graph, params, cost, 0.5, time_limit=30)
    value = qcqp.kept_importance(graph, params, sel.keep)
    assert sel.solver["level"] == "block" and sel.achieved <= 0.5
    assert 0.5 - sel.granularity < sel.achieved
    assert sel.solver["bound"] >= value * (1 - 1e-9)
    for other in ("qcqp-greedy", "l1", "uniform"):
        assert value >= qcqp.kept_importance(graph, params,
                                             DATA_FREE[other](graph, params, cost, 0.5).keep)


def test_time_limited_solve_on_resnet50_reports_its_gap(random_net):
    net = random_net("resnet50_v1d", 224)
    graph, params = trace(net, (1, 3, 224, 224)), network_params(net)
    # 6 s: HiGHS has its root bound (about 2 s here) but not the optimum of ResNet-50's program
    cost, limit = cost_model(graph, "flops"), 6.0
    start = time.time()
    sel = qcqp_exact.select_channels(graph, params, cost, 0.5, time_limit=limit)
    elapsed = time.time() - start
    info = sel.solver
    assert elapsed <= limit * 1.1, elapsed
    assert sel.achieved <= 0.5 and info["objective"] >= info["greedy_objective"]
    assert not info["proven_optimal"] and "time limit" in info["status"].lower()
    # the gap is HiGHS's bound over what was returned; a missing bound would be None
    assert info["gap"] is not None and info["gap"] > 0
    assert info["bound"] == pytest.approx(info["objective"] * (1 + info["gap"]))


def test_refuses_a_cost_that_is_not_bilinear(chains):
    graph, params = chains[0]

    class Curved(MacsCost):
        name = "curved"

        def layer_cost(self, layer, in_width, out_width):
            return super().layer_cost(layer, in_width, out_width) ** 1.5

    with pytest.raises(PrunenetError, match="bilinear.*qcqp-greedy"):
        qcqp_exact.select_channels(graph, params, Curved(graph), 0.5, round_to=ROUND,
                                   min_width=FLOOR)
    with pytest.raises(PrunenetError, match="time_limit"):
        qcqp_exact.select_channels(graph, params, cost_model(graph, "flops"), 0.5,
                                   time_limit=0)
