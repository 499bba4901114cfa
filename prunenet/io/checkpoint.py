"""Checkpoints of a pruning run: parameters, optimizer states and progress, written atomically.

A checkpoint is a set of files named after its step and phase plus ``checkpoint.json``, which is
written last and names them with their SHA-1: a reader only ever trusts what ``checkpoint.json``
names, so a kill during a write leaves the previous checkpoint in force, and a file damaged
since is refused at resume.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import numpy as np

from ..errors import PrunenetError
from ..failpoints import failpoint
from .files import atomic_path, load_params, read_json, save_params, write_json

__all__ = ["save_checkpoint", "load_checkpoint", "restore_trainer", "save_finetune_checkpoint",
           "finetune_position", "check_run_checkpoint", "CHECKPOINT_FILE"]

CHECKPOINT_FILE = "checkpoint.json"


def save_checkpoint(folder: str, tag: str, arrays: Optional[Dict[str, np.ndarray]],
                    trainers: Optional[Dict[str, object]] = None, **progress) -> None:
    """Save ``arrays`` and the trainers' states under ``tag``, then point ``checkpoint.json``
    at them together with ``progress`` (JSON-able), and remove older checkpoint files. Arrays
    holding NaN or Inf are refused (:class:`prunenet.training.train.NonFiniteError`), so the checkpoint
    in force stays the last good one. ``arrays`` None: the parameters and states are those of
    the checkpoint in force, whose files the new ``checkpoint.json`` names again (only the
    progress changed)."""
    if arrays is None:
        _save_progress(folder, tag, progress)
        return
    bad = [name for name, value in arrays.items() if not np.isfinite(value).all()]
    if bad:
        from ..errors import NonFiniteError
        flag = "--finetune-lr" if progress.get("stage") == "finetune" else "--lr"
        raise NonFiniteError(f"{bad[0]} became NaN or Inf (at checkpoint {tag}); the last good "
                             f"checkpoint is kept: start again with a smaller {flag}")
    os.makedirs(folder, exist_ok=True)
    params_file = f"ckpt-{tag}.params"
    save_params(os.path.join(folder, params_file), arrays)
    states = {}
    for key, trainer in (trainers or {}).items():
        name = f"ckpt-{tag}-{key}.states"
        with atomic_path(os.path.join(folder, name)) as tmp:
            trainer.save_states(tmp)
        states[key] = name
    failpoint("checkpoint")
    from .files import sha1_of
    sums = {name: sha1_of(os.path.join(folder, name)) for name in [params_file, *states.values()]}
    write_json(os.path.join(folder, CHECKPOINT_FILE),
               {"tag": tag, "params": params_file, "states": states, "sha1": sums, **progress})
    keep = {params_file, CHECKPOINT_FILE, *states.values()}
    for name in os.listdir(folder):
        if name.startswith("ckpt-") and name not in keep:
            os.remove(os.path.join(folder, name))


def _save_progress(folder: str, tag: str, progress: dict) -> None:
    """A new ``checkpoint.json`` under ``tag`` with ``progress``, naming the files of the one in
    force (their SHA-1 as it recorded them)."""
    path = os.path.join(folder, CHECKPOINT_FILE)
    if not os.path.exists(path):
        raise ValueError(f"no checkpoint in {folder} to keep the parameters of")
    doc = read_json(path, "checkpoint")
    write_json(path, {"tag": tag, "params": doc["params"], "states": doc.get("states", {}),
                      "sha1": doc.get("sha1"), **progress})


def load_checkpoint(folder: str) -> Optional[dict]:
    """The newest checkpoint in ``folder`` (its progress, ``arrays`` and state file paths), or
    None when there is none."""
    path = os.path.join(folder, CHECKPOINT_FILE)
    if not os.path.exists(path):
        return None
    doc = read_json(path, "checkpoint")
    if not isinstance(doc, dict) or "params" not in doc:
        raise PrunenetError(f"checkpoint {path} is not a prunenet checkpoint")
    doc["states"] = {k: os.path.join(folder, v) for k, v in doc.get("states", {}).items()}
    for key, state in doc["states"].items():
        if not os.path.exists(state):
            raise PrunenetError(f"checkpoint {path} names {state}, which is missing")
    _verify(folder, doc)
    doc["arrays"] = load_params(os.path.join(folder, doc["params"]))
    return doc


def _verify(folder: str, doc: dict) -> None:
    """Refuse checkpoint files whose bytes differ from the SHA-1 ``checkpoint.json`` recorded."""
    from .files import sha1_of
    for name, expected in (doc.get("sha1") or {}).items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise PrunenetError(f"checkpoint file {path} is missing; the run cannot continue "
                                f"from it: start it again with --overwrite")
        if sha1_of(path) != expected:
            raise PrunenetError(f"checkpoint file {path} is damaged (its SHA-1 differs from the "
                                f"one {CHECKPOINT_FILE} recorded); the run cannot continue from "
                                f"it: start it again with --overwrite")


# what a run's checkpoint holds at each stage (dicts: their keys), beside params/states/sha1
_STAGE_KEYS = {
    "gcp": {"step": None, "stream": ("epoch", "index"), "top1_before": None,
            "top5_before": None, "states": ("regularize", "debias")},
    "finetune": {"stream": ("epoch", "index"), "finetune": ("done", "sums", "elapsed"),
                 "selection": ("cost", "base_cost", "largest_block", "blocks_removed"),
                 "top1_before": None, "top5_before": None, "top1_selected": None,
                 "surgery_max_abs_diff": None, "notes": None, "latency": None},
}


def check_run_checkpoint(folder: str, doc: dict, keep_names) -> None:
    """Refuse a run's checkpoint ``doc`` (from :func:`load_checkpoint`) that is not one a run
    writes: an unknown ``stage``, a key of its stage missing, or (fine-tuning) no keep mask
    named in ``keep_names``; one line naming the file and what is wrong."""
    path = os.path.join(folder, CHECKPOINT_FILE)
    stage = doc.get("stage", "gcp")
    if stage not in _STAGE_KEYS:
        problem = f"has stage {stage!r}, not one a run writes ({', '.join(_STAGE_KEYS)})"
    else:
        missing = [key for key, inner in _STAGE_KEYS[stage].items()
                   if key not in doc or (inner and not (isinstance(doc[key], dict)
                                                        and set(inner) <= set(doc[key])))]
        if stage == "finetune":
            missing += [name for name in keep_names if name not in doc["arrays"]][:1]
        problem = f"lacks {missing[0]} (or it is malformed), which its stage {stage!r} needs" \
            if missing else None
    if problem:
        raise PrunenetError(f"checkpoint {path} {problem}; the run cannot continue from it: "
                            f"start it again with --overwrite")


def restore_trainer(trainer, path: str) -> None:
    """Load an optimizer state saved by :func:`save_checkpoint` into ``trainer``."""
    trainer.load_states(path)


def save_finetune_checkpoint(folder: str, tag: str, arrays: Dict[str, np.ndarray], trainer,
                             stream, done: int, sums: Optional[dict], elapsed: float,
                             **progress) -> None:
    """A checkpoint inside a fine-tuning: the network, its trainer (None before the first
    iteration), where ``stream``'s batches are, the iterations done with their running sums,
    and the seconds spent."""
    save_checkpoint(folder, tag, arrays, {"finetune": trainer} if trainer is not None else None,
                    stream=stream.state(),
                    finetune={"done": done, "sums": sums, "elapsed": elapsed}, **progress)


def finetune_position(ckpt: dict, stream) -> dict:
    """Where the fine-tuning checkpoint ``ckpt`` left off, ``stream`` moved there: its
    ``done``, ``sums`` and ``elapsed``, and ``resume``, what :func:`prunenet.training.train.finetune`
    continues from (None when no iteration was done)."""
    stream.epoch, stream.index = ckpt["stream"]["epoch"], ckpt["stream"]["index"]
    state = dict(ckpt["finetune"])
    state["resume"] = (dict(ckpt["finetune"], states=ckpt["states"]["finetune"])
                       if state["done"] else None)
    return state
