"""The channel graph: groups, producers, consumers, ties across residual stages."""
import pytest
from mxnet.gluon import nn

from prunenet import UnsupportedOpError, trace
from prunenet.training.models import input_shape, load_model

STAGE_BLOCKS = {"resnet18_v1b": [2, 2, 2, 2], "resnet34_v1b": [3, 4, 6, 3],
                "resnet50_v1d": [3, 4, 6, 3], "resnet101_v1d": [3, 4, 23, 3],
                "resnet50_v1b": [3, 4, 6, 3], "resnet50_v1c": [3, 4, 6, 3],
                "resnet50_v1s": [3, 4, 6, 3], "cifar_resnet20_v1": [3, 3, 3],
                "cifar_resnet56_v1": [9, 9, 9]}


def _graph(name):
    return trace(load_model(name), input_shape(name))


@pytest.mark.parametrize("name", sorted(STAGE_BLOCKS))
def test_residual_streams_tie_a_whole_stage(name):
    graph = _graph(name)
    blocks = STAGE_BLOCKS[name]
    streams = [g for g in graph.groups if g.tied]
    assert len(streams) == len(blocks)
    basic_first_stage = name.startswith(("resnet18", "resnet34", "cifar"))
    for stage, (group, n) in enumerate(zip(streams, blocks)):
        # every block's last conv writes the stream; a downsample conv too, or (basic blocks,
        # first stage) the stem conv through ReLU and pooling
        assert len(group.producers) == n + 1, (stage, group.producers)
        assert group.prunable
        # the first conv of every block but the stage's first (which reads the stream before
        # it, except where the stem is tied in) reads it; so do the next stage's first conv and
        # downsample conv, or the classifier after the last stage
        readers = n if stage == 0 and basic_first_stage else n - 1
        assert len(group.consumers) == readers + (1 if stage == len(blocks) - 1 else 2)
        assert len(group.norms) == len(group.producers)
    if basic_first_stage:
        stem = [layer for layer in graph.layers.values()][0]
        assert stem.name in streams[0].producers
    # every conv/dense layer writes exactly one group and every weight has a layer
    weights = [n for n in graph.param_shapes if n.endswith("_weight")]
    assert sorted(weights) == sorted(layer.weight for layer in graph.layers.values())


@pytest.mark.parametrize("name", ["resnet18_v1b", "cifar_resnet20_v1"])
def test_input_and_logits_are_never_prunable(name):
    graph = _graph(name)
    first, last = graph.groups[0], graph.groups[-1]
    assert not first.prunable and "network input" in first.reasons
    assert not last.prunable and "network output" in last.reasons
    assert all(g.prunable for g in graph.groups[1:-1])


def test_dense_on_spatial_map_owns_hw_columns_per_channel():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"), nn.Dense(4))
    net.initialize()
    graph = trace(net, (1, 3, 5, 5))
    dense = list(graph.layers.values())[-1]
    assert dense.cols_per_channel == 25 and dense.in_channels == 8
    assert graph.groups[1].prunable


class _Reverse(nn.HybridBlock):
    """Reverses the channel order: the tracer has no rule for it."""

    def __init__(self):
        super().__init__()
        with self.name_scope():
            self.conv = nn.Conv2D(8, 3, padding=1)
            self.bn = nn.BatchNorm()
            self.conv2 = nn.Conv2D(8, 3, padding=1)
            self.bn2 = nn.BatchNorm()
            self.fc = nn.Dense(3)

    def hybrid_forward(self, F, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(F.reverse(x, axis=1))


def test_unknown_op_freezes_its_groups_with_the_reason():
    net = _Reverse()
    net.initialize()
    graph = trace(net, (1, 3, 8, 8))
    by_producer = {p: g for g in graph.groups for p in g.producers}
    first = by_producer[net.conv.name + "_fwd"]
    second = by_producer[net.conv2.name + "_fwd"]
    assert first.prunable
    assert not second.prunable
    assert any("reverse" in r and "node" in r for r in second.reasons)


def test_unknown_op_in_strict_mode_names_op_and_node():
    net = _Reverse()
    net.initialize()
    with pytest.raises(UnsupportedOpError, match=r"reverse \(node .*reverse"):
        trace(net, (1, 3, 8, 8), strict=True)


def test_non_zero_preserving_op_freezes_its_group():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3), nn.BatchNorm(), nn.Activation("sigmoid"), nn.Conv2D(8, 3),
            nn.BatchNorm(), nn.Activation("relu"), nn.GlobalAvgPool2D(), nn.Dense(2))
    net.initialize()
    graph = trace(net, (1, 3, 9, 9))
    assert not graph.groups[1].prunable and "sigmoid" in graph.groups[1].reasons[0]
    assert graph.groups[2].prunable


def test_input_that_does_not_fit_is_a_clear_error():
    from prunenet import PrunenetError
    net = load_model("cifar_resnet20_v1")
    with pytest.raises(PrunenetError, match="input shape"):
        trace(net, (1, 3, 32))
