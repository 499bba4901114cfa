"""How networks are timed side by side, declared once: ``prunenet bench``, the throughput that
``zoo publish`` records, the reference networks ``plot tradeoff`` measures, an experiment's
``bench`` object and :func:`prunenet.latency.throughput.throughput` all default to these."""
from __future__ import annotations

from dataclasses import dataclass

from ..options import default_of, setting

__all__ = ["BenchConfig", "bench_default", "bench_settings"]


@dataclass
class BenchConfig:
    """The timing of a throughput measurement."""

    batch_size: int = setting(64, "images per timed batch (default {default})", least=1,
                              group="timing")
    repeats: int = setting(10, "timed batches per network at least; the median counts "
                               "(default {default})", least=1, group="timing")
    warmup: int = setting(3, "untimed batches first (default {default})", least=0,
                          group="timing")


def bench_default(name: str):
    """:class:`BenchConfig`'s default of ``name`` as it is now."""
    return default_of(BenchConfig, name)


def bench_settings(batch_size=None, repeats=None, warmup=None):
    """``(batch_size, repeats, warmup)``, each not given (None) as :class:`BenchConfig` has it;
    a value given, even one the measurement will refuse, is kept."""
    return tuple(bench_default(n) if v is None else v for n, v in (
        ("batch_size", batch_size), ("repeats", repeats), ("warmup", warmup)))
