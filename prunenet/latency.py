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
count). Every timing follows :mod:`prunenet.timing`'s rule (interleaved rounds until the medians
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
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .costs import CostModel
from .errors import PrunenetError
from .graph import ChannelGraph, Layer
from .select import Selection
from .timing import pct

__all__ = ["UnitSpec", "unit_specs", "network_key", "UnitTimer", "LatencyTable", "LatencyCost",
           "select_measured", "NoisyMeasurementError", "NOISE_LIMIT", "default_table_path",
           "width_grid", "FORMAT"]

FORMAT = "prunenet-latency-table/1"
_EPS = 1e-3  # a grid point is at least this much (relative) below its wider neighbours
_DRIFT, _RETRIES = 1.1, 2  # a batch whose reference is off by more is measured again
UNIT_TOLERANCE = 0.05  # the noise a unit's timings may keep (the check after selection corrects)


# -- units ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnitSpec:
    """What a unit computes, apart from its widths: optional pooling/flatten on its input
    (``pre``), the conv or dense layer, its BatchNorm, and the element-wise ops and pooling that
    only it feeds (``post``: activations, a residual addition written ``add``, pooling). Their
    costs scale with the unit's widths, so they belong to it rather than to the remainder."""

    op: str  # "conv" or "dense"
    kernel: Tuple[int, int] = (1, 1)
    stride: Tuple[int, int] = (1, 1)
    pad: Tuple[int, int] = (0, 0)
    dilate: Tuple[int, int] = (1, 1)
    in_hw: Tuple[int, ...] = ()  # the input's spatial size (empty: a flat input)
    groups: int = 1  # 0: depthwise (as many groups as channels)
    cols: int = 1  # input columns per channel (a dense layer on a flattened feature map)
    bias: bool = False
    bn: bool = True
    pre: Tuple[str, ...] = ()  # ops on the input, e.g. "Pooling(kernel=(2, 2),...)"
    post: Tuple[str, ...] = ()  # ops after the BatchNorm, e.g. "add", "Activation(act_type=relu)"

    @property
    def key(self) -> str:
        parts = list(self.pre)
        if self.op == "dense":
            parts += ["dense", f"c{self.cols}"]
        else:
            parts += ["conv", "k{}x{}".format(*self.kernel), "s{}x{}".format(*self.stride),
                      "p{}x{}".format(*self.pad), "d{}x{}".format(*self.dilate),
                      "dw" if self.groups == 0 else f"g{self.groups}"]
        parts += ["x".join(map(str, self.in_hw)) or "flat"]
        parts += ["bias"] * self.bias + ["bn"] * self.bn + list(self.post)
        return "/".join(parts)

    def symbol(self, in_width: int, out_width: int):
        """The unit as an MXNet symbol on ``data`` (and ``residual`` when it adds one)."""
        import mxnet as mx
        x = mx.sym.var("data")
        for i, text in enumerate(self.pre):
            op, attrs = _parse_op(text)
            x = getattr(mx.sym, op)(x, name=f"pre{i}", **attrs)
        if self.op == "dense":
            x = mx.sym.FullyConnected(x, num_hidden=out_width, no_bias=not self.bias,
                                      flatten=True, name="fc")
        else:
            x = mx.sym.Convolution(x, num_filter=out_width, kernel=self.kernel,
                                   stride=self.stride, pad=self.pad, dilate=self.dilate,
                                   num_group=in_width if self.groups == 0 else self.groups,
                                   no_bias=not self.bias, name="conv")
        if self.bn:
            x = mx.sym.BatchNorm(x, fix_gamma=False, eps=1e-5, name="bn")
        for i, text in enumerate(self.post):
            if text == "add":
                x = mx.sym.elemwise_add(x, mx.sym.var("residual"), name=f"post{i}")
                continue
            op, attrs = _parse_op(text)
            x = getattr(mx.sym, op)(x, name=f"post{i}", **attrs)
        return x

    def input_shape(self, batch_size: int, in_width: int) -> Tuple[int, ...]:
        if not self.in_hw:
            return (batch_size, in_width * self.cols)
        return (batch_size, in_width) + tuple(self.in_hw)


def _op_string(op: str, attrs: Dict[str, str]) -> str:
    inner = ";".join(f"{k}={v}" for k, v in sorted(attrs.items()) if not k.startswith("__"))
    return f"{op}({inner})"


def _parse_op(text: str) -> Tuple[str, Dict[str, str]]:
    op, inner = text[:-1].split("(", 1)
    return op, dict(kv.split("=", 1) for kv in inner.split(";") if kv)


def _pair(attrs: Dict[str, str], name: str, default: int) -> Tuple[int, int]:
    text = attrs.get(name)
    if not text:
        return (default, default)
    vals = [int(v) for v in text.strip("()[] ").split(",") if v.strip()]
    return (vals[0], vals[1] if len(vals) > 1 else 1) if vals else (default, default)


_ACTIVATIONS = {"Activation", "LeakyReLU", "clip", "relu", "sigmoid", "tanh"}
_ADDS = {"elemwise_add", "broadcast_add", "_Plus", "_plus", "_add"}
_PRE = {"Pooling", "Flatten", "flatten", "Dropout"}


def unit_specs(graph: ChannelGraph) -> Dict[str, UnitSpec]:
    """The unit of every conv/dense layer of ``graph`` that reads or writes a prunable group
    (the others are part of the remainder)."""
    doc = json.loads(graph.symbol.tojson())
    nodes = doc["nodes"]
    internals = graph.symbol.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=graph.input_shape)
    shape_of = dict(zip(internals.list_outputs(), out_shapes))
    index = {node["name"]: i for i, node in enumerate(nodes)}
    readers: Dict[int, List[int]] = {}
    for i, node in enumerate(nodes):
        for entry in node["inputs"]:
            readers.setdefault(entry[0], []).append(i)
    for head in doc["heads"]:
        readers.setdefault(head[0], []).append(-1)  # the network's output is read too
    norm_of = {n.producer: n.name for n in graph.norms.values() if n.producer}

    def tensor_shape(entry) -> Tuple[int, ...]:
        src = nodes[entry[0]]
        if src["op"] == "null":
            return tuple(shape_of[src["name"]])
        return tuple(shape_of.get(f"{src['name']}_output") or
                     shape_of[f"{src['name']}_output{entry[1]}"])

    def sole_reader(node_id: int) -> Optional[int]:
        after = readers.get(node_id, [])
        return after[0] if len(after) == 1 and after[0] >= 0 else None

    def pre_chain(layer_id: int) -> Tuple[List[int], tuple]:
        """Pooling/flatten nodes that only feed this layer, and the chain's input entry."""
        chain, entry = [], nodes[layer_id]["inputs"][0]
        while nodes[entry[0]]["op"] in _PRE and sole_reader(entry[0]) == (
                chain[0] if chain else layer_id):
            chain.insert(0, entry[0])
            entry = nodes[entry[0]]["inputs"][0]
        return chain, entry

    layer_ids = {index[name] for name in graph.layers}
    claimed = set()
    pres = {}
    for name in graph.layers:
        pres[name] = pre_chain(index[name])
        claimed.update(pres[name][0])

    def post_chain(node_id: int) -> List[str]:
        post = []
        while True:
            nxt = sole_reader(node_id)
            if nxt is None or nxt in claimed or nxt in layer_ids:
                return post
            node = nodes[nxt]
            if node["op"] in _ACTIVATIONS or node["op"] == "Pooling":
                post.append(_op_string(node["op"], node.get("attrs", {})))
            elif node["op"] in _ADDS and len(node["inputs"]) == 2 and \
                    node["inputs"][0][0] == node_id:
                post.append("add")
            else:
                return post
            node_id = nxt

    specs: Dict[str, UnitSpec] = {}
    for layer in graph.layers.values():
        groups = [graph.group_of(s) for s in layer.in_layout] + [graph.out_group(layer.name)]
        if not any(g.prunable for g in groups):
            continue
        node = nodes[index[layer.name]]
        attrs = node.get("attrs", {})
        tail = index[norm_of[layer.name]] if layer.name in norm_of else index[layer.name]
        chain, entry = pres[layer.name]
        in_shape = tensor_shape(entry)
        common = dict(bias=layer.bias is not None, bn=layer.name in norm_of,
                      pre=tuple(_op_string(nodes[i]["op"], nodes[i].get("attrs", {}))
                                for i in chain),
                      post=tuple(post_chain(tail)), in_hw=tuple(int(v) for v in in_shape[2:]))
        if layer.op == "FullyConnected":
            cols = layer.cols_per_channel if not chain and len(in_shape) <= 2 else 1
            specs[layer.name] = UnitSpec("dense", cols=cols, **common)
            continue
        specs[layer.name] = UnitSpec(
            "conv", kernel=_pair(attrs, "kernel", 1), stride=_pair(attrs, "stride", 1),
            pad=_pair(attrs, "pad", 0), dilate=_pair(attrs, "dilate", 1),
            groups=0 if layer.depthwise else layer.groups, **common)
    return specs


def network_key(graph: ChannelGraph) -> str:
    """A name for the architecture of ``graph`` at its input size (not its layers' names)."""
    doc = json.loads(graph.symbol.tojson())
    plain = [[n["op"], {k: v for k, v in n.get("attrs", {}).items() if not k.startswith("__")},
              [e[:2] for e in n["inputs"]]] for n in doc["nodes"]]
    text = json.dumps([plain, doc["heads"], list(graph.input_shape[1:])], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# -- measuring ------------------------------------------------------------------------------------
class UnitTimer:
    """Times units and whole networks on one device: hybridized with a static graph, random
    input, ``warmup`` untimed batches, then the fastest of ``repeats`` batches, the calls of one
    request taking turns."""

    def __init__(self, ctx=None, batch_size: int = 32, dtype: str = "float32", repeats: int = 5,
                 warmup: int = 2) -> None:
        import mxnet as mx
        from .bench import check_settings
        check_settings(batch_size, dtype, repeats, warmup)
        self.ctx = ctx or mx.cpu()
        self.batch_size, self.dtype = batch_size, dtype
        self.repeats, self.warmup = repeats, warmup

    def _call(self, symbol, input_shape) -> Callable[[], None]:
        """One batch through ``symbol``, hybridized, randomly initialised, on random input (and a
        random ``residual`` input when the symbol has one)."""
        import warnings
        import mxnet as mx
        from mxnet import gluon
        names = [n for n in ("data", "residual") if n in symbol.list_arguments()]
        arg_shapes, _, _ = symbol.infer_shape(data=tuple(input_shape))
        shapes = dict(zip(symbol.list_arguments(), arg_shapes))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            block = gluon.SymbolBlock(symbol, [mx.sym.var(n) for n in names])
        for name, param in block.collect_params().items():
            init = mx.init.One() if name.endswith(("gamma", "_var")) else \
                mx.init.Zero() if name.endswith(("beta", "_mean", "bias")) else \
                mx.init.MSRAPrelu()
            param.initialize(init, ctx=self.ctx)
        if self.dtype != "float32":
            block.cast(self.dtype)
        block.hybridize(static_alloc=True, static_shape=True)
        rng = np.random.RandomState(0)
        xs = [mx.nd.array(rng.normal(size=shapes[n]), ctx=self.ctx, dtype=self.dtype)
              for n in names]

        def run() -> None:
            out = block(*xs)
            (out[0] if isinstance(out, (list, tuple)) else out).wait_to_read()
        return run

    def unit_call(self, spec: UnitSpec, in_width: int, out_width: int) -> Callable[[], None]:
        return self._call(spec.symbol(in_width, out_width),
                          spec.input_shape(self.batch_size, in_width))

    def network_call(self, symbol, image_shape: Sequence[int]) -> Callable[[], None]:
        return self._call(symbol, (self.batch_size,) + tuple(image_shape))

    def time(self, calls: Dict[str, Callable[[], None]], flush: bool = True, on_round=None):
        """Milliseconds per batch of each call, measured side by side by the timing rule
        (:mod:`prunenet.timing`; at least ``repeats`` rounds, at most twice as many, until
        the fastest is reproduced within :data:`UNIT_TOLERANCE`): the fastest of the rounds (other processes only ever slow a
        call down; the fastest is the one they disturbed least), each timed call after the CPU
        caches were flushed unless ``flush`` is off (in a network a layer's weights come from
        memory; and so every unit is measured alike however many are measured together).
        Returns the milliseconds and the :class:`prunenet.timing.Timings`."""
        import mxnet as mx
        from .bench import _first_line
        from .timing import time_until_stable
        flusher = _cache_flusher() if flush and self.ctx.device_type == "cpu" else None
        try:
            timings = time_until_stable(calls, min_repeats=self.repeats,
                                        max_repeats=2 * self.repeats, tolerance=UNIT_TOLERANCE,
                                        warmup=self.warmup, before=flusher,
                                        on_round=on_round, statistic="min")
        except mx.base.MXNetError as err:
            raise PrunenetError(f"MXNet cannot run a layer in {self.dtype} on {self.ctx}: "
                                f"{_first_line(err)}; measure another dtype or device") from None
        return {name: float(np.min(ts)) * 1e3 for name, ts in timings.seconds.items()}, timings

    def ratio(self, calls: Dict[str, Callable[[], None]], numerator: str, denominator: str,
              budget_s: float = 30.0) -> Dict[str, float]:
        """Two whole networks timed interleaved by the timing rule (within about ``budget_s``
        seconds, at least ``repeats`` rounds): the median of the per-round ratios
        numerator/denominator and its noise (:func:`prunenet.timing.ratio`), and each one's
        median milliseconds."""
        import mxnet as mx
        from .bench import _first_line
        from .timing import ratio, time_until_stable
        try:
            timings = time_until_stable(calls, min_repeats=self.repeats, warmup=self.warmup,
                                        budget_s=budget_s)
        except mx.base.MXNetError as err:
            raise PrunenetError(f"MXNet cannot run the network in {self.dtype} on {self.ctx}: "
                                f"{_first_line(err)}; measure another dtype or device") from None
        out = ratio(timings.seconds[numerator], timings.seconds[denominator])
        out.update({f"{k}_ms": float(np.median(v)) * 1e3 for k, v in timings.seconds.items()})
        return out


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


# -- the table ------------------------------------------------------------------------------------
def default_table_path(device: str, batch_size: int, dtype: str = "float32",
                       cache_dir: Optional[str] = None) -> str:
    """``$PRUNENET_CACHE`` (or ``~/.cache/prunenet``) ``/latency-<device>-b<batch>-<dtype>.json``;
    on the CPU the thread count is part of the name."""
    folder = os.path.expanduser(cache_dir or os.environ.get(
        "PRUNENET_CACHE", os.path.join("~", ".cache", "prunenet")))
    if device == "cpu":
        device = f"cpu{_threads()}t"
    device = re.sub(r"[^A-Za-z0-9.]+", "-", device).strip("-")  # a GPU's name, as a file name
    return os.path.join(folder, f"latency-{device}-b{batch_size}-{dtype}.json")


def _threads() -> str:
    return os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1))


def _processor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), "")
    except OSError:
        return ""


def _point(in_width: int, out_width: int) -> str:
    return f"{in_width},{out_width}"


# The reference unit, timed with every batch of measurements: entries are stored as multiples of
# its latency in their batch, so that entries timed minutes apart on a busy machine compare.
REFERENCE = (UnitSpec("conv", kernel=(3, 3), pad=(1, 1), in_hw=(28, 28),
                      post=("Activation(act_type=relu)",)), 64, 64)


def _check_writable(path: str) -> None:
    """Refuse a latency table that could not be saved where it is to go."""
    import tempfile
    from .outputs import write_error
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise PrunenetError(f"latency table {path} is a folder; give the file")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise PrunenetError(f"{write_error(err, folder, 'latency table ' + path)}; set "
                            f"PRUNENET_CACHE to a writable folder or give --latency-table "
                            f"FILE") from None


class LatencyTable:
    """Measured latencies of units and networks for one device, batch size and dtype; missing
    entries are measured by ``timer`` (none: a missing entry is an error).

    Every batch of measurements also times :data:`REFERENCE`, and each entry is stored as a
    multiple of the reference's latency in its batch: a machine that is busier for a while slows
    an entry and its reference alike. :attr:`reference_ms`, the reference's median latency over
    all batches, converts them to milliseconds."""

    def __init__(self, device: str = "cpu", batch_size: int = 32, dtype: str = "float32",
                 timer: Optional[UnitTimer] = None, path: Optional[str] = None) -> None:
        self.device, self.batch_size, self.dtype = device, int(batch_size), dtype
        self.threads = _threads() if device == "cpu" else ""
        self.units: Dict[str, Dict[str, float]] = {}  # unit key -> {"in,out": latency}
        self.networks: Dict[str, dict] = {}  # network key -> record with "latency"
        self.references: List[float] = []  # ms of the reference unit, one per batch
        self.noise: List[float] = []  # the timing rule's largest noise, one per batch
        self.timer, self.path = timer, path
        self._progress = None
        self.measured = 0  # units and networks timed by this object

    @property
    def reference_ms(self) -> float:
        """Milliseconds per unit of the stored latencies."""
        return float(np.median(self.references)) if self.references else float("nan")

    # -- opening and saving ------------------------------------------------------------------
    @classmethod
    def open(cls, path: Optional[str] = None, gpus: str = "", batch_size: int = 32,
             dtype: str = "float32", measure: bool = True, repeats: int = 5,
             warmup: int = 2) -> "LatencyTable":
        """The table cached at ``path`` (default :func:`default_table_path`), or a new one that
        will be saved there; it measures what it lacks on the device ``gpus`` names (``""``: the
        CPU) unless ``measure`` is False. The file must be for this device, batch size, dtype."""
        from .bench import check_settings, device
        from .devices import device_model
        check_settings(batch_size, dtype, repeats, warmup)
        ctx = device(gpus)
        name = device_model(ctx)  # a GPU's model name: a table is not reused on another
        path = path or default_table_path(name, batch_size, dtype)
        timer = UnitTimer(ctx, batch_size, dtype, repeats, warmup) if measure else None
        table = cls(name, batch_size, dtype, timer=timer, path=path)
        if measure:  # before minutes of measuring, not at the save after them
            _check_writable(path)
        if os.path.exists(path):
            table._load(path)
        elif not measure:
            raise PrunenetError(f"latency table {path} does not exist; measure it first (open it "
                                f"with measuring on)")
        return table

    def _load(self, path: str) -> None:
        from .files import read_json
        doc = read_json(path, "latency table")
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise PrunenetError(f"{path} is not a prunenet latency table ({FORMAT}); give "
                                f"another table file")
        wrong = _wrong_table_field(doc)
        if wrong:
            raise PrunenetError(f"latency table {path} is malformed ({wrong}); delete it to "
                                f"measure again")
        want = (self.device, self.batch_size, self.dtype, self.threads)
        got = (doc["device"], doc["batch_size"], doc["dtype"], doc.get("threads", ""))
        if got != want:
            raise PrunenetError(
                f"latency table {path} is for {_describe(*got)}, not {_describe(*want)}; "
                f"latency depends on all four: use another table file")
        self.units = {k: {p: float(v) for p, v in d.items()} for k, d in doc["units"].items()}
        self.networks = dict(doc["networks"])
        self.references = [float(v) for v in doc["references_ms"]]
        self.noise = [float(v) if isinstance(v, (int, float)) else None
                      for v in doc.get("noise", [])]

    def to_json(self) -> dict:
        return {"format": FORMAT, "device": self.device, "batch_size": self.batch_size,
                "dtype": self.dtype, "threads": self.threads, "processor": _processor(),
                "unit": "latency of the reference unit in the same batch of timings",
                "reference": f"{REFERENCE[0].key}@{_point(*REFERENCE[1:])}",
                "reference_ms": round(self.reference_ms, 4),
                "references_ms": [round(v, 4) for v in self.references],
                "noise": self.noise,
                "units": self.units, "networks": self.networks}

    def save(self, path: Optional[str] = None) -> str:
        """Write the table (atomically) to ``path`` or where it was opened from."""
        from .files import write_json
        path = path or self.path
        if not path:
            raise ValueError("the table has no path; pass one")
        write_json(path, self.to_json())
        return path

    # -- lookups and measuring ----------------------------------------------------------------
    def get(self, spec: UnitSpec, in_width: int, out_width: int) -> Optional[float]:
        """The unit's latency, in reference units (× :attr:`reference_ms` for milliseconds)."""
        return self.units.get(spec.key, {}).get(_point(in_width, out_width))

    def network(self, key: str) -> Optional[dict]:
        """The record of a measured network: its ``latency`` in reference units, ``widths``."""
        return self.networks.get(key)

    def ensure(self, points: Iterable[Tuple[UnitSpec, int, int]],
               networks: Optional[Dict[str, Tuple[object, Sequence[int], dict]]] = None) -> None:
        """Measure, side by side with the reference, the ``(unit, in width, out width)`` points
        and the ``networks`` (key -> (symbol, image shape, record fields)) the table lacks."""
        units = {f"{s.key}@{_point(i, o)}": (s, i, o) for s, i, o in points
                 if self.get(s, i, o) is None}
        nets = {k: v for k, v in (networks or {}).items() if k not in self.networks}
        if not units and not nets:
            return
        timer = self._timer(next(iter(units.values()), None))
        self.progress("measuring")  # starts the stage's clock
        ref_key = "reference"
        calls = {k: timer.unit_call(*p) for k, p in units.items()}
        calls.update({f"network:{k}": timer.network_call(sym, shape)
                      for k, (sym, shape, _) in nets.items()})
        calls[ref_key] = timer.unit_call(*REFERENCE)
        what = f"{len(units)} unit(s)" + (f" and {len(nets)} network(s)" if nets else "")

        def on_round(t) -> None:
            self.progress(f"measuring {what}, round {t.repeats} (fastest within "
                          f"{pct(t.worst)} so far); {self.measured} timed before")
        times, timings = timer.time(calls, on_round=on_round)
        usual = float(np.median(self.references[-5:])) if self.references else None
        for _ in range(_RETRIES if usual else 0):  # a passing disturbance: once more
            if abs(math.log(times[ref_key] / usual)) <= math.log(_DRIFT):
                break
            again, timings_again = timer.time(calls, on_round=on_round)
            if abs(math.log(again[ref_key] / usual)) < abs(math.log(times[ref_key] / usual)):
                times, timings = again, timings_again
        ref = times[ref_key]
        self.references.append(ref)
        self.noise.append(round(timings.worst, 4) if math.isfinite(timings.worst) else None)
        for k, (spec, i, o) in units.items():
            self.units.setdefault(spec.key, {})[_point(i, o)] = round(times[k] / ref, 6)
        for k, (_, shape, record) in nets.items():
            self.networks[k] = dict(record, input_shape=list(shape),
                                    latency=round(times[f"network:{k}"] / ref, 6),
                                    latency_ms=round(times[f"network:{k}"], 4))
        self.measured += len(calls)
        self.progress(f"{self.measured} timings so far, the last batch's fastest within "
                      f"{pct(timings.worst)}")
        self._autosave()

    def add_network(self, key: str, record: dict) -> None:
        """Store a network measured elsewhere (``record`` with its ``latency`` in reference
        units), and save."""
        self.networks[key] = dict(record)
        self._autosave()

    @property
    def progress(self):
        """A progress line on stderr while the table has been measuring for over 10 s."""
        if self._progress is None:
            from .timing import Progress
            where = _describe(self.device, self.batch_size, self.dtype, self.threads)
            self._progress = Progress(f"latency table ({where})")
        return self._progress

    def _timer(self, point) -> UnitTimer:
        if self.timer is None:
            what = f"unit {point[0].key} at widths {point[1]}, {point[2]}" if point else \
                "a network"
            raise PrunenetError(f"latency table {self.path or '(in memory)'} has no entry for "
                                f"{what} and is not allowed to measure; open it with measuring on")
        return self.timer

    def _autosave(self) -> None:
        if self.path:
            self.save()


def _wrong_table_field(doc: dict) -> Optional[str]:
    """What is wrong with the fields of a latency table's JSON (None: nothing)."""
    def latency(v) -> bool:  # a number >= 0 that converts to a finite float
        try:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and \
                0 <= float(v) < math.inf
        except OverflowError:
            return False

    for key, kind in (("device", str), ("dtype", str), ("threads", str), ("units", dict),
                      ("networks", dict), ("references_ms", list)):
        if not isinstance(doc.get(key, "" if key == "threads" else None), kind):
            return f"{key} is not a {kind.__name__}"
    if type(doc.get("batch_size")) is not int or doc["batch_size"] < 1:
        return f"batch_size {doc.get('batch_size')!r} is not a whole number from 1"
    if not all(latency(v) and v > 0 for v in doc["references_ms"]):
        return "references_ms holds a value that is not a positive number"
    for key, points in doc["units"].items():
        if not isinstance(points, dict) or not all(
                re.fullmatch(r"[1-9][0-9]*,[1-9][0-9]*", p) and latency(v)
                for p, v in points.items()):
            return f"unit {key[:60]!r} needs \"in,out\" widths mapped to latencies >= 0"
    for key, record in doc["networks"].items():
        if not isinstance(record, dict) or not (latency(record.get("latency")) and
                                                record["latency"] > 0):
            return f"network {key[:60]!r} has no positive latency"
    if (doc["units"] or doc["networks"]) and not doc["references_ms"]:
        return "it has entries but no references_ms to scale them by"
    return None


def _describe(device, batch_size, dtype, threads) -> str:
    return f"{device}, batch {batch_size}, {dtype}" + (f", {threads} threads" if threads else "")


# -- the cost model -------------------------------------------------------------------------------
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
        from .select import block_size
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
    from .select import InfeasibleTargetError
    from .surgery import widths_of
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
                if r["measured"] >= target - r["noise"] - sel.granularity:
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
