"""Remove channels for real: slice every parameter and rebuild a smaller network.

A *keep mask* is a list with one boolean array per group of a :class:`ChannelGraph` (``True``:
the channel stays). Everything here works on those masks; nothing reads or writes files.
"""
from __future__ import annotations

import json
import warnings
from typing import Dict, List, Sequence

import numpy as np

from .graph import ChannelGraph

__all__ = ["full_keep", "widths_of", "sliced_params", "zero_removed", "norm_rows",
           "expand_grouped", "compress_grouped", "gluoncv_key",
           "gluoncv_shapes", "gluoncv_params", "is_resnetv1b", "build_resnetv1b",
           "build_symbol_block", "layer_widths", "network_params"]

GLUONCV_PREFIX = "resnetv1d_"


def full_keep(graph: ChannelGraph) -> List[np.ndarray]:
    """A keep mask that keeps every channel."""
    return [np.ones(g.width, dtype=bool) for g in graph.groups]


def widths_of(keep: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([int(k.sum()) for k in keep], dtype=np.int64)


def _in_columns(graph: ChannelGraph, layer_name: str, keep: Sequence[np.ndarray]) -> np.ndarray:
    layer = graph.layers[layer_name]
    mask = np.concatenate([keep[graph.space_group[s]] for s in layer.in_layout])
    if layer.cols_per_channel > 1:
        mask = np.repeat(mask, layer.cols_per_channel)
    return mask


def norm_rows(graph: ChannelGraph, norm_name: str, keep: Sequence[np.ndarray]) -> np.ndarray:
    """The kept channels of a BatchNorm (its layout's keep masks, end to end)."""
    return np.concatenate([keep[graph.space_group[s]] for s in graph.norms[norm_name].layout])


def expand_grouped(w: np.ndarray, groups: int) -> np.ndarray:
    """A grouped convolution's weight as the equivalent dense one (zeros across groups)."""
    out_c, per_group = w.shape[:2]
    full = np.zeros((out_c, per_group * groups) + w.shape[2:], dtype=w.dtype)
    rows = out_c // groups
    for j in range(groups):
        full[j * rows:(j + 1) * rows, j * per_group:(j + 1) * per_group] = \
            w[j * rows:(j + 1) * rows]
    return full


def compress_grouped(full: np.ndarray, groups: int) -> np.ndarray:
    """The inverse of :func:`expand_grouped`."""
    out_c, in_c = full.shape[:2]
    rows, per_group = out_c // groups, in_c // groups
    return np.concatenate([full[j * rows:(j + 1) * rows, j * per_group:(j + 1) * per_group]
                           for j in range(groups)])


def network_params(net) -> Dict[str, np.ndarray]:
    """Every parameter of a Gluon network as a NumPy array, keyed by its full name."""
    return {name: p.data(p.list_ctx()[0]).asnumpy() for name, p in net.collect_params().items()}


def sliced_params(graph: ChannelGraph, params: Dict[str, np.ndarray],
                  keep: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
    """The parameters of the pruned network, keyed by the same full names as ``params``."""
    out = dict(params)
    for layer in graph.layers.values():
        rows = keep[graph.space_group[layer.out_space]]
        w = params[layer.weight]
        if layer.groups == 1:
            w = w[:, _in_columns(graph, layer.name, keep)]
        elif not layer.depthwise:  # equal channels kept in every group: compress again
            full = expand_grouped(w, layer.groups)[:, _in_columns(graph, layer.name, keep)]
            w = compress_grouped(full[rows], layer.groups)
            rows = slice(None)
        out[layer.weight] = np.ascontiguousarray(w[rows])
        if layer.bias:
            out[layer.bias] = np.ascontiguousarray(
                params[layer.bias][keep[graph.space_group[layer.out_space]]])
    for norm in graph.norms.values():
        rows = norm_rows(graph, norm.name, keep)
        for name in (norm.gamma, norm.beta, norm.running_mean, norm.running_var):
            out[name] = np.ascontiguousarray(params[name][rows])
    return out


def zero_removed(graph: ChannelGraph, net, keep: Sequence[np.ndarray]) -> None:
    """Make removed channels output exactly zero in ``net`` (the *masked* network), in place.

    Each removed channel gets zero BN scale and shift and zero producer filters and biases, so
    it contributes nothing to any consumer.
    """
    import mxnet as mx
    params = net.collect_params()

    def zero_rows(name: str, rows: np.ndarray) -> None:
        arr = params[name].data(params[name].list_ctx()[0]).asnumpy()
        arr[~rows] = 0
        # An NDArray (not NumPy) source also copies into MKL-DNN-laid-out weights.
        params[name].set_data(mx.nd.array(arr, dtype=arr.dtype))

    for g in graph.groups:
        rows = keep[g.index]
        if rows.all():
            continue
        for layer_name in g.producers:
            layer = graph.layers[layer_name]
            zero_rows(layer.weight, rows)
            if layer.bias:
                zero_rows(layer.bias, rows)
    for norm in graph.norms.values():
        rows = norm_rows(graph, norm.name, keep)
        if not rows.all():
            zero_rows(norm.gamma, rows)
            zero_rows(norm.beta, rows)


def layer_widths(graph: ChannelGraph, keep: Sequence[np.ndarray]) -> Dict[str, List[int]]:
    """Per conv/dense layer: [kept output channels, original output channels]."""
    return {name: [int(keep[graph.space_group[layer.out_space]].sum()), layer.out_channels]
            for name, layer in graph.layers.items()}


# -- GluonCV's pruned-ResNet format -------------------------------------------------------------
def is_resnetv1b(net) -> bool:
    """True for GluonCV's ``ResNetV1b`` family (v1b/v1c/v1d/v1e/v1s), the zoo's format."""
    from gluoncv.model_zoo.resnetv1b import ResNetV1b
    return isinstance(net, ResNetV1b)


def gluoncv_key(name: str, net_prefix: str) -> str:
    """A parameter's name as GluonCV's pruned-ResNet files spell it (prefix ``resnetv1d_``)."""
    if not name.startswith(net_prefix):
        raise ValueError(f"parameter {name} does not start with the network prefix {net_prefix}")
    return GLUONCV_PREFIX + name[len(net_prefix):]


def gluoncv_shapes(graph: ChannelGraph, net_prefix: str,
                   keep: Sequence[np.ndarray]) -> Dict[str, List[int]]:
    """The shape file of the pruned network: every conv/dense weight (and dense bias) shape."""
    shapes: Dict[str, List[int]] = {}
    for layer in graph.layers.values():
        rows = int(keep[graph.space_group[layer.out_space]].sum())
        cols = int(_in_columns(graph, layer.name, keep).sum())
        if layer.op == "Convolution":
            cols = 1 if layer.depthwise else cols // layer.groups
            shapes[gluoncv_key(layer.weight, net_prefix)] = [rows, cols, *layer.kernel]
        else:
            shapes[gluoncv_key(layer.weight, net_prefix)] = [rows, cols]
            if layer.bias:
                shapes[gluoncv_key(layer.bias, net_prefix)] = [rows]
    return shapes


def gluoncv_params(params: Dict[str, np.ndarray], net_prefix: str) -> Dict[str, np.ndarray]:
    """Re-key full-name parameters to GluonCV's pruned-ResNet names."""
    return {gluoncv_key(name, net_prefix): value for name, value in params.items()}


def build_resnetv1b(fresh_net, shapes: Dict[str, Sequence[int]],
                    params: Dict[str, np.ndarray] | None = None, ctx=None):
    """Resize ``fresh_net`` (an unpruned, uninitialised GluonCV ResNetV1b) to ``shapes`` with
    GluonCV's own ``prune_gluon_block``, and load ``params`` (GluonCV names) when given; without
    them the conv and dense weights are left for the caller to initialise."""
    import mxnet as mx
    from gluoncv.model_zoo.pruned_resnet.resnetv1b_pruned import prune_gluon_block

    ctx = ctx or mx.cpu()
    nd_params = None if params is None else {k: mx.nd.array(v, dtype=v.dtype)
                                             for k, v in params.items()}
    prune_gluon_block(fresh_net, fresh_net.name, dict(shapes), params=nd_params,
                      pretrained=params is not None, ctx=ctx)
    return fresh_net


def build_symbol_block(graph: ChannelGraph, keep: Sequence[np.ndarray],
                       params: Dict[str, np.ndarray], ctx=None):
    """Any traced network, pruned, as a ``gluon.SymbolBlock`` holding the sliced ``params``."""
    import mxnet as mx
    from mxnet import gluon

    ctx = ctx or mx.cpu()
    doc = json.loads(graph.symbol.tojson())
    for node in doc["nodes"]:
        if node["op"] == "null" and node["name"] in params and "__shape__" in node.get("attrs", {}):
            node["attrs"]["__shape__"] = str(tuple(params[node["name"]].shape))  # as sliced
        elif node["op"] == "null":  # a full-width shape without a parameter to match it
            node.get("attrs", {}).pop("__shape__", None)
        layer = graph.layers.get(node["name"])
        if layer is not None:
            width = int(keep[graph.space_group[layer.out_space]].sum())
            attrs = node.setdefault("attrs", {})
            attrs["num_filter" if node["op"] == "Convolution" else "num_hidden"] = str(width)
            if layer.depthwise:
                attrs["num_group"] = str(width)
    symbol = mx.sym.load_json(json.dumps(doc))
    with warnings.catch_warnings():  # SymbolBlock warns that 'data' has no dtype yet
        warnings.simplefilter("ignore")
        block = gluon.SymbolBlock(symbol, [mx.sym.var("data")])
    for name, param in block.collect_params().items():
        value = params[name]
        param._load_init(mx.nd.array(value, dtype=value.dtype), ctx)
    return block
