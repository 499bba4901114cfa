"""An experiment config: its schema (:data:`SCHEMA`), the checked :class:`Experiment` that
:func:`load_config` reads from a JSON file, and its runs (:func:`runs_of`)."""
from __future__ import annotations

import fnmatch
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from ..distributed import KVSTORES
from ..errors import PrunenetError
from ..methods.gcp import DEFAULT_REG
from ..tied import DEFAULT_RULE, RULES

__all__ = ["Experiment", "Run", "load_config", "runs_of", "SCHEMA", "FINETUNE_SCHEMA",
           "DATA_SCHEMA", "BENCH_SCHEMA", "KINDS", "DATASETS", "PRETRAINED_GLUONCV"]

KINDS = ("prune", "transfer")
DATASETS = ("imagenet", "caltech256")
PRETRAINED_GLUONCV = "gluoncv"

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
            DEFAULT_REG),
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
    reg: object = DEFAULT_REG  # λ, or "auto" (the paper's rule: chosen by the debias loss)
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


def _typed(value, kind: str) -> bool:
    """Whether ``value`` is of the schema type ``kind``."""
    if kind == _REG:
        return value == "auto" or _typed(value, _NUMBER)
    if kind == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {_STR: str, _BOOL: bool, _LIST: list, _DICT: dict}[kind])


def _check_object(doc, schema: dict, path: str, where: str = "") -> dict:
    """``doc`` checked against ``schema`` (nested objects too), with the defaults filled in."""
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


def _read_object(path: str) -> dict:
    """The JSON object in the config file ``path``, refusing a missing file, invalid JSON, a key
    given twice and anything but an object."""
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
    return doc


def load_config(path: str) -> Experiment:
    """Read and check an experiment config; any problem is one :class:`PrunenetError` line that
    names the file and the key."""
    from ..costs import OBJECTIVES
    from ..methods import METHODS, TRAINED
    from ..models import model_names
    doc = _read_object(path)
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
    _check_kind(values, doc, path, fail)
    return Experiment(path=path, **values)


def _check_kind(values: dict, doc: dict, path: str,
                fail: Callable[[str, str], PrunenetError]) -> None:
    """Refuse what the config's kind does not allow: a transfer needs a Caltech-256 dataset and
    a source experiment that runs its targets; a pruning experiment runs on ImageNet and takes no
    transfer keys."""
    targets = values["targets"]
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


def runs_of(exp: Experiment) -> List[Run]:
    """The runs of ``exp``: one per target (plus the unpruned network for a transfer)."""
    runs = [Run(f"{exp.name}-{t:g}", float(t)) for t in exp.targets]
    if exp.include_unpruned:
        runs.insert(0, Run(f"{exp.name}-unpruned", None))
    return runs


def _selected(exp: Experiment, only: Optional[str]) -> List[Run]:
    """The runs of ``exp`` whose names match the ``--only`` pattern (all of them for None)."""
    runs = runs_of(exp)
    if only is None:
        return runs
    chosen = [r for r in runs if fnmatch.fnmatch(r.name, only)]
    if not chosen:
        raise PrunenetError(f"--only {only} matches no run of {exp.path}; its runs are "
                            f"{', '.join(r.name for r in runs)}")
    return chosen
