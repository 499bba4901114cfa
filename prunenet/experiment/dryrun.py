"""The dry run (``--dry-run``): an experiment's network at random weights and its MACs and
parameters at each target, without data or training (:func:`dry_run`)."""
from __future__ import annotations

from typing import List, Optional

from ..errors import PrunenetError
from .config import Experiment, _selected

__all__ = ["dry_run"]


def dry_run(exp: Experiment, only: Optional[str] = None, log=print, _cache=None) -> List[dict]:
    """Build ``exp``'s network at random weights and compute the MACs and parameters at each
    target with the data-free ``uniform`` selection; no data, no training. The latency
    objective's MACs are those of the same fraction of the FLOPs (its latency is measured only
    when it runs)."""
    from ..core.costs import cost_model, count
    from ..core.graph import trace
    from ..methods import DATA_FREE
    from ..training.models import input_shape, load_model
    from ..core.surgery import network_params, widths_of
    size = exp.data["input_size"]
    classes = 257 if exp.kind == "transfer" else None
    cache = _cache if _cache is not None else {}
    key = (exp.model, size, classes)
    if key not in cache:
        net = load_model(exp.model, classes=classes, input_size=size)
        graph = trace(net, input_shape(exp.model, size))
        cache[key] = (graph, network_params(net), count(graph))
    graph, params, before = cache[key]
    objective = "flops" if exp.objective == "latency" else exp.objective
    cost = cost_model(graph, objective)
    out = []
    for run in _selected(exp, only):
        if run.target is None:
            after, achieved = before, 1.0
        else:
            try:
                selection = DATA_FREE["uniform"](graph, params, cost, run.target,
                                                 round_to=exp.round_to, min_width=exp.min_width)
            except PrunenetError as err:
                raise PrunenetError(f"experiment config {exp.path}: key targets: {err}") from None
            after, achieved = count(graph, widths_of(selection.keep)), selection.achieved
        row = {"run": run.name, "target": run.target, "achieved": achieved,
               "macs": after["macs"], "params": after["params"],
               "macs_before": before["macs"], "params_before": before["params"]}
        out.append(row)
        if log:
            log(f"{run.name}: {exp.model} {exp.method}/{exp.objective} at "
                f"{'the full width' if run.target is None else run.target}: "
                f"{after['macs'] / 1e9:.3f} GMACs ({after['macs'] / before['macs']:.4f} of "
                f"{before['macs'] / 1e9:.3f}), {after['params'] / 1e6:.2f} M params "
                f"(uniform selection, {size}x{size}); not run (--dry-run)")
    return out
