"""``uniform``: the same fraction of every prunable group (the paper's baseline).

Blocks are always taken from the group that keeps the largest fraction of its channels, so all
groups shrink together and the cost target is met with the same granularity as the other
methods. Within a group, the channels of least BN-folded filter L1 norm go first.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from ..costs import CostModel
from ..graph import ChannelGraph
from ..select import Selection, select
from .l1 import filter_scores

__all__ = ["select_channels"]


def select_channels(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                    target: float, round_to: int = 8, min_width: int = 8) -> Selection:
    """Shrink every prunable group by the same fraction until the cost reaches ``target``."""
    return select(graph, cost, filter_scores(graph, params), target, priority="uniform",
                  round_to=round_to, min_width=min_width)
