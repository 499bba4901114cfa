"""Selection to a cost target: granularity, min_width, feasibility, determinism."""
import numpy as np
import pytest

from prunenet import InfeasibleTargetError, cost_model, trace
from prunenet.core.select import select
from prunenet.methods import DATA_FREE
from prunenet.core.surgery import network_params, widths_of


@pytest.fixture(scope="module")
def resnet50(random_net):
    net = random_net("resnet50_v1d", 224)
    return trace(net, (1, 3, 224, 224)), network_params(net)


@pytest.mark.parametrize("method", sorted(DATA_FREE))
@pytest.mark.parametrize("objective", ["flops", "params"])
@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_achieved_within_one_block_below_target(resnet50, method, objective, target):
    graph, params = resnet50
    cost = cost_model(graph, objective)
    options = {"time_limit": 1.0} if method == "qcqp" else {}  # the contract, not the optimum
    sel = DATA_FREE[method](graph, params, cost, target, **options)
    assert target - sel.granularity < sel.achieved <= target
    assert sel.achieved == pytest.approx(cost.total(widths_of(sel.keep)) / cost.total())
    if target == 0.5:
        assert target - sel.achieved < 0.01
    for g in graph.groups:
        width = int(sel.keep[g.index].sum())
        if g.prunable:
            assert width >= 8 and (g.width - width) % 8 == 0
        else:
            assert width == g.width


def test_uniform_keeps_the_same_fraction_everywhere(resnet50):
    graph, params = resnet50
    sel = DATA_FREE["uniform"](graph, params, cost_model(graph, "flops"), 0.5)
    fractions = [sel.keep[g.index].mean() for g in graph.prunable_groups
                 if g.width >= 64]  # narrower groups move in coarser steps of 8
    assert max(fractions) - min(fractions) <= 8 / 64 + 1e-9


def test_target_below_min_width_names_the_smallest_reachable(resnet50):
    graph, params = resnet50
    cost = cost_model(graph, "flops")
    with pytest.raises(InfeasibleTargetError, match=r"smallest reachable cost fraction 0\.\d+") \
            as info:
        DATA_FREE["l1"](graph, params, cost, 1e-4)
    smallest = info.value.smallest
    sel = DATA_FREE["l1"](graph, params, cost, smallest + 1e-6)
    assert all(sel.keep[g.index].sum() == 8 or g.width - 8 < 8 for g in graph.prunable_groups)


def test_min_width_and_round_to_are_respected(resnet50):
    graph, params = resnet50
    cost = cost_model(graph, "params")
    scores = [np.random.RandomState(3).rand(g.width) for g in graph.groups]
    sel = select(graph, cost, scores, 0.3, round_to=16, min_width=32)
    for g in graph.prunable_groups:
        width = sel.keep[g.index].sum()
        assert width >= min(32, g.width) and (g.width - width) % 16 == 0


def test_lowest_scores_go_first_and_ties_are_deterministic(resnet50):
    graph, _ = resnet50
    cost = cost_model(graph, "flops")
    equal = [np.ones(g.width) for g in graph.groups]
    a = select(graph, cost, equal, 0.8)
    b = select(graph, cost, equal, 0.8)
    assert all((x == y).all() for x, y in zip(a.keep, b.keep))
    # with equal scores the first block to go is the one that saves most; its channels are the
    # group's lowest indices
    first = select(graph, cost, equal, 0.9999)
    assert first.blocks_removed == 1
    gi = next(i for i, k in enumerate(first.keep) if not k.all())
    savings = {g.index: cost.saving(graph.full_widths(), g.index, 8) for g in graph.prunable_groups}
    assert savings[gi] == max(savings.values())
    assert list(np.flatnonzero(~first.keep[gi])) == list(range(8))
    # one channel scored lowest everywhere: it goes in the first block of its group
    scores = [np.linspace(1, 2, g.width) for g in graph.groups]
    target_group = graph.prunable_groups[5].index
    scores[target_group][17] = 0.0
    scores[target_group][:8] = 2.0
    sel = select(graph, cost, scores, 0.9999)
    assert sel.blocks_removed == 1 and not sel.keep[target_group][17]


def test_bad_target_is_rejected(resnet50):
    graph, _ = resnet50
    from prunenet import PrunenetError
    for target in (0.0, -0.5, 1.5):
        with pytest.raises(PrunenetError, match="must lie in"):
            select(graph, cost_model(graph, "flops"), [np.ones(g.width) for g in graph.groups],
                   target)
