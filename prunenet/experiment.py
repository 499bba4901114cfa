"""Experiment definitions: one small JSON file per experiment of the paper, run by one runner.

    prunenet experiment CONFIG [--dry-run] [--smoke] [--only NAME] [--out DIR] [--data-dir DIR]
    prunenet experiment table RESULTS.csv [MORE.csv ...]

A config names the model, its pretrained source, the method, objective and targets (each target
is one run), the GCP schedule, the fine-tuning recipe, the data, batch size, GPUs and kvstore
(:data:`SCHEMA`). A run goes: pretrained GluonCV network -> :func:`prunenet.runs.data_run`
(pruned, fine-tuned, evaluated) -> throughput next to the unpruned network -> published to the
experiment's zoo -> one row in ``OUT/results.csv`` (the shared results schema). A finished run is
skipped, an interrupted one resumed. ``kind: transfer`` configs fine-tune the pruned networks of
another experiment on an image folder with a new classifier (Caltech-256, the paper's Table 6).

``--dry-run`` checks the config, builds the network at random weights and computes the MACs at
each target (with the data-free ``uniform`` selection); ``--smoke`` runs everything at 32 px for
a few iterations on generated data and a random network.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .distributed import KVSTORES, LOCAL_KVSTORES
from .errors import PrunenetError
from .records import (PARAMS_FILE, REPORT_FILE, RUN_FILE, SHAPES_FILE, has_result,
                      put_result, read_results)
from .tied import DEFAULT_RULE, RULES

__all__ = ["Experiment", "load_config", "runs_of", "dry_run", "run_experiment", "results_table",
           "make_smoke_records", "make_smoke_folder", "caltech_split",
           "SCHEMA"]

KINDS = ("prune", "transfer")
DATASETS = ("imagenet", "caltech256")
PRETRAINED_GLUONCV = "gluoncv"
SMOKE_SIZE = 32
SMOKE_BATCH = 8
TRANSFER_CHECKPOINT_EVERY = 500  # iterations

_NUMBER, _INT, _STR, _BOOL, _LIST, _DICT = "number", "whole number", "string", "boolean", \
    "list", "object"
_REG = "number or \"auto\""
# key -> (type, required, check, default); checks return an error text or None
_POS = (lambda v: None if v > 0 else "must be above 0")
_NONNEG = (lambda v: None if v >= 0 else "must be at least 0")
_ONE = (lambda v: None if v >= 1 else "must be at least 1")
FINETUNE_SCHEMA = {
    "epochs": (_NUMBER, True, _NONNEG, None),
    "lr": (_NUMBER, True, _POS, None),
    "warmup_epochs": (_NUMBER, False, _NONNEG, 0.0),
    "label_smoothing": (_NUMBER, False, lambda v: None if 0 <= v < 1 else "must be in [0, 1)",
                        0.1),
    "distill": (_BOOL, False, None, False),
}
DATA_SCHEMA = {
    "dataset": (_STR, True, lambda v: None if v in DATASETS else
                f"must be one of {', '.join(DATASETS)}", None),
    "data_dir": (_STR, True, None, None),
    "input_size": (_INT, False, _ONE, 224),
    "train_per_class": (_INT, False, _ONE, 60),
    "num_workers": (_INT, False, _NONNEG, None),  # decoding threads; None: the machine's cores
}
BENCH_SCHEMA = {"batch_size": (_INT, False, _ONE, 64), "repeats": (_INT, False, _ONE, 10)}
SCHEMA = {
    "name": (_STR, True, lambda v: None if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}", v)
             else "must be letters, digits, '.', '_' and '-'", None),
    "description": (_STR, False, None, ""),
    "kind": (_STR, False, lambda v: None if v in KINDS else f"must be one of {', '.join(KINDS)}",
             "prune"),
    "model": (_STR, True, None, None),
    "pretrained": (_STR, True, None, None),
    "method": (_STR, True, None, None),
    "objective": (_STR, True, None, None),
    "targets": (_LIST, True, None, None),
    "steps": (_INT, False, _ONE, 3),
    "reg": (_REG, False, lambda v: None if v == "auto" or v >= 0 else "must be at least 0",
            "auto"),
    "stream_score": (_STR, False, lambda v: None if v in RULES else
                     f"must be one of {', '.join(RULES)}", DEFAULT_RULE),
    "epochs_per_step": (_NUMBER, False, _POS, 1.0),
    "debias_epochs": (_NUMBER, False, _NONNEG, None),
    "lr": (_NUMBER, False, _POS, 0.01),
    "finetune": (_DICT, True, FINETUNE_SCHEMA, None),
    "data": (_DICT, True, DATA_SCHEMA, None),
    "batch_size": (_INT, True, _ONE, None),
    "gpus": (_STR, False, None, ""),
    "kvstore": (_STR, False, lambda v: None if v in KVSTORES else
                f"must be one of {', '.join(KVSTORES)}", "device"),
    "seed": (_INT, False, _NONNEG, 0),
    "round_to": (_INT, False, _ONE, 8),
    "min_width": (_INT, False, _ONE, 8),
    "latency_batch_size": (_INT, False, _ONE, 64),
    "bench": (_DICT, False, BENCH_SCHEMA, None),
    "source": (_STR, False, None, None),
    "include_unpruned": (_BOOL, False, None, False),
}


@dataclass
class Experiment:
    """A checked experiment config (see :data:`SCHEMA`); ``path`` is the file it came from."""

    path: str
    name: str
    model: str
    pretrained: str
    method: str
    objective: str
    targets: List[float]
    finetune: dict
    data: dict
    batch_size: int
    description: str = ""
    kind: str = "prune"
    steps: int = 3
    reg: object = "auto"  # λ, or "auto" (the paper's rule: chosen by the debias loss)
    stream_score: str = DEFAULT_RULE
    epochs_per_step: float = 1.0
    debias_epochs: Optional[float] = None
    lr: float = 0.01
    gpus: str = ""
    kvstore: str = "device"
    seed: int = 0
    round_to: int = 8
    min_width: int = 8
    latency_batch_size: int = 64
    bench: dict = field(default_factory=dict)
    source: Optional[str] = None
    include_unpruned: bool = False


@dataclass
class Run:
    """One run of an experiment: a target (``None``: the unpruned network, transfer only)."""

    name: str
    target: Optional[float]


# -- reading and checking ------------------------------------------------------------------------
def _typed(value, kind: str) -> bool:
    if kind == _REG:
        return value == "auto" or _typed(value, _NUMBER)
    if kind == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {_STR: str, _BOOL: bool, _LIST: list, _DICT: dict}[kind])


def _check_object(doc, schema: dict, path: str, where: str = "") -> dict:
    def fail(key: str, why: str) -> PrunenetError:
        return PrunenetError(f"experiment config {path}: key {where}{key} {why}")
    out = {}
    unknown = sorted(set(doc) - set(schema))
    if unknown:
        raise fail(unknown[0], f"is not a known key (known: {', '.join(sorted(schema))})")
    for key, (kind, required, check, default) in schema.items():
        if key not in doc or doc[key] is None and not required:
            if required:
                raise fail(key, "is missing")
            out[key] = default
            continue
        value = doc[key]
        if not _typed(value, kind):
            raise fail(key, f"must be a {kind}, not {json.dumps(value)[:40]}")
        if kind == _DICT:
            value = _check_object(value, check, path, f"{where}{key}.")
        elif check is not None:
            why = check(value)
            if why:
                raise fail(key, f"{why} (it is {json.dumps(value)[:40]})")
        out[key] = value
    return out


def load_config(path: str) -> Experiment:
    """Read and check an experiment config; any problem is one :class:`PrunenetError` line that
    names the file and the key."""
    from .costs import OBJECTIVES
    from .methods import METHODS, TRAINED
    from .models import model_names
    if not os.path.isfile(path):
        raise PrunenetError(f"experiment config {path} " + (
            "is a folder; give a config file" if os.path.isdir(path) else "does not exist"))
    def no_repeats(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise PrunenetError(f"experiment config {path}: key {key} is given twice")
            seen.add(key)
        return dict(pairs)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f, object_pairs_hook=no_repeats)
    except (ValueError, UnicodeDecodeError) as err:
        raise PrunenetError(f"experiment config {path} is not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise PrunenetError(f"experiment config {path} must be a JSON object of settings")
    values = _check_object(doc, SCHEMA, path)

    def fail(key: str, why: str) -> PrunenetError:
        return PrunenetError(f"experiment config {path}: key {key} {why}")
    if values["model"] not in model_names():
        raise fail("model", f"names no GluonCV model ({values['model']!r})")
    if values["method"] not in METHODS + TRAINED:
        raise fail("method", f"must be one of {', '.join(TRAINED + METHODS)} "
                             f"(it is {values['method']!r})")
    if values["objective"] not in OBJECTIVES:
        raise fail("objective", f"must be one of {', '.join(sorted(OBJECTIVES))} "
                                f"(it is {values['objective']!r})")
    targets = values["targets"]
    if not targets:
        raise fail("targets", "is empty; give at least one fraction in (0, 1)")
    for t in targets:
        if not _typed(t, _NUMBER) or not 0.0 < t < 1.0:
            raise fail("targets", f"holds {json.dumps(t)}, not a fraction strictly between 0 and 1")
    if len(set(targets)) != len(targets):
        raise fail("targets", "holds a target twice")
    gpus = values["gpus"]
    if gpus and not re.fullmatch(r"\d+(,\d+)*", gpus):
        raise fail("gpus", f"must be GPU ids such as \"0,1\" or \"\" for the CPU (it is {gpus!r})")
    values["bench"] = values["bench"] or {k: d for k, (_, _, _, d) in BENCH_SCHEMA.items()}
    if values["kind"] == "transfer":
        if not values["source"]:
            raise fail("source", "is missing: a transfer names the experiment whose pruned "
                                 "networks it fine-tunes")
        if values["data"]["dataset"] != "caltech256":
            raise fail("data.dataset", "must be caltech256 for a transfer")
        source = os.path.join(os.path.dirname(os.path.abspath(path)), values["source"] + ".json")
        if not os.path.isfile(source):
            raise fail("source", f"names experiment {values['source']!r}, whose config "
                                 f"{source} does not exist")
        with open(source, encoding="utf-8") as f:
            theirs = json.load(f).get("targets", [])
        if not set(targets) <= set(theirs):
            raise fail("targets", f"holds {sorted(set(targets) - set(theirs))[0]}, which "
                                  f"experiment {values['source']} does not run")
    elif values["source"] is not None or values["include_unpruned"]:
        raise fail("source" if values["source"] is not None else "include_unpruned",
                   "belongs to transfer configs (kind: transfer) only")
    elif values["data"]["dataset"] != "imagenet":
        raise fail("data.dataset", "must be imagenet for a pruning experiment")
    elif "train_per_class" in doc["data"]:
        raise fail("data.train_per_class", "belongs to transfer configs (Caltech-256) only")
    return Experiment(path=path, **values)


def runs_of(exp: Experiment) -> List[Run]:
    """The runs of ``exp``: one per target (plus the unpruned network for a transfer)."""
    runs = [Run(f"{exp.name}-{t:g}", float(t)) for t in exp.targets]
    if exp.include_unpruned:
        runs.insert(0, Run(f"{exp.name}-unpruned", None))
    return runs


def _selected(exp: Experiment, only: Optional[str]) -> List[Run]:
    runs = runs_of(exp)
    if only is None:
        return runs
    chosen = [r for r in runs if fnmatch.fnmatch(r.name, only)]
    if not chosen:
        raise PrunenetError(f"--only {only} matches no run of {exp.path}; its runs are "
                            f"{', '.join(r.name for r in runs)}")
    return chosen


# -- dry run -------------------------------------------------------------------------------------
def dry_run(exp: Experiment, only: Optional[str] = None, log=print, _cache=None) -> List[dict]:
    """Build ``exp``'s network at random weights and compute the MACs and parameters at each
    target with the data-free ``uniform`` selection; no data, no training. The latency
    objective's MACs are those of the same fraction of the FLOPs (its latency is measured only
    when it runs)."""
    from .costs import cost_model, count
    from .graph import trace
    from .methods import DATA_FREE
    from .models import input_shape, load_model
    from .surgery import network_params, widths_of
    size = exp.data["input_size"]
    classes = 257 if exp.kind == "transfer" else None
    cache = _cache if _cache is not None else {}
    key = (exp.model, size, classes)
    if key not in cache:
        net = load_model(exp.model, classes=classes, input_size=size)
        graph = trace(net, input_shape(exp.model, size))
        cache[key] = (graph, network_params(net), count(graph))
    graph, params, before = cache[key]
    objective = "flops" if exp.objective == "latency" else exp.objective
    cost = cost_model(graph, objective)
    out = []
    for run in _selected(exp, only):
        if run.target is None:
            after, achieved = before, 1.0
        else:
            try:
                selection = DATA_FREE["uniform"](graph, params, cost, run.target,
                                                 round_to=exp.round_to, min_width=exp.min_width)
            except PrunenetError as err:
                raise PrunenetError(f"experiment config {exp.path}: key targets: {err}") from None
            after, achieved = count(graph, widths_of(selection.keep)), selection.achieved
        row = {"run": run.name, "target": run.target, "achieved": achieved,
               "macs": after["macs"], "params": after["params"],
               "macs_before": before["macs"], "params_before": before["params"]}
        out.append(row)
        if log:
            log(f"{run.name}: {exp.model} {exp.method}/{exp.objective} at "
                f"{'the full width' if run.target is None else run.target}: "
                f"{after['macs'] / 1e9:.3f} GMACs ({after['macs'] / before['macs']:.4f} of "
                f"{before['macs'] / 1e9:.3f}), {after['params'] / 1e6:.2f} M params "
                f"(uniform selection, {size}x{size}); not run (--dry-run)")
    return out


# -- smoke data ----------------------------------------------------------------------------------
def _jpeg(rng, label: int, size: int) -> bytes:
    import cv2
    import numpy as np
    base = np.zeros((size, size, 3), np.float32)
    base[..., label % 3] = 160 + 20 * (label // 3)
    image = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def make_smoke_records(folder: str, classes: int = 4, train_per_class: int = 8,
                       val_per_class: int = 2, size: int = 40, seed: int = 0) -> str:
    """Write ``train.rec``/``.idx`` and ``val.rec``/``.idx`` of generated JPEGs into ``folder``
    (ImageNet's layout, for smoke runs); returns ``folder``."""
    import mxnet as mx
    import numpy as np
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(seed)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        rec = mx.recordio.MXIndexedRecordIO(os.path.join(folder, split + ".idx"),
                                            os.path.join(folder, split + ".rec"), "w")
        i = 0
        for label in range(classes):
            for _ in range(per_class):
                header = mx.recordio.IRHeader(0, float(label), i, 0)
                rec.write_idx(i, mx.recordio.pack(header, _jpeg(rng, label, size)))
                i += 1
        rec.close()
    return folder


def make_smoke_folder(folder: str, classes: int = 3, per_class: int = 62, size: int = 40,
                      seed: int = 0) -> str:
    """Write ``folder/<class>/*.jpg`` of generated images (Caltech-256's layout); returns it."""
    import numpy as np
    rng = np.random.RandomState(seed)
    for label in range(classes):
        sub = os.path.join(folder, f"{label + 1:03d}.class{label}")
        os.makedirs(sub, exist_ok=True)
        for i in range(per_class):
            with open(os.path.join(sub, f"{i:04d}.jpg"), "wb") as f:
                f.write(_jpeg(rng, label, size))
    return folder


# -- Caltech-256 ---------------------------------------------------------------------------------
def caltech_split(source: str, out: str, train_per_class: int = 60, seed: int = 0) -> str:
    """Split the class folders of ``source`` (Caltech-256's ``256_ObjectCategories``) into
    ``out/train`` (``train_per_class`` random images of each class) and ``out/val`` (the rest),
    as symbolic links; every class needs at least that many images. Returns ``out``."""
    import numpy as np
    from .data import IMAGE_EXTENSIONS
    source = os.path.abspath(os.path.expanduser(source))
    if not os.path.isdir(source):
        raise PrunenetError(f"Caltech folder {source} does not exist; give data.data_dir (or "
                            f"--data-dir) the folder of its class sub-folders")
    classes = sorted(d for d in os.listdir(source)
                     if not d.startswith(".") and os.path.isdir(os.path.join(source, d)))
    if not classes:
        raise PrunenetError(f"Caltech folder {source} has no class sub-folders")
    files = {}
    for c in classes:
        images = sorted(n for n in os.listdir(os.path.join(source, c))
                        if n.lower().endswith(IMAGE_EXTENSIONS))
        if len(images) < train_per_class:
            raise PrunenetError(f"Caltech folder {source}: class {c} has {len(images)} images, "
                                f"fewer than the {train_per_class} training images per class "
                                f"the protocol takes; remove the class or lower "
                                f"data.train_per_class")
        files[c] = images
    stamp = os.path.join(out, "split.json")
    wanted = {"source": source, "train_per_class": train_per_class, "seed": seed,
              "classes": len(classes)}
    if os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f) == wanted:
                return out
    from .files import staged_dir, write_json
    with staged_dir(out, overwrite=True) as stage:
        for i, c in enumerate(classes):
            order = np.random.RandomState([seed, i]).permutation(len(files[c]))
            for split, part in (("train", order[:train_per_class]),
                                ("val", order[train_per_class:])):
                os.makedirs(os.path.join(stage, split, c), exist_ok=True)
                for j in part:
                    os.symlink(os.path.join(source, c, files[c][j]),
                               os.path.join(stage, split, c, files[c][j]))
        write_json(os.path.join(stage, "split.json"), wanted)
    return out


# -- results -------------------------------------------------------------------------------------


# -- running -------------------------------------------------------------------------------------
@dataclass
class _Settings:
    """What a run uses after smoke-mode overrides."""

    input_size: int
    batch_size: int
    params: Optional[str]
    gpus: str
    data_dir: str
    steps: int
    bench_batch: int
    bench_repeats: int
    latency_batch_size: int
    smoke: bool


def _settings(exp: Experiment, out: str, smoke: bool, data_dir: Optional[str]) -> _Settings:
    if not smoke:
        return _Settings(exp.data["input_size"], exp.batch_size, None, exp.gpus,
                         data_dir or exp.data["data_dir"], exp.steps, exp.bench["batch_size"],
                         exp.bench["repeats"], exp.latency_batch_size, False)
    if data_dir is None:  # generate the smoke data once
        data_dir = os.path.join(out, "smoke-data")
        if exp.kind == "transfer":
            if not os.path.isdir(data_dir):
                make_smoke_folder(data_dir)
        elif not os.path.exists(os.path.join(data_dir, "val.idx")):
            make_smoke_records(data_dir)
    return _Settings(SMOKE_SIZE, SMOKE_BATCH, None, "", data_dir, 1, 4, 2, 4, True)


def _pretrained(exp: Experiment, s: _Settings) -> Optional[str]:
    if s.smoke:
        return None  # a seeded random network: no download
    if exp.pretrained == PRETRAINED_GLUONCV:
        from .models import pretrained_params
        return pretrained_params(exp.model)
    from .files import require_file
    return require_file(os.path.expanduser(exp.pretrained), "pretrained params file")


def _preflight(exp: Experiment, s: _Settings, out: str, runs: List[Run]) -> None:
    """Refuse what would fail later, before any training: a distributed transfer or latency
    experiment, missing or mismatched data, a transfer's missing source runs."""
    from . import data as datasets
    if exp.kvstore not in LOCAL_KVSTORES and (exp.kind == "transfer"
                                              or exp.objective == "latency"):
        what = "a transfer" if exp.kind == "transfer" else "the latency objective"
        raise PrunenetError(f"experiment config {exp.path}: key kvstore {exp.kvstore!r}: "
                            f"{what} runs on one machine; use device or local")
    from .devices import contexts
    contexts(s.gpus)
    if exp.kind == "transfer":
        for run in runs:
            folder = _source_dir(exp, run, s, out)
            if folder and not s.smoke and not os.path.exists(os.path.join(folder, SHAPES_FILE)):
                raise PrunenetError(f"transfer run {run.name} needs the pruned network of "
                                    f"experiment {exp.source} at {run.target:g} in {folder}; run "
                                    f"that experiment first (into the same results folder)")
        caltech_split(s.data_dir, os.path.join(out, "caltech-split"),
                      exp.data["train_per_class"], exp.seed)
        return
    for train in (True, False):
        datasets.load("imagenet", s.data_dir, train=train, input_size=s.input_size)


def _smoke_epochs(count: int, batch_size: int, batches: int = 2) -> float:
    """The fraction of an epoch of ``count`` images that makes ``batches`` batches."""
    per_epoch = max(1, count // batch_size)
    return min(1.0, batches / per_epoch)


def run_experiment(exp: Experiment, out: Optional[str] = None, smoke: bool = False,
                   only: Optional[str] = None, data_dir: Optional[str] = None,
                   log=print) -> List[dict]:
    """Run every run of ``exp`` that is not finished into ``out`` (default
    ``experiments/results/<name>``, with ``-smoke`` in smoke mode); return the results rows."""
    import contextlib
    from .outputs import check_target
    out = check_target(out or os.path.join("experiments", "results",
                                           exp.name + ("-smoke" if smoke else "")))
    _check_results_folder(out)
    with contextlib.ExitStack() as held:
        return _run_experiment(exp, out, smoke, only, data_dir, log, held)


def _check_results_folder(out: str) -> None:
    """Refuse a folder that is neither new, empty, nor an experiment's results folder."""
    from .outputs import MARKER
    if os.path.isdir(out) and os.listdir(out) and not any(
            os.path.exists(os.path.join(out, n)) for n in (MARKER, "results.csv", "runs")):
        raise PrunenetError(f"--out {out} holds files that are not an experiment's results "
                            f"(no results.csv, runs/ or {MARKER}); give a new folder, or the "
                            f"results folder of this experiment to continue it")


def _run_experiment(exp: Experiment, out: str, smoke: bool, only: Optional[str],
                    data_dir: Optional[str], log, held) -> List[dict]:
    from .outputs import exclusive, mark
    runs = _selected(exp, only)
    s = _settings(exp, out, smoke, data_dir)
    _preflight(exp, s, out, runs)
    from .distributed import Workers
    workers = Workers(exp.kvstore)  # rank N > 0 only trains; rank 0 benchmarks and publishes
    # one experiment (one worker of it) writes a results folder at a time
    held.enter_context(exclusive(workers.output_folder(out)))
    os.makedirs(out, exist_ok=True)
    mark(out)
    results = os.path.join(out, "results.csv")
    rows = []
    for run in runs:
        run_dir = os.path.join(out, "runs", run.name)
        finished = os.path.exists(os.path.join(run_dir, REPORT_FILE)) and \
            has_result(results, run_dir)
        if _rank0_says(workers, finished, "finished"):  # all workers skip it, or none
            log(f"{run.name}: finished already ({run_dir})")
            continue
        t0 = time.time()
        if exp.kind == "transfer":
            _transfer(exp, run, run_dir, s, out, log)
        else:
            _prune(exp, run, run_dir, s, log, workers)
        if workers.rank > 0:
            continue
        rows.append(_finish(exp, run, run_dir, s, out, results, log))
        log(f"{run.name}: done in {time.time() - t0:.0f} s")
    return rows


def _rank0_says(workers, yes: bool, what: str) -> bool:
    """Rank 0's answer on every worker (each worker sees its own files)."""
    import numpy as np
    return bool(workers.from_rank0([np.array([float(yes)])], kind=what)[0][0] > 0.5)


def _prune(exp: Experiment, run: Run, run_dir: str, s: _Settings, log, workers) -> None:
    from .runs import DataRun, data_run
    if _rank0_says(workers, os.path.exists(os.path.join(run_dir, REPORT_FILE)), "pruned"):
        return
    if os.path.exists(os.path.join(run_dir, RUN_FILE)) and not workers.distributed:
        log(f"{run.name}: resuming {run_dir}")
        data_run(DataRun(model="", out=run_dir, target=0.5), resume=True, log=log)
        return
    ft = exp.finetune
    epochs = dict(epochs_per_step=exp.epochs_per_step, debias_epochs=exp.debias_epochs,
                  finetune_epochs=ft["epochs"])
    if s.smoke:
        from . import data as datasets
        n = len(datasets.load("imagenet", s.data_dir, train=True, input_size=s.input_size))
        e = _smoke_epochs(n, s.batch_size)
        epochs = dict(epochs_per_step=e, debias_epochs=e, finetune_epochs=e)
    data_run(DataRun.from_settings(
        exp, s, out=run_dir, target=run.target, dataset="imagenet", params=_pretrained(exp, s),
        reg_grid=[0.03, 0.3] if s.smoke and exp.reg == "auto" else None,
        finetune_lr=ft["lr"], warmup_epochs=ft["warmup_epochs"],
        label_smoothing=ft["label_smoothing"], distill=ft["distill"],
        latency_table=os.path.join(run_dir + ".latency.json") if s.smoke else None,
        progress=not s.smoke, num_data_workers=_decoders(exp),
        command=[os.path.basename(sys.argv[0])] + sys.argv[1:], **epochs),
        overwrite=True, log=log, workers=workers)


def _decoders(exp: Experiment) -> int:
    """Image decoding threads: the config's ``data.num_workers``, else the machine's cores."""
    given = exp.data.get("num_workers")
    return int(given) if given is not None else (os.cpu_count() or 1)


def _source_dir(exp: Experiment, run: Run, s: _Settings, out: str) -> Optional[str]:
    """Where a transfer run's pruned source network is: the run of experiment ``exp.source`` at
    the same target, in the results folder beside ``out``; None for the unpruned network."""
    if run.target is None:
        return None
    return os.path.join(os.path.dirname(out), exp.source + ("-smoke" if s.smoke else ""),
                        "runs", f"{exp.source}-{run.target:g}")


def _source_network(exp: Experiment, run: Run, s: _Settings, out: str, ctx):
    """The network a transfer run starts from, with a new randomly initialised 257-way
    classifier, as (GluonCV shapes, GluonCV params, where it came from, its cost fraction): the
    pruned run of the source experiment at ``run.target`` (in ``<out>/../<source>/runs/``), or
    the pretrained base. A smoke run makes a data-free stand-in for a missing source run."""
    import numpy as np
    from .files import load_params, read_json, read_shapes
    from .graph import trace
    from .models import input_shape, load_model
    from .runs import prune_run
    from .surgery import full_keep, gluoncv_params, gluoncv_shapes, network_params
    if run.target is None:
        net = load_model(exp.model, params=_pretrained(exp, s), seed=exp.seed, ctx=ctx,
                         input_size=s.input_size)
        graph = trace(net, input_shape(exp.model, s.input_size))
        shapes = gluoncv_shapes(graph, net.prefix, full_keep(graph))
        params = gluoncv_params(network_params(net), net.prefix)
        where, achieved = f"{exp.model} (unpruned)", 1.0
    else:
        folder = _source_dir(exp, run, s, out)
        if not os.path.exists(os.path.join(folder, SHAPES_FILE)):
            if not s.smoke:
                raise PrunenetError(f"transfer run {run.name} needs the pruned network of "
                                    f"experiment {exp.source} at {run.target:g} in {folder}; run "
                                    f"that experiment first (into the same results folder)")
            prune_run(exp.model, "uniform", exp.objective, run.target, folder,  # smoke stand-in
                      input_size=s.input_size, seed=exp.seed, log=lambda _: None,
                      overwrite=True)
        shapes, params = read_shapes(os.path.join(folder, SHAPES_FILE)), \
            load_params(os.path.join(folder, PARAMS_FILE))
        where = folder
        achieved = read_json(os.path.join(folder, REPORT_FILE), "run report").get("achieved")
    from .surgery import GLUONCV_PREFIX
    weight, bias = GLUONCV_PREFIX + "dense0_weight", GLUONCV_PREFIX + "dense0_bias"
    features = int(shapes[weight][1])
    rng = np.random.RandomState(exp.seed)
    shapes[weight], shapes[bias] = [257, features], [257]
    params[weight] = (rng.normal(0, 0.01, (257, features))).astype(np.float32)
    params[bias] = np.zeros(257, np.float32)
    return shapes, params, where, achieved


def _transfer(exp: Experiment, run: Run, run_dir: str, s: _Settings, out: str, log) -> None:
    """Fine-tune a pruned (or the unpruned) network on Caltech-256 with a new classifier,
    checkpointed every ``TRANSFER_CHECKPOINT_EVERY`` iterations (every one in smoke mode) in
    ``<run_dir>.checkpoint`` so that a killed run continues where it was."""
    import shutil
    from . import data as datasets
    from .checkpoint import finetune_position, load_checkpoint, save_finetune_checkpoint
    from .costs import count
    from .replicas import host_copy
    from .failpoints import failpoint
    from .files import save_params, staged_dir, write_json
    from .graph import trace
    from .models import build_pruned_resnet, input_shape
    from .devices import contexts
    from .report import environment
    from .surgery import GLUONCV_PREFIX
    from .train import BatchStream, FinetuneConfig, finetune
    if os.path.exists(os.path.join(run_dir, REPORT_FILE)):
        return
    ctx = contexts(s.gpus)
    split = os.path.join(out, "caltech-split")
    size = s.input_size
    workers = 0 if s.smoke else _decoders(exp)
    train = datasets.load("folder", split, train=True, input_size=size, num_workers=workers)
    val = datasets.load("folder", split, train=False, input_size=size, num_workers=workers)
    shapes, params, source, achieved = _source_network(exp, run, s, out, ctx[0])
    ft = exp.finetune
    batch = s.batch_size * len(ctx)  # batch_size is per device; the lr per 256 images
    epochs = _smoke_epochs(len(train), batch) if s.smoke else ft["epochs"]
    stream = BatchStream(lambda e, i: train.batches(batch, shuffle=True, seed=exp.seed,
                                                    epoch=e, start=i, drop_last=True))
    ckpt_dir = run_dir + ".checkpoint"
    ckpt = load_checkpoint(ckpt_dir)
    recipe = {"source": source, "shapes": shapes, "epochs": epochs, "batch_size": s.batch_size,
              "devices": len(ctx), "lr_images": 256, "finetune": ft, "seed": exp.seed}
    if ckpt is not None and ckpt.get("recipe") != json.loads(json.dumps(recipe)):
        log(f"{run.name}: its checkpoint was made with other settings; starting afresh")
        shutil.rmtree(ckpt_dir)
        ckpt = None
    resume, elapsed = None, 0.0
    if ckpt is not None:  # the network as checkpointed (GluonCV names), and where it was
        params = {GLUONCV_PREFIX + name: value for name, value in ckpt["arrays"].items()}
        state = finetune_position(ckpt, stream)
        resume, elapsed = state["resume"], state["elapsed"]
        log(f"{run.name}: resuming the fine-tuning after iteration {state['done']}")
    net = build_pruned_resnet(exp.model, shapes, params, ctx=ctx)
    prefix = net.prefix
    params_now = {name[len(prefix):]: p for name, p in net.collect_params().items()}
    shape = input_shape(exp.model, size)
    counted = count(trace(net, shape))
    every = 1 if s.smoke else TRANSFER_CHECKPOINT_EVERY
    t0 = time.time() - elapsed
    config = FinetuneConfig(epochs=epochs, lr=ft["lr"] * batch / 256,
                            warmup_epochs=ft["warmup_epochs"],
                            label_smoothing=ft["label_smoothing"])
    total = stream.count(epochs)

    def on_batch(trainer, done: int, sums: dict) -> None:
        if done % every == 0 or done == total:
            save_finetune_checkpoint(ckpt_dir, f"transfer-{done}", host_copy(params_now), trainer,
                                     stream, done, sums, time.time() - t0, recipe=recipe)
        failpoint("finetune")
    result = finetune(net, stream, config, ctx, progress=not s.smoke, resume=resume,
                      on_batch=on_batch)
    top1, top5 = datasets.accuracy(net, val.batches(batch), ctx)
    trained = {GLUONCV_PREFIX + name[len(prefix):]: value
               for name, value in host_copy(net).items()}
    report = {"model": exp.model, "method": exp.method if run.target is not None else "unpruned",
              "objective": exp.objective, "target": run.target, "achieved": achieved,
              "macs_after": counted["macs"], "params_after": counted["params"],
              "top1_after": top1, "top5_after": top5, "dataset": "caltech256",
              "input_shape": list(shape), "classes": 257, "source": source,
              "format": "gluoncv-pruned-resnet", "files": [SHAPES_FILE, PARAMS_FILE],
              "finetune_loss": result.get("loss"), "timings": {"finetune_s": time.time() - t0},
              "settings": {"epochs": epochs, "lr": ft["lr"], "batch_size": s.batch_size,
                           "train_images": len(train), "val_images": len(val)},
              "environment": environment(), "command": sys.argv}
    with staged_dir(run_dir, overwrite=True) as stage:
        write_json(os.path.join(stage, SHAPES_FILE), shapes)
        save_params(os.path.join(stage, PARAMS_FILE), trained)
        write_json(os.path.join(stage, REPORT_FILE), report)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    log(f"{run.name}: top-1 {top1:.4f}, top-5 {top5 if top5 is None else round(top5, 4)} on "
        f"{len(val)} Caltech images after fine-tuning {source}")


def _finish(exp: Experiment, run: Run, run_dir: str, s: _Settings, out: str, results: str,
            log) -> dict:
    """Benchmark the finished run next to the unpruned network, publish it to ``out/zoo`` and
    put its row into the results CSV."""
    from . import zoo
    from .bench import device, device_name, throughput
    from .files import read_json, write_json
    from .models import input_shape, load_model
    from .pruned import load_pruned
    ctx = device((s.gpus or "").split(",")[0])
    report_path = os.path.join(run_dir, REPORT_FILE)
    report = read_json(report_path, "run report")
    shape = tuple(input_shape(exp.model, s.input_size)[1:])
    if not report.get("throughput_img_s"):
        nets = {"pruned": load_pruned(run_dir, ctx=ctx),
                "unpruned": load_model(exp.model, classes=report.get("classes"),
                                       input_size=s.input_size, ctx=ctx)}
        speed = throughput(nets, shape, batch_size=s.bench_batch, repeats=s.bench_repeats,
                           ctx=ctx, warmup=1 if s.smoke else 3)
        report.update(throughput_img_s=speed["pruned"]["throughput_img_s"],
                      throughput_img_s_unpruned=speed["unpruned"]["throughput_img_s"],
                      batch_size=s.bench_batch, device=device_name(ctx))
        write_json(report_path, report)
    zoo.publish(run_dir, os.path.join(out, "zoo"), run.name, overwrite=True, bench=False,
                ctx=ctx, log=log)
    dataset = report.get("dataset") or "imagenet"
    if exp.kind == "prune" and not any(r["method"] == "unpruned" and r["model"] == exp.model
                                       for r in read_results(results)):
        put_result(results, {"model": exp.model, "method": "unpruned", "objective": "",
                           "target": 1.0, "achieved": 1.0, "macs": report["macs_before"],
                           "params": report["params_before"], "top1": report["top1_before"],
                           "top5": report["top5_before"],
                           "throughput_img_s": report["throughput_img_s_unpruned"],
                           "batch_size": s.bench_batch, "device": report["device"],
                           "dataset": dataset, "seed": exp.seed,
                           "run_dir": run_dir})  # the run whose evaluation it is
    row = {"model": exp.model, "method": report["method"], "objective": report["objective"],
           "target": report.get("target") if report.get("target") is not None else 1.0,
           "achieved": report.get("achieved"), "macs": report["macs_after"],
           "params": report["params_after"], "top1": report.get("top1_after"),
           "top5": report.get("top5_after"), "throughput_img_s": report["throughput_img_s"],
           "batch_size": report["batch_size"], "device": report["device"], "dataset": dataset,
           "seed": exp.seed, "run_dir": run_dir}
    put_result(results, row)
    return row


# -- the paper's table ---------------------------------------------------------------------------
_LABELS = {"flops": "GCP-f", "params": "GCP-p", "latency": "GCP-t"}


def _label(row: dict) -> str:
    if row["method"] == "unpruned":
        return "unpruned"
    if row["method"] == "gcp":
        return _LABELS.get(row["objective"], "GCP")
    return row["method"].capitalize()


def _num(value, scale: float, unit: str, digits: int = 2) -> str:
    try:
        return f"{float(value) / scale:.{digits}f}{unit}"
    except (TypeError, ValueError):
        return ""


def results_table(*paths: str) -> str:
    """Results CSVs (e.g. GCP's and the uniform baseline's) as the paper's tables (Markdown): one
    per model and dataset, the unpruned network first, then each target with the uniform
    baseline next to GCP."""
    groups: Dict[tuple, List[dict]] = {}
    for path in paths:
        rows = read_results(path)
        if not rows:
            raise PrunenetError(f"results file {path} " + (
                "does not exist" if not os.path.exists(path) else "holds no rows"))
        for r in rows:
            group = groups.setdefault((r["dataset"], r["model"]), [])
            if r["method"] != "unpruned" or all(g["method"] != "unpruned" for g in group):
                group.append(r)  # one unpruned row per table
    out = []
    for (dataset, model), rs in sorted(groups.items()):
        def order(r):
            target = float(r["target"]) if r["target"] else 1.0
            return (-target, r["method"] != "unpruned", r["method"] == "gcp", r["objective"])
        out += [f"### {model} on {dataset}", "",
                "| | α | # Params. | # FLOPs (MACs) | Top-1 | Top-5 | img/s |",
                "|---|---|---|---|---|---|---|"]
        for r in sorted(rs, key=order):
            alpha = "" if r["method"] == "unpruned" else f"{float(r['target']):g}"
            out.append(f"| {_label(r)} | {alpha} | {_num(r['params'], 1e6, 'M')} | "
                       f"{_num(r['macs'], 1e9, 'G', 3)} | {_num(r['top1'], 0.01, '%')} | "
                       f"{_num(r['top5'], 0.01, '%')} | {_num(r['throughput_img_s'], 1, '', 0)} |")
        out.append("")
    return "\n".join(out)
