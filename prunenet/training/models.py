"""Build GluonCV networks by name, optionally resized to a pruned-ResNet shape file."""
from __future__ import annotations

import difflib
import os
from typing import Dict, Optional, Sequence

from ..errors import PrunenetError

__all__ = ["build_model", "load_model", "model_names", "input_shape", "randomize_batchnorm",
           "check_shapes", "initialize_missing", "pretrained_params",
           "build_pruned_resnet", "load_symbol_block", "fresh_resnetv1b",
           "load_network", "symbol_name", "gluoncv_name", "input_channels", "symbol_channels"]

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


def image_channels(shapes: Dict[str, Sequence[int]]) -> int:
    """The image channels a pruned-ResNet shape file's stem convolution reads (default 3)."""
    from ..core.surgery import GLUONCV_PREFIX
    return int(shapes.get(GLUONCV_PREFIX + "conv0_weight", [0, 3])[1])


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
    from ..core.surgery import gluoncv_key

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


def _first_conv(block):
    """The first ``Conv2D`` of ``block`` in the order its children were added (the stem)."""
    from mxnet.gluon import nn
    for child in block._children.values():
        found = child if isinstance(child, nn.Conv2D) else _first_conv(child)
        if found is not None:
            return found
    return None


def input_channels(net) -> Optional[int]:
    """The input channels of a built and initialised Gluon network: its first convolution's
    (None without one)."""
    conv = _first_conv(net)
    if conv is None or not conv.weight.shape or not conv.weight.shape[1]:
        return None
    return int(conv.weight.shape[1]) * int(conv._kwargs.get("num_group", 1))


def _stored_channels(net, shapes, shapes_source: str, params: Optional[str]) -> tuple:
    """``(channels, what says so)`` of GluonCV's ``net`` by its shape file or its
    ``save_parameters`` file, or ``(None, None)`` when neither says."""
    import mxnet as mx
    from ..core.surgery import GLUONCV_PREFIX
    if shapes and GLUONCV_PREFIX + "conv0_weight" in shapes:
        return image_channels(shapes), f"shape file {shapes_source}"
    conv = _first_conv(net)
    if params is None or conv is None or not os.path.isfile(params):
        return None, None
    key = next((k for k, p in net._collect_params_with_prefix().items() if p is conv.weight),
               None)
    try:
        stored = mx.nd.load(params)
    except mx.base.MXNetError:
        return None, None  # load_parameters names the file's problem
    if not isinstance(stored, dict) or key not in stored or stored[key].ndim != 4:
        return None, None
    return (int(stored[key].shape[1]) * int(conv._kwargs.get("num_group", 1)),
            f"params file {params}")


def load_model(name: str, classes: Optional[int] = None, params: Optional[str] = None,
               shapes: Optional[Dict[str, Sequence[int]]] = None, shapes_source: str = "<shapes>",
               seed: int = 0, ctx=None, input_size: Optional[int] = None,
               channels: Optional[int] = None):
    """Build ``name`` (resized to ``shapes`` when given) and initialise it: from a Gluon
    ``save_parameters`` file ``params``, or seeded at random; on every context of ``ctx``
    (a context or a list of them). Its input channels are those the shape file or the params
    file say, else ``channels`` (default 3); ``channels`` other than what a file says is
    refused (:func:`input_channels` reads them off the result)."""
    import mxnet as mx
    import numpy as np
    from ..core.replicas import context_list, place
    from ..core.surgery import is_resnetv1b

    devices = context_list(ctx)
    ctx = devices[0]
    net = build_model(name, classes)
    mx.random.seed(seed)
    np.random.seed(seed)
    stored, source = _stored_channels(net, shapes, shapes_source, params)
    if stored is not None and channels is not None and stored != channels:
        raise PrunenetError(f"{source} is for {stored}-channel input, not {channels} channels; "
                            f"give --channels {stored} (or data of {stored} channels), or a "
                            f"file made for {channels}-channel input")
    channels = stored or channels or 3
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
        # materialise deferred shapes; waited for: with oneDNN the pass reorders the
        # convolution weights, and a read of them before it ends can see them half-written
        net(mx.nd.zeros(shape, ctx=ctx)).wait_to_read()
    except mx.base.MXNetError as err:
        raise PrunenetError(f"{name} cannot run on input of shape {shape}"
                            + (f" with shape file {shapes_source}" if shapes else "")
                            + f": {_first_line(err)}") from None
    if params is not None:
        from ..io.files import require_file
        require_file(params, "params file")
        try:
            replaced = _classifier_to_replace(net, params, classes)
            if replaced:
                _load_except(net, params, replaced, ctx)
            else:
                net.load_parameters(params, ctx=ctx)
        except AttributeError:  # mx.nd.load gave a list: the file's arrays have no names
            raise PrunenetError(f"params file {params} holds an unnamed list of arrays, not "
                                f"named parameters; pass the save_parameters file of {name}") \
                from None
        except (AssertionError, ValueError, mx.base.MXNetError, OSError) as err:
            import re
            missing = re.search(r"Parameter '([^']+)' is missing", str(err))
            raise PrunenetError(f"params file {params} does not fit {name}"
                                + (f" with {classes} classes" if classes else "")
                                + (f": it has no {missing.group(1)}" if missing else
                                   f": {_first_line(err)}")
                                + "; pass the save_parameters file of this model") from None
    return place(net, devices)


def fresh_resnetv1b(net):
    """A new, uninitialised GluonCV ``ResNetV1b`` of ``net``'s architecture (block type, depth,
    stem, downsampling, dilation, classes), read off ``net`` itself."""
    from gluoncv.model_zoo.resnetv1b import ResNetV1b
    from mxnet.gluon import nn
    stages = [net.layer1, net.layer2, net.layer3, net.layer4]
    deep_stem = isinstance(net.conv1, nn.HybridSequential)
    down = getattr(net.layer2[0], "downsample", None)
    avg_down = down is not None and isinstance(down[0], nn.AvgPool2D)
    dilated = tuple(net.layer3[0].conv2._kwargs.get("dilate", (1, 1))) != (1, 1)
    return ResNetV1b(type(net.layer1[0]), [len(s) for s in stages], classes=net.fc._units,
                     dilated=dilated, norm_kwargs=dict(net.norm_kwargs), deep_stem=deep_stem,
                     stem_width=net.conv1[0]._channels if deep_stem else 32, avg_down=avg_down,
                     final_drop=net.drop._rate if net.drop is not None else 0.0,
                     name_prefix=net.prefix)


def gluoncv_name(net) -> Optional[str]:
    """The GluonCV model name (``resnet18_v1b``, ``cifar_resnet20_v1``, ...) whose architecture
    ``net`` has — the same class, parameter names and shapes apart from the input channels and
    class count — or None when no GluonCV model of ``net``'s class is one."""
    from gluoncv.model_zoo import model_zoo
    cls = type(net)
    own = {k: tuple(p.shape) for k, p in net._collect_params_with_prefix().items()}
    key = (cls, tuple(own.items()))
    if key not in _NAMES_FOUND:  # each candidate is built: once per architecture
        names = sorted(n for n, f in model_zoo._models.items()
                       if getattr(f, "__module__", None) == cls.__module__)
        _NAMES_FOUND[key] = _matching_name(cls, own, names)
    return _NAMES_FOUND[key]


_NAMES_FOUND: Dict[tuple, Optional[str]] = {}


def _matching_name(cls, own: Dict[str, tuple], names: Sequence[str]) -> Optional[str]:
    """The first of GluonCV's ``names`` that builds a ``cls`` of the parameters ``own``."""
    for name in names:
        try:
            candidate = build_model(name)
        except Exception:  # a builder that needs what this machine lacks: not this network
            continue
        if type(candidate) is not cls:
            continue
        theirs = {k: tuple(p.shape) for k, p in candidate._collect_params_with_prefix().items()}
        if list(theirs) != list(own):
            continue
        differ = {k.rsplit(".", 1)[0] for k in own if len(theirs[k]) != len(own[k]) or
                  any(t not in (0, o) for t, o in zip(theirs[k], own[k]))}
        if not differ or differ == {list(own)[-1].rsplit(".", 1)[0]}:  # the class count
            return name
    return None


def _classifier_to_replace(net, params: str, classes: Optional[int]) -> list:
    """For transfer (``classes`` given, ``params`` saved with another class count): the names
    of the one output layer's parameters whose first dimension differs, else ``[]``."""
    import mxnet as mx
    if classes is None:
        return []
    stored = mx.nd.load(params)
    own = net._collect_params_with_prefix()
    if not isinstance(stored, dict):
        return []
    differ = [k for k, p in own.items() if k in stored and tuple(stored[k].shape) != p.shape]
    layers = {k.rsplit(".", 1)[0] for k in differ}
    if len(layers) != 1 or not all(
            own[k].shape[0] == classes and stored[k].shape[0] != classes and
            tuple(stored[k].shape[1:]) == own[k].shape[1:] for k in differ):
        return []
    return differ


def _load_except(net, params: str, replaced: list, ctx) -> None:
    """Load ``params`` into ``net`` except ``replaced`` (the output layer), which gets a fresh
    Xavier initialisation, as GluonCV's fine-tuning tutorial gives its new output layer;
    records ``net.prunenet_transfer``."""
    import mxnet as mx
    stored = mx.nd.load(params)
    own = net._collect_params_with_prefix()
    missing = sorted(set(own) - set(stored))
    if missing:
        raise AssertionError(f"parameter {missing[0]} is missing in the file")
    for key, param in own.items():
        if key in replaced:
            param.initialize(default_init=mx.init.Xavier(), ctx=ctx, force_reinit=True)
        else:
            param.set_data(stored[key])
    before = int(stored[replaced[0]].shape[0])
    net.prunenet_transfer = {"from_classes": before, "classes": int(own[replaced[0]].shape[0]),
                             "replaced": [own[k].name for k in replaced]}


def build_pruned_resnet(base: str, shapes: Dict[str, list], params=None, ctx=None,
                        shapes_source: str = "<shapes>", params_source: str = "<params>"):
    """GluonCV's ``base`` resized to ``shapes`` with ``params`` (GluonCV names) loaded, or
    randomly initialised without them; any mismatch is an error naming the file. On every
    context of ``ctx`` (a context or a list of them)."""
    import mxnet as mx
    from ..core.replicas import context_list, place
    from ..core.surgery import GLUONCV_PREFIX, build_resnetv1b

    devices = context_list(ctx)
    ctx = devices[0]
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
    channels = image_channels(shapes)
    try:  # materialises deferred BatchNorm shapes and checks that the widths fit together
        net(mx.nd.zeros((1, channels, _PROBE_SIZE, _PROBE_SIZE), ctx=ctx)).wait_to_read()
    except mx.base.MXNetError as err:
        raise PrunenetError(f"shape file {shapes_source}: the layer widths of {base} do not fit "
                            f"together ({_first_line(err)})") from None
    return place(net, devices)


def symbol_name(symbol_file: str) -> str:
    """The network's name in a ``HybridBlock.export`` pair: ``net`` for ``net-symbol.json``."""
    base = os.path.basename(symbol_file)
    return base[:-len("-symbol.json")] if base.endswith("-symbol.json") else \
        os.path.splitext(base)[0]


def load_network(model: Optional[str] = None, symbol: Optional[str] = None,
                 classes: Optional[int] = None, params: Optional[str] = None, seed: int = 0,
                 ctx=None, input_size: Optional[int] = None,
                 channels: Optional[int] = None) -> tuple:
    """``(net, name, input shape)`` of GluonCV's ``model`` (see :func:`load_model`) or of a
    ``HybridBlock.export`` pair (``symbol`` with its ``params``, input 224 pixels unless
    ``input_size``). The input channels: what the params (or shape) file says, else
    ``channels``, else 3."""
    if (model is None) == (symbol is None):
        raise PrunenetError("give --model NAME (a GluonCV network) or --symbol FILE (with "
                            "--params, what HybridBlock.export writes), one of them")
    if model is not None:
        net = load_model(model, classes=classes, params=params, seed=seed, ctx=ctx,
                         input_size=input_size, channels=channels)
        return net, model, input_shape(model, input_size, input_channels(net) or 3)
    from ..io.files import require_file
    require_file(symbol, "symbol file")
    stored = symbol_channels(symbol, params)
    if stored is not None and channels is not None and stored != channels:
        raise PrunenetError(f"params file {params} is for {stored}-channel input, not "
                            f"{channels} channels; give --channels {stored} (or data of "
                            f"{stored} channels), or the pair exported for {channels}-channel "
                            f"input")
    shape = input_shape("", input_size, stored or channels or 3)
    check_symbol_params(symbol, params, shape)
    net = load_symbol_block(symbol, params, ctx)
    stored = _output_classes(net, shape)
    if classes is not None and classes != stored:
        raise PrunenetError(f"--classes {classes}: {symbol} outputs {stored} classes; replacing "
                            f"the output layer of a --symbol network is not supported yet "
                            f"(export it with {classes} outputs)")
    return net, symbol_name(symbol), shape


def symbol_channels(symbol_file: str, params_file: Optional[str]) -> Optional[int]:
    """The input channels an exported pair says: those of the params of the convolution (or
    BatchNorm) that reads ``data``; None when the files do not say (or cannot be read: the
    checks that follow name the problem)."""
    import json
    import mxnet as mx
    try:
        with open(symbol_file) as f:
            nodes = json.load(f)["nodes"]
        stored = {k.split(":", 1)[-1]: v for k, v in mx.nd.load(params_file).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, mx.base.MXNetError):
        return None
    data = [i for i, n in enumerate(nodes) if n.get("op") == "null" and n.get("name") == "data"]
    for node in nodes:
        inputs = node.get("inputs") or []
        if not data or not inputs or inputs[0][0] != data[0] or len(inputs) < 2:
            continue
        weight = stored.get(nodes[inputs[1][0]].get("name"))
        attrs = node.get("attrs") or {}
        if node.get("op") == "Convolution" and weight is not None and weight.ndim == 4:
            return int(weight.shape[1]) * int(attrs.get("num_group", 1))
        if node.get("op") == "BatchNorm" and weight is not None:
            return int(weight.shape[0])
        return None
    return None


def _output_classes(net, shape) -> int:
    import mxnet as mx
    return int(net(mx.nd.zeros(shape)).shape[1])


def check_symbol_params(symbol_file: str, params_file: Optional[str], shape) -> None:
    """Refuse a symbol without its params file, or params that do not fit it, naming the
    first missing or mismatched parameter."""
    import mxnet as mx
    try:
        symbol = mx.sym.load(symbol_file)
    except mx.base.MXNetError as err:
        raise PrunenetError(f"symbol file {symbol_file} is not an MXNet symbol: "
                            f"{_first_line(err)}") from None
    arguments = symbol.list_arguments()
    if "data" not in arguments:  # also an empty graph ({"nodes": [], ...})
        raise PrunenetError(f"symbol file {symbol_file} has no input named data" + (
            f" (its arguments start with {arguments[0]!r})" if arguments else
            " (it holds no operators)") + "; prunenet feeds the images as data: export the "
            "network with HybridBlock.export, which names its input so")
    try:  # a parameter's shape follows from the images'; a second input's does not
        partial = dict(zip(arguments, symbol.infer_shape_partial(data=shape)[0]))
    except mx.base.MXNetError:  # a graph MXNet cannot run: said below, with --params
        partial = {}
    inputs = [n for n in partial if n != "data" and (not partial[n] or 0 in partial[n])]
    if inputs:
        raise PrunenetError(f"symbol file {symbol_file} takes a second input, {inputs[0]}, "
                            f"besides data (the images do not tell its shape); prunenet feeds "
                            f"the images as the one input, data: export a network that takes "
                            f"the images alone")
    needed = [n for n in arguments if n != "data"] + symbol.list_auxiliary_states()
    if params_file is None:
        raise PrunenetError(f"--symbol {symbol_file} needs --params: its parameters (first: "
                            f"{needed[0] if needed else 'none'}) have no values; pass the "
                            f".params file HybridBlock.export wrote beside it")
    from ..io.files import require_file
    require_file(params_file, "params file")
    try:
        stored = {k.split(":", 1)[-1]: v for k, v in mx.nd.load(params_file).items()}
    except (AttributeError, mx.base.MXNetError) as err:
        raise PrunenetError(f"params file {params_file} is not a named MXNet params file"
                            f" ({type(err).__name__}); pass the file HybridBlock.export "
                            f"wrote") from None
    missing = [n for n in needed if n not in stored]
    if missing:
        raise PrunenetError(f"params file {params_file} has no {missing[0]}"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                            + f", which {symbol_file} needs; pass the params file exported "
                              f"with this symbol")
    try:
        args, _, aux = symbol.infer_shape(data=shape)
    except mx.base.MXNetError as err:
        raise PrunenetError(f"{symbol_file} cannot run on input of shape {shape}: "
                            f"{_first_line(err)}; check --input-size and --channels, or the "
                            f"symbol file (a graph MXNet cannot run, e.g. one edited by hand)") \
            from None
    want = dict(zip(symbol.list_arguments(), args))
    want.update(zip(symbol.list_auxiliary_states(), aux))
    for name in needed:
        got, need = tuple(stored[name].shape), tuple(want[name])
        if got != need:
            if len(got) == 4 == len(need) and need[1] == shape[1] and got[1] != need[1] and \
                    got[:1] + got[2:] == need[:1] + need[2:]:  # the stem, at other channels
                raise PrunenetError(f"params file {params_file}: {name} has shape {got}, for "
                                    f"{got[1]}-channel input, not the {shape[1]} channels of "
                                    f"input {shape}; give --channels {got[1]}")
            raise PrunenetError(f"params file {params_file} does not fit {symbol_file}: {name} "
                                f"has shape {got}, the symbol needs {need} at input {shape}; "
                                f"pass the params file exported with this symbol")


def load_symbol_block(symbol_file: str, params_file: Optional[str] = None, ctx=None):
    """An MXNet symbol + params pair as a ``SymbolBlock`` (randomly initialised without params),
    with errors that name the files; on every context of ``ctx`` (a context or a list)."""
    import warnings
    import mxnet as mx
    from mxnet import gluon
    from ..core.replicas import context_list, place
    devices = context_list(ctx)
    ctx = devices[0]
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
    return place(block, devices)


def pretrained_params(name: str, root: str = "~/.mxnet/models", flag: str = "--params") -> str:
    """The path of GluonCV's pretrained ``save_parameters`` file for ``name``, downloaded by
    GluonCV's model store when it is not there yet; ``flag`` gives the file instead."""
    from gluoncv.model_zoo.model_store import get_model_file
    build_model(name)  # an unknown name fails here with its hint
    try:
        return get_model_file(name, root=os.path.expanduser(root))
    except Exception as err:  # network errors come in many types
        raise PrunenetError(f"could not get GluonCV's pretrained weights for {name} "
                            f"({type(err).__name__}: {_first_line(err)}); without internet pass "
                            f"{flag} FILE") from None


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
