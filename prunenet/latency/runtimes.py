"""Where a network is timed: MXNet itself, or ONNX Runtime, where a pruned network ships.

A :class:`Runtime` turns a network — an MXNet symbol with its parameters (random ones for a
latency table's units), or a Gluon block — into a call that runs one batch and waits for it.
The latency table's timer and ``prunenet bench`` both time through it, so every measurement
(units, whole networks, the run's speed check) is made the same way in either runtime, by
:mod:`prunenet.latency.timing`'s rule.

ONNX Runtime times the network as MXNet's ONNX exporter writes it, with the weights moved out of
the graph's inputs (the exporter lists them there, and ONNX Runtime then may not fold the
BatchNorm into the convolutions: it would be timing a form nobody deploys); on the CPU
execution provider with as many threads as ``OMP_NUM_THREADS`` says, on a GPU the TensorRT or
CUDA provider where the installed ``onnxruntime`` has one. A layer the exporter cannot express is
refused in one line that names it.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import PrunenetError

__all__ = ["RUNTIMES", "Runtime", "MXNetRuntime", "OnnxRuntime", "get_runtime", "onnx_model",
           "block_symbol", "first_line"]

RUNTIMES = ("mxnet", "onnxruntime")
_INPUTS = ("data", "residual")  # a unit's inputs (a network's is data)


def first_line(err: BaseException) -> str:
    """The first informative line of an error's message (MXNet's carry stack traces)."""
    for line in str(err).strip().splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "Stack trace", "[bt]")):
            return line[:300]
    return type(err).__name__


def threads() -> int:
    """The CPU threads a measurement may use: ``OMP_NUM_THREADS``, else every core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


def initial_params(symbol, shapes: Dict[str, Tuple[int, ...]], seed: int = 0
                   ) -> Dict[str, np.ndarray]:
    """Parameters for ``symbol`` given its inputs' ``shapes``: BatchNorm at identity (γ and the
    variance 1, β and the mean 0), biases 0, weights He-normal — the values do not change its
    speed, only that it computes something finite."""
    arg_shapes, _, aux_shapes = symbol.infer_shape(**shapes)
    rng = np.random.RandomState(seed)
    out = {}
    for name, shape in list(zip(symbol.list_arguments(), arg_shapes)) + \
            list(zip(symbol.list_auxiliary_states(), aux_shapes)):
        if name in shapes:
            continue
        if name.endswith(("gamma", "_var")):
            out[name] = np.ones(shape, np.float32)
        elif name.endswith(("beta", "_mean", "bias")):
            out[name] = np.zeros(shape, np.float32)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            out[name] = rng.normal(0, np.sqrt(2.0 / fan_in), size=shape).astype(np.float32)
    return out


def block_symbol(net, params: bool = True):
    """A Gluon block as an MXNet symbol on ``data``, and its parameters by the symbol's names
    (as NumPy arrays; none unless ``params``)."""
    import mxnet as mx
    symbol = net(mx.sym.var("data"))
    if isinstance(symbol, (list, tuple)):
        symbol = mx.sym.Group(list(symbol))
    values = {}
    if params:
        names = set(symbol.list_arguments()) | set(symbol.list_auxiliary_states())
        for p in net.collect_params().values():
            if p.name in names:
                values[p.name] = p.data(p.list_ctx()[0]).astype("float32").asnumpy()
    return symbol, values


def onnx_model(symbol, params: Dict[str, np.ndarray], shapes: Dict[str, Tuple[int, ...]],
               dynamic_batch: bool = False):
    """``symbol`` with ``params`` as an ONNX model (an ``onnx.ModelProto``) for inputs of
    ``shapes`` (name -> shape, in the symbol's order), the weights initializers only — not
    graph inputs as MXNet's exporter lists them, so that a runtime may fold them. A layer the
    exporter cannot express is refused in one line naming it."""
    import mxnet as mx
    try:
        import mxnet.onnx as mx_onnx
        import onnx
    except ImportError:
        raise PrunenetError("ONNX export needs the onnx package: pip install onnx==1.14.1") \
            from None
    names = [n for n in symbol.list_inputs() if n in shapes]
    _check_convertible(symbol)
    with tempfile.TemporaryDirectory(prefix="prunenet-onnx-") as folder:
        path = os.path.join(folder, "model.onnx")
        nd = {k: mx.nd.array(v, dtype=v.dtype) for k, v in params.items()}
        options = dict(dynamic=True, dynamic_input_shapes=[
            (None,) + tuple(shapes[n][1:]) for n in names]) if dynamic_batch else {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mx_onnx.export_model(symbol, nd, [tuple(shapes[n]) for n in names],
                                     [np.float32] * len(names), path, **options)
        except Exception as err:  # noqa: BLE001 (any converter's failure: name the layer)
            raise PrunenetError(_export_failure(err)) from None
        model = onnx.load(path)
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model)
    return model


def _check_convertible(symbol) -> None:
    """Refuse, naming the first layer, an op that MXNet's ONNX exporter has no converter for."""
    import json
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    known = set()
    for ops in MXNetGraph.registry_.values():
        known.update(ops)
    for node in json.loads(symbol.tojson())["nodes"]:
        if node["op"] != "null" and node["op"] not in known:
            raise PrunenetError(f"layer {node['name']} ({node['op']}) cannot be exported to "
                                f"ONNX: MXNet's exporter has no conversion for it; measure with "
                                f"--runtime mxnet")


def _export_failure(err: BaseException) -> str:
    """One line for an exporter's failure, naming the layer it was converting."""
    tb, layer = err.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "convert_layer":
            node = tb.tb_frame.f_locals.get("node")
            if isinstance(node, dict):
                layer = f"layer {node.get('name')} ({node.get('op')})"
        tb = tb.tb_next
    return (f"{layer or 'the network'} cannot be exported to ONNX: {first_line(err)}; measure "
            f"with --runtime mxnet")


class Runtime:
    """Builds calls that run one batch of a network in a runtime and wait for the result."""

    name = ""

    def __init__(self, ctx=None, dtype: str = "float32") -> None:
        import mxnet as mx
        self.ctx, self.dtype = ctx or mx.cpu(), dtype

    @property
    def provider(self) -> str:
        """What executes the network, beside the device ("" where the runtime has one way)."""
        return ""

    @property
    def key(self) -> str:
        """The runtime and its provider, as a latency table records them."""
        return "/".join(filter(None, (self.name, self.provider)))

    def symbol_call(self, symbol, shapes: Dict[str, Tuple[int, ...]],
                    params: Optional[Dict[str, np.ndarray]] = None) -> Callable[[], None]:
        """One batch through ``symbol`` on random inputs of ``shapes`` (name -> shape), with
        ``params`` (default :func:`initial_params`)."""
        raise NotImplementedError

    def block_call(self, net, input_shape: Sequence[int]) -> Callable[[], None]:
        """One batch of random input of ``input_shape`` (N, C, H, W) through the Gluon block."""
        symbol, params = block_symbol(net)
        return self.symbol_call(symbol, {"data": tuple(input_shape)}, params)

    def outputs(self, net, x: np.ndarray) -> np.ndarray:
        """The block's (first) output on ``x``, computed in this runtime."""
        raise NotImplementedError

    def cannot(self, err: BaseException) -> Optional[str]:
        """Why this runtime could not run a network (None: ``err`` is not the runtime's)."""
        import mxnet as mx
        return first_line(err) if isinstance(err, mx.base.MXNetError) else None

    def __str__(self) -> str:
        return self.key


def _random_inputs(shapes: Dict[str, Tuple[int, ...]], dtype: str = "float32"):
    rng = np.random.RandomState(0)
    return {n: rng.normal(size=s).astype(dtype) for n, s in shapes.items()}


class MXNetRuntime(Runtime):
    """MXNet itself: hybridized with a static graph (as GluonCV times its zoo)."""

    name = "mxnet"

    def symbol_call(self, symbol, shapes, params=None):
        import mxnet as mx
        from mxnet import gluon
        params = initial_params(symbol, shapes) if params is None else params
        names = [n for n in symbol.list_inputs() if n in shapes]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            block = gluon.SymbolBlock(symbol, [mx.sym.var(n) for n in names])
        block.collect_params().load_dict({k: mx.nd.array(v) for k, v in params.items()},
                                         ctx=self.ctx)
        return self.block_call(block, shapes[names[0]], _random_inputs(
            {n: shapes[n] for n in names}, "float32"))

    def block_call(self, net, input_shape, inputs=None):
        import mxnet as mx
        inputs = inputs or _random_inputs({"data": tuple(input_shape)})
        xs = [mx.nd.array(v, ctx=self.ctx, dtype=self.dtype) for v in inputs.values()]
        if self.dtype != "float32":
            net.cast(self.dtype)
        net.hybridize(static_alloc=True, static_shape=True)

        def run() -> None:
            out = net(*xs)
            (out[0] if isinstance(out, (list, tuple)) else out).wait_to_read()
        return run

    def outputs(self, net, x):
        import mxnet as mx
        out = net(mx.nd.array(x, ctx=self.ctx))
        return (out[0] if isinstance(out, (list, tuple)) else out).asnumpy()


_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxRuntime(Runtime):
    """ONNX Runtime: the network exported to ONNX and run in an ``InferenceSession``."""

    name = "onnxruntime"

    def __init__(self, ctx=None, dtype: str = "float32") -> None:
        super().__init__(ctx, dtype)
        try:
            import onnxruntime
        except ImportError:
            raise PrunenetError("--runtime onnxruntime needs the onnxruntime package: pip "
                                "install onnxruntime onnx==1.14.1 (or pip install -e .)") \
                from None
        if dtype != "float32":
            raise PrunenetError(f"--runtime onnxruntime measures float32 networks (MXNet's "
                                f"exporter writes them so), not {dtype}: give --dtype float32")
        available = onnxruntime.get_available_providers()
        if self.ctx.device_type == "cpu":
            self._providers = ["CPUExecutionProvider"]
        else:
            gpu = [p for p in _GPU_PROVIDERS if p in available]
            if not gpu:
                raise PrunenetError(f"this onnxruntime has no GPU execution provider (it has "
                                    f"{', '.join(available)}); install onnxruntime-gpu, or "
                                    f"measure on the CPU (no --gpus)")
            self._providers = [(p, {"device_id": self.ctx.device_id}) for p in gpu[:1]]

    @property
    def provider(self) -> str:
        first = self._providers[0]
        return first[0] if isinstance(first, tuple) else first

    def session(self, model):
        """An ``InferenceSession`` of the ONNX ``model`` on this runtime's provider, with every
        graph optimisation and the CPU threads :func:`threads` allows."""
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads, options.inter_op_num_threads = threads(), 1
        # Each session has a pool of threads that spin after a run, waiting for more work; the
        # sessions a measurement times in turn then ran beside the spinning pools of the others
        # (resnet18_v1b at 64 px, batch 32, 2 threads, idle: 81 ms a batch against 44 ms
        # deployed, ratios ±17 %). The threads spin while a run lasts, as deployed, and stop
        # when it returns (docs/latency.md, "ONNX Runtime's threads": with spinning off instead,
        # the quarter-width network read 0.082-0.084 of the unpruned against 0.074-0.076
        # deployed; with this, 0.075-0.077).
        options.add_session_config_entry("session.force_spinning_stop", "1")
        options.log_severity_level = 3  # errors only
        try:
            return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                providers=self._providers)
        except Exception as err:  # noqa: BLE001 (onnxruntime's own error types)
            raise PrunenetError(f"ONNX Runtime ({self.provider}) cannot run the exported "
                                f"network: {first_line(err)}; measure with --runtime mxnet") \
                from None

    def symbol_call(self, symbol, shapes, params=None):
        params = initial_params(symbol, shapes) if params is None else params
        session = self.session(onnx_model(symbol, params, shapes))
        inputs = _random_inputs(shapes)
        feeds = {i.name: inputs[i.name] for i in session.get_inputs()}

        def run() -> None:
            session.run(None, feeds)
        return run

    def outputs(self, net, x):
        symbol, params = block_symbol(net)
        session = self.session(onnx_model(symbol, params, {"data": x.shape}))
        return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]

    def cannot(self, err):
        mx_reason = super().cannot(err)
        if mx_reason is not None:
            return mx_reason
        module = type(err).__module__ or ""
        return first_line(err) if module.startswith("onnxruntime") else None


# the field that holds a network's throughput measured in each runtime (zoo.json, results CSV)
THROUGHPUT_FIELDS = {"mxnet": "throughput_img_s", "onnxruntime": "throughput_img_s_onnxruntime"}


def check_runtime(name: str) -> str:
    """``name`` if it is one of :data:`RUNTIMES`, else a one-line refusal naming them."""
    if name not in RUNTIMES:
        raise PrunenetError(f"unknown runtime {name!r}: choose one of {', '.join(RUNTIMES)}")
    return name


def throughput_field(key: str) -> str:
    """The field of a throughput measured in the runtime ``key`` (``mxnet``, ``onnxruntime``
    or a measurement's ``onnxruntime/PROVIDER``)."""
    return THROUGHPUT_FIELDS[check_runtime(key.partition("/")[0])]


def get_runtime(name: str, ctx=None, dtype: str = "float32") -> Runtime:
    """The runtime ``name`` (one of :data:`RUNTIMES`) on ``ctx`` in ``dtype``."""
    kinds = {"mxnet": MXNetRuntime, "onnxruntime": OnnxRuntime}
    return kinds[check_runtime(name)](ctx, dtype)


def runtime_label(key: str) -> str:
    """A runtime's key as a line shows it: ``MXNet`` or ``ONNX Runtime (CPUExecutionProvider)``."""
    name, _, provider = key.partition("/")
    shown = {"mxnet": "MXNet", "onnxruntime": "ONNX Runtime"}.get(name, name)
    return f"{shown} ({provider})" if provider else shown

