"""A pruned network: built from a selection by surgery, checked against the masked network it
replaces, saved as a run folder's network files and loaded back."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..core.graph import ChannelGraph
from ..io.records import PARAMS_FILE, REPORT_FILE, SHAPES_FILE, SYMBOL_PREFIX
from ..core.surgery import (build_resnetv1b, build_symbol_block, gluoncv_params, gluoncv_shapes, is_resnetv1b, network_params, sliced_params, zero_removed)

__all__ = ["PrunedNetwork", "prune_network", "surgery_check", "check_surgery", "save_pruned",
           "load_pruned", "probe", "renamed", "by_original_names", "SURGERY_TOLERANCE"]


# how far the pruned network's outputs may lie from the masked network's, relative to the
# largest output: float32 summation order, and float16's own rounding (about 1e-3 a layer)
SURGERY_TOLERANCE = {"float32": 1e-4, "float16": 1e-2}


@dataclass
class PrunedNetwork:
    """A pruned network with what is needed to save and report it."""

    net: object  # the physically smaller Gluon block
    graph: ChannelGraph  # of the unpruned network
    keep: List[np.ndarray]
    net_prefix: str
    gluoncv: bool  # True when ``net`` is a GluonCV ResNetV1b
    params: Dict[str, np.ndarray]  # sliced, full names of the unpruned network


def prune_network(net, graph: ChannelGraph, keep: Sequence[np.ndarray],
                  model: Optional[str] = None, classes: Optional[int] = None,
                  params: Optional[Dict[str, np.ndarray]] = None, ctx=None) -> PrunedNetwork:
    """Build the physically pruned network keeping ``keep`` (``net`` is left unchanged).

    ``params``: the full-width parameters to slice (default: ``net``'s own). A GluonCV
    ``ResNetV1b`` is rebuilt as GluonCV's ``model`` with ``classes`` outputs, or without a
    ``model`` name as a network of ``net``'s own architecture. On every context of ``ctx`` (a
    context or a list of them).
    """
    from ..core.replicas import cast, compute_dtype, context_list, place
    from ..training.models import build_model, fresh_resnetv1b
    devices = context_list(ctx)
    ctx = devices[0]
    params = sliced_params(graph, params if params is not None else network_params(net), keep)
    keep = [k.copy() for k in keep]
    if is_resnetv1b(net):
        shapes = gluoncv_shapes(graph, net.prefix, keep)
        fresh = build_model(model, classes) if model else fresh_resnetv1b(net)
        pruned = build_resnetv1b(fresh, shapes,
                                 gluoncv_params(params, net.prefix), ctx=ctx)
        pruned = cast(pruned, compute_dtype(net))  # computes in net's dtype
        return PrunedNetwork(place(pruned, devices), graph, keep, net.prefix, True, params)
    pruned = cast(build_symbol_block(graph, keep, params, ctx=ctx), compute_dtype(net))
    return PrunedNetwork(place(pruned, devices), graph, keep, net.prefix, False, params)


def surgery_check(net, pruned, graph: ChannelGraph, keep, seed: int = 0,
                  batch: int = 2) -> tuple:
    """``(largest |difference|, largest |output|)`` between the pruned network and ``net`` with
    the removed channels zeroed (the masked network), on random input. Zeroes ``net``'s removed
    channels in place."""
    zero_removed(graph, net, keep)
    return output_gap(net, pruned, probe(graph.input_shape, seed, None, batch))


def output_gap(reference, other, x) -> tuple:
    """``(largest |difference|, largest |output|)`` between two networks' outputs on ``x``, in
    float32: what :func:`check_surgery` judges."""
    expected = reference(x).asnumpy().astype(np.float32)
    got = other(x).asnumpy().astype(np.float32)
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())


def save_pruned(pruned: PrunedNetwork, folder: str) -> List[str]:
    """Write the pruned network into ``folder``: GluonCV's pair (``shapes.json`` +
    ``pruned.params``) for a ResNetV1b, else MXNet's symbol + params pair. Returns the names."""
    from ..io.files import save_params, save_symbol, write_json
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
    save_symbol(os.path.join(folder, symbol_file), symbol,
                {name: value.shape for name, value in pruned.params.items()})
    save_params(os.path.join(folder, params_file),
                {("aux:" if name in aux else "arg:") + name: value
                 for name, value in pruned.params.items()})
    return [symbol_file, params_file]


def check_surgery(diff: float, scale: float, dtype: str = "float32") -> None:
    """Refuse a surgery whose network computes other than the masked one it replaces."""
    if not diff <= SURGERY_TOLERANCE[dtype] * max(1.0, scale):
        raise RuntimeError(f"surgery check failed: the pruned network's outputs differ from the "
                           f"masked network's by {diff} (outputs up to {scale}); please report it")


def load_pruned(folder: str, ctx=None):
    """The pruned network saved in a run folder (either format), ready to run."""
    from ..io.files import load_params, read_json, read_shapes
    from ..training.models import build_pruned_resnet, load_symbol_block
    report = read_json(os.path.join(folder, REPORT_FILE), "run report")
    files = [os.path.join(folder, f) for f in report.get("files", [])]
    if report.get("format", "gluoncv-pruned-resnet") == "mxnet-symbol" or \
            files and files[0].endswith("-symbol.json"):
        return load_symbol_block(files[0], files[1], ctx)
    shapes, params = os.path.join(folder, SHAPES_FILE), os.path.join(folder, PARAMS_FILE)
    return build_pruned_resnet(report["model"], read_shapes(shapes), load_params(params), ctx,
                               shapes, params)


def probe(shape, seed: int, ctx, batch: int = 2):
    """A seeded random input batch of the network's input ``shape`` (float32, on ``ctx``)."""
    import mxnet as mx
    return mx.nd.array(np.random.RandomState(seed).normal(size=(batch,) + tuple(shape[1:])),
                       ctx=ctx)


def renamed(arrays: Dict[str, np.ndarray], old: Optional[str], new: str) -> Dict[str, np.ndarray]:
    """Checkpointed arrays with the network prefix ``old`` (Gluon numbers its networks, so a
    process that built one before names them anew) replaced by ``new``."""
    if not old or old == new:
        return arrays
    out = {}
    for key, value in arrays.items():
        tag, _, name = key.rpartition(":")
        if name.startswith(old):
            key = (tag + ":" if tag else "") + new + name[len(old):]
        out[key] = value
    return out


def by_original_names(pruned: PrunedNetwork) -> Dict[str, object]:
    """The pruned network's parameters keyed by the unpruned network's full names."""
    params = pruned.net.collect_params()
    if not pruned.gluoncv:
        return dict(params.items())
    return {pruned.net_prefix + name[len(pruned.net.prefix):]: p for name, p in params.items()}
