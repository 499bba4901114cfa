"""Timing units on this machine: each unit built alone at given widths and timed by
:mod:`prunenet.latency.timing`'s rule, scaled by a reference unit timed with it."""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import numpy as np

from ..errors import PrunenetError
from .units import UnitSpec


UNIT_TOLERANCE = 0.05  # the noise a unit's timings may keep (the check after selection corrects)


class UnitTimer:
    """Times units and whole networks on one device in one runtime (:mod:`prunenet.latency.runtimes`:
    MXNet hybridized with a static graph, or ONNX Runtime): random input, ``warmup`` untimed
    batches, then the fastest of ``repeats`` batches, the calls of one request taking turns."""

    def __init__(self, ctx=None, batch_size: int = 32, dtype: str = "float32", repeats: int = 5,
                 warmup: int = 2, runtime: str = "mxnet") -> None:
        from .throughput import check_settings
        from .runtimes import get_runtime
        check_settings(batch_size, dtype, repeats, warmup)
        self.runtime = get_runtime(runtime, ctx, dtype)
        self.ctx = self.runtime.ctx
        self.batch_size, self.dtype = batch_size, dtype
        self.repeats, self.warmup = repeats, warmup

    def _call(self, symbol, input_shape) -> Callable[[], None]:
        """One batch through ``symbol`` in the runtime, randomly initialised, on random input
        (and a random ``residual`` input when the symbol has one)."""
        names = [n for n in ("data", "residual") if n in symbol.list_arguments()]
        arg_shapes, _, _ = symbol.infer_shape(data=tuple(input_shape))
        shapes = dict(zip(symbol.list_arguments(), arg_shapes))
        return self.runtime.symbol_call(symbol, {n: tuple(shapes[n]) for n in names})

    def unit_call(self, spec: UnitSpec, in_width: int, out_width: int) -> Callable[[], None]:
        return self._call(spec.symbol(in_width, out_width),
                          spec.input_shape(self.batch_size, in_width))

    def network_call(self, symbol, image_shape: Sequence[int]) -> Callable[[], None]:
        return self._call(symbol, (self.batch_size,) + tuple(image_shape))

    def time(self, calls: Dict[str, Callable[[], None]], flush: bool = True, on_round=None):
        """Milliseconds per batch of each call, measured side by side by the timing rule
        (:mod:`prunenet.latency.timing`; at least ``repeats`` rounds, at most twice as many, until
        the fastest is reproduced within :data:`UNIT_TOLERANCE`): the fastest of the rounds (other processes only ever slow a
        call down; the fastest is the one they disturbed least), each timed call after the CPU
        caches were flushed unless ``flush`` is off (in a network a layer's weights come from
        memory; and so every unit is measured alike however many are measured together).
        Returns the milliseconds and the :class:`prunenet.latency.timing.Timings`."""
        from .timing import time_until_stable
        flusher = _cache_flusher() if flush and self.ctx.device_type == "cpu" else None
        try:
            timings = time_until_stable(calls, min_repeats=self.repeats,
                                        max_repeats=2 * self.repeats, tolerance=UNIT_TOLERANCE,
                                        warmup=self.warmup, before=flusher,
                                        on_round=on_round, statistic="min")
        except Exception as err:  # noqa: BLE001 (the runtime's own errors)
            raise self._cannot(err, "a layer") from None
        return {name: float(np.min(ts)) * 1e3 for name, ts in timings.seconds.items()}, timings

    def ratio(self, calls: Dict[str, Callable[[], None]], numerator: str, denominator: str,
              budget_s: float = 30.0) -> Dict[str, float]:
        """Two whole networks timed interleaved by the timing rule (within about ``budget_s``
        seconds, at least ``repeats`` rounds), each timed batch right after an untimed one of the
        same network (``warm_each``): the median of the per-round ratios numerator/denominator
        and its noise (:func:`prunenet.latency.timing.ratio`), and each one's median
        milliseconds."""
        from .timing import ratio, time_until_stable
        try:
            timings = time_until_stable(calls, min_repeats=self.repeats, warmup=self.warmup,
                                        budget_s=budget_s, warm_each=True)
        except Exception as err:  # noqa: BLE001 (the runtime's own errors)
            raise self._cannot(err, "the network") from None
        out = ratio(timings.seconds[numerator], timings.seconds[denominator])
        out.update({f"{k}_ms": float(np.median(v)) * 1e3 for k, v in timings.seconds.items()})
        return out


    def _cannot(self, err: BaseException, what: str) -> BaseException:
        """A one-line refusal for a runtime's failure to run ``what`` (else ``err`` itself)."""
        from .runtimes import runtime_label
        why = self.runtime.cannot(err)
        if why is None:
            return err
        return PrunenetError(f"{runtime_label(self.runtime.key)} cannot run {what} in "
                             f"{self.dtype} on {self.ctx}: {why}; measure another dtype, "
                             f"device or runtime")


_FLUSH_MAX = 64 << 20  # a VM may report its host's whole L3 (480 MB here): flushing that took
# ~0.4 s before every timed call, most of a table's build


def _cache_flusher() -> Callable[[], None]:
    """A function that evicts the CPU caches by writing a buffer twice the last-level cache (at
    most twice :data:`_FLUSH_MAX`; a unit's weights and activations are a few MB)."""
    size = 32 << 20
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:
            text = f.read().strip().upper()
        size = int(text.rstrip("KMG")) << {"K": 10, "M": 20, "G": 30}.get(text[-1:], 0)
    except (OSError, ValueError):
        pass
    size = min(size, _FLUSH_MAX)
    buf = np.zeros(2 * size // 4, dtype=np.float32)

    def flush() -> None:
        np.add(buf, 1.0, out=buf)
    return flush
