"""An experiment config: its schema (:data:`SCHEMA`), the checked :class:`Experiment` that
:func:`load_config` reads from a JSON file, and its runs (:func:`runs_of`)."""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import re
from dataclasses import MISSING, dataclass
from typing import Callable, List, Optional, Union

from ..errors import PrunenetError
from ..latency.settings import BenchConfig
from ..options import default_of, same_as, setting
from ..run.settings import DataRun

__all__ = ["Experiment", "Run", "load_config", "runs_of", "SCHEMA", "FINETUNE_SCHEMA",
           "DATA_SCHEMA", "BENCH_SCHEMA", "KINDS", "DATASETS", "PRETRAINED_GLUONCV", "schema_of",
           "FinetuneSettings", "DataSettings", "BenchSettings"]

KINDS = ("prune", "transfer")
DATASETS = ("imagenet", "caltech256")
PRETRAINED_GLUONCV = "gluoncv"

_NUMBER, _INT, _STR, _BOOL, _LIST, _DICT = "number", "whole number", "string", "boolean", \
    "list", "object"
_REG = "number or \"auto\""
# a field's annotation -> its schema type
_KINDS = {"float": _NUMBER, "int": _INT, "str": _STR, "bool": _BOOL, "List[float]": _LIST,
          "dict": _DICT, "Union[float, str]": _REG}


@dataclass
class FinetuneSettings:
    """An experiment's ``finetune`` object: its runs' fine-tuning after pruning."""

    epochs: float = same_as(DataRun, "finetune_epochs", required=True)
    lr: float = same_as(DataRun, "finetune_lr", required=True)
    warmup_epochs: float = same_as(DataRun, "warmup_epochs")
    label_smoothing: float = same_as(DataRun, "label_smoothing")
    distill: bool = same_as(DataRun, "distill")


@dataclass
class DataSettings:
    """An experiment's ``data`` object: the dataset its runs train and evaluate on."""

    dataset: str = setting(help="imagenet (a pruning experiment) or caltech256 (a transfer)",
                           choices=lambda: DATASETS)
    data_dir: str = setting(help="where the dataset's files are")
    input_size: int = setting(224, "input image size in pixels", least=1)
    train_per_class: int = setting(60, "training images per class (Caltech-256)", least=1)
    num_workers: Optional[int] = setting(None, "decoding threads (default: --num-data-workers's)",
                                         least=0)


@dataclass
class BenchSettings:
    """An experiment's ``bench`` object: how the pruned and unpruned networks are timed."""

    batch_size: int = same_as(BenchConfig, "batch_size")
    repeats: int = same_as(BenchConfig, "repeats")


def _name(value: str) -> Optional[str]:
    return None if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}", value) else \
        "must be letters, digits, '.', '_' and '-'"


@dataclass
class Experiment:
    """A checked experiment config; each field but ``path`` (the file it came from) is a key
    of the config (:func:`schema_of`), the settings a run shares with ``prunenet prune``
    defaulting as there (:class:`~prunenet.run.settings.DataRun`)."""

    path: str = setting(help="the config file", key=False)
    name: str = setting(help="the experiment's name, which its runs' names start with",
                        check=_name)
    model: str = setting(help="GluonCV model name")
    pretrained: str = setting(help="'gluoncv' (its pretrained weights) or a params file")
    method: str = setting(help="the pruning method")
    objective: str = setting(help="the cost the targets are fractions of")
    targets: List[float] = setting(help="the fractions of the cost to keep, one run each")
    finetune: dict = setting(help="the fine-tuning", schema=FinetuneSettings)
    data: dict = setting(help="the dataset", schema=DataSettings)
    batch_size: int = same_as(DataRun, "batch_size", required=True)
    description: str = setting("", "what the experiment is for")
    kind: str = setting("prune", "prune, or transfer (fine-tune another experiment's networks "
                                 "on Caltech-256)", choices=lambda: KINDS)
    steps: int = same_as(DataRun, "steps")
    reg: Union[float, str] = same_as(DataRun, "reg")
    stream_score: str = same_as(DataRun, "stream_score")
    epochs_per_step: float = same_as(DataRun, "epochs_per_step")
    debias_epochs: Optional[float] = same_as(DataRun, "debias_epochs")
    lr: float = same_as(DataRun, "lr")
    gpus: str = same_as(DataRun, "gpus")
    kvstore: str = same_as(DataRun, "kvstore")
    seed: int = same_as(DataRun, "seed")
    round_to: int = same_as(DataRun, "round_to")
    min_width: int = same_as(DataRun, "min_width")
    latency_batch_size: int = same_as(DataRun, "latency_batch_size")
    bench: dict = setting(help="the timing", schema=BenchSettings, factory=dict)
    source: Optional[str] = setting(None, "a transfer: the experiment whose networks it "
                                          "fine-tunes")
    include_unpruned: bool = setting(False, "a transfer: fine-tune the unpruned network too")


def schema_of(cls) -> dict:
    """The config keys of the settings class ``cls``: key -> (type, required, check, default),
    a check returning an error text or None (a nested object's: its own schema)."""
    schema = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("key", True):
            continue
        kind = f.type[len("Optional["):-1] if f.type.startswith("Optional[") else f.type
        default = default_of(cls, f.name)
        nested = f.metadata.get("schema")
        check = schema_of(nested) if nested else f.metadata.get("check") or _check(f.metadata)
        schema[f.name] = (_KINDS[kind], default is MISSING, check,
                          None if default is MISSING or nested else default)
    return schema


def _check(meta) -> Optional[Callable]:
    """The check a field's bounds and choices make (the command line's words)."""
    least, strict, below = meta.get("least"), meta.get("strict", False), meta.get("below")
    choices = meta.get("choices")
    if least is None and below is None and choices is None:
        return None

    def check(value) -> Optional[str]:
        if choices is not None:
            return None if value in choices() else f"must be one of {', '.join(choices())}"
        if value == "auto" or (least is None or value > least or not strict and value == least) \
                and (below is None or value < below):
            return None
        bound = "" if least is None else f"above {least:g}" if strict else f"at least {least:g}"
        return "must be " + " and ".join(b for b in (bound, below is not None and
                                                    f"below {below:g}") if b)
    return check


FINETUNE_SCHEMA = schema_of(FinetuneSettings)
DATA_SCHEMA = schema_of(DataSettings)
BENCH_SCHEMA = schema_of(BenchSettings)
SCHEMA = schema_of(Experiment)  # as the classes' defaults are when the module is imported


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
    from ..core.costs import OBJECTIVES
    from ..methods import METHODS, TRAINED
    from ..training.models import model_names
    doc = _read_object(path)
    values = _check_object(doc, schema_of(Experiment), path)

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
    values["bench"] = values["bench"] or _check_object({}, schema_of(BenchSettings), path)
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
