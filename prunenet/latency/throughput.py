"""Inference speed of hybridized networks on synthetic input, measured side by side.

As GluonCV measures its model zoo: each network hybridized with a static graph, a fixed batch of
random input, warm-up batches first, then the median of repeated timed batches. Several networks
are measured interleaved (one batch of each in turn, every round), so that a noisy machine slows
them alike and their ratios hold, and for as many rounds as :mod:`prunenet.latency.timing`'s rule needs
to know each median (or to say it could not). ``prunenet bench`` is the command line over it.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from ..errors import PrunenetError

__all__ = ["throughput", "speedup", "speed_check", "speed_line", "summarize", "device",
           "device_name", "DTYPES"]

DTYPES = ("float32", "float16")


def device(gpus: str = ""):
    """The one MXNet context that ``--gpus`` names: empty for the CPU, else a single GPU id."""
    from ..io.devices import one_device
    return one_device(gpus)


def device_name(ctx) -> str:
    """``cpu`` or ``gpu0``: the device part of a latency table's key."""
    return "cpu" if ctx.device_type == "cpu" else f"gpu{ctx.device_id}"


def check_settings(batch_size: int, dtype: str = "float32", repeats: int = 1,
                   warmup: int = 0) -> None:
    """Refuse settings no measurement can run with, with a message that says what to give."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise PrunenetError(f"batch size {batch_size} must be a whole number of at least 1")
    if dtype not in DTYPES:
        raise PrunenetError(f"dtype {dtype!r} is not supported; choose {' or '.join(DTYPES)}")
    if repeats < 1 or warmup < 0:
        raise PrunenetError(f"repeats ({repeats}) must be at least 1 and warm-up ({warmup}) "
                            f"at least 0")


def summarize(seconds: Sequence[float], batch_size: int) -> Dict[str, float]:
    """Throughput and latency of timed batches: the median, its spread (IQR, min, max) and its
    noise (:func:`prunenet.latency.timing.noise`)."""
    from .timing import noise
    ts = np.asarray(seconds, dtype=np.float64)
    median = float(np.median(ts))
    q25, q75 = np.percentile(ts, [25, 75])
    return {"throughput_img_s": batch_size / median, "latency_ms": median * 1e3,
            "latency_ms_iqr": float(q75 - q25) * 1e3, "latency_ms_min": float(ts.min()) * 1e3,
            "latency_ms_max": float(ts.max()) * 1e3, "noise": noise(ts),
            "throughput_img_s_iqr": [batch_size / float(q75), batch_size / float(q25)]}


def _calls(nets: Dict[str, object], image_shape: Sequence[int], batch_size: int,
           runtimes: Sequence[object]) -> Dict[str, Callable[[], None]]:
    """One call per network and runtime (:mod:`prunenet.latency.runtimes`), named by the network, and
    by ``NAME@RUNTIME`` when there are several runtimes."""
    shape = (batch_size,) + tuple(image_shape)
    return {_row(name, rt.name, runtimes): rt.block_call(net, shape)
            for rt in runtimes for name, net in nets.items()}


def _row(name: str, runtime: str, runtimes: Sequence[object]) -> str:
    return name if len(runtimes) == 1 else f"{name}@{runtime}"


def _runtimes(runtime, ctx, dtype: str) -> list:
    """The :class:`prunenet.latency.runtimes.Runtime` objects ``runtime`` names: one name, ``both``,
    or a sequence of names."""
    from .runtimes import RUNTIMES, get_runtime
    names = RUNTIMES if runtime == "both" else [runtime] if isinstance(runtime, str) else \
        list(runtime)
    return [get_runtime(name, ctx, dtype) for name in names]


def _timed(calls, ctx, dtype: str, runtimes: Sequence[object] = (), **rule):
    """``calls`` timed by the timing rule, each timed batch right after an untimed one of the
    same network (``warm_each``), a progress line every 10 s after the first 10."""
    from .runtimes import runtime_label
    from .timing import Progress, pct, time_until_stable
    progress = Progress(f"timing {', '.join(calls)}")

    def on_round(t) -> None:
        progress(f"round {t.repeats}, medians within {pct(t.worst)} so far")
    try:
        return time_until_stable(calls, on_round=on_round, warm_each=True, **rule)
    except Exception as err:  # noqa: BLE001 (a runtime's own errors; others raised again)
        for rt in runtimes:
            why = rt.cannot(err)
            if why is None:
                continue
            if dtype == "float16" and ctx.device_type == "cpu":
                why = "its CPU kernels do not compute in float16; measure float16 on a GPU " \
                      "(--gpus 0)"
            raise PrunenetError(f"{runtime_label(rt.key)} cannot run the networks in {dtype} on "
                                f"{ctx}: {why}, or use --dtype float32") from None
        raise


def throughput(nets: Dict[str, object], image_shape: Sequence[int],
               batch_size: Optional[int] = None, repeats: Optional[int] = None,
               warmup: Optional[int] = None, ctx=None, dtype: str = "float32",
               max_repeats: Optional[int] = None, budget_s: Optional[float] = None,
               runtime="mxnet") -> Dict[str, dict]:
    """Images per second of each network in ``nets`` (name -> Gluon block) on random input of
    ``image_shape`` (C, H, W): after ``warmup`` batches, the median of at least ``repeats``
    timed batches and more, up to ``max_repeats`` (default: the larger of ``repeats`` and
    :data:`prunenet.latency.timing.MAX_REPEATS`), until every median is within the timing rule's
    tolerance; the networks take turns so that a noisy machine affects them alike. Each result
    also has the median latency (ms per batch), its spread and noise, ``rounds`` (timed batches
    run) and ``speedup`` over the first network with its noise (from the per-round ratios).
    ``float16`` casts the networks in place. ``runtime`` (:mod:`prunenet.latency.runtimes`): where they
    run, ``mxnet`` or ``onnxruntime``, or ``both`` — every network in each, all interleaved in
    one timing, the rows named ``NAME@RUNTIME`` and each speed-up over the first network in the
    same runtime; every row names its ``runtime``. ``batch_size``, ``repeats`` and ``warmup``
    default to :class:`prunenet.latency.settings.BenchConfig`'s."""
    import mxnet as mx
    from .settings import bench_settings
    from .timing import MAX_REPEATS, ratio
    batch_size, repeats, warmup = bench_settings(batch_size, repeats, warmup)
    check_settings(batch_size, dtype, repeats, warmup)
    ctx = ctx or mx.cpu()
    runtimes = _runtimes(runtime, ctx, dtype)
    calls = _calls(nets, image_shape, batch_size, runtimes)
    timings = _timed(calls, ctx, dtype, runtimes, min_repeats=repeats, warmup=warmup,
                     max_repeats=max(repeats, max_repeats or MAX_REPEATS), budget_s=budget_s)
    out = {}
    for rt in runtimes:
        first = timings.seconds[_row(next(iter(nets)), rt.name, runtimes)]
        for name in nets:
            row = _row(name, rt.name, runtimes)
            ts = timings.seconds[row]
            gain = ratio(first, ts)
            out[row] = dict(summarize(ts, batch_size), batch_size=batch_size, repeats=repeats,
                            rounds=len(ts), warmup=warmup, dtype=dtype, device=device_name(ctx),
                            runtime=rt.key, speedup=gain["ratio"], speedup_noise=gain["noise"],
                            noisy=row in timings.noisy)
    return out


def speedup(full, pruned, image_shape: Sequence[int], batch_size: int = 16, ctx=None,
            budget_s: float = 3.0, runtime: str = "mxnet") -> Dict[str, object]:
    """The pruned network's measured speed-up over the unpruned one in ``runtime``: both timed
    interleaved by the timing rule within about ``budget_s`` seconds (at least three rounds),
    the speed-up the median of the per-round ratios, with its noise, the runtime, the device and
    the batch size."""
    import mxnet as mx
    from .timing import ratio
    ctx = ctx or mx.cpu()
    from ..core.replicas import compute_dtype
    dtype = compute_dtype(full)  # a run's networks compute in its --dtype
    runtimes = _runtimes(runtime, ctx, dtype)
    calls = _calls({"full": full, "pruned": pruned}, image_shape, batch_size, runtimes)
    timings = _timed(calls, ctx, dtype, runtimes, min_repeats=3, warmup=1, budget_s=budget_s)
    gain = ratio(timings.seconds["full"], timings.seconds["pruned"])
    return {"speedup": gain["ratio"], "noise": gain["noise"], "rounds": gain["repeats"],
            "latency_ms_full": float(np.median(timings.seconds["full"])) * 1e3,
            "latency_ms_pruned": float(np.median(timings.seconds["pruned"])) * 1e3,
            "device": device_name(ctx), "batch_size": batch_size, "runtime": runtimes[0].key,
            "threads": os.environ.get("OMP_NUM_THREADS", "")}


def speed_check(full, pruned, shape, macs_before: int, macs_after: int, ctx=None,
                batch_size: int = 16, budget_s: float = 3.0, runtime: str = "mxnet") -> dict:
    """The report's ``speed_check``: the pruned network's measured speed-up over the unpruned
    one on ``ctx`` in ``runtime`` (:func:`prunenet.latency.throughput.speedup`, a few seconds) beside its MACs
    reduction, and whether the gain is well below what the MACs promise (under half of it, or
    none)."""
    result = speedup(full, pruned, tuple(shape[1:]), batch_size, ctx, budget_s, runtime)
    reduction = macs_before / max(macs_after, 1)
    gain, noise = result["speedup"], result["noise"] * result["speedup"]
    result.update(macs_reduction=reduction,
                  below_macs=bool(gain + noise < 1 + 0.5 * (reduction - 1)) and reduction > 1.05)
    return result


def speed_line(report: dict) -> str:
    """The summary line's part for a report's ``speed_check`` (empty without one)."""
    check = report.get("speed_check")
    if not check:
        return ""
    from .runtimes import runtime_label
    where = runtime_label(check.get("runtime", "mxnet"))  # reports from before runtimes: MXNet
    line = (f"; measured speed-up {check['speedup']:.2f}x ±{check['noise'] * check['speedup']:.2f} "
            f"({where}, {check['device']}, batch {check['batch_size']}) for {check['macs_reduction']:.2f}x "
            f"fewer MACs")
    if check["below_macs"]:
        line += (" — well below what the MACs promise on this device" +
                 ("" if report.get("objective") == "latency" else
                  "; prune with --objective latency to prune for measured time"))
    return line


def _first_line(err: BaseException) -> str:
    from .runtimes import first_line
    return first_line(err)
