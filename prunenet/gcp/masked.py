"""The network while it is being pruned: masks, frozen convolutions, BatchNorm on or off.

:class:`MaskedNetwork` rewrites the traced symbol so that after every producer of a prunable group
(its BatchNorm, or the layer itself where no BatchNorm follows) the output is multiplied by a
per-channel factor: the fixed binary *keep* mask, times a learnable *mask* for groups whose
channels several producers write (a residual stream) or whose producer has no BatchNorm. A
BatchNorm applies the factor through its affine parameters (γ·f, β·f), which is the same function
and much cheaper to differentiate than multiplying the feature map. The regularised scale of a
group is that mask, or else its producer's BN γ.

Two hybridized ``SymbolBlock`` views share every parameter with the original network: one with
``use_global_stats=True`` ("BatchNorm off", the regularize step) and one with ordinary BatchNorm
(the debias step). Convolution weights are frozen in both.

A network cast to float16 (:func:`prunenet.core.replicas.cast`) keeps BatchNorm's parameters in
float32, and so do the keep masks and learnable masks: they multiply those float32 γ and β, and
as float32 parameters they are their own master copies, which the proximal step thresholds
directly. Where a factor multiplies a feature map (a producer without BatchNorm), the views cast
it to the network's dtype first.
"""
from __future__ import annotations

import json
import warnings
from typing import Dict, List, Sequence

import numpy as np

from ..core.graph import ChannelGraph, Group
from ..core.surgery import compress_grouped, expand_grouped, full_keep
from .streams import DEFAULT_RULE, check_rule, combine

__all__ = ["MaskedNetwork", "REGULARIZE", "DEBIAS"]

REGULARIZE, DEBIAS = "regularize", "debias"
_FOLDABLE_OPS = {"relu", "pool_max", "pool_avg", "Dropout", "Flatten", "flatten", "_copy",
                 "identity", "BlockGrad"}
_EPS = 1e-12


def _tuple(text, axis: int, default: int) -> int:
    """Element ``axis`` of an MXNet tuple attribute such as ``"(1, 1)"``, or ``default``."""
    if not text:
        return default
    values = [int(v) for v in str(text).strip("()[] ").split(",") if v.strip()]
    return values[axis] if axis < len(values) else (values[0] if values else default)


class MaskedNetwork:
    """A traced network with per-group scale masks, ready for the GCP steps.

    It takes ``net`` over: the parameters are shared and changed in place (a masked group's
    producer γ and β are divided by its mask), so afterwards only the wrapper, or
    :meth:`folded_params`, computes the network's function.
    """

    def __init__(self, net, graph: ChannelGraph, ctx=None,
                 stream_score: str = DEFAULT_RULE) -> None:
        import mxnet as mx
        from mxnet import gluon

        self.net, self.graph = net, graph
        self.stream_score = check_rule(stream_score)
        self.ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
        self.params = net.collect_params()
        self.keep = full_keep(graph)
        self._bn_of = {n.producer: n for n in graph.norms.values() if n.producer}
        self.masked_groups = [g.index for g in graph.prunable_groups
                              if g.tied or any(p not in self._bn_of for p in self.writers(g))]
        self.classifier = [name for name, layer in graph.layers.items()
                           if not graph.out_group(name).prunable
                           and "network output" in graph.out_group(name).reasons]
        self.mask_params = gluon.ParameterDict("prunenet_")
        for g in graph.prunable_groups:
            keep = self.mask_params.get(f"keep{g.index}", shape=(g.width,), grad_req="null",
                                        init=mx.init.One())
            keep.initialize(ctx=self.ctx)
        for gi in self.masked_groups:
            mask = self.mask_params.get(f"mask{gi}", shape=(graph.groups[gi].width,),
                                        init=mx.init.One())
            mask.initialize(ctx=self.ctx)
        self._init_masks()
        self._set_grad_reqs()
        self._blocks: Dict[str, object] = {}

    def writers(self, g: Group) -> List[str]:
        """The producers whose output the group's scale multiplies (SE gates excluded)."""
        return [p for p in g.producers if p not in g.gates]

    # -- names --------------------------------------------------------------------------------
    def keep_name(self, gi: int) -> str:
        return f"prunenet_keep{gi}"

    def mask_name(self, gi: int) -> str:
        return f"prunenet_mask{gi}"

    def scale_name(self, gi: int) -> str:
        """The parameter regularised for group ``gi``: its mask, or its producer's BN γ."""
        if gi in self.masked_groups:
            return self.mask_name(gi)
        return self._bn_of[self.writers(self.graph.groups[gi])[0]].gamma

    def _param(self, name: str):
        return self.mask_params[name] if name.startswith("prunenet_") else self.params[name]

    def get(self, name: str) -> np.ndarray:
        """A parameter's value, once every write in flight is done: a hybridized network's
        BatchNorm writes its running statistics without the engine knowing, so reading one
        without ``waitall`` can catch an update half-way (runs then differed at ~1e-7)."""
        import mxnet as mx
        mx.nd.waitall()
        return self._param(name).data(self.ctx[0]).asnumpy()

    def set(self, name: str, value: np.ndarray) -> None:
        import mxnet as mx
        self._param(name).set_data(mx.nd.array(value, dtype=value.dtype))

    # -- set-up ---------------------------------------------------------------------------------
    def _init_masks(self) -> None:
        """m = the producers' γ combined by the stream rule (:mod:`prunenet.gcp.streams`), and γ_p, β_p
        divided by m."""
        for gi in self.masked_groups:
            norms = [self._bn_of[p] for p in self.writers(self.graph.groups[gi])
                     if p in self._bn_of]
            if not norms:
                continue
            m = combine([self.get(n.gamma) for n in norms], self.stream_score, "l2")
            m = np.where(m > _EPS, m, 1.0)
            for n in norms:
                self.set(n.gamma, (self.get(n.gamma) / m).astype(np.float32))
                self.set(n.beta, (self.get(n.beta) / m).astype(np.float32))
            self.set(self.mask_name(gi), m.astype(np.float32))

    def _set_grad_reqs(self) -> None:
        trainable = set()
        for norm in self.graph.norms.values():
            trainable.update((norm.gamma, norm.beta))
        for name in self.classifier:
            layer = self.graph.layers[name]
            trainable.update(p for p in (layer.weight, layer.bias) if p)
        for name, param in self.params.items():
            param.grad_req = "write" if name in trainable else "null"

    def weight_params(self) -> Dict[str, object]:
        """The convolution and dense weights and biases that the pruning steps keep frozen, made
        trainable (for methods that train them while regularizing, such as network slimming).
        Call before the first :meth:`block`."""
        out = {}
        for layer in self.graph.layers.values():
            for name in (layer.weight, layer.bias):
                if name and name in self.params:
                    self.params[name].grad_req = "write"
                    out[name] = self.params[name]
        return out

    def trainable_params(self, phase: str = DEBIAS) -> Dict[str, object]:
        """What a pruning step trains: BN scales and shifts, masks and the classifier — except
        that in the regularize step the γ of a masked group's producers stay fixed (only the
        shared mask is regularised there)."""
        out = {name: p for name, p in self.params.items() if p.grad_req != "null"}
        out.update({p.name: p for p in self.mask_params.values() if p.grad_req != "null"})
        if phase == REGULARIZE:
            for gi in self.masked_groups:
                for p in self.graph.groups[gi].producers:
                    if p in self._bn_of:
                        out.pop(self._bn_of[p].gamma, None)
        return out

    # -- the two views --------------------------------------------------------------------------
    def block(self, phase: str):
        """The hybridized view for ``phase`` (``regularize``: BN on running statistics)."""
        if phase not in (REGULARIZE, DEBIAS):
            raise ValueError(f"unknown phase {phase!r}")
        if phase not in self._blocks:
            import mxnet as mx
            from mxnet import gluon
            symbol = self._masked_symbol(use_global_stats=phase == REGULARIZE)
            shared = gluon.ParameterDict("")
            shared.update(self.params)
            shared.update(self.mask_params)
            with warnings.catch_warnings():  # SymbolBlock warns that 'data' has no dtype yet
                warnings.simplefilter("ignore")
                block = gluon.SymbolBlock(symbol, [mx.sym.var("data")], params=shared)
            block.hybridize(static_alloc=True, static_shape=True)
            self._blocks[phase] = block
        return self._blocks[phase]

    def __call__(self, x):
        return self.block(DEBIAS)(x)

    def _masked_symbol(self, use_global_stats: bool):
        import mxnet as mx
        from ..core.replicas import compute_dtype
        graph = self.graph
        dtype = compute_dtype(self.net)
        doc = json.loads(graph.symbol.tojson())
        nodes = doc["nodes"]
        internals = graph.symbol.get_internals()
        _, out_shapes, _ = internals.infer_shape(data=graph.input_shape)
        ndim = {name[: -len("_output")]: len(s) for name, s in zip(internals.list_outputs(),
                                                                    out_shapes)
                if name.endswith("_output")}
        tails: Dict[str, int] = {}
        for g in graph.prunable_groups:
            for p in self.writers(g):
                tail = self._bn_of[p].name if p in self._bn_of else p
                tails[tail] = g.index
        # A BatchNorm that is no producer's own (DenseNet: Concat -> BN -> ReLU -> conv) maps a
        # removed (zero) channel to β - γμ/σ: hold its output at zero there too.
        norm_tails = {n.name: n.layout for n in graph.norms.values() if n.producer is None
                      and any(graph.group_of(s).prunable for s in n.layout)}

        new: List[dict] = []
        plain: Dict[int, int] = {}
        masked: Dict[int, int] = {}
        factors: Dict[tuple, int] = {}

        def add(node: dict) -> int:
            new.append(node)
            return len(new) - 1

        def var(name: str, width: int) -> int:  # masks are float32 (see the module doc)
            return add({"op": "null", "name": name,
                        "attrs": {"__shape__": f"({width},)", "__dtype__": "0"}, "inputs": []})

        def to_maps(node: int) -> int:
            """A factor that multiplies feature maps, in the network's compute dtype."""
            if dtype == "float32":
                return node
            return add({"op": "Cast", "name": f"{new[node]['name']}_{dtype}",
                        "attrs": {"dtype": dtype}, "inputs": [[node, 0, 0]]})

        def vector(gi: int) -> int:
            """keep × mask of group ``gi``, as a (width,) vector."""
            if (gi, 1) in factors:
                return factors[(gi, 1)]
            src = var(self.keep_name(gi), graph.groups[gi].width)
            if gi in self.masked_groups:
                mask = var(self.mask_name(gi), graph.groups[gi].width)
                src = add({"op": "elemwise_mul", "name": f"prunenet_scale{gi}", "attrs": {},
                           "inputs": [[mask, 0, 0], [src, 0, 0]]})
            factors[(gi, 1)] = src
            return src

        def factor(gi: int, dims: int) -> int:
            if (gi, dims) not in factors:
                shape = "(1, -1" + ", 1" * (dims - 2) + ")"
                factors[(gi, dims)] = to_maps(add({"op": "Reshape",
                                                   "name": f"prunenet_scale{gi}_{dims}d",
                                                   "attrs": {"shape": shape},
                                                   "inputs": [[vector(gi), 0, 0]]}))
            return factors[(gi, dims)]

        def keep_factor(layout: Sequence[int], dims: int) -> int:
            key = (tuple(layout), dims)
            if key in factors:
                return factors[key]
            parts = []
            for space in layout:
                g = graph.group_of(space)
                if g.prunable:
                    parts.append(var(self.keep_name(g.index), g.width))
                else:
                    parts.append(add({"op": "_ones", "name": f"prunenet_ones{space}",
                                      "attrs": {"shape": f"({g.width},)"}, "inputs": []}))
            src = parts[0] if len(parts) == 1 else add(
                {"op": "Concat", "name": f"prunenet_keep_cat{len(new)}",
                 "attrs": {"dim": "0", "num_args": str(len(parts))},
                 "inputs": [[p, 0, 0] for p in parts]})
            shape = "(1, -1" + ", 1" * (dims - 2) + ")"
            factors[key] = to_maps(add({"op": "Reshape",
                                        "name": f"prunenet_keep_cat{len(new)}_{dims}d",
                                        "attrs": {"shape": shape}, "inputs": [[src, 0, 0]]}))
            return factors[key]

        def entry(e):
            old, idx = e[0], e[1]
            if idx == 0 and old in masked:
                return [masked[old], 0, 0]
            return [plain[old], idx, 0]

        for old_id, node in enumerate(nodes):
            node = dict(node)
            node["inputs"] = [entry(e) for e in node["inputs"]]
            if node["op"] == "null" and node["name"] in self.params:  # its dtype now, not
                # the one it had when traced (a network cast since)
                node["attrs"] = dict(node.get("attrs", {}), __dtype__=str(
                    mx.ndarray.ndarray._DTYPE_NP_TO_MX[np.dtype(self.params[node["name"]].dtype).type]))
            scaled_affine = False
            if node["op"] == "BatchNorm":
                attrs = node["attrs"] = dict(node.get("attrs", {}),
                                             use_global_stats=str(bool(use_global_stats)))
                if node["name"] in tails and attrs.get("fix_gamma", "True") == "False":
                    # γ·f and β·f feed the BatchNorm: the same function and gradients as f
                    # times its output, without a broadcast multiply over the feature map
                    # (whose backward dominated the regularize step).
                    f = vector(tails[node["name"]])
                    for k in (1, 2):
                        node["inputs"][k] = [add({"op": "elemwise_mul",
                                                  "name": f"{node['name']}_prunenet_affine{k}",
                                                  "attrs": {},
                                                  "inputs": [node["inputs"][k], [f, 0, 0]]}), 0, 0]
                    scaled_affine = True
            nid = add(node)
            plain[old_id] = nid
            if not scaled_affine and (node["name"] in tails or node["name"] in norm_tails):
                dims = ndim.get(node["name"], 4)
                f = factor(tails[node["name"]], dims) if node["name"] in tails else \
                    keep_factor(norm_tails[node["name"]], dims)
                masked[old_id] = add({"op": "broadcast_mul", "name": node["name"] + "_prunenet",
                                      "attrs": {}, "inputs": [[nid, 0, 0], [f, 0, 0]]})
        doc["nodes"] = new
        doc["arg_nodes"] = [i for i, n in enumerate(new) if n["op"] == "null"]
        doc["heads"] = [entry(h) for h in doc["heads"]]
        doc.pop("node_row_ptr", None)
        return mx.sym.load_json(json.dumps(doc))

    # -- scores, rescale, keep -------------------------------------------------------------------
    def _dense(self, layer) -> np.ndarray:
        """A consumer's weight as (outputs, input columns, kernel positions), float64; a grouped
        convolution expanded to its dense equivalent."""
        w = self.get(layer.weight).astype(np.float64)
        if layer.groups > 1 and not layer.depthwise:
            w = expand_grouped(w, layer.groups)
        return w.reshape(w.shape[0], w.shape[1], -1)

    def _store_dense(self, layer, dense: np.ndarray) -> None:
        shape = self.graph.param_shapes[layer.weight]
        if layer.groups > 1 and not layer.depthwise:
            dense = compress_grouped(dense.reshape((dense.shape[0], -1) + tuple(shape[2:])),
                                     layer.groups)
        self.set(layer.weight, dense.reshape(shape).astype(np.float32))

    def _column_scales(self, cname: str, gi: int) -> np.ndarray:
        """Per channel of group ``gi``, how a consumer's input BatchNorm (DenseNet's BN → ReLU →
        conv) scales it on the way in: |γ|/σ, or 1 where no such BatchNorm sits between."""
        norm = self.graph.in_norm.get(cname)
        if norm is None:
            return np.ones(self.graph.groups[gi].width)
        rows = np.concatenate([np.full(self.graph.space_width[s], self.graph.space_group[s])
                               for s in self.graph.norms[norm].layout])
        n = self.graph.norms[norm]
        scale = np.abs(self.get(n.gamma)) / np.sqrt(self.get(n.running_var) + n.eps)
        return scale[rows == gi][:self.graph.groups[gi].width]

    def consumer_norms(self, gi: int) -> np.ndarray:
        """n_i per channel of group ``gi``: the norms ‖W[kept rows, i]‖ of each consumer's filter
        columns (scaled by the consumer's own input BatchNorm, where it has one), combined over
        the consumers by the stream rule — sqrt(Σ ‖·‖²) under ``sum``, their quadratic mean under
        ``mean``."""
        graph = self.graph
        per_consumer = []
        reach = self.stream_score == "reach" and gi in self.masked_groups
        for cname in graph.groups[gi].consumers:
            layer = graph.layers[cname]
            total = np.zeros(graph.groups[gi].width)
            share = self._variance_reaching(gi, cname) if reach else 1.0
            if layer.depthwise:  # channel i's filter is row i
                w = self.get(layer.weight).astype(np.float64)
                total += (w.reshape(w.shape[0], -1) ** 2).sum(axis=1) * self.keep[gi]
                per_consumer.append(np.sqrt(total * share))
                continue
            w = self._dense(layer)[self.keep[graph.space_group[layer.out_space]]]
            scale = self._column_scales(cname, gi) ** 2
            for group, offset in graph.in_segments(cname):
                if group.index != gi:
                    continue
                cols = layer.cols_per_channel
                block = w[:, offset * cols:(offset + group.width) * cols]
                block = block.reshape(block.shape[0], group.width, cols, -1)
                total += (block ** 2).sum(axis=(0, 2, 3)) * scale
            per_consumer.append(np.sqrt(total * share))
        if not per_consumer:
            return np.zeros(graph.groups[gi].width)
        return combine(per_consumer, self.stream_score, "l2")

    def _variance_reaching(self, gi: int, cname: str) -> np.ndarray:
        """Per channel of stream ``gi``, the share of its variance (Σ_p γ_p² over its producers)
        that consumer ``cname`` reads: only the producers upstream of it count."""
        norms = [self._bn_of[p] for p in self.writers(self.graph.groups[gi]) if p in self._bn_of]
        upstream = self._ancestors(cname)
        squares = [self.get(n.gamma).astype(np.float64) ** 2 for n in norms]
        total = sum(squares)
        seen = sum((q for n, q in zip(norms, squares) if n.name in upstream),
                   np.zeros_like(total))
        return np.divide(seen, total, out=np.ones_like(total), where=total > 0)

    def _ancestors(self, name: str) -> set:
        """The names of every node the output of node ``name`` depends on."""
        cache = self.__dict__.setdefault("_ancestor_sets", {})
        if name not in cache:
            nodes = json.loads(self.graph.symbol.tojson())["nodes"]
            index = {n["name"]: i for i, n in enumerate(nodes)}
            seen, todo = set(), [index[name]]
            while todo:
                for e in nodes[todo.pop()]["inputs"]:
                    if nodes[e[0]]["name"] not in seen:
                        seen.add(nodes[e[0]]["name"])
                        todo.append(e[0])
            cache[name] = seen
        return cache[name]

    def scores(self) -> List[np.ndarray]:
        """|s| per channel of every group (0 for removed channels and unprunable groups)."""
        out = [np.zeros(g.width) for g in self.graph.groups]
        for g in self.graph.prunable_groups:
            s = np.abs(self.get(self.scale_name(g.index))).astype(np.float64)
            if not g.homogeneous:
                s = s * self.consumer_norms(g.index)
            out[g.index] = np.where(self.keep[g.index], s, 0.0)
        return out

    def rescale(self) -> None:
        """Move each channel's consumer-weight norm into its scale (function preserving), so
        |s| becomes the global importance score; groups behind a non-homogeneous op are left."""
        graph = self.graph
        for g in graph.prunable_groups:
            if not g.homogeneous:
                continue
            n = self.consumer_norms(g.index)
            n = np.where((n > _EPS) & self.keep[g.index], n, 1.0)
            if np.allclose(n, 1.0):
                continue
            if g.index in self.masked_groups:
                name = self.mask_name(g.index)
                self.set(name, (self.get(name) * n).astype(np.float32))
            else:
                norm = self._bn_of[self.writers(g)[0]]
                for name in (norm.gamma, norm.beta):
                    self.set(name, (self.get(name) * n).astype(np.float32))
            for cname in g.consumers:
                layer = graph.layers[cname]
                if layer.depthwise:
                    w = self.get(layer.weight)
                    shape = (-1,) + (1,) * (w.ndim - 1)
                    self.set(layer.weight, (w / n.reshape(shape)).astype(np.float32))
                    continue
                w = self._dense(layer)
                for group, offset in graph.in_segments(cname):
                    if group.index != g.index:
                        continue
                    cols = layer.cols_per_channel
                    sl = slice(offset * cols, (offset + group.width) * cols)
                    w[:, sl] = w[:, sl] / np.repeat(n, cols)[None, :, None]
                self._store_dense(layer, w)

    def apply_keep(self, keep: Sequence[np.ndarray], zero_tol: float = 0.0) -> List[str]:
        """Remove the channels that ``keep`` drops: fold the constant output of each removed
        γ-regularised channel whose γ is zero into its consumers, then hold it at zero.
        Returns notes on anything that could not be folded exactly."""
        from ..core.replicas import average_running_stats
        average_running_stats(self.net)  # the folds read the statistics of one device
        notes: List[str] = []
        graph = self.graph
        for g in graph.prunable_groups:
            gone = self.keep[g.index] & ~keep[g.index]
            if not gone.any():
                continue
            if g.index in self.masked_groups:
                name = self.mask_name(g.index)
                m = self.get(name)
                m[gone] = 0
                self.set(name, m)
            else:
                norm = self._bn_of[self.writers(g)[0]]
                gamma, beta = self.get(norm.gamma), self.get(norm.beta)
                dead = gone & (np.abs(gamma) <= zero_tol)
                if dead.any():
                    notes += self._fold_constants(g, dead, beta)
                gamma[gone], beta[gone] = 0, 0
                self.set(norm.gamma, gamma)
                self.set(norm.beta, beta)
            self.keep[g.index] = self.keep[g.index] & keep[g.index]
            self.set(self.keep_name(g.index), self.keep[g.index].astype(np.float32))
        return notes

    def _fold_constants(self, g: Group, dead: np.ndarray, beta: np.ndarray) -> List[str]:
        graph = self.graph
        if not set(g.ops) <= _FOLDABLE_OPS:
            return [f"group {g.index}: constant of removed channels not folded (ops {g.ops})"]
        const = np.where(dead, np.maximum(beta, 0) if "relu" in g.ops else beta, 0.0)
        if not const.any():
            return []
        notes = []
        for cname in g.consumers:
            layer = graph.layers[cname]
            if graph.in_norm.get(cname) is not None:
                notes.append(f"group {g.index}: consumer {cname} reads it through its own "
                             f"BatchNorm; constant of removed channels not folded")
                continue
            w = self._dense(layer) * self._tap_coverage(cname).reshape(1, 1, -1)
            delta = np.zeros(w.shape[0])
            for group, offset in graph.in_segments(cname):
                if group.index != g.index:
                    continue
                cols = layer.cols_per_channel
                c = np.repeat(const, cols)
                sl = slice(offset * cols, (offset + group.width) * cols)
                delta += w[:, sl].sum(axis=2) @ c
            norm = self._bn_of.get(cname)
            if norm is not None:
                mean = self.get(norm.running_mean)
                self.set(norm.running_mean, (mean - delta).astype(np.float32))
            elif layer.bias:
                bias = self.get(layer.bias)
                self.set(layer.bias, (bias + delta).astype(np.float32))
            else:
                notes.append(f"group {g.index}: consumer {cname} has neither BatchNorm nor bias; "
                             f"constant of removed channels dropped")
        return notes

    def _tap_coverage(self, cname: str) -> np.ndarray:
        """Per kernel tap of consumer ``cname``, the fraction of its output positions at which
        that tap reads inside the input map rather than its zero padding (1 for a dense layer or
        a 1×1 convolution without padding).

        A constant input channel c adds Σ_taps W·c only where every tap is inside; nearer the
        border, fewer. One per-channel scalar (a BatchNorm mean, a bias) can hold the average of
        that over positions, Σ_taps W·c·coverage — the least-squares best, so folding it never
        changes the output more than leaving the constant out (with 3×3 kernels on 7×7 and
        smaller maps, subtracting the whole Σ_taps did)."""
        cache = self.__dict__.setdefault("_coverage", {})
        if cname in cache:
            return cache[cname]
        layer = self.graph.layers[cname]
        kh, kw = layer.kernel if layer.op == "Convolution" else (1, 1)
        cover = np.ones((kh, kw))
        if layer.op == "Convolution":
            doc = json.loads(self.graph.symbol.tojson())
            node = next((n for n in doc["nodes"] if n["name"] == cname), None)
            shapes = self._output_shapes()
            if node is not None:
                src = doc["nodes"][node["inputs"][0][0]]
                shape = shapes.get(src["name"] if src["op"] == "null" else src["name"] + "_output")
                attrs = node.get("attrs", {})
                if shape is not None and len(shape) == 4:
                    axes = []
                    for axis, k in enumerate((kh, kw)):
                        stride = _tuple(attrs.get("stride"), axis, 1)
                        pad = _tuple(attrs.get("pad"), axis, 0)
                        dilate = _tuple(attrs.get("dilate"), axis, 1)
                        size = shape[2 + axis]
                        out = (size + 2 * pad - dilate * (k - 1) - 1) // stride + 1
                        pos = np.arange(out)[:, None] * stride - pad + np.arange(k)[None, :] * dilate
                        axes.append(((pos >= 0) & (pos < size)).mean(axis=0))
                    cover = np.outer(axes[0], axes[1])
        cache[cname] = cover
        return cover

    def _output_shapes(self) -> Dict[str, tuple]:
        """Every internal output's (and input's) shape at the traced input shape."""
        if "_shapes" not in self.__dict__:
            internals = self.graph.symbol.get_internals()
            _, out_shapes, _ = internals.infer_shape(data=self.graph.input_shape)
            shapes = dict(zip(internals.list_outputs(), out_shapes))
            shapes["data"] = tuple(self.graph.input_shape)
            self._shapes = shapes
        return self._shapes

    def folded_params(self) -> Dict[str, np.ndarray]:
        """All parameters with masks and keep masks folded into the producers (for surgery)."""
        from ..core.replicas import host_copy
        out = host_copy(self.params)
        for g in self.graph.prunable_groups:
            factor = self.keep[g.index].astype(np.float32)
            if g.index in self.masked_groups:
                factor = factor * self.get(self.mask_name(g.index))
            for p in self.writers(g):
                if p in self._bn_of:
                    norm = self._bn_of[p]
                    out[norm.gamma] = out[norm.gamma] * factor
                    out[norm.beta] = out[norm.beta] * factor
                else:
                    layer = self.graph.layers[p]
                    shape = (-1,) + (1,) * (out[layer.weight].ndim - 1)
                    out[layer.weight] = out[layer.weight] * factor.reshape(shape)
                    if layer.bias:
                        out[layer.bias] = out[layer.bias] * factor
        return out

    def cost_weights(self, marginal: np.ndarray) -> Dict[str, np.ndarray]:
        """Per regularised parameter, the per-channel cost weight c (mean 1 over kept channels)."""
        kept = sum(int(self.keep[g.index].sum()) for g in self.graph.prunable_groups)
        total = sum(marginal[g.index] * self.keep[g.index].sum()
                    for g in self.graph.prunable_groups)
        scale = kept / total if total > 0 else 1.0
        return {self.scale_name(g.index): np.full(g.width, marginal[g.index] * scale,
                                                  dtype=np.float32)
                for g in self.graph.prunable_groups}

