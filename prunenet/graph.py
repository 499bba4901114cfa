"""Trace a hybridizable Gluon network into channel groups.

A *channel space* is the channel axis of one tensor in the symbol graph. Ops that keep channel
``i`` in position ``i`` (BatchNorm, ReLU, pooling, ...) pass their input's space through; an
element-wise add ties the spaces of its inputs; ``Concat`` joins them end to end; Convolution and
FullyConnected read one layout and start a new space. The union-find classes of spaces are the
*channel groups*: the sets of channels that are kept or removed together.

Every tensor carries a *layout*: the tuple of spaces its channel axis is made of (one space for
almost every tensor, several after a ``Concat``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import PrunenetError

__all__ = ["Layer", "Norm", "Group", "ChannelGraph", "trace", "UnsupportedOpError"]


class UnsupportedOpError(PrunenetError):
    """The tracer met an op whose channel semantics it does not know."""


@dataclass
class Layer:
    """A Convolution or FullyConnected node: reads ``in_layout``, writes ``out_space``."""

    name: str
    op: str
    weight: str
    bias: Optional[str]
    in_layout: Tuple[int, ...]
    out_space: int
    in_channels: int
    out_channels: int
    kernel: Tuple[int, int]
    groups: int
    out_hw: int  # output positions per image (H*W; 1 for a dense layer)
    cols_per_channel: int  # input columns owned by one input channel (H*W when a dense flattens)
    depthwise: bool = False  # one filter per channel: reads and writes the same group


@dataclass
class Norm:
    """A BatchNorm node on a layout of channel spaces (one space unless it follows a
    ``Concat``); ``producer`` is the layer feeding it directly, if any."""

    name: str
    layout: Tuple[int, ...]
    gamma: str
    beta: str
    running_mean: str
    running_var: str
    producer: Optional[str]
    eps: float


@dataclass
class Group:
    """Channels kept or removed together, with the layers that write and read them."""

    index: int
    width: int
    spaces: List[int]
    producers: List[str] = field(default_factory=list)
    consumers: List[str] = field(default_factory=list)
    norms: List[str] = field(default_factory=list)
    prunable: bool = True
    reasons: List[str] = field(default_factory=list)
    ops: List[str] = field(default_factory=list)  # channel-wise ops between producers and consumers
    segments: int = 1  # a grouped conv reads/writes it: equal removal from each of these parts
    gates: List[str] = field(default_factory=list)  # producers whose output only gates (SE)

    @property
    def homogeneous(self) -> bool:
        """True when every op between the producers' BatchNorm and the consumers is positively
        homogeneous (ReLU, pooling, ...), so scale can be moved from consumers to producers."""
        return all(op in _HOMOGENEOUS for op in self.ops)

    @property
    def tied(self) -> bool:
        """True when several layers write these channels (a residual stream, or a depthwise
        convolution after the layer it filters); SE gates do not count."""
        return len(self.producers) - len(self.gates) > 1


class _UnionFind:
    def __init__(self) -> None:
        self.parent: List[int] = []

    def add(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


# Ops that map channel i to channel i and a zero channel to a zero channel.
_ZERO_PRESERVING = {
    "relu", "Dropout", "_contrib_AdaptiveAvgPooling2D", "expand_dims", "Flatten", "flatten", "_copy", "identity", "BlockGrad", "Cast", "amp_cast",
    "_mul_scalar", "_div_scalar", "tanh",
}
# Ops that map channel i to channel i but give a non-zero output for a zero channel.
_NOT_ZERO_PRESERVING = {
    "sigmoid", "softrelu", "softsign", "exp", "_plus_scalar", "_minus_scalar", "_rminus_scalar",
    "erf", "gelu",
}
# Channel-wise ops f with f(a·x) = a·f(x) for a > 0 (and element-wise adds).
_HOMOGENEOUS = {"relu", "leaky", "pool_max", "pool_avg", "pool_sum", "Dropout", "Flatten", "flatten",
                "_copy", "identity", "BlockGrad", "add", "concat", "expand_dims", "gate"}
_MUL_OPS = {"broadcast_mul", "elemwise_mul", "_mul"}
_ADD_OPS = {"elemwise_add", "broadcast_add", "_Plus", "_plus", "_add", "add_n", "ElementWiseSum"}
_OUTPUT_OPS = {"SoftmaxOutput", "softmax", "log_softmax", "SoftmaxActivation"}


def _tuple(attr: str) -> Tuple[int, ...]:
    return tuple(int(v) for v in attr.strip("()[] ").split(",") if v.strip())


class ChannelGraph:
    """The channel groups of a traced network, with its conv/dense layers and BatchNorms."""

    def __init__(self, symbol, input_shape: Tuple[int, ...], layers: Dict[str, Layer],
                 norms: Dict[str, Norm], groups: List[Group], space_group: List[int],
                 space_width: List[int], param_shapes: Dict[str, Tuple[int, ...]],
                 output_spaces: List[int]) -> None:
        self.symbol = symbol
        self.input_shape = tuple(input_shape)
        self.layers = layers  # in topological order
        self.norms = norms
        self.groups = groups
        self.space_group = space_group
        self.space_width = space_width
        self.param_shapes = param_shapes
        self.output_spaces = output_spaces
        self.in_norm: Dict[str, str] = {}  # layer -> a BatchNorm of its own on its input

    # -- queries ---------------------------------------------------------------------------
    @property
    def prunable_groups(self) -> List[Group]:
        return [g for g in self.groups if g.prunable]

    def group_of(self, space: int) -> Group:
        return self.groups[self.space_group[space]]

    def out_group(self, layer: str) -> Group:
        """The group a layer writes."""
        return self.group_of(self.layers[layer].out_space)

    def in_segments(self, layer: str) -> List[Tuple[Group, int]]:
        """The groups a layer reads, each with its channel offset in the layer's input."""
        segs, offset = [], 0
        for space in self.layers[layer].in_layout:
            segs.append((self.group_of(space), offset))
            offset += self.space_width[space]
        return segs

    def full_widths(self) -> np.ndarray:
        return np.array([g.width for g in self.groups], dtype=np.int64)

    def describe(self) -> str:
        """A human-readable table of the groups."""
        lines = []
        for g in self.groups:
            state = "prunable" if g.prunable else "fixed: " + "; ".join(g.reasons)
            lines.append(f"group {g.index:3d} width {g.width:5d} producers {len(g.producers):2d} "
                         f"consumers {len(g.consumers):2d}  {state}")
        return "\n".join(lines)


def trace(net, input_shape: Sequence[int], strict: bool = False) -> ChannelGraph:
    """Trace ``net`` (a hybridizable Gluon block) for an input of ``input_shape`` (NCHW).

    With ``strict`` an op of unknown channel semantics raises :class:`UnsupportedOpError`;
    otherwise the groups it touches are made unprunable and the reason is recorded.
    """
    import mxnet as mx

    input_shape = tuple(int(v) for v in input_shape)
    symbol = net(mx.sym.var("data"))
    if isinstance(symbol, (list, tuple)):
        symbol = mx.sym.Group(list(symbol))
    return trace_symbol(symbol, input_shape, strict=strict)


def trace_symbol(symbol, input_shape: Tuple[int, ...], strict: bool = False) -> ChannelGraph:
    """Trace an MXNet symbol whose single data input is named ``data``."""
    graph_json = json.loads(symbol.tojson())
    nodes = graph_json["nodes"]
    internals = symbol.get_internals()
    try:
        arg_shapes, out_shapes, aux_shapes = internals.infer_shape(data=input_shape)
    except mx_error_types() as err:
        raise PrunenetError(f"input shape {input_shape} does not fit the network: "
                         f"{str(err).splitlines()[0]}") from None
    shape_of = dict(zip(internals.list_outputs(), out_shapes))
    param_shapes = dict(zip(internals.list_arguments(), arg_shapes))
    param_shapes.update(zip(internals.list_auxiliary_states(), aux_shapes))

    def out_shape(node_id: int, index: int) -> Tuple[int, ...]:
        node = nodes[node_id]
        if node["op"] == "null":
            return tuple(shape_of[node["name"]])
        name = node["name"]
        key = f"{name}_output" if f"{name}_output" in shape_of else f"{name}_output{index}"
        return tuple(shape_of[key])

    uf = _UnionFind()
    widths: List[int] = []
    frozen: Dict[int, List[str]] = {}  # space -> reasons
    space_ops: Dict[int, List[str]] = {}  # space -> channel-wise ops applied to it
    nonzero: Dict[int, str] = {}  # space -> an op that maps its zero channels to non-zero values
    gated: set = set()  # spaces that only scale another tensor channel-wise (SE gates)
    segments: Dict[int, List[int]] = {}  # space -> num_group of the grouped convs touching it

    def note(spaces, kind: str) -> None:
        for s in spaces:
            kinds = space_ops.setdefault(s, [])
            if kind not in kinds:
                kinds.append(kind)

    def new_space(width: int) -> int:
        widths.append(int(width))
        return uf.add()

    def freeze(spaces, reason: str) -> None:
        for s in spaces:
            frozen.setdefault(s, [])
            if reason not in frozen[s]:
                frozen[s].append(reason)

    # tensor (node_id, out_index) -> (layout, positions per channel)
    tensors: Dict[Tuple[int, int], Tuple[Tuple[int, ...], int]] = {}
    layers: Dict[str, Layer] = {}
    norms: Dict[str, Norm] = {}
    last_layer_of: Dict[Tuple[int, int], str] = {}  # tensor -> the layer whose raw output it is
    norm_of: Dict[Tuple[int, int], str] = {}  # tensor -> a non-producer BN it passed through
    in_norm: Dict[str, str] = {}  # layer -> that BN on its input (DenseNet: BN -> ReLU -> conv)

    def inputs_of(node) -> List[Tuple[int, int]]:
        return [(i[0], i[1]) for i in node["inputs"] if nodes[i[0]]["op"] != "null"
                or nodes[i[0]]["name"] == "data"]

    def param_inputs(node) -> List[str]:
        return [nodes[i[0]]["name"] for i in node["inputs"]
                if nodes[i[0]]["op"] == "null" and nodes[i[0]]["name"] != "data"]

    for nid, node in enumerate(nodes):
        op, name, attrs = node["op"], node["name"], node.get("attrs", {})
        if op == "null":
            if name == "data":
                shape = input_shape
                space = new_space(shape[1] if len(shape) > 1 else 1)
                freeze([space], "network input")
                tensors[(nid, 0)] = ((space,), int(np.prod(shape[2:])) if len(shape) > 2 else 1)
            continue
        ins = inputs_of(node)
        shape = out_shape(nid, 0)
        if op in ("Convolution", "FullyConnected"):
            layout, positions = tensors[ins[0]]
            if ins[0] in norm_of:
                in_norm[name] = norm_of[ins[0]]
            params = param_inputs(node)
            weight = params[0]
            bias = params[1] if len(params) > 1 else None
            wshape = param_shapes[weight]
            out_c = int(wshape[0])
            if op == "Convolution":
                kernel = _tuple(attrs.get("kernel", "(1, 1)"))
                kernel = kernel if len(kernel) == 2 else (kernel[0], 1)
                groups = int(attrs.get("num_group", 1))
                out_hw = int(np.prod(shape[2:]))
                cols = 1
                in_c = int(wshape[1]) * groups
                if attrs.get("layout", "NCHW") not in ("NCHW", "NCW"):
                    freeze(layout, f"{op} {name}: layout {attrs['layout']} is not channels-first")
            else:
                kernel, groups, out_hw = (1, 1), 1, 1
                flatten = attrs.get("flatten", "True") in ("True", "true", "1")
                in_cols = int(wshape[1])
                in_c = sum(widths[s] for s in layout)
                if not flatten:
                    freeze(layout, f"dense {name} with flatten=False")
                    cols = 1
                elif in_c * positions != in_cols:
                    freeze(layout, f"dense {name}: input columns do not match channels")
                    cols = 1
                else:
                    cols = positions
            depthwise = op == "Convolution" and groups > 1 and groups == in_c == out_c \
                and len(layout) == 1
            out_space = layout[0] if depthwise else new_space(out_c)
            if groups > 1 and not depthwise:
                if len(layout) == 1:
                    segments.setdefault(layout[0], []).append(groups)
                    segments.setdefault(out_space, []).append(groups)
                else:
                    freeze(layout + (out_space,),
                           f"grouped convolution {name} reads a concatenation")
            layers[name] = Layer(name=name, op=op, weight=weight, bias=bias, in_layout=layout,
                                 out_space=out_space, in_channels=in_c, out_channels=out_c,
                                 kernel=tuple(kernel), groups=groups, out_hw=out_hw,
                                 cols_per_channel=cols, depthwise=depthwise)
            tensors[(nid, 0)] = ((out_space,), out_hw if op == "Convolution" else 1)
            last_layer_of[(nid, 0)] = name
            continue

        if op == "BatchNorm":
            layout, positions = tensors[ins[0]]
            gamma, beta, mean, var = param_inputs(node)[:4]
            axis = int(attrs.get("axis", 1))
            if axis != 1:
                freeze(layout, f"BatchNorm {name} normalises axis {axis}, not the channels")
            if attrs.get("fix_gamma", "True") in ("True", "true", "1"):
                freeze(layout, f"BatchNorm {name} has fix_gamma=True (no learnable scale)")
            producer = last_layer_of.get(ins[0])
            norms[name] = Norm(name=name, layout=layout, gamma=gamma, beta=beta,
                               running_mean=mean, running_var=var, producer=producer,
                               eps=float(attrs.get("eps", 1e-3)))
            if producer is None:
                note(layout, "BatchNorm")  # a norm that is not a producer's own
                norm_of[(nid, 0)] = name
            tensors[(nid, 0)] = (layout, positions)
            continue

        if op in _ADD_OPS:
            layouts = [tensors[i][0] for i in ins]
            positions = tensors[ins[0]][1]
            first = layouts[0]
            if all(len(lay) == len(first) and all(widths[a] == widths[b] for a, b in zip(lay, first))
                   for lay in layouts):
                for lay in layouts[1:]:
                    for a, b in zip(first, lay):
                        uf.union(a, b)
                note(first, "add")
            else:
                for lay in layouts:
                    freeze(lay, f"{op} {name} adds tensors of different channel layouts")
            tensors[(nid, 0)] = (first, positions)
            continue

        if op in _MUL_OPS and len(ins) == 2:
            (lay_a, pos_a), (lay_b, pos_b) = tensors[ins[0]], tensors[ins[1]]
            shape_a, shape_b = out_shape(*ins[0]), out_shape(*ins[1])
            gate_first = len(shape_a) == len(shape_b) and int(np.prod(shape_a[2:])) == 1 < \
                int(np.prod(shape_b[2:]))
            if gate_first:
                (lay_a, pos_a, shape_a), (lay_b, pos_b, shape_b) = \
                    (lay_b, pos_b, shape_b), (lay_a, pos_a, shape_a)
            is_gate = (len(lay_a) == 1 and len(lay_b) == 1 and len(shape_a) == len(shape_b) >= 3
                       and shape_a[1] == shape_b[1] and int(np.prod(shape_b[2:])) == 1)
            if is_gate:  # x * gate(x): an SE block; a removed channel of x stays zero
                uf.union(lay_a[0], lay_b[0])
                gated.add(lay_b[0])
                note(lay_a, "gate")
                tensors[(nid, 0)] = (lay_a, pos_a)
                continue

        if op in ("Concat", "concat"):
            dim = int(attrs.get("dim", 1))
            layouts = [tensors[i][0] for i in ins]
            if dim != 1:
                for lay in layouts:
                    freeze(lay, f"Concat {name} along axis {dim}")
                out = new_space(shape[1])
                freeze([out], f"Concat {name} along axis {dim}")
                tensors[(nid, 0)] = ((out,), int(np.prod(shape[2:])))
            else:
                tensors[(nid, 0)] = (tuple(s for lay in layouts for s in lay),
                                     int(np.prod(shape[2:])))
            continue

        passthrough = (op in _ZERO_PRESERVING or op in _NOT_ZERO_PRESERVING or op in _OUTPUT_OPS
                       or op in ("Activation", "LeakyReLU", "Pooling", "clip"))
        if op == "LeakyReLU" and attrs.get("act_type", "leaky") in ("prelu", "rrelu"):
            passthrough = False
        if passthrough and ins and len(shape) >= 2:
            layout, in_positions = tensors[ins[0]]
            channels = sum(widths[s] for s in layout)
            is_flatten = op in ("Flatten", "flatten")
            passthrough = shape[1] == channels * (in_positions if is_flatten else 1)
        if passthrough and ins and len(shape) >= 2:
            if not _zero_preserving(op, attrs):
                for space in layout:
                    nonzero.setdefault(space, f"{op} {name} maps a removed (zero) channel to a "
                                              f"non-zero value")
            if op == "Pooling" and attrs.get("layout", "NCHW") not in ("NCHW", "NCW", "None"):
                freeze(layout, f"Pooling {name}: layout is not channels-first")
            note(layout, _op_kind(op, attrs))
            if ins[0] in norm_of:
                norm_of[(nid, 0)] = norm_of[ins[0]]
            positions = in_positions if is_flatten or len(shape) <= 2 else int(np.prod(shape[2:]))
            tensors[(nid, 0)] = (layout, positions)
            continue

        # Unknown op: its inputs and outputs keep every channel.
        reason = f"unsupported op {op} (node {name})"
        if strict:
            raise UnsupportedOpError(
                f"{reason}: the channel graph does not know how {op} maps channels; "
                f"trace with strict=False to keep the groups around it unpruned")
        for i in ins:
            if i in tensors:
                freeze(tensors[i][0], reason)
        n_out = max(1, len([k for k in shape_of if k.startswith(name + "_output")]))
        for k in range(n_out):
            oshape = out_shape(nid, k)
            space = new_space(oshape[1] if len(oshape) > 1 else 1)
            freeze([space], reason)
            tensors[(nid, k)] = ((space,), int(np.prod(oshape[2:])) if len(oshape) > 2 else 1)

    output_spaces = []
    for head in graph_json["heads"]:
        lay = tensors[(head[0], head[1])][0]
        output_spaces.extend(lay)
        freeze(lay, "network output")

    for space, reason in nonzero.items():
        if space not in gated:
            freeze([space], reason)

    # Build groups from the union-find classes, in order of first appearance.
    root_index: Dict[int, int] = {}
    space_group = []
    groups: List[Group] = []
    for s in range(len(widths)):
        r = uf.find(s)
        if r not in root_index:
            root_index[r] = len(groups)
            groups.append(Group(index=len(groups), width=widths[s], spaces=[]))
        g = groups[root_index[r]]
        g.spaces.append(s)
        space_group.append(g.index)
        for reason in frozen.get(s, []):
            g.prunable = False
            if reason not in g.reasons:
                g.reasons.append(reason)
        for kind in ([] if s in gated else space_ops.get(s, [])):
            if kind not in g.ops:
                g.ops.append(kind)
        for parts in segments.get(s, []):
            if g.segments not in (1, parts):
                g.prunable = False
                g.reasons.append(f"grouped convolutions with {g.segments} and {parts} groups "
                                 f"share these channels")
            g.segments = parts
    for layer in layers.values():
        groups[space_group[layer.out_space]].producers.append(layer.name)
        if layer.out_space in gated:
            groups[space_group[layer.out_space]].gates.append(layer.name)
        for s in dict.fromkeys(layer.in_layout):
            groups[space_group[s]].consumers.append(layer.name)
    for norm in norms.values():
        for gi in dict.fromkeys(space_group[s] for s in norm.layout):
            groups[gi].norms.append(norm.name)
    for g in groups:
        if g.prunable and not g.producers:
            g.prunable = False
            g.reasons.append("no convolution or dense layer writes these channels")
    graph = ChannelGraph(symbol, input_shape, layers, norms, groups, space_group, widths,
                         {k: tuple(v) for k, v in param_shapes.items()}, output_spaces)
    graph.in_norm = in_norm
    return graph


def _op_kind(op: str, attrs: Dict[str, str]) -> str:
    """A short name for a channel-wise op: ``relu``, ``pool_max``, ``clip``, ..."""
    if op == "Activation":
        return attrs.get("act_type", "relu")
    if op == "Pooling":
        return "pool_" + attrs.get("pool_type", "max")
    if op == "_contrib_AdaptiveAvgPooling2D":
        return "pool_avg"
    if op == "LeakyReLU":
        return attrs.get("act_type", "leaky")
    return op


def _zero_preserving(op: str, attrs: Dict[str, str]) -> bool:
    if op in _ZERO_PRESERVING or op == "Pooling":
        return True
    if op == "Activation":
        return attrs.get("act_type") in ("relu", "tanh", "softsign")
    if op == "LeakyReLU":  # leaky, elu, selu and gelu all map 0 to 0
        return True
    if op == "clip":
        return float(attrs.get("a_min", 0)) <= 0.0 <= float(attrs.get("a_max", 0))
    return False


def mx_error_types():
    import mxnet as mx
    return (mx.base.MXNetError, ValueError)
