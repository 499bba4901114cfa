"""Inference throughput of hybridized networks on synthetic input, measured side by side."""
from __future__ import annotations

import time
from typing import Dict, List, Sequence

import numpy as np

from .errors import PrunenetError

__all__ = ["throughput"]


def throughput(nets: Dict[str, object], image_shape: Sequence[int], batch_size: int = 64,
               repeats: int = 10, warmup: int = 3, ctx=None) -> Dict[str, dict]:
    """Images per second of each network in ``nets`` (name -> Gluon block) on random input of
    ``image_shape`` (C, H, W): after ``warmup`` batches, the median of ``repeats`` timed batches,
    the networks taking turns so that a noisy machine affects them alike."""
    import mxnet as mx
    if batch_size < 1:
        raise PrunenetError(f"batch size {batch_size} must be at least 1")
    ctx = ctx or mx.cpu()
    x = mx.nd.array(np.random.RandomState(0).normal(size=(batch_size,) + tuple(image_shape)),
                    ctx=ctx)
    for net in nets.values():
        net.hybridize(static_alloc=True, static_shape=True)
        for _ in range(warmup):
            net(x).wait_to_read()
    times: Dict[str, List[float]] = {name: [] for name in nets}
    for _ in range(repeats):
        for name, net in nets.items():
            mx.nd.waitall()
            t0 = time.perf_counter()
            net(x).wait_to_read()
            times[name].append(time.perf_counter() - t0)
    out = {}
    for name, ts in times.items():
        median = float(np.median(ts))
        out[name] = {"throughput_img_s": batch_size / median, "latency_ms": median * 1e3,
                     "latency_ms_iqr": float(np.subtract(*np.percentile(ts, [75, 25]))) * 1e3,
                     "batch_size": batch_size, "repeats": repeats}
    return out
