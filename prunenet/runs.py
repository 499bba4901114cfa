"""A pruning run: model in, pruned GluonCV pair and ``report.json`` out.

The run folder holds ``report.json``, ``shapes.json`` + ``pruned.params`` (GluonCV's pruned-ResNet
pair, for the ResNetV1b family) or ``pruned-symbol.json`` + ``pruned-0000.params`` (any other
network, loadable with ``gluon.SymbolBlock.imports``). It appears under its final name only when
complete.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from .costs import cost_model, count
from .errors import PrunenetError
from .graph import ChannelGraph, trace
from .surgery import (build_resnetv1b, build_symbol_block, gluoncv_params, gluoncv_shapes,
                      is_resnetv1b, layer_widths, network_params, sliced_params, widths_of,
                      zero_removed)

__all__ = ["PrunedNetwork", "prune_network", "prune_run", "save_pruned", "surgery_check",
           "environment"]

SHAPES_FILE = "shapes.json"
PARAMS_FILE = "pruned.params"
SYMBOL_PREFIX = "pruned"
REPORT_FILE = "report.json"


@dataclass
class PrunedNetwork:
    """A pruned network with what is needed to save and report it."""

    net: object  # the physically smaller Gluon block
    graph: ChannelGraph  # of the unpruned network
    keep: List[np.ndarray]
    net_prefix: str
    gluoncv: bool  # True when ``net`` is a GluonCV ResNetV1b
    params: Dict[str, np.ndarray]  # sliced, full names of the unpruned network


def prune_network(net, graph: ChannelGraph, keep: Sequence[np.ndarray], model: str,
                  classes: Optional[int] = None, params: Optional[Dict[str, np.ndarray]] = None,
                  ctx=None) -> PrunedNetwork:
    """Build the physically pruned network keeping ``keep`` (``net`` is left unchanged).

    ``params``: the full-width parameters to slice (default: ``net``'s own).
    """
    from .models import build_model
    params = sliced_params(graph, params if params is not None else network_params(net), keep)
    keep = [k.copy() for k in keep]
    if is_resnetv1b(net):
        shapes = gluoncv_shapes(graph, net.prefix, keep)
        pruned = build_resnetv1b(build_model(model, classes), shapes,
                                 gluoncv_params(params, net.prefix), ctx=ctx)
        return PrunedNetwork(pruned, graph, keep, net.prefix, True, params)
    pruned = build_symbol_block(graph, keep, params, ctx=ctx)
    return PrunedNetwork(pruned, graph, keep, net.prefix, False, params)


def surgery_check(net, pruned, graph: ChannelGraph, keep, seed: int = 0,
                  batch: int = 2) -> tuple:
    """``(largest |difference|, largest |output|)`` between the pruned network and ``net`` with
    the removed channels zeroed (the masked network), on random input. Zeroes ``net``'s removed
    channels in place."""
    import mxnet as mx
    zero_removed(graph, net, keep)
    shape = (batch,) + tuple(graph.input_shape[1:])
    x = mx.nd.array(np.random.RandomState(seed).normal(size=shape).astype(np.float32))
    masked = net(x).asnumpy()
    out = pruned(x).asnumpy()
    return float(np.abs(masked - out).max()), float(np.abs(masked).max())


def save_pruned(pruned: PrunedNetwork, folder: str) -> List[str]:
    """Write the pruned network into ``folder``: GluonCV's pair (``shapes.json`` +
    ``pruned.params``) for a ResNetV1b, else MXNet's symbol + params pair. Returns the names."""
    from .files import atomic_path, save_params, write_json
    if pruned.gluoncv:
        write_json(os.path.join(folder, SHAPES_FILE),
                   gluoncv_shapes(pruned.graph, pruned.net_prefix, pruned.keep))
        save_params(os.path.join(folder, PARAMS_FILE),
                    gluoncv_params(pruned.params, pruned.net_prefix))
        return [SHAPES_FILE, PARAMS_FILE]
    symbol_file, params_file = f"{SYMBOL_PREFIX}-symbol.json", f"{SYMBOL_PREFIX}-0000.params"
    import mxnet as mx
    symbol = pruned.net(mx.sym.var("data"))
    aux = set(symbol.list_auxiliary_states())
    with atomic_path(os.path.join(folder, symbol_file)) as tmp:
        symbol.save(tmp)
    save_params(os.path.join(folder, params_file),
                {("aux:" if name in aux else "arg:") + name: value
                 for name, value in pruned.params.items()})
    return [symbol_file, params_file]


def environment() -> Dict[str, str]:
    """Versions and settings needed to reproduce a run."""
    import mxnet as mx
    import gluoncv
    from . import __version__
    return {"prunenet": __version__, "mxnet": mx.__version__, "gluoncv": gluoncv.__version__,
            "numpy": np.__version__, "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "")}


def prune_run(model: str, method: str, objective: str, target: float, out: str,
              params: Optional[str] = None, input_size: Optional[int] = None,
              classes: Optional[int] = None, round_to: int = 8, min_width: int = 8,
              seed: int = 0, overwrite: bool = False, command: Optional[List[str]] = None,
              log=print) -> dict:
    """Prune ``model`` with a data-free ``method`` to ``target`` × its cost; write the run folder
    ``out`` (see the module doc) and return the report."""
    from .files import staged_dir, write_json
    from .methods import DATA_FREE
    from .models import input_shape, load_model

    if method not in DATA_FREE:
        raise PrunenetError(f"unknown method {method!r}: choose one of {', '.join(DATA_FREE)}")
    if not 0.0 < target < 1.0:
        raise PrunenetError(f"--target {target} must lie strictly between 0 and 1 (the fraction "
                            f"of the cost to keep)")
    if round_to < 1 or min_width < 1:
        raise PrunenetError(f"--round-to {round_to} and --min-width {min_width} must be at least 1")
    if os.path.exists(out) and not overwrite:
        raise PrunenetError(f"output folder {out} already exists; choose another --out or pass "
                            f"--overwrite")
    timings = {}
    t0 = time.time()
    net = load_model(model, classes=classes, params=params, seed=seed, input_size=input_size)
    shape = input_shape(model, input_size)
    graph = trace(net, shape)
    cost = cost_model(graph, objective)
    before = count(graph)
    timings["load_and_trace_s"] = time.time() - t0

    t0 = time.time()
    selection = DATA_FREE[method](graph, network_params(net), cost, target,
                                  round_to=round_to, min_width=min_width)
    timings["select_s"] = time.time() - t0
    after = count(graph, widths_of(selection.keep))

    t0 = time.time()
    pruned = prune_network(net, graph, selection.keep, model, classes)
    diff, scale = surgery_check(net, pruned.net, graph, selection.keep, seed=seed)
    timings["surgery_s"] = time.time() - t0
    if not diff <= 1e-4 * max(1.0, scale):
        raise RuntimeError(f"surgery check failed: the pruned network's outputs differ from the "
                           f"masked network's by {diff} (outputs up to {scale}); please report it")

    report = {
        "model": model, "method": method, "objective": objective, "target": target,
        "achieved": selection.achieved, "granularity": selection.granularity,
        "macs_before": before["macs"], "macs_after": after["macs"],
        "params_before": before["params"], "params_after": after["params"],
        "input_shape": list(shape), "classes": classes, "round_to": round_to,
        "min_width": min_width, "seed": seed, "params_file": params,
        "surgery_max_abs_diff": diff,
        "format": "gluoncv-pruned-resnet" if pruned.gluoncv else "mxnet-symbol",
        "widths": layer_widths(graph, selection.keep),
        "group_widths": [[int(k.sum()), int(k.size)] for k in selection.keep],
        "timings": timings, "environment": environment(),
        "command": command if command is not None else list(sys.argv),
    }
    with staged_dir(out, overwrite=overwrite) as stage:
        report["files"] = save_pruned(pruned, stage)
        write_json(os.path.join(stage, REPORT_FILE), report)
    log(f"{model} {method}/{objective}: kept {report['achieved']:.4f} of the cost "
        f"(target {target}); MACs {before['macs'] / 1e9:.3f}G -> {after['macs'] / 1e9:.3f}G, "
        f"params {before['params'] / 1e6:.2f}M -> {after['params'] / 1e6:.2f}M; written to {out}")
    return report

