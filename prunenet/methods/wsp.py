"""``wsp``: Weak Sub-network Pruning's one-shot channel rule, as its authors released it.

The rule is the one in ``Classification/VGG16/ImageNet/train.py`` of github.com/QingbeiGuo/WSP
(``calcaulate``, ``pair``, ``candidate``): for each pair of consecutive layers, a channel belongs
to the weak sub-network, and is removed, when the L1 norm of the filter that writes it *and* the
L1 norm of the next layer's weights that read it both lie strictly below their layer's P-th
percentile (NumPy's, linearly interpolated); one shot, no training. Norms are of the raw weights
as there; ``fold_bn=True`` takes them as BatchNorm folds the weights (row o times |γ_o|/σ_o).

With ``i_out``, ``i_in`` a channel's positions (from 0) when its group's filter and next-layer
norms are sorted ascending (ties by index), the rule at P removes it exactly when
``max(i_out, i_in) < (n − 1)·P/100``: ``max(i_out, i_in)/(n − 1)`` is the channel's *WSP
percentile* (:func:`rule_scores`), the rule drops it for every P/100 above that.

Two ways to apply it:

- ``percentile=P`` (the paper's fixed "Conv-P" settings): every prunable group drops what the
  rule at P drops (``fc_percentile`` for the groups a dense layer reads, the released code's
  separate FC and conv-FC percentages); the target, ``round_to`` and ``min_width`` do not apply.
- a cost target (our addition, so that wsp is compared at the same cost as the other methods):
  as one global P rises, each group drops its channels in order of WSP percentile, in blocks of
  ``round_to`` (one block per ``segments`` part for grouped convs), never below ``min_width``; a
  block goes at the P of its largest member. Removing blocks in that order until the cost is at
  most α is the search for the smallest P meeting the target, with the blocks that cross at that
  P taken one by one, so the achieved fraction lies in (α − Δ, α] like the other methods'.
  :func:`prunenet.core.select.select` performs it with per-channel scores chosen so that a block's
  score sum is that P (:func:`threshold_scores`).

Ours, for what the released VGG code never meets: a group written or read by several layers (a
residual stream, a depthwise conv) sums its producers' and its consumers' norms after dividing
each layer's by their mean.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from ..core.costs import CostModel
from ..errors import PrunenetError
from ..core.graph import ChannelGraph, Group
from ..core.select import Selection, block_size, select
from ..core.surgery import widths_of
from .qcqp import kernel_norms
from ..core.registry import register

__all__ = ["rule_scores", "threshold_scores", "select_channels"]

_TIE = 1e-13  # orders channels of equal block threshold by position; far below 1/width²


def _per_mean(x: np.ndarray) -> np.ndarray:
    mean = x.mean()
    return x / mean if mean > 0 else x


def _positions(x: np.ndarray) -> np.ndarray:
    """Each value's position when sorted ascending (ties by index), from 0."""
    out = np.empty(x.size)
    out[np.argsort(x, kind="stable")] = np.arange(x.size)
    return out


def rule_scores(graph: ChannelGraph, params: Dict[str, np.ndarray],
                fold_bn: bool = False) -> List[np.ndarray]:
    """Per group, each channel's WSP percentile in [0, 1]: the larger of its producer-filter and
    its consumer-slice L1 positions over ``width − 1`` (the producer's alone when nothing reads
    it)."""
    norms = kernel_norms(graph, params, 1, fold_bn=fold_bn)
    out_side = [np.zeros(g.width) for g in graph.groups]
    in_side = [np.zeros(g.width) for g in graph.groups]
    for name, m in norms.items():
        out_side[graph.out_group(name).index] += _per_mean(m.sum(axis=1))
        for group, offset in graph.in_segments(name):
            in_side[group.index] += _per_mean(m[:, offset:offset + group.width].sum(axis=0))
    return [(np.maximum(_positions(o), _positions(i)) if g.consumers else _positions(o))
            / max(g.width - 1, 1) for g, o, i in zip(graph.groups, out_side, in_side)]


def threshold_scores(percentiles: np.ndarray, group: Group, round_to: int) -> np.ndarray:
    """Scores under which :func:`prunenet.core.select.select` forms the group's blocks in order of
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


def _fixed(graph: ChannelGraph, scores: List[np.ndarray], cost: CostModel, percentile: float,
           fc_percentile: Optional[float]) -> Selection:
    """What the rule at ``percentile`` (``fc_percentile`` where a dense layer reads) removes."""
    for name, p in (("percentile", percentile), ("fc_percentile", fc_percentile)):
        if p is not None and not 0.0 <= p < 100.0:
            raise PrunenetError(f"wsp {name} {p} must lie in [0, 100) (a percentage)")
    keep = [np.ones(g.width, dtype=bool) for g in graph.groups]
    removed = 0
    for g in graph.prunable_groups:
        dense = any(graph.layers[c].op == "FullyConnected" for c in g.consumers)
        p = fc_percentile if dense and fc_percentile is not None else percentile
        keep[g.index] = ~(scores[g.index] < p / 100.0)
        removed += int((~keep[g.index]).sum())
    current = cost.total(widths_of(keep))
    return Selection(keep, current, cost.total(), 0.0, removed)


@register("wsp")
def select_channels(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                    target: float, round_to: int = 8, min_width: int = 8, fold_bn: bool = False,
                    percentile: Optional[float] = None,
                    fc_percentile: Optional[float] = None) -> Selection:
    """Raise the global WSP percentile until the cost reaches ``target``, or, with
    ``percentile``, apply the rule at that fixed percentile (see the module doc)."""
    percentiles = rule_scores(graph, params, fold_bn)
    if percentile is not None or fc_percentile is not None:
        if percentile is None:
            raise PrunenetError("wsp fc_percentile goes with percentile: give both")
        return _fixed(graph, percentiles, cost, percentile, fc_percentile)
    scores = [threshold_scores(p, g, max(round_to, 1)) if g.prunable else p  # select checks it
              for g, p in zip(graph.groups, percentiles)]
    return select(graph, cost, scores, target, priority="score", round_to=round_to,
                  min_width=min_width)
