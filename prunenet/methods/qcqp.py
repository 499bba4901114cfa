"""``qcqp``: keep the most kernel importance under an exact cost constraint.

The objective follows the discrete-QCQP view of channel pruning: a kernel ``W_l[o, i]`` (one
output channel's filter over one input channel) survives only when its output *and* its input
channel are both kept, so the kept importance is bilinear in neighbouring groups' keep masks::

    I(keep) = Σ_l keep_out(l)ᵀ E_l keep_in(l),   E_l[o, i] = ‖Ŵ_l[o, i]‖² / ‖Ŵ_l‖²

with ``Ŵ`` the weight as BatchNorm folds it (row ``o`` times |γ_o|/σ_o) and every layer scaled
to a total of 1, so that layers of different scale weigh alike. The constraint
``cost(widths) ≤ α · cost(full)`` is bilinear too (a conv's MACs grow with in × out). We solve
this knapsack over blocks greedily and keep it exact by always evaluating the true cost:

1. ``rounds`` rounds step the cost fraction geometrically from 1 down to α. Each round values
   every kept channel by the importance lost if it alone went (its kernels to and from the
   channels still kept around it) and removes blocks in order of that loss per unit of cost
   saved (:func:`prunenet.select.select`, which recomputes every block's exact saving at the
   current widths after each removal), so later rounds see the cuts of earlier ones.
2. Fill: while a removed block fits back within the budget — judged by ``cost.total`` at the
   widths it would give — the one returning the most importance per unit of cost comes back.

Every step compares ``cost.total(widths)`` with ``α · cost.total()``, so the achieved fraction
is at most α, and, as for the other methods, above α − Δ (Δ the largest block's saving).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..costs import CostModel
from ..errors import PrunenetError
from ..graph import ChannelGraph
from ..select import InfeasibleTargetError, Selection, block_size, select, smallest_reachable
from ..surgery import expand_grouped, full_keep, widths_of

__all__ = ["kernel_norms", "importance", "kept_importance", "channel_values", "refill",
           "select_channels"]


def kernel_norms(graph: ChannelGraph, params: Dict[str, np.ndarray],
                 power: int) -> Dict[str, np.ndarray]:
    """Per conv/dense layer, Σ|ŵ|^power of every kernel as an (output, input channels) array,
    ``ŵ`` folded with the layer's own BatchNorm (grouped and depthwise convs as dense ones)."""
    bn_of = {n.producer: n for n in graph.norms.values() if n.producer}
    out: Dict[str, np.ndarray] = {}
    for name, layer in graph.layers.items():
        w = np.abs(np.asarray(params[layer.weight], dtype=np.float64)) ** power
        m = w.reshape(w.shape[0], w.shape[1], -1).sum(axis=2)  # (out, in per group)
        if layer.op == "FullyConnected":  # columns of one channel: its flattened positions
            m = m.reshape(layer.out_channels, layer.in_channels, -1).sum(axis=2)
        elif layer.groups > 1:
            m = expand_grouped(m, layer.groups)
        norm = bn_of.get(name)
        if norm is not None:
            scale = np.abs(params[norm.gamma]) / np.sqrt(params[norm.running_var] + norm.eps)
            m = m * (scale.astype(np.float64) ** power)[:, None]
        out[name] = m
    return out


def importance(graph: ChannelGraph, params: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The objective's ``E_l``: squared kernel norms, each layer scaled to sum to 1."""
    energy = kernel_norms(graph, params, 2)
    return {name: e / e.sum() if e.sum() > 0 else e for name, e in energy.items()}


def _masks(graph: ChannelGraph, name: str,
           keep: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """A layer's kept output rows and input columns, as 0/1 vectors."""
    layer = graph.layers[name]
    rows = keep[graph.space_group[layer.out_space]].astype(np.float64)
    return rows, np.concatenate([keep[graph.space_group[s]] for s in layer.in_layout]) \
        .astype(np.float64)


def _value(graph: ChannelGraph, energy: Dict[str, np.ndarray], keep: Sequence[np.ndarray],
           layers) -> float:
    total = 0.0
    for name in layers:
        rows, cols = _masks(graph, name, keep)
        total += float(rows @ (energy[name] @ cols))
    return total


def kept_importance(graph: ChannelGraph, params: Dict[str, np.ndarray],
                    keep: Sequence[np.ndarray]) -> float:
    """The objective ``I(keep)``: the summed layer-normalised energy of the surviving kernels."""
    return _value(graph, importance(graph, params), keep, graph.layers)


def channel_values(graph: ChannelGraph, energy: Dict[str, np.ndarray],
                   keep: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Per group and channel, the importance its kernels add given the channels kept around it:
    what a kept channel loses by going alone, what a removed one brings back alone."""
    values = [np.zeros(g.width) for g in graph.groups]
    for name, layer in graph.layers.items():
        e = energy[name]
        rows, cols = _masks(graph, name, keep)
        out_group = graph.space_group[layer.out_space]
        values[out_group] += e @ cols
        col_values = rows @ e
        offset = 0
        for space in layer.in_layout:
            gi, width = graph.space_group[space], graph.space_width[space]
            values[gi] += col_values[offset:offset + width]
            if gi == out_group:  # a depthwise conv: kernel (c, c) counted once, not twice/never
                values[gi] += np.diagonal(e[:, offset:offset + width]) * (1 - 2 * keep[gi])
            offset += width
    return values


def _check(target: float, round_to: int, min_width: int) -> None:
    if not 0.0 < target <= 1.0:
        raise PrunenetError(f"target {target} must lie in (0, 1]")
    if round_to < 1 or min_width < 1:
        raise PrunenetError(f"round_to ({round_to}) and min_width ({min_width}) must be at least 1")


def _best_removed(values: np.ndarray, keep: np.ndarray, segments: int, per: int) -> List[int]:
    """The ``per`` removed channels of highest value in each segment of a group."""
    part = keep.size // segments
    block: List[int] = []
    for j in range(segments):
        idx = np.flatnonzero(~keep[j * part:(j + 1) * part]) + j * part
        block.extend(int(i) for i in idx[np.argsort(-values[idx], kind="stable")][:per])
    return block


Values = Callable[[List[np.ndarray]], List[np.ndarray]]
Gain = Callable[[List[np.ndarray], int, np.ndarray], float]


def refill(graph: ChannelGraph, cost: CostModel, keep: List[np.ndarray], goal: float,
           round_to: int, values: Values, gain: Optional[Gain] = None) -> int:
    """Bring removed blocks back into ``keep`` (in place) while one fits within ``goal``, judged
    by ``cost.total`` at the widths it would give. A group's candidate is its removed channels of
    highest ``values(keep)`` (per segment); the candidate of most ``gain(keep, group, its mask)``
    (default: its summed values) per unit of cost added comes back. Returns how many came back."""
    back = 0
    current = cost.total(widths_of(keep))
    while True:
        now = values(keep)
        widths = widths_of(keep)
        best = None
        for g in graph.prunable_groups:
            size = block_size(g, round_to)
            if g.width - widths[g.index] < size:
                continue
            more = widths.copy()
            more[g.index] += size
            new_cost = cost.total(more)
            if new_cost > goal:
                continue
            block = _best_removed(now[g.index], keep[g.index], g.segments, size // g.segments)
            mask = keep[g.index].copy()
            mask[block] = True
            won = float(now[g.index][block].sum()) if gain is None else gain(keep, g.index, mask)
            key = (won / max(new_cost - current, 1e-12), won, -g.index)
            if best is None or key > best[0]:
                best = (key, g.index, mask, new_cost)
        if best is None:
            return back
        _, gi, mask, current = best
        keep[gi] = mask
        back += 1


def _gain(graph: ChannelGraph, energy: Dict[str, np.ndarray]) -> Gain:
    """The exact change of ``I`` when group ``gi`` takes the keep mask ``mask``."""
    def gain(keep: List[np.ndarray], gi: int, mask: np.ndarray) -> float:
        group = graph.groups[gi]
        touching = set(group.producers) | set(group.consumers)
        trial = list(keep)
        trial[gi] = mask
        return _value(graph, energy, trial, touching) - _value(graph, energy, keep, touching)
    return gain


def select_channels(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                    target: float, round_to: int = 8, min_width: int = 8,
                    rounds: int = 16) -> Selection:
    """Keep the most kernel importance ``I(keep)`` with ``cost.total(widths)`` at most
    ``target`` × the unpruned cost (see the module doc for the method)."""
    _check(target, round_to, min_width)
    if rounds < 1:
        raise PrunenetError(f"rounds ({rounds}) must be at least 1")
    keep = full_keep(graph)
    base = cost.total()
    smallest = smallest_reachable(graph, cost, keep, round_to, min_width, base)
    if smallest > target:
        raise InfeasibleTargetError(target, smallest, min_width)
    energy = importance(graph, params)
    largest, removed = 0.0, 0
    for t in range(1, rounds + 1):
        sel = select(graph, cost, channel_values(graph, energy, keep), target ** (t / rounds),
                     keep=keep, priority="score_per_cost", round_to=round_to,
                     min_width=min_width, base_cost=base)
        keep, largest = sel.keep, max(largest, sel.largest_block)
        removed += sel.blocks_removed
    removed -= refill(graph, cost, keep, target * base, round_to,
                      lambda k: channel_values(graph, energy, k), _gain(graph, energy))
    return Selection(keep, cost.total(widths_of(keep)), base, largest, removed)
