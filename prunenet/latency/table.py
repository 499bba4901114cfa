"""The latency table: per-unit and whole-network latencies of one device, batch size, dtype and
thread count, cached as one JSON file and extended as the search asks."""
from __future__ import annotations

import math
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import PrunenetError
from .timing import pct
from .timer import UnitTimer
from .units import UnitSpec


FORMAT = "prunenet-latency-table/1"


_DRIFT, _RETRIES = 1.1, 2  # a batch whose reference is off by more is measured again


def default_table_path(device: str, batch_size: int, dtype: str = "float32",
                       cache_dir: Optional[str] = None, runtime: str = "mxnet") -> str:
    """``$PRUNENET_CACHE`` (or ``~/.cache/prunenet``) ``/latency-<device>-b<batch>-<dtype>.json``;
    on the CPU the thread count is part of the name; a runtime other than MXNet (its key, e.g.
    ``onnxruntime/CPUExecutionProvider``) is too, first."""
    folder = os.path.expanduser(cache_dir or os.environ.get(
        "PRUNENET_CACHE", os.path.join("~", ".cache", "prunenet")))
    if device == "cpu":
        device = f"cpu{_threads()}t"
    if runtime != "mxnet":
        device = f"{runtime}-{device}"
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
    from ..io.outputs import write_error
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
    """Measured latencies of units and networks for one runtime (and its provider), device,
    batch size, dtype and thread count; missing entries are measured by ``timer`` (none: a
    missing entry is an error).

    Every batch of measurements also times :data:`REFERENCE`, and each entry is stored as a
    multiple of the reference's latency in its batch: a machine that is busier for a while slows
    an entry and its reference alike. :attr:`reference_ms`, the reference's median latency over
    all batches, converts them to milliseconds."""

    def __init__(self, device: str = "cpu", batch_size: int = 32, dtype: str = "float32",
                 timer: Optional[UnitTimer] = None, path: Optional[str] = None,
                 runtime: str = "mxnet") -> None:
        self.device, self.batch_size, self.dtype = device, int(batch_size), dtype
        self.runtime = runtime  # a runtime's key: mxnet, onnxruntime/CPUExecutionProvider
        self.threads = _threads() if device == "cpu" else ""
        self.units: Dict[str, Dict[str, float]] = {}  # unit key -> {"in,out": latency}
        self.networks: Dict[str, dict] = {}  # network key -> record with "latency"
        self.references: List[float] = []  # ms of the reference unit, one per batch
        self.noise: List[float] = []  # the timing rule's largest noise, one per batch
        self.timer, self.path = timer, path
        self._progress = None
        self.measured = 0  # units and networks timed by this object
        self._read = 0  # references (and noise) read from the file: the ones after are ours

    @property
    def reference_ms(self) -> float:
        """Milliseconds per unit of the stored latencies."""
        return float(np.median(self.references)) if self.references else float("nan")

    # -- opening and saving ------------------------------------------------------------------
    @classmethod
    def open(cls, path: Optional[str] = None, gpus: str = "", batch_size: int = 32,
             dtype: str = "float32", measure: bool = True, repeats: int = 5,
             warmup: int = 2, runtime: str = "mxnet") -> "LatencyTable":
        """The table cached at ``path`` (default :func:`default_table_path`), or a new one that
        will be saved there; it measures what it lacks in ``runtime`` (:mod:`prunenet.latency.runtimes`)
        on the device ``gpus`` names (``""``: the CPU) unless ``measure`` is False. The file must
        be for this runtime, device, batch size, dtype and thread count."""
        from .throughput import check_settings, device
        from ..io.devices import device_model
        from .runtimes import get_runtime
        check_settings(batch_size, dtype, repeats, warmup)
        ctx = device(gpus)
        name = device_model(ctx)  # a GPU's model name: a table is not reused on another
        key = get_runtime(runtime, ctx, dtype).key  # with its provider
        path = path or default_table_path(name, batch_size, dtype, runtime=key)
        timer = UnitTimer(ctx, batch_size, dtype, repeats, warmup, runtime) if measure else None
        table = cls(name, batch_size, dtype, timer=timer, path=path, runtime=key)
        if measure:  # before minutes of measuring, not at the save after them
            _check_writable(path)
        if os.path.exists(path):
            table._load(path)
        elif not measure:
            raise PrunenetError(f"latency table {path} does not exist; measure it first (open it "
                                f"with measuring on)")
        return table

    def _load(self, path: str) -> None:
        from ..io.files import read_json
        doc = read_json(path, "latency table")
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise PrunenetError(f"{path} is not a prunenet latency table ({FORMAT}); give "
                                f"another table file")
        wrong = _wrong_table_field(doc)
        if wrong:
            raise PrunenetError(f"latency table {path} is malformed ({wrong}); delete it to "
                                f"measure again")
        want = (self.device, self.batch_size, self.dtype, self.threads, self.runtime)
        got = (doc["device"], doc["batch_size"], doc["dtype"], doc.get("threads", ""),
               doc.get("runtime", "mxnet"))  # tables from before runtimes were MXNet's
        if got != want:
            raise PrunenetError(
                f"latency table {path} is for {_describe(*got)}, not {_describe(*want)}; "
                f"latency depends on all five: use another table file")
        self.units = {k: {p: float(v) for p, v in d.items()} for k, d in doc["units"].items()}
        self.networks = dict(doc["networks"])
        self.references = [float(v) for v in doc["references_ms"]]
        self._read = len(self.references)
        self.noise = [float(v) if isinstance(v, (int, float)) else None
                      for v in doc.get("noise", [])]
        self.noise += [None] * (len(self.references) - len(self.noise))  # one per reference

    def to_json(self) -> dict:
        return {"format": FORMAT, "runtime": self.runtime, "device": self.device, "batch_size": self.batch_size,
                "dtype": self.dtype, "threads": self.threads, "processor": _processor(),
                "unit": "latency of the reference unit in the same batch of timings",
                "reference": f"{REFERENCE[0].key}@{_point(*REFERENCE[1:])}",
                "reference_ms": round(self.reference_ms, 4),
                "references_ms": [round(v, 4) for v in self.references],
                "noise": self.noise,
                "units": self.units, "networks": self.networks}

    def save(self, path: Optional[str] = None) -> str:
        """Write the table (atomically) to ``path`` or where it was opened from; there, merged
        with what other processes have saved since this one read it: their units, networks
        and reference timings are kept beside this one's (an entry both have keeps this
        one's), under a lock beside the file, so two prunes sharing a table lose neither's
        measurements. A file there that is not a table for the same settings is refused."""
        from ..io.files import write_json
        from ..io.outputs import hold_lock, lock_path
        path = path or self.path
        if not path:
            raise ValueError("the table has no path; pass one")
        with hold_lock(lock_path(path), f"latency table {path}", wait=True):
            if path == self.path and os.path.exists(path):
                self._merge(path)
            write_json(path, self.to_json())
            self._read = len(self.references)
        return path

    def _merge(self, path: str) -> None:
        """Take in what the table file at ``path`` holds that this object lacks."""
        disk = LatencyTable(self.device, self.batch_size, self.dtype, runtime=self.runtime)
        disk._load(path)
        for key, points in disk.units.items():
            mine = self.units.setdefault(key, {})
            for point, value in points.items():
                mine.setdefault(point, value)
        for key, record in disk.networks.items():
            self.networks.setdefault(key, record)
        self.references = disk.references + self.references[self._read:]
        self.noise = disk.noise + self.noise[self._read:]

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
            where = _describe(self.device, self.batch_size, self.dtype, self.threads,
                              self.runtime)
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

    for key, kind in (("runtime", str), ("device", str), ("dtype", str), ("threads", str), ("units", dict),
                      ("networks", dict), ("references_ms", list)):
        if not isinstance(doc.get(key, {"threads": "", "runtime": "mxnet"}.get(key)), kind):
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


def _describe(device, batch_size, dtype, threads, runtime="mxnet") -> str:
    from .runtimes import runtime_label
    return (f"{device}, batch {batch_size}, {dtype}" + (f", {threads} threads" if threads else "")
            + ("" if runtime == "mxnet" else f", {runtime_label(runtime)}"))
