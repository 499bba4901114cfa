"""What a network costs at given channel widths: MACs or learnable parameters.

Costs are functions of the per-group widths of a :class:`~prunenet.core.graph.ChannelGraph`. A *cost
model* answers two questions: the total at some widths, and how much removing ``k`` channels of
one group saves (exact, since costs are bilinear in the widths of neighbouring groups).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import numpy as np

from ..errors import PrunenetError
from .graph import ChannelGraph, Layer

__all__ = ["CostModel", "MacsCost", "ParamsCost", "cost_model", "count", "OBJECTIVES",
           "register_objective"]


class CostModel:
    """Base class: subclasses give the cost of one layer and of one norm at given widths."""

    name = "cost"

    def __init__(self, graph: ChannelGraph) -> None:
        self.graph = graph
        self.layers: List[Layer] = list(graph.layers.values())
        self._in_groups = [[graph.space_group[s] for s in layer.in_layout] for layer in self.layers]
        self._out_group = [graph.space_group[layer.out_space] for layer in self.layers]
        self._norm_group = [graph.space_group[s] for n in graph.norms.values() for s in n.layout]
        touching: Dict[int, List[int]] = {g.index: [] for g in graph.groups}
        for i, (ins, out) in enumerate(zip(self._in_groups, self._out_group)):
            for gi in set(ins) | {out}:
                touching[gi].append(i)
        self._touching = touching
        self._norms_of = {g.index: sum(1 for n in self._norm_group if n == g.index)
                          for g in graph.groups}
        self.constant = 0.0

    # subclass interface ------------------------------------------------------------------
    def layer_cost(self, layer: Layer, in_width: int, out_width: int) -> float:
        raise NotImplementedError

    def norm_cost(self, width: int) -> float:
        return 0.0

    # derived -----------------------------------------------------------------------------
    def _layer_total(self, i: int, widths: np.ndarray) -> float:
        in_w = int(sum(widths[g] for g in self._in_groups[i]))
        return self.layer_cost(self.layers[i], in_w, int(widths[self._out_group[i]]))

    def total(self, widths: Sequence[int] | None = None) -> float:
        """The network's cost at ``widths`` (per group; default: unpruned)."""
        w = self.graph.full_widths() if widths is None else np.asarray(widths)
        return self._sum([self._layer_total(i, w) for i in range(len(self.layers))], w)

    def _sum(self, layer_costs: List[float], w: np.ndarray) -> float:
        norms = sum(self.norm_cost(int(w[g])) for g in self._norm_group)
        return float(sum(layer_costs) + norms + self.constant)

    def running(self, widths: np.ndarray) -> "RunningCost":
        """:meth:`total` and :meth:`saving` at ``widths``, an array the caller changes in place
        and reports (:meth:`RunningCost.changed`), each layer's cost kept between changes."""
        return RunningCost(self, widths)

    def saving(self, widths: Sequence[int], group: int, k: int = 1) -> float:
        """How much the cost drops when ``k`` channels of ``group`` are removed."""
        w = np.asarray(widths)
        return self._saving(w, group, k, lambda i: self._layer_total(i, w))

    def _saving(self, w: np.ndarray, group: int, k: int, before: Callable[[int], float]) -> float:
        """:meth:`saving`, layer ``i``'s cost at ``w`` being ``before(i)``."""
        fewer = w.copy()
        fewer[group] -= k
        delta = sum(before(i) - self._layer_total(i, fewer) for i in self._touching[group])
        delta += self._norms_of[group] * (self.norm_cost(int(w[group]))
                                          - self.norm_cost(int(fewer[group])))
        return float(delta)

    def neighbours(self, group: int) -> set:
        """The groups whose savings change when the width of ``group`` changes."""
        nb = {group}
        for i in self._touching[group]:
            nb.update(self._in_groups[i])
            nb.add(self._out_group[i])
        return nb

    def marginal(self, widths: Sequence[int] | None = None) -> np.ndarray:
        """Per group: the cost of one channel at ``widths`` (0 for unprunable groups)."""
        w = self.graph.full_widths() if widths is None else np.asarray(widths)
        out = np.zeros(len(self.graph.groups))
        for g in self.graph.prunable_groups:
            if w[g.index] > 0:
                out[g.index] = self.saving(w, g.index, 1)
        return out


class RunningCost:
    """A cost model's :meth:`~CostModel.total` and :meth:`~CostModel.saving` at ``widths`` as
    the array changes, the same numbers, each layer's cost computed anew only when a group it
    touches changed width (a cost with a ``total`` or ``saving`` of its own, the latency's,
    is asked every time)."""

    def __init__(self, cost: CostModel, widths: np.ndarray) -> None:
        self.cost, self.widths = cost, widths
        own = type(cost).total is not CostModel.total or type(cost).saving is not CostModel.saving
        self.costs = None if own else [cost._layer_total(i, widths)
                                       for i in range(len(cost.layers))]

    def changed(self, group: int) -> float:
        """The total after the width of ``group`` changed."""
        cost, w = self.cost, self.widths
        if self.costs is None:
            return cost.total(w)
        for i in cost._touching[group]:
            self.costs[i] = cost._layer_total(i, w)
        return cost._sum(self.costs, w)

    def saving(self, group: int, k: int) -> float:
        """:meth:`CostModel.saving` of ``k`` channels of ``group`` at the current widths."""
        if self.costs is None:
            return self.cost.saving(self.widths, group, k)
        return self.cost._saving(self.widths, group, k, self.costs.__getitem__)


class MacsCost(CostModel):
    """Multiply-accumulates of every convolution and dense layer, for one image."""

    name = "flops"

    def layer_cost(self, layer: Layer, in_width: int, out_width: int) -> float:
        kh, kw = layer.kernel
        return float(out_width) * _inputs_per_output(layer, in_width) * kh * kw * layer.out_hw \
            * layer.cols_per_channel


class ParamsCost(CostModel):
    """Learnable parameters: conv/dense weights and biases, BN scale and shift; not BN statistics."""

    name = "params"

    def __init__(self, graph: ChannelGraph) -> None:
        super().__init__(graph)
        covered = set()
        for layer in graph.layers.values():
            covered.update(p for p in (layer.weight, layer.bias) if p)
        for norm in graph.norms.values():
            covered.update((norm.gamma, norm.beta, norm.running_mean, norm.running_var))
        aux = _aux_names(graph)
        self.constant = float(sum(int(np.prod(shape)) for name, shape in graph.param_shapes.items()
                                  if name not in covered and name not in aux and name != "data"
                                  and not name.endswith("_output")))

        # a parameter several layers read (shared weights) is counted with the first of them
        first = {}
        for layer in graph.layers.values():
            for p in (layer.weight, layer.bias):
                if p:
                    first.setdefault(p, layer.name)
        self.counted = {name: (first[layer.weight] == name,
                               bool(layer.bias) and first[layer.bias] == name)
                        for name, layer in graph.layers.items()}

    def layer_cost(self, layer: Layer, in_width: int, out_width: int) -> float:
        kh, kw = layer.kernel
        per_out = _inputs_per_output(layer, in_width) * kh * kw * layer.cols_per_channel
        weight, bias = self.counted[layer.name]
        return float(out_width * per_out * weight + (out_width if bias else 0))

    def norm_cost(self, width: int) -> float:
        return 2.0 * width


def _inputs_per_output(layer: Layer, in_width: int) -> float:
    """Input channels each output channel reads: all of them, one (depthwise), or its group's."""
    if layer.depthwise:
        return 1
    return in_width / layer.groups


def _aux_names(graph: ChannelGraph) -> set:
    return set(graph.symbol.list_auxiliary_states())


OBJECTIVES: Dict[str, Callable[..., CostModel]] = {"flops": MacsCost, "params": ParamsCost}
# ``latency`` is registered by prunenet.latency, which measures on the machine: the costs
# themselves know nothing of it


def register_objective(name: str, make: Callable[..., CostModel]) -> None:
    """Make ``cost_model(graph, name, **options)`` build ``make(graph, **options)``."""
    if name in OBJECTIVES and OBJECTIVES[name] is not make:
        raise ValueError(f"objective {name!r} is registered twice")
    OBJECTIVES[name] = make


def cost_model(graph: ChannelGraph, objective: str, **options) -> CostModel:
    """The cost model of ``objective`` for ``graph``: ``flops``, ``params``, or ``latency``
    (options ``table`` (a :class:`prunenet.latency.LatencyTable`) and ``round_to``)."""
    try:
        make = OBJECTIVES[objective]
    except KeyError:
        raise PrunenetError(f"unknown objective {objective!r}: choose one of "
                         f"{', '.join(sorted(OBJECTIVES))}") from None
    return make(graph, **options)


def count(graph: ChannelGraph, widths: Sequence[int] | None = None) -> Dict[str, int]:
    """MACs and learnable parameters of ``graph`` at ``widths`` (default: unpruned)."""
    return {"macs": int(round(MacsCost(graph).total(widths))),
            "params": int(round(ParamsCost(graph).total(widths)))}
