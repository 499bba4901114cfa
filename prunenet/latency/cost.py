"""The latency cost model: the units' latencies interpolated over a width grid and calibrated
against the measured network; and selection refined by measuring what was chosen."""
from __future__ import annotations

import hashlib
import json
import math
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..core.costs import CostModel
from ..errors import PrunenetError
from ..core.graph import ChannelGraph, Layer
from ..core.select import Selection
from .table import LatencyTable
from .units import UnitSpec, network_key, unit_specs


_EPS = 1e-3  # a grid point is at least this much (relative) below its wider neighbours


def width_grid(full: int, step: int) -> List[int]:
    """Widths at which a dimension of full width ``full`` is measured, ascending: every ``step``
    channels up to 128 below ``full``... then steps of about an eighth of the width, all
    ``full`` minus a multiple of ``step``, down to the smallest positive one (and 1)."""
    points, p = [full], full
    while p - step >= 1:
        p -= max(step, (p // 8) // step * step) if p > 128 else step
        if p < 1:
            break
        points.append(p)
    if points[-1] > 1:
        points.append(1)
    return sorted(set(points))


def _bracket(grid: List[int], w: int) -> Tuple[int, int]:
    import bisect
    j = bisect.bisect_left(grid, w)
    if j < len(grid) and grid[j] == w:
        return w, w
    j = min(max(j, 1), len(grid) - 1)
    return grid[j - 1], grid[j]


class LatencyCost(CostModel):
    """Latency (ms per batch on the table's device) as the cost of a network at given widths.

    The sum U of the units' interpolated latencies is mapped to the network's latency by a
    piecewise-linear calibration N(U) through networks measured whole: the unpruned one, one
    with every prunable group near half width, and any added by :meth:`measure` (e.g. the pruned
    networks a search chose; see :func:`select_measured`). What lies between N and U is the
    remainder no unit covers (negative where a unit measured alone costs more than it does
    inside the network: its input arrives in another memory layout, its caches are cold)."""

    name = "latency"

    def __init__(self, graph: ChannelGraph, table: Optional[LatencyTable] = None,
                 round_to: int = 8, name: str = "") -> None:
        super().__init__(graph)
        if table is None:
            raise PrunenetError("the latency objective needs a latency table: pass "
                                "table=LatencyTable.open(path, gpus, batch_size, dtype)")
        self.table, self.round_to, self.model = table, max(1, int(round_to)), name
        self.specs = unit_specs(graph)
        self._grids = {layer.name: (self._grid(layer, True), self._grid(layer, False))
                       for layer in self.layers if layer.name in self.specs}
        self._values: Dict[Tuple[str, int, int], float] = {}  # grid point -> latency used
        self._memo: Dict[Tuple[str, int, int], float] = {}  # (layer, in, out) -> interpolated
        self._u_last: Tuple[bytes, float] = (b"", 0.0)
        self.key = network_key(graph)
        self._calibrate()

    # -- calibration ------------------------------------------------------------------------
    def half_widths(self) -> np.ndarray:
        """Every prunable group at the grid width nearest half its width."""
        from ..core.select import block_size
        widths = self.graph.full_widths()
        for g in self.graph.prunable_groups:
            grid = width_grid(g.width, block_size(g, self.round_to))
            widths[g.index] = min(grid, key=lambda w: (abs(w - g.width / 2), w))
        return widths

    def _unit_corners(self, widths: np.ndarray) -> List[Tuple[UnitSpec, int, int]]:
        out = []
        for idx, layer in enumerate(self.layers):
            if layer.name in self.specs:
                i, o = self._widths_of(idx, widths)
                out += [(self.specs[layer.name], a, b) for a, b in self._corners(layer, i, o)]
        return out

    def _widths_of(self, idx: int, widths: np.ndarray) -> Tuple[int, int]:
        return (int(sum(widths[g] for g in self._in_groups[idx])),
                int(widths[self._out_group[idx]]))

    def _calibrate(self) -> None:
        graph, key = self.graph, self.key
        full, half = graph.full_widths(), self.half_widths()
        shape = tuple(graph.input_shape[1:])
        self.table.ensure(self._unit_corners(full) + self._unit_corners(half),
                          {key: (graph.symbol, shape, {"name": self.model, "widths": "full"})})
        half_key = f"{key}:half"
        half_symbol = _resized_symbol(graph, half)
        if half_symbol is not None and not np.array_equal(full, half) and \
                self.table.network(half_key) is None:
            # side by side with the unpruned network, as a ratio: robust to a busy machine
            timer = self.table._timer(None)
            r = timer.ratio({"half": timer.network_call(half_symbol, shape),
                             "full": timer.network_call(graph.symbol, shape)}, "half", "full")
            self.table.progress(f"the network at half width: {r['ratio']:.3f} ±"
                                f"{r['noise'] * r['ratio']:.3f} of the unpruned", force=True)
            self.table.add_network(half_key, {
                "name": self.model, "widths": [int(w) for w in half], "input_shape": list(shape),
                "latency": round(r["ratio"] * float(self.table.network(key)["latency"]), 6),
                "latency_ms": round(r["half_ms"], 4), "fraction": round(r["ratio"], 6),
                "noise": round(r["noise"], 6), "rounds": r["repeats"]})
        self.ms = self.table.reference_ms  # ms per reference unit, fixed for this model's life
        self._u_full = self._units(full)
        self._n_full = float(self.table.network(key)["latency"])
        self.network_ms, self.units_ms = self.ms * self._n_full, self.ms * self._u_full
        record = self.table.network(f"{key}:half")
        self.half_ms = self.ms * float(record["latency"]) if record else float("nan")
        self.refit()

    def refit(self) -> None:
        """N(U) through every network of this architecture that the table has measured."""
        points = {}
        for k, record in self.table.networks.items():
            if k != self.key and not k.startswith(self.key + ":"):
                continue
            widths = self.graph.full_widths() if record.get("widths") == "full" else \
                np.asarray(record["widths"], dtype=np.int64)
            self.table.ensure(self._unit_corners(widths))
            points[self._units(widths)] = float(record["latency"])
        us = sorted(points)
        ns = _increasing([points[u] for u in us], us, 0.05 * self._n_full / self._u_full)
        self._calibration = list(zip(us, ns))
        self._u_last = (b"", 0.0)
        self.scale = self._slope(self._u_full)  # for reports: at full width,
        self.constant = self.network_ms - self.scale * self.units_ms  # N ≈ scale·U + constant

    @property
    def calibration(self) -> List[Tuple[float, float]]:
        """The networks measured whole: (Σ units, network) latency pairs in ms, ascending."""
        return [(self.ms * u, self.ms * n) for u, n in self._calibration]

    def _network(self, u: float) -> float:
        """N(U): the calibration, extended linearly beyond its end points."""
        pts = self._calibration
        if len(pts) == 1:
            return u * pts[0][1] / pts[0][0]
        import bisect
        j = min(max(bisect.bisect_left([p[0] for p in pts], u), 1), len(pts) - 1)
        (u0, n0), (u1, n1) = pts[j - 1], pts[j]
        return n0 + (n1 - n0) * (u - u0) / (u1 - u0)

    def _slope(self, u: float) -> float:
        return (self._network(u) - self._network(u * 0.99)) / (0.01 * u)

    def measure(self, widths: Sequence[int], name: str = "", refit: bool = True
                ) -> Dict[str, float]:
        """Measure the network at ``widths`` (per group) side by side with the unpruned one
        (interleaved, by the timing rule) and store it in the table at that ratio of the
        unpruned network's table latency; with ``refit``, add it to the calibration now (else
        at the next :meth:`refit`). Returns the measured ``fraction`` (the median of the
        per-round ratios), its ``noise`` (absolute, in the same units), the ``rounds`` timed,
        and both networks' median milliseconds in this measurement."""
        widths = np.asarray(widths, dtype=np.int64)
        key = f"{self.key}:{hashlib.sha1(widths.tobytes()).hexdigest()[:12]}"
        symbol = _resized_symbol(self.graph, widths)
        if symbol is None:
            raise PrunenetError("the pruned network cannot be built from the traced symbol (an "
                                "op fixes a channel count); measure it with prunenet bench")
        timer = self.table._timer(None)
        shape = tuple(self.graph.input_shape[1:])
        calls = {"pruned": timer.network_call(symbol, shape),
                 "full": timer.network_call(self.graph.symbol, shape)}
        r = timer.ratio(calls, "pruned", "full")
        self.table.add_network(key, {
            "name": name or self.model, "widths": [int(w) for w in widths],
            "input_shape": list(shape), "latency": round(r["ratio"] * self._n_full, 6),
            "latency_ms": round(r["pruned_ms"], 4), "fraction": round(r["ratio"], 6),
            "noise": round(r["noise"], 6), "rounds": r["repeats"]})
        if refit:
            self.refit()
        return {"fraction": r["ratio"], "noise": r["noise"] * r["ratio"],
                "rounds": r["repeats"], "pruned_ms": r["pruned_ms"], "full_ms": r["full_ms"]}

    def check(self, widths: Sequence[int], refit: bool = True) -> Dict[str, float]:
        """The latency at ``widths`` predicted, then measured side by side with the unpruned
        network (and, with ``refit``, added to the calibration at once): as fractions of the
        unpruned network's, the measurement's noise (absolute), and in ms of the unpruned
        network as measured then."""
        predicted = self.total(widths) / self.total()
        m = self.measure(widths, refit=refit)
        return {"predicted": predicted, "measured": m["fraction"], "noise": m["noise"],
                "rounds": m["rounds"], "full_ms": m["full_ms"],
                "predicted_ms": predicted * m["full_ms"],
                "measured_ms": m["fraction"] * m["full_ms"]}

    def untrusted(self, fraction: float) -> str:
        """Why a cost fraction of ``fraction`` (>= 1 at the narrowest widths) cannot be
        believed, and what to do: one line."""
        seen = max((v for v in self.table.noise[-20:] if v is not None), default=float("nan"))
        return (f"the latency table's timings are too noisy to prune by: they put the network "
                f"at every group's narrowest width at {fraction:.2f} of the unpruned latency "
                f"(timing batches were uncertain by up to ±{seen:.0%}); run when the machine "
                f"is less busy, delete {self.table.path or 'the table'} to measure it again, or "
                f"prune with --objective flops")

    def _units(self, widths: np.ndarray) -> float:
        """U: the sum of the units' interpolated latencies (reference units)."""
        return sum(self._raw(layer, *self._widths_of(i, widths))
                   for i, layer in enumerate(self.layers) if layer.name in self.specs)

    def _u(self, widths: np.ndarray) -> float:
        key = np.asarray(widths, dtype=np.int64).tobytes()
        if self._u_last[0] != key:
            self._u_last = (key, self._units(np.asarray(widths)))
        return self._u_last[1]

    # -- the cost model ---------------------------------------------------------------------
    def total(self, widths: Sequence[int] | None = None) -> float:
        w = self.graph.full_widths() if widths is None else np.asarray(widths)
        self._prefetch([w], range(len(self.layers)))
        return self.ms * float(self._network(self._u(w)))

    def saving(self, widths: Sequence[int], group: int, k: int = 1) -> float:
        w = np.asarray(widths)
        fewer = w.copy()
        fewer[group] -= k
        self._prefetch([w, fewer], self._touching[group])
        self._prefetch([w], range(len(self.layers)))
        u = self._u(w)
        delta = sum(self._raw(self.layers[i], *self._widths_of(i, w))
                    - self._raw(self.layers[i], *self._widths_of(i, fewer))
                    for i in self._touching[group] if self.layers[i].name in self.specs)
        return self.ms * float(self._network(u) - self._network(u - delta))

    def marginal(self, widths: Sequence[int] | None = None) -> np.ndarray:
        w = self.graph.full_widths() if widths is None else np.asarray(widths)
        sets, layers = [w], set(range(len(self.layers)))
        for g in self.graph.prunable_groups:
            if w[g.index] > 0:
                fewer = w.copy()
                fewer[g.index] -= 1
                sets.append(fewer)
        self._prefetch(sets, sorted(layers))
        return super().marginal(w)

    def _prefetch(self, width_sets: Sequence[np.ndarray], layer_ids: Iterable[int]) -> None:
        """Measure in one batch every grid point that these layers at these widths need."""
        points = []
        for idx in layer_ids:
            layer = self.layers[idx]
            if layer.name not in self.specs:
                continue
            for w in width_sets:
                i, o = self._widths_of(idx, w)
                if (layer.name, i, o) not in self._memo:
                    spec = self.specs[layer.name]
                    points += [(spec, a, b) for a, b in self._corners(layer, i, o)]
        if points:
            self.table.ensure(points)

    def layer_cost(self, layer: Layer, in_width: int, out_width: int) -> float:
        """The unit's share of the latency at full width's calibration slope (the totals and
        savings use the calibration itself)."""
        if layer.name not in self.specs:
            return 0.0  # part of the remainder
        return self.ms * self.scale * self._raw(layer, int(in_width), int(out_width))

    def breakdown(self, widths: Sequence[int] | None = None) -> Dict[str, float]:
        """Predicted milliseconds of every unit at ``widths``, and the remainder."""
        w = self.graph.full_widths() if widths is None else np.asarray(widths)
        out = {layer.name: self._layer_total(i, w) for i, layer in enumerate(self.layers)
               if layer.name in self.specs}
        out["remainder"] = self.total(w) - sum(out.values())
        return out

    # -- lookups ----------------------------------------------------------------------------
    def _grid(self, layer: Layer, is_input: bool) -> List[int]:
        graph = self.graph
        groups = [graph.group_of(s) for s in layer.in_layout] if is_input else \
            [graph.out_group(layer.name)]
        full = layer.in_channels if is_input else layer.out_channels
        if not any(g.prunable for g in groups):
            return [full]
        step = self.round_to
        if layer.groups > 1 and not layer.depthwise:
            step = int(np.lcm(step, layer.groups))
        return width_grid(full, step)

    def _raw(self, layer: Layer, i: int, o: int) -> float:
        key = (layer.name, i, o)
        value = self._memo.get(key)
        if value is None:
            value = self._memo[key] = self._interpolate(layer, i, o)
        return value

    def _corners(self, layer: Layer, i: int, o: int) -> List[Tuple[int, int]]:
        """The grid points whose latencies give the unit's at widths (i, o)."""
        in_grid, out_grid = self._grids[layer.name]
        if self.specs[layer.name].groups == 0:  # depthwise: one width, along the diagonal
            lo, hi = _bracket(out_grid, o)
            return list(dict.fromkeys([(lo, lo), (hi, hi)]))
        (i0, i1), (o0, o1) = _bracket(in_grid, i), _bracket(out_grid, o)
        return list(dict.fromkeys([(i0, o0), (i0, o1), (i1, o0), (i1, o1)]))

    def _interpolate(self, layer: Layer, i: int, o: int) -> float:
        spec = self.specs[layer.name]
        corners = self._corners(layer, i, o)
        self.table.ensure((spec, a, b) for a, b in corners)
        for a, b in sorted(corners, key=lambda c: (-c[0], -c[1])):  # wider ones first
            self._fix(layer, spec, a, b)
        in_grid, out_grid = self._grids[layer.name]
        if spec.groups == 0:
            lo, hi = _bracket(out_grid, o)
            return _lerp(o, lo, hi, self._value(layer, lo, lo), self._value(layer, hi, hi))
        (i0, i1), (o0, o1) = _bracket(in_grid, i), _bracket(out_grid, o)
        low = _lerp(i, i0, i1, self._value(layer, i0, o0), self._value(layer, i1, o0))
        high = _lerp(i, i0, i1, self._value(layer, i0, o1), self._value(layer, i1, o1))
        return _lerp(o, o0, o1, low, high)

    def _fix(self, layer: Layer, spec: UnitSpec, i: int, o: int) -> None:
        """Fix the value used at a grid point, once: the measured one, kept below the nearest
        value already fixed at a wider point and above the nearest at a narrower one, along
        each dimension, so that costs stay positive where timing noise would invert a small
        difference."""
        key = (layer.name, i, o)
        if key in self._values:
            return
        value = self.table.get(spec, i, o)
        for narrower, wider in self._nearest_fixed(layer.name, spec, i, o):
            if narrower is not None:
                value = max(value, self._values[narrower] * (1 + _EPS))
            if wider is not None:
                value = min(value, self._values[wider] * (1 - _EPS))
        self._values[key] = value

    def _nearest_fixed(self, name: str, spec: UnitSpec, i: int, o: int) -> List[tuple]:
        """Per dimension, the nearest narrower and the nearest wider grid points whose values
        are fixed already (None where there is none)."""
        in_grid, out_grid = self._grids[name]

        def scan(grid: List[int], w: int, make) -> tuple:
            k = grid.index(w)
            down = next((make(p) for p in reversed(grid[:k]) if make(p) in self._values), None)
            up = next((make(p) for p in grid[k + 1:] if make(p) in self._values), None)
            return down, up

        if spec.groups == 0:
            return [scan(out_grid, o, lambda p: (name, p, p))]
        return [scan(in_grid, i, lambda p: (name, p, o)), scan(out_grid, o, lambda p: (name, i, p))]

    def _value(self, layer: Layer, i: int, o: int) -> float:
        return self._values[(layer.name, i, o)]


NOISE_LIMIT = 0.1  # a measured latency fraction uncertain by more (relative) is not trusted


def select_measured(select: Callable[[float], Selection], cost: LatencyCost, target: float,
                    rounds: int = 3) -> Tuple[Selection, List[Dict[str, float]]]:
    """``select(target)`` (a method's selection at a latency target), checked by measuring the
    pruned network side by side with the unpruned one, and refined: while the measured fraction
    is not within its noise of the target — at most the target plus the noise, and no further
    below than the noise plus the selection's granularity — the selection is made again at a
    target corrected by the miss (a secant through the rounds' predicted and measured fractions,
    the model held fixed), for at most ``rounds`` measurements; they all join the calibration
    afterwards (and the table, for later runs).

    Returns the selection, which is the last measured one at most the target plus its noise
    (else the last one measured), and per round the latency predicted before measuring, the
    measured one and its noise (fractions of the unpruned network's, and in ms) and whether
    it met the target (``met``), the chosen round last. A measurement too noisy to tell (noise
    above :data:`NOISE_LIMIT` of the fraction) raises :class:`NoisyMeasurementError`."""
    from ..core.select import InfeasibleTargetError
    from ..core.surgery import widths_of
    progress = cost.table.progress
    sel, log, goal, best = select(target), [], target, None
    try:
        for i in range(rounds):
            r = cost.check(widths_of(sel.keep), refit=False)
            r.update(round=i + 1, met=r["measured"] <= target + r["noise"], target_used=goal)
            log.append(r)
            progress(f"check {i + 1}: predicted {r['predicted']:.3f}, measured "
                     f"{r['measured']:.3f} ±{r['noise']:.3f} of the unpruned latency (target "
                     f"{target})", force=True)
            if r["noise"] > NOISE_LIMIT * r["measured"]:
                raise NoisyMeasurementError(target, r)
            if r["met"]:
                best = (sel, i)
                if not far_below(target, r["measured"], r["noise"], sel.granularity):
                    break
            if i == rounds - 1:
                break
            goal = _corrected(log, target)
            try:
                again = select(goal)
            except InfeasibleTargetError as err:  # as far as min_width allows, then
                goal = math.ceil(err.smallest * 1e4) / 1e4 + 1e-4
                try:
                    again = select(goal)
                except InfeasibleTargetError:
                    break
            if _same(again, sel):
                break
            sel = again
    finally:
        cost.refit()
    if best is not None and best[0] is not sel:  # the last one measured overshot: keep the best
        sel = best[0]
        log.append(log.pop(best[1]))
    return sel, log


def far_below(target: float, measured: float, noise: float, granularity: float) -> bool:
    """Whether a measured latency fraction is further below ``target`` than its ``noise`` plus
    the selection's ``granularity`` (its largest block, as a fraction): a selection that could
    have kept another block and still met the target."""
    return measured < target - noise - granularity


def _corrected(log: List[Dict[str, float]], target: float) -> float:
    """The target to select at next: the predicted fraction expected to measure ``target``,
    by a secant through the last two rounds (predicted, measured), or by their ratio."""
    last = log[-1]
    goal = last["predicted"] * target / last["measured"]
    if len(log) > 1:
        prev = log[-2]
        dp, dm = last["predicted"] - prev["predicted"], last["measured"] - prev["measured"]
        if dp * dm > 0 and abs(dm) > last["noise"] + prev["noise"]:
            goal = last["predicted"] + (target - last["measured"]) * dp / dm
    return float(min(1.0, max(goal, 1e-3)))


def _same(a: Selection, b: Selection) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.keep, b.keep))


class NoisyMeasurementError(PrunenetError):
    """The machine is too noisy for the measured latency to be believed."""

    def __init__(self, target: float, check: Dict[str, float]) -> None:
        self.check = check
        super().__init__(
            f"too noisy to prune for latency now: the pruned network measured "
            f"{check['measured']:.3f} ±{check['noise']:.3f} of the unpruned latency "
            f"(target {target}, {check['rounds']} interleaved rounds; ±"
            f"{NOISE_LIMIT:.0%} of it at most is trusted); run when the machine is less busy, "
            f"or prune with --objective flops")


def _resized_symbol(graph: ChannelGraph, widths: np.ndarray):
    """``graph``'s symbol with every layer's output width set from ``widths`` (per group), or
    None when MXNet cannot infer its shapes (an op fixes a channel count)."""
    import mxnet as mx
    doc = json.loads(graph.symbol.tojson())
    for node in doc["nodes"]:
        if node["op"] == "null":
            node.get("attrs", {}).pop("__shape__", None)  # the full widths' parameter shapes
        layer = graph.layers.get(node["name"])
        if layer is not None:
            width = int(widths[graph.space_group[layer.out_space]])
            attrs = node.setdefault("attrs", {})
            attrs["num_filter" if node["op"] == "Convolution" else "num_hidden"] = str(width)
            if layer.depthwise:
                attrs["num_group"] = str(width)
    symbol = mx.sym.load_json(json.dumps(doc))
    try:
        symbol.infer_shape(data=graph.input_shape)
    except mx.base.MXNetError:
        return None
    return symbol


def _increasing(values: List[float], at: List[float], least_slope: float) -> List[float]:
    """``values`` made increasing in ``at`` (pooling adjacent violators, then at least
    ``least_slope``): a network whose units are faster is not slower."""
    blocks = []  # [sum, count]
    for v in values:
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    out = [b[0] / b[1] for b in blocks for _ in range(b[1])]
    for j in range(1, len(out)):
        out[j] = max(out[j], out[j - 1] + least_slope * (at[j] - at[j - 1]))
    return out


def _lerp(x: int, x0: int, x1: int, y0: float, y1: float) -> float:
    if x1 == x0:
        return y0
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
