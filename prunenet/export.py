"""Deployment exports of a zoo model: MXNet's symbol + params pair, or an ONNX file.

Either export is checked before it is kept: the exported pair (or the ONNX file, when
``onnxruntime`` is installed) must give the Gluon network's outputs on random input.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from typing import Dict, List, Optional

import numpy as np

from .errors import PrunenetError

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
    (:func:`prunenet.runtimes.onnx_model`)."""
    import mxnet as mx
    from .runtimes import onnx_model
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
    from .zoo import describe

    if fmt not in FORMATS:
        raise PrunenetError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    from .outputs import check_target, exclusive
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
    from mxnet import gluon
    from .files import save_symbol
    from .outputs import remove_leftovers
    from .zoo import get_model
    targets = _files(name, fmt)
    clash = [f for f in targets if os.path.exists(os.path.join(out, f))]
    if clash and not overwrite:
        raise PrunenetError(f"{os.path.join(out, clash[0])} already exists; choose another --out "
                            f"or pass --overwrite")

    net = get_model(name, pretrained=True, root=zoo, ctx=ctx)
    net.hybridize()
    x = np.random.RandomState(0).normal(size=[_CHECK_BATCH] + shape[1:]).astype(np.float32)
    expected = net(mx.nd.array(x, ctx=ctx)).asnumpy()
    os.makedirs(out, exist_ok=True)
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
