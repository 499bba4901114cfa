"""``gcp``: Global Channel Pruning, the paper's method (PruneNet).

T alternations of: rescale (so |s| is each channel's global importance) → regularize (proximal
SGD on loss + λ Σ c_i |s_i| with BatchNorm on its running statistics and convolutions frozen) →
select blocks of least |s| down to cost₀·α^(t/T), every channel the regulariser zeroed included
(the paper counts those as pruned) → debias (ordinary BatchNorm, no penalty). The surgery and
fine-tuning that follow are the caller's (see :mod:`prunenet.run.folder`).

λ is chosen as the paper's §4.4 says, by the loss of the debias objective (its eq. 7) on
held-out training images, with two rules of our own that make the choice mean something:

- the candidates are *shrink levels* ρ, not raw λ: ρ is the total soft-threshold one step's
  regularize phase applies to a channel of average cost (λ·lr·iterations), in units of the
  median importance per unit cost, median(|s|/c), measured after step 1's rescale. ρ = 1 would
  zero half the channels if the loss did not resist, whatever the dataset, learning rate or
  epochs per step; raw λ = ρ·median(|s|/c) / (lr·iterations) is reported beside it. ρ = 0 (no
  regulariser) is always a candidate, as the reference of what the regulariser adds.
- the choice is the one-standard-error rule: the candidates are scored on the same held-out
  images, so the most regularising candidate whose mean loss exceeds the lowest by at most the
  standard error of their paired per-image differences is chosen (lasso users know it as
  ``lambda.1se``); a loss difference smaller than its own noise never decides. A candidate
  whose short first step alone (its zeroed channels pruned) goes below the run's target α by
  more than one block is not admissible: it would remove more than was asked for.

:meth:`GCPSchedule.search_reg` scores each candidate on a short version of step 1 — ``fraction``
of its regularize and debias batches, λ scaled so the total shrink is the candidate's ρ — all from
the same start, then leaves the network at that start with λ set: step 1 then runs in full.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.costs import CostModel
from ..training.distributed import Workers
from ..errors import PrunenetError
from ..core.select import Selection, block_size, check_cost_target, select
from ..options import same_as, setting
from ..training.train import SYNC_EVERY, BatchStream, FinetuneConfig, NonFiniteError, run_batches
from .masked import DEBIAS, REGULARIZE, MaskedNetwork
from ..core.registry import register

__all__ = ["GCPConfig", "GCPSchedule", "ScheduleHooks", "StepRecord", "DEFAULT_REG",
           "SHRINK_GRID", "SEARCH_SHARE", "SEARCH_MIN_BATCHES", "check_reg", "one_se_rule",
           "search_fraction"]

# λ of every entry point (the CLI, ``prunenet.GCP``, experiment configs, the demo): the paper's
# rule, chosen by the held-out debias loss
DEFAULT_REG = "auto"
# the candidates of ``auto``, as shrink levels ρ (see above): none, little, up to far past any
# one step's target (on the first Fashion-MNIST ResNet-18 cell at one epoch per step, ρ 1's
# first step alone kept 0.19 of the FLOPs for α 0.25, and a ρ of 3 kept 0.007)
SHRINK_GRID = (0.0, 0.03, 0.1, 0.3, 1.0)
# the candidates' batches as a fraction of the pruning steps' (``search_fraction``); each
# candidate's own costs (a rescale, a selection, a held-out evaluation, a restore) come on top,
# so that the whole search stays within a quarter of the steps' time: at 0.2 it took 0.26x in
# benchmarks/pruning_and_latency.py part (d) with 2048 images an epoch
SEARCH_SHARE = 0.15
# the fewest batches a candidate's regularize or debias phase runs
SEARCH_MIN_BATCHES = 8


def search_fraction(steps: int, candidates: int, share: float = SEARCH_SHARE) -> float:
    """The fraction of step 1's batches each λ candidate runs so that the search takes about
    ``share`` of the time of ``steps`` full steps."""
    return float(min(1.0, share * steps / max(candidates, 1)))


def one_se_rule(per_image, admissible: Optional[Sequence[bool]] = None
                ) -> Tuple[int, int, np.ndarray, np.ndarray]:
    """The one-standard-error rule over candidates scored on the same held-out images.

    ``per_image``: candidates × images losses, the candidates in order of increasing
    regularisation. Returns (the chosen candidate, the one of least mean loss, each candidate's
    mean loss, the standard error of each one's per-image difference to the least). The chosen
    one is the most regularising whose mean exceeds the least by at most that standard error;
    a candidate with a non-finite loss, or not ``admissible``, is never chosen."""
    losses = np.asarray(per_image, dtype=np.float64)
    finite = np.isfinite(losses).all(axis=1)
    if admissible is not None:
        finite &= np.asarray(admissible, dtype=bool)
    if not finite.any():
        raise PrunenetError("every λ candidate's held-out loss is NaN or Inf, or its first step "
                            "alone went below the target: try a smaller --lr or --shrink-grid")
    means = np.where(finite, losses.mean(axis=1), np.inf)
    best = int(np.argmin(means))
    n = losses.shape[1]
    diff = np.where(finite[:, None], losses - losses[best], 0.0)
    se = diff.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(len(losses))
    se = np.where(finite, se, np.inf)
    within = finite & (means - means[best] <= se)
    return int(np.flatnonzero(within).max()), best, means, se


def check_reg(reg, grid: Optional[Sequence[float]] = None,
              shrink_grid: Optional[Sequence[float]] = None) -> None:
    """Refuse a λ that is neither a non-negative number nor ``"auto"``, and bad candidate grids."""
    if reg != "auto" and (isinstance(reg, str) or not np.isfinite(reg) or reg < 0):
        raise PrunenetError(f"--reg {reg!r} must be a non-negative number (the weight λ of the "
                            f"L1 penalty) or 'auto' (chosen by the held-out debias loss)")
    if grid is not None and (len(grid) < 1 or any(
            isinstance(v, str) or not np.isfinite(v) or v < 0 for v in grid)):
        raise PrunenetError(f"--reg-grid {grid} must be one or more non-negative numbers")
    if shrink_grid is not None and (len(shrink_grid) < 1 or any(
            isinstance(v, str) or not np.isfinite(v) or v < 0 for v in shrink_grid)):
        raise PrunenetError(f"--shrink-grid {shrink_grid} must be one or more non-negative "
                            f"numbers")
    if grid is not None and shrink_grid is not None:
        raise PrunenetError("give --reg-grid (raw λ) or --shrink-grid (shrink levels), not both")


@register("gcp", needs="training")
@dataclass
class GCPConfig:
    """Hyper-parameters of the pruning schedule."""

    target: float = setting(help="fraction of the objective's cost to keep, in (0, 1)")
    steps: int = setting(3, "pruning steps T (default {default})")
    reg: float = setting(0.0, "λ, the weight of the L1 penalty, as a number (the entry points "
                              "resolve their reg, 'auto' by default, into it)")
    epochs_per_step: float = setting(1.0, "regularize epochs per step; fractions allowed "
                                          "(default {default})")
    debias_epochs: Optional[float] = setting(None, "debias epochs per step (default: "
                                                   "--epochs-per-step)")
    lr: float = setting(0.01, "learning rate of the pruning steps per 256 images, scaled to the "
                              "global batch (default {default})")
    momentum: float = same_as(FinetuneConfig, "momentum")
    round_to: int = setting(8, "channels are removed in blocks of this many (default {default})")
    min_width: int = setting(8, "no group keeps fewer channels than this (default {default})")
    # GCP's choices; network slimming (:mod:`prunenet.gcp.slimming`) turns them all off
    bn_off: bool = setting(True, "regularize with BatchNorm on its running statistics")
    rescale: bool = setting(True, "move consumer norms into the scales before regularizing")
    cost_weighted: bool = setting(True, "λ·c_i per channel (else λ alike for every channel)")
    train_weights: bool = setting(False, "regularize trains the convolutions too")
    prune_zeros: bool = setting(True, "a channel the regulariser zeroed is pruned whatever the "
                                      "target")

    @property
    def debias_phase_epochs(self) -> float:
        """Epochs of each step's debias phase: ``debias_epochs``, else ``epochs_per_step``."""
        return self.epochs_per_step if self.debias_epochs is None else self.debias_epochs

    def check(self) -> None:
        check_cost_target(self.target, "--target")
        if self.steps < 1:
            raise PrunenetError(f"--steps {self.steps} must be at least 1")
        if self.reg < 0:
            raise PrunenetError(f"--reg {self.reg} must not be negative (it is the weight λ of "
                                f"the L1 penalty)")
        if not 0 < self.epochs_per_step < np.inf or (self.debias_epochs is not None
                                                     and not 0 <= self.debias_epochs < np.inf):
            raise PrunenetError("--epochs-per-step must be positive")
        if not 0 < self.lr < np.inf:  # NaN too
            raise PrunenetError(f"--lr {self.lr} must be positive")


@dataclass
class StepRecord:
    """One line of ``steps.csv``."""

    step: int
    phase: str
    target: float
    achieved: float
    loss: float
    top1: float
    zeroed_channels: int
    lr: float
    time_s: float


class ScheduleHooks:
    """What a caller of :meth:`GCPSchedule.fit` adds to it (checkpoints, rows, log lines): each
    a no-op here; the run folder (:mod:`prunenet.run.gcp_steps`) and the API override them."""

    def candidate(self, state: Dict[str, object]) -> None:
        """After each λ candidate, with the start back in force (``state``: the search's)."""

    def searched(self, search: Dict[str, object]) -> None:
        """After the λ search, λ set."""

    def progress(self, t: int, state: Dict[str, object]) -> None:
        """Inside step ``t``, after each batch and at the end of each phase."""

    def stepped(self, t: int, records: List["StepRecord"]) -> None:
        """After step ``t``, with its log lines."""


class GCPSchedule:
    """The GCP schedule on a :class:`MaskedNetwork`; resumable at any batch. :meth:`fit` drives
    it (the λ search, then the steps); ``prunenet.GCP`` and the run folder both call it."""

    def __init__(self, wrapper: MaskedNetwork, cost: CostModel, config: GCPConfig,
                 ctx: Sequence, progress: bool = True, workers: Optional[Workers] = None,
                 sync_every: int = SYNC_EVERY) -> None:
        from . import prox as optim  # noqa: F401  (registers 'proxsgd')
        config.check()
        self.wrapper, self.cost, self.config, self.ctx = wrapper, cost, config, list(ctx)
        self.workers = workers = workers or Workers()
        self.base_cost = cost.total()
        self.progress, self.sync_every = progress, sync_every
        reg_params = wrapper.trainable_params(REGULARIZE)
        if config.train_weights:
            reg_params.update(wrapper.weight_params())
        self.reg_trainer = workers.trainer(reg_params, "proxsgd", {
            "learning_rate": config.lr, "momentum": config.momentum, "thresholds": {},
            "keep_top": config.min_width})
        self.debias_trainer = workers.trainer(wrapper.trainable_params(DEBIAS), "sgd", {
            "learning_rate": config.lr, "momentum": config.momentum})
        self.notes: List[str] = []
        self.last_selection: Optional[Selection] = None  # of the latest step
        self.zeros_pruned = 0  # channels removed because their scale was 0, over all steps
        self.search: Optional[Dict[str, object]] = None  # the λ search's grid, losses, choice

    def fit(self, stream: BatchStream, heldout_losses: Optional[Callable[[], np.ndarray]] = None,
            *, grid: Optional[Sequence[float]] = None, unit: str = "shrink",
            fraction: Optional[float] = None, search: Optional[Dict[str, object]] = None,
            done: int = 0, step_state: Optional[Dict[str, object]] = None,
            timings: Optional[Dict[str, float]] = None,
            hooks: Optional[ScheduleHooks] = None) -> None:
        """The one driver of the schedule: with ``heldout_losses``, λ chosen first
        (:meth:`search_reg` over ``grid`` in ``unit``, continuing the saved ``search`` state);
        then steps ``done`` + 1 … T, the first from inside at ``step_state``. ``timings`` gets
        ``reg_search_s`` and ``step{t}_s``, continuing the time already in it when resuming;
        ``hooks`` (:class:`ScheduleHooks`) are told of each candidate, batch and step."""
        hooks = hooks or ScheduleHooks()
        timings = {} if timings is None else timings
        if heldout_losses is not None:
            t0 = time.time() - timings.get("reg_search_s", 0.0)

            def on_candidate(state: Dict[str, object]) -> None:
                timings["reg_search_s"] = time.time() - t0
                hooks.candidate(state)
            self.search_reg(stream, heldout_losses, grid, unit=unit, fraction=fraction,
                            state=search, on_candidate=on_candidate)
            timings["reg_search_s"] = time.time() - t0
            hooks.searched(self.search)
        for t in range(done + 1, self.config.steps + 1):
            t0 = time.time() - (timings.get(f"step{t}_s", 0.0) if step_state else 0.0)

            def on_progress(state: Dict[str, object], t: int = t, t0: float = t0) -> None:
                timings[f"step{t}_s"] = time.time() - t0
                hooks.progress(t, state)
            records = self.run_step(t, stream, state=step_state, on_progress=on_progress)
            step_state = None
            timings[f"step{t}_s"] = time.time() - t0
            hooks.stepped(t, records)

    def step_target(self, t: int) -> float:
        """The cost fraction to reach after step ``t`` of T: α^(t/T)."""
        return self.config.target ** (t / self.config.steps)

    def run_step(self, t: int, stream: BatchStream,
                 evaluate: Optional[Callable[[MaskedNetwork], float]] = None,
                 state: Optional[Dict[str, object]] = None,
                 on_progress: Optional[Callable[[Dict[str, object]], None]] = None,
                 fraction: float = 1.0) -> List[StepRecord]:
        """Step ``t`` (1-based): rescale, regularize, select, debias. Returns its log lines.

        The step's progress is a JSON-able ``state`` (phase, batches done, running sums, the
        log lines of finished phases): ``on_progress(state)`` is called after every batch and
        at the end of each phase, and a step interrupted anywhere continues from the last such
        state given back as ``state`` (with the parameters, optimizer states and ``stream``
        position of that moment)."""
        w, cfg = self.wrapper, self.config
        graph = w.graph
        if state is None:
            if cfg.rescale:
                w.rescale()
            weights = self.channel_costs()
            self.reg_trainer._optimizer.set_thresholds(
                {name: cfg.reg * c for name, c in weights.items()})
            state = {"step": t, "phase": REGULARIZE, "done": 0, "sums": None, "elapsed": 0.0,
                     "records": []}
        state = dict(state)
        records = [StepRecord(**r) for r in state["records"]]

        def run(phase: str, trainer, epochs: float) -> Dict[str, float]:
            from .prox import refresh_master_copies
            refresh_master_copies(trainer)  # float16: the master copies see set_data's values
            start, total = time.time() - state["elapsed"], self.batches(stream, epochs, fraction)

            def batch_done(done: int, sums: Dict[str, float]) -> None:
                state.update(done=done, sums=sums, elapsed=time.time() - start)
                if on_progress is not None:
                    on_progress(state)
            result = run_batches(w.block(phase), trainer,
                                 stream.take_batches(total - int(state["done"])), self.ctx,
                                 what=f"step {t}/{cfg.steps} {phase}", progress=self.progress,
                                 total=total, start=int(state["done"]), sums=state["sums"],
                                 on_batch=batch_done, sync_every=self.sync_every)
            self.workers.average_running_stats(w.net)
            result["time_s"] = time.time() - start
            return result

        def finish(phase: str, record: StepRecord) -> None:
            records.append(record)
            state.update(phase=phase, done=0, sums=None, elapsed=0.0,
                         records=[asdict(r) for r in records])
            if on_progress is not None:
                on_progress(state)

        if state["phase"] == REGULARIZE:
            reg = run(REGULARIZE if cfg.bn_off else DEBIAS, self.reg_trainer, cfg.epochs_per_step)
            start = time.time()
            scores = w.scores()
            self._check_finite(scores, t)
            zeroed = int(sum(((s == 0) & k).sum() for s, k, g in zip(scores, w.keep, graph.groups)
                             if g.prunable))
            for g in graph.prunable_groups:
                kept = w.keep[g.index]
                live = int((scores[g.index][kept] != 0).sum())
                if kept.sum() > cfg.min_width and live <= cfg.min_width:
                    self.notes.append(
                        f"step {t}: the regulariser zeroed every channel of group {g.index} "
                        f"({g.producers[0]}) but the min_width={cfg.min_width} largest, which "
                        f"it spares — consider a smaller --reg")
            sel = select(graph, self.cost, scores, self.step_target(t), keep=w.keep,
                         priority="score", round_to=cfg.round_to, min_width=cfg.min_width,
                         base_cost=self.base_cost, drop_zeros=cfg.prune_zeros)
            sel = self.workers.rank0_selection(sel, self.cost)
            if sel.zero_channels_removed:
                self.zeros_pruned += sel.zero_channels_removed
                self.notes.append(f"step {t}: {sel.zero_channels_removed} channels the "
                                  f"regulariser zeroed were pruned with their blocks; cost "
                                  f"{sel.achieved:.4f} for a step target of "
                                  f"{self.step_target(t):.4f}")
            removed = [(w.scale_name(g.index), w.keep[g.index] & ~sel.keep[g.index])
                       for g in graph.prunable_groups]
            self.notes += [f"step {t}: {n}" for n in w.apply_keep(sel.keep)]
            from .prox import zero_state_rows
            for trainer in (self.reg_trainer, self.debias_trainer):
                zero_state_rows(trainer, [r for r in removed if r[1].any()])
            self.last_selection = sel
            finish(DEBIAS, StepRecord(t, REGULARIZE, self.step_target(t), self.achieved(),
                                      reg["loss"], reg["top1"], zeroed, cfg.lr,
                                      reg["time_s"] + time.time() - start))
        zeroed = records[0].zeroed_channels
        if cfg.debias_phase_epochs != 0:
            deb = run(DEBIAS, self.debias_trainer, cfg.debias_phase_epochs)
            self._check_finite(w.scores(), t)
        else:
            deb = {"loss": float("nan"), "top1": float("nan"), "time_s": 0.0}
        top1 = evaluate(w) if evaluate is not None else deb["top1"]
        records.append(StepRecord(t, DEBIAS, self.step_target(t), self.achieved(), deb["loss"],
                                  top1, zeroed, cfg.lr, deb["time_s"]))
        return records

    @staticmethod
    def batches(stream: BatchStream, epochs: float, fraction: float = 1.0) -> int:
        """How many batches a phase of ``epochs`` runs at ``fraction`` of its length."""
        full = stream.count(epochs)
        if fraction >= 1.0:
            return full
        return min(full, max(SEARCH_MIN_BATCHES, int(round(full * fraction))))

    def channel_costs(self) -> Dict[str, np.ndarray]:
        """Per regularised parameter, each live channel's cost weight c at the current widths
        (1 alike without ``cost_weighted``): the penalty is λ·c."""
        w = self.wrapper
        widths = np.array([int(k.sum()) for k in w.keep])
        weights = w.cost_weights(self.cost.marginal(widths))
        if not self.config.cost_weighted:
            weights = {name: np.ones_like(c) for name, c in weights.items()}
        return weights

    def shrink_scale(self) -> float:
        """The median importance per unit cost, median(|s|/c), over the live prunable
        channels, measured after the rescale: the unit of a shrink level ρ."""
        w = self.wrapper
        weights = self.channel_costs()
        scores = w.scores()
        ratios = np.concatenate([
            scores[g.index][w.keep[g.index]] / np.maximum(
                weights[w.scale_name(g.index)][w.keep[g.index]], 1e-12)
            for g in w.graph.prunable_groups])
        ratios = ratios[ratios > 0]
        return float(np.median(ratios)) if len(ratios) else 1.0

    def reg_of_shrink(self, shrink: float, scale: float, iterations: int) -> float:
        """Raw λ whose soft thresholds add up to ``shrink`` × ``scale`` over ``iterations``
        batches at the step's learning rate, for a channel of average cost."""
        return float(shrink * scale / (self.config.lr * max(iterations, 1)))

    def achieved(self) -> float:
        widths = np.array([int(k.sum()) for k in self.wrapper.keep])
        return self.cost.total(widths) / self.base_cost

    def selection(self) -> Selection:
        """The channels kept now, as a :class:`Selection` against the unpruned cost."""
        w = self.wrapper
        widths = np.array([int(k.sum()) for k in w.keep])
        last = self.last_selection
        largest = last.largest_block if last is not None else max(
            (self.cost.saving(widths, g.index, block_size(g, self.config.round_to))
             for g in w.graph.prunable_groups
             if widths[g.index] - block_size(g, self.config.round_to) >= self.config.min_width),
            default=0.0)
        return Selection([k.copy() for k in w.keep], self.cost.total(widths), self.base_cost,
                         largest, last.blocks_removed if last is not None else 0)

    def _check_finite(self, scores, t: int) -> None:
        if not all(np.isfinite(s).all() for s in scores):
            raise NonFiniteError(f"a BatchNorm scale or mask became NaN or Inf in step {t}; the "
                                 f"learning rate is probably too high: try a smaller --lr")

    def state(self) -> Dict[str, object]:
        return {"config": asdict(self.config), "base_cost": self.base_cost,
                "notes": list(self.notes), "zeros_pruned": self.zeros_pruned}

    def arrays(self) -> Dict[str, np.ndarray]:
        """Every parameter and mask of the network being pruned, read once all writes are done
        (BatchNorm statistics averaged over the devices)."""
        from ..core.replicas import host_copy
        w = self.wrapper
        out = host_copy(w.params)
        out.update(host_copy({p.name: p for p in w.mask_params.values()}))
        return out

    # -- choosing λ --------------------------------------------------------------------------
    def snapshot(self, stream: BatchStream) -> Dict[str, object]:
        """Everything a step changes, in memory: parameters, masks, keep masks, optimizer
        states, the stream's position and the step's bookkeeping."""
        w = self.wrapper
        return {"arrays": self.arrays(), "keep": [k.copy() for k in w.keep],
                "trainers": [_trainer_bytes(t) for t in (self.reg_trainer, self.debias_trainer)],
                "stream": stream.state(), "notes": list(self.notes),
                "last_selection": self.last_selection, "zeros_pruned": self.zeros_pruned}

    def restore(self, snap: Dict[str, object], stream: BatchStream) -> None:
        """Go back to a :meth:`snapshot`."""
        w = self.wrapper
        for name, value in snap["arrays"].items():
            w.set(name, value)
        w.keep = [k.copy() for k in snap["keep"]]
        for trainer, data in zip((self.reg_trainer, self.debias_trainer), snap["trainers"]):
            _load_trainer_bytes(trainer, data)
        stream.epoch, stream.index = snap["stream"]["epoch"], snap["stream"]["index"]
        self.notes = list(snap["notes"])
        self.last_selection = snap["last_selection"]
        self.zeros_pruned = snap["zeros_pruned"]

    def search_reg(self, stream: BatchStream, heldout_losses: Callable[[], np.ndarray],
                   grid: Optional[Sequence[float]] = None, unit: str = "shrink",
                   fraction: Optional[float] = None, state: Optional[Dict[str, object]] = None,
                   on_candidate: Optional[Callable[[Dict[str, object]], None]] = None
                   ) -> Dict[str, object]:
        """Choose λ for the run and leave the network where it was, λ set in the config.

        ``grid``: the candidates, shrink levels ρ (``unit="shrink"``, default
        :data:`SHRINK_GRID`) or raw λ (``unit="reg"``); 0 is added when missing and they are
        tried in increasing order. Each runs ``fraction`` of step 1 (default:
        :func:`search_fraction`) from the state at the call, then ``heldout_losses()`` gives
        its per-image held-out debias losses; :func:`one_se_rule` chooses. ``state`` (JSON-able,
        as :attr:`search` holds it) continues an interrupted search; ``on_candidate(state)``
        is called after each candidate, with the starting state back in force. Returns the
        search's state (also in :attr:`search`)."""
        if unit not in ("shrink", "reg"):
            raise ValueError(f"unit {unit!r} must be 'shrink' or 'reg'")
        grid = [float(v) for v in (SHRINK_GRID if grid is None else grid)]
        if not grid or any(not np.isfinite(v) or v < 0 for v in grid):
            raise PrunenetError(f"the λ grid {grid} must be non-negative numbers")
        grid = sorted(set(grid) | {0.0})
        start = self.snapshot(stream)
        full = self.batches(stream, self.config.epochs_per_step)
        if state is None:
            if fraction is None:
                fraction = search_fraction(self.config.steps, len(grid))
            if self.config.rescale:
                self.wrapper.rescale()
            scale = self.shrink_scale()
            self.restore(start, stream)
            regs = [self.reg_of_shrink(v, scale, full) if unit == "shrink" else v for v in grid]
            state = {"unit": unit, "grid": grid, "regs": regs, "scale": scale,
                     "fraction": float(fraction), "iterations": full,
                     "losses": [None] * len(grid), "per_image": [None] * len(grid),
                     "achieved": [None] * len(grid), "slack": [None] * len(grid),
                     "rule": "one-standard-error",
                     "done": False}
        state = dict(state)
        if state["grid"] != grid or state["unit"] != unit:
            raise PrunenetError(f"the saved λ search was over {state['unit']} "
                                f"{state['grid']}, not {unit} {grid}")
        short = self.batches(stream, self.config.epochs_per_step, state["fraction"])
        # the candidates' batches over the steps' (``share``), and what the fraction aimed at
        # before the floor of SEARCH_MIN_BATCHES (``aimed``)
        debias = self.config.debias_phase_epochs
        deb_full = self.batches(stream, debias) if debias else 0
        deb_short = self.batches(stream, debias, state["fraction"]) if debias else 0
        steps_batches = max(1, self.config.steps * (full + deb_full))
        state["share"] = len(grid) * (short + deb_short) / steps_batches
        state["aimed"] = len(grid) * state["fraction"] * (full + deb_full) / steps_batches
        # the network is at the start here, and each candidate leaves it there
        for k, reg in enumerate(state["regs"]):
            if state["per_image"][k] is not None:
                continue
            # the short step's λ gives the candidate's whole shrink in its fewer batches
            self.config.reg = reg * full / short
            records = self.run_step(1, stream, fraction=state["fraction"])
            # how far below the run's target the step went, beyond the one block any selection
            # may overshoot by
            last = self.last_selection
            slack = last.largest_block / self.base_cost if last is not None else 0.0
            state["achieved"][k] = float(records[-1].achieved)
            state["slack"][k] = float(slack)
            losses = np.asarray(heldout_losses(), dtype=np.float64).ravel()
            state["per_image"][k] = [float(v) if np.isfinite(v) else float("inf")
                                     for v in losses]
            state["losses"][k] = float(np.mean(state["per_image"][k]))
            self.restore(start, stream)
            self.config.reg = 0.0
            if on_candidate is not None:
                on_candidate(dict(state))
        # a candidate whose first step alone (its zeroed channels pruned) went below the run's
        # target removes more than was asked for: not admissible
        admissible = [a >= self.config.target - slack - 1e-9
                      for a, slack in zip(state["achieved"], state["slack"])]
        chosen, best, means, se = one_se_rule(state["per_image"], admissible)
        state.update(chosen_index=chosen, best=best, se=[float(v) for v in se],
                     admissible=admissible, chosen=state["regs"][chosen], done=True)
        self.config.reg = state["regs"][chosen]
        self.search = state
        return state


def _trainer_bytes(trainer) -> bytes:
    """A Gluon trainer's optimizer states as bytes (``Trainer.save_states``)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "states")
        trainer.save_states(path)
        with open(path, "rb") as f:
            return f.read()


def _load_trainer_bytes(trainer, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "states")
        with open(path, "wb") as f:
            f.write(data)
        trainer.load_states(path)


def __getattr__(name: str):
    """``GCP``, this class's old name (``prunenet.GCP`` is the API's): importable for one more
    release, with a DeprecationWarning."""
    if name == "GCP":
        import warnings
        warnings.warn("prunenet.gcp.schedule.GCP is now GCPSchedule (prunenet.GCP is the API's "
                      "class); the old name goes in the next release", DeprecationWarning,
                      stacklevel=2)
        return GCPSchedule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
