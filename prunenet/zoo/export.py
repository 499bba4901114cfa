"""Deployment exports of a zoo model: MXNet's symbol + params pair, or an ONNX file.

Either export is checked before it is kept: the exported pair (or the ONNX file, when
``onnxruntime`` is installed) must give the Gluon network's outputs on random input.
"""
from __future__ import annotations

import errno
import os
import tempfile
import warnings
from typing import Dict, List, Optional

import numpy as np

from ..errors import PrunenetError

__all__ = ["export", "FORMATS"]

FORMATS = ("symbol", "onnx")
TOLERANCE = 1e-4  # largest |difference| allowed, relative to max(1, largest |output|)
_CHECK_BATCH = 2  # checked on a batch other than the exported one: the batch axis is dynamic


def _files(name: str, fmt: str) -> List[str]:
    return [f"{name}-symbol.json", f"{name}-0000.params"] if fmt == "symbol" else [f"{name}.onnx"]


def _check(diff: float, reference: np.ndarray, what: str) -> None:
    if not diff <= TOLERANCE * max(1.0, float(np.abs(reference).max())):
        raise PrunenetError(f"the {what} export's outputs differ from MXNet's by {diff:.3g}; "
                            f"nothing was written (please report it)")


def _to_onnx(symbol_file: str, params_file: str, shape, path: str) -> None:
    """Convert the MXNet pair to ONNX with a dynamic batch axis; weights are initializers only
    (:func:`prunenet.latency.runtimes.onnx_model`)."""
    import mxnet as mx
    from ..latency.runtimes import onnx_model
    params = {k.split(":", 1)[-1]: v.asnumpy() for k, v in mx.nd.load(params_file).items()}
    model = onnx_model(mx.sym.load(symbol_file), params, {"data": tuple(shape)},
                       dynamic_batch=True)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def _onnx_outputs(path: str, x: np.ndarray) -> Optional[np.ndarray]:
    """The ONNX model's outputs in onnxruntime, or None when onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def export(name: str, zoo: str, fmt: str, out: str, input_size: Optional[int] = None,
           overwrite: bool = False, ctx=None) -> Dict[str, object]:
    """Write model ``name`` of ``zoo`` to ``out`` as ``fmt`` (``symbol``: ``NAME-symbol.json`` +
    ``NAME-0000.params``; ``onnx``: ``NAME.onnx``). Returns ``{"files": [...], "max_abs_diff":
    largest difference from MXNet's outputs, or None when it could not be checked}``."""
    import mxnet as mx
    from .store import describe

    if fmt not in FORMATS:
        raise PrunenetError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    from ..io.outputs import check_target, exclusive
    out = check_target(out)
    ctx = ctx or mx.cpu()
    entry = describe(name, zoo)
    shape = list(entry.get("input_shape") or [1, 3, 224, 224])
    if input_size:
        shape[2:] = [input_size, input_size]
    shape[0] = 1
    with exclusive(out):  # one writer of --out; the files are checked again under the lock
        return _export(name, zoo, fmt, out, entry, shape, overwrite, ctx)


def _export(name, zoo, fmt, out, entry, shape, overwrite, ctx) -> Dict[str, object]:
    import mxnet as mx
    from .store import get_model
    targets = _files(name, fmt)
    clash = [f for f in targets if os.path.exists(os.path.join(out, f))]
    if clash and not overwrite:
        raise PrunenetError(f"{os.path.join(out, clash[0])} already exists; choose another --out "
                            f"or pass --overwrite")

    net = get_model(name, pretrained=True, root=zoo, ctx=ctx)
    net.hybridize()
    _check_memory(net, [_CHECK_BATCH] + shape[1:])
    x = np.random.RandomState(0).normal(size=[_CHECK_BATCH] + shape[1:]).astype(np.float32)
    expected = net(mx.nd.array(x, ctx=ctx)).asnumpy()
    made = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    try:
        return _write(name, fmt, out, shape, net, x, expected, targets, ctx)
    except (OSError, mx.base.MXNetError) as err:
        if made and not os.listdir(out):
            os.rmdir(out)  # the folder this export made, left empty
        if isinstance(err, OSError) and err.errno != errno.ENOSPC:
            raise
        raise PrunenetError(f"cannot write the export of {name} into {out}: "
                            f"{_mxnet_reason(err)}; free some space there or choose another "
                            f"--out") from None


def _check_memory(net, shape: List[int]) -> None:
    """Refuse an input ``shape`` whose forward pass would need a tensor MXNet cannot index
    (2^31 elements) or more memory than this machine has free; shapes inferred, nothing
    allocated."""
    import mxnet as mx
    symbol = net(mx.sym.var("data"))
    symbol = mx.sym.Group(list(symbol)) if isinstance(symbol, (list, tuple)) else symbol
    _, shapes, _ = symbol.get_internals().infer_shape(data=tuple(shape))
    sizes = [int(np.prod(s, dtype=np.float64)) for s in shapes if s]
    largest = max(sizes + [int(np.prod(shape, dtype=np.float64))])
    need = 4.0 * 3 * largest  # the input, and a layer's input and output at once (float32)
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if largest >= 2 ** 31 or need > free:
        raise PrunenetError(f"input of shape {tuple(shape)} needs tensors of up to {largest} "
                            f"values (about {need / 2 ** 30:.1f} GiB; this machine has "
                            f"{free / 2 ** 30:.1f} GiB free, and MXNet indexes at most 2^31 "
                            f"values); give a smaller --input-size")


def _mxnet_reason(err: BaseException) -> str:
    """The first line of an MXNet or OS error: what went wrong, without the stack."""
    text = str(err.strerror if isinstance(err, OSError) and err.strerror else err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if "Check failed" in line), lines[0] if lines else
                type(err).__name__)


def _write(name, fmt, out, shape, net, x, expected, targets, ctx) -> Dict[str, object]:
    """The export of ``net`` staged in ``out`` and checked against ``expected`` (its outputs
    on ``x``), then moved to its final names."""
    import mxnet as mx
    from mxnet import gluon
    from ..io.files import save_symbol
    from ..io.outputs import remove_leftovers
    remove_leftovers(out, patterns=(".export-*",))  # a killed export's staging folder
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out) as stage:
        prefix = os.path.join(stage, name)
        net.export(prefix)
        symbol_file, params_file = prefix + "-symbol.json", prefix + "-0000.params"
        save_symbol(symbol_file, mx.sym.load(symbol_file),  # the variables' pruned shapes
                    {p.name: p.data(ctx).shape for p in net.collect_params().values()})
        if fmt == "symbol":
            with warnings.catch_warnings():  # "Cannot decide type for ... data": harmless
                warnings.simplefilter("ignore", UserWarning)
                block = gluon.SymbolBlock.imports(symbol_file, ["data"], params_file, ctx=ctx)
            got: Optional[np.ndarray] = block(mx.nd.array(x, ctx=ctx)).asnumpy()
        else:
            _to_onnx(symbol_file, params_file, shape, prefix + ".onnx")
            got = _onnx_outputs(prefix + ".onnx", x)
        diff = None if got is None else float(np.abs(got - expected).max())
        if diff is not None:
            _check(diff, expected, fmt)
        for fname in targets:
            os.replace(os.path.join(stage, fname), os.path.join(out, fname))
    return {"files": [os.path.join(out, f) for f in targets], "max_abs_diff": diff,
            "input_shape": shape}
