"""``uniform`` and ``uniform-l1``: the same fraction of every prunable group.

``uniform`` is the paper's "naive uniform" baseline: every group shrinks by the same fraction and
the channels it loses are chosen at random (seeded; the same seed gives the same channels).
``uniform-l1`` shrinks the groups alike too but removes the channels of least BN-folded filter
L1 norm — a stronger baseline than the one the paper's claim is about, reported under its own
name.

Blocks are always taken from the group that keeps the largest fraction of its channels, so all
groups shrink together and the cost target is met with the same granularity as the other
methods.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from ..core.costs import CostModel
from ..core.graph import ChannelGraph
from ..core.select import Selection, select
from .l1 import filter_scores
from .random import random_scores
from ..core.registry import register

__all__ = ["select_channels", "select_channels_l1"]


@register("uniform", seeded=True)
def select_channels(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                    target: float, round_to: int = 8, min_width: int = 8,
                    seed: int = 0) -> Selection:
    """Shrink every prunable group by the same fraction, dropping channels chosen at random."""
    return select(graph, cost, random_scores(graph, seed), target, priority="uniform",
                  round_to=round_to, min_width=min_width)


@register("uniform-l1")
def select_channels_l1(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                       target: float, round_to: int = 8, min_width: int = 8) -> Selection:
    """Shrink every prunable group by the same fraction, dropping the channels of least filter
    L1 norm."""
    return select(graph, cost, filter_scores(graph, params), target, priority="uniform",
                  round_to=round_to, min_width=min_width)
