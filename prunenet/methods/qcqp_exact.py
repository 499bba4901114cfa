"""``qcqp``: the discrete-QCQP channel selection solved exactly, as a mixed-integer linear program.

The problem is :mod:`prunenet.methods.qcqp`'s: keep the most kernel importance
``I(keep) = Σ_l keep_out(l)ᵀ E_l keep_in(l)`` with ``cost(widths) ≤ α · cost(full)``, both
bilinear in neighbouring groups' keep masks. The authors' released code
(``utils/exp_2D_cplex_op.py`` in github.com/snu-mllab/Optimal-channel-selection-with-discrete-QCQP)
hands the quadratic program to CPLEX; we linearise it and give it to HiGHS
(``scipy.optimize.milp``). No approximation enters: with ``u`` the 0/1 keep variables,

- objective: for each layer and each kept-able output unit ``a``, a variable ``v_a`` with
  ``v_a ≤ M_a u_a`` and ``v_a ≤ Σ_b E[a, b] u_b`` (``E ≥ 0`` and we maximise, so at the optimum
  ``v_a = u_a Σ_b E[a, b] u_b`` exactly);
- cost: every layer's cost is fitted as ``a·in·out + b·out + c·in + d`` in its widths (and checked
  at a further point: flops and params are bilinear, latency is not and is refused); each product
  ``u_b · w_g`` of a keep variable and a width is a variable ``t ≥ w_g − W_g (1 − u_b)``, ``t ≥ 0``
  (the cost is bounded above, so the solver cannot profit from ``t`` exceeding the product);
- widths: a group keeps ``width − size·n`` channels (``n`` removed blocks) and at least
  ``min_width``, as for every other method.

*Units.* When the problem is small (:data:`CHANNEL_LEVEL_PAIRS` kernel pairs at most and no
grouped convolutions) every channel has its own variable: the exact channel-level problem. Above
that, each group's channels are first grouped into fixed blocks of ``round_to`` — the greedy's
removed channels, then the kept ones, each in order of their importance at full width (the
highest ``width mod round_to`` always stay) — and the MILP chooses which blocks stay. The greedy
solution (:mod:`prunenet.methods.qcqp`, ``qcqp-greedy``) is feasible at both levels; the MILP is
constrained to do at least as well, and, stopped by its time limit before finding better, the
greedy's choice is returned. A final refill adds back any removed block that still fits.

*Residual streams.* Channels a residual stream ties together share one keep mask, so a stream
channel leaves all its producers at once. The released code instead keeps a mask per producer
and an OR over them for the sum (a producer may lose a channel the stream keeps); that is
finer-grained, but leaves no narrower tensor to cut, so it is not what surgery can realise.

``Selection.solver`` records what was solved: the level, HiGHS's status, whether the optimum was
proven, the relative gap to HiGHS's bound, and the greedy's objective.
"""
from __future__ import annotations

import os
import time
from typing import Dict, List, Tuple

import numpy as np

from ..core.costs import CostModel
from ..errors import PrunenetError
from ..core.graph import ChannelGraph
from ..core.select import Selection, block_size, _floor
from ..core.surgery import full_keep, widths_of
from . import qcqp
from ..core.registry import register

__all__ = ["CHANNEL_LEVEL_PAIRS", "select_channels", "bilinear_coefficients"]

CHANNEL_LEVEL_PAIRS = 20000  # at most this many kernel pairs: one variable per channel
_FIXED = -1


def bilinear_coefficients(cost: CostModel) -> Tuple[np.ndarray, np.ndarray]:
    """Per layer ``(a, b, c, d)`` with ``layer_cost(in, out) = a·in·out + b·out + c·in + d``, and
    per norm ``(p, q)`` with ``norm_cost(w) = p·w + q``; refuses a cost that is not of that form."""
    graph, layers = cost.graph, []
    full = graph.full_widths()
    for i, layer in enumerate(cost.layers):
        big_in = max(int(sum(full[g] for g in cost._in_groups[i])), 2)
        big_out = max(int(full[cost._out_group[i]]), 2)
        f = lambda x, y: cost.layer_cost(layer, x, y)  # noqa: E731
        d = f(0, 0)
        c = (f(big_in, 0) - d) / big_in
        b = (f(0, big_out) - d) / big_out
        a = (f(big_in, big_out) - d - b * big_out - c * big_in) / (big_in * big_out)
        x, y = max(big_in // 3, 1), max(big_out // 2, 1)
        if not np.isclose(f(x, y), a * x * y + b * y + c * x + d, rtol=1e-9, atol=1e-9):
            raise PrunenetError(f"method qcqp solves an exact program that needs a cost bilinear "
                                f"in the widths (flops or params); the {cost.name} cost of "
                                f"{layer.name} is not: use qcqp-greedy for it")
        layers.append((a, b, c, d))
    q = cost.norm_cost(0)
    p = cost.norm_cost(64) / 64 - q / 64
    if not np.isclose(cost.norm_cost(17), 17 * p + q, rtol=1e-9, atol=1e-9):
        raise PrunenetError(f"method qcqp needs a norm cost linear in the width; the {cost.name} "
                            f"cost is not: use qcqp-greedy for it")
    return np.array(layers, dtype=np.float64).reshape(-1, 4), np.array([p, q])


class _Units:
    """Each group's channels as 0/1 variables (single channels or fixed blocks) plus the
    channels that always stay."""

    def __init__(self, graph: ChannelGraph, greedy_keep: List[np.ndarray],
                 order_values: List[np.ndarray], round_to: int, channel_level: bool) -> None:
        self.channels: List[np.ndarray] = []  # per variable, its channels
        self.group_of: List[int] = []
        self.unit_of: List[np.ndarray] = []  # per group, per channel: its variable or _FIXED
        self.size: Dict[int, int] = {}
        for g in graph.groups:
            unit = np.full(g.width, _FIXED, dtype=np.int64)
            if g.prunable:
                size = block_size(g, round_to)
                self.size[g.index] = size
                if channel_level:
                    blocks = [np.array([c]) for c in range(g.width)]
                else:
                    blocks = self._blocks(greedy_keep[g.index], order_values[g.index], g.segments,
                                          size // g.segments)
                for block in blocks:
                    unit[block] = len(self.channels)
                    self.channels.append(block)
                    self.group_of.append(g.index)
            self.unit_of.append(unit)
        self.count = len(self.channels)

    @staticmethod
    def _blocks(keep: np.ndarray, values: np.ndarray, segments: int, per: int) -> List[np.ndarray]:
        part = keep.size // segments
        chunks = []
        for j in range(segments):
            idx = np.arange(j * part, (j + 1) * part)
            removed, kept = idx[~keep[idx]], idx[keep[idx]]
            ordered = np.concatenate([removed[np.argsort(values[removed], kind="stable")],
                                      kept[np.argsort(values[kept], kind="stable")]])
            chunks.append([ordered[k * per:(k + 1) * per] for k in range(part // per)])
        return [np.concatenate([seg[k] for seg in chunks]) for k in range(len(chunks[0]))]

    def keep(self, graph: ChannelGraph, x: np.ndarray) -> List[np.ndarray]:
        out = [np.ones(g.width, dtype=bool) for g in graph.groups]
        for k, channels in enumerate(self.channels):
            out[self.group_of[k]][channels] = x[k] > 0.5
        return out

    def values(self, keep: List[np.ndarray]) -> np.ndarray:
        return np.array([float(keep[g][c[0]]) for g, c in zip(self.group_of, self.channels)])


class _Program:
    """Rows of ``lb ≤ A x ≤ ub`` and bounds, built a row at a time."""

    def __init__(self) -> None:
        self.rows, self.cols, self.vals, self.lb, self.ub = [], [], [], [], []
        self.lo, self.hi, self.integer, self.c = [], [], [], []

    def var(self, lo: float, hi: float, integer: bool = False, c: float = 0.0) -> int:
        self.lo.append(lo), self.hi.append(hi), self.integer.append(int(integer))
        self.c.append(c)
        return len(self.c) - 1

    def row(self, cols, vals, lb: float, ub: float) -> None:
        r = len(self.lb)
        self.rows.extend([r] * len(cols)), self.cols.extend(cols), self.vals.extend(vals)
        self.lb.append(lb), self.ub.append(ub)

    def solve(self, time_limit: float, start: Dict[int, float]) -> dict:
        """Minimise ``c·x`` with HiGHS from the partial solution ``start`` (column: value)."""
        import highspy
        from scipy.sparse import csc_matrix
        a = csc_matrix((self.vals, (self.rows, self.cols)), shape=(len(self.lb), len(self.c)))
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = len(self.c), len(self.lb)
        lp.col_cost_, lp.col_lower_, lp.col_upper_ = self.c, self.lo, self.hi
        lp.row_lower_, lp.row_upper_ = self.lb, self.ub
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_, lp.a_matrix_.index_ = a.indptr, a.indices
        lp.a_matrix_.value_ = a.data
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = len(self.c), len(self.lb)
        lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                           for i in self.integer]
        highs = highspy.Highs()
        for option, value in (("output_flag", bool(os.environ.get("PRUNENET_QCQP_LOG"))),
                              ("time_limit", float(time_limit)), ("threads", 1),
                              ("random_seed", 0), ("mip_rel_gap", 1e-9)):
            highs.setOptionValue(option, value)
        highs.passModel(lp)
        cols = sorted(start)
        highs.setSolution(len(cols), np.array(cols, dtype=np.int32),
                          np.array([start[c] for c in cols], dtype=np.float64))
        highs.run()
        info, status = highs.getInfo(), highs.getModelStatus()
        solution = highs.getSolution()
        x = np.asarray(solution.col_value) if solution.value_valid else None
        return {"status": highs.modelStatusToString(status),
                "optimal": status == highspy.HighsModelStatus.kOptimal, "x": x,
                "dual_bound": float(info.mip_dual_bound), "nodes": int(info.mip_node_count)}


def _aggregate(e: np.ndarray, rows: np.ndarray, cols: np.ndarray):
    """``e`` summed into (row unit, column unit) cells; ``_FIXED`` becomes the last index."""
    from scipy.sparse import csr_matrix
    r_ids, r_inv = np.unique(rows, return_inverse=True)
    c_ids, c_inv = np.unique(cols, return_inverse=True)
    r = csr_matrix((np.ones(rows.size), (r_inv, np.arange(rows.size))),
                   shape=(r_ids.size, rows.size))
    c = csr_matrix((np.ones(cols.size), (np.arange(cols.size), c_inv)),
                   shape=(cols.size, c_ids.size))
    return r_ids, c_ids, np.asarray(r @ (c.T @ e.T).T)


def _build(graph: ChannelGraph, cost: CostModel, energy: Dict[str, np.ndarray], units: _Units,
           goal: float, min_width: int, channel_level: bool):
    prog = _Program()
    u = [prog.var(0, 1, True) for _ in range(units.count)]
    constant = 0.0
    # widths: w_g = fixed_g + Σ size_k u_k, removed = size · n_g, kept ≥ floor
    width_var: Dict[int, int] = {}
    full = graph.full_widths()
    for g in graph.prunable_groups:
        members = np.unique(units.unit_of[g.index][units.unit_of[g.index] != _FIXED])
        fixed = int((units.unit_of[g.index] == _FIXED).sum())
        w = prog.var(0, g.width)
        width_var[g.index] = w
        prog.row([w] + [u[k] for k in members], [1.0] + [-float(units.channels[k].size)
                                                         for k in members], fixed, fixed)
        prog.row([w], [1.0], _floor(g, min_width), g.width)
        if channel_level:
            size = units.size[g.index]
            n = prog.var(0, g.width // size, True)
            prog.row([w, n], [1.0, float(size)], g.width, g.width)

    def width_terms(gi: int) -> Tuple[List[int], List[float], float]:
        """w_g as (columns, coefficients, constant)."""
        if gi in width_var:
            return [width_var[gi]], [1.0], 0.0
        return [], [], float(full[gi])

    # objective (minimise −I)
    for name in graph.layers:
        layer = graph.layers[name]
        rows = units.unit_of[graph.space_group[layer.out_space]]
        cols = np.concatenate([units.unit_of[graph.space_group[s]] for s in layer.in_layout])
        r_ids, c_ids, agg = _aggregate(energy[name], rows, cols)
        for i, ra in enumerate(r_ids):
            line = {int(cb): agg[i, j] for j, cb in enumerate(c_ids) if cb != _FIXED}
            fixed_col = float(agg[i, c_ids == _FIXED].sum())
            if ra == _FIXED:
                constant += fixed_col
                for cb, val in line.items():
                    prog.c[u[cb]] -= val
                continue
            prog.c[u[ra]] -= fixed_col
            line = {cb: val for cb, val in line.items() if val > 0}
            if not line:
                continue
            bound = sum(line.values())
            v = prog.var(0, bound, c=-1.0)
            prog.row([v, u[ra]], [1.0, -bound], -np.inf, 0.0)
            prog.row([v] + [u[cb] for cb in line], [1.0] + [-val for val in line.values()],
                     -np.inf, 0.0)
    # cost ≤ goal, exact
    layer_coef, (p, q) = bilinear_coefficients(cost)
    lin: Dict[int, float] = {}
    fixed_cost = cost.constant
    products: Dict[Tuple[int, int], int] = {}

    def add(cols, vals, scale):
        for col, val in zip(cols, vals):
            lin[col] = lin.get(col, 0.0) + scale * val

    def product(k: int, gi: int) -> int:
        """The variable t = u_k · w_gi."""
        if (k, gi) not in products:
            t = prog.var(0, float(full[gi]))
            prog.row([t, width_var[gi], u[k]], [1.0, -1.0, -float(full[gi])], -float(full[gi]),
                     np.inf)
            products[(k, gi)] = t
        return products[(k, gi)]

    for i, (a, b, c, d) in enumerate(layer_coef):
        go = cost._out_group[i]
        fixed_cost += d
        ocols, ovals, oconst = width_terms(go)
        add(ocols, ovals, b)
        fixed_cost += b * oconst
        for gi in cost._in_groups[i]:
            icols, ivals, iconst = width_terms(gi)
            add(icols, ivals, c)
            fixed_cost += c * iconst
            if a == 0:
                continue
            if gi not in width_var or go not in width_var:  # one side constant: linear
                if gi in width_var:
                    add(icols, ivals, a * oconst)
                elif go in width_var:
                    add(ocols, ovals, a * iconst)
                else:
                    fixed_cost += a * iconst * oconst
                continue
            members = units.unit_of[gi]
            fixed_in = int((members == _FIXED).sum())
            add(ocols, ovals, a * fixed_in)
            for k in np.unique(members[members != _FIXED]):
                lin[product(int(k), go)] = lin.get(product(int(k), go), 0.0) + \
                    a * units.channels[k].size
    for gi in cost._norm_group:
        fixed_cost += q
        cols, vals, const = width_terms(gi)
        add(cols, vals, p)
        fixed_cost += p * const
    cols = sorted(lin)
    prog.row(cols, [lin[col] for col in cols], -np.inf, goal - fixed_cost)
    return prog, u, constant


@register("qcqp")
def select_channels(graph: ChannelGraph, params: Dict[str, np.ndarray], cost: CostModel,
                    target: float, round_to: int = 8, min_width: int = 8,
                    time_limit: float = 60.0, level: str = "auto") -> Selection:
    """Keep the most kernel importance with ``cost.total(widths)`` at most ``target`` × the
    unpruned cost, solved as a MILP within ``time_limit`` seconds (see the module doc).
    ``level``: ``channel``, ``block`` or ``auto`` (channel when small)."""
    start = time.time()
    if level not in ("auto", "channel", "block"):
        raise PrunenetError(f"qcqp level {level!r}: choose auto, channel or block")
    if not time_limit > 0:
        raise PrunenetError(f"qcqp time_limit ({time_limit}) must be positive seconds")
    bilinear_coefficients(cost)  # refuse a cost the program cannot state, before the greedy
    greedy = qcqp.select_channels(graph, params, cost, target, round_to, min_width)
    energy = qcqp.importance(graph, params)
    greedy_value = qcqp.kept_value(graph, energy, greedy.keep)
    base = cost.total()
    pairs = sum(e.size for e in energy.values())
    segmented = any(g.segments > 1 for g in graph.prunable_groups)
    channel_level = level == "channel" or (level == "auto" and pairs <= CHANNEL_LEVEL_PAIRS
                                           and not segmented)
    if channel_level and segmented:
        raise PrunenetError("qcqp level channel does not take grouped convolutions: use block")
    order = qcqp.channel_values(graph, energy, full_keep(graph))
    units = _Units(graph, greedy.keep, order, round_to, channel_level)
    prog, u, constant = _build(graph, cost, energy, units, target * base, min_width,
                               channel_level)
    warm = dict(zip(u, units.values(greedy.keep)))
    reserve = min(max(0.1 * time_limit, 0.2), 5.0)  # for the refill after the solve
    res = prog.solve(max(time_limit - reserve - (time.time() - start), 0.05), warm)
    keep, returned = greedy.keep, "greedy"
    if res["x"] is not None:
        trial = units.keep(graph, res["x"][u])
        value = qcqp.kept_value(graph, energy, trial)
        if cost.total(widths_of(trial)) <= target * base and value > greedy_value:
            keep, returned = trial, "milp"
    keep = [k.copy() for k in keep]
    qcqp.refill(graph, cost, keep, target * base, round_to,
                lambda k: qcqp.channel_values(graph, energy, k), qcqp._gain(graph, energy))
    value = qcqp.kept_value(graph, energy, keep)
    bound = constant - res["dual_bound"] if np.isfinite(res["dual_bound"]) else None
    if res["optimal"]:
        bound = max(value, bound if bound is not None else value)
    gap = max(bound - value, 0.0) / max(abs(value), 1e-12) if bound is not None else None
    solver = {"solver": "HiGHS", "level": "channel" if channel_level else "block",
              "status": res["status"], "proven_optimal": bool(res["optimal"]), "gap": gap,
              "objective": value, "bound": bound, "greedy_objective": greedy_value,
              "returned": returned, "nodes": res["nodes"], "variables": len(prog.c),
              "constraints": len(prog.lb), "time_s": time.time() - start,
              "time_limit_s": float(time_limit)}
    return _selection(graph, cost, keep, base, round_to, solver)


def _selection(graph: ChannelGraph, cost: CostModel, keep: List[np.ndarray], base: float,
               round_to: int, solver: dict) -> Selection:
    """The selection of ``keep``: Δ is the most one removed block would add back."""
    widths = widths_of(keep)
    current = cost.total(widths)
    largest, removed = 0.0, 0
    for g in graph.prunable_groups:
        size = block_size(g, round_to)
        gone = g.width - int(widths[g.index])
        if gone:
            more = widths.copy()
            more[g.index] += size
            largest = max(largest, cost.total(more) - current)
            removed += gone // size
    return Selection(keep, current, base, largest, removed, solver=solver)
