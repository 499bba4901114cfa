"""``qcqp-greedy``: keep the most kernel importance under an exact cost constraint, greedily.

The objective follows the discrete-QCQP view of channel pruning: a kernel ``W_l[o, i]`` (one
output channel's filter over one input channel) survives only when its output *and* its input
channel are both kept, so the kept importance is bilinear in neighbouring groups' keep masks::

    I(keep) = Σ_l keep_out(l)ᵀ E_l keep_in(l),   E_l[o, i] = ‖Ŵ_l[o, i]‖² / ‖Ŵ_l‖²

with ``Ŵ`` the weight as BatchNorm folds it (row ``o`` times |γ_o|/σ_o) and every layer scaled
to a total of 1, so that layers of different scale weigh alike. The constraint
``cost(widths) ≤ α · cost(full)`` is bilinear too (a conv's MACs grow with in × out). We solve
this knapsack over blocks greedily and keep it exact by always evaluating the true cost (the
``qcqp`` method, :mod:`prunenet.methods.qcqp_exact`, solves the same problem exactly):

1. ``rounds`` rounds step the cost fraction geometrically from 1 down to α. Each round values
   every kept channel by the importance lost if it alone went (its kernels to and from the
   channels still kept around it) and removes blocks in order of that loss per unit of cost
   saved (:func:`prunenet.core.select.select`, which recomputes every block's exact saving at the
   current widths after each removal), so later rounds see the cuts of earlier ones.
2. Fill: while a removed block fits back within the budget — judged by ``cost.total`` at the
   widths it would give — the one returning the most importance per unit of cost comes back.
3. Swap (:func:`swap`): while giving up one group's least valuable kept block for another
   group's most valuable removed block raises ``I`` and fits the budget, the best such exchange
   is made; then fill again. Removals and fills alone stop where no single block can be added
   back, though a swap of widths would keep more (e.g. widths (16, 4, 16) where (16, 8, 12) fits).

Every step compares ``cost.total(widths)`` with ``α · cost.total()``, so the achieved fraction
is at most α, and, as for the other methods, above α − Δ (Δ the largest block's saving).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.costs import CostModel
from ..errors import PrunenetError
from ..core.graph import ChannelGraph
from ..core.select import (InfeasibleTargetError, Selection, block_size, check_cost_target,
                      select, smallest_reachable)
from ..core.surgery import expand_grouped, full_keep, widths_of
from ..core.registry import register

__all__ = ["kernel_norms", "importance", "kept_importance", "kept_value", "channel_values", "refill",
           "swap", "select_channels"]


def kernel_norms(graph: ChannelGraph, params: Dict[str, np.ndarray],
                 power: int, fold_bn: bool = True) -> Dict[str, np.ndarray]:
    """Per conv/dense layer, Σ|ŵ|^power of every kernel as an (output, input channels) array,
    ``ŵ`` folded with the layer's own BatchNorm unless not ``fold_bn`` (grouped and depthwise
    convs as dense ones)."""
    bn_of = {n.producer: n for n in graph.norms.values() if n.producer}
    out: Dict[str, np.ndarray] = {}
    for name, layer in graph.layers.items():
        w = np.abs(np.asarray(params[layer.weight], dtype=np.float64)) ** power
        m = w.reshape(w.shape[0], w.shape[1], -1).sum(axis=2)  # (out, in per group)
        if layer.op == "FullyConnected":  # columns of one channel: its flattened positions
            m = m.reshape(layer.out_channels, layer.in_channels, -1).sum(axis=2)
        elif layer.groups > 1:
            m = expand_grouped(m, layer.groups)
        norm = bn_of.get(name) if fold_bn else None
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
    return kept_value(graph, importance(graph, params), keep)


def kept_value(graph: ChannelGraph, energy: Dict[str, np.ndarray],
               keep: Sequence[np.ndarray]) -> float:
    """``I(keep)`` for the layer energies ``energy`` (:func:`importance`)."""
    return _value(graph, energy, keep, graph.layers)


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
    check_cost_target(target, whole=True)
    if round_to < 1 or min_width < 1:
        raise PrunenetError(f"round_to ({round_to}) and min_width ({min_width}) must be at least 1")


def _best_removed(values: np.ndarray, keep: np.ndarray, segments: int, per: int,
                  kept: bool = False) -> List[int]:
    """The ``per`` removed channels of highest value in each segment of a group (``kept``: the
    ``per`` kept channels of lowest value)."""
    part = keep.size // segments
    block: List[int] = []
    for j in range(segments):
        mask = keep[j * part:(j + 1) * part]
        idx = np.flatnonzero(mask if kept else ~mask) + j * part
        key = values[idx] if kept else -values[idx]
        block.extend(int(i) for i in idx[np.argsort(key, kind="stable")][:per])
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


def swap(graph: ChannelGraph, cost: CostModel, keep: List[np.ndarray], goal: float,
         round_to: int, min_width: int, energy: Dict[str, np.ndarray], limit: int = 256) -> int:
    """Exchange one group's kept block of least value for another group's removed block of most
    value (in ``keep``, in place) while that raises ``I`` exactly and the cost stays within
    ``goal``; the best such exchange first. Returns how many were made."""
    gain = _gain(graph, energy)
    made = 0
    while made < limit:
        values = channel_values(graph, energy, keep)
        widths = widths_of(keep)
        drops, adds = {}, {}
        for g in graph.prunable_groups:
            size, per = block_size(g, round_to), block_size(g, round_to) // g.segments
            if widths[g.index] - size >= max(min_width, g.segments):
                mask = keep[g.index].copy()
                mask[_best_removed(values[g.index], keep[g.index], g.segments, per, True)] = False
                drops[g.index] = (mask, gain(keep, g.index, mask), size)
            if g.width - widths[g.index] >= size:
                mask = keep[g.index].copy()
                mask[_best_removed(values[g.index], keep[g.index], g.segments, per)] = True
                adds[g.index] = (mask, gain(keep, g.index, mask), size)
        # drop-then-add gains at most the sum of the two alone (kernels between the two blocks
        # would be counted in both): try pairs by that bound, stop once it cannot beat the best
        pairs = sorted(((d[1] + a[1], gd, ga) for gd, d in drops.items()
                        for ga, a in adds.items() if gd != ga), reverse=True)
        best, least = None, 1e-12 * max(kept_value(graph, energy, keep), 1.0)
        for bound, gd, ga in pairs:
            if bound <= (best[0] if best else least):
                break
            more = widths.copy()
            more[gd] -= drops[gd][2]
            more[ga] += adds[ga][2]
            if cost.total(more) > goal:
                continue
            trial = list(keep)
            trial[gd] = drops[gd][0]
            won = drops[gd][1] + gain(trial, ga, adds[ga][0])
            if won > (best[0] if best else 0.0):
                best = (won, gd, ga)
        if best is None or best[0] <= least:
            return made
        _, gd, ga = best
        keep[gd], keep[ga] = drops[gd][0], adds[ga][0]
        made += 1
    return made


def _gain(graph: ChannelGraph, energy: Dict[str, np.ndarray]) -> Gain:
    """The exact change of ``I`` when group ``gi`` takes the keep mask ``mask``."""
    def gain(keep: List[np.ndarray], gi: int, mask: np.ndarray) -> float:
        group = graph.groups[gi]
        touching = set(group.producers) | set(group.consumers)
        trial = list(keep)
        trial[gi] = mask
        return _value(graph, energy, trial, touching) - _value(graph, energy, keep, touching)
    return gain


@register("qcqp-greedy")
def select_channels(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                    target: float, round_to: int = 8, min_width: int = 8,
                    rounds: int = 16, swaps: bool = True) -> Selection:
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
    values = lambda k: channel_values(graph, energy, k)  # noqa: E731
    removed -= refill(graph, cost, keep, target * base, round_to, values, _gain(graph, energy))
    while swaps and swap(graph, cost, keep, target * base, round_to, min_width, energy):
        back = refill(graph, cost, keep, target * base, round_to, values, _gain(graph, energy))
        removed -= back
        if not back:
            break
    return Selection(keep, cost.total(widths_of(keep)), base, largest, removed)
