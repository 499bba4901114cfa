"""``wsp``: a reconstruction of Weak Sub-network Pruning's one-shot channel rule.

Only the WSP paper's abstract is at hand, so this follows the rule its authors' released code
is described as applying, not the paper's text: a channel belongs to the weak sub-network, and
is removed, when both the L1 norm of the filter that writes it and the L1 norm of the slice of
the next layer that reads it fall below that layer's p-th percentile; one shot, no training.

Here both norms are taken as BatchNorm folds the weights (row o times |γ_o|/σ_o) and, for a
group written or read by several layers (a residual stream, a depthwise conv), summed over its
producers and over its consumers after dividing each layer's norms by their mean. With
``r_out``, ``r_in`` a channel's percentile ranks within its group (in (0, 1], ties by index),
the rule removes exactly the channels with ``max(r_out, r_in) ≤ p``: that maximum is the
channel's *WSP percentile* (:func:`rule_scores`).

Meeting a cost target: as the global p rises, each group drops its channels in order of WSP
percentile, in blocks of ``round_to`` (one block per ``segments`` part for grouped convs) and
never below ``min_width``; a block goes at the p of its largest member. Removing blocks one at a
time in that order until the cost is at most α is the search for the smallest p that meets the
target, with the blocks that cross at that p taken one by one, so the achieved fraction lies in
(α − Δ, α] like the other methods'. :func:`prunenet.select.select` performs it with per-channel
scores chosen so that a block's score sum is that p (:func:`threshold_scores`).
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from ..costs import CostModel
from ..graph import ChannelGraph, Group
from ..select import Selection, block_size, select
from .qcqp import kernel_norms

__all__ = ["rule_scores", "threshold_scores", "select_channels"]

_TIE = 1e-13  # orders channels of equal block threshold by position; far below 1/width²


def _per_mean(x: np.ndarray) -> np.ndarray:
    mean = x.mean()
    return x / mean if mean > 0 else x


def _ranks(x: np.ndarray) -> np.ndarray:
    """Percentile ranks in (0, 1]: the smallest gets 1/n, the largest 1 (ties by index)."""
    ranks = np.empty(x.size)
    ranks[np.argsort(x, kind="stable")] = np.arange(1, x.size + 1)
    return ranks / x.size


def rule_scores(graph: ChannelGraph, params: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """Per group, each channel's WSP percentile: the larger of its producer-filter and its
    consumer-slice L1 percentile ranks (the producer rank alone when nothing reads it)."""
    norms = kernel_norms(graph, params, 1)
    out_side = [np.zeros(g.width) for g in graph.groups]
    in_side = [np.zeros(g.width) for g in graph.groups]
    for name, m in norms.items():
        out_side[graph.out_group(name).index] += _per_mean(m.sum(axis=1))
        for group, offset in graph.in_segments(name):
            in_side[group.index] += _per_mean(m[:, offset:offset + group.width].sum(axis=0))
    return [np.maximum(_ranks(o), _ranks(i)) if g.consumers else _ranks(o)
            for g, o, i in zip(graph.groups, out_side, in_side)]


def threshold_scores(percentiles: np.ndarray, group: Group, round_to: int) -> np.ndarray:
    """Scores under which :func:`prunenet.select.select` forms the group's blocks in order of
    WSP percentile and each block's score sum is the percentile at which it goes."""
    size = block_size(group, round_to)
    per, part = size // group.segments, group.width // group.segments
    order = np.stack([j * part + np.argsort(percentiles[j * part:(j + 1) * part], kind="stable")
                      for j in range(group.segments)])  # (segments, part): ascending
    position = np.arange(part)
    block = position // per
    thresholds = np.array([percentiles[order[:, block == k]].max() for k in range(block[-1] + 1)])
    out = np.empty(group.width)
    out[order] = np.broadcast_to(thresholds[block] / size + position * _TIE, order.shape)
    return out


def select_channels(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                    target: float, round_to: int = 8, min_width: int = 8) -> Selection:
    """Raise the global WSP percentile until the cost reaches ``target`` (see the module doc)."""
    percentiles = rule_scores(graph, params)
    scores = [threshold_scores(p, g, max(round_to, 1)) if g.prunable else p  # select checks it
              for g, p in zip(graph.groups, percentiles)]
    return select(graph, cost, scores, target, priority="score", round_to=round_to,
                  min_width=min_width)
