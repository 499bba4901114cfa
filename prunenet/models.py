"""Build GluonCV networks by name, optionally resized to a pruned-ResNet shape file."""
from __future__ import annotations

import difflib
import os
from typing import Dict, Optional, Sequence

from .errors import PrunenetError

__all__ = ["build_model", "load_model", "model_names", "input_shape", "randomize_batchnorm",
           "check_shapes", "initialize_missing", "pretrained_params",
           "build_pruned_resnet", "load_symbol_block"]

# Networks GluonCV builds for 32x32 CIFAR images; the rest default to 224x224 ImageNet input.
_CIFAR_PREFIX = "cifar_"
_PROBE_SIZE = 32  # every ResNetV1b runs on 32x32 input (five stride-2 stages to 1x1)


def model_names() -> list:
    """Every network name GluonCV's ``get_model`` accepts."""
    from gluoncv.model_zoo import get_model_list
    return sorted(get_model_list())


def input_shape(name: str, input_size: Optional[int] = None, channels: int = 3) -> tuple:
    """The NCHW shape of one image for ``name`` (default size: 32 for CIFAR nets, else 224)."""
    size = input_size or (32 if name.startswith(_CIFAR_PREFIX) else 224)
    if size < 1:
        raise PrunenetError(f"input size {size} must be a positive number of pixels")
    return (1, channels, size, size)


def build_model(name: str, classes: Optional[int] = None, **kwargs):
    """GluonCV's network ``name``, uninitialised, with ``classes`` outputs when given."""
    from gluoncv.model_zoo import get_model
    names = model_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else \
            "; see GluonCV's model zoo for the names"
        raise PrunenetError(f"unknown model {name!r}{hint}")
    if classes is not None:
        if classes < 1:
            raise PrunenetError(f"--classes {classes} must be at least 1")
        kwargs["classes"] = classes
    if _takes_pretrained_base(name):  # detectors would download their backbone's weights
        kwargs.setdefault("pretrained_base", False)
    return get_model(name, pretrained=False, **kwargs)


def _takes_pretrained_base(name: str) -> bool:
    import inspect
    from gluoncv.model_zoo import model_zoo
    try:
        return "pretrained_base" in inspect.signature(model_zoo._models[name]).parameters
    except (KeyError, TypeError, ValueError):
        return False


def check_shapes(net, shapes: Dict[str, Sequence[int]], source: str, model: str) -> None:
    """Raise a :class:`PrunenetError` unless ``shapes`` names exactly ``net``'s conv/dense
    parameters, with their kernel sizes and no more channels than ``net`` has."""
    from mxnet.gluon import nn
    from .surgery import gluoncv_key

    expected: Dict[str, tuple] = {}

    def visit(block):
        for child in block._children.values():
            if isinstance(child, (nn.Conv2D, nn.Dense)):
                for pname, param in child._reg_params.items():
                    if isinstance(child, nn.Conv2D) and pname != "weight":
                        continue
                    expected[gluoncv_key(param.name, net.prefix)] = param.shape
            visit(child)

    visit(net)
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    if missing or extra:
        detail = (f"missing {missing[0]}" if missing else f"unknown {extra[0]}") + \
            (f" and {len(missing) + len(extra) - 1} more" if len(missing) + len(extra) > 1 else "")
        raise PrunenetError(f"shape file {source} does not fit {model}: {detail}; "
                            f"use a shape file made for this --model")
    for key, shape in shapes.items():
        want = expected[key]
        shape = tuple(shape)
        bad = len(shape) != len(want) or any(int(v) < 1 for v in shape) or \
            (want[0] not in (0, None) and shape[0] > want[0]) or tuple(shape[2:]) != tuple(want[2:])
        if bad:
            raise PrunenetError(f"shape file {source} does not fit {model}: {key} has shape "
                                f"{list(shape)}, the model's is {list(want)}")


def load_model(name: str, classes: Optional[int] = None, params: Optional[str] = None,
               shapes: Optional[Dict[str, Sequence[int]]] = None, shapes_source: str = "<shapes>",
               seed: int = 0, ctx=None, input_size: Optional[int] = None, channels: int = 3):
    """Build ``name`` (resized to ``shapes`` when given) and initialise it: from a Gluon
    ``save_parameters`` file ``params``, or seeded at random."""
    import mxnet as mx
    import numpy as np
    from .surgery import is_resnetv1b

    ctx = ctx or mx.cpu()
    net = build_model(name, classes)
    mx.random.seed(seed)
    np.random.seed(seed)
    shape = input_shape(name, input_size, channels)
    if shapes is not None:
        if not is_resnetv1b(net):
            raise PrunenetError(f"--shapes takes GluonCV pruned-ResNet shape files, which only fit "
                                f"the ResNetV1b family (resnet18_v1b, resnet50_v1d, ...), not {name}")
        net = build_pruned_resnet(name, shapes, ctx=ctx, shapes_source=shapes_source)
        stored = len(net.fc.bias.data()) if net.fc.bias is not None else None
        if classes is not None and stored != classes:
            raise PrunenetError(f"shape file {shapes_source} is for {stored} classes, not "
                                f"--classes {classes}")
    initialize_missing(net, mx.init.MSRAPrelu(), ctx)
    try:
        net(mx.nd.zeros(shape, ctx=ctx))  # materialise deferred shapes
    except mx.base.MXNetError as err:
        raise PrunenetError(f"{name} cannot run on input of shape {shape}"
                            + (f" with shape file {shapes_source}" if shapes else "")
                            + f": {_first_line(err)}") from None
    if params is not None:
        from .files import require_file
        require_file(params, "params file")
        try:
            net.load_parameters(params, ctx=ctx)
        except AttributeError:  # mx.nd.load gave a list: the file's arrays have no names
            raise PrunenetError(f"params file {params} holds an unnamed list of arrays, not "
                                f"named parameters; pass the save_parameters file of {name}") \
                from None
        except (AssertionError, ValueError, mx.base.MXNetError, OSError) as err:
            raise PrunenetError(f"params file {params} does not fit {name}"
                                + (f" with {classes} classes" if classes else "")
                                + f": {_first_line(err)}; pass the save_parameters file of this "
                                  f"model") from None
    return net


def build_pruned_resnet(base: str, shapes: Dict[str, list], params=None, ctx=None,
                        shapes_source: str = "<shapes>", params_source: str = "<params>"):
    """GluonCV's ``base`` resized to ``shapes`` with ``params`` (GluonCV names) loaded, or
    randomly initialised without them; any mismatch is an error naming the file."""
    import mxnet as mx
    from .surgery import GLUONCV_PREFIX, build_resnetv1b

    ctx = ctx or mx.cpu()
    shapes = {key: tuple(int(v) for v in shape) for key, shape in shapes.items()}
    dense = shapes.get(GLUONCV_PREFIX + "dense0_weight")
    if not dense:
        raise PrunenetError(f"shape file {shapes_source} has no {GLUONCV_PREFIX}dense0_weight; "
                            f"it is not a GluonCV pruned-ResNet shape file")
    net = build_model(base, classes=int(dense[0]))
    check_shapes(net, shapes, shapes_source, base)  # kernel sizes and widths, before any init
    try:
        build_resnetv1b(net, shapes, params, ctx=ctx)
    except KeyError as err:
        raise PrunenetError(f"params file {params_source} has no {err.args[0]}; it does not "
                            f"belong to shape file {shapes_source}") from None
    except (AssertionError, ValueError, mx.base.MXNetError) as err:
        raise PrunenetError(f"params file {params_source} does not match shape file "
                            f"{shapes_source}: {_first_line(err)}") from None
    if params is None:
        initialize_missing(net, mx.init.MSRAPrelu(), ctx)
    channels = int(shapes.get(GLUONCV_PREFIX + "conv0_weight", [0, 3])[1])
    try:  # materialises deferred BatchNorm shapes and checks that the widths fit together
        net(mx.nd.zeros((1, channels, _PROBE_SIZE, _PROBE_SIZE), ctx=ctx)).wait_to_read()
    except mx.base.MXNetError as err:
        raise PrunenetError(f"shape file {shapes_source}: the layer widths of {base} do not fit "
                            f"together ({_first_line(err)})") from None
    return net


def load_symbol_block(symbol_file: str, params_file: Optional[str] = None, ctx=None):
    """An MXNet symbol + params pair as a ``SymbolBlock`` (randomly initialised without params),
    with errors that name the files."""
    import warnings
    import mxnet as mx
    from mxnet import gluon
    ctx = ctx or mx.cpu()
    try:
        with warnings.catch_warnings():  # "Cannot decide type for ... data": harmless
            warnings.simplefilter("ignore", UserWarning)
            block = gluon.SymbolBlock.imports(symbol_file, ["data"], params_file, ctx=ctx)
    except (AssertionError, ValueError, mx.base.MXNetError, OSError) as err:
        raise PrunenetError(f"{params_file or symbol_file} does not fit {symbol_file}: "
                            f"{_first_line(err)}") from None
    if params_file is None:  # BatchNorm as Gluon starts it, the rest as GluonCV's ResNets
        for name, param in block.collect_params().items():
            if name.endswith(("_gamma", "_running_var")):
                param.init = mx.init.One()
            elif name.endswith(("_beta", "_running_mean", "_bias")):
                param.init = mx.init.Zero()
        initialize_missing(block, mx.init.MSRAPrelu(), ctx)
    return block


def pretrained_params(name: str, root: str = "~/.mxnet/models") -> str:
    """The path of GluonCV's pretrained ``save_parameters`` file for ``name``, downloaded by
    GluonCV's model store when it is not there yet."""
    from gluoncv.model_zoo.model_store import get_model_file
    build_model(name)  # an unknown name fails here with its hint
    try:
        return get_model_file(name, root=os.path.expanduser(root))
    except Exception as err:  # network errors come in many types
        raise PrunenetError(f"could not get GluonCV's pretrained weights for {name} "
                            f"({type(err).__name__}: {_first_line(err)}); without internet pass "
                            f"--params FILE") from None


def initialize_missing(net, init, ctx) -> None:
    """Initialise the parameters of ``net`` that have no value yet, and only those."""
    for param in net.collect_params().values():
        if param._data is None and not param._deferred_init:
            param.initialize(ctx=ctx, default_init=init)


def randomize_batchnorm(net, seed: int = 0) -> None:
    """Give every BatchNorm random γ (both signs), β, running mean and variance.

    GluonCV initialises γ=1, β=0, μ=0, σ²=1, which hides slicing and folding mistakes; tests
    and checks randomise these first.
    """
    import mxnet as mx
    import numpy as np
    rng = np.random.RandomState(seed)
    for name, param in net.collect_params().items():
        shape = param.shape
        if name.endswith("_gamma"):
            value = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
        elif name.endswith("_beta"):
            value = rng.normal(0, 0.5, shape)
        elif name.endswith("_running_mean"):
            value = rng.normal(0, 0.5, shape)
        elif name.endswith("_running_var"):
            value = rng.uniform(0.5, 2.0, shape)
        else:
            continue
        param.set_data(mx.nd.array(value, dtype=np.float32))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "Stack trace", "[bt]", 'File "')):
            return line[:300]
    return type(err).__name__
