"""The Python API: prune a Gluon network in memory, with or without data.

``prune`` (a data-free method), :class:`GCP` (the paper's method, trained on any iterable of
``(data, label)`` batches) and ``finetune`` work on the network at hand and give back a
physically smaller Gluon block — GluonCV's ``ResNetV1b`` where the input was one, else a
``SymbolBlock`` — with ``.report``, the fields of the command line's ``report.json``. They are
the command line's own pieces (:mod:`prunenet.run.folder`), called on a network instead of a file.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Dict, List, Optional, Sequence

from .errors import PrunenetError
from .run.settings import RUN_DEFAULTS

__all__ = ["prune", "GCP", "finetune", "replace_classifier", "hold_out_loader"]


def _contexts(ctx) -> list:
    import mxnet as mx
    if ctx is None:
        return [mx.cpu()]
    ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    if not ctx or not all(isinstance(c, mx.Context) for c in ctx) or len(set(ctx)) < len(ctx):
        raise PrunenetError(f"ctx={ctx} must be one MXNet context or a list of distinct ones "
                            f"(e.g. [mx.gpu(0), mx.gpu(1)]); leave it out to run on mx.cpu()")
    return ctx


def _gpus(ctx: list) -> str:
    """``ctx`` as the command line's ``--gpus`` (the latency objective measures on the first)."""
    return ",".join(str(c.device_id) for c in ctx if c.device_type == "gpu")


def _name(net) -> str:
    return type(net).__name__


def _model_name(net) -> str:
    """The name a report gives ``net``: GluonCV's model name (``resnet18_v1b``, as the command
    line writes it, which ``load_pruned`` and ``prunenet zoo publish`` build by) where ``net`` is
    one of GluonCV's networks, else its class name."""
    from .training.models import gluoncv_name
    return gluoncv_name(net) or _name(net)


def _pipeline(net, method: str, objective: str, target: float, input_shape, strict: bool,
              ctx: list, seed: int, round_to: int, min_width: int, latency_table,
              latency_batch_size: int, dtype: str, runtime: str):
    """The :class:`prunenet.run.pipeline.Pipeline` of ``net`` (left as it is), traced and costed,
    with the keywords' values refused in the API's words."""
    from .core.costs import OBJECTIVES
    from .run.pipeline import Pipeline
    from .core.select import check_blocks, check_cost_target
    from .latency.runtimes import check_runtime
    check_runtime(runtime)  # before anything is measured: the speed check needs it too
    pipe = Pipeline(net, method, target, seed=seed, ctx=ctx, keep_net=True)
    pipe.trace(input_shape, strict)
    if objective not in OBJECTIVES:
        raise PrunenetError(f"unknown objective {objective!r}: choose one of "
                            f"{', '.join(sorted(OBJECTIVES))}")
    check_cost_target(target)
    check_blocks(round_to, min_width)
    pipe.price(objective, _name(net), round_to, min_width, _gpus(ctx), latency_table,
               latency_batch_size, runtime, dtype=dtype)  # the latency table's dtype
    return pipe


def _attach(pruned, report: dict):
    """The pruned Gluon block with its report as ``.report``."""
    pruned.net.report = report
    return pruned.net


def prune(net, method: str = "l1", objective: str = RUN_DEFAULTS.objective, target: float = 0.5,
          input_shape: Sequence[int] = (1, 3, 224, 224), *,
          round_to: int = RUN_DEFAULTS.round_to, min_width: int = RUN_DEFAULTS.min_width,
          seed: int = RUN_DEFAULTS.seed, data=None, ctx=None, strict: bool = False,
          latency_table: Optional[str] = RUN_DEFAULTS.latency_table,
          latency_batch_size: int = RUN_DEFAULTS.latency_batch_size,
          dtype: str = RUN_DEFAULTS.dtype, runtime: str = RUN_DEFAULTS.runtime):
    """Prune ``net`` (any initialised ``gluon.HybridBlock``) with a data-free ``method`` until
    ``objective``'s cost (``flops``, ``params`` or ``latency``) is at most ``target`` × the
    unpruned cost, at ``input_shape`` (NCHW). ``net`` is left unchanged.

    Returns the physically smaller network (GluonCV's ``ResNetV1b`` where ``net`` is one, else
    a ``SymbolBlock``); its ``.report`` holds the fields of ``report.json``. ``data`` (an
    iterable of ``(data, label)`` batches) is read by ``method="attention"`` only; ``strict``
    refuses ops of unknown channel semantics instead of leaving the channels around them.
    ``runtime``: where the latency objective measures (``mxnet``, or ``onnxruntime``: the
    network exported to ONNX and timed in an ONNX Runtime session).

    >>> import prunenet
    >>> from gluoncv.model_zoo import get_model
    >>> net = get_model("resnet18_v1b", classes=10)
    >>> net.initialize()
    >>> small = prunenet.prune(net, "l1", "flops", 0.5, input_shape=(1, 3, 32, 32))
    >>> small.report["achieved"] <= 0.5
    True
    """
    from .training.data import Epochs
    from .methods import DATA_DRIVEN, METHODS, TRAINED

    if method in TRAINED:
        raise PrunenetError(f"method {method!r} trains while it prunes: use prunenet.GCP(net, "
                            f"...).fit(train_data).prune()")
    if method not in METHODS:
        raise PrunenetError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if method in DATA_DRIVEN and data is None:
        raise PrunenetError(f"method {method!r} reads data: pass data= (an iterable of "
                            f"(data, label) batches)")
    ctx = _contexts(ctx)
    timings: Dict[str, float] = {}
    t0 = time.time()
    pipe = _pipeline(net, method, objective, target, input_shape, strict, ctx, seed, round_to,
                     min_width, latency_table, latency_batch_size, dtype, runtime)
    timings["trace_s"] = time.time() - t0
    t0 = time.time()
    pipe.fit().select(None if data is None else Epochs(data, pipe.graph.input_shape))
    timings["select_s"] = time.time() - t0
    t0 = time.time()
    pruned = pipe.cut()
    pipe.check()
    timings["surgery_s"] = time.time() - t0
    report = pipe.report(_model_name(net), timings, [], round_to=round_to, min_width=min_width,
                         seed=seed)
    return _attach(pruned, report)


def replace_classifier(net, classes: int, input_shape: Sequence[int] = (1, 3, 224, 224),
                       ctx=None) -> dict:
    """Give ``net`` a fresh, Xavier-initialised ``classes``-way output layer in place of the
    ``gluon.nn.Dense`` (or 1×1-style ``Conv2D``, as in GluonCV's MobileNets) that writes its
    output — transfer, as GluonCV's fine-tuning tutorial does it; returns what was replaced
    (the ``transfer`` field of a report)."""
    import mxnet as mx
    from mxnet.gluon import nn
    from .run.pipeline import traced
    graph = traced(net, input_shape)
    outputs = [name for name, layer in graph.layers.items()
               if "network output" in graph.out_group(name).reasons]
    found = []

    def visit(block):
        for key, child in block._children.items():
            if isinstance(child, (nn.Dense, nn.Conv2D)) and child.name + "_fwd" in outputs:
                found.append((block, key, child))
            visit(child)
    visit(net)
    if len(found) != 1:
        raise PrunenetError(f"{_name(net)}: no single gluon.nn.Dense or Conv2D writes the "
                            f"network's output (found {len(found)}); replace the output layer "
                            f"yourself")
    parent, key, old = found[0]
    if not isinstance(classes, int) or classes < 1:
        raise PrunenetError(f"classes {classes!r} must be a whole number >= 1")
    before = int(old.weight.shape[0])
    if isinstance(old, nn.Dense):  # the old names: made outside any name scope
        new = nn.Dense(classes, in_units=old.weight.shape[1], use_bias=old.bias is not None,
                       flatten=old._flatten, prefix=old.prefix)
    else:
        k = old._kwargs
        new = nn.Conv2D(classes, k["kernel"], k["stride"], k["pad"], k["dilate"],
                        in_channels=old.weight.shape[1], use_bias=old.bias is not None,
                        prefix=old.prefix)
    new.initialize(mx.init.Xavier(), ctx=_contexts(ctx))
    if getattr(parent, key, None) is old:
        setattr(parent, key, new)
    else:  # a HybridSequential's numbered child
        parent._children[key] = new

    def forget(block):  # hybridized blocks must trace the new layer
        block._clear_cached_op()
        for child in block._children.values():
            forget(child)
    forget(net)
    return {"from_classes": before, "classes": classes,
            "replaced": [p.name for p in new.collect_params().values()]}


class GCP:
    """Global Channel Pruning of ``net`` to ``target`` × ``objective``'s cost, trained on your
    data: ``GCP(net, ...).fit(train_data).prune()``.

    ``schedule`` are the fields of :class:`prunenet.gcp.schedule.GCPConfig` (``steps``,
    ``epochs_per_step``, ``debias_epochs``, ``lr``, ``momentum``, ``round_to``, ``min_width``,
    ...), with its defaults. ``reg``: λ, or ``"auto"`` (the default, as on the command line:
    :data:`prunenet.gcp.schedule.DEFAULT_REG`), which scores the shrink levels ``shrink_grid``
    (default :data:`prunenet.gcp.schedule.SHRINK_GRID`; or raw λ ``reg_grid``) on a short step 1
    each and keeps the most regularising one within one standard error of the least held-out
    debias loss (:func:`prunenet.gcp.schedule.one_se_rule`); the held-out images are
    ``heldout_data`` given to :meth:`fit`, or held out of ``train_data`` itself when it is a
    ``gluon.data.DataLoader``. ``runtime``: where the latency objective and :meth:`save`'s speed
    check measure (``mxnet`` or ``onnxruntime``). ``stream_score``: how a residual
    stream's score combines its layers (:mod:`prunenet.gcp.streams`). GCP takes ``net`` over: its
    BatchNorm parameters and classifier are
    trained in place (copy it first to keep the original). ``classes``: first give ``net`` a
    fresh output layer of that many classes (:func:`replace_classifier`), for transfer.

    >>> import mxnet as mx, prunenet
    >>> from gluoncv.model_zoo import get_model
    >>> net = get_model("resnet18_v1b", classes=10)
    >>> net.initialize()
    >>> images = mx.gluon.data.ArrayDataset(mx.nd.random.normal(shape=(160, 3, 32, 32)),
    ...                                     mx.nd.array([0, 1] * 80))
    >>> loader = mx.gluon.data.DataLoader(images, batch_size=16, shuffle=True)
    >>> gcp = prunenet.GCP(net, target=0.6, input_shape=(1, 3, 32, 32), steps=1)
    >>> small = gcp.fit(loader).prune()  # λ by the held-out rule, 16 images held out
    >>> small.report["achieved"] <= 0.6
    True
    """

    search: Optional[dict] = None  # reg="auto": the grid, each candidate's loss, the best
    top1_before: tuple = (None, None)  # the unpruned network's top-1, top-5 on fit's val_data

    def __init__(self, net, objective: str = RUN_DEFAULTS.objective, target: float = 0.5,
                 input_shape: Sequence[int] = (1, 3, 224, 224), ctx=None, *,
                 progress: bool = False, strict: bool = False, seed: int = RUN_DEFAULTS.seed,
                 classes: Optional[int] = RUN_DEFAULTS.classes,
                 latency_table: Optional[str] = RUN_DEFAULTS.latency_table,
                 latency_batch_size: int = RUN_DEFAULTS.latency_batch_size,
                 dtype: str = RUN_DEFAULTS.dtype, runtime: str = RUN_DEFAULTS.runtime,
                 reg=RUN_DEFAULTS.reg,
                 reg_grid: Optional[Sequence[float]] = RUN_DEFAULTS.reg_grid,
                 shrink_grid: Optional[Sequence[float]] = RUN_DEFAULTS.shrink_grid,
                 search_fraction: Optional[float] = RUN_DEFAULTS.search_fraction,
                 search_holdout: int = RUN_DEFAULTS.search_holdout,
                 stream_score: str = RUN_DEFAULTS.stream_score, **schedule) -> None:
        from .gcp.schedule import DEFAULT_REG, GCPConfig, check_reg

        fields = [f.name for f in dataclasses.fields(GCPConfig) if f.name != "target"]
        unknown = sorted(set(schedule) - set(fields))
        if unknown:
            raise PrunenetError(f"GCP has no option {unknown[0]!r}; the schedule's options are "
                                f"{', '.join(fields)}")
        reg = DEFAULT_REG if reg is None else reg
        self.auto = reg == "auto"
        check_reg(reg, reg_grid, shrink_grid)
        self.reg_unit = "reg" if reg_grid else "shrink"
        self.reg_grid = list(reg_grid or shrink_grid or []) or None
        self.search_fraction, self.search_holdout = search_fraction, int(search_holdout)
        self.config = GCPConfig(target=target, reg=0.0 if self.auto else reg, **schedule)
        self.config.check()
        self.net, self.objective, self.seed = net, objective, seed
        self.ctx = _contexts(ctx)
        self.transfer = None if classes is None else \
            replace_classifier(net, classes, input_shape, self.ctx)
        self._pipe = _pipeline(net, "gcp", objective, target, input_shape, strict, self.ctx,
                               seed, self.config.round_to, self.config.min_width, latency_table,
                               latency_batch_size, dtype, runtime)
        self.runtime = runtime
        self.graph, self.cost, self.before = self._pipe.graph, self._pipe.cost, self._pipe.before
        self._schedule = self._pipe.schedule(self.config, stream_score, progress=progress)
        self._wrapper = self._pipe.wrapper
        self.history: List[dict] = []  # the rows of steps.csv
        self.steps_done = 0
        self.timings: Dict[str, float] = {}
        self._pruned = None

    def __repr__(self) -> str:
        return (f"GCP({_name(self.net)}, {self.objective} to {self.config.target}, "
                f"{self.steps_done}/{self.config.steps} steps done, "
                f"cost now {self._schedule.achieved():.4f} of the unpruned)")

    @property
    def masked(self):
        """The network being pruned: removed channels held at zero (callable on a batch)."""
        from .gcp.masked import REGULARIZE
        return self._wrapper.block(REGULARIZE)

    def fit(self, train_data, val_data=None, heldout_data=None) -> "GCP":
        """Run the remaining pruning steps on ``train_data`` (any iterable of ``(data, label)``
        batches, read ``epochs_per_step`` times per step); with ``val_data`` each step's
        debias row in :attr:`history` gets ``val_top1``, the top-1 on it (``top1`` is always
        the training batches'). With ``reg="auto"``, ``heldout_data`` (batches of training
        images that ``train_data`` does not hold) scores the λ candidates; without it, a
        ``gluon.data.DataLoader``'s dataset is split (``search_holdout`` images, at most a
        tenth, drawn from ``seed``) and the rest trains. The search is in :attr:`search`.
        Returns ``self``."""
        from .training.data import Epochs, accuracy, losses
        from .training.train import BatchStream
        from .gcp.masked import DEBIAS

        shape = self.graph.input_shape
        search = self.auto and self.steps_done == 0
        if search and heldout_data is None:
            Epochs(train_data, shape)  # what cannot be training data is refused as such first
            train_data, heldout_data = hold_out_loader(train_data, self.search_holdout,
                                                       self.seed)
        stream = BatchStream(Epochs(train_data, shape))
        held_out = None if val_data is None else Epochs(val_data, shape, "validation data")
        if held_out is not None and self.steps_done == 0:  # the report's top1_before
            self.top1_before = accuracy(self._wrapper, held_out(), self.ctx)
        held = Epochs(heldout_data, shape, "held-out data") if search else None

        def heldout_losses():
            return losses(self._wrapper.block(DEBIAS), held(), self.ctx)
        self._pipe.fit(stream, heldout_losses if search else None, grid=self.reg_grid,
                       unit=self.reg_unit, fraction=self.search_fraction, done=self.steps_done,
                       timings=self.timings, hooks=_history(self, held_out))
        if search:
            self.search = self._schedule.search
        self._pruned = None
        return self

    def prune(self):
        """The physically pruned network after :meth:`fit`, with ``.report``; ready to
        fine-tune (:func:`finetune`)."""
        if self.steps_done < self.config.steps:
            raise PrunenetError(f"GCP has run {self.steps_done} of its {self.config.steps} steps: "
                                f"call fit(train_data) before prune()")
        if self._pruned is not None:
            return self._pruned.net
        pipe = self._pipe
        selection = pipe.select()
        t0 = time.time()
        pruned = pipe.cut()
        pipe.check()
        self.timings["surgery_s"] = time.time() - t0
        report = pipe.report(_model_name(self.net), dict(self.timings), [], seed=self.seed,
                             notes=pipe.notes, settings=dataclasses.asdict(self.config),
                             transfer=self.transfer, **self._gcp_fields())
        self._pruned, self._selection = pruned, selection
        return _attach(pruned, report)

    def _gcp_fields(self) -> dict:
        """The report's GCP fields, as the command line writes them: λ, its search, the
        channels removed for a zero scale, the stream rule."""
        return self._pipe.gcp_fields(self.search)

    def save(self, folder: str, *, data=None, overwrite: bool = False,
             dataset: Optional[str] = None, speed_check: bool = True) -> str:
        """Write the run folder the command line writes — ``report.json``, ``steps.csv`` and the
        pruned pair — atomically, with the weights the network :meth:`prune` returned has now
        (fine-tuned or not); returns its path. ``prunenet zoo publish`` and
        :func:`prunenet.zoo.pruned.load_pruned` take the folder.

        ``data`` (batches of held-out images): evaluated as the command line evaluates, into
        ``top1_after``/``top5_after`` (the network as it is now) and ``top1_selected`` (right
        after the selection); ``top1_before`` is the unpruned network's on ``fit``'s
        ``val_data``, when it was given. ``dataset``: the name the zoo lists. ``speed_check``:
        the measured speed-up on the first context, as the command line's ``speed_check``."""
        from .training.data import Epochs, accuracy
        from .io.files import staged_dir, write_json
        from .zoo.pruned import by_original_names, save_pruned
        from .io.records import REPORT_FILE, RUN_ENTRIES, STEPS_FILE, write_steps
        from .core.replicas import host_copy
        from .run.report import run_speed_check
        net = self.prune()
        self._pruned.params = host_copy(by_original_names(self._pruned))  # what it holds now
        report = dict(net.report, dataset=dataset, classes=self._classes(net),
                      top1_before=self.top1_before[0], top5_before=self.top1_before[1])
        if data is not None:
            batches = Epochs(data, self.graph.input_shape, "evaluation data")
            report["top1_after"], report["top5_after"] = accuracy(net, batches(), self.ctx)
            report["top1_selected"], _ = accuracy(self.masked, batches(), self.ctx)
        if speed_check:
            t0 = time.time()
            batch = self.cost.table.batch_size if self.objective == "latency" else 16
            report["speed_check"] = run_speed_check(
                self.net, net, self.graph.input_shape, self.before, self.graph,
                self._selection, _gpus(self.ctx), self.objective, batch, self.ctx[0],
                self.runtime)
            report["timings"] = dict(report["timings"], speed_check_s=time.time() - t0)
        with staged_dir(folder, overwrite=overwrite, own=RUN_ENTRIES) as stage:
            write_steps(os.path.join(stage, STEPS_FILE), self.history)
            report["files"] = save_pruned(self._pruned, stage)
            write_json(os.path.join(stage, REPORT_FILE), report)
        return os.path.abspath(folder)

    def _classes(self, net) -> int:
        import mxnet as mx
        x = mx.nd.zeros((1,) + tuple(self.graph.input_shape[1:]), ctx=self.ctx[0])
        with mx.autograd.pause(train_mode=False):
            return int(net(x).shape[1])


def _history(gcp: GCP, held_out):
    """:meth:`GCP.fit`'s hooks on the schedule (:class:`prunenet.gcp.schedule.ScheduleHooks`):
    each step's rows kept in ``history`` (with the top-1 on ``held_out``, when given)."""
    from .gcp.schedule import ScheduleHooks

    class History(ScheduleHooks):
        def stepped(self, t: int, records) -> None:
            from .training.data import accuracy
            rows = [dataclasses.asdict(r) for r in records]
            if held_out is not None:
                rows[-1]["val_top1"] = accuracy(gcp._wrapper, held_out(), gcp.ctx)[0]
            gcp.history += rows
            gcp.steps_done = t
    return History()


def hold_out_loader(loader, count: int, seed: int = 0):
    """``loader`` (a ``gluon.data.DataLoader``) split in two loaders of its batch size: the
    training images and ``count`` (at most a tenth) held-out ones, drawn from ``seed``, in
    order. Anything else is refused in one line saying what to pass."""
    from mxnet import gluon
    from .training.data import holdout_rows
    if not isinstance(loader, gluon.data.DataLoader):
        raise PrunenetError(
            f"reg='auto' scores λ on held-out training images, and a {type(loader).__name__} "
            f"cannot be split: pass fit(train_data, heldout_data=batches) with images kept out "
            f"of train_data, a gluon.data.DataLoader (its dataset is split), or a number as reg")
    dataset = loader._dataset
    count = min(int(count), len(dataset) // 10)
    if count < 1:
        raise PrunenetError(f"{len(dataset)} training images are too few to hold out a tenth "
                            f"for the λ search; pass heldout_data or a number as reg")
    held, rest = holdout_rows(len(dataset), count, seed)
    sampler = loader._batch_sampler
    size = getattr(sampler, "_batch_size", 32)
    shuffle = isinstance(getattr(sampler, "_sampler", None), gluon.data.RandomSampler)
    last = getattr(sampler, "_last_batch", "keep")

    def part(rows, shuffle, last):
        return gluon.data.DataLoader(_Rows(dataset, rows), batch_size=size, shuffle=shuffle,
                                     last_batch=last, batchify_fn=loader._batchify_fn,
                                     num_workers=loader._num_workers)
    return part(rest, shuffle, last), part(held, False, "keep")


class _Rows:
    """Rows ``rows`` of a Gluon dataset, as a dataset."""

    def __init__(self, dataset, rows) -> None:
        self.dataset, self.rows = dataset, [int(r) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.dataset[self.rows[i]]


def finetune(net, data, epochs: float = RUN_DEFAULTS.finetune_epochs, ctx=None,
             progress: bool = False, **recipe) -> dict:
    """Train every parameter of ``net`` on ``data`` (any iterable of ``(data, label)``
    batches) for ``epochs`` with the fine-tuning recipe of
    :class:`prunenet.training.train.FinetuneConfig` (``lr``, ``momentum``, ``wd``, ``warmup_epochs``,
    ``label_smoothing``); returns the mean training loss and top-1. ``net`` is changed in
    place (and hybridized)."""
    from .training.data import Epochs
    from .training.train import BatchStream, FinetuneConfig, finetune as train
    fields = [f.name for f in dataclasses.fields(FinetuneConfig) if f.name != "epochs"]
    unknown = sorted(set(recipe) - set(fields))
    if unknown:
        raise PrunenetError(f"finetune has no option {unknown[0]!r}; the recipe's options are "
                            f"{', '.join(fields)}")
    if epochs <= 0:
        raise PrunenetError(f"epochs {epochs} must be positive")
    result = train(net, BatchStream(Epochs(data)), FinetuneConfig(epochs=epochs, **recipe),
                   _contexts(ctx), progress=progress)
    return {"loss": result["loss"], "top1": result["top1"], "batches": result["batches"]}
