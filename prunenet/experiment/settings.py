"""What an experiment's runs use: the config's sizes, devices and data, or smoke mode's
(32 px, a few batches, generated data, a random network); the pretrained weights; the decoding
threads."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ..options import default_of
from ..run.settings import DataRun
from .config import PRETRAINED_GLUONCV, Experiment
from ..training.smoke import make_smoke_folder, make_smoke_records

__all__ = ["SMOKE_SIZE", "SMOKE_BATCH", "decoders"]

SMOKE_SIZE = 32
SMOKE_BATCH = 8


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
    """The settings of ``exp``'s runs into ``out``; in smoke mode the smoke data are generated
    (once, into ``out/smoke-data``) unless ``data_dir`` is given."""
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
    """The params file a run starts from: GluonCV's (downloaded once) or the config's; None (a
    seeded random network) in smoke mode."""
    if s.smoke:
        return None  # a seeded random network: no download
    if exp.pretrained == PRETRAINED_GLUONCV:
        from ..training.models import pretrained_params
        return pretrained_params(exp.model)
    from ..io.files import require_file
    return require_file(os.path.expanduser(exp.pretrained), "pretrained params file")


def _smoke_epochs(count: int, batch_size: int, batches: int = 2) -> float:
    """The fraction of an epoch of ``count`` images that makes ``batches`` batches."""
    per_epoch = max(1, count // batch_size)
    return min(1.0, batches / per_epoch)


def decoders(exp: Experiment) -> int:
    """Image decoding threads: the config's ``data.num_workers``, else ``prunenet prune``'s
    default (the machine's cores)."""
    given = exp.data.get("num_workers")
    return int(given) if given is not None else default_of(DataRun, "num_data_workers")
