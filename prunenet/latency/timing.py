"""Timings that know how noisy they are: the one rule every measurement in prunenet follows.

Calls are timed interleaved — one of each in turn, round after round — so that a machine busier
for a while slows them alike. After ``min_repeats`` rounds, timing stops as soon as the median of
every call is known to within ``tolerance`` of itself, else after ``max_repeats`` rounds (or
``budget_s`` seconds). The uncertainty of a median of n timings is the half-width of its
box-plot notch, 1.57·IQR/√n (about a 95 % interval for the median); its *noise* here is that
half-width over the median. A timing whose noise is still above the tolerance when it has to stop
is *noisy*: its spread is recorded and reported in one line, and a caller that needs the
figure (the latency objective's check) refuses with that line rather than trusting it.

Where the fastest timing is the figure (a latency-table entry: other processes only ever slow a
call down), the noise is that of the minimum instead: how far the second fastest lies above the
fastest, relative to it — the fastest has been approached twice.

A ratio of two calls (pruned over unpruned) is taken round by round, on the interleaved pairs,
so that what slowed both cancels; its noise is the notch of those per-round ratios.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["Timings", "time_until_stable", "noise", "min_noise", "spread", "ratio", "Progress",
           "pct",
           "TOLERANCE", "MAX_REPEATS", "NOTCH"]

NOTCH = 1.57  # half-width of a box-plot notch in IQRs at one timing (÷ √n for n)
TOLERANCE = 0.02  # the noise a median may keep
MAX_REPEATS = 30  # the most rounds any timing takes


def pct(noise: float) -> str:
    """A noise as ``±1.2%`` (or ``(not yet known)`` before it can be told)."""
    return f"±{noise:.1%}" if math.isfinite(noise) else "(not yet known)"


def spread(seconds: Sequence[float]) -> float:
    """IQR over median of the timings (0 for fewer than two)."""
    ts = np.asarray(seconds, dtype=np.float64)
    if ts.size < 2:
        return 0.0
    q25, q50, q75 = np.percentile(ts, [25, 50, 75])
    return float((q75 - q25) / q50) if q50 > 0 else math.inf


def noise(seconds: Sequence[float]) -> float:
    """Relative uncertainty of the median of the timings: NOTCH·IQR/(√n·median); infinite for
    fewer than three (no spread can be told from two)."""
    n = len(seconds)
    return math.inf if n < 3 else NOTCH * spread(seconds) / math.sqrt(n)


def min_noise(seconds: Sequence[float]) -> float:
    """Relative uncertainty of the fastest of the timings: (second fastest − fastest)/fastest;
    infinite for fewer than three."""
    if len(seconds) < 3:
        return math.inf
    a, b = np.partition(np.asarray(seconds, dtype=np.float64), 1)[:2]
    return float((b - a) / a) if a > 0 else math.inf


NOISES = {"median": noise, "min": min_noise}


def ratio(a: Sequence[float], b: Sequence[float]) -> Dict[str, float]:
    """The median of the per-round ratios a[i]/b[i] of two interleaved timings, and its noise
    (relative, as :func:`noise`) and spread."""
    r = np.asarray(a, dtype=np.float64) / np.asarray(b, dtype=np.float64)
    return {"ratio": float(np.median(r)), "noise": noise(r), "spread": spread(r),
            "repeats": int(r.size)}


@dataclass
class Timings:
    """Seconds per call of each timed entry, and how the timing ended."""

    seconds: Dict[str, List[float]]
    tolerance: float
    elapsed_s: float = 0.0
    noisy: Dict[str, float] = field(default_factory=dict)  # name -> noise, where above tolerance
    statistic: str = "median"  # the figure whose noise counts: "median" or "min"

    @property
    def repeats(self) -> int:
        return min((len(v) for v in self.seconds.values()), default=0)

    def noise(self, name: str) -> float:
        return NOISES[self.statistic](self.seconds[name])

    @property
    def worst(self) -> float:
        """The largest noise of any entry."""
        return max((self.noise(k) for k in self.seconds), default=0.0)

    def describe(self) -> str:
        """One line: the spread seen, for a message."""
        if not self.noisy:
            return (f"medians within ±{self.worst:.1%} after {self.repeats} interleaved "
                    f"rounds")
        name, worst = max(self.noisy.items(), key=lambda kv: kv[1])
        return (f"after {self.repeats} interleaved rounds ({self.elapsed_s:.0f} s) the "
                f"{'fastest' if self.statistic == 'min' else 'median'} of "
                f"{len(self.noisy)} of {len(self.seconds)} timing(s) was still uncertain by up "
                f"to ±{worst:.1%} (timings spread {spread(self.seconds[name]):.0%} IQR/median; "
                f"±{self.tolerance:.0%} needed)")


def time_until_stable(calls: Dict[str, Callable[[], None]], min_repeats: int = 5,
                      max_repeats: int = MAX_REPEATS, tolerance: float = TOLERANCE,
                      warmup: int = 2, budget_s: Optional[float] = None,
                      before: Optional[Callable[[], None]] = None,
                      clock: Callable[[], float] = time.perf_counter,
                      on_round: Optional[Callable[["Timings"], None]] = None,
                      statistic: str = "median", warm_each: bool = False) -> Timings:
    """Time ``calls`` (name -> a function running and waiting for one batch) interleaved by the
    rule of this module: ``warmup`` untimed calls each, at least ``min_repeats`` rounds, then
    rounds until every median's (``statistic="min"``: fastest's) noise is at most ``tolerance``
    or ``max_repeats`` rounds (or ``budget_s`` seconds, counted from the first timed round) have
    run. ``before`` runs untimed before every timed call (e.g. to flush the caches); with
    ``warm_each``, an untimed call of the same function does too, after ``before`` (a network
    timed as it runs deployed, right after its own previous batch: its weights in the caches,
    its threads awake — not after another network's); ``on_round`` after every round."""
    if min_repeats < 1 or max_repeats < min_repeats:
        raise ValueError(f"repeats: need 1 <= min_repeats ({min_repeats}) <= max_repeats "
                         f"({max_repeats})")
    if statistic not in NOISES:
        raise ValueError(f"statistic {statistic!r}: one of {', '.join(NOISES)}")
    sync = _synchronizer()
    for call in calls.values():
        for _ in range(warmup):
            call()
    result = Timings({name: [] for name in calls}, tolerance, statistic=statistic)
    start = clock()
    for done in range(1, max_repeats + 1):
        for name, call in calls.items():
            if before is not None:
                before()
            if warm_each:
                call()
            sync()
            t0 = clock()
            call()
            result.seconds[name].append(clock() - t0)
        result.elapsed_s = clock() - start
        if on_round is not None:
            on_round(result)
        if done < min_repeats:
            continue
        if result.worst <= tolerance:
            break
        if budget_s is not None and result.elapsed_s >= budget_s:
            break
    result.noisy = {k: result.noise(k) for k in result.seconds if result.noise(k) > tolerance}
    return result


def _synchronizer() -> Callable[[], None]:
    """MXNet's waitall when MXNet is loaded (pending work is not the next call's), else nothing."""
    mx = sys.modules.get("mxnet")
    return mx.nd.waitall if mx is not None else (lambda: None)


class Progress:
    """A line per stage on stderr, once a stage has run for ``after_s`` seconds and then at most
    every ``every_s`` seconds: what is being measured, how far, the noise so far."""

    def __init__(self, what: str, after_s: float = 10.0, every_s: float = 10.0,
                 stream=None, clock: Callable[[], float] = time.time) -> None:
        self.what, self.after_s, self.every_s = what, after_s, every_s
        self.stream, self.clock = stream, clock
        self.start = clock()
        self._last = -math.inf

    def elapsed(self) -> float:
        return self.clock() - self.start

    def __call__(self, message: str, force: bool = False) -> None:
        now = self.elapsed()
        if force and now < self.after_s:
            return
        if not force and (now < self.after_s or now - self._last < self.every_s):
            return
        self._last = now
        print(f"{self.what}: {message} ({now:.0f} s)", file=self.stream or sys.stderr,
              flush=True)
