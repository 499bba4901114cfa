"""Named points at which a test can kill the process, to prove that a run survives a kill there.

``PRUNENET_FAILPOINT=NAME:N`` makes the N-th time the run passes :func:`failpoint` ``NAME`` send
the process SIGKILL (no clean-up, no ``finally``: as a power cut or the OOM killer would);
``NAME:N:STOP`` sends SIGSTOP instead (the process pauses there, holding what it holds, until
SIGCONT). Unset,
a failpoint costs two dictionary lookups. The names: ``regularize``, ``debias`` and ``finetune``
(after each batch), ``checkpoint`` (after a checkpoint's files are written, before
``checkpoint.json`` names them), ``export`` (after the pruned network's files, before
``report.json``), ``checkpointed-phase``, ``checkpointed-step``, ``checkpointed-surgery`` and
``checkpointed-finetune`` (right after a checkpoint of that kind is in force: inside a GCP
phase, at a step's end, after surgery, inside fine-tuning) and ``write`` (inside every atomic write, its temporary file written, before it
is renamed into place).

``PRUNENET_FAILPOINT_LOG=FILE`` appends the name of every failpoint passed to ``FILE``, one a
line: how a test learns where a run can be killed (tests/test_resume_property.py).
"""
from __future__ import annotations

import os
import signal
from typing import Dict

__all__ = ["failpoint", "ENV", "LOG_ENV"]

ENV = "PRUNENET_FAILPOINT"
LOG_ENV = "PRUNENET_FAILPOINT_LOG"
_hits: Dict[str, int] = {}


def failpoint(name: str) -> None:
    """Count a pass through ``name``; SIGKILL this process on the pass ``$PRUNENET_FAILPOINT``
    names."""
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.write(name + "\n")
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, rest = spec.partition(":")
    if target != name:
        return
    nth, _, how = rest.partition(":")
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGSTOP if how == "STOP" else signal.SIGKILL)
