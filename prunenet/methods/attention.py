"""``attention``: one global channel ranking agreed on by per-sample activation saliencies.

A reconstruction of GlobalPru's idea (only its abstract is at hand): each image has its own
channel saliencies; the method seeks the single ranking that the samples agree on most, and
prunes by it. We do this without training:

1. Run the network (inference mode: BatchNorm on its running statistics) on a few batches and
   read, for every prunable group, the output of each producer's BatchNorm (the producer's own
   output when it has none; SE gates are skipped).
2. Per sample, a producer's saliency of channel c is its mean |activation| over positions divided
   by the mean over the producer's channels (normalised within its layer); a group written by
   several producers (a residual stream) averages them.
3. Per sample, every channel of every prunable group is ranked against all the others; the
   global score is the mean normalised rank over the samples (a Borda vote, in [0, 1]).
4. Blocks go in order of score per unit of cost saved (:mod:`prunenet.select`), as for ``l1``.
"""
from __future__ import annotations

import warnings
from typing import Dict, Iterable, List, Optional

import numpy as np

from ..costs import CostModel
from ..errors import PrunenetError
from ..graph import ChannelGraph
from ..select import Selection, select

__all__ = ["activation_scores", "select_channels"]


def _probe_names(graph: ChannelGraph) -> Dict[int, List[str]]:
    """Per prunable group, the internal outputs that carry its channels' activations."""
    bn_of = {n.producer: n.name for n in graph.norms.values() if n.producer}
    out = {}
    for g in graph.prunable_groups:
        writers = [p for p in g.producers if p not in g.gates] or list(g.producers)
        out[g.index] = [f"{bn_of.get(p, p)}_output" for p in writers]
    return out


def _probe_block(graph: ChannelGraph, net, names: List[str]):
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


def _saliency(activation: np.ndarray) -> np.ndarray:
    """(samples, channels): mean |activation| over positions, over its per-sample mean."""
    m = np.abs(activation.reshape(activation.shape[0], activation.shape[1], -1)).mean(axis=2)
    mean = m.mean(axis=1, keepdims=True)
    return np.divide(m, mean, out=np.zeros_like(m), where=mean > 0)


def activation_scores(graph: ChannelGraph, net, batches: Iterable, ctx=None,
                      max_batches: int = 8) -> List[np.ndarray]:
    """Per group, each channel's mean normalised rank over the samples of the first
    ``max_batches`` of ``batches`` ((data, label) pairs); zeros for unprunable groups."""
    import mxnet as mx
    if max_batches < 1:
        raise PrunenetError(f"max_batches ({max_batches}) must be at least 1")
    ctx = ctx or mx.cpu()
    probes = _probe_names(graph)
    names = [n for group_names in probes.values() for n in group_names]
    scores = [np.zeros(g.width) for g in graph.groups]
    if not names:
        return scores
    block = _probe_block(graph, net, names)
    totals, samples = None, 0
    for i, batch in enumerate(batches):
        if i >= max_batches:
            break
        outs = block(batch[0].as_in_context(ctx))
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        acts = dict(zip(names, (o.asnumpy() for o in outs)))
        per_group = [np.mean([_saliency(acts[n]) for n in probes[gi]], axis=0) for gi in probes]
        joined = np.concatenate(per_group, axis=1)  # (samples, all prunable channels)
        ranks = np.argsort(np.argsort(joined, axis=1, kind="stable"), axis=1, kind="stable")
        ranks = ranks / max(joined.shape[1] - 1, 1)
        totals = ranks.sum(axis=0) if totals is None else totals + ranks.sum(axis=0)
        samples += joined.shape[0]
    if not samples:
        raise PrunenetError("attention needs data: no batches were given to score channels on")
    mean = totals / samples
    offset = 0
    for gi in probes:
        width = graph.groups[gi].width
        scores[gi] = mean[offset:offset + width]
        offset += width
    return scores


def select_channels(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                    target: float, round_to: int = 8, min_width: int = 8, net=None,
                    batches: Optional[Iterable] = None, ctx=None,
                    max_batches: int = 8) -> Selection:
    """Remove the channels the samples agree matter least, per unit of cost, until the cost
    reaches ``target``; ``net`` (the traced network) is run on ``batches``."""
    if net is None or batches is None:
        raise PrunenetError("method attention needs data: pass net= and batches= "
                            "(on the command line, --dataset)")
    scores = activation_scores(graph, net, batches, ctx, max_batches)
    return select(graph, cost, scores, target, priority="score_per_cost", round_to=round_to,
                  min_width=min_width)
