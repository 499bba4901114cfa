"""MACs and parameter counts: against an independent count and GluonCV's published figures."""
import csv
import json
import os

import mxnet as mx
import numpy as np
import pytest

from prunenet import cost_model, count, trace
from prunenet.cli import main
from prunenet.training.models import input_shape, load_model
from prunenet.core.surgery import full_keep, widths_of

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference",
                         "gluoncv_resnet_zoo.csv")
SHAPE_DIR = os.path.join(os.path.dirname(__import__("gluoncv").__file__), "model_zoo",
                         "pruned_resnet")
SHIPPED = {  # GluonCV's shape file -> (base model, its model-zoo name)
    "resnet18_v1b_2.6x.json": ("resnet18_v1b", "resnet18_v1b_0.89"),
    "resnet50_v1d_1.8x.json": ("resnet50_v1d", "resnet50_v1d_0.86"),
    "resnet50_v1d_3.6x.json": ("resnet50_v1d", "resnet50_v1d_0.48"),
    "resnet50_v1d_5.9x.json": ("resnet50_v1d", "resnet50_v1d_0.37"),
    "resnet50_v1d_8.8x.json": ("resnet50_v1d", "resnet50_v1d_0.11"),
    "resnet101_v1d_1.9x.json": ("resnet101_v1d", "resnet101_v1d_0.76"),
    "resnet101_v1d_2.2x.json": ("resnet101_v1d", "resnet101_v1d_0.73"),
}


def _reference():
    if not os.path.exists(REFERENCE):
        pytest.skip("shared/reference is not beside this checkout")
    with open(REFERENCE) as f:
        return {row["model"]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("name", ["resnet18_v1b", "resnet34_v1b", "resnet50_v1d",
                                  "resnet101_v1d", "resnet50_v1b", "resnet50_v1c",
                                  "cifar_resnet20_v1", "cifar_resnet56_v1"])
def test_count_matches_independent_count(name, independent_count):
    net = load_model(name)
    shape = input_shape(name)
    got = count(trace(net, shape))
    macs, params = independent_count(net(mx.sym.var("data")), shape)
    assert got == {"macs": macs, "params": params}


@pytest.mark.parametrize("name", ["resnet18_v1b", "resnet34_v1b", "resnet50_v1d",
                                  "resnet101_v1d"])
def test_count_matches_gluoncv_published_figures(name):
    row = _reference()[name]
    got = count(trace(load_model(name), (1, 3, 224, 224)))
    assert round(got["macs"] / 1e9, 3) == pytest.approx(float(row["macs_g"]), abs=1e-3)
    assert round(got["params"] / 1e6, 2) == pytest.approx(float(row["params_m"]), abs=1e-2)


@pytest.mark.parametrize("shape_file", sorted(SHIPPED))
def test_count_of_gluoncv_shipped_pruned_resnets(shape_file, capsys, independent_count):
    base, zoo_name = SHIPPED[shape_file]
    path = os.path.join(SHAPE_DIR, shape_file)
    assert main(["count", "--model", base, "--shapes", path, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == {"macs", "params"}
    # independently: GluonCV's own constructor for this model, counted by shape inference
    from gluoncv.model_zoo import get_model
    ref_net = get_model(zoo_name, pretrained=False)
    ref_net.initialize()
    ref_net(mx.nd.zeros((1, 3, 224, 224)))
    assert (got["macs"], got["params"]) == independent_count(ref_net(mx.sym.var("data")),
                                                             (1, 3, 224, 224))
    row = _reference()[zoo_name]
    assert got["macs"] / 1e9 == pytest.approx(float(row["macs_g"]), abs=1e-3)
    assert got["params"] / 1e6 == pytest.approx(float(row["params_m"]), abs=1e-2)


@pytest.mark.parametrize("objective", ["flops", "params"])
def test_saving_equals_cost_of_the_physically_smaller_network(objective, independent_count,
                                                              random_net):
    """The saving the cost model predicts for removing channels is what the pruned network
    (built by surgery and counted independently) really saves."""
    from prunenet.zoo.pruned import prune_network
    net = random_net("resnet50_v1d", 64)
    graph = trace(net, (1, 3, 64, 64))
    cost = cost_model(graph, objective)
    keep = full_keep(graph)
    rng = np.random.RandomState(1)
    for g in graph.prunable_groups:  # remove a random 8..24 channels from every group
        k = 8 * rng.randint(1, 4)
        keep[g.index][rng.choice(g.width, k, replace=False)] = False
    widths = widths_of(keep)
    stream = max(graph.prunable_groups, key=lambda g: len(g.producers)).index
    predicted = cost.total(widths) - cost.saving(widths, stream, 8)
    keep[stream][np.flatnonzero(keep[stream])[:8]] = False
    pruned = prune_network(net, graph, keep, "resnet50_v1d").net
    macs, params = independent_count(pruned(mx.sym.var("data")), (1, 3, 64, 64))
    assert predicted == (macs if objective == "flops" else params)


def test_marginal_costs_follow_feature_map_size():
    graph = trace(load_model("resnet50_v1d"), (1, 3, 224, 224))
    flops = cost_model(graph, "flops").marginal()
    params = cost_model(graph, "params").marginal()
    first, last = graph.prunable_groups[0].index, graph.prunable_groups[-1].index
    # early layers: large maps, few weights; late layers: small maps, many weights
    assert flops[first] / flops.sum() > params[first] / params.sum()
    assert params[last] / params.sum() > flops[last] / flops.sum()
    assert all(flops[g.index] > 0 and params[g.index] > 0 for g in graph.prunable_groups)
