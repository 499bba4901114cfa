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
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

import numpy as np

from ..errors import PrunenetError

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
    tracer = _Tracer(symbol, input_shape)
    for nid, raw in enumerate(tracer.nodes):
        if raw["op"] == "null":  # a parameter, or the data input
            if raw["name"] == "data":
                tracer.input_tensor(nid)
            continue
        node = tracer.node(nid, raw)
        handler = _HANDLERS.get(node.op)
        if handler is None or not handler(tracer, node):
            tracer.unknown(node, strict)
    return tracer.graph()


class _Node(NamedTuple):
    """One operator node of the symbol, with what its rule needs to know."""

    id: int
    op: str
    name: str
    attrs: Dict[str, str]
    inputs: List[Tuple[int, int]]  # tensors read: (node id, output index), data included
    params: List[str]  # names of the parameters it reads, in order
    shape: Tuple[int, ...]  # the shape of its first output


class _Tracer:
    """The state of one trace: the channel spaces met so far, their union-find classes, what is
    known of each space, and the tensors, layers and BatchNorms seen. One method per op family
    applies that family's channel rule to a node."""

    def __init__(self, symbol, input_shape: Tuple[int, ...]) -> None:
        self.symbol = symbol
        self.input_shape = input_shape
        graph_json = json.loads(symbol.tojson())
        self.nodes: List[dict] = graph_json["nodes"]
        self.heads: List[list] = graph_json["heads"]
        internals = symbol.get_internals()
        try:
            arg_shapes, out_shapes, aux_shapes = internals.infer_shape(data=input_shape)
        except mx_error_types() as err:
            raise PrunenetError(f"input shape {input_shape} does not fit the network: "
                             f"{str(err).splitlines()[0]}") from None
        self.shape_of = dict(zip(internals.list_outputs(), out_shapes))
        self.param_shapes = dict(zip(internals.list_arguments(), arg_shapes))
        self.param_shapes.update(zip(internals.list_auxiliary_states(), aux_shapes))

        self.uf = _UnionFind()
        self.widths: List[int] = []
        self.frozen: Dict[int, List[str]] = {}  # space -> reasons
        self.space_ops: Dict[int, List[str]] = {}  # space -> channel-wise ops applied to it
        self.nonzero: Dict[int, str] = {}  # space -> an op mapping its zero channels to non-zero
        self.gated: Set[int] = set()  # spaces that only scale another tensor channel-wise (SE)
        self.segments: Dict[int, List[int]] = {}  # space -> num_group of grouped convs on it

        # tensor (node_id, out_index) -> (layout, positions per channel)
        self.tensors: Dict[Tuple[int, int], Tuple[Tuple[int, ...], int]] = {}
        self.layers: Dict[str, Layer] = {}
        self.norms: Dict[str, Norm] = {}
        self.last_layer_of: Dict[Tuple[int, int], str] = {}  # tensor -> layer whose raw output it is
        self.norm_of: Dict[Tuple[int, int], str] = {}  # tensor -> a non-producer BN it passed
        self.in_norm: Dict[str, str] = {}  # layer -> that BN on its input (DenseNet: BN-ReLU-conv)

    # -- helpers ---------------------------------------------------------------------------
    def node(self, nid: int, raw: dict) -> _Node:
        """The operator node ``nid`` (not a ``null`` one) of the symbol JSON."""
        nodes = self.nodes
        inputs = [(i[0], i[1]) for i in raw["inputs"] if nodes[i[0]]["op"] != "null"
                  or nodes[i[0]]["name"] == "data"]
        params = [nodes[i[0]]["name"] for i in raw["inputs"]
                  if nodes[i[0]]["op"] == "null" and nodes[i[0]]["name"] != "data"]
        return _Node(id=nid, op=raw["op"], name=raw["name"], attrs=raw.get("attrs", {}),
                     inputs=inputs, params=params, shape=self.out_shape(nid, 0))

    def out_shape(self, node_id: int, index: int) -> Tuple[int, ...]:
        """The inferred shape of output ``index`` of node ``node_id``."""
        node = self.nodes[node_id]
        if node["op"] == "null":
            return tuple(self.shape_of[node["name"]])
        name = node["name"]
        key = f"{name}_output" if f"{name}_output" in self.shape_of else f"{name}_output{index}"
        return tuple(self.shape_of[key])

    def note(self, spaces: Sequence[int], kind: str) -> None:
        """Record that the channel-wise op ``kind`` is applied to ``spaces``."""
        for s in spaces:
            kinds = self.space_ops.setdefault(s, [])
            if kind not in kinds:
                kinds.append(kind)

    def new_space(self, width: int) -> int:
        """A new channel space of ``width`` channels, in a class of its own."""
        self.widths.append(int(width))
        return self.uf.add()

    def freeze(self, spaces: Sequence[int], reason: str) -> None:
        """Make the groups of ``spaces`` unprunable, for ``reason``."""
        for s in spaces:
            self.frozen.setdefault(s, [])
            if reason not in self.frozen[s]:
                self.frozen[s].append(reason)

    def frozen_tensor(self, key: Tuple[int, int], shape: Tuple[int, ...], reason: str) -> None:
        """Give tensor ``key`` of ``shape`` a new space of its own, frozen for ``reason``."""
        space = self.new_space(shape[1] if len(shape) > 1 else 1)
        self.freeze([space], reason)
        self.tensors[key] = ((space,), int(np.prod(shape[2:])) if len(shape) > 2 else 1)

    def input_tensor(self, nid: int) -> None:
        """The network's ``data`` input (node ``nid``): a space no pruning may touch."""
        self.frozen_tensor((nid, 0), tuple(self.input_shape), "network input")

    # -- op rules: each returns False when the node is not of the kind it handles ----------
    def layer(self, n: _Node) -> bool:
        """Convolution or FullyConnected: reads its input's layout and writes a new space (the
        same space, for a depthwise convolution)."""
        layout, positions = self.tensors[n.inputs[0]]
        if n.inputs[0] in self.norm_of:
            self.in_norm[n.name] = self.norm_of[n.inputs[0]]
        weight = n.params[0]
        bias = n.params[1] if len(n.params) > 1 else None
        wshape = self.param_shapes[weight]
        out_c = int(wshape[0])
        if n.op == "Convolution":
            kernel, groups, out_hw, cols, in_c = self._conv_geometry(n, layout, wshape)
        else:
            kernel, groups, out_hw, cols, in_c = self._dense_geometry(n, layout, positions, wshape)
        depthwise = n.op == "Convolution" and groups > 1 and groups == in_c == out_c \
            and len(layout) == 1
        out_space = layout[0] if depthwise else self.new_space(out_c)
        if groups > 1 and not depthwise:
            if len(layout) == 1:
                self.segments.setdefault(layout[0], []).append(groups)
                self.segments.setdefault(out_space, []).append(groups)
            else:
                self.freeze(layout + (out_space,),
                            f"grouped convolution {n.name} reads a concatenation")
        self.layers[n.name] = Layer(name=n.name, op=n.op, weight=weight, bias=bias,
                                    in_layout=layout, out_space=out_space, in_channels=in_c,
                                    out_channels=out_c, kernel=tuple(kernel), groups=groups,
                                    out_hw=out_hw, cols_per_channel=cols, depthwise=depthwise)
        for other in self.layers.values():  # one weight read by two layers: cut both or none
            if other.name != n.name and (other.weight == weight or bias and other.bias == bias):
                self.freeze(layout + (out_space,) + other.in_layout + (other.out_space,),
                            f"layers {other.name} and {n.name} share parameter "
                            f"{weight if other.weight == weight else bias}")
        self.tensors[(n.id, 0)] = ((out_space,), out_hw if n.op == "Convolution" else 1)
        self.last_layer_of[(n.id, 0)] = n.name
        return True

    def _conv_geometry(self, n: _Node, layout: Tuple[int, ...], wshape):
        """A convolution's (kernel, groups, out_hw, cols_per_channel, in_channels)."""
        kernel = _tuple(n.attrs.get("kernel", "(1, 1)"))
        kernel = kernel if len(kernel) == 2 else (kernel[0], 1)
        groups = int(n.attrs.get("num_group", 1))
        out_hw = int(np.prod(n.shape[2:]))
        in_c = int(wshape[1]) * groups
        if n.attrs.get("layout", "NCHW") not in ("NCHW", "NCW"):
            self.freeze(layout, f"{n.op} {n.name}: layout {n.attrs['layout']} is not "
                                f"channels-first")
        return kernel, groups, out_hw, 1, in_c

    def _dense_geometry(self, n: _Node, layout: Tuple[int, ...], positions: int, wshape):
        """A dense layer's (kernel, groups, out_hw, cols_per_channel, in_channels)."""
        flatten = n.attrs.get("flatten", "True") in ("True", "true", "1")
        in_cols = int(wshape[1])
        in_c = sum(self.widths[s] for s in layout)
        if not flatten:
            self.freeze(layout, f"dense {n.name} with flatten=False")
            cols = 1
        elif in_c * positions != in_cols:
            self.freeze(layout, f"dense {n.name}: input columns do not match channels")
            cols = 1
        else:
            cols = positions
        return (1, 1), 1, 1, cols, in_c

    def batch_norm(self, n: _Node) -> bool:
        """BatchNorm: passes its input's layout through and is recorded as a Norm."""
        layout, positions = self.tensors[n.inputs[0]]
        gamma, beta, mean, var = n.params[:4]
        axis = int(n.attrs.get("axis", 1))
        if axis != 1:
            self.freeze(layout, f"BatchNorm {n.name} normalises axis {axis}, not the channels")
        if n.attrs.get("fix_gamma", "True") in ("True", "true", "1"):
            self.freeze(layout, f"BatchNorm {n.name} has fix_gamma=True (no learnable scale)")
        producer = self.last_layer_of.get(n.inputs[0])
        self.norms[n.name] = Norm(name=n.name, layout=layout, gamma=gamma, beta=beta,
                                  running_mean=mean, running_var=var, producer=producer,
                                  eps=float(n.attrs.get("eps", 1e-3)))
        if producer is None:
            self.note(layout, "BatchNorm")  # a norm that is not a producer's own
            self.norm_of[(n.id, 0)] = n.name
        self.tensors[(n.id, 0)] = (layout, positions)
        return True

    def add(self, n: _Node) -> bool:
        """An element-wise sum: ties its inputs' spaces position by position, or freezes them
        all when their layouts differ."""
        layouts = [self.tensors[i][0] for i in n.inputs]
        positions = self.tensors[n.inputs[0]][1]
        first = layouts[0]
        widths = self.widths
        if all(len(lay) == len(first) and all(widths[a] == widths[b] for a, b in zip(lay, first))
               for lay in layouts):
            for lay in layouts[1:]:
                for a, b in zip(first, lay):
                    self.uf.union(a, b)
            self.note(first, "add")
        else:
            for lay in layouts:
                self.freeze(lay, f"{n.op} {n.name} adds tensors of different channel layouts")
        self.tensors[(n.id, 0)] = (first, positions)
        return True

    def mul(self, n: _Node) -> bool:
        """``x * gate(x)`` with a per-channel gate (an SE block): ties the gate to ``x``. Any
        other product is not handled."""
        if len(n.inputs) != 2:
            return False
        (lay_a, pos_a), (lay_b, pos_b) = self.tensors[n.inputs[0]], self.tensors[n.inputs[1]]
        shape_a, shape_b = self.out_shape(*n.inputs[0]), self.out_shape(*n.inputs[1])
        gate_first = len(shape_a) == len(shape_b) and int(np.prod(shape_a[2:])) == 1 < \
            int(np.prod(shape_b[2:]))
        if gate_first:
            (lay_a, pos_a, shape_a), (lay_b, pos_b, shape_b) = \
                (lay_b, pos_b, shape_b), (lay_a, pos_a, shape_a)
        is_gate = (len(lay_a) == 1 and len(lay_b) == 1 and len(shape_a) == len(shape_b) >= 3
                   and shape_a[1] == shape_b[1] and int(np.prod(shape_b[2:])) == 1)
        if not is_gate:
            return False
        # a removed channel of x stays zero
        self.uf.union(lay_a[0], lay_b[0])
        self.gated.add(lay_b[0])
        self.note(lay_a, "gate")
        self.tensors[(n.id, 0)] = (lay_a, pos_a)
        return True

    def concat(self, n: _Node) -> bool:
        """Concat along the channels joins its inputs' layouts end to end; along another axis
        it freezes them and starts a frozen space."""
        dim = int(n.attrs.get("dim", 1))
        layouts = [self.tensors[i][0] for i in n.inputs]
        if dim != 1:
            for lay in layouts:
                self.freeze(lay, f"Concat {n.name} along axis {dim}")
            out = self.new_space(n.shape[1])
            self.freeze([out], f"Concat {n.name} along axis {dim}")
            self.tensors[(n.id, 0)] = ((out,), int(np.prod(n.shape[2:])))
        else:
            self.tensors[(n.id, 0)] = (tuple(s for lay in layouts for s in lay),
                                       int(np.prod(n.shape[2:])))
        return True

    def channelwise(self, n: _Node) -> bool:
        """An op mapping channel i to channel i (activations, pooling, flatten, ...): passes its
        input's layout through. Not handled when its output's channels do not match."""
        op, attrs, shape = n.op, n.attrs, n.shape
        if op == "LeakyReLU" and attrs.get("act_type", "leaky") in ("prelu", "rrelu"):
            return False
        if not (n.inputs and len(shape) >= 2):
            return False
        layout, in_positions = self.tensors[n.inputs[0]]
        channels = sum(self.widths[s] for s in layout)
        is_flatten = op in ("Flatten", "flatten")
        if shape[1] != channels * (in_positions if is_flatten else 1):
            return False
        if not _zero_preserving(op, attrs):
            for space in layout:
                self.nonzero.setdefault(space, f"{op} {n.name} maps a removed (zero) channel to "
                                               f"a non-zero value")
        if op == "Pooling" and attrs.get("layout", "NCHW") not in ("NCHW", "NCW", "None"):
            self.freeze(layout, f"Pooling {n.name}: layout is not channels-first")
        self.note(layout, _op_kind(op, attrs))
        if n.inputs[0] in self.norm_of:
            self.norm_of[(n.id, 0)] = self.norm_of[n.inputs[0]]
        positions = in_positions if is_flatten or len(shape) <= 2 else int(np.prod(shape[2:]))
        self.tensors[(n.id, 0)] = (layout, positions)
        return True

    def unknown(self, n: _Node, strict: bool) -> None:
        """An op of unknown channel semantics: its inputs and outputs keep every channel (with
        ``strict``, an :class:`UnsupportedOpError` instead)."""
        reason = f"unsupported op {n.op} (node {n.name})"
        if strict:
            raise UnsupportedOpError(
                f"{reason}: the channel graph does not know how {n.op} maps channels; "
                f"trace with strict=False to keep the groups around it unpruned")
        for i in n.inputs:
            if i in self.tensors:
                self.freeze(self.tensors[i][0], reason)
        n_out = max(1, len([k for k in self.shape_of if k.startswith(n.name + "_output")]))
        for k in range(n_out):
            self.frozen_tensor((n.id, k), self.out_shape(n.id, k), reason)

    # -- the graph -------------------------------------------------------------------------
    def graph(self) -> ChannelGraph:
        """The ChannelGraph of the nodes traced: the network's outputs frozen, then the spaces
        whose zero channels become non-zero (unless they only gate)."""
        output_spaces = []
        for head in self.heads:
            lay = self.tensors[(head[0], head[1])][0]
            output_spaces.extend(lay)
            self.freeze(lay, "network output")
        for space, reason in self.nonzero.items():
            if space not in self.gated:
                self.freeze([space], reason)
        groups, space_group = self._groups()
        self._attach(groups, space_group)
        graph = ChannelGraph(self.symbol, self.input_shape, self.layers, self.norms, groups,
                             space_group, self.widths,
                             {k: tuple(v) for k, v in self.param_shapes.items()}, output_spaces)
        graph.in_norm = self.in_norm
        return graph

    def _groups(self) -> Tuple[List[Group], List[int]]:
        """The groups (union-find classes, in order of first appearance) with their reasons,
        ops and segments, and each space's group index."""
        root_index: Dict[int, int] = {}
        space_group: List[int] = []
        groups: List[Group] = []
        for s in range(len(self.widths)):
            r = self.uf.find(s)
            if r not in root_index:
                root_index[r] = len(groups)
                groups.append(Group(index=len(groups), width=self.widths[s], spaces=[]))
            g = groups[root_index[r]]
            g.spaces.append(s)
            space_group.append(g.index)
            for reason in self.frozen.get(s, []):
                g.prunable = False
                if reason not in g.reasons:
                    g.reasons.append(reason)
            for kind in ([] if s in self.gated else self.space_ops.get(s, [])):
                if kind not in g.ops:
                    g.ops.append(kind)
            for parts in self.segments.get(s, []):
                if g.segments not in (1, parts):
                    g.prunable = False
                    g.reasons.append(f"grouped convolutions with {g.segments} and {parts} groups "
                                     f"share these channels")
                g.segments = parts
        return groups, space_group

    def _attach(self, groups: List[Group], space_group: List[int]) -> None:
        """Give each group the layers that write and read it and its BatchNorms; a group no
        layer writes is not prunable."""
        for layer in self.layers.values():
            groups[space_group[layer.out_space]].producers.append(layer.name)
            if layer.out_space in self.gated:
                groups[space_group[layer.out_space]].gates.append(layer.name)
            for s in dict.fromkeys(layer.in_layout):
                groups[space_group[s]].consumers.append(layer.name)
        for norm in self.norms.values():
            for gi in dict.fromkeys(space_group[s] for s in norm.layout):
                groups[gi].norms.append(norm.name)
        for g in groups:
            if g.prunable and not g.producers:
                g.prunable = False
                g.reasons.append("no convolution or dense layer writes these channels")


_Rule = Callable[[_Tracer, _Node], bool]
_CHANNELWISE = (_ZERO_PRESERVING | _NOT_ZERO_PRESERVING | _OUTPUT_OPS
                | {"Activation", "LeakyReLU", "Pooling", "clip"})
# op -> its rule; an op with no rule, or whose rule declines it, is an unknown op. Where an op
# would fit two families, the later entry here wins.
_HANDLERS: Dict[str, _Rule] = {
    **{op: _Tracer.channelwise for op in _CHANNELWISE},
    **{op: _Tracer.concat for op in ("Concat", "concat")},
    **{op: _Tracer.mul for op in _MUL_OPS},
    **{op: _Tracer.add for op in _ADD_OPS},
    "BatchNorm": _Tracer.batch_norm,
    "Convolution": _Tracer.layer,
    "FullyConnected": _Tracer.layer,
}


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
