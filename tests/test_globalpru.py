"""globalpru: its ranking loss falls while it trains, samples' rankings agree more afterwards,
a dead channel ranks last, and the selection meets the target."""
import itertools

import mxnet as mx
import numpy as np
import pytest
from scipy.stats import kendalltau

from prunenet import PrunenetError, cost_model, trace
from prunenet.methods import DATA_DRIVEN, globalpru
from prunenet.core.surgery import network_params, widths_of


def _batches(size, n=8, batch=8, seed=0):
    """Random images labelled by the signs of their first two channels' means (4 classes)."""
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(n * batch, 3, size, size)).astype(np.float32)
    y = (x[:, 0].mean(axis=(1, 2)) > 0) + 2 * (x[:, 1].mean(axis=(1, 2)) > 0)
    return [(mx.nd.array(x[i:i + batch]), mx.nd.array(y[i:i + batch].astype(np.float32)))
            for i in range(0, n * batch, batch)]


def _agreement(saliencies):
    """Mean Kendall τ between every two samples' rankings of all prunable channels."""
    return np.mean([kendalltau(a, b)[0] for a, b in itertools.combinations(saliencies, 2)])


def test_ranking_loss_falls_and_samples_agree_more(random_net):
    net = random_net("resnet18_v1b", 32, classes=4)
    graph = trace(net, (1, 3, 32, 32))
    batches = _batches(32)
    probe = batches[0][0]
    untrained = globalpru.train(graph, net, batches, probe.shape,
                                cfg=globalpru.GlobalPruConfig(steps=1, lr=0.0))
    trained = globalpru.train(graph, net, batches, probe.shape,
                              cfg=globalpru.GlobalPruConfig(steps=24))
    losses = trained.rank_loss
    assert len(losses) == 24 and np.mean(losses[-4:]) < np.mean(losses[:4])
    before = _agreement(globalpru.saliencies(untrained, graph, probe))
    after = _agreement(globalpru.saliencies(trained, graph, probe))
    assert after > before, (before, after)


def test_ranks_a_dead_channel_last_and_meets_the_target(conv_chain):
    net = conv_chain(3, 16, 0, classes=4, prefix="gpchain_")
    graph = trace(net, (1, 3, 8, 8))
    group = graph.prunable_groups[1]
    norm = next(n for n in graph.norms.values() if n.producer == group.producers[0])
    params = net.collect_params()
    dead = 5
    for name, value in ((norm.gamma, 0.05), (norm.beta, -8.0)):  # zero after the ReLU
        array = params[name].data().asnumpy()
        array[dead] = value
        params[name].set_data(mx.nd.array(array))
    batches = _batches(8)
    cfg = globalpru.GlobalPruConfig(steps=30)
    trained = globalpru.train(graph, net, batches, batches[0][0].shape, cfg=cfg)
    scores = np.concatenate([trained.scores[g.index] for g in graph.prunable_groups])
    offset = sum(g.width for g in graph.prunable_groups[:1])
    assert scores.argmin() == offset + dead
    cost = cost_model(graph, "flops")
    sel = DATA_DRIVEN["globalpru"](graph, network_params(net), cost, 0.9999, round_to=1,
                                   min_width=1, net=net, batches=batches, cfg=cfg)
    assert sel.blocks_removed == 1 and np.flatnonzero(~sel.keep[group.index]).tolist() == [dead]
    sel = DATA_DRIVEN["globalpru"](graph, network_params(net), cost, 0.5, round_to=2,
                                   min_width=2, net=net, batches=batches, cfg=cfg)
    assert 0.5 - sel.granularity < sel.achieved <= 0.5
    assert sel.achieved == pytest.approx(cost.total(widths_of(sel.keep)) / cost.total())


def test_needs_data(conv_chain):
    net = conv_chain(2, 8, 0, prefix="gpempty_")
    graph = trace(net, (1, 3, 8, 8))
    cost = cost_model(graph, "flops")
    with pytest.raises(PrunenetError, match="needs data"):
        globalpru.select_channels(graph, network_params(net), cost, 0.5)
    with pytest.raises(PrunenetError, match="no batches"):
        globalpru.select_channels(graph, network_params(net), cost, 0.5, net=net, batches=[])
