"""GCP's steps inside a pruning run: the λ search, the regularize and debias steps, and a
checkpoint after each, resumable from the last one (the run around them is :mod:`prunenet.runs`)."""
from __future__ import annotations

import os
import time
from typing import Dict, List, Optional

import numpy as np

from .distributed import Workers
from .failpoints import failpoint
from .graph import ChannelGraph
from .records import CHECKPOINT_DIR, STEPS_FILE, write_steps
from .run_settings import DataRun
from .select import Selection

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
    if search["chosen"] == 0:
        lines.append("λ = 0 (no regulariser) was chosen: no candidate that regularises scored "
                     "within one standard error of the least; the selection ranks rescaled |γ|")
    return lines


def gcp_steps(run: DataRun, net, graph: ChannelGraph, cost, ctx, train, ckpt, rows, timings,
               say, shares, progress: dict, workers=None):
    """The GCP steps of a run, resuming from ``ckpt``, with a checkpoint after each; returns the
    selection, the masked network, its parameters for surgery and GCP's notes."""
    steps = _GCPSteps(run, net, graph, cost, ctx, train, ckpt, rows, timings, say, shares,
                      progress, workers)
    if ckpt is not None:
        steps.restore(ckpt)
    if steps.searching:
        steps.search_reg()
    elif steps.search is not None:
        steps.gcp.config.reg = steps.search["chosen"]
        steps.gcp.search = steps.search
    for t in range(steps.done + 1, run.steps + 1):
        steps.step(t)
    return steps.result()


class _GCPSteps:
    """GCP's steps in one run (:func:`gcp_steps`): the masked network, its trainers, their
    batches, the λ search's state, and the checkpoints of them all."""

    def __init__(self, run: DataRun, net, graph: ChannelGraph, cost, ctx, train, ckpt,
                 rows: List[dict], timings: Dict[str, float], say, shares, progress: dict,
                 workers: Optional[Workers]) -> None:
        from .methods import get
        from .methods.gcp import GCP
        from .train import BatchStream
        from .wrapper import MaskedNetwork
        self.run, self.net, self.graph, self.ctx = run, net, graph, ctx
        self.rows, self.timings, self.say, self.progress = rows, timings, say, progress
        self.ckpt_dir = os.path.join(run.out, CHECKPOINT_DIR)
        self.wrapper = MaskedNetwork(net, graph, ctx, stream_score=run.stream_score)
        auto = run.reg == "auto"
        settings = dict(target=run.target, steps=run.steps, reg=0.0 if auto else run.reg,
                        epochs_per_step=run.epochs_per_step, debias_epochs=run.debias_epochs,
                        lr=run.lr * run.lr_factor(len(ctx), workers.count if workers else 1),
                        momentum=run.momentum, round_to=run.round_to, min_width=run.min_width)
        config = get(run.method).config(**settings)
        self.gcp = GCP(self.wrapper, cost, config, ctx, progress=run.progress, workers=workers,
                       sync_every=run.sync_every)
        if auto:  # the λ candidates are scored on training images the steps never see
            train = self._hold_out(train)
        self.stream = BatchStream(lambda e, s: shares(train, e, s))
        self.done, self.step_state = 0, None
        self.search = ckpt.get("search") if ckpt is not None else None
        self.searching = auto and not (self.search or {}).get("done") and \
            (ckpt is None or self.search is not None)

    def _hold_out(self, train):
        """``train`` without the images held out to score the λ candidates."""
        from .data import holdout
        self.held_count = min(self.run.search_holdout, max(1, len(train) // 10))
        train, held = holdout(train, self.held_count, self.run.seed)
        self.held_batches = held.batches(self.run.batch_size, shuffle=False)
        self.trained_count = len(train)
        self.held_rule = getattr(held, "drawn", f"drawn at random (seed {self.run.seed})")
        return train

    def heldout_losses(self):
        """The debiased network's loss on each held-out image."""
        from .data import losses
        from .wrapper import DEBIAS
        return losses(self.wrapper.block(DEBIAS), self.held_batches, self.ctx)

    def restore(self, ckpt: dict) -> None:
        """The masks, weights, trainers, batch position and progress of checkpoint ``ckpt``."""
        from .checkpoint import restore_trainer
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

    def save(self, tag: str, finished: int, state: Optional[dict]) -> None:
        """A checkpoint ``tag`` after ``finished`` steps (inside the next, at ``state``)."""
        from .checkpoint import save_checkpoint
        gcp = self.gcp
        last = gcp.last_selection
        save_checkpoint(self.ckpt_dir, tag, gcp.arrays(),
                        {"regularize": gcp.reg_trainer, "debias": gcp.debias_trainer},
                        stage="gcp", step=finished, step_state=state, stream=self.stream.state(),
                        notes=gcp.notes, rows=self.rows, search=self.search,
                        zeros_pruned=gcp.zeros_pruned,
                        largest_block=last.largest_block if last else None,
                        blocks_removed=last.blocks_removed if last else None,
                        timings=self.timings, net_prefix=self.net.prefix, **self.progress)
        failpoint("checkpointed-phase" if state is not None else "checkpointed-step")

    def search_reg(self) -> None:
        """λ chosen by :meth:`prunenet.methods.gcp.GCP.search_reg` (a checkpoint after each
        candidate); the network is left at its start for step 1."""
        run, gcp, timings = self.run, self.gcp, self.timings
        unit = "reg" if run.reg_grid else "shrink"
        grid = run.reg_grid or run.shrink_grid
        self.say(f"choosing λ by the one-standard-error rule on the debias loss of a short step 1 "
                 f"on {self.held_count} held-out training images")
        t0 = time.time() - timings.get("reg_search_s", 0.0)

        def on_candidate(state: dict) -> None:
            self.search = state
            timings["reg_search_s"] = time.time() - t0
            k = sum(v is not None for v in state["losses"])
            self.save(f"search-{k}", 0, None)  # the start is in force
            failpoint("search")
        search = gcp.search_reg(self.stream, self.heldout_losses, grid, unit=unit,
                                fraction=run.search_fraction, state=self.search,
                                on_candidate=on_candidate)
        self.search = dict(search, holdout_images=self.held_count,
                           trained_images=self.trained_count, holdout_rule=self.held_rule)
        timings["reg_search_s"] = time.time() - t0
        for line in search_lines(self.search):
            self.say(line)
        self.save("search", 0, None)

    def step(self, t: int) -> None:
        """Step ``t`` (from inside it, resuming), with checkpoints in its phases and at its
        end."""
        run, timings = self.run, self.timings
        t0 = time.time() - (timings.get(f"step{t}_s", 0.0) if self.step_state else 0.0)

        def on_progress(state: dict) -> None:
            timings[f"step{t}_s"] = time.time() - t0
            if state["done"] == 0 or state["done"] % run.checkpoint_every == 0:
                self.save(f"step{t}-{state['phase']}-{state['done']}", t - 1, state)
            if state["done"]:
                failpoint(state["phase"])
        records = self.gcp.run_step(t, self.stream, state=self.step_state,
                                    on_progress=on_progress)
        self.step_state = None
        timings[f"step{t}_s"] = time.time() - t0
        self._add_rows(records)
        self.save(f"step{t}", t, None)
        ran = [r for r in records if np.isfinite(r.loss)]  # slimming has no debias phase
        loss = f"{ran[-1].phase} loss {ran[-1].loss:.4f}" if ran else "no training"
        self.say(f"step {t}/{run.steps}: cost {records[-1].achieved:.4f} of the unpruned "
                 f"(target {records[-1].target:.4f}); {loss}, "
                 f"{records[0].zeroed_channels} channels zeroed by the regulariser")

    def _add_rows(self, records) -> None:
        """``records``' rows added to the run's, and ``steps.csv`` written."""
        import dataclasses
        for record in records:
            self.rows.append(dataclasses.asdict(record))
        write_steps(os.path.join(self.run.out, STEPS_FILE), self.rows)

    def result(self) -> tuple:
        """GCP's notes logged; the selection, the masked network, its parameters for surgery,
        the notes and the report's GCP fields."""
        import mxnet as mx
        from .wrapper import REGULARIZE
        gcp = self.gcp
        for note in gcp.notes:
            self.say(note)
        info = {"reg": gcp.config.reg, "reg_search": self.search,
                "zeros_pruned": gcp.zeros_pruned, "stream_score": self.run.stream_score}
        mx.nd.waitall()  # static_alloc: read the parameters only once they are written
        return (gcp.selection(), self.wrapper.block(REGULARIZE), self.wrapper.folded_params(),
                gcp.notes, info)
