"""``globalpru``: a reconstruction of GlobalPru (global channel attention learnt to rank).

Only GlobalPru's abstract is at hand ("Towards performance-maximizing network pruning via global
channel attention"). What follows it: per-sample (local) channel saliencies come from a channel
attention gate trained together with the network; a learn-to-rank objective learns one global
channel attention that every sample's saliencies are drawn towards, with a regulariser that
forces each sample's saliency to agree with it; channels are then pruned by the global ranking,
the same for every input. Every concrete choice below is ours:

- *Gates*: every tensor a prunable group's consumers read (after the activation, as
  :mod:`prunenet.methods.activation_vote` probes it) is multiplied channel-wise by a
  squeeze-and-excitation gate ``s = sigmoid(FC(ReLU(FC(mean |x|))))`` (reduction 4) spliced
  into a copy of the network's symbol; the gated copy trains on a copy of the weights, so the
  network itself is left as it was.
- *Local saliency* of channel c for sample n: ``r = s_c · m_c / mean_c(m)`` with ``m`` the mean
  |activation| over positions — what the channel passes on, relative to its layer; averaged
  over a group's tensors. A channel the ReLU silences has ``r = 0``.
- *Global attention*: a learnt score ``z`` per channel of every prunable group, ``g =
  softplus(z)``. *Ranking loss* (listwise, ListNet's cross entropy between top-one
  distributions ``P = softmax(g/τ)``, ``Q_n = softmax(r_n/τ)`` over all prunable channels):
  ``CE(Q_n, P)`` with ``Q_n`` held fixed learns ``P`` as the samples' consensus, and
  ``CE(P, Q_n)`` with ``P`` held fixed pulls each sample's ranking towards the global one.
- *Regulariser* (the abstract's "Bayesian-based" one, as we read it: a Gaussian prior centred
  on the global attention): ``λ · mean (r_n − g)²``.
- Loss: the task's cross entropy + ``mu`` · ranking loss + regulariser, SGD with momentum for
  ``steps`` batches; then blocks go in order of global attention ``g`` (lowest first) until the
  cost reaches the target (:mod:`prunenet.core.select`, priority ``score``).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional

import numpy as np

from ..core.costs import CostModel
from ..errors import PrunenetError
from ..core.graph import ChannelGraph
from ..core.select import Selection, select
from .activation_vote import probe_names
from ..core.registry import register

__all__ = ["GlobalPruConfig", "Trained", "gated_symbol", "train", "select_channels"]


@dataclass
class GlobalPruConfig:
    """GlobalPru's training settings (ours: the paper's are not at hand)."""

    steps: int = 100  # training batches
    lr: float = 0.01
    momentum: float = 0.9
    mu: float = 30.0  # ranking loss weight
    lam: float = 1.0  # regulariser weight
    tau: float = 1.0  # temperature of the top-one distributions
    reduction: int = 4  # the gates' bottleneck
    clip: Optional[float] = 1.0  # gradient clipping (per element), None for none
    seed: int = 0


@dataclass
class Trained:
    """What training found: the global attention per group, and per step the losses."""

    scores: List[np.ndarray]
    rank_loss: List[float] = field(default_factory=list)
    task_loss: List[float] = field(default_factory=list)
    block: object = None  # the gated network (logits, then one saliency output per tensor)
    tensors: List[str] = field(default_factory=list)


def _gate(name: str, channels: int, reduction: int, tag: str):
    """The gate's symbol on a placeholder ``__x__``: (gated x, local saliency r)."""
    import mxnet as mx
    x = mx.sym.var("__x__")
    flat = mx.sym.reshape(x, shape=(0, channels, -1), name=f"{tag}_flat")
    m = mx.sym.mean(mx.sym.abs(flat, name=f"{tag}_abs"), axis=2, name=f"{tag}_m")
    hidden = mx.sym.relu(mx.sym.FullyConnected(m, num_hidden=max(channels // reduction, 4),
                                               name=f"{tag}_fc1"), name=f"{tag}_relu")
    s = mx.sym.sigmoid(mx.sym.FullyConnected(hidden, num_hidden=channels, name=f"{tag}_fc2"),
                       name=f"{tag}_s")
    gated = mx.sym.reshape_like(mx.sym.broadcast_mul(flat, mx.sym.expand_dims(
        s, axis=2, name=f"{tag}_e"), name=f"{tag}_mul"), x, name=f"{tag}_y")
    level = mx.sym.mean(m, axis=1, keepdims=True, name=f"{tag}_level")
    r = mx.sym.broadcast_div(s * m, level + 1e-6, name=f"{tag}_r")
    return mx.sym.Group([gated, r])


def gated_symbol(graph: ChannelGraph, input_shape, reduction: int = 4):
    """The network's symbol with a gate on every tensor its prunable groups' consumers read,
    outputs: the network's, then each gated tensor's local saliency; and the tensors' names."""
    import mxnet as mx
    probes = probe_names(graph)
    tensors = sorted({name for group in probes.values() for name, _, _ in group})
    internals = graph.symbol.get_internals()
    outputs = internals.list_outputs()
    _, shapes, _ = internals.infer_shape(data=tuple(input_shape))
    shape_of = dict(zip(outputs, shapes))
    net = json.loads(graph.symbol.tojson())
    nodes, index_of = net["nodes"], {}
    for i, node in enumerate(nodes):
        index_of[f"{node['name']}_output"] = (i, 0)
        for k in range(8):
            index_of.setdefault(f"{node['name']}_output{k}", (i, k))
    targets = {index_of[t]: t for t in tensors}
    consumers = {name for g in graph.prunable_groups for name in g.consumers}
    new_nodes, moved, gated_at, saliency_heads = [], {}, {}, []
    for i, node in enumerate(nodes):
        node = dict(node)
        node["inputs"] = [[moved[src], idx, ver] if (src, idx) not in gated_at or
                          node["name"] not in consumers else [gated_at[(src, idx)], 0, 0]
                          for src, idx, ver in node["inputs"]]
        moved[i] = len(new_nodes)
        new_nodes.append(node)
        for (src, idx), tensor in targets.items():
            if src != i:
                continue
            tag = f"globalpru{len(gated_at)}"
            gate = json.loads(_gate(tensor, shape_of[tensor][1], reduction, tag).tojson())
            local = {}
            for j, g_node in enumerate(gate["nodes"]):
                if g_node["name"] == "__x__":
                    local[j] = None
                    continue
                g_node = dict(g_node)
                g_node["inputs"] = [[moved[i], idx, 0] if local[s_] is None else
                                    [local[s_], o, v] for s_, o, v in g_node["inputs"]]
                local[j] = len(new_nodes)
                new_nodes.append(g_node)
            (y, _, _), (r, _, _) = gate["heads"]
            gated_at[(i, idx)] = local[y]
            saliency_heads.append((local[r], tensor))
    heads = [[moved[src], idx, ver] for src, idx, ver in net["heads"]] + \
        [[r, 0, 0] for r, _ in saliency_heads]
    arg_nodes = [k for k, n in enumerate(new_nodes) if n["op"] == "null"]
    out = {"nodes": new_nodes, "arg_nodes": arg_nodes, "heads": heads,
           "attrs": net.get("attrs", {})}
    return mx.sym.load_json(json.dumps(out)), [t for _, t in saliency_heads], probes


def _block(graph: ChannelGraph, net, input_shape, cfg: GlobalPruConfig, ctx):
    """The gated copy as a SymbolBlock, its weights copied from ``net``, gates initialised."""
    import mxnet as mx
    from mxnet import gluon
    symbol, tensors, probes = gated_symbol(graph, input_shape, cfg.reduction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        block = gluon.SymbolBlock(symbol, [mx.sym.var("data")])
    source = net.collect_params()
    for name, param in block.collect_params().items():
        if name in source:
            param.initialize(init=mx.init.Constant(0), ctx=ctx)
            param.set_data(source[name].data().copyto(ctx))
        else:  # a gate: open at the start (bias 2: sigmoid 0.88)
            param.initialize(init=mx.init.Constant(2.0) if name.endswith("fc2_bias") else
                             mx.init.Xavier() if name.endswith("weight") else
                             mx.init.Zero(), ctx=ctx)
    return block, tensors, probes


def local_saliency(graph: ChannelGraph, probes, tensors: List[str], saliencies) -> object:
    """(samples, all prunable channels) NDArray: each group's r averaged over its tensors."""
    import mxnet as mx
    by_name = dict(zip(tensors, saliencies))
    parts = []
    for gi, group in probes.items():
        width = graph.groups[gi].width
        views = [mx.nd.slice_axis(by_name[name], axis=1, begin=offset, end=offset + width)
                 for name, offset, _ in group]
        parts.append(mx.nd.add_n(*views) / len(views) if len(views) > 1 else views[0])
    return mx.nd.concat(*parts, dim=1)


def train(graph: ChannelGraph, net, batches: Iterable, input_shape, ctx=None,
          cfg: Optional[GlobalPruConfig] = None) -> Trained:
    """Train the gated copy of ``net`` with the ranking loss and regulariser on ``batches``
    ((data, label) pairs, cycled if re-iterable) for ``cfg.steps`` batches."""
    import mxnet as mx
    from mxnet import autograd, gluon
    cfg = cfg or GlobalPruConfig()
    if cfg.steps < 1:
        raise PrunenetError(f"globalpru steps ({cfg.steps}) must be at least 1")
    ctx = ctx or mx.cpu()
    mx.random.seed(cfg.seed)
    block, tensors, probes = _block(graph, net, input_shape, cfg, ctx)
    total = sum(graph.groups[gi].width for gi in probes)
    z = gluon.Parameter("globalpru_z", shape=(1, total), init=mx.init.Zero())
    z.initialize(ctx=ctx)
    params = list(block.collect_params().values()) + [z]
    options = {"learning_rate": cfg.lr, "momentum": cfg.momentum, "wd": 0.0}
    if cfg.clip is not None:
        options["clip_gradient"] = cfg.clip
    trainer = gluon.Trainer(params, "sgd", options)
    task = gluon.loss.SoftmaxCrossEntropyLoss()
    out = Trained(scores=[], block=block, tensors=tensors)
    done = 0
    while done < cfg.steps:
        seen = 0
        for data, label in batches:
            if done >= cfg.steps:
                break
            data, label = data.as_in_context(ctx), label.as_in_context(ctx)
            with autograd.record():
                outs = block(data)
                logits, saliencies = outs[0], outs[1:]
                r = local_saliency(graph, probes, tensors, saliencies)
                g = mx.nd.Activation(z.data(ctx), act_type="softrelu")
                log_p = mx.nd.log_softmax(g / cfg.tau, axis=1)
                log_q = mx.nd.log_softmax(r / cfg.tau, axis=1)
                consensus = -(mx.nd.exp(log_q).detach() * log_p).sum(axis=1).mean()
                pull = -(mx.nd.exp(log_p).detach() * log_q).sum(axis=1).mean()
                rank = consensus + pull
                prior = mx.nd.square(r - g).mean()
                ce = task(logits, label).mean()
                loss = ce + cfg.mu * rank + cfg.lam * prior
            loss.backward()
            trainer.step(1)
            out.rank_loss.append(float(rank.asscalar()))
            out.task_loss.append(float(ce.asscalar()))
            done += 1
            seen += 1
        if not seen:
            break
        if iter(batches) is batches:  # a one-pass iterator: no more to cycle
            break
    if not done:
        raise PrunenetError("globalpru needs data: no batches were given to train on")
    global_attention = np.log1p(np.exp(z.data(ctx).asnumpy()[0]))
    scores = [np.zeros(g.width) for g in graph.groups]
    offset = 0
    for gi in probes:
        width = graph.groups[gi].width
        scores[gi] = global_attention[offset:offset + width]
        offset += width
    out.scores = scores
    return out


def saliencies(trained: Trained, graph: ChannelGraph, data) -> np.ndarray:
    """(samples, all prunable channels) local saliencies of ``data`` under the gated network
    (BatchNorm on its running statistics)."""
    probes = probe_names(graph)
    outs = trained.block(data)
    return local_saliency(graph, probes, trained.tensors, outs[1:]).asnumpy()


@register("globalpru", needs="data")
def select_channels(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                    target: float, round_to: int = 8, min_width: int = 8, net=None,
                    batches: Optional[Iterable] = None, ctx=None,
                    cfg: Optional[GlobalPruConfig] = None, input_shape=None) -> Selection:
    """Train the gates and the global attention on ``batches``, then remove the channels of
    least global attention until the cost reaches ``target`` (see the module doc)."""
    if net is None or batches is None:
        raise PrunenetError("method globalpru needs data: pass net= and batches= "
                            "(on the command line, --dataset)")
    batches = batches if isinstance(batches, (list, tuple)) else iter(batches)
    if input_shape is None:
        first = next(iter(batches), None)
        if first is None:
            raise PrunenetError("globalpru needs data: no batches were given to train on")
        input_shape = first[0].shape
        if not isinstance(batches, (list, tuple)):
            batches = _chain_first(first, batches)
    trained = train(graph, net, batches, input_shape, ctx, cfg)
    return select(graph, cost, trained.scores, target, priority="score", round_to=round_to,
                  min_width=min_width)


class _chain_first:
    """An iterator that yields ``first`` and then the rest of ``rest`` (once)."""

    def __init__(self, first, rest) -> None:
        self.first, self.rest = first, rest

    def __iter__(self):
        return self

    def __next__(self):
        if self.first is not None:
            first, self.first = self.first, None
            return first
        return next(self.rest)
