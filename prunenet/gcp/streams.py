"""How the score of a channel group is combined over the layers that write and read it.

A residual stream's channel is written by several producers (each block's last BatchNorm, the
downsample's) and read by several consumers (every block's first convolution, the next stage, the
classifier). The paper's importance score (its eq. 3) is defined for one input channel of one
convolution: the variance the channel carries, γ², times the squared norm of the filter columns
that read it — the output variance lost when that input is removed. Removing a stream channel
removes it from every consumer at once, so three rules are on offer:

- ``sum`` (the default): eq. 3 summed over every (producer, consumer) pair, ‖(γ_p)_p‖·‖(W_c)_c‖ —
  a stream channel's total contribution, as if every consumer saw every producer;
- ``reach``: eq. 3 summed over the consumers, each counting only the producers upstream of it
  (block 1's first convolution does not see block 3's output): the total output variance lost,
  read from the graph; between the other two;
- ``mean``: the score of one average connection — the quadratic mean over producers of γ and over
  consumers of the column norm (for L1-style scores, the arithmetic mean) — which makes a stream
  channel compare with a single layer's channel whatever its connectivity.

Measured on Fashion-MNIST (docs/methods.md, "GCP as the paper runs it"), ``mean`` cut the streams so hard
that the network lost most of its accuracy before fine-tuning; ``sum`` kept it best, and is the
default. Every method that scores tied groups uses the same rule.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import PrunenetError

__all__ = ["RULES", "DEFAULT_RULE", "combine", "check_rule"]

RULES = ("sum", "reach", "mean")
DEFAULT_RULE = "sum"


def check_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`RULES`, else an error naming them."""
    if rule not in RULES:
        raise PrunenetError(f"--stream-score {rule!r} is not a rule: choose one of "
                            f"{', '.join(RULES)}")
    return rule


def combine(values: Sequence[np.ndarray], rule: str = DEFAULT_RULE, kind: str = "l2") -> np.ndarray:
    """Per channel, ``values`` (one array per producer or consumer) combined by ``rule``:
    ``kind='l2'`` for magnitudes that add in quadrature (γ, filter-column norms: the norm under
    ``sum``, the quadratic mean under ``mean``), ``'l1'`` for scores that add (the sum, or the
    mean)."""
    check_rule(rule)
    rule = "sum" if rule == "reach" else rule  # reach weighs consumers; producers add up
    stack = np.asarray([np.asarray(v, dtype=np.float64) for v in values])
    if kind == "l2":
        total = (stack ** 2).sum(axis=0)
        return np.sqrt(total / len(stack) if rule == "mean" else total)
    if kind == "l1":
        return stack.mean(axis=0) if rule == "mean" else stack.sum(axis=0)
    raise ValueError(f"unknown kind {kind!r}: 'l2' or 'l1'")
