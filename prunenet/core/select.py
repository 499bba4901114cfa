"""Choose which channels to remove so that the network's cost reaches a target.

The unit of removal is a *block*: the ``round_to`` lowest-scoring remaining channels of one group.
Blocks are removed one at a time, the one of lowest priority first, until the cost is at or below
the target; no group goes below ``min_width``. Because the last block removed costs at most Δ
(the largest saving of any block removed), the achieved cost fraction lies in (α − Δ, α].

With ``drop_zeros`` (GCP: the paper counts a channel whose scale the regulariser drove to zero as
pruned), every remaining channel of score exactly 0 goes first, whatever the target: its group
loses as many whole blocks as cover its zeros (the live channels of least score fill the last
block), down to ``min_width``. The achieved fraction may then lie below α.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .costs import CostModel
from ..errors import PrunenetError
from .graph import ChannelGraph
from .surgery import full_keep, widths_of

__all__ = ["select", "check_cost_target", "Selection", "InfeasibleTargetError", "PRIORITIES",
           "smallest_reachable", "check_reachable", "block_size"]


class InfeasibleTargetError(PrunenetError):
    """The target cost cannot be reached without going below ``min_width``."""

    def __init__(self, target: float, smallest: float, min_width: int,
                 round_to: Optional[int] = None) -> None:
        self.target, self.smallest, self.min_width = target, smallest, min_width
        limit = (f"channels removed in blocks of round_to={round_to}" if round_to else
                 f"every group at min_width={min_width}")
        super().__init__(
            f"target {target:.4g} is below the smallest reachable cost fraction {smallest:.4f} "
            f"({limit}); raise the target to at least "
            f"{np.ceil(smallest * 1e4) / 1e4:.4f} or lower {'round_to' if round_to else 'min_width'}")


@dataclass
class Selection:
    """The outcome of :func:`select`."""

    keep: List[np.ndarray]
    cost: float  # cost after removal
    base_cost: float  # the cost that the target is a fraction of
    largest_block: float  # Δ as a cost (largest saving of one removed block)
    blocks_removed: int
    zero_channels_removed: int = 0  # channels of score 0 removed whatever the target
    solver: Optional[dict] = None  # what an exact method solved (qcqp): status, gap, ...

    @property
    def achieved(self) -> float:
        return self.cost / self.base_cost

    @property
    def granularity(self) -> float:
        """Δ as a fraction of the base cost."""
        return self.largest_block / self.base_cost

    def __repr__(self) -> str:  # widths per group, not every channel's boolean
        widths = " ".join(f"{int(k.sum())}/{k.size}" for k in self.keep)
        return (f"Selection(achieved {self.achieved:.4f} of the cost, {self.blocks_removed} "
                f"blocks removed; kept/full per group: {widths})")


# A priority maps (block score, block saving, current width, full width) to a sort key: the
# block with the smallest key goes first.
Priority = Callable[[float, float, int, int], float]
PRIORITIES: Dict[str, Priority] = {
    # GCP: the scores already carry the cost weights of the regulariser.
    "score": lambda score, saving, width, full: score,
    # Data-free global ranking: importance per unit of cost saved.
    "score_per_cost": lambda score, saving, width, full: score / max(saving, 1e-12),
    # Uniform: always shrink the group that keeps the largest fraction of its channels.
    "uniform": lambda score, saving, width, full: -width / full,
}


def block_size(group, round_to: int) -> int:
    """Channels removed at a time from ``group``: ``round_to``, or lcm(round_to, segments) when
    grouped convolutions need the same number removed from each of their groups."""
    return int(np.lcm(round_to, group.segments))


def _floor(group, min_width: int) -> int:
    """The fewest channels ``group`` may keep: ``min_width``, and one per segment."""
    return max(min_width, group.segments)


def _min_widths(graph: ChannelGraph, widths: np.ndarray, round_to: int, min_width: int) -> np.ndarray:
    out = widths.copy()
    for g in graph.prunable_groups:
        w, block, floor = int(widths[g.index]), block_size(g, round_to), _floor(g, min_width)
        if w - block >= floor:
            out[g.index] = w - ((w - floor) // block) * block
    return out


def smallest_reachable(graph: ChannelGraph, cost: CostModel, keep: Sequence[np.ndarray],
                       round_to: int = 8, min_width: int = 8, base_cost: float | None = None) -> float:
    """The smallest cost fraction that block removal can reach from ``keep``."""
    base = cost.total() if base_cost is None else base_cost
    return cost.total(_min_widths(graph, widths_of(keep), round_to, min_width)) / base


def check_reachable(graph: ChannelGraph, cost: CostModel, target: float, round_to: int = 8,
                    min_width: int = 8) -> None:
    """Raise :class:`InfeasibleTargetError` if ``target`` lies below what pruning every group to
    ``min_width`` reaches, so a run fails before it trains rather than after."""
    smallest = smallest_reachable(graph, cost, full_keep(graph), round_to, min_width)
    if smallest > target:
        raise _unreachable(graph, cost, target, smallest, round_to, min_width)


def _unreachable(graph: ChannelGraph, cost: CostModel, target: float, smallest: float,
                 round_to: int, min_width: int) -> PrunenetError:
    """The error for a target below ``smallest``: infeasible (the blocks to blame when single
    channels would reach it), or, when ``smallest`` is not below 1 (the narrowest network no
    cheaper than the unpruned one), the cost model's own word on why it cannot be believed —
    never advice to raise the target above 1."""
    blocks = smallest_reachable(graph, cost, full_keep(graph), 1, min_width) <= target
    if smallest >= 1.0 and not blocks:
        why = getattr(cost, "untrusted", None)
        if why:
            return PrunenetError(why(smallest))
        prunable = graph.prunable_groups
        if not prunable:
            reasons = [r for g in graph.groups for r in g.reasons]
            reason = next((r for r in reasons if not r.startswith("network ")),
                          reasons[0] if reasons else "none is prunable")
            return PrunenetError(f"no channel of the network can be removed: every channel "
                                 f"group is frozen (e.g. {reason}); it cannot be pruned")
        return PrunenetError(f"no channel can be removed at min_width {min_width} (--min-width):"
                             f" the widest prunable group has "
                             f"{max(g.width for g in prunable)} channels; lower --min-width")
    return InfeasibleTargetError(target, smallest, min_width, round_to if blocks else None)


def check_cost_target(target: float, name: str = "target", whole: bool = False) -> None:
    """Refuse a target that is not a fraction of the cost to keep: in (0, 1), or (``whole``:
    the selection routines, which a full-width step may reach) in (0, 1]."""
    if isinstance(target, bool) or not isinstance(target, numbers.Real):
        raise PrunenetError(f"{name} {target!r} must be a number (the fraction of the cost to "
                            f"keep), not {type(target).__name__}")
    if not (0.0 < target <= 1.0 if whole else 0.0 < target < 1.0):
        interval = "in (0, 1]" if whole else "strictly between 0 and 1"
        raise PrunenetError(f"{name} {target} must lie {interval} (the fraction of the cost "
                            f"to keep)")


def check_blocks(round_to, min_width) -> None:
    """Refuse a ``round_to`` or ``min_width`` that is not a whole number of channels >= 1."""
    for name, value in (("round_to", round_to), ("min_width", min_width)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise PrunenetError(f"{name} {value!r} must be a whole number of channels, at "
                                f"least 1")


def select(graph: ChannelGraph, cost: CostModel, scores: Sequence[np.ndarray], target: float,
           keep: Sequence[np.ndarray] | None = None, priority: str = "score", round_to: int = 8,
           min_width: int = 8, base_cost: float | None = None,
           drop_zeros: bool = False) -> Selection:
    """Remove blocks of channels until ``cost`` is at most ``target`` × ``base_cost``.

    ``scores``: one array per group (full width), higher = more important; their absolute
    values are used. ``keep``: channels still present (default: all). ``base_cost``: what the
    target is a fraction of (default: the unpruned network's cost). ``drop_zeros``: first remove
    every remaining channel of score 0, in whole blocks, whatever the target.
    """
    check_cost_target(target, whole=True)
    if round_to < 1 or min_width < 1:
        raise ValueError(f"round_to ({round_to}) and min_width ({min_width}) must be at least 1")
    try:
        rank = PRIORITIES[priority]
    except KeyError:
        raise ValueError(f"unknown priority {priority!r}: one of {', '.join(PRIORITIES)}") from None
    keep = [k.copy() for k in (keep if keep is not None else
                               [np.ones(g.width, dtype=bool) for g in graph.groups])]
    base = cost.total() if base_cost is None else float(base_cost)
    goal = target * base
    zeros_removed, zero_blocks, zero_largest = 0, 0, 0.0
    if drop_zeros:
        zeros_removed, zero_blocks, zero_largest = _drop_zeros(graph, cost, scores, keep,
                                                               round_to, min_width)
    widths = widths_of(keep)
    current = cost.total(widths)
    if current <= goal:
        return Selection(keep, current, base, zero_largest, zero_blocks, zeros_removed)
    smallest = cost.total(_min_widths(graph, widths, round_to, min_width))
    if smallest > goal:
        raise _unreachable(graph, cost, target, smallest / base, round_to, min_width)

    full = graph.full_widths()
    # Remaining channels of each segment of each group, lowest |score| first (ties: index).
    order: Dict[int, List[List[int]]] = {}
    abs_scores: Dict[int, np.ndarray] = {}
    for g in graph.prunable_groups:
        s = np.abs(np.asarray(scores[g.index], dtype=np.float64))
        if s.shape != (g.width,):
            raise ValueError(f"scores of group {g.index} have shape {s.shape}, expected ({g.width},)")
        part = g.width // g.segments
        order[g.index] = []
        for j in range(g.segments):
            idx = np.flatnonzero(keep[g.index][j * part:(j + 1) * part]) + j * part
            order[g.index].append([int(i) for i in idx[np.argsort(s[idx], kind="stable")]])
        abs_scores[g.index] = s
    groups = graph.groups
    running = cost.running(widths)  # cost.total and cost.saving as widths change

    def candidate(gi: int):
        w, group = int(widths[gi]), groups[gi]
        size = block_size(group, round_to)
        if w - size < _floor(group, min_width):
            return None
        per = size // group.segments
        block = [i for seg in order[gi] for i in seg[:per]]
        saving = running.saving(gi, size)
        score = float(abs_scores[gi][block].sum())
        return (rank(score, saving, w, int(full[gi])), -saving, gi, min(block)), block, saving

    largest, removed = zero_largest, zero_blocks
    prunable = [g.index for g in graph.prunable_groups]
    # each group's candidate (its block and saving), kept until a removal changes its width or
    # saving: the removed group's neighbours (itself included)
    candidates: Dict[int, object] = {}
    while current > goal:
        best = None
        for gi in prunable:
            if gi not in candidates:
                candidates[gi] = candidate(gi)
            cand = candidates[gi]
            if cand is not None and (best is None or cand[0] < best[0]):
                best = cand
        if best is None:  # cannot happen after the feasibility check; guard anyway
            raise InfeasibleTargetError(target, current / base, min_width)
        (_, _, gi, _), block, saving = best
        keep[gi][block] = False
        per = len(block) // groups[gi].segments
        for seg in order[gi]:
            del seg[:per]
        widths[gi] -= len(block)
        current = running.changed(gi)
        largest = max(largest, saving)
        removed += 1
        for nb in cost.neighbours(gi):
            candidates.pop(nb, None)
    return Selection(keep, current, base, largest, removed, zeros_removed)


def _drop_zeros(graph: ChannelGraph, cost: CostModel, scores: Sequence[np.ndarray],
                keep: List[np.ndarray], round_to: int, min_width: int):
    """Remove, in place, the whole blocks that cover each group's remaining zero-score channels
    (lowest scores first, never below the group's floor). Returns (zero channels removed,
    blocks removed, largest saving of one block)."""
    zeros, blocks, largest = 0, 0, 0.0
    widths = widths_of(keep)
    for g in graph.prunable_groups:
        s = np.abs(np.asarray(scores[g.index], dtype=np.float64))
        size, part = block_size(g, round_to), g.width // g.segments
        per = size // g.segments
        # per segment, remaining channels lowest |s| first (ties: index)
        segs = []
        for j in range(g.segments):
            idx = np.flatnonzero(keep[g.index][j * part:(j + 1) * part]) + j * part
            segs.append(idx[np.argsort(s[idx], kind="stable")])
        need = max(int(((s[seg] == 0)).sum()) for seg in segs)
        n = -(-need // per)  # whole blocks covering the zeros of the most-zeroed segment
        n = min(n, max(0, (int(widths[g.index]) - _floor(g, min_width)) // size))
        if n == 0:
            continue
        gone = np.concatenate([seg[:n * per] for seg in segs])
        block_saving = cost.saving(widths, g.index, size)
        zeros += int((s[gone] == 0).sum())
        keep[g.index][gone] = False
        widths[g.index] -= len(gone)
        blocks += n
        largest = max(largest, block_saving)
    return zeros, blocks, largest

