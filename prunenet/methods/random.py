"""``random``: a seeded random global ranking of channels (a floor for the other methods).

Every channel draws a score uniformly from [0, 1) (``numpy.random.RandomState(seed)``, groups in
order); blocks are removed globally in order of their score, blind to cost, until the cost
reaches the target (:mod:`prunenet.core.select`). Because the last block removed may be a costly one,
removed blocks then come back while they still fit within the target, those of highest score
per unit of cost first (:func:`prunenet.methods.qcqp.refill`). The same seed gives the same
selection.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from ..core.costs import CostModel
from ..core.graph import ChannelGraph
from ..core.select import Selection, select
from ..core.surgery import widths_of
from .qcqp import refill
from ..core.registry import register

__all__ = ["random_scores", "select_channels"]


def random_scores(graph: ChannelGraph, seed: int = 0) -> List[np.ndarray]:
    """Per group, one uniform draw per channel from the stream of ``seed``."""
    rng = np.random.RandomState(seed)
    return [rng.random_sample(g.width) for g in graph.groups]


@register("random", seeded=True)
def select_channels(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                    target: float, round_to: int = 8, min_width: int = 8,
                    seed: int = 0) -> Selection:
    """Remove the channels of least random score until the cost reaches ``target``."""
    scores = random_scores(graph, seed)
    sel = select(graph, cost, scores, target, priority="score", round_to=round_to,
                 min_width=min_width)
    back = refill(graph, cost, sel.keep, target * sel.base_cost, round_to, lambda keep: scores)
    return Selection(sel.keep, cost.total(widths_of(sel.keep)), sel.base_cost, sel.largest_block,
                     sel.blocks_removed - back)
