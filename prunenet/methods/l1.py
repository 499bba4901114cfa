"""``l1``: data-free global ranking of channels by filter L1 norm per unit of cost.

A channel's score is the L1 norm of the filter that writes it, as BatchNorm folds it into the
filter (‖W_i‖₁ · |γ_i| / sqrt(σ²_i + ε)), divided by the mean over its layer so layers compare;
a channel written by several layers (a residual stream) takes the mean of its layers' scores
(:mod:`prunenet.gcp.streams`; ``stream_score="sum"`` adds them, the first rule). Blocks are then
removed globally in order of score per unit of cost saved (:mod:`prunenet.core.select`).
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from ..core.costs import CostModel
from ..core.graph import ChannelGraph
from ..core.select import Selection, select
from ..gcp.streams import DEFAULT_RULE, combine
from ..core.registry import register

__all__ = ["filter_scores", "select_channels"]


def filter_scores(graph: ChannelGraph, params: Dict[str, np.ndarray],
                  stream_score: str = DEFAULT_RULE) -> List[np.ndarray]:
    """Per group, the layer-normalised L1 norm of each channel's BN-folded producer filters,
    combined over the group's producers by ``stream_score``."""
    bn_of = {n.producer: n for n in graph.norms.values() if n.producer}
    scores = [np.zeros(g.width) for g in graph.groups]
    for g in graph.groups:
        per_producer = []
        for name in g.producers:
            layer = graph.layers[name]
            w = np.abs(params[layer.weight].reshape(layer.out_channels, -1)).sum(axis=1)
            norm = bn_of.get(name)
            if norm is not None:
                w = w * np.abs(params[norm.gamma]) / np.sqrt(params[norm.running_var] + norm.eps)
            mean = w.mean()
            per_producer.append(w / mean if mean > 0 else w)
        if per_producer:
            scores[g.index] = combine(per_producer, stream_score, "l1")
    return scores


@register("l1")
def select_channels(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                    target: float, round_to: int = 8, min_width: int = 8,
                    stream_score: str = DEFAULT_RULE) -> Selection:
    """Remove the channels of least filter norm per unit of cost until the cost reaches ``target``."""
    return select(graph, cost, filter_scores(graph, params, stream_score), target,
                  priority="score_per_cost",
                  round_to=round_to, min_width=min_width)
