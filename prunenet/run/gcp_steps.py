"""GCP's steps inside a pruning run: the run folder's hooks on the schedule's one driver
(:meth:`prunenet.gcp.schedule.GCPSchedule.fit`) — the held-out images of the λ search, a checkpoint
after each candidate, batch and step, the rows and log lines — and the restore of a checkpoint
(the run around them is :mod:`prunenet.run.folder`)."""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np

from ..training.distributed import Workers
from ..failpoints import failpoint
from ..io.records import CHECKPOINT_DIR, STEPS_FILE, write_steps
from ..gcp.schedule import SEARCH_MIN_BATCHES, ScheduleHooks
from .settings import DataRun
from ..core.select import Selection

__all__ = ["gcp_steps", "search_lines"]


def search_lines(search: dict) -> List[str]:
    """The λ search in words: each candidate's loss and standard error, the rule, the choice."""
    unit = search["unit"]
    name = "ρ" if unit == "shrink" else "λ"
    rows = []
    for k, (v, reg, loss, se) in enumerate(zip(search["grid"], search["regs"], search["losses"],
                                               search["se"])):
        mark = " (least)" if k == search["best"] else ""
        if not search.get("admissible", [True] * len(search["grid"]))[k]:
            mark += f" (its first step alone kept {search['achieved'][k]:.3f}: below the target)"
        raw = f" (λ {reg:.3g})" if unit == "shrink" else ""
        rows.append(f"{name} {v:g}{raw} → {loss:.4f} ± {se:.4f}{mark}")
    k = search["chosen_index"]
    chosen = search["grid"][k]
    lines = ["λ search (held-out debias loss ± standard error of the paired difference to the "
             "least): " + ", ".join(rows),
             f"chose {name} = {chosen:g} (λ = {search['chosen']:.4g}): the most regularising "
             f"candidate within one standard error of the least"]
    share, aimed = search.get("share"), search.get("aimed")
    if share is not None and aimed is not None and share > 2 * aimed:
        lines.append(f"the λ candidates ran {share:.2f}x the pruning steps' batches, not the "
                     f"{aimed:.2g}x their fraction aimed at: each runs at least "
                     f"{SEARCH_MIN_BATCHES} batches a phase, and a step has only "
                     f"{search['iterations']}; more images per step (or fewer candidates, or a "
                     f"fixed --reg) make the search cheaper")
    if search["chosen"] == 0:
        lines.append("λ = 0 (no regulariser) was chosen: no candidate that regularises scored "
                     "within one standard error of the least; the selection ranks rescaled |γ|")
    return lines


def gcp_steps(run: DataRun, pipe, train, ckpt, rows, timings, say, shares, progress: dict,
              workers=None):
    """The GCP steps of a run on ``pipe`` (a :class:`prunenet.run.pipeline.Pipeline`), resuming
    from ``ckpt``, with a checkpoint after each; returns GCP's notes and the report's GCP
    fields (the selection is then ``pipe.select()``'s)."""
    steps = _GCPSteps(run, pipe, train, ckpt, rows, timings, say, shares, progress, workers)
    if ckpt is not None:
        steps.restore(ckpt)
    heldout_losses = None
    if steps.searching:
        say(f"choosing λ by the one-standard-error rule on the debias loss of a short step 1 "
            f"on {steps.held_count} held-out training images")
        heldout_losses = steps.heldout_losses
    elif steps.search is not None:
        steps.gcp.config.reg = steps.search["chosen"]
        steps.gcp.search = steps.search
    pipe.fit(steps.stream, heldout_losses, grid=run.reg_grid or run.shrink_grid,
             unit="reg" if run.reg_grid else "shrink", fraction=run.search_fraction,
             search=steps.search, done=steps.done, step_state=steps.step_state,
             timings=timings, hooks=steps)
    return steps.result()


class _GCPSteps(ScheduleHooks):
    """The run folder's part in GCP's steps (:func:`gcp_steps`): their batches, the λ search's
    held-out images and state, the checkpoints, the rows of ``steps.csv`` and the log lines,
    as hooks on the schedule's driver (:meth:`prunenet.gcp.schedule.GCPSchedule.fit`)."""

    def __init__(self, run: DataRun, pipe, train, ckpt, rows: List[dict],
                 timings: Dict[str, float], say, shares, progress: dict,
                 workers: Optional[Workers]) -> None:
        from ..methods import get
        from ..training.train import BatchStream
        self.run, self.pipe, self.net, self.graph = run, pipe, pipe.net, pipe.graph
        self.rows, self.timings, self.say, self.evaluated = rows, timings, say, progress
        self.ckpt_dir = os.path.join(run.out, CHECKPOINT_DIR)
        auto = run.reg == "auto"
        settings = dict(target=run.target, steps=run.steps, reg=0.0 if auto else run.reg,
                        epochs_per_step=run.epochs_per_step, debias_epochs=run.debias_epochs,
                        lr=run.lr * run.lr_factor(len(pipe.ctx), workers.count if workers else 1),
                        momentum=run.momentum, round_to=run.round_to, min_width=run.min_width)
        config = get(run.method).config(**settings)
        self.gcp = pipe.schedule(config, run.stream_score, progress=run.progress,
                                 workers=workers, sync_every=run.sync_every)
        self.wrapper = pipe.wrapper
        if auto:  # the λ candidates are scored on training images the steps never see
            train = self._hold_out(train)
        self.stream = BatchStream(lambda e, s: shares(train, e, s))
        self.done, self.step_state = 0, None
        self.search = ckpt.get("search") if ckpt is not None else None
        self.searching = auto and not (self.search or {}).get("done") and \
            (ckpt is None or self.search is not None)

    def _hold_out(self, train):
        """``train`` without the images held out to score the λ candidates."""
        from ..training.data import holdout
        self.held_count = min(self.run.search_holdout, max(1, len(train) // 10))
        train, held = holdout(train, self.held_count, self.run.seed)
        self.held_batches = held.batches(self.run.batch_size, shuffle=False)
        self.trained_count = len(train)
        self.held_rule = getattr(held, "drawn", f"drawn at random (seed {self.run.seed})")
        return train

    def heldout_losses(self):
        """The debiased network's loss on each held-out image."""
        from ..training.data import losses
        from ..gcp.masked import DEBIAS
        return losses(self.wrapper.block(DEBIAS), self.held_batches, self.pipe.ctx)

    def restore(self, ckpt: dict) -> None:
        """The masks, weights, trainers, batch position and progress of checkpoint ``ckpt``."""
        from ..io.checkpoint import restore_trainer
        gcp, wrapper = self.gcp, self.wrapper
        arrays = ckpt["arrays"]
        for name, value in arrays.items():
            wrapper.set(name, value)
        wrapper.keep = [arrays[wrapper.keep_name(g.index)] > 0.5 if g.prunable
                        else np.ones(g.width, dtype=bool) for g in self.graph.groups]
        restore_trainer(gcp.reg_trainer, ckpt["states"]["regularize"])
        restore_trainer(gcp.debias_trainer, ckpt["states"]["debias"])
        self.stream.epoch, self.stream.index = ckpt["stream"]["epoch"], ckpt["stream"]["index"]
        gcp.notes = list(ckpt.get("notes", []))
        gcp.zeros_pruned = int(ckpt.get("zeros_pruned", 0))
        self.done, self.step_state = int(ckpt["step"]), ckpt.get("step_state")
        if ckpt.get("largest_block") is not None:
            gcp.last_selection = Selection([k.copy() for k in wrapper.keep], 0.0,
                                           gcp.base_cost, ckpt["largest_block"],
                                           ckpt["blocks_removed"])
        if self.searching:  # the checkpoint holds the start, as every candidate leaves it
            tried = sum(v is not None for v in self.search["losses"])
            self.say(f"resuming the λ search after {tried} of {len(self.search['grid'])} "
                     f"candidates")
        else:
            step_state = self.step_state
            where = f"after step {self.done}" if step_state is None else \
                f"in step {self.done + 1}, {step_state['phase']} batch {step_state['done']}"
            self.say(f"resuming {where} of {self.run.steps}")

    def save(self, tag: str, finished: int, state: Optional[dict],
             same_network: bool = False) -> None:
        """A checkpoint ``tag`` after ``finished`` steps (inside the next, at ``state``); with
        ``same_network``, the parameters and optimizer states are those of the checkpoint in
        force, and only the progress is written."""
        from ..io.checkpoint import save_checkpoint
        gcp = self.gcp
        last = gcp.last_selection
        save_checkpoint(self.ckpt_dir, tag, None if same_network else gcp.arrays(),
                        {"regularize": gcp.reg_trainer, "debias": gcp.debias_trainer},
                        stage="gcp", step=finished, step_state=state, stream=self.stream.state(),
                        notes=gcp.notes, rows=self.rows, search=self.search,
                        zeros_pruned=gcp.zeros_pruned,
                        largest_block=last.largest_block if last else None,
                        blocks_removed=last.blocks_removed if last else None,
                        timings=self.timings, net_prefix=self.net.prefix, **self.evaluated)
        failpoint("checkpointed-phase" if state is not None else "checkpointed-step")

    # -- the hooks on the schedule's driver ------------------------------------------------

    def candidate(self, state: dict) -> None:
        """A checkpoint after each λ candidate (the start in force: after the first, the
        network's files are the checkpoint's already, and only the search's state is new)."""
        self.search = state
        k = sum(v is not None for v in state["losses"])
        self.save(f"search-{k}", 0, None, same_network=k > 1)
        failpoint("search")

    def searched(self, search: dict) -> None:
        """The search, with its held-out images, logged and checkpointed."""
        self.search = dict(search, holdout_images=self.held_count,
                           trained_images=self.trained_count, holdout_rule=self.held_rule)
        for line in search_lines(self.search):
            self.say(line)
        self.save("search", 0, None)

    def progress(self, t: int, state: dict) -> None:
        """Inside step ``t``: a checkpoint every ``checkpoint_every`` batches."""
        if state["done"] == 0 or state["done"] % self.run.checkpoint_every == 0:
            self.save(f"step{t}-{state['phase']}-{state['done']}", t - 1, state)
        if state["done"]:
            failpoint(state["phase"])

    def stepped(self, t: int, records) -> None:
        """Step ``t`` done: its rows, a checkpoint and a log line."""
        self.step_state = None
        self._add_rows(records)
        self.save(f"step{t}", t, None)
        ran = [r for r in records if np.isfinite(r.loss)]  # slimming has no debias phase
        loss = f"{ran[-1].phase} loss {ran[-1].loss:.4f}" if ran else "no training"
        self.say(f"step {t}/{self.run.steps}: cost {records[-1].achieved:.4f} of the unpruned "
                 f"(target {records[-1].target:.4f}); {loss}, "
                 f"{records[0].zeroed_channels} channels zeroed by the regulariser")

    def _add_rows(self, records) -> None:
        """``records``' rows added to the run's, and ``steps.csv`` written."""
        import dataclasses
        for record in records:
            self.rows.append(dataclasses.asdict(record))
        write_steps(os.path.join(self.run.out, STEPS_FILE), self.rows)

    def result(self) -> tuple:
        """GCP's notes, logged, and the report's GCP fields."""
        for note in self.gcp.notes:
            self.say(note)
        return self.gcp.notes, self.pipe.gcp_fields(self.search)
