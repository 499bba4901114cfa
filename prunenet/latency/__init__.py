"""Latency as a pruning objective: per-layer latency tables measured on a device, and the cost
model that looks them up.

A *unit* is one convolution (or dense) layer together with its BatchNorm and activation, and with
the pooling and residual addition that only it feeds (their cost scales with its width too). Its
latency (ms per batch) is a function of its input and output widths at the layer's own
feature-map size, for one device, batch size and dtype. A :class:`LatencyTable` holds such
measurements, keyed by what the unit computes (kernel, stride, padding, feature-map size, ...)
and its widths, never by a layer's name, so that alike layers share them; and per network the
measured latency of the whole network, at full width and with every prunable group near half
width. It is cached as one JSON file per device, batch size and dtype (and, on the CPU, thread
count). Every timing follows :mod:`prunenet.latency.timing`'s rule (interleaved rounds until the medians
are known, the spread recorded); a unit's entry is the fastest of its rounds after flushing the
CPU caches, and every batch of timings is scaled by a reference unit timed with it, so entries
measured minutes apart on a busy machine stay comparable.

:class:`LatencyCost` is the cost model. A layer's cost is its unit's latency, interpolated
bilinearly between widths on a grid (every ``round_to`` channels up to 128, then steps of about an
eighth of the width) and measured lazily the first time the search needs a grid point. Bilinear
interpolation is exact for a + b·in + c·out + d·in·out (a convolution's arithmetic), and it turns
the finite differences the search takes into slopes over a grid cell, well above the timing
noise of a single 8-channel step. The sum of the units is calibrated against the two measured
networks: ``total = scale·Σ units + constant``, the constant being the remainder no unit covers.

:class:`UnitTimer` does the measuring; the table calls it only for what it lacks, and a table
without a timer (``measure=False``) answers from its file alone.

Four rooms: :mod:`.units` (what a unit is), :mod:`.timer` (timing them here), :mod:`.table` (the
cached measurements), :mod:`.cost` (the cost model and the measured check of a selection).
Importing this package registers the ``latency`` objective with :mod:`prunenet.core.costs`.
"""
from ..core.costs import register_objective
from .cost import NOISE_LIMIT, LatencyCost, NoisyMeasurementError, select_measured, width_grid
from .table import FORMAT, LatencyTable, default_table_path
from .timer import UnitTimer
from .units import UnitSpec, network_key, unit_specs

__all__ = ["UnitSpec", "unit_specs", "network_key", "UnitTimer", "LatencyTable", "LatencyCost",
           "select_measured", "NoisyMeasurementError", "NOISE_LIMIT", "default_table_path",
           "width_grid", "FORMAT"]

register_objective("latency", LatencyCost)
