"""What a latency table is keyed by: a *unit*, one convolution or dense layer with the BatchNorm,
activation, pooling and residual addition that only it feeds, described by what it computes."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..core.graph import ChannelGraph


@dataclass(frozen=True)
class UnitSpec:
    """What a unit computes, apart from its widths: optional pooling/flatten on its input
    (``pre``), the conv or dense layer, its BatchNorm, and the element-wise ops and pooling that
    only it feeds (``post``: activations, a residual addition written ``add``, pooling). Their
    costs scale with the unit's widths, so they belong to it rather than to the remainder."""

    op: str  # "conv" or "dense"
    kernel: Tuple[int, int] = (1, 1)
    stride: Tuple[int, int] = (1, 1)
    pad: Tuple[int, int] = (0, 0)
    dilate: Tuple[int, int] = (1, 1)
    in_hw: Tuple[int, ...] = ()  # the input's spatial size (empty: a flat input)
    groups: int = 1  # 0: depthwise (as many groups as channels)
    cols: int = 1  # input columns per channel (a dense layer on a flattened feature map)
    bias: bool = False
    bn: bool = True
    pre: Tuple[str, ...] = ()  # ops on the input, e.g. "Pooling(kernel=(2, 2),...)"
    post: Tuple[str, ...] = ()  # ops after the BatchNorm, e.g. "add", "Activation(act_type=relu)"

    @property
    def key(self) -> str:
        parts = list(self.pre)
        if self.op == "dense":
            parts += ["dense", f"c{self.cols}"]
        else:
            parts += ["conv", "k{}x{}".format(*self.kernel), "s{}x{}".format(*self.stride),
                      "p{}x{}".format(*self.pad), "d{}x{}".format(*self.dilate),
                      "dw" if self.groups == 0 else f"g{self.groups}"]
        parts += ["x".join(map(str, self.in_hw)) or "flat"]
        parts += ["bias"] * self.bias + ["bn"] * self.bn + list(self.post)
        return "/".join(parts)

    def symbol(self, in_width: int, out_width: int):
        """The unit as an MXNet symbol on ``data`` (and ``residual`` when it adds one)."""
        import mxnet as mx
        x = mx.sym.var("data")
        for i, text in enumerate(self.pre):
            op, attrs = _parse_op(text)
            x = getattr(mx.sym, op)(x, name=f"pre{i}", **attrs)
        if self.op == "dense":
            x = mx.sym.FullyConnected(x, num_hidden=out_width, no_bias=not self.bias,
                                      flatten=True, name="fc")
        else:
            x = mx.sym.Convolution(x, num_filter=out_width, kernel=self.kernel,
                                   stride=self.stride, pad=self.pad, dilate=self.dilate,
                                   num_group=in_width if self.groups == 0 else self.groups,
                                   no_bias=not self.bias, name="conv")
        if self.bn:
            x = mx.sym.BatchNorm(x, fix_gamma=False, eps=1e-5, name="bn")
        for i, text in enumerate(self.post):
            if text == "add":
                x = mx.sym.elemwise_add(x, mx.sym.var("residual"), name=f"post{i}")
                continue
            op, attrs = _parse_op(text)
            x = getattr(mx.sym, op)(x, name=f"post{i}", **attrs)
        return x

    def input_shape(self, batch_size: int, in_width: int) -> Tuple[int, ...]:
        if not self.in_hw:
            return (batch_size, in_width * self.cols)
        return (batch_size, in_width) + tuple(self.in_hw)


def _op_string(op: str, attrs: Dict[str, str]) -> str:
    inner = ";".join(f"{k}={v}" for k, v in sorted(attrs.items()) if not k.startswith("__"))
    return f"{op}({inner})"


def _parse_op(text: str) -> Tuple[str, Dict[str, str]]:
    op, inner = text[:-1].split("(", 1)
    return op, dict(kv.split("=", 1) for kv in inner.split(";") if kv)


def _pair(attrs: Dict[str, str], name: str, default: int) -> Tuple[int, int]:
    text = attrs.get(name)
    if not text:
        return (default, default)
    vals = [int(v) for v in text.strip("()[] ").split(",") if v.strip()]
    return (vals[0], vals[1] if len(vals) > 1 else 1) if vals else (default, default)


_ACTIVATIONS = {"Activation", "LeakyReLU", "clip", "relu", "sigmoid", "tanh"}


_ADDS = {"elemwise_add", "broadcast_add", "_Plus", "_plus", "_add"}


_PRE = {"Pooling", "Flatten", "flatten", "Dropout"}


def unit_specs(graph: ChannelGraph) -> Dict[str, UnitSpec]:
    """The unit of every conv/dense layer of ``graph`` that reads or writes a prunable group
    (the others are part of the remainder)."""
    doc = json.loads(graph.symbol.tojson())
    nodes = doc["nodes"]
    internals = graph.symbol.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=graph.input_shape)
    shape_of = dict(zip(internals.list_outputs(), out_shapes))
    index = {node["name"]: i for i, node in enumerate(nodes)}
    readers: Dict[int, List[int]] = {}
    for i, node in enumerate(nodes):
        for entry in node["inputs"]:
            readers.setdefault(entry[0], []).append(i)
    for head in doc["heads"]:
        readers.setdefault(head[0], []).append(-1)  # the network's output is read too
    norm_of = {n.producer: n.name for n in graph.norms.values() if n.producer}

    def tensor_shape(entry) -> Tuple[int, ...]:
        src = nodes[entry[0]]
        if src["op"] == "null":
            return tuple(shape_of[src["name"]])
        return tuple(shape_of.get(f"{src['name']}_output") or
                     shape_of[f"{src['name']}_output{entry[1]}"])

    def sole_reader(node_id: int) -> Optional[int]:
        after = readers.get(node_id, [])
        return after[0] if len(after) == 1 and after[0] >= 0 else None

    def pre_chain(layer_id: int) -> Tuple[List[int], tuple]:
        """Pooling/flatten nodes that only feed this layer, and the chain's input entry."""
        chain, entry = [], nodes[layer_id]["inputs"][0]
        while nodes[entry[0]]["op"] in _PRE and sole_reader(entry[0]) == (
                chain[0] if chain else layer_id):
            chain.insert(0, entry[0])
            entry = nodes[entry[0]]["inputs"][0]
        return chain, entry

    layer_ids = {index[name] for name in graph.layers}
    claimed = set()
    pres = {}
    for name in graph.layers:
        pres[name] = pre_chain(index[name])
        claimed.update(pres[name][0])

    def post_chain(node_id: int) -> List[str]:
        post = []
        while True:
            nxt = sole_reader(node_id)
            if nxt is None or nxt in claimed or nxt in layer_ids:
                return post
            node = nodes[nxt]
            if node["op"] in _ACTIVATIONS or node["op"] == "Pooling":
                post.append(_op_string(node["op"], node.get("attrs", {})))
            elif node["op"] in _ADDS and len(node["inputs"]) == 2 and \
                    node["inputs"][0][0] == node_id:
                post.append("add")
            else:
                return post
            node_id = nxt

    specs: Dict[str, UnitSpec] = {}
    for layer in graph.layers.values():
        groups = [graph.group_of(s) for s in layer.in_layout] + [graph.out_group(layer.name)]
        if not any(g.prunable for g in groups):
            continue
        node = nodes[index[layer.name]]
        attrs = node.get("attrs", {})
        tail = index[norm_of[layer.name]] if layer.name in norm_of else index[layer.name]
        chain, entry = pres[layer.name]
        in_shape = tensor_shape(entry)
        common = dict(bias=layer.bias is not None, bn=layer.name in norm_of,
                      pre=tuple(_op_string(nodes[i]["op"], nodes[i].get("attrs", {}))
                                for i in chain),
                      post=tuple(post_chain(tail)), in_hw=tuple(int(v) for v in in_shape[2:]))
        if layer.op == "FullyConnected":
            cols = layer.cols_per_channel if not chain and len(in_shape) <= 2 else 1
            specs[layer.name] = UnitSpec("dense", cols=cols, **common)
            continue
        specs[layer.name] = UnitSpec(
            "conv", kernel=_pair(attrs, "kernel", 1), stride=_pair(attrs, "stride", 1),
            pad=_pair(attrs, "pad", 0), dilate=_pair(attrs, "dilate", 1),
            groups=0 if layer.depthwise else layer.groups, **common)
    return specs


def network_key(graph: ChannelGraph) -> str:
    """A name for the architecture of ``graph`` at its input size (not its layers' names)."""
    doc = json.loads(graph.symbol.tojson())
    plain = [[n["op"], {k: v for k, v in n.get("attrs", {}).items() if not k.startswith("__")},
              [e[:2] for e in n["inputs"]]] for n in doc["nodes"]]
    text = json.dumps([plain, doc["heads"], list(graph.input_shape[1:])], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]
