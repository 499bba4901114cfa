"""Choose which channels to remove so that the network's cost reaches a target.

The unit of removal is a *block*: the ``round_to`` lowest-scoring remaining channels of one group.
Blocks are removed one at a time, the one of lowest priority first, until the cost is at or below
the target; no group goes below ``min_width``. Because the last block removed costs at most Δ
(the largest saving of any block removed), the achieved cost fraction lies in (α − Δ, α].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import numpy as np

from .costs import CostModel
from .errors import PrunenetError
from .graph import ChannelGraph
from .surgery import full_keep, widths_of

__all__ = ["select", "Selection", "InfeasibleTargetError", "PRIORITIES", "smallest_reachable",
           "check_reachable", "block_size"]


class InfeasibleTargetError(PrunenetError):
    """The target cost cannot be reached without going below ``min_width``."""

    def __init__(self, target: float, smallest: float, min_width: int) -> None:
        self.target, self.smallest, self.min_width = target, smallest, min_width
        super().__init__(
            f"target {target:.4g} is below the smallest reachable cost fraction {smallest:.4f} "
            f"(every group at min_width={min_width}); raise the target to at least "
            f"{np.ceil(smallest * 1e4) / 1e4:.4f} or lower min_width")


@dataclass
class Selection:
    """The outcome of :func:`select`."""

    keep: List[np.ndarray]
    cost: float  # cost after removal
    base_cost: float  # the cost that the target is a fraction of
    largest_block: float  # Δ as a cost (largest saving of one removed block)
    blocks_removed: int

    @property
    def achieved(self) -> float:
        return self.cost / self.base_cost

    @property
    def granularity(self) -> float:
        """Δ as a fraction of the base cost."""
        return self.largest_block / self.base_cost


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
        raise _unreachable(cost, target, smallest, min_width)


def _unreachable(cost: CostModel, target: float, smallest: float,
                 min_width: int) -> PrunenetError:
    """The error for a target below ``smallest``: infeasible, or, when ``smallest`` is not
    below 1 (the narrowest network no cheaper than the unpruned one), the cost model's own word
    on why it cannot be believed — never advice to raise the target above 1."""
    if smallest >= 1.0:
        why = getattr(cost, "untrusted", None)
        return PrunenetError(why(smallest) if why else
                             f"the {cost.name} cost model puts every group at min_width at "
                             f"{smallest:.4f} of the unpruned cost; it cannot be pruned by")
    return InfeasibleTargetError(target, smallest, min_width)


def select(graph: ChannelGraph, cost: CostModel, scores: Sequence[np.ndarray], target: float,
           keep: Sequence[np.ndarray] | None = None, priority: str = "score", round_to: int = 8,
           min_width: int = 8, base_cost: float | None = None) -> Selection:
    """Remove blocks of channels until ``cost`` is at most ``target`` × ``base_cost``.

    ``scores``: one array per group (full width), higher = more important; their absolute
    values are used. ``keep``: channels still present (default: all). ``base_cost``: what the
    target is a fraction of (default: the unpruned network's cost).
    """
    if not 0.0 < target <= 1.0:
        raise PrunenetError(f"target {target} must lie in (0, 1]")
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
    widths = widths_of(keep)
    current = cost.total(widths)
    if current <= goal:
        return Selection(keep, current, base, 0.0, 0)
    smallest = cost.total(_min_widths(graph, widths, round_to, min_width))
    if smallest > goal:
        raise _unreachable(cost, target, smallest / base, min_width)

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
    saving_cache: Dict[int, float] = {}
    groups = graph.groups

    def candidate(gi: int):
        w, group = int(widths[gi]), groups[gi]
        size = block_size(group, round_to)
        if w - size < _floor(group, min_width):
            return None
        per = size // group.segments
        block = [i for seg in order[gi] for i in seg[:per]]
        if gi not in saving_cache:
            saving_cache[gi] = cost.saving(widths, gi, size)
        saving = saving_cache[gi]
        score = float(abs_scores[gi][block].sum())
        return (rank(score, saving, w, int(full[gi])), -saving, gi, min(block)), block, saving

    largest, removed = 0.0, 0
    prunable = [g.index for g in graph.prunable_groups]
    while current > goal:
        best = None
        for gi in prunable:
            cand = candidate(gi)
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
        current = cost.total(widths)
        largest = max(largest, saving)
        removed += 1
        for nb in cost.neighbours(gi):
            saving_cache.pop(nb, None)
    return Selection(keep, current, base, largest, removed)

