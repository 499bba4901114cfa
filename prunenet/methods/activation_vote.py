"""``activation-vote``: one global channel ranking voted by per-sample activation saliencies.

Inspired by GlobalPru's aim (one ranking that every sample agrees on), without its training
(:mod:`prunenet.methods.globalpru` is the reconstruction of GlobalPru itself):

1. Run the network (inference mode: BatchNorm on its running statistics) on a few batches and
   read, for every prunable group, the tensor its consumers read — after the activation (and
   after a residual sum), so a channel the ReLU silences counts as silent.
2. Per sample, a channel's saliency is its mean |activation| over positions divided by the mean
   over the group's channels; a group read through several distinct tensors averages them.
3. Per sample, every channel of every prunable group is ranked against all the others; the
   global score is the mean normalised rank over the samples (a Borda vote, in [0, 1]). A
   channel zero on every probed sample scores exactly 0, every other channel above 0.
4. Channels of score 0 go first, whatever the target (``drop_zeros`` of
   :func:`prunenet.core.select.select`, in whole blocks); then blocks go in order of score per unit
   of cost saved (:mod:`prunenet.core.select`), as for ``l1``.

``attention`` is this method's former name, kept as a deprecated alias.
"""
from __future__ import annotations

import json
import warnings
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from ..core.costs import CostModel
from ..errors import PrunenetError
from ..core.graph import ChannelGraph
from ..core.select import Selection, select
from ..core.registry import register

__all__ = ["activation_scores", "select_channels", "select_channels_attention", "probe_names",
           "probe_block", "channel_means", "group_saliencies"]


def _input_tensors(graph: ChannelGraph) -> Dict[str, Tuple[str, int]]:
    """Per conv/dense layer, the node and output index it reads its data from."""
    nodes = json.loads(graph.symbol.tojson())["nodes"]
    out = {}
    for node in nodes:
        if node["name"] in graph.layers and node["inputs"]:
            source, index = node["inputs"][0][0], node["inputs"][0][1]
            out[node["name"]] = (nodes[source]["name"], index)
    return out


Probe = Tuple[str, int, int]  # internal output, the group's channel offset in it, columns per channel


def probe_names(graph: ChannelGraph) -> Dict[int, List[Probe]]:
    """Per prunable group, the distinct internals its consumers read (after the activation)."""
    inputs = _input_tensors(graph)
    internals = set(graph.symbol.get_internals().list_outputs())
    out = {}
    for g in graph.prunable_groups:
        seen: List[Probe] = []
        for consumer in g.consumers:
            name, index = inputs[consumer]
            full = f"{name}_output" if f"{name}_output" in internals else f"{name}_output{index}"
            offset = next(o for group, o in graph.in_segments(consumer) if group is g)
            probe = (full, offset, graph.layers[consumer].cols_per_channel)
            if probe not in seen:
                seen.append(probe)
        out[g.index] = seen
    return out


def probe_block(graph: ChannelGraph, net, names: List[str]):
    """A SymbolBlock sharing ``net``'s parameters whose outputs are the internals ``names``."""
    import mxnet as mx
    from mxnet import gluon
    internals = graph.symbol.get_internals()
    shared = gluon.ParameterDict("")
    shared.update(net.collect_params())
    with warnings.catch_warnings():  # SymbolBlock warns that 'data' has no dtype yet
        warnings.simplefilter("ignore")
        return gluon.SymbolBlock(mx.sym.Group([internals[n] for n in names]),
                                 [mx.sym.var("data")], params=shared)


def channel_means(activation: np.ndarray, offset: int, width: int, cols: int) -> np.ndarray:
    """(samples, ``width`` channels from ``offset``): mean |activation| over each channel's
    positions (a flat dense input: ``cols`` consecutive columns per channel)."""
    n = activation.shape[0]
    per = activation.reshape(n, -1, cols) if activation.ndim == 2 else \
        activation.reshape(n, activation.shape[1], -1)
    return np.abs(per[:, offset:offset + width]).mean(axis=2)


def _saliency(means: np.ndarray) -> np.ndarray:
    """Channel means over their per-sample mean."""
    mean = means.mean(axis=1, keepdims=True)
    return np.divide(means, mean, out=np.zeros_like(means), where=mean > 0)


def group_saliencies(graph: ChannelGraph, probes: Dict[int, List[Probe]],
                     acts: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """Per probed group (in ``probes``' order), (samples, width) saliencies averaged over its
    probes."""
    return [np.mean([_saliency(channel_means(acts[name], offset, graph.groups[gi].width, cols))
                     for name, offset, cols in probes[gi]], axis=0) for gi in probes]


def activation_scores(graph: ChannelGraph, net, batches: Iterable, ctx=None,
                      max_batches: int = 8) -> List[np.ndarray]:
    """Per group, each channel's mean normalised rank over the samples of the first
    ``max_batches`` of ``batches`` ((data, label) pairs); zeros for unprunable groups."""
    import mxnet as mx
    if max_batches < 1:
        raise PrunenetError(f"max_batches ({max_batches}) must be at least 1")
    ctx = ctx or mx.cpu()
    probes = probe_names(graph)
    names = sorted({name for group in probes.values() for name, _, _ in group})
    scores = [np.zeros(g.width) for g in graph.groups]
    if not names:
        return scores
    block = probe_block(graph, net, names)
    from ..core.replicas import compute_dtype
    totals, samples, dtype, alive = None, 0, compute_dtype(net), None
    for i, batch in enumerate(batches):
        if i >= max_batches:
            break
        outs = block(batch[0].as_in_context(ctx).astype(dtype, copy=False))
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        acts = dict(zip(names, (o.asnumpy().astype(np.float32) for o in outs)))
        joined = np.concatenate(group_saliencies(graph, probes, acts), axis=1)
        seen = (joined > 0).any(axis=0)
        alive = seen if alive is None else alive | seen
        ranks = np.argsort(np.argsort(joined, axis=1, kind="stable"), axis=1, kind="stable")
        ranks = ranks / max(joined.shape[1] - 1, 1)
        totals = ranks.sum(axis=0) if totals is None else totals + ranks.sum(axis=0)
        samples += joined.shape[0]
    if not samples:
        raise PrunenetError("activation-vote needs data: no batches were given to score "
                            "channels on")
    # a channel zero on every probed sample scores exactly 0 (select drops it first, whatever
    # the target); ties among zeros ranked it above other dead channels. Live channels stay
    # above 0, even one ranked lowest on every sample.
    mean = np.where(alive, np.maximum(totals / samples, np.finfo(np.float64).tiny), 0.0)
    offset = 0
    for gi in probes:
        width = graph.groups[gi].width
        scores[gi] = mean[offset:offset + width]
        offset += width
    return scores


@register("activation-vote", needs="data")
def select_channels(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                    target: float, round_to: int = 8, min_width: int = 8, net=None,
                    batches: Optional[Iterable] = None, ctx=None,
                    max_batches: int = 8) -> Selection:
    """Remove the channels the samples agree matter least, per unit of cost, until the cost
    reaches ``target``; ``net`` (the traced network) is run on ``batches``."""
    if net is None or batches is None:
        raise PrunenetError("method activation-vote needs data: pass net= and batches= "
                            "(on the command line, --dataset)")
    scores = activation_scores(graph, net, batches, ctx, max_batches)
    return select(graph, cost, scores, target, priority="score_per_cost", round_to=round_to,
                  min_width=min_width, drop_zeros=True)


@register("attention", needs="data", listed=False)
def select_channels_attention(*args, **kwargs) -> Selection:
    """``attention``: the former name of ``activation-vote`` (deprecated)."""
    warnings.warn("method attention is now called activation-vote (the name attention will go); "
                  "GlobalPru itself is method globalpru", FutureWarning, stacklevel=2)
    return select_channels(*args, **kwargs)
