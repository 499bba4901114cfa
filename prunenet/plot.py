"""Pictures of pruning runs: accuracy against throughput, kept widths per layer, and the
per-step curves of a GCP run. ``prunenet plot`` is the command line over it.

Figures are built on matplotlib's Agg canvas (no display, no pyplot state) and written as PNG and
SVG, each atomically. Everything here reads the files it is given and writes the figures; it
never changes a run.

GluonCV's published figures for its ResNets and pruned ResNets ship as package data
(``gluoncv_reference.csv``, source in its header). Their top-1 is used as published; their
throughput is either measured again here, on the same device as the user's points, from the
architectures alone (no weights), or -- only with ``reference="v100"`` -- GluonCV's V100
figure, drawn in a panel of its own and never on the same axis as local timings.
"""
from __future__ import annotations

import contextlib
import math
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import PrunenetError
from .io.records import REPORT_FILE, RESULTS_COLUMNS, number, read_csv, read_report, read_steps
from .latency.runtimes import throughput_field

__all__ = ["REFERENCE_FILE", "LABEL_LIMIT", "FRONTS", "result_points", "read_zoo", "read_points",
           "reference_table", "measure_reference", "pareto_front", "tradeoff_figure",
           "widths_figure", "curves_figure", "save_figure"]

TRAINING_PHASES = ("regularize", "debias")  # their "top1" is the training batches'
REFERENCE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "gluoncv_reference.csv")
REFERENCE_COLUMNS = ("model", "top1", "top5", "throughput_img_s", "macs_g", "params_m", "kind")
REFERENCES = ("auto", "local", "v100", "none")  # auto: local for ImageNet results, else none

_STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
          "xtick.labelsize": 9, "ytick.labelsize": 9, "svg.fonttype": "none",
          "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
          "grid.alpha": 0.3, "grid.linewidth": 0.6}
_MARKERS = "osD^vP*Xph<>"
_DASHES = ("-", "--", ":", "-.")


# -- reading ------------------------------------------------------------------------------------


def result_points(path: str, mean_over_seeds: bool = False, runtime: str = "mxnet") -> List[dict]:
    """The rows of a results CSV (DESIGN.md's schema) that have both a top-1 and a throughput:
    ``model, method, objective, target, top1 (%), throughput_img_s, batch_size, device,
    dataset``. Every schema column must be in the header, and some row must have both figures.
    With ``mean_over_seeds``, rows that differ only in their seed (and run) are one point: the
    mean top-1 and throughput, with ``top1_std`` (over ``seeds``) where there are several.
    ``runtime="onnxruntime"``: the throughput is the column ``throughput_img_s_onnxruntime``,
    which the file must then have."""
    what = "results file"
    key = throughput_field(runtime)
    points = []
    rows = read_csv(path, RESULTS_COLUMNS, what)
    if key not in rows[0][1]:
        raise PrunenetError(f"{what} {path} has no column {key!r}: its throughput was not "
                            f"measured in {runtime}; plot it with --runtime mxnet")
    for line, row in rows:
        top1 = number(row, "top1", path, line, what)
        speed = number(row, key, path, line, what)
        if speed is not None and speed <= 0:
            raise PrunenetError(f"{what} {path} line {line}: column {key!r} holds "
                                f"{row[key]!r}; images/s must be above 0")
        if top1 is None or speed is None:
            continue
        batch = number(row, "batch_size", path, line, what)
        points.append(_point(row["model"], row["method"], row["objective"],
                             number(row, "target", path, line, what), top1, speed,
                             int(batch) if batch else None, row["device"], row["dataset"]))
    if not points:
        raise PrunenetError(f"results file {path} has no row with both 'top1' and "
                            f"{key!r}; nothing to plot")
    return _mean_over_seeds(points) if mean_over_seeds else points


def _mean_over_seeds(points: List[dict]) -> List[dict]:
    """One point per group of points alike but for top-1 and throughput (their seeds)."""
    import statistics
    groups: Dict[tuple, List[dict]] = {}
    for p in points:
        key = tuple(p[k] for k in ("model", "method", "objective", "target", "batch_size",
                                   "device", "dataset"))
        groups.setdefault(key, []).append(p)
    out = []
    for members in groups.values():
        top1 = [p["top1"] for p in members]
        point = dict(members[0], top1=statistics.mean(top1), seeds=len(members),
                     throughput_img_s=statistics.mean(p["throughput_img_s"] for p in members))
        if len(members) > 1:
            point["top1_std"] = statistics.stdev(top1)
        out.append(point)
    return out


def read_zoo(zoo: str, runtime: str = "mxnet") -> List[dict]:
    """The models of a prunenet zoo (its ``zoo.json``) that have a top-1 and a throughput (in
    ``runtime``: ``zoo publish --runtime``), as :func:`result_points` rows."""
    from .zoo.store import manifest_path, read_manifest
    key = throughput_field(runtime)
    doc = read_manifest(zoo)
    points = []
    for name, entry in sorted(doc["models"].items()):
        if not isinstance(entry, dict):
            continue
        top1, speed = entry.get("top1"), entry.get(key)
        if not _finite(top1) or not _finite(speed) or speed <= 0:
            continue
        target, batch = entry.get("target"), entry.get("batch_size")
        points.append(_point(name, str(entry.get("method") or ""),
                             str(entry.get("objective") or ""),
                             target if _finite(target) else None, float(top1), float(speed),
                             int(batch) if _finite(batch) else None, _device_of(entry),
                             str(entry.get("dataset") or "")))
    if not points:
        raise PrunenetError(f"zoo manifest {manifest_path(zoo)} has no model with both "
                            f"'top1' and {key!r}; nothing to plot"
                            + (" (publish with --runtime onnxruntime or both)"
                               if runtime == "onnxruntime" else ""))
    return points


def read_points(source: str, mean_over_seeds: bool = False,
                runtime: str = "mxnet") -> List[dict]:
    """The points of a results CSV (``mean_over_seeds``: see :func:`result_points`), or of a zoo
    (a folder holding ``zoo.json``, or its URL), their throughput measured in ``runtime``."""
    from .io.download import is_url
    if os.path.isdir(source) or is_url(source):
        return read_zoo(source, runtime)
    return result_points(source, mean_over_seeds, runtime)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _device_of(entry: dict) -> str:
    device = str(entry.get("device") or "")
    return "cpu" if device.startswith("cpu") else device.replace("(", "").replace(")", "")


def _point(model, method, objective, target, top1, speed, batch, device, dataset) -> dict:
    return {"model": model, "method": method or "", "objective": objective or "",
            "target": target, "top1": top1 * 100 if top1 <= 1.0 else top1,
            "throughput_img_s": speed, "batch_size": batch, "device": device or "",
            "dataset": dataset or ""}


def reference_table(models: Optional[Iterable[str]] = None) -> List[dict]:
    """GluonCV's published figures (``gluoncv_reference.csv``), all or the named ``models``."""
    rows = []
    for line, row in read_csv(REFERENCE_FILE, REFERENCE_COLUMNS, "reference table"):
        rows.append(dict(row, **{c: number(row, c, REFERENCE_FILE, line, "reference table")
                                 for c in REFERENCE_COLUMNS if c not in ("model", "kind")}))
    if models is None:
        return rows
    known = {r["model"]: r for r in rows}
    wanted = [m.strip() for m in models if m.strip()]
    unknown = [m for m in wanted if m not in known]
    if unknown or not wanted:
        raise PrunenetError(f"reference model {unknown[0] if unknown else '(none)'!r} is not "
                            f"one of GluonCV's: {', '.join(known)}")
    return [known[m] for m in wanted]


# -- measuring the references ---------------------------------------------------------------------
def _reference_net(name: str, input_size: int, ctx):
    """GluonCV's ``name`` built without weights (a pruned one from GluonCV's shape file)."""
    from .io.files import read_shapes
    from .training.models import load_model
    from .zoo.store import gluoncv_shape_file, gluoncv_pruned_models
    pruned = gluoncv_pruned_models()
    if name in pruned:
        tag = pruned[name]
        path = gluoncv_shape_file(tag)
        return load_model(tag.rsplit("_", 1)[0], shapes=read_shapes(path), shapes_source=path,
                          input_size=input_size, ctx=ctx)
    return load_model(name, input_size=input_size, ctx=ctx)


def measure_reference(models: Sequence[str], input_size: int = 224,
                      batch_size: Optional[int] = None, repeats: Optional[int] = None,
                      warmup: Optional[int] = None, ctx=None, log=None,
                      runtime: str = "mxnet") -> Dict[str, dict]:
    """Throughput of GluonCV's reference architectures (random weights) on ``ctx``: one network
    at a time, so only one is in memory; :func:`prunenet.latency.throughput.throughput`'s figures each."""
    import mxnet as mx
    from .latency.settings import bench_settings
    from .latency.throughput import throughput
    ctx = ctx or mx.cpu()
    batch_size, repeats, warmup = bench_settings(batch_size, repeats, warmup)
    measured = {}
    for name in models:
        if log:
            log(f"measuring {name} ({input_size} px, batch {batch_size}, {repeats} batches)")
        net = _reference_net(name, input_size, ctx)
        measured[name] = throughput({name: net}, (3, input_size, input_size),
                                    batch_size=batch_size, repeats=repeats, warmup=warmup,
                                    ctx=ctx, runtime=runtime)[name]
        del net
        mx.nd.waitall()
    return measured


# -- figures --------------------------------------------------------------------------------------
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _style():
    import matplotlib
    return matplotlib.rc_context(_STYLE)


def pareto_front(points: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """The (throughput, top-1) points no other point beats on both, by increasing throughput."""
    front: List[Tuple[float, float]] = []
    best = -math.inf
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front[::-1]


def _label_of(point: dict) -> str:
    if point["method"] in ("", "standard", "reference"):
        return point["model"]
    target = f" {point['target']:g}" if point.get("target") is not None else ""
    objective = f" {point['objective']}" if point["objective"] else ""
    return f"{point['model']}, {point['method']}{objective}{target}"


def _family_of(point: dict) -> str:
    method = point["method"] or "unpruned"
    return "standard networks" if method == "standard" else method


def _place_labels(fig, ax, items: Sequence[Tuple[float, float, str]]) -> None:
    """Annotate each (x, y, text) beside its point where it overlaps no other label, no point
    and stays inside the axes; a leader line joins labels that had to move further away. A
    label with no such place left is not drawn (the legend still names its point's family)."""
    from matplotlib.transforms import Bbox
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    dots = [ax.transData.transform((x, y)) for x, y, _ in items]
    radius = 5.0
    obstacles = [Bbox.from_extents(px - radius, py - radius, px + radius, py + radius)
                 for px, py in dots]
    for line in ax.get_lines():  # the fronts: labels keep off them where they can
        xy = ax.transData.transform(line.get_xydata())
        for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:]):
            n = max(1, int(math.hypot(x1 - x0, y1 - y0) / 4.0))
            obstacles += [Bbox.from_extents(x - 1.5, y - 1.5, x + 1.5, y + 1.5)
                          for x, y in ((x0 + (x1 - x0) * t / n, y0 + (y1 - y0) * t / n)
                                       for t in range(n + 1))]
    rings = []
    for scale in (1.0, 2.0, 3.2, 4.6):
        for dx, dy, ha, va in ((6, 3, "left", "bottom"), (6, -3, "left", "top"),
                               (-6, 3, "right", "bottom"), (-6, -3, "right", "top"),
                               (0, 7, "center", "bottom"), (0, -7, "center", "top"),
                               (8, 0, "left", "center"), (-8, 0, "right", "center")):
            rings.append((dx * scale, dy * scale, ha, va, scale))
    placed: List = []
    order = sorted(range(len(items)), key=lambda i: (items[i][0], items[i][1]))
    for i in order:
        x, y, text = items[i]
        best = None
        for dx, dy, ha, va, scale in rings:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                              ha=ha, va=va, fontsize=7, zorder=4)
            box = ann.get_window_extent(renderer).expanded(1.04, 1.1)
            overlap = sum(_overlap(box, other) for other in placed + obstacles)
            own = _distance(box, dots[i])  # a label nearer another point reads as its label
            if scale > 1.0:  # its leader must not cross another label
                overlap += 300.0 * _crossings(dots[i], box, placed)
            overlap += 150.0 * sum(1 for j, d in enumerate(dots)
                                   if j != i and _distance(box, d) < own + 3.0)
            outside = 0.0 if (box.x0 >= frame.x0 and box.x1 <= frame.x1 and
                              box.y0 >= frame.y0 and box.y1 <= frame.y1) else box.width * 50
            cost = overlap + outside
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, box, scale)
            else:
                ann.remove()
            if cost == 0:
                break
        _, ann, box, scale = best
        if any(box.overlaps(other) for other in placed) or not (
                box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and
                box.y1 <= frame.y1):
            ann.remove()  # crowded: an unreadable label is worse than none
            continue
        if scale > 1.0:  # moved away: a thin leader from the point to the label's nearest edge
            px, py = dots[i]
            ex = min(max(px, box.x0), box.x1)
            ey = min(max(py, box.y0), box.y1)
            length = math.hypot(ex - px, ey - py)
            if length > 6.0:
                sx, sy = px + (ex - px) * 4.5 / length, py + (ey - py) * 4.5 / length
                inverse = ax.transData.inverted()
                (x0, y0), (x1, y1) = inverse.transform([(sx, sy), (ex, ey)])
                ax.plot([x0, x1], [y0, y1], color="0.55", linewidth=0.6, zorder=1)
        placed.append(box)


def _crossings(point, box, others) -> int:
    """How many of the boxes ``others`` the leader from ``point`` to ``box`` passes through."""
    px, py = point
    ex, ey = min(max(px, box.x0), box.x1), min(max(py, box.y0), box.y1)
    samples = [(px + (ex - px) * t / 12.0, py + (ey - py) * t / 12.0) for t in range(1, 12)]
    return sum(1 for other in others
               if any(other.x0 <= x <= other.x1 and other.y0 <= y <= other.y1
                      for x, y in samples))


def _distance(box, point) -> float:
    dx = max(box.x0 - point[0], 0.0, point[0] - box.x1)
    dy = max(box.y0 - point[1], 0.0, point[1] - box.y1)
    return math.hypot(dx, dy)


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _log_limits(ax, xs: Sequence[float], ys: Sequence[float]) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    lo, hi = min(xs), max(xs)
    ax.set_xscale("log")
    ax.set_xlim(lo / 1.8, hi * 2.4)  # room on the right for the fastest point's label
    subs = (1.0, 2.0, 5.0) if hi / lo < 30 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ylo, yhi = min(ys), max(ys)
    pad = max(2.0, 0.12 * (yhi - ylo))
    ax.set_ylim(ylo - pad, yhi + pad)


_DATASET_NAMES = {"fashion-mnist": "Fashion-MNIST", "imagenet": "ImageNet",
                  "synthetic": "synthetic data", "folder": "image folder"}
FRONTS = ("family", "all")  # tradeoff_figure's Pareto fronts: each family's, or also all points'
LABEL_LIMIT = 8  # a panel with more points than this names them by its legend only
_XLABEL_CHARS = 48  # a longer x label does not fit under one column's panel on one line
_COLUMN = 3.4  # inches: one panel is one column of a two-column paper
_COLUMN_STYLE = {"font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8,
                 "legend.fontsize": 7.5, "xtick.labelsize": 7.5, "ytick.labelsize": 7.5}


def _dataset_name(key: str) -> str:
    return _DATASET_NAMES.get(key, key) if key else "dataset not recorded"


def tradeoff_figure(points: Sequence[dict], reference: Optional[Sequence[dict]] = None,
                    measured: Optional[Dict[str, dict]] = None, v100: bool = False,
                    device: str = "cpu", batch_size: Optional[int] = None,
                    input_size: int = 224, title: Optional[str] = None,
                    front: str = "family"):
    """Top-1 (%) against throughput (images/s, log scale), one panel per dataset (top-1 on
    different datasets never share an axis): the user's ``points`` by method, each family with
    its Pareto front, and GluonCV's ImageNet ``reference`` rows — at the throughput in
    ``measured`` (re-measured here) in the ImageNet panel, or, with ``v100``, at GluonCV's
    published V100 throughput in a panel of its own. A panel of more than ``LABEL_LIMIT``
    points names them by the legend only; fewer are labelled where the labels fit (the
    standard networks, method ``standard``, are named always). ``front``: ``family`` draws each
    family's Pareto front, ``all`` also the front over every point of a panel (dashed). A point
    with ``top1_std`` has an error bar of ± that."""
    if front not in FRONTS:
        raise PrunenetError(f"front {front!r} is not one of {', '.join(FRONTS)}")
    reference = list(reference or [])
    if reference and not v100 and measured is None:
        raise PrunenetError("reference points need their throughput measured on this device "
                            "(measure_reference), or v100=True for GluonCV's published figures")
    refs: List[dict] = []
    for row in reference:
        speed = row["throughput_img_s"] if v100 else measured[row["model"]]["throughput_img_s"]
        kind = "GluonCV ResNets" if row["kind"] == "standard" else "GluonCV pruned ResNets"
        refs.append({"model": row["model"], "method": "reference", "top1": row["top1"],
                     "throughput_img_s": speed, "family": kind + (
                         " (published, V100)" if v100 else f" (timed here, {input_size} px)")})
    by_dataset: Dict[str, List[dict]] = {}
    for p in points:
        by_dataset.setdefault(p["dataset"], []).append(dict(p, family=_family_of(p)))
    panels = [(key, pts, False) for key, pts in sorted(by_dataset.items())]
    if refs and not v100:
        keys = [k for k, _, _ in panels]
        if "imagenet" in keys:
            panels[keys.index("imagenet")][1].extend(refs)
        else:
            panels.append(("imagenet", list(refs), False))
    elif refs:
        panels.append(("imagenet", list(refs), True))
    batch = batch_size or next((p["batch_size"] for p in points if p["batch_size"]), None)
    where = f"{device}" + (f", batch {batch}" if batch else "")
    with _style(), __import__("matplotlib").rc_context(_COLUMN_STYLE):
        import matplotlib
        colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        families = list(dict.fromkeys(p["family"] for _, pts, _ in panels for p in pts))
        style = {f: (colors[i % len(colors)], _MARKERS[i % len(_MARKERS)])
                 for i, f in enumerate(families)}
        ncol = min(3 if len(panels) == 1 else 4, len(families))
        legend_rows = -(-len(families) // ncol)
        local = f"throughput on {where} (img/s, log)"
        if len(local) > _XLABEL_CHARS:  # a second line rather than a label cut at the edge
            local = f"throughput on {where}\n(img/s, log)"
        extra = 0.13 * local.count("\n")
        height = 2.6 + 0.45 + 0.16 * legend_rows + extra
        fig = _figure(_COLUMN * len(panels), height)
        axes = [fig.add_subplot(1, len(panels), i + 1) for i in range(len(panels))]
        left, right = 0.16 / len(panels) + 0.02, 0.97
        fig.subplots_adjust(left=left, right=right,
                            bottom=(0.55 + 0.16 * legend_rows + extra) / height,
                            top=1 - 0.45 / height, wspace=0.32)
        handles: Dict[str, object] = {}
        for ax, (key, pts, published) in zip(axes, panels):
            groups: Dict[str, List[dict]] = {}
            for p in pts:
                groups.setdefault(p["family"], []).append(p)
            for family, members in groups.items():
                color, marker = style[family]
                xs = [p["throughput_img_s"] for p in members]
                ys = [p["top1"] for p in members]
                handles[family] = ax.scatter(xs, ys, s=22, color=color, marker=marker, zorder=3,
                                             edgecolor="white", linewidth=0.5, label=family)
                _error_bars(ax, members, color)
                line = pareto_front(list(zip(xs, ys)))
                if len(line) > 1:
                    ax.plot([q[0] for q in line], [q[1] for q in line], color=color,
                            linewidth=1.0, alpha=0.8, zorder=2)
            everyone = pareto_front([(p["throughput_img_s"], p["top1"]) for p in pts])
            if front == "all" and len(everyone) > 1:
                handles["Pareto front"] = ax.plot(
                    [q[0] for q in everyone], [q[1] for q in everyone], color="0.3",
                    linestyle="--", linewidth=0.9, zorder=1)[0]
            _log_limits(ax, [p["throughput_img_s"] for p in pts], [p["top1"] for p in pts])
            ax.set_xlabel("throughput on one V100, batch 64 (img/s, log)" if published else
                          local)
            ax.set_ylabel(f"{_dataset_name(key)} top-1 (%)")
            ax.set_title("GluonCV's published figures (V100)" if published else
                         _dataset_name(key))
        families += [f for f in handles if f not in families]  # the front over all
        fig.legend([handles[f] for f in families], families, loc="lower center",
                   bbox_to_anchor=(0.5, 0.0), ncol=ncol, frameon=False, borderaxespad=0.2,
                   handletextpad=0.3, columnspacing=1.0)
        fig.suptitle(title or "Accuracy against throughput", fontsize=9.5,
                     x=(left + right) / 2)
        for ax, (_, pts, _) in zip(axes, panels):
            named = pts if len(pts) <= LABEL_LIMIT else \
                [p for p in pts if p["method"] == "standard"]
            if named:
                _place_labels(fig, ax, [(p["throughput_img_s"], p["top1"], _label_of(p))
                                        for p in named])
    return fig


def _error_bars(ax, members: Sequence[dict], color) -> None:
    """± ``top1_std`` (the spread over seeds) at the points that have it."""
    spread = [p for p in members if p.get("top1_std") is not None]
    if spread:
        ax.errorbar([p["throughput_img_s"] for p in spread], [p["top1"] for p in spread],
                    yerr=[p["top1_std"] for p in spread], fmt="none", ecolor=color,
                    elinewidth=0.8, capsize=2, zorder=2)


def _run_label(report: dict) -> str:
    parts = [str(report.get("model") or "?"), str(report.get("method") or "?")]
    if report.get("objective"):
        parts.append(str(report["objective"]))
    if _finite(report.get("target")):
        parts.append(f"α={report['target']:g}")
    if _finite(report.get("achieved")):
        predicted = report.get("achieved_predicted")  # the latency objective's: measured first
        parts.append(f"(achieved {report['achieved']:.3f}" +
                     (f" measured, {predicted:.3f} predicted)" if _finite(predicted) else ")"))
    return " ".join(parts)


def _short_layer(name: str, prefix: str) -> str:
    name = name[len(prefix):] if prefix and name.startswith(prefix) else name
    for end in ("_fwd", "_weight"):
        if name.endswith(end):
            name = name[:-len(end)]
    for word, short in _LAYER_WORDS:
        name = name.replace(word, short)
    return name


# shorter tick labels for the words GluonCV's layer names repeat
_LAYER_WORDS = (("features_", ""), ("linearbottleneck", "block"), ("layers", "stage"))


def widths_figure(run_dirs: Sequence[str], title: Optional[str] = None):
    """Kept fraction of each layer's output channels, in network order, one line per run."""
    if not run_dirs:
        raise PrunenetError("plot widths needs at least one RUN_DIR")
    reports = [read_report(d) for d in run_dirs]
    layers = list(reports[0]["widths"])
    same = all(list(r["widths"]) == layers for r in reports)
    prefix = os.path.commonprefix(layers) if len(layers) > 1 else ""
    prefix = prefix[:prefix.rfind("_") + 1] if "_" in prefix else ""
    n = max(len(r["widths"]) for r in reports)
    with _style():
        import matplotlib
        colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        fig = _figure(max(7.5, min(16.0, 2.5 + 0.2 * n)), 4.8)
        ax = fig.add_subplot(1, 1, 1)
        rows = len(reports) if len(reports) < 3 else (len(reports) + 1) // 2
        fig.subplots_adjust(left=0.08, right=0.97, bottom=0.3,
                            top=1.0 - (0.5 + 0.2 * rows) / 4.8)
        # each run a little to the side of the layer's tick and in its own dash, so runs of
        # equal widths (the same selection twice) stay visible side by side
        shift = min(0.12, 0.5 / len(reports))
        for i, report in enumerate(reports):
            fractions = [k / o for k, o in report["widths"].values()]
            offset = (i - (len(reports) - 1) / 2) * shift
            ax.plot([x + offset for x in range(len(fractions))], fractions,
                    color=colors[i % len(colors)], marker=_MARKERS[i % len(_MARKERS)],
                    markersize=4, linewidth=1.3, linestyle=_DASHES[i % len(_DASHES)],
                    label=_run_label(report), zorder=3)
        ax.set_ylim(0, 1.05)
        ax.set_xlim(-0.7, n - 0.3)
        ax.set_ylabel("kept fraction of output channels")
        if same:
            ax.set_xticks(range(len(layers)))
            ax.set_xticklabels([_short_layer(name, prefix) for name in layers], rotation=90,
                               fontsize=7 if n > 30 else 8)
            ax.set_xlabel("layer, in network order")
        else:
            ax.set_xlabel("layer index, in network order (the runs' networks differ)")
        ax.grid(axis="x", alpha=0.15)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.02), borderaxespad=0.0,
                  frameon=False, ncol=1 if len(reports) < 3 else 2)
        fig.suptitle(title or "Kept channels per layer", fontsize=12, y=0.99)
    return fig


_PHASE_ABBREVIATIONS = {"regularize": "reg", "debias": "deb", "surgery": "cut",
                        "finetune": "fine-tune"}


def curves_figure(run_dir: str, title: Optional[str] = None):
    """Loss, top-1, cost fraction and zeroed channels after every phase of a run's steps
    (``steps.csv``), as four small multiples sharing the x axis. Top-1 is two series: on the
    training batches (the regularize and debias phases') and on held-out data (after the cut
    and after fine-tuning, and ``val_top1`` where recorded); the cost panel draws the target."""
    rows = read_steps(run_dir)
    report = None
    if os.path.exists(os.path.join(run_dir, REPORT_FILE)):
        try:
            report = read_report(run_dir)
        except PrunenetError:
            report = None
    ticks = [f"{int(r['step']) if r['step'] is not None else ''} "
             f"{_PHASE_ABBREVIATIONS.get(r['phase'], r['phase'])}".strip() for r in rows]
    xs = list(range(len(rows)))

    def series(value) -> List[Tuple[int, float]]:
        return [(x, v) for x, v in ((x, value(r)) for x, r in zip(xs, rows)) if v is not None]

    def pct(v):
        return None if v is None else 100.0 * v

    train = series(lambda r: pct(r["top1"]) if r["phase"] in TRAINING_PHASES else None)
    held = series(lambda r: pct(r.get("val_top1")) if r.get("val_top1") is not None else
                  pct(r["top1"]) if r["phase"] not in TRAINING_PHASES else None)
    with _style(), __import__("matplotlib").rc_context(_COLUMN_STYLE):
        import matplotlib
        colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        panels = (
            ("training loss", [("loss", series(lambda r: r["loss"]), colors[0], "-", "o")]),
            ("top-1 accuracy (%)", [("training batches", train, colors[0], "-", "o"),
                                    ("held-out data", held, colors[1], "-", "s")]),
            ("cost fraction kept", [("kept", series(lambda r: r["achieved"]), colors[0], "-",
                                     "o"),
                                    ("target", series(lambda r: r["target"]), colors[3],
                                     (0, (4, 2)), "")]),
            ("zeroed channels", [("zeroed", series(lambda r: r["zeroed_channels"]), colors[0],
                                  "-", "o")]))
        fig = _figure(2 * _COLUMN, 4.6)
        axes = fig.subplots(2, 2, sharex=True)
        fig.subplots_adjust(left=0.09, right=0.98, bottom=0.17, top=0.9, wspace=0.32,
                            hspace=0.16)
        for ax, (label, lines) in zip(axes.flat, panels):
            drawn = 0
            for name, pts, color, dash, marker in lines:
                if not pts:
                    continue
                drawn += 1
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, linestyle=dash,
                        marker=marker, markersize=3.5, linewidth=1.4 if marker == "" else 1.0,
                        label=name, zorder=4 if marker == "" else 3)
            if not drawn:
                ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center",
                        va="center", color="0.4")
            ax.set_ylabel(label)
            if len(lines) > 1 and drawn:
                ax.legend(loc="best", frameon=False, handlelength=2.2)
            if label == "cost fraction kept":
                values = [p[1] for _, pts, *_ in lines for p in pts] or [1.0]
                ax.set_ylim(max(0.0, min(values) - 0.08), min(1.05, max(values) + 0.08))
            if label == "zeroed channels" and lines[0][1] and \
                    not any(p[1] for p in lines[0][1]):
                ax.text(0.5, 0.6, "no scale reached exactly 0: channels were removed by\n"
                        "ranking at each step's selection (a larger λ zeroes some)",
                        transform=ax.transAxes, ha="center", va="center", color="0.35",
                        fontsize=6.5)
            if label == "zeroed channels":
                from matplotlib.ticker import MaxNLocator
                top = max([1.0] + [p[1] for p in lines[0][1]]) * 1.1
                ax.set_ylim(-0.04 * top, top)
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in axes[1]:
            ax.set_xticks(xs)
            ax.set_xticklabels(ticks, rotation=45, ha="right")
            ax.set_xlabel("step and phase")
        default = "Pruning run, step by step"
        if report is not None:
            default = f"{_run_label(report)}, step by step"
        fig.suptitle(title or default, fontsize=9.5)
    return fig


def figure_paths(out: str, svg: bool = False, overwrite: bool = True) -> List[str]:
    """The files a figure written as ``--out`` makes — ``out`` itself (``.png`` or ``.svg``),
    and with ``svg`` the SVG beside a PNG — if it may be written there (the rule of
    :mod:`prunenet.io.outputs`); an existing one is refused unless ``overwrite``."""
    from .io.outputs import check_target
    check_target(out, "--out", kind="file")
    stem, ext = os.path.splitext(out)
    if ext.lower() not in (".png", ".svg"):
        raise PrunenetError(f"--out {out}: give a file name ending in .png or .svg")
    paths = [check_target(out, "--out", kind="file")]
    if svg and ext.lower() == ".png":
        paths.append(check_target(stem + ".svg", "--svg", kind="file"))
    for path in paths:
        if os.path.lexists(path) and not overwrite:
            raise PrunenetError(f"{path} already exists; give another --out, or pass "
                                f"--overwrite to replace it")
    return paths


def save_figure(fig, out: str, svg: bool = True, overwrite: bool = True) -> List[str]:
    """Write ``fig`` as ``out`` (its format by its name, ``.png`` or ``.svg``) and, with
    ``svg``, a PNG's SVG beside it (the command line writes it only with ``--svg``), each
    atomically; returns the paths. An existing file is replaced only with ``overwrite`` (the
    command line: ``--overwrite``)."""
    from .io.files import atomic_path
    from .io.outputs import exclusive
    with _style(), exclusive(figure_paths(out, svg, overwrite)[0]), \
            contextlib.ExitStack() as staged:  # every file written before any is replaced
        paths = figure_paths(out, svg, overwrite)  # again, under the lock
        for path in paths:
            tmp = staged.enter_context(atomic_path(path))
            fig.savefig(tmp, format=path.rsplit(".", 1)[1], dpi=150, bbox_inches="tight",
                        pad_inches=0.15)
    return paths


def tradeoff(source: str, reference: str = "auto", reference_models=None,
             batch_size: Optional[int] = None, input_size: int = 224,
             repeats: Optional[int] = None, warmup: Optional[int] = None, gpus: str = "",
             title: Optional[str] = None, log=None, mean_over_seeds: bool = False,
             front: str = "family", runtime: str = "mxnet"):
    """The figure of ``prunenet plot tradeoff``: read ``source``, measure the references when
    ``reference`` is ``local``, draw; the throughput is the one measured in ``runtime``
    (``mxnet`` or ``onnxruntime``), the references' too. ``auto``: GluonCV's ImageNet ResNets
    are measured and drawn only when ``source`` has ImageNet rows or ``reference_models`` names some (they are
    ImageNet networks: beside other datasets' results they only cost minutes of timing)."""
    from .latency.settings import bench_default, bench_settings
    from .latency.throughput import check_settings, device, device_name
    _, repeats, warmup = bench_settings(None, repeats, warmup)  # the batch: the results' first
    if reference not in REFERENCES:
        raise PrunenetError(f"reference {reference!r} is not one of {', '.join(REFERENCES)}")
    points = read_points(source, mean_over_seeds, runtime)
    if reference == "auto":
        imagenet = any(p.get("dataset") == "imagenet" for p in points)
        reference = "local" if imagenet or reference_models else "none"
        if reference == "none" and log:
            log(f"{source} has no ImageNet results: GluonCV's ImageNet ResNets are left out "
                f"(--reference local or v100 draws them)")
    devices = sorted({p["device"] for p in points if p["device"]})
    if len(devices) > 1:
        raise PrunenetError(f"{source} mixes throughput measured on {' and '.join(devices)}; "
                            f"plot one device's rows at a time")
    batches = sorted({p["batch_size"] for p in points if p["batch_size"]})
    batch = batch_size or (batches[0] if len(batches) == 1 else bench_default("batch_size"))
    if isinstance(reference_models, str):
        reference_models = reference_models.split(",")
    rows = [] if reference == "none" else reference_table(reference_models)
    measured = None
    where = devices[0] if devices else "this machine"
    if reference == "local":
        check_settings(batch, "float32", repeats, warmup)
        ctx = device(gpus)
        here = device_name(ctx)
        if devices and devices[0] != here:
            raise PrunenetError(f"{source} was measured on {devices[0]}, the references would "
                                f"be measured on {here}: pass --gpus for that device, or "
                                f"--reference none")
        where = here
        measured = measure_reference([r["model"] for r in rows], input_size, batch, repeats,
                                     warmup, ctx, log, runtime)
    if runtime != "mxnet":
        where += ", ONNX Runtime"
    return tradeoff_figure(points, rows, measured, v100=reference == "v100", device=where,
                           batch_size=batch, input_size=input_size, title=title, front=front)
