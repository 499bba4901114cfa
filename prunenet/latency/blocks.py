"""``--round-to auto``: the block of channels the runtime rewards most, measured for the network's
own layer shapes.

Kernels are vectorised over channels, so removing one channel may save nothing until a whole
vector's worth is gone (a pruned MobileNetV2 ran 3× slower in ONNX Runtime until its widths were
rounded to multiples of 16). For every unit whose output group is prunable, the latency table
measures the unit at its full widths and with ``b`` output channels fewer, for each block size
``b`` of :data:`BLOCKS`; the block whose removal saves the most time per channel removed, summed
over the units, is the one to prune in.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from ..errors import PrunenetError
from ..core.graph import ChannelGraph
from .table import LatencyTable
from .units import UnitSpec, unit_specs

__all__ = ["BLOCKS", "block_gains", "choose_block", "blocks_line"]

BLOCKS = (1, 4, 8, 16, 32)


def _points(graph: ChannelGraph, blocks: Sequence[int]
            ) -> List[Tuple[UnitSpec, int, int, List[Tuple[int, int]]]]:
    """Per prunable unit: its spec, full widths, and the widths with each block removed (units
    narrower than the largest block plus one are left out, so every block sums alike)."""
    specs = unit_specs(graph)
    out = []
    for name, layer in graph.layers.items():
        spec = specs.get(name)
        if spec is None or not graph.out_group(name).prunable:
            continue
        i, o = layer.in_channels, layer.out_channels
        if o <= max(blocks):
            continue
        fewer = [(o - b, o - b) if spec.groups == 0 else (i, o - b) for b in blocks]
        out.append((spec, i, o, fewer))
    return out


def block_gains(table: LatencyTable, graph: ChannelGraph, blocks: Sequence[int] = BLOCKS
                ) -> Dict[int, float]:
    """Milliseconds saved per output channel removed, for each block size: Σ over the network's
    prunable units of (latency at full width − latency with ``b`` channels fewer), over ``b`` ×
    the number of units; measured in the table's runtime (what it lacks, in one batch)."""
    units = _points(graph, blocks)
    if not units:
        raise PrunenetError(f"--round-to auto: no prunable layer of this network is wider than "
                            f"{max(blocks)} channels to measure; give --round-to N")
    table.ensure([(s, i, o) for s, i, o, _ in units] +
                 [(s, a, b) for s, _, _, fewer in units for a, b in fewer])
    gains = {}
    for k, b in enumerate(blocks):
        saved = sum(table.get(s, i, o) - table.get(s, *fewer[k]) for s, i, o, fewer in units)
        gains[b] = table.reference_ms * saved / (b * len(units))
    return gains


def choose_block(gains: Dict[int, float]) -> int:
    """The block size that saves the most time per channel (the smaller of two alike within
    5 %: finer steps reach a target more closely)."""
    best = max(gains.values())
    return min(b for b, g in gains.items() if g >= best - 0.05 * abs(best))


def blocks_line(gains: Dict[int, float], chosen: int, runtime: str) -> str:
    """The measurement as one log line."""
    from .runtimes import runtime_label
    per = ", ".join(f"{b}: {g * 1e3:.2f}" for b, g in gains.items())
    return (f"--round-to auto: time saved per channel removed in {runtime_label(runtime)} "
            f"(µs per batch, by block size) {per}; pruning in blocks of {chosen}")
