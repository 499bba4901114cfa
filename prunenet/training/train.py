"""Training loops: one pass over batches, evaluation, and the fine-tuning recipe.

Data comes in as an *epoch maker*: ``make_epoch(epoch, start)`` returns the batches of epoch
``epoch`` from batch ``start`` on (an iterable with ``len``, the epoch's full batch count). A
:class:`BatchStream` walks such epochs in fractions, remembering where it stopped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import NonFiniteError, PrunenetError
from ..options import setting

__all__ = ["BatchStream", "NonFiniteError", "run_batches", "FinetuneConfig", "recalibrated",
           "RECALIBRATE_BATCHES",
           "finetune", "cosine_lr", "learning_rate", "LR_MODES", "split"]


SYNC_EVERY = 50  # batches between host reads of the training loss and accuracy


class BatchStream:
    """Consecutive batches over epochs, taken in (fractions of) epochs; position is resumable."""

    def __init__(self, make_epoch: Callable[[int, int], Iterable], epoch: int = 0,
                 index: int = 0) -> None:
        self.make_epoch = make_epoch
        self.epoch, self.index = epoch, index
        self._len: Optional[int] = None

    @property
    def batches_per_epoch(self) -> int:
        if self._len is None:
            self._len = len(self.make_epoch(0, 0))
            if self._len < 1:
                raise PrunenetError("the training data yields no batch; use a smaller batch size "
                                    "or more data")
        return self._len

    def count(self, epochs: float) -> int:
        """How many batches ``epochs`` (a fraction allowed) is: at least one."""
        return max(1, int(math.ceil(epochs * self.batches_per_epoch - 1e-9)))

    def take(self, epochs: float):
        """Yield the next ``epochs`` worth of batches, crossing epoch boundaries."""
        return self.take_batches(self.count(epochs))

    def take_batches(self, count: int):
        """Yield the next ``count`` batches. The position moves on before each batch is handed
        out, so :meth:`state` taken while a batch is in use resumes after that batch."""
        remaining = count
        while remaining > 0:
            n, epoch, before = self.batches_per_epoch, self.epoch, remaining
            for batch in self.make_epoch(epoch, self.index):
                self.index += 1
                if self.index >= n:
                    self.epoch, self.index = epoch + 1, 0
                remaining -= 1
                yield batch
                if remaining == 0 or self.epoch != epoch:
                    break
            if remaining == before:  # this pass gave nothing: the next would give nothing too
                raise PrunenetError(f"the training data gave no batch in epoch {epoch} from "
                                    f"batch {self.index}, though it counted {n} per epoch (it "
                                    f"can be read only once, as a generator, or ends early); "
                                    f"pass a gluon.data.DataLoader or a list of batches")

    def state(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}


# batches of training images BatchNorm's statistics are re-estimated on (momentum 0.9: the
# reset statistics keep 0.9^100 < 3e-5 of their weight)
RECALIBRATE_BATCHES = 100


class recalibrated:
    """``with recalibrated(net, batches, ctx):`` — inside, ``net``'s BatchNorm running
    statistics are re-estimated from scratch on ``batches`` (forward passes in training mode,
    no parameter changes); on leaving, the statistics it had are put back. Every method's pruned
    network is evaluated so "right after selection", to compare selections rather than stale
    statistics."""

    def __init__(self, net, batches: Iterable, ctx: Sequence) -> None:
        self.net, self.batches, self.ctx = net, batches, list(ctx)

    def __enter__(self):
        import mxnet as mx
        from ..core.replicas import RUNNING_STATS, average_running_stats, compute_dtype
        params = {name: p for name, p in self.net.collect_params().items()
                  if name.endswith(RUNNING_STATS)}
        mx.nd.waitall()
        self.saved = {name: [d.copy() for d in p.list_data()] for name, p in params.items()}
        for name, p in params.items():
            for d in p.list_data():
                d[:] = 0.0 if name.endswith("running_mean") else 1.0
        dtype = compute_dtype(self.net)
        # MXNet 1.9 moves BatchNorm's running statistics in the backward pass of a recorded
        # training-mode forward (not under train_mode() alone, nor in the forward): a backward
        # of zero head gradients moves them and leaves zero gradients, which nothing applies
        for batch in self.batches:
            xs, _ = split(batch, self.ctx, dtype)
            for x in xs:
                with mx.autograd.record(train_mode=True):
                    out = self.net(x)
                out.backward(mx.nd.zeros_like(out))
        average_running_stats(params)
        mx.nd.waitall()
        return self.net

    def __exit__(self, *exc) -> None:
        import mxnet as mx
        mx.nd.waitall()
        for name, p in self.net.collect_params().items():
            if name in self.saved:
                for d, value in zip(p.list_data(), self.saved[name]):
                    value.copyto(d)
        mx.nd.waitall()


def split(batch, ctx: Sequence, dtype: str = "float32") -> Tuple[List, List]:
    """A (data, label) batch as per-device lists, the data in ``dtype``: split across the
    devices, or as it is when it comes split already (lists, one array per device, as a dataset
    asked for batches on ``ctx`` yields them)."""
    from mxnet import gluon
    from ..core.replicas import on_devices
    data, label = batch
    if isinstance(data, (list, tuple)):
        data, label = list(data), list(label)
    elif len(ctx) == 1:
        data, label = [data.as_in_context(ctx[0])], [label.as_in_context(ctx[0])]
    else:
        data, label = (gluon.utils.split_and_load(data, ctx, even_split=False),
                       gluon.utils.split_and_load(label, ctx, even_split=False))
    return on_devices(data, dtype), label


def run_batches(block, trainer, batches: Iterable, ctx: Sequence, loss_fn=None,
                what: str = "training", lr_at: Optional[Callable[[int], float]] = None,
                teacher=None, distill_weight: float = 0.5, temperature: float = 1.0,
                progress: bool = True, total: Optional[int] = None, start: int = 0,
                sums: Optional[Dict[str, float]] = None,
                on_batch: Optional[Callable[[int, Dict[str, float]], None]] = None,
                sync_every: int = SYNC_EVERY, lr_flag: str = "--lr") -> Dict[str, float]:
    """Train ``block`` over ``batches``; return mean loss, training top-1 and batch count.

    To continue an interrupted pass, ``start`` is the number of batches already done (the
    learning-rate schedule and batch numbers go on from there) and ``sums`` their running sums;
    ``on_batch(done, sums)`` is called after every batch (e.g. to save a checkpoint). Loss and
    accuracy are summed on the devices and read every ``sync_every`` batches (the host waits for
    the devices only then); the ``sums`` handed to ``on_batch`` are read only if it looks at
    them. A non-finite loss stops with :class:`NonFiniteError` naming ``what`` and the flag of
    its learning rate, ``lr_flag``.
    """
    import mxnet as mx
    from mxnet import autograd, gluon
    from ..core.replicas import compute_dtype, on_devices

    if sync_every < 1:
        raise PrunenetError(f"--sync-every {sync_every} must be at least 1 (batches between "
                            f"reads of the loss and accuracy)")
    loss_fn = loss_fn or gluon.loss.SoftmaxCrossEntropyLoss()
    kl = gluon.loss.KLDivLoss(from_logits=False) if teacher is not None else None
    acc = dict(sums or {"loss": 0.0, "correct": 0, "seen": 0, "n": 0})
    tally = _DeviceTally(ctx, what, lr_flag)
    iterator = _progress(batches, what, total) if progress else batches
    if progress and start:
        iterator.update(start)
    # float16 networks: the data cast on the devices, the loss computed in float32
    dtype = compute_dtype(block)
    teacher_dtype = compute_dtype(teacher) if teacher is not None else dtype
    i = start
    for i, batch in enumerate(iterator, start):
        if lr_at is not None:
            trainer.set_learning_rate(lr_at(i))
        data, label = split(batch, ctx)
        size = sum(x.shape[0] for x in data)
        with autograd.record():
            outs = [block(x).astype("float32", copy=False) for x in on_devices(data, dtype)]
            if i == start:  # before the backward moves BatchNorm's statistics (MXNet 1.9
                # moves them there, not in the forward) and before any update
                _check_first_batch(data, label, what, classes=outs[0].shape[-1])
            ls = [loss_fn(o, y) for o, y in zip(outs, label)]
            if teacher is not None:
                soft = [mx.nd.softmax(teacher(x).astype("float32", copy=False) / temperature)
                        for x in on_devices(data, teacher_dtype)]
                ls = [(1 - distill_weight) * l_ + distill_weight * temperature ** 2 *
                      kl(o / temperature, s) for l_, o, s in zip(ls, outs, soft)]
        for l_ in ls:
            l_.backward()
        trainer.step(size)
        tally.add(ls, outs, label, size, i)
        acc["seen"] += size
        acc["n"] += 1
        if (i + 1) % sync_every == 0:  # by batch number: a resumed pass reads where the run did
            tally.read_into(acc, i)
            if progress:
                iterator.set_postfix(loss=f"{acc['loss'] / acc['n']:.4f}",
                                     top1=f"{acc['correct'] / max(acc['seen'], 1):.4f}")
        if on_batch is not None:
            on_batch(i + 1, _Sums(acc, tally, i))
    tally.read_into(acc, i)
    return {"loss": acc["loss"] / max(acc["n"], 1), "top1": acc["correct"] / max(acc["seen"], 1),
            "batches": acc["n"], "sums": acc}


def _check_first_batch(data: List, label: List, what: str, classes: Optional[int] = None) -> None:
    """Refuse a first batch whose images are not all finite or, given the network's number of
    ``classes``, whose labels are not all class indices ``0..classes-1``: trained on, either
    gives a wrong network without a word. The devices' verdicts are read in one host
    synchronisation."""
    import mxnet as mx
    host = mx.cpu()
    flags = [mx.nd.contrib.isfinite(x.astype("float32", copy=False)).min().reshape((1,))
             .as_in_context(host) for x in data]
    if classes is not None:
        flags += [((y >= 0) * (y < classes) * (y == mx.nd.floor(y))).min().reshape((1,))
                  .astype("float32").as_in_context(host) for y in label]
    ok = mx.nd.concat(*flags, dim=0).asnumpy()
    if not ok[:len(data)].all():
        raise PrunenetError(f"{what}: the first batch's images hold NaN or Inf; training "
                            f"on them makes the weights NaN: clean the data first")
    if not ok.all():  # only now read the labels themselves, to name one
        labels = np.concatenate([y.asnumpy().reshape(-1) for y in label])
        bad = labels[~((labels >= 0) & (labels < classes) & (labels == np.floor(labels)))]
        raise PrunenetError(f"{what}: the first batch has label {bad[0]:g}, not a class index "
                            f"0..{classes - 1} of the network's {classes} outputs; give each "
                            f"example its class index (or a network of more classes)")


class _DeviceTally:
    """Per device, the loss (sum of batch means) and correct predictions since the last read,
    kept on the device; :meth:`read_into` fetches all devices' in one host read."""

    def __init__(self, ctx: Sequence, what: str, lr_flag: str = "--lr") -> None:
        self.ctx, self.what, self.lr_flag = list(ctx), what, lr_flag
        self.pending: List = [None] * len(self.ctx)
        self.batch = -1  # the latest batch added

    def add(self, losses, outs, labels, size: int, batch: int) -> None:
        import mxnet as mx
        self.batch = batch
        for d, (l_, o, y) in enumerate(zip(losses, outs, labels)):
            hits = (o.argmax(axis=1) == y.astype(o.dtype)).sum().astype("float32")
            step = mx.nd.concat(l_.astype("float32").sum() / size, hits, dim=0)
            self.pending[d] = step if self.pending[d] is None else self.pending[d] + step

    def read_into(self, acc: Dict[str, float], batch: int) -> None:
        """Add the devices' tallies to ``acc`` (one host synchronisation) and start anew."""
        import mxnet as mx
        live = [p for p in self.pending if p is not None]
        if not live:
            return
        host = mx.nd.concat(*[p.as_in_context(mx.cpu()) for p in live], dim=0).asnumpy()
        self.pending = [None] * len(self.ctx)
        loss = float(host[0::2].astype(np.float64).sum())
        if not math.isfinite(loss):
            raise NonFiniteError(f"the loss became {loss} in {self.what} (by batch {batch}); the "
                                 f"learning rate is probably too high: try a smaller "
                                 f"{self.lr_flag}")
        acc["loss"] += loss
        acc["correct"] += int(round(float(host[1::2].sum())))


class _Sums(dict):
    """The running sums after one batch, as a dict read from the devices only when first looked
    at (so a callback that does not look costs no host synchronisation). Reading it after a
    later batch has run is an error: the devices have moved on."""

    def __init__(self, acc: Dict[str, float], tally: _DeviceTally, batch: int) -> None:
        super().__init__()
        self._acc, self._tally, self._batch = acc, tally, batch
        self._filled = False

    def _fill(self) -> None:
        if self._filled:
            return
        if self._tally.batch != self._batch:
            raise RuntimeError("running sums read after a later batch; read them in on_batch")
        self._tally.read_into(self._acc, self._batch)
        dict.update(self, self._acc)
        self._filled = True

    def __getitem__(self, key):
        self._fill()
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        self._fill()
        return dict.get(self, key, default)

    def __iter__(self):
        self._fill()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._fill()
        return dict.__len__(self)

    def __contains__(self, key) -> bool:
        self._fill()
        return dict.__contains__(self, key)

    def keys(self):
        self._fill()
        return dict.keys(self)

    def values(self):
        self._fill()
        return dict.values(self)

    def items(self):
        self._fill()
        return dict.items(self)

    def copy(self) -> Dict[str, float]:
        self._fill()
        return dict(dict.items(self))

    def __eq__(self, other) -> bool:
        self._fill()
        return dict.__eq__(self, other)

    __hash__ = None

    def __repr__(self) -> str:
        self._fill()
        return dict.__repr__(self)


def cosine_lr(base: float, total: int, warmup: int = 0, final: float = 0.0) -> Callable[[int], float]:
    """Linear warm-up over ``warmup`` iterations, then cosine decay to ``final`` at ``total``."""
    return learning_rate("cosine", base, total, warmup, final)


LR_MODES = ("cosine", "step", "poly", "linear")  # GluonCV's --lr-mode names


def learning_rate(mode: str, base: float, total: int, warmup: int = 0,
                  final: float = 0.0) -> Callable[[int], float]:
    """The fine-tuning schedule ``mode`` after a linear warm-up (iteration ``i`` of it at
    ``base·(i+1)/warmup``): cosine, poly (power 2) or linear decay to ``final`` at ``total``,
    or step (×0.1 at 50% and 75% of the iterations after the warm-up) — GluonCV's
    ``LRScheduler`` phases joined by its ``LRSequential``; iteration ``i`` -> its rate."""
    if mode not in LR_MODES:
        raise PrunenetError(f"--lr-mode {mode!r}: choose one of {', '.join(LR_MODES)}")
    from gluoncv.utils import LRScheduler, LRSequential
    span = max(1, total - warmup)  # the decay reaches ``final`` after ``span`` iterations
    phases = []
    if warmup == 1:
        phases.append(LRScheduler("constant", base_lr=base, niters=1))
    elif warmup > 1:  # GluonCV's warm-up goes from its base_lr to its target_lr
        phases.append(LRScheduler("linear", base_lr=base / warmup, target_lr=base, niters=warmup))
    phases.append(LRScheduler(mode, base_lr=base, target_lr=final, niters=span + 1, power=2,
                              step_iter=[(span + 1) // 2, (3 * span + 3) // 4], step_factor=0.1))
    return LRSequential(phases)


@dataclass
class FinetuneConfig:
    """The fine-tuning recipe: NAG, cosine LR with warm-up, label smoothing, no weight decay on
    BN parameters and biases, optional distillation from a teacher."""

    epochs: float = setting(1.0, "fine-tuning epochs after pruning; fractions allowed "
                                 "(default {default})")
    lr: float = setting(0.05, "learning rate")
    momentum: float = setting(0.9, "SGD momentum of the pruning steps and fine-tuning "
                                   "(default {default})")
    wd: float = setting(1e-4, "fine-tuning's weight decay, not on BN and biases (default "
                              "{default})")
    warmup_epochs: float = setting(0.0, "fine-tuning's linear warm-up epochs (default {default})")
    label_smoothing: float = setting(0.1, "fine-tuning's label smoothing (default {default})")
    distill_weight: float = setting(0.5, "the distillation loss's share of the loss")
    temperature: float = setting(1.0, "the distillation's softmax temperature")
    lr_mode: str = setting("cosine", "fine-tuning's learning-rate schedule (default {default})",
                           choices=lambda: LR_MODES)
    hybridize: bool = setting(True, "fine-tune the hybridized network (False: GluonCV's --mode "
                                    "imperative)")


def finetune(net, stream: BatchStream, config: FinetuneConfig, ctx: Sequence, teacher=None,
             what: str = "fine-tuning", progress: bool = True, resume: Optional[dict] = None,
             on_batch: Optional[Callable[[object, int, Dict[str, float]], None]] = None,
             workers=None, sync_every: int = SYNC_EVERY) -> Dict[str, float]:
    """Train every parameter of ``net`` for ``config.epochs`` with the fine-tuning recipe.

    ``resume`` (``done``, ``sums`` and the optimizer ``states`` file of a checkpoint) continues
    an interrupted fine-tuning, ``stream`` being at the checkpoint's position;
    ``on_batch(trainer, done, sums)`` is called after every batch. ``workers``
    (:class:`prunenet.training.distributed.Workers`) makes it one worker of a data-parallel run."""
    from .distributed import Workers
    workers = workers or Workers()
    params = net.collect_params()
    for name, p in params.items():
        if p.grad_req == "null" and not name.endswith(("running_mean", "running_var")):
            p.grad_req = "write"
        if name.endswith(("_gamma", "_beta", "_bias")):
            p.wd_mult = 0.0
    trainer = workers.trainer(params, "nag", {"learning_rate": config.lr,
                                              "momentum": config.momentum, "wd": config.wd})
    total = stream.count(config.epochs)
    warmup = int(round(config.warmup_epochs * stream.batches_per_epoch))
    loss_fn = _smoothed_loss(config.label_smoothing)
    if config.hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    done, sums = 0, None
    if resume is not None:
        done, sums = int(resume["done"]), resume["sums"]
        trainer.load_states(resume["states"])
    step = None if on_batch is None else (lambda d, s: on_batch(trainer, d, s))
    result = run_batches(net, trainer, stream.take_batches(total - done), ctx, loss_fn=loss_fn,
                         what=what, lr_at=learning_rate(config.lr_mode, config.lr, total, warmup),
                         teacher=teacher, lr_flag="--finetune-lr",
                         distill_weight=config.distill_weight, temperature=config.temperature,
                         progress=progress, total=total, start=done, sums=sums, on_batch=step,
                         sync_every=sync_every)
    workers.average_running_stats(net)
    return result


def _smoothed_loss(smoothing: float):
    from mxnet import gluon
    if smoothing <= 0:
        return gluon.loss.SoftmaxCrossEntropyLoss()

    class _Smoothed(gluon.loss.Loss):
        def __init__(self):
            super().__init__(weight=None, batch_axis=0)

        def hybrid_forward(self, F, pred, label):
            logp = F.log_softmax(pred, axis=1)
            nll = -F.pick(logp, label, axis=1)
            return (1 - smoothing) * nll - smoothing * F.mean(logp, axis=1)

    return _Smoothed()


def _progress(iterable, what: str, total: Optional[int]):
    from tqdm import tqdm
    # disable=None: no bar when stderr is not a terminal (CI logs, files)
    return tqdm(iterable, desc=what, total=total, leave=False, dynamic_ncols=True,
                mininterval=1.0, disable=None)
