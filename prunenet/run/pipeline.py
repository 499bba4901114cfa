"""One pruning, whatever calls it: trace → cost → fit → select (the latency objective's
selection measured and refined) → cut → surgery check → the report's fields.

:class:`Pipeline` is what ``prunenet.prune``, ``prunenet.GCP``, ``prunenet prune`` and the run
folder's ``data_run`` (so the demo and the experiments) run. It knows the network, its channel
graph, the cost model, the method table and GCP's schedule; files, the run folder, checkpoints,
resume, workers and logs wrap it (:mod:`prunenet.run.folder`, :mod:`prunenet.run.gcp_steps`).

    pipe = Pipeline(net, "l1", target=0.5)
    pipe.trace((1, 3, 224, 224)); pipe.price("flops")
    pipe.fit()  # GCP: pipe.schedule(config) first, then fit(stream, ...)
    pipe.select(); pipe.cut(); pipe.check()
    report = pipe.report("resnet18_v1b", timings, command)
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from ..core.costs import cost_model, count
from ..errors import PrunenetError
from ..core.graph import ChannelGraph, trace
from ..core.select import Selection, check_reachable

__all__ = ["Pipeline", "traced", "objective_cost", "open_latency_table", "select_with",
           "method_selection"]


def open_latency_table(path: Optional[str] = None, gpus: str = "", batch_size: int = 64,
                       dtype: str = "float32", runtime: str = "mxnet"):
    """The latency table of ``runtime`` on the first device in ``gpus`` (the CPU if none) at
    that batch size and dtype (``path``: a table file of the user's)."""
    from ..latency import LatencyTable
    return LatencyTable.open(path, gpus=(gpus or "").split(",")[0].strip(),
                             batch_size=batch_size, dtype=dtype, runtime=runtime)


def objective_cost(graph: ChannelGraph, objective: str, model: str = "", round_to: int = 8,
                   gpus: str = "", latency_table: Optional[str] = None,
                   latency_batch_size: int = 64, dtype: str = "float32", runtime: str = "mxnet"):
    """The cost model of ``objective``; for ``latency``, backed by :func:`open_latency_table`
    (``latency_table``: its file)."""
    if objective != "latency":
        return cost_model(graph, objective)
    table = open_latency_table(latency_table, gpus, latency_batch_size, dtype, runtime)
    return cost_model(graph, "latency", table=table, round_to=round_to, name=model)


def select_with(select, cost, target: float) -> Tuple[Selection, dict]:
    """``select(target)``, and for the latency objective the selection checked by measuring the
    pruned network and refined (:func:`prunenet.latency.select_measured`); returns it with the
    report's latency fields (none for other objectives). A latency target still missed by more
    than the measurement's noise is refused, in one line."""
    if cost.name != "latency":
        return select(target), {}
    from ..latency import select_measured
    from .report import latency_fields
    selection, rounds = select_measured(select, cost, target)
    last = rounds[-1]
    if not last["met"]:
        raise PrunenetError(
            f"latency target {target} missed: the pruned network measured {last['measured']:.3f} "
            f"±{last['noise']:.3f} of the unpruned latency after {len(rounds)} rounds (predicted "
            f"{last['predicted']:.3f}); the latency table does not fit this machine now (it is "
            f"busy, or the table is stale): run again, delete {cost.table.path} to measure it "
            f"again, or prune with --objective flops")
    return selection, {"latency_rounds": rounds, **latency_fields(cost, last, target)}


def method_selection(method: str, graph: ChannelGraph, params, cost, target: float,
                     round_to: int = 8, min_width: int = 8, seed: int = 0, net=None,
                     train_batches=None, ctx=None) -> Selection:
    """The selection of a method that trains nothing, at ``target``: from the weights, or (a
    method that needs data) reading the batches ``train_batches()`` gives."""
    from ..methods import get
    chosen = get(method)
    options = {"round_to": round_to, "min_width": min_width}
    if chosen.needs == "data":
        options.update(net=net, batches=train_batches(), ctx=ctx)
    if chosen.seeded:
        options["seed"] = seed
    return chosen.select(graph, params, cost, target, **options)


class Pipeline:
    """One pruning of ``net`` by ``method`` to ``target`` × its cost, step by step (see the
    module doc). What each step finds stays on the object: ``graph``, ``cost``, ``before``,
    ``selection``, ``latency`` (the report's latency fields), ``masked`` (the network the cut
    must compute like), ``pruned`` and ``diff``.

    ``keep_net``: leave ``net`` as it is (the API); else a data-free method zeroes its removed
    channels in place, and ``net`` is the masked network. ``dtype``: of the surgery check's
    input."""

    def __init__(self, net, method: str, target: float, *, seed: int = 0, ctx=None,
                 dtype: str = "float32", keep_net: bool = False) -> None:
        from ..methods import get
        from ..core.replicas import context_list
        self.trained = get(method).needs == "training"  # refuses an unknown method
        self.net, self.method, self.target, self.seed = net, method, target, seed
        self.ctx, self.dtype, self.keep_net = context_list(ctx), dtype, keep_net
        self.gcp = self.wrapper = None
        self.latency: dict = {}

    # -- trace, cost -------------------------------------------------------------------------

    def trace(self, input_shape: Sequence[int], strict: bool = False,
              graph: Optional[ChannelGraph] = None) -> ChannelGraph:
        """The channel graph of ``net`` at ``input_shape`` (:func:`traced`; ``graph``: one
        traced already)."""
        self.graph = graph or traced(self.net, input_shape, strict)
        return self.graph

    def price(self, objective: str, model: str = "", round_to: int = 8, min_width: int = 8,
              gpus: str = "", latency_table: Optional[str] = None,
              latency_batch_size: int = 64, runtime: str = "mxnet",
              dtype: Optional[str] = None):
        """``objective``'s cost model (:func:`objective_cost`; a latency table of ``dtype``,
        default the pipeline's), the target checked reachable with blocks of ``round_to`` and
        at least ``min_width`` channels; the unpruned counts in ``before``."""
        self.objective, self.round_to, self.min_width = objective, round_to, min_width
        self.cost = objective_cost(self.graph, objective, model, round_to, gpus, latency_table,
                                   latency_batch_size, dtype or self.dtype, runtime)
        check_reachable(self.graph, self.cost, self.target, round_to, min_width)
        self.before = count(self.graph)
        return self.cost

    # -- fit ---------------------------------------------------------------------------------

    def schedule(self, config, stream_score: Optional[str] = None, progress: bool = False,
                 workers=None, sync_every: Optional[int] = None):
        """A trained method's schedule (:class:`prunenet.gcp.schedule.GCPSchedule` with
        ``config``) on the masked network of ``net``; :meth:`fit` drives it."""
        from ..gcp.schedule import GCPSchedule
        from ..gcp.streams import DEFAULT_RULE
        from ..training.train import SYNC_EVERY
        from ..gcp.masked import MaskedNetwork
        self.wrapper = MaskedNetwork(self.net, self.graph, self.ctx,
                                     stream_score=stream_score or DEFAULT_RULE)
        self.gcp = GCPSchedule(self.wrapper, self.cost, config, self.ctx, progress=progress,
                               workers=workers,
                               sync_every=SYNC_EVERY if sync_every is None else sync_every)
        return self.gcp

    def fit(self, stream=None, heldout_losses=None, **drive) -> "Pipeline":
        """Train while pruning: a trained method's schedule driven on ``stream``
        (:meth:`prunenet.gcp.schedule.GCPSchedule.fit`, ``heldout_losses`` and ``drive`` passed
        on); nothing for a method that trains nothing."""
        if self.trained:
            self.gcp.fit(stream, heldout_losses, **drive)
        return self

    # -- select, cut, check ------------------------------------------------------------------

    def select(self, batches=None, workers=None) -> Selection:
        """The channels to keep: the schedule's, or the method's at the target (reading
        ``batches()``, a method that needs data), refined by measuring for the latency
        objective; ``workers`` (a distributed run) take rank 0's."""
        if self.trained:
            import mxnet as mx
            from .report import latency_report
            from ..gcp.masked import REGULARIZE
            mx.nd.waitall()  # static_alloc: read the parameters only once they are written
            self.selection = self.gcp.selection()
            self.masked = self.wrapper.block(REGULARIZE)
            self.params = self.wrapper.folded_params()
            self.latency = latency_report(self.cost, self.selection.keep, self.target)
            return self.selection
        import mxnet as mx
        from ..core.surgery import network_params
        mx.nd.waitall()  # a forward pass still running (oneDNN reorders weights) is not read
        params = self.params = network_params(self.net)
        selection, self.latency = select_with(
            lambda a: method_selection(self.method, self.graph, params, self.cost, a,
                                       self.round_to, self.min_width, self.seed, self.net,
                                       batches, self.ctx[0]), self.cost, self.target)
        if workers is not None:
            selection = workers.rank0_selection(selection, self.cost)
        self.selection = selection
        self.masked = self._masked()
        return selection

    def _masked(self):
        """``net`` with the removed channels zeroed: itself, or (``keep_net``) a copy."""
        from ..core.surgery import build_symbol_block, full_keep, zero_removed
        masked = build_symbol_block(self.graph, full_keep(self.graph), self.params,
                                    ctx=self.ctx[0]) if self.keep_net else self.net
        zero_removed(self.graph, masked, self.selection.keep)
        return masked

    def cut(self, model: Optional[str] = None, classes: Optional[int] = None, keep=None,
            params=None):
        """The physically pruned network (:func:`prunenet.zoo.pruned.prune_network`) keeping the
        selection (or ``keep``), sliced from the selection's parameters (or ``params``); a
        GluonCV ResNetV1b rebuilt as ``model`` with ``classes`` outputs."""
        from ..zoo.pruned import prune_network
        self.pruned = prune_network(
            self.net, self.graph, self.selection.keep if keep is None else keep, model, classes,
            params=self.params if params is None else params, ctx=self.ctx)
        return self.pruned

    def check(self) -> float:
        """The largest |difference| between the pruned and the masked network's outputs on a
        seeded probe, refused beyond float rounding; also in ``diff``."""
        from ..zoo.pruned import check_surgery, output_gap, probe
        x = probe(self.graph.input_shape, self.seed, self.ctx[0]).astype(self.dtype)
        self.diff, scale = output_gap(self.masked, self.pruned.net, x)
        check_surgery(self.diff, scale, self.dtype)
        return self.diff

    # -- report ------------------------------------------------------------------------------

    @property
    def notes(self) -> list:
        """What the schedule noted (none for a method that trains nothing)."""
        return list(self.gcp.notes) if self.gcp is not None else []

    def gcp_fields(self, search: Optional[dict] = None) -> dict:
        """The report's fields of a trained method: λ, its ``search``, the channels removed for
        a zero scale, the stream rule."""
        return {"reg": self.gcp.config.reg, "reg_search": search,
                "zeros_pruned": self.gcp.zeros_pruned, "stream_score": self.wrapper.stream_score}

    def report(self, model: str, timings: dict, command, **fields) -> dict:
        """``report.json``'s fields: those of every run (:func:`prunenet.run.report.base_report`),
        the input shape, ``fields``, the surgery's difference, the format and the latency
        fields."""
        from .report import base_report
        report = base_report(model, self.method, self.objective, self.target, self.selection,
                             self.graph, self.before, timings, command)
        report.update({"input_shape": list(self.graph.input_shape), **fields,
                       "surgery_max_abs_diff": self.diff,
                       "format": "gluoncv-pruned-resnet" if self.pruned.gluoncv
                       else "mxnet-symbol", **self.latency})
        return report


def traced(net, input_shape: Sequence[int], strict: bool = False) -> ChannelGraph:
    """The channel graph of ``net`` (an initialised ``gluon.HybridBlock``) at ``input_shape``
    (NCHW), its deferred parameters given their shapes; anything else refused in one line."""
    from mxnet import gluon
    if not isinstance(net, gluon.HybridBlock):
        raise PrunenetError(f"{type(net).__name__} is a {type(net).__mro__[1].__name__}, not a "
                            f"gluon.HybridBlock: prunenet prunes hybridizable networks only "
                            f"(write it as a HybridBlock with hybrid_forward)")
    if len(tuple(input_shape)) != 4:
        raise PrunenetError(f"input_shape {tuple(input_shape)} must be NCHW, e.g. (1, 3, 224, 224)")
    graph = trace(net, input_shape, strict=strict)
    _materialise(net, graph.input_shape)
    return graph


def _materialise(net, input_shape) -> None:
    """Give deferred-initialised parameters their shapes (one forward pass), and refuse
    parameters that have no value at all."""
    import mxnet as mx
    params = list(net.collect_params().values())
    empty = [p.name for p in params if p._data is None and not p._deferred_init]
    if empty:
        raise PrunenetError(f"parameter {empty[0]} of {type(net).__name__} has no value; call "
                            f"net.initialize() or net.load_parameters(...) first")
    deferred = [p for p in params if p._data is None]
    if deferred:
        ctx = deferred[0]._deferred_init[1][0]
        with mx.autograd.pause(train_mode=False):
            net(mx.nd.zeros(input_shape, ctx=ctx)).wait_to_read()
