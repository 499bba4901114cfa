"""The GCP invariants of DESIGN.md, on networks whose BatchNorm is randomised first."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from prunenet import cost_model, trace
from prunenet.gcp.schedule import GCPSchedule, GCPConfig
from prunenet.zoo.pruned import prune_network
from prunenet.training.train import BatchStream
from prunenet.gcp.masked import DEBIAS, REGULARIZE, MaskedNetwork


def _x(shape, seed=0):
    return mx.nd.array(np.random.RandomState(seed).normal(size=shape))


def _toy_stream(size, classes=10, n=128, batch=32, seed=0):
    """A small learnable dataset: class-dependent means plus noise."""
    rng = np.random.RandomState(seed)
    means = rng.normal(size=(classes, 3, 1, 1)).astype(np.float32)
    y = rng.randint(0, classes, n)
    x = (rng.normal(size=(n, 3, size, size)) * 0.5 + means[y]).astype(np.float32)

    class Epoch:
        def __init__(self, epoch, start):
            self.order = np.random.RandomState(epoch).permutation(n)
            self.start = start

        def __len__(self):
            return n // batch

        def __iter__(self):
            for b in range(self.start, n // batch):
                idx = self.order[b * batch:(b + 1) * batch]
                yield mx.nd.array(x[idx]), mx.nd.array(y[idx])

    return lambda epoch, start: Epoch(epoch, start)


def _wrapped(random_net, name, size, seed=0):
    net = random_net(name, size, seed=seed)
    graph = trace(net, (1, 3, size, size))
    return net, graph, MaskedNetwork(net, graph)


@pytest.mark.parametrize("name,size", [("resnet18_v1b", 32), ("resnet50_v1d", 32),
                                       ("cifar_resnet20_v1", 16)])
def test_masks_and_rescale_preserve_outputs(name, size, random_net):
    net = random_net(name, size)
    x = _x((2, 3, size, size))
    ref = net(x).asnumpy()
    graph = trace(net, (1, 3, size, size))
    w = MaskedNetwork(net, graph)
    scale = np.abs(ref).max()
    for phase in (REGULARIZE, DEBIAS):  # outside autograd both use running statistics
        np.testing.assert_allclose(w.block(phase)(x).asnumpy(), ref, atol=2e-5 * scale)
    before = w.scores()
    w.rescale()
    np.testing.assert_allclose(w.block(REGULARIZE)(x).asnumpy(), ref, atol=2e-5 * scale)
    # after rescale, every consumer column of a kept channel has unit norm: |s| is the score
    for g in graph.prunable_groups:
        np.testing.assert_allclose(w.consumer_norms(g.index), 1.0, rtol=1e-4)
    assert any(not np.allclose(a, b) for a, b in zip(before, w.scores()))


@pytest.mark.parametrize("rule", ["mean", "sum"])
def test_tied_groups_share_one_mask_initialised_from_producer_gammas(rule, random_net):
    net = random_net("resnet50_v1d", 32)
    graph = trace(net, (1, 3, 32, 32))
    w = MaskedNetwork(net, graph, stream_score=rule)
    gammas = {name: p.data().asnumpy().copy() for name, p in net.collect_params().items()
              if name.endswith("_gamma")}
    streams = [g for g in graph.groups if g.tied]
    assert sorted(w.masked_groups) == [g.index for g in streams]
    net_b = random_net("resnet50_v1d", 32)  # the same seeded weights, not wrapped
    originals = {name: p.data().asnumpy() for name, p in net_b.collect_params().items()}
    for g in streams:
        norms = [graph.norms[n] for n in g.norms]
        squares = sum(originals[n.gamma].astype(np.float64) ** 2 for n in norms)
        # "sum": the norm over the producers; "mean": their quadratic mean
        expected = np.sqrt(squares / (len(norms) if rule == "mean" else 1))
        np.testing.assert_allclose(w.get(w.mask_name(g.index)), expected, rtol=1e-5)
        for n in norms:  # γ divided by the mask
            np.testing.assert_allclose(gammas[n.gamma] * expected, originals[n.gamma], rtol=1e-4,
                                       atol=1e-6)
    # in the regularize step the tied producers' γ are not trained; the mask is
    reg = w.trainable_params(REGULARIZE)
    for g in streams:
        assert w.mask_name(g.index) in reg
        assert all(graph.norms[n].gamma not in reg for n in g.norms)
    assert all(graph.norms[n].gamma in w.trainable_params(DEBIAS)
               for g in streams for n in g.norms)


def test_regularize_gradients_match_finite_differences(random_net):
    """With BatchNorm on running statistics, autograd's gradients of every trained scale are
    the true ones, including BN scales upstream of the last BatchNorm."""
    net, graph, w = _wrapped(random_net, "cifar_resnet20_v1", 8, seed=3)
    block = w.block(REGULARIZE)
    block.cast("float64")
    x = _x((4, 3, 8, 8), seed=1).astype("float64")
    y = mx.nd.array([1, 2, 3, 4], dtype="float64")
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def loss():
        return float(loss_fn(block(x), y).sum().asscalar())

    with autograd.record():
        out = loss_fn(block(x), y).sum()
    out.backward()
    norms = list(graph.norms.values())
    checked = [norms[0].gamma, norms[1].gamma, norms[len(norms) // 2].beta, norms[-2].gamma,
               w.mask_name(w.masked_groups[0]), w.mask_name(w.masked_groups[-1])]
    rng = np.random.RandomState(0)
    for name in checked:
        param = w._param(name)
        grad = param.grad().asnumpy()
        value = param.data().asnumpy()
        for i in rng.choice(value.size, 3, replace=False):
            h = 1e-6  # float64: small enough that no ReLU kink lies within ±h
            plus, minus = value.copy(), value.copy()
            plus[i] += h
            minus[i] -= h
            param.set_data(mx.nd.array(plus, dtype="float64"))
            lp = loss()
            param.set_data(mx.nd.array(minus, dtype="float64"))
            lm = loss()
            param.set_data(mx.nd.array(value, dtype="float64"))
            fd = (lp - lm) / (2 * h)
            assert fd == pytest.approx(grad[i], rel=1e-4, abs=1e-7), (name, i)


def _run_steps(random_net, name, size, target=0.5, steps=2, reg=0.05, seed=0):
    net, graph, w = _wrapped(random_net, name, size, seed=seed)
    cost = cost_model(graph, "flops")
    gcp = GCPSchedule(w, cost, GCPConfig(target=target, steps=steps, reg=reg, epochs_per_step=1,
                                         lr=0.02),
                      [mx.cpu()], progress=False)
    stream = BatchStream(_toy_stream(size))
    records = []
    for t in range(1, steps + 1):
        records += gcp.run_step(t, stream)
    return net, graph, w, gcp, records


def test_conv_weights_frozen_and_bn_statistics_only_move_in_debias(random_net):
    import prunenet.gcp.prox  # noqa: F401  (registers 'proxsgd')
    from prunenet.training.train import run_batches
    net, graph, w = _wrapped(random_net, "cifar_resnet20_v1", 16)
    params = net.collect_params()
    convs = {layer.weight for layer in graph.layers.values()} - \
        {graph.layers[c].weight for c in w.classifier}
    stats = [n for name in graph.norms for n in (graph.norms[name].running_mean,
                                                 graph.norms[name].running_var)]
    w.rescale()
    snapshot = {n: params[n].data().asnumpy().copy() for n in convs | set(stats)}
    gamma = graph.norms[list(graph.norms)[1]].gamma
    g_before = params[gamma].data().asnumpy().copy()
    stream = BatchStream(_toy_stream(16))
    reg = gluon.Trainer(w.trainable_params(REGULARIZE), "proxsgd",
                        {"learning_rate": 0.02, "momentum": 0.9, "thresholds": {}})
    run_batches(w.block(REGULARIZE), reg, stream.take(1), [mx.cpu()], progress=False)
    mx.nd.waitall()
    for n in convs | set(stats):  # conv weights and BN statistics bit-identical
        np.testing.assert_array_equal(params[n].data().asnumpy(), snapshot[n], err_msg=n)
    assert not np.array_equal(params[gamma].data().asnumpy(), g_before)  # γ did train
    deb = gluon.Trainer(w.trainable_params(DEBIAS), "sgd", {"learning_rate": 0.01})
    run_batches(w.block(DEBIAS), deb, stream.take(1), [mx.cpu()], progress=False)
    mx.nd.waitall()
    for n in convs:
        np.testing.assert_array_equal(params[n].data().asnumpy(), snapshot[n], err_msg=n)
    assert all(not np.array_equal(params[n].data().asnumpy(), snapshot[n]) for n in stats)


def test_folding_into_the_classifier_is_exact():
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(16, 3, padding=1), gluon.nn.BatchNorm(), gluon.nn.Activation("relu"),
            gluon.nn.Conv2D(16, 3, padding=1), gluon.nn.BatchNorm(), gluon.nn.Activation("relu"),
            gluon.nn.GlobalAvgPool2D(), gluon.nn.Dense(5))
    net.initialize(mx.init.Xavier())
    x = _x((3, 3, 8, 8))
    net(x)
    from prunenet.training.models import randomize_batchnorm
    randomize_batchnorm(net, seed=4)
    graph = trace(net, (1, 3, 8, 8))
    w = MaskedNetwork(net, graph)
    last = graph.groups[2]  # the second conv's channels, read only by the dense layer
    assert graph.layers[last.consumers[0]].op == "FullyConnected"
    norm = w._bn_of[last.producers[0]]
    gamma, beta = w.get(norm.gamma), w.get(norm.beta)
    gamma[:8], beta[:8] = 0, np.abs(beta[:8]) + 0.3
    w.set(norm.gamma, gamma)
    w.set(norm.beta, beta)
    ref = w.block(REGULARIZE)(x).asnumpy()
    keep = [k.copy() for k in w.keep]
    keep[last.index][:8] = False
    assert w.apply_keep(keep) == []
    np.testing.assert_allclose(w.block(REGULARIZE)(x).asnumpy(), ref, rtol=1e-5, atol=1e-5)


def _kill_first_channels(w):
    """Give the first 8 channels of every untied group read only by 1×1 layers γ = 0 and a
    clearly positive β (so they output a constant after the ReLU); return those groups."""
    groups = [g for g in w.graph.prunable_groups if not g.tied and
              all(w.graph.layers[c].kernel == (1, 1) for c in g.consumers)]
    for g in groups:
        norm = w._bn_of[g.producers[0]]
        gamma, beta = w.get(norm.gamma), w.get(norm.beta)
        gamma[:8] = 0
        beta[:8] = np.abs(beta[:8]) + 0.5
        w.set(norm.gamma, gamma)
        w.set(norm.beta, beta)
    return groups


def test_folding_a_dead_channel_keeps_the_output(random_net):
    """A removed channel with γ = 0 still outputs relu(β); folding it into the consumers keeps
    the output exactly when the consumers are 1×1 convolutions or the classifier."""
    net, graph, w = _wrapped(random_net, "resnet50_v1d", 32)
    x = _x((2, 3, 32, 32))
    # bottleneck conv2 → conv3 (1×1) and the last stage's stream → dense are exact
    groups = _kill_first_channels(w)
    ref = w.block(REGULARIZE)(x).asnumpy()
    keep = [k.copy() for k in w.keep]
    for g in groups:
        keep[g.index][:8] = False
    assert len(groups) >= 10
    assert w.apply_keep(keep) == []
    out = w.block(REGULARIZE)(x).asnumpy()
    np.testing.assert_allclose(out, ref, atol=1e-4 * np.abs(ref).max())
    # without folding the output would have changed
    net2, graph2, w2 = _wrapped(random_net, "resnet50_v1d", 32)
    _kill_first_channels(w2)
    w2.keep = keep  # bypass apply_keep: hold at zero without folding
    for g in graph2.prunable_groups:
        w2.set(w2.keep_name(g.index), keep[g.index].astype(np.float32))
    assert np.abs(w2.block(REGULARIZE)(x).asnumpy() - ref).max() > 1e-3


def test_gcp_steps_meet_the_target_and_surgery_equals_masked(random_net):
    net, graph, w, gcp, records = _run_steps(random_net, "resnet18_v1b", 32, target=0.5)
    sel = gcp.selection()
    assert 0.5 - sel.granularity < sel.achieved <= 0.5
    assert [r.phase for r in records] == [REGULARIZE, DEBIAS] * 2
    assert records[-1].achieved == pytest.approx(sel.achieved)
    x = _x((2, 3, 32, 32))
    masked = w.block(REGULARIZE)(x).asnumpy()
    pruned = prune_network(net, graph, w.keep, "resnet18_v1b", params=w.folded_params()).net
    np.testing.assert_allclose(pruned(x).asnumpy(), masked, atol=1e-4 * np.abs(masked).max())
    # skip-tied channels: one mask per stream, so one keep per group across its producers
    for g in graph.groups:
        if g.tied:
            assert w.scale_name(g.index) == w.mask_name(g.index)


def test_prox_gives_exact_zeros_and_costly_channels_go_first():
    """Two identical channels, one three times as costly: the costly one reaches exactly zero
    first under the same loss."""
    import prunenet.gcp.prox  # noqa: F401  (registers 'proxsgd')
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(2, 3, use_bias=False), gluon.nn.BatchNorm(),
            gluon.nn.Activation("relu"), gluon.nn.GlobalAvgPool2D(), gluon.nn.Dense(2))
    net.initialize(mx.init.Xavier())
    x = _x((8, 3, 6, 6), seed=2)
    net(x)
    conv, bn, dense = net[0], net[1], net[4]
    w = conv.weight.data().asnumpy()
    w[1] = w[0]
    conv.weight.set_data(mx.nd.array(w))
    dw = dense.weight.data().asnumpy()
    dw[:, 1] = dw[:, 0]
    dense.weight.set_data(mx.nd.array(dw))
    conv.weight.grad_req = "null"
    y = mx.nd.array([0, 1] * 4)
    gamma = bn.gamma
    trainer = gluon.Trainer({gamma.name: gamma}, "proxsgd", {
        "learning_rate": 0.05, "momentum": 0.0,
        "thresholds": {gamma.name: np.array([1.0, 3.0], dtype=np.float32) * 0.5}})
    first_zero = {}
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for it in range(200):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(8)
        g = gamma.data().asnumpy()
        for c in (0, 1):
            if g[c] == 0.0 and c not in first_zero:
                first_zero[c] = it
        if len(first_zero) == 2:
            break
    assert 1 in first_zero and gamma.data().asnumpy()[1] == 0.0
    assert first_zero[1] < first_zero.get(0, 10 ** 9)


def test_too_large_reg_keeps_min_width_and_says_so(random_net):
    net, graph, w, gcp, records = _run_steps(random_net, "cifar_resnet20_v1", 16, target=0.5,
                                             steps=1, reg=1e3)
    assert any("zeroed every channel" in n and "min_width" in n for n in gcp.notes)
    scores = w.scores()
    for g in graph.prunable_groups:  # no group is cut: its min_width largest stay alive
        assert w.keep[g.index].sum() >= min(8, g.width)
        assert (scores[g.index][w.keep[g.index]] != 0).sum() >= min(8, g.width)


@pytest.mark.parametrize("kwargs,words", [({"reg": -1.0}, "--reg"), ({"steps": 0}, "--steps"),
                                          ({"target": 1.5}, "--target"), ({"lr": 0.0}, "--lr")])
def test_bad_config_is_refused(kwargs, words):
    from prunenet import PrunenetError
    config = dict(target=0.5)
    config.update(kwargs)
    with pytest.raises(PrunenetError, match=words):
        GCPConfig(**config).check()


def test_non_finite_loss_names_the_step_and_suggests_a_smaller_rate(random_net):
    from prunenet.training.train import NonFiniteError
    net, graph, w = _wrapped(random_net, "cifar_resnet20_v1", 16)
    gcp = GCPSchedule(w, cost_model(graph, "flops"),
              GCPConfig(target=0.5, steps=1, reg=0.01, epochs_per_step=1, lr=1e12),
              [mx.cpu()], progress=False)
    with pytest.raises(NonFiniteError, match=r"step 1/1 regularize.*smaller --lr|--lr"):
        gcp.run_step(1, BatchStream(_toy_stream(16)))
