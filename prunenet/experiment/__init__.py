"""Experiment definitions: one small JSON file per experiment of the paper, run by one runner.

    prunenet experiment CONFIG [--dry-run] [--smoke] [--only NAME] [--out DIR] [--data-dir DIR]
    prunenet experiment table RESULTS.csv [MORE.csv ...]

A config names the model, its pretrained source, the method, objective and targets (each target
is one run), the GCP schedule, the fine-tuning recipe, the data, batch size, GPUs and kvstore
(:data:`SCHEMA`). A run goes: pretrained GluonCV network -> :func:`prunenet.run.folder.data_run`
(pruned, fine-tuned, evaluated) -> throughput next to the unpruned network -> published to the
experiment's zoo -> one row in ``OUT/results.csv`` (the shared results schema). A finished run is
skipped, an interrupted one resumed. ``kind: transfer`` configs fine-tune the pruned networks of
another experiment on an image folder with a new classifier (Caltech-256, the paper's Table 6).

``--dry-run`` checks the config, builds the network at random weights and computes the MACs at
each target (with the data-free ``uniform`` selection); ``--smoke`` runs everything at 32 px for
a few iterations on generated data and a random network.

This package is the runner's code; the repository's top-level ``experiments/`` folder holds the
configs, scripts and results it reads and writes. One module a job: :mod:`.config` (the schema,
:class:`Experiment`, :class:`Run`, :func:`load_config`, :func:`runs_of`), :mod:`.dryrun`
(:func:`dry_run`), :mod:`.smoke` (generated data), :mod:`.caltech` (the Caltech-256 split),
:mod:`.settings` (what the runs use, smoke mode's overrides), :mod:`.transfer` (a Caltech-256
transfer run), :mod:`.run` (:func:`run_experiment`), :mod:`.table` (:func:`results_table`).
The public names are also here, as ``prunenet.experiment.NAME``; to patch one, patch it in the
module that defines it, where its callers look it up.
"""
from ..training.caltech import caltech_split
from .config import (BENCH_SCHEMA, DATA_SCHEMA, DATASETS, FINETUNE_SCHEMA, KINDS,
                     PRETRAINED_GLUONCV, SCHEMA, Experiment, Run, load_config, runs_of)
from .dryrun import dry_run
from .run import run_experiment
from .settings import SMOKE_BATCH, SMOKE_SIZE, decoders
from ..training.smoke import make_smoke_folder, make_smoke_records
from .table import results_table
from .transfer import TRANSFER_CHECKPOINT_EVERY

__all__ = ["Experiment", "Run", "load_config", "runs_of", "dry_run", "run_experiment",
           "results_table", "make_smoke_records", "make_smoke_folder", "caltech_split",
           "decoders", "SCHEMA", "FINETUNE_SCHEMA", "DATA_SCHEMA", "BENCH_SCHEMA", "KINDS",
           "DATASETS", "PRETRAINED_GLUONCV", "SMOKE_SIZE", "SMOKE_BATCH",
           "TRANSFER_CHECKPOINT_EVERY"]
