"""A network on every device of a run: its parameters copied to each context, and BatchNorm's
running statistics (which each device gathers from its own share of the batches) averaged.

Data-parallel training keeps one copy of every parameter per device; the optimizer applies the
same summed gradient to each copy (``update_on_kvstore=False``), so the copies stay equal and
``set_data`` writes all of them. Only the running statistics differ between devices, until
:func:`average_running_stats` makes them each device's average, as GluonCV's
``save_parameters`` does when it writes a model trained on several GPUs.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

__all__ = ["context_list", "place", "average_running_stats", "host_copy", "RUNNING_STATS",
           "cast", "compute_dtype", "on_devices"]


RUNNING_STATS = ("running_mean", "running_var")


def context_list(ctx=None) -> List[object]:
    """``ctx`` (a context, a list of them, or None for the CPU) as a non-empty list."""
    import mxnet as mx
    if ctx is None:
        return [mx.cpu()]
    ctxs = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    return ctxs or [mx.cpu()]


def place(net, ctx=None):
    """``net`` with every initialised parameter on exactly the contexts of ``ctx``, each holding
    the value of the copy it had (the one helper every network of a run goes through: base,
    pruned, teacher, resumed, transferred). Returns ``net``."""
    ctxs = context_list(ctx)
    for param in net.collect_params().values():
        if param._data is None and not param._deferred_init:
            continue  # not initialised: its caller initialises it on ctx
        if param.list_ctx() != ctxs:
            param.reset_ctx(ctxs)
    return net


def _items(params):
    """(name, Parameter) pairs of a block, a ParameterDict or a plain dict of Parameters."""
    return (params.collect_params() if hasattr(params, "collect_params") else params).items()


def average_running_stats(params) -> None:
    """Make every device's BatchNorm running mean and variance in ``params`` (a block, or a
    dict of Parameters) their average over the devices. Exact at any moment: each device's
    statistics are the same moving average of its own batches, so averaging now or at the end
    gives the same result."""
    import mxnet as mx
    stats = [p for name, p in _items(params) if name.endswith(RUNNING_STATS)
             and p._data is not None and len(p.list_ctx()) > 1]
    if stats:
        mx.nd.waitall()  # a static_alloc network's writes to them are not waited for otherwise
    for param in stats:
        copies = param.list_data()
        first = copies[0].context
        mean = mx.nd.add_n(*[c.as_in_context(first) for c in copies]) / len(copies)
        for copy in copies:
            mean.copyto(copy)


def host_copy(params) -> Dict[str, np.ndarray]:
    """NumPy values of ``params`` (a block, or a dict of Parameters) to save: running
    statistics averaged over the devices first (in place), and read once all writes are done
    (``static_alloc`` networks write asynchronously). Always float32: a float16 network's
    values are exact in it, and saved models, checkpoints and folds stay loadable by a float32
    network."""
    import mxnet as mx
    average_running_stats(params)
    mx.nd.waitall()
    values = {name: p.data(p.list_ctx()[0]).asnumpy() for name, p in _items(params)}
    return {name: v.astype(np.float32) if v.dtype == np.float16 else v
            for name, v in values.items()}


def compute_dtype(net) -> str:
    """The dtype ``net`` computes in: ``float16`` if any of its parameters is (after
    :func:`cast`, all but BatchNorm's), else ``float32``."""
    # a Block, or a MaskedNetwork (which holds its network's parameters as ``params``)
    params = net.collect_params() if hasattr(net, "collect_params") else net.params
    dtypes = {np.dtype(p.dtype) for p in params.values()}
    return "float16" if np.dtype(np.float16) in dtypes else "float32"


def cast(net, dtype: str = "float32"):
    """``net`` computing in ``dtype``, as GluonCV's ``train_imagenet.py`` casts it
    (``net.cast``): every parameter in ``dtype`` except BatchNorm's γ, β and running statistics,
    which MXNet's float16 BatchNorm keeps (and needs) in float32. A float32 network asked for
    float32 is left as it is. Returns ``net``."""
    if dtype != compute_dtype(net):
        import mxnet as mx
        mx.nd.waitall()  # writes not waited for otherwise (a network just built and run
        # once): a cast could read a weight half-written (seen on resnet18_v1b's largest)
        net.cast(dtype)
    return net


def on_devices(arrays, dtype: str = "float32") -> List[object]:
    """Per-device input arrays in ``dtype`` (cast on their device, after the copy there: half
    the bytes travel at float32, none is lost)."""
    return [x if x.dtype == np.dtype(dtype) else x.astype(dtype) for x in arrays]
