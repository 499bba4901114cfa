"""Beyond ResNets: GluonCV's MobileNet, MobileNetV2, VGG-BN, ResNeXt, SE-ResNet and DenseNet
trace, prune (data-free and GCP) and survive surgery unchanged."""
import mxnet as mx
import numpy as np
import pytest
from test_gcp import _toy_stream

from prunenet import cost_model, trace
from prunenet.methods import DATA_FREE
from prunenet.gcp.schedule import GCPSchedule, GCPConfig
from prunenet.zoo.pruned import prune_network, surgery_check
from prunenet.core.surgery import network_params
from prunenet.training.train import BatchStream
from prunenet.gcp.masked import REGULARIZE, MaskedNetwork

# DenseNet ends in a 7x7 average pool, so it needs 224-pixel input.
NETWORKS = [("mobilenet1.0", 32), ("mobilenetv2_1.0", 32), ("vgg16_bn", 32),
            ("resnext50_32x4d", 32), ("se_resnet18_v1", 32), ("densenet121", 224)]


def _x(size, n=2, seed=0):
    return mx.nd.array(np.random.RandomState(seed).normal(size=(n, 3, size, size)))


@pytest.mark.parametrize("name,size", NETWORKS)
def test_every_inner_group_is_prunable_and_l1_surgery_is_exact(name, size, random_net):
    net = random_net(name, size, classes=10)
    graph = trace(net, (1, 3, size, size), strict=True)  # no op left unexplained
    assert all(g.prunable for g in graph.groups if not set(g.reasons) & {"network input",
                                                                          "network output"})
    cost = cost_model(graph, "flops")
    sel = DATA_FREE["l1"](graph, network_params(net), cost, 0.5)
    assert 0.5 - sel.granularity < sel.achieved <= 0.5
    pruned = prune_network(net, graph, sel.keep, name, 10)
    diff, scale = surgery_check(net, pruned.net, graph, sel.keep)
    assert diff <= 1e-5 * max(1.0, scale)


def test_structures_are_understood(random_net):
    mobilenet = trace(random_net("mobilenet1.0", 32, classes=10), (1, 3, 32, 32))
    depthwise = [layer for layer in mobilenet.layers.values() if layer.depthwise]
    assert len(depthwise) == 13
    for layer in depthwise:  # a depthwise conv writes the channels it reads
        group = mobilenet.out_group(layer.name)
        assert mobilenet.group_of(layer.in_layout[0]) is group
        assert layer.name in group.consumers and len(group.producers) == 2

    resnext = trace(random_net("resnext50_32x4d", 32, classes=10), (1, 3, 32, 32))
    grouped = [g for g in resnext.groups if g.segments > 1]
    assert len(grouped) == 2 * 16 and all(g.segments == 32 for g in grouped)

    se = trace(random_net("se_resnet18_v1", 32, classes=10), (1, 3, 32, 32))
    gated = [g for g in se.groups if g.gates]
    assert len(gated) == 4  # one residual stream per stage, gated by every block's SE
    assert all(len(g.gates) == 2 and g.homogeneous for g in gated)

    vgg = trace(random_net("vgg16_bn", 32, classes=10), (1, 3, 32, 32))
    first_dense = [layer for layer in vgg.layers.values() if layer.op == "FullyConnected"][0]
    assert first_dense.cols_per_channel == 1  # GluonCV's VGG pools to 1x1 at 32 px

    mbv2 = trace(random_net("mobilenetv2_1.0", 32, classes=10), (1, 3, 32, 32))
    classifier = [n for n, layer in mbv2.layers.items()
                  if "network output" in mbv2.out_group(n).reasons]
    assert len(classifier) == 1 and mbv2.layers[classifier[0]].op == "Convolution"
    assert any("clip" in g.ops and not g.homogeneous for g in mbv2.groups)


def test_grouped_convolutions_keep_widths_multiple_of_lcm(random_net):
    net = random_net("resnext50_32x4d", 32, classes=10)
    graph = trace(net, (1, 3, 32, 32))
    sel = DATA_FREE["uniform"](graph, network_params(net), cost_model(graph, "flops"), 0.4)
    for g in graph.groups:
        if g.segments > 1:
            kept = sel.keep[g.index].reshape(g.segments, -1).sum(axis=1)
            assert (kept == kept[0]).all() and kept[0] >= 1  # the same in every conv group
            assert (g.width - sel.keep[g.index].sum()) % 32 == 0
    assert any(not sel.keep[g.index].all() for g in graph.groups if g.segments > 1)


@pytest.mark.parametrize("name,size", NETWORKS)
def test_gcp_step_preserves_function_and_surgery_equals_masked(name, size, random_net):
    net = random_net(name, size, classes=10)
    x = _x(size)
    ref = net(x).asnumpy()
    graph = trace(net, (1, 3, size, size))
    w = MaskedNetwork(net, graph)
    w.rescale()
    scale = np.abs(ref).max()
    np.testing.assert_allclose(w.block(REGULARIZE)(x).asnumpy(), ref, atol=1e-5 * scale)
    gcp = GCPSchedule(w, cost_model(graph, "flops"),
              GCPConfig(target=0.6, steps=1, reg=0.01, epochs_per_step=1, lr=0.01),
              [mx.cpu()], progress=False)
    # at 224 px (DenseNet) one batch of 2 a phase, each costing seconds; else two batches of 8
    batch, batches = (2, 1) if size > 64 else (8, 2)
    gcp.run_step(1, BatchStream(_toy_stream(size, n=batches * batch, batch=batch)))
    sel = gcp.selection()
    assert 0.6 - sel.granularity < sel.achieved <= 0.6
    masked = w.block(REGULARIZE)(x).asnumpy()
    pruned = prune_network(net, graph, w.keep, name, 10, params=w.folded_params()).net
    np.testing.assert_allclose(pruned(x).asnumpy(), masked, atol=1e-4 * np.abs(masked).max())


def test_generic_networks_through_the_cli(tmp_path):
    from prunenet.cli import main
    from prunenet.zoo.pruned import load_pruned
    out = tmp_path / "mbv2"
    assert main(["prune", "--model", "mobilenetv2_1.0", "--input-size", "32", "--classes", "10",
                 "--method", "l1", "--target", "0.7", "--out", str(out)]) == 0
    net = load_pruned(str(out))
    assert net(mx.nd.zeros((1, 3, 32, 32))).shape == (1, 10)
