"""Surgery: the physically pruned network computes what the masked network computes."""
import os

import mxnet as mx
import numpy as np
import pytest

from prunenet import cost_model, trace
from prunenet.io.files import load_params, read_json
from prunenet.methods import DATA_FREE
from prunenet.zoo.pruned import check_surgery
from prunenet.io.records import PARAMS_FILE, SHAPES_FILE
from prunenet.zoo.pruned import prune_network, save_pruned, surgery_check
from prunenet.core.surgery import network_params, zero_removed

CASES = [("resnet18_v1b", 64, "l1", "flops"), ("resnet34_v1b", 64, "uniform", "params"),
         ("resnet50_v1d", 64, "l1", "params"), ("resnet50_v1d", 64, "uniform", "flops"),
         ("resnet50_v1c", 64, "l1", "flops"),
         ("cifar_resnet20_v1", 32, "l1", "flops"), ("cifar_resnet56_v1", 32, "uniform", "params")]


def _prune(random_net, name, size, method, objective, target=0.5, seed=0, classes=None):
    net = random_net(name, size, seed=seed, classes=classes)
    graph = trace(net, (1, 3, size, size))
    sel = DATA_FREE[method](graph, network_params(net), cost_model(graph, objective), target)
    return net, graph, sel, prune_network(net, graph, sel.keep, name, classes)


@pytest.mark.parametrize("name,size,method,objective", CASES)
def test_surgery_equals_masked_network(name, size, method, objective, random_net):
    net, graph, sel, pruned = _prune(random_net, name, size, method, objective)
    x = mx.nd.array(np.random.RandomState(5).normal(size=(3, 3, size, size)))
    original = net(x).asnumpy()
    diff, scale = surgery_check(net, pruned.net, graph, sel.keep)
    assert scale > 0 and diff <= 1e-5 * max(1.0, scale)
    masked = net(x).asnumpy()
    assert np.abs(masked - pruned.net(x).asnumpy()).max() <= 1e-5 * max(1.0, np.abs(masked).max())
    # and pruning really changed the function (so the check above is not vacuous)
    assert np.abs(original - masked).max() > 1e-3


def test_the_surgery_check_refuses_a_pruned_network_that_computes_otherwise(random_net):
    net, graph, sel, pruned = _prune(random_net, "cifar_resnet20_v1", 32, "l1", "flops")
    beta = next(p for n, p in pruned.net.collect_params().items() if n.endswith("_beta"))
    beta.set_data(beta.data() + 0.05)  # one BatchNorm shifted a little: a wrong surgery
    diff, scale = surgery_check(net, pruned.net, graph, sel.keep)
    assert diff > 1e-3
    with pytest.raises(RuntimeError, match="surgery check failed"):
        check_surgery(diff, scale)
    beta.set_data(beta.data() - 0.05)
    check_surgery(*surgery_check(net, pruned.net, graph, sel.keep))


def test_tied_channels_are_removed_identically_in_every_producer_and_consumer(random_net):
    net, graph, sel, pruned = _prune(random_net, "resnet50_v1d", 64, "uniform", "flops", target=0.4)
    before = network_params(net)
    after = {k.replace(pruned.net.prefix, net.prefix, 1): v.data().asnumpy()
             for k, v in pruned.net.collect_params().items()}
    streams = [g for g in graph.groups if g.tied]
    assert len(streams) == 4 and all(not sel.keep[g.index].all() for g in streams)
    for g in streams:
        kept = np.flatnonzero(sel.keep[g.index])
        for name in g.producers:  # the same output channels of every producer
            layer = graph.layers[name]
            cols = np.flatnonzero(sel.keep[graph.space_group[layer.in_layout[0]]])
            np.testing.assert_array_equal(after[layer.weight],
                                          before[layer.weight][kept][:, cols])
        for name in g.norms:
            norm = graph.norms[name]
            for p in (norm.gamma, norm.beta, norm.running_mean, norm.running_var):
                np.testing.assert_array_equal(after[p], before[p][kept])
        for name in g.consumers:  # the same input channels of every consumer
            layer = graph.layers[name]
            rows = np.flatnonzero(sel.keep[graph.space_group[layer.out_space]])
            np.testing.assert_array_equal(after[layer.weight], before[layer.weight][rows][:, kept])


def test_gluoncv_prune_gluon_block_loads_what_we_write(tmp_path, random_net):
    """The saved pair loads through GluonCV's own function, unchanged, with the same outputs."""
    from gluoncv.model_zoo import get_model
    from gluoncv.model_zoo.pruned_resnet.resnetv1b_pruned import prune_gluon_block
    net, graph, sel, pruned = _prune(random_net, "resnet50_v1d", 64, "l1", "flops", classes=10)
    assert save_pruned(pruned, str(tmp_path)) == [SHAPES_FILE, PARAMS_FILE]
    shapes = read_json(str(tmp_path / SHAPES_FILE))
    assert all(k.startswith("resnetv1d_") for k in shapes)
    assert all(k.startswith("resnetv1d_") for k in load_params(str(tmp_path / PARAMS_FILE)))
    theirs = get_model("resnet50_v1d", classes=10)
    prune_gluon_block(theirs, theirs.name, shapes,
                      params=mx.nd.load(str(tmp_path / PARAMS_FILE)), pretrained=True,
                      ctx=mx.cpu())
    x = mx.nd.array(np.random.RandomState(1).normal(size=(2, 3, 64, 64)))
    np.testing.assert_array_equal(theirs(x).asnumpy(), pruned.net(x).asnumpy())
    zero_removed(graph, net, sel.keep)
    np.testing.assert_allclose(theirs(x).asnumpy(), net(x).asnumpy(), rtol=1e-4, atol=1e-4)


def test_resnet18_pair_uses_the_resnetv1d_prefix(tmp_path, random_net):
    """GluonCV's pruned ResNet-18 files use ``resnetv1d_`` although the model is ``resnetv1b_``."""
    from gluoncv.model_zoo.pruned_resnet.resnetv1b_pruned import prune_gluon_block
    from gluoncv.model_zoo import get_model
    net, graph, sel, pruned = _prune(random_net, "resnet18_v1b", 64, "uniform", "flops")
    save_pruned(pruned, str(tmp_path))
    shapes = read_json(str(tmp_path / SHAPES_FILE))
    assert "resnetv1d_dense0_weight" in shapes and "resnetv1d_conv0_weight" in shapes
    theirs = get_model("resnet18_v1b")
    prune_gluon_block(theirs, theirs.name, shapes, params=mx.nd.load(str(tmp_path / PARAMS_FILE)),
                      pretrained=True, ctx=mx.cpu())
    x = mx.nd.array(np.random.RandomState(2).normal(size=(1, 3, 64, 64)))
    np.testing.assert_array_equal(theirs(x).asnumpy(), pruned.net(x).asnumpy())


def test_generic_network_saves_a_symbol_pair_that_imports(tmp_path, random_net):
    from mxnet import gluon
    net, graph, sel, pruned = _prune(random_net, "cifar_resnet20_v1", 32, "l1", "flops")
    files = save_pruned(pruned, str(tmp_path))
    loaded = gluon.SymbolBlock.imports(str(tmp_path / files[0]), ["data"],
                                       str(tmp_path / files[1]))
    x = mx.nd.array(np.random.RandomState(3).normal(size=(2, 3, 32, 32)))
    np.testing.assert_array_equal(loaded(x).asnumpy(), pruned.net(x).asnumpy())
    assert os.path.getsize(tmp_path / files[1]) > 0
