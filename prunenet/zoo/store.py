"""A model zoo: pruned networks published in GluonCV's format, listed, verified and loaded back.

A zoo is a folder, which any static web server or object store can serve as it is::

    ZOO/zoo.json                          the manifest: every model, its figures and file hashes
    ZOO/<name>-<sha1[:8]>.json            the GluonCV pruned-ResNet shape file
    ZOO/<name>-<sha1[:8]>.params          the weights (``mx.nd.save``, GluonCV's full names)
    ZOO/<name>-symbol-<sha1[:8]>.json     instead of the shape file, for networks other than
                                          GluonCV's ResNetV1b family: the MXNet symbol

Files are named by the first 8 hex digits of their SHA-1, as GluonCV's model store names its
files, and both hashes are checked on load. Content-addressed names mean a publish only ever adds
files: the manifest, written last and atomically under ``ZOO/.lock``, is what makes a model
appear, so an interrupted publish leaves the zoo as it was and concurrent publishes all land.

A zoo served over ``http(s)://`` loads as GluonCV's model store loads its files: the manifest
and each file are downloaded on first use into a cache (``$PRUNENET_CACHE/zoo/<server>``, else
``~/.mxnet/models/prunenet/<server>``), SHA-1-checked before use and reused offline afterwards;
``PRUNENET_ZOO`` names the default zoo as ``MXNET_GLUON_REPO`` names GluonCV's.

GluonCV's own pruned ResNets (``resnet50_v1d_0.86``, ...) load through :func:`get_model` too:
their shape files come from the installed GluonCV, their weights from a local GluonCV model file.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from ..io.download import Unreachable, fetch, has_scheme, is_url
from ..errors import PrunenetError
from ..io.files import sha1_of  # noqa: F401  (also prunenet.zoo.sha1_of)
from ..latency.runtimes import THROUGHPUT_FIELDS, throughput_field
from ..training.models import build_pruned_resnet

__all__ = ["get_model", "get_model_file", "describe", "publish", "pull", "read_manifest",
           "verify", "Verification", "gluoncv_pruned_models", "format_table",
           "default_root", "cache_folder", "MANIFEST", "RESNET_FORMAT", "SYMBOL_FORMAT",
           "ZOO_ENV", "manifest_path", "gluoncv_shape_file", "entry_of", "sha1_of"]

MANIFEST = "zoo.json"
LOCK_FILE = ".lock"
VERSION = 1
RESNET_FORMAT = "gluoncv-pruned-resnet"  # the ResNetV1b family: shape file + params
SYMBOL_FORMAT = "mxnet-symbol"  # any other network: MXNet symbol + params
ROLES = {RESNET_FORMAT: ("shapes", "params"), SYMBOL_FORMAT: ("symbol", "params")}
FORMATS = tuple(ROLES)
DEFAULT_ROOT = os.path.join("~", ".mxnet", "models")  # GluonCV's model store
ZOO_ENV = "PRUNENET_ZOO"  # the default zoo (a URL or a folder), as MXNET_GLUON_REPO is GluonCV's
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # what publish names files: a plain name


# -- names, hashes, the manifest ----------------------------------------------------------------
def check_name(name: str) -> str:
    """``name`` if it is a valid model name (letters, digits and ``._-``), else an error."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PrunenetError(f"model name {name!r} is not valid: use letters, digits, '.', '_' "
                            f"and '-' (at most 100, starting with a letter or digit), e.g. "
                            f"resnet50_v1d_0.5_flops")
    return name


def manifest_path(zoo: str) -> str:
    """Where the manifest of ``zoo`` (a folder or a URL) is."""
    if is_url(zoo):
        return f"{_base_url(zoo)}/{MANIFEST}"
    return os.path.join(os.path.expanduser(zoo), MANIFEST)


def read_manifest(zoo: str, must_exist: bool = True) -> dict:
    """The zoo's manifest ``{"version": 1, "models": {name: entry}}``; an empty one when the zoo
    has none yet and ``must_exist`` is false. A zoo URL's manifest is downloaded (see
    :func:`_mirror`)."""
    if is_url(zoo):
        return _parse_manifest(_mirror(zoo), manifest_path(zoo))
    path = manifest_path(zoo)
    if not os.path.exists(path):
        if has_scheme(zoo):
            raise _not_http(zoo)
        if must_exist:
            raise PrunenetError(f"no model zoo at {zoo}: {path} does not exist; publish a model "
                                f"there first with prunenet zoo publish RUN_DIR --zoo {zoo} "
                                f"--name NAME")
        return {"version": VERSION, "models": {}}
    return _parse_manifest(path, path)


def _parse_manifest(path: str, where: str) -> dict:
    """The manifest in the file ``path`` after checking it is one (errors name ``where``)."""
    from ..io.files import read_json
    try:
        doc = read_json(path, "zoo manifest")
    except PrunenetError as err:
        raise PrunenetError(str(err).replace(path, where)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise PrunenetError(f"zoo manifest {where} has no \"models\" object; it is not a prunenet "
                            f"zoo manifest")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PrunenetError(f"zoo manifest {where} has version {version!r}, not a whole number "
                            f"from 1; it is not a prunenet zoo manifest")
    if version > VERSION:
        raise PrunenetError(f"zoo manifest {where} has version {version}; this prunenet reads "
                            f"version {VERSION}: upgrade prunenet")
    return doc


def _not_http(zoo: str) -> PrunenetError:
    return PrunenetError(f"zoo {zoo} is a URL prunenet cannot download: give an http:// or "
                         f"https:// URL of the folder holding {MANIFEST}, or a local folder")


@contextlib.contextmanager
def _locked(zoo: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``ZOO/.lock`` (every writer of the zoo takes it, waiting
    for the one before: each holds it only while it changes the manifest). A holder that keeps
    it longer is named and, unless ``wait`` (without end), given up on after
    :func:`prunenet.io.outputs.lock_wait` seconds."""
    from ..io.outputs import MARKER, check_target, hold_lock, mark, write_error
    zoo = check_target(zoo, "--zoo")
    try:
        os.makedirs(zoo, exist_ok=True)
        if not os.path.exists(os.path.join(zoo, MARKER)):
            mark(zoo, "zoo")
    except OSError as err:
        raise write_error(err, zoo, "--zoo") from None
    # the holder is named while it holds the lock; the served folder keeps an empty .lock
    with hold_lock(os.path.join(zoo, LOCK_FILE), f"zoo {zoo}", wait=math.inf if wait else True,
                   remove=False, clear=True):
        yield


@contextlib.contextmanager
def edit_manifest(zoo: str, wait: bool = False) -> Iterator[dict]:
    """Read the manifest under the zoo's lock (``wait``: for it without end), let the caller
    change it, write it atomically."""
    from ..io.files import write_json
    with _locked(zoo, wait):
        doc = read_manifest(zoo, must_exist=False)
        yield doc
        doc["models"] = dict(sorted(doc["models"].items()))
        write_json(manifest_path(zoo), doc)


def entry_of(zoo: str, name: str, doc: dict) -> dict:
    """Model ``name`` of the manifest ``doc``, checked field by field."""
    entry = doc["models"][name]
    where = f"zoo manifest {manifest_path(zoo)}"
    if not _NAME.fullmatch(name):
        raise PrunenetError(f"{where}: model name {name!r} is not valid (letters, digits, '.', "
                            f"'_' and '-'); re-publish it under a valid name")
    if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict) or \
            not isinstance(entry.get("sha1"), dict):
        raise PrunenetError(f"{where}: entry {name} has no \"files\" and \"sha1\" objects; "
                            f"re-publish {name} with --overwrite")
    if entry.get("format") not in FORMATS:
        raise PrunenetError(f"{where}: model {name} has format {entry.get('format')!r}, which "
                            f"this prunenet cannot load ({', '.join(FORMATS)}); upgrade prunenet")
    for role in ROLES[entry["format"]]:
        fname = entry["files"].get(role)
        if not isinstance(fname, str) or not _FILE.fullmatch(fname) or \
                not isinstance(entry["sha1"].get(role), str):
            raise PrunenetError(f"{where}: model {name} needs a plain file name and a sha1 for "
                                f"its {role} file; re-publish {name} with --overwrite")
    wrong = _wrong_field(entry)
    if wrong:
        raise PrunenetError(f"{where}: model {name} has {wrong}; re-publish {name} with "
                            f"--overwrite")
    return entry


_FIGURES = ("target", "achieved", "macs", "params", "macs_base", "params_base", "classes",
            "top1", "top5", "throughput_img_s", "throughput_img_s_onnxruntime", "batch_size")


def _wrong_field(entry: dict) -> Optional[str]:
    """What is wrong with an entry's base or figures (None: nothing)."""
    from ..io.files import MAX_ARRAY_SIZE

    def number(v):  # finite, >= 0, and a float without overflow
        try:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and \
                0 <= float(v) < math.inf
        except OverflowError:
            return False
    if not isinstance(entry.get("base"), str):
        return f"base {entry.get('base')!r}, not a GluonCV model name"
    for key in _FIGURES:
        if entry.get(key) is not None and not number(entry[key]):
            return f"{key} {entry[key]!r}, not a number"
    sizes = entry.get("sizes")
    if sizes is not None and not (isinstance(sizes, dict) and all(
            type(v) is int and v >= 0 for v in sizes.values())):
        return f"sizes {sizes!r}, not file sizes in bytes"
    shape = entry.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 4 and
                                  all(type(v) is int and v >= 1 for v in shape) and
                                  math.prod(shape) <= MAX_ARRAY_SIZE):
        return f"input_shape {shape!r}, not [N, C, H, W] of positive whole numbers"
    return None


def _file_of(zoo: str, name: str, entry: dict, role: str) -> Tuple[str, str]:
    """An entry's ``role`` file name and recorded sha1, after checking the name carries it."""
    fname, want = entry["files"][role], entry["sha1"][role].lower()
    if not os.path.splitext(fname)[0].endswith("-" + want[:8]):
        raise PrunenetError(f"model {name}: the sha1 recorded for {_where(zoo, fname)} in "
                            f"{MANIFEST} ({want[:8]}...) is not the hash in its file name; the "
                            f"manifest was edited: re-publish {name} with --overwrite")
    return fname, want


def _where(zoo: str, fname: str) -> str:
    return f"{_base_url(zoo)}/{fname}" if is_url(zoo) else \
        os.path.join(os.path.expanduser(zoo), fname)


def _checked_file(zoo: str, name: str, entry: dict, role: str) -> str:
    """The path of an entry's ``role`` file after checking it exists and matches its hash (a
    zoo URL's file: the cached copy, downloaded first when it is missing or damaged)."""
    if is_url(zoo):
        return _fetched_file(zoo, name, entry, role)
    fname, want = _file_of(zoo, name, entry, role)
    path = _where(zoo, fname)
    if not os.path.isfile(path):
        raise PrunenetError(f"model {name}: file {path} listed in {MANIFEST} is missing; "
                            f"re-publish {name} with --overwrite")
    got = sha1_of(path)
    if got != want:
        raise PrunenetError(f"model {name}: file {path} has sha1 {got[:8]}..., not the "
                            f"{want[:8]}... recorded in {MANIFEST}: the file is corrupt or was "
                            f"changed; re-publish {name} with --overwrite")
    return path


# -- zoos served over HTTP(S): a cache as GluonCV's model store keeps one ----------------------
def default_root() -> str:
    """The zoo ``get_model`` and ``--zoo`` use when none is given: ``$PRUNENET_ZOO``, else
    GluonCV's ``~/.mxnet/models``."""
    return os.environ.get(ZOO_ENV) or DEFAULT_ROOT


def _base_url(url: str) -> str:
    """A zoo URL without a trailing slash or ``/zoo.json``."""
    url = url.rstrip("/")
    return url[:-len(MANIFEST) - 1] if url.endswith("/" + MANIFEST) else url


def cache_root() -> str:
    """Where downloaded zoos are kept: ``$PRUNENET_CACHE/zoo`` (the folder of prunenet's other
    caches), else GluonCV's ``$MXNET_HOME/models/prunenet`` or ``~/.mxnet/models/prunenet``."""
    if os.environ.get("PRUNENET_CACHE"):
        return os.path.join(os.path.expanduser(os.environ["PRUNENET_CACHE"]), "zoo")
    if os.environ.get("MXNET_HOME"):
        return os.path.join(os.path.expanduser(os.environ["MXNET_HOME"]), "models", "prunenet")
    return os.path.expanduser(os.path.join(DEFAULT_ROOT, "prunenet"))


def cache_folder(url: str) -> str:
    """The cache folder of the zoo at ``url``: its server and path, readable, plus a short hash
    of the whole URL so that two zoos never share one."""
    import urllib.parse
    base = _base_url(url)
    parts = urllib.parse.urlsplit(base)
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", parts.netloc + parts.path).strip("._-")[:80]
    digest = hashlib.sha1(base.encode()).hexdigest()[:8]
    return os.path.join(cache_root(), f"{label or 'zoo'}-{digest}")


def _note(message: str) -> None:
    import sys
    print(message, file=sys.stderr)


def _mirror(url: str) -> str:
    """The cached manifest of the zoo at ``url``, fresh from the server; when the server cannot
    be reached, the copy cached before (a note says so), else an error."""
    path = os.path.join(cache_folder(url), MANIFEST)
    where = manifest_path(url)
    try:
        fetch(where, path, what="zoo manifest", check=lambda tmp: _parse_manifest(tmp, where),
              hint_404=f"no prunenet zoo is served there: give the URL of the folder holding "
                       f"{MANIFEST} (what prunenet zoo publish wrote)")
    except Unreachable as err:
        if not os.path.isfile(path):
            raise
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(path)))
        _note(f"prunenet: note: {where} is unreachable ({err.reason}); using the manifest "
              f"cached on {stamp}")
    return path


def _fetched_file(url: str, name: str, entry: dict, role: str) -> str:
    """The cached copy of an entry's ``role`` file of the zoo at ``url``, downloaded when it is
    missing or does not match its sha1 (as GluonCV downloads a damaged model file again)."""
    fname, want = _file_of(url, name, entry, role)
    path = os.path.join(cache_folder(url), fname)
    if os.path.isfile(path):
        if sha1_of(path) == want:
            return path
        _note(f"prunenet: note: the cached {path} does not match its sha1; downloading it again")
    size = (entry.get("sizes") or {}).get(role)
    return fetch(_where(url, fname), path, sha1=want, size=size,
                 what=f"model {name}'s {role} file", log=_note,
                 hint_404=f"the server's zoo lists {fname} in {MANIFEST} but lacks the file: "
                          f"upload the whole published folder again")


def pull(url: str, names: Optional[List[str]] = None) -> Dict[str, Dict[str, str]]:
    """Download the models ``names`` (default: all) of the zoo at ``url`` into the cache without
    loading them; return each model's cached files by role."""
    if not is_url(url):
        raise PrunenetError(f"zoo pull fetches a zoo served over HTTP(S); {url} is not an http:// "
                            f"or https:// URL (a folder needs no pull: give it as --zoo)")
    doc = read_manifest(url)
    missing = [n for n in names or () if n not in doc["models"]]
    if missing:
        raise PrunenetError(f"the zoo at {url} has no model {', '.join(missing)} "
                            f"({', '.join(sorted(doc['models'])) or 'it is empty'})")
    out = {}
    for name in names or sorted(doc["models"]):
        entry = entry_of(url, name, doc)
        out[name] = {role: _fetched_file(url, name, entry, role)
                     for role in ROLES[entry["format"]]}
    return out


# -- GluonCV's own pruned ResNets ---------------------------------------------------------------
def gluoncv_pruned_models() -> Dict[str, str]:
    """GluonCV's pruned ResNets: model name (``resnet50_v1d_0.86``) -> the old speed-up tag its
    shape and weight files are named by (``resnet50_v1d_1.8x``; GluonCV's ``_renames``)."""
    from gluoncv.model_zoo import model_store
    # pretrained_model_list() renames _model_sha1's keys in order with its local _renames
    pairs = zip(model_store._model_sha1.keys(), model_store.pretrained_model_list())
    return {name: tag for tag, name in pairs
            if name != tag and os.path.isfile(gluoncv_shape_file(tag))}


def gluoncv_shape_file(tag: str) -> str:
    """The shape file GluonCV ships for its pruned ResNet ``tag``."""
    import gluoncv
    return os.path.join(os.path.dirname(gluoncv.__file__), "model_zoo", "pruned_resnet",
                        tag + ".json")


def _gluoncv_weights(name: str, tag: str, root: str) -> str:
    """The local GluonCV weight file of ``name`` after checking its hash (never downloads)."""
    from gluoncv.model_zoo import model_store
    want = model_store._model_sha1[tag]
    fname = f"{tag}-{want[:8]}.params"
    folders = [] if has_scheme(root) else [os.path.expanduser(root)]
    if "MXNET_HOME" in os.environ:
        folders.append(os.path.join(os.environ["MXNET_HOME"], "models"))
    folders.append(os.path.expanduser(DEFAULT_ROOT))
    folders = list(dict.fromkeys(os.path.abspath(f) for f in folders))
    for folder in folders:
        path = os.path.join(folder, fname)
        if os.path.isfile(path):
            got = sha1_of(path)
            if got != want:
                raise PrunenetError(f"{name}: {path} has sha1 {got[:8]}..., not GluonCV's "
                                    f"{want[:8]}...: the file is corrupt; delete it and download "
                                    f"it again with GluonCV")
            return path
    raise PrunenetError(f"no weights for GluonCV's {name}: {fname} is not in "
                        f"{' or '.join(folders)}; download it with gluoncv.model_zoo."
                        f"get_model({name!r}, pretrained=True) or pass pretrained=False")


# -- building and loading -----------------------------------------------------------------------
def describe(name: str, root: Optional[str] = None) -> dict:
    """The manifest entry of ``name`` in the zoo at ``root`` (a folder or a URL; default
    :func:`default_root`), or a short one for GluonCV's own pruned ResNets (format, base,
    classes, input_shape, source)."""
    root = root or default_root()
    doc = read_manifest(root, must_exist=False)
    if name in doc["models"]:
        return dict(entry_of(root, name, doc), name=name)
    gluoncv = gluoncv_pruned_models()
    if name in gluoncv:
        tag = gluoncv[name]
        return {"name": name, "format": RESNET_FORMAT, "base": tag.rsplit("_", 1)[0],
                "classes": 1000, "input_shape": [1, 3, 224, 224], "source": "gluoncv",
                "tag": tag}
    known = sorted(doc["models"])
    served = is_url(root) or os.path.exists(manifest_path(root))
    where = (f"the zoo at {root} ({', '.join(known) or 'empty'})" if served
             else f"a zoo at {root} (no {MANIFEST} there)")
    raise PrunenetError(f"model {name!r} is neither in {where} nor one of GluonCV's pruned "
                        f"ResNets ({', '.join(sorted(gluoncv))}); check the name and --zoo/root")


def get_model(name: str, pretrained: bool = False, root: Optional[str] = None, ctx=None):
    """Model ``name`` from the zoo at ``root`` (or one of GluonCV's pruned ResNets), as a
    ``ResNetV1b`` of the stored widths (other networks: a ``SymbolBlock``): with the stored
    weights after checking both files' hashes when ``pretrained``, else randomly initialised.
    GluonCV style: ``root`` is a zoo folder or URL (default ``$PRUNENET_ZOO``, else
    ``~/.mxnet/models``); a URL's files are downloaded into the cache on first use."""
    root = root or default_root()
    entry = describe(name, root)
    if entry.get("source") == "gluoncv":
        shapes_path = gluoncv_shape_file(entry["tag"])
        params_path = _gluoncv_weights(name, entry["tag"], root) if pretrained else None
        return _load(RESNET_FORMAT, entry["base"], {"shapes": shapes_path, "params": params_path},
                     ctx)
    roles = ROLES[entry["format"]]
    paths = {role: _checked_file(root, name, entry, role) for role in roles
             if role != "params" or pretrained}
    return _load(entry["format"], entry["base"], paths, ctx)


def get_model_file(name: str, root: Optional[str] = None) -> str:
    """The local path of model ``name``'s weights after checking their sha1 (a zoo URL's:
    downloaded into the cache first), as GluonCV's ``model_store.get_model_file``."""
    root = root or default_root()
    entry = describe(name, root)
    if entry.get("source") == "gluoncv":
        return _gluoncv_weights(name, entry["tag"], root)
    return _checked_file(root, name, entry, "params")


def _load(fmt: str, base: str, paths: Dict[str, Optional[str]], ctx=None):
    """Build a stored network from its files (no ``params`` path: randomly initialised)."""
    from ..io.files import load_params, read_shapes
    from ..training.models import load_symbol_block
    params_path = paths.get("params")
    if fmt == SYMBOL_FORMAT:
        return load_symbol_block(paths["symbol"], params_path, ctx)
    params = load_params(params_path) if params_path else None
    return build_pruned_resnet(base, read_shapes(paths["shapes"]), params, ctx, paths["shapes"],
                               params_path or "<params>")


# -- publishing ---------------------------------------------------------------------------------
def _device_name(ctx) -> str:
    if ctx.device_type != "cpu":
        return str(ctx)
    model = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    threads = os.environ.get("OMP_NUM_THREADS", "")
    return ", ".join(filter(None, [model or "cpu", f"{os.cpu_count()} cores",
                                   threads and f"OMP_NUM_THREADS={threads}"]))


def _run_files(run_dir: str, report: dict) -> Tuple[str, Dict[str, str]]:
    """The format of a run's pruned network and its files by role."""
    from ..io.records import PARAMS_FILE, SHAPES_FILE, SYMBOL_PREFIX
    fmt = report.get("format", RESNET_FORMAT)
    if fmt == RESNET_FORMAT:
        paths = {"shapes": SHAPES_FILE, "params": PARAMS_FILE}
    elif fmt == SYMBOL_FORMAT:
        paths = {"symbol": f"{SYMBOL_PREFIX}-symbol.json", "params": f"{SYMBOL_PREFIX}-0000.params"}
    else:
        raise PrunenetError(f"run {run_dir} holds its network in format {fmt!r}, which this "
                            f"prunenet cannot publish ({', '.join(FORMATS)})")
    paths = {role: os.path.join(run_dir, fname) for role, fname in paths.items()}
    for path in paths.values():
        if not os.path.isfile(path):
            raise PrunenetError(f"run {run_dir} has no {os.path.basename(path)}; publish the "
                                f"output folder of a finished prunenet prune run")
    return fmt, paths


def publish(run_dir: str, zoo: str, name: str, overwrite: bool = False, bench: bool = True,
            batch_size: Optional[int] = None, repeats: Optional[int] = None,
            warmup: Optional[int] = None, ctx=None,
            log=print, wait: bool = False, runtime: str = "mxnet") -> dict:
    """Publish the pruned network of the ``prunenet prune`` folder ``run_dir`` as ``name`` in
    ``zoo``; return its manifest entry. Refuses an existing name unless ``overwrite``. Another
    writer holding the zoo's lock is waited for a bounded time, or (``wait``) without end.
    ``bench``: measure the throughput in ``runtime`` — ``mxnet`` (``throughput_img_s``),
    ``onnxruntime`` (``throughput_img_s_onnxruntime``, the network exported to ONNX) or
    ``both``, interleaved in one timing."""
    import mxnet as mx
    from ..version import __version__
    from ..latency.throughput import throughput
    from ..io.files import atomic_path, read_json
    from ..training.models import input_shape
    from ..io.records import REPORT_FILE

    check_name(name)
    from ..io.outputs import check_target, kind_of
    if has_scheme(zoo):
        raise PrunenetError(f"--zoo {zoo} is a URL; publish writes a folder: publish to a folder, "
                            f"then serve it as it is (python -m http.server, any web server or "
                            f"bucket) and load it by URL")
    if os.path.exists(os.path.expanduser(zoo)) and not os.path.isdir(os.path.expanduser(zoo)):
        raise PrunenetError(f"--zoo {os.path.abspath(os.path.expanduser(zoo))} is a file, not "
                            f"a zoo folder; give a folder")
    zoo = check_target(zoo, "--zoo")
    if kind_of(os.path.dirname(zoo)) == "run":
        raise PrunenetError(f"--zoo {zoo} is inside the run folder {os.path.dirname(zoo)}, "
                            f"which a later prune --overwrite of it would replace; give a zoo "
                            f"folder outside any run folder")
    run_dir = os.path.abspath(run_dir)
    ctx = ctx or mx.cpu()
    if name in gluoncv_pruned_models():
        raise PrunenetError(f"{name} is the name of one of GluonCV's own pruned ResNets; choose "
                            f"another --name")
    if name in read_manifest(zoo, must_exist=False)["models"] and not overwrite:
        raise _exists(name, zoo)  # checked again under the lock; this one fails fast
    report = read_json(os.path.join(run_dir, REPORT_FILE), "run report")
    if not isinstance(report, dict) or not report.get("model"):
        raise PrunenetError(f"{os.path.join(run_dir, REPORT_FILE)} names no model; publish the "
                            f"output folder of a finished prunenet prune run")
    target, achieved = report.get("target"), report.get("achieved")
    if report.get("objective") in ("flops", "params") and all(
            isinstance(v, (int, float)) for v in (target, achieved)) and achieved > target:
        raise PrunenetError(f"{os.path.join(run_dir, REPORT_FILE)} says the network keeps "
                            f"{achieved:.4f} of the cost, above its target {target}: a run "
                            f"never ends so, the report was edited; publish a run as prunenet "
                            f"wrote it")  # the zoo would list the model at the wrong target
    fmt, sources = _run_files(run_dir, report)
    hashes = {role: sha1_of(path) for role, path in sources.items()}
    sizes = {role: os.path.getsize(path) for role, path in sources.items()}
    net = _load(fmt, report["model"], sources, ctx)
    image_shape = tuple((report.get("input_shape") or input_shape(report["model"]))[1:])
    classes = int(net(mx.nd.zeros((1,) + image_shape, ctx=ctx)).shape[1])

    speed = {"throughput_img_s": None, "batch_size": None, "device": None, "device_name": None,
             "throughput_source": None}
    if report.get("throughput_img_s"):
        speed.update(throughput_img_s=report["throughput_img_s"],
                     batch_size=report.get("batch_size"), device=report.get("device"),
                     throughput_source="run")
    elif bench:
        from ..latency.settings import bench_settings
        batch_size, repeats, warmup = bench_settings(batch_size, repeats, warmup)
        measured = throughput({name: net}, image_shape=image_shape, batch_size=batch_size,
                              repeats=repeats, warmup=warmup, ctx=ctx, runtime=runtime)
        for m in measured.values():
            speed[throughput_field(m["runtime"])] = m["throughput_img_s"]
        speed.update(batch_size=batch_size, device=str(ctx), device_name=_device_name(ctx),
                     throughput_source="publish")

    files = {"params": f"{name}-{hashes['params'][:8]}.params"}
    if fmt == RESNET_FORMAT:
        files["shapes"] = f"{name}-{hashes['shapes'][:8]}.json"
    else:
        files["symbol"] = f"{name}-symbol-{hashes['symbol'][:8]}.json"
    entry = {
        "format": fmt, "base": report["model"], "family": _family(report["model"]),
        "method": report.get("method"),
        "objective": report.get("objective"), "target": report.get("target"),
        "achieved": report.get("achieved"), "macs": report.get("macs_after"),
        "params": report.get("params_after"), "macs_base": report.get("macs_before"),
        "params_base": report.get("params_before"),
        "classes": classes,
        "input_shape": [1, *image_shape], "dataset": report.get("dataset"),
        "top1": report.get("top1_after"), "top5": report.get("top5_after"), **speed,
        "command": report.get("command"), "files": files, "sha1": hashes, "sizes": sizes,
        "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "prunenet": __version__,  # no local path: the zoo is served to other machines
    }
    # the run's own speed check: measured speed-up, its noise, device, batch size, threads
    entry["speed_check"] = report.get("speed_check")

    added: List[str] = []
    committed = False
    try:
        with edit_manifest(zoo, wait) as doc:
            old = doc["models"].get(name)
            if old is not None and not overwrite:
                raise _exists(name, zoo)
            for role, src in sources.items():
                dst = os.path.join(zoo, files[role])
                existed = os.path.exists(dst)
                if existed and sha1_of(dst) == hashes[role]:
                    continue  # the same bytes are there already
                with atomic_path(dst) as tmp:  # new, or repairs a corrupt copy of these bytes
                    shutil.copyfile(src, tmp)
                    if sha1_of(tmp) != hashes[role]:
                        raise PrunenetError(f"{src} changed while it was published; "
                                            f"publish again")
                if not existed:
                    added.append(dst)
            doc["models"][name] = entry
        committed = True
    finally:
        if not committed:  # the manifest is unchanged: take back what was added
            for path in added:
                with contextlib.suppress(OSError):
                    os.remove(path)
    if old is not None:
        _remove_unreferenced(zoo, old, wait)
    figure = (f", {entry['throughput_img_s']:.0f} img/s at batch {entry['batch_size']}"
              if entry["throughput_img_s"] else "")
    if log:
        log(f"published {name} ({entry['base']}, {_count(entry['macs'])} MACs, "
            f"{_count(entry['params'])} params{figure}) to {zoo}: {files['params']}")
    return entry


def _family(base: str) -> Optional[str]:
    """GluonCV's class of the base network (``ResNetV1b``, ``MobileNetV2``, ...)."""
    from ..training.models import build_model
    try:
        return type(build_model(base)).__name__
    except Exception:  # a base GluonCV cannot build here: the entry still loads by its files
        return None


def _exists(name: str, zoo: str) -> PrunenetError:
    return PrunenetError(f"model {name} is already in the zoo at {zoo}; choose another --name or "
                         f"pass --overwrite to replace it")


def _remove_unreferenced(zoo: str, old: dict, wait: bool = False) -> None:
    """Delete the replaced entry's files that no entry of the manifest lists any more."""
    with _locked(zoo, wait):
        listed = {f for e in read_manifest(zoo)["models"].values()
                  if isinstance(e, dict) and isinstance(e.get("files"), dict)
                  for f in e["files"].values()}
        for fname in old.get("files", {}).values():
            if fname not in listed:
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(zoo, fname))


# -- verifying and listing ----------------------------------------------------------------------
@dataclass
class Verification:
    """What ``verify`` found: models that passed, problems (one line each), notes."""

    ok: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def verify(zoo: str, ctx=None) -> Verification:
    """Check every model of the zoo: its files exist, their SHA-1s match the manifest and the
    file names, the shape file fits the base network and the weights fit the shape file (or
    the weights fit the symbol). A zoo URL's files are downloaded (into the cache) to check."""
    doc = read_manifest(zoo)
    result = Verification()
    listed = {MANIFEST}
    for name in sorted(doc["models"]):
        try:
            entry = entry_of(zoo, name, doc)
            listed.update(entry["files"].values())
            paths = {}
            for role in ROLES[entry["format"]]:
                try:
                    paths[role] = _checked_file(zoo, name, entry, role)
                except PrunenetError as err:
                    result.problems.append(str(err))
            if len(paths) < len(ROLES[entry["format"]]):
                continue
            _load(entry["format"], entry["base"], paths, ctx)
            result.ok.append(name)
        except PrunenetError as err:
            text, label = str(err), name if _NAME.fullmatch(name) else repr(name)
            result.problems.append(text if text.startswith(f"model {name}:") else
                                   f"model {label}: {text}")
    folder = os.path.expanduser(zoo)
    for fname in [] if is_url(zoo) else sorted(os.listdir(folder)):
        if fname.startswith(".") and fname.endswith(".tmp"):  # served with the zoo too
            result.notes.append(f"{os.path.join(folder, fname)} is a temporary file of a "
                                f"write that was killed; delete it unless a publish is running")
        elif fname not in listed and not fname.startswith("."):
            result.notes.append(f"{os.path.join(folder, fname)} is not listed in {MANIFEST} "
                                f"(left by an interrupted publish or another tool)")
    return result


def _count(value) -> str:
    if value is None:
        return "-"
    return f"{value / 1e9:.2f}G" if value >= 1e9 else f"{value / 1e6:.1f}M"


def format_table(models: Dict[str, dict]) -> str:
    """The zoo's models as a text table, one line each, sorted by name; the input shape and
    device say what each throughput was measured at; where any model has an ONNX Runtime
    throughput recorded (``throughput_img_s_onnxruntime``), an ``ORT_img/s`` column beside
    MXNet's."""
    header = ("name", "base", "objective", "target", "MACs", "params", "dataset", "top-1",
              "top-5", "input", "img/s", "batch", "device")
    rows = [header]
    for name in sorted(models):
        e = models[name]
        pct = (lambda v: "-" if v is None else f"{100 * v:.2f}%")
        shape = e.get("input_shape")
        rows.append((name, str(e.get("base", "-")), str(e.get("objective") or "-"),
                     "-" if e.get("target") is None else f"{e['target']:g}",
                     _count(e.get("macs")), _count(e.get("params")),
                     _cell(e.get("dataset")), pct(e.get("top1")), pct(e.get("top5")),
                     "x".join(map(str, shape[1:])) if shape else "-",
                     "-" if not e.get("throughput_img_s") else f"{e['throughput_img_s']:.0f}",
                     str(e.get("batch_size") or "-"), _cell(e.get("device"))))
    ort = THROUGHPUT_FIELDS["onnxruntime"]
    if any(e.get(ort) for e in models.values()):
        at = header.index("img/s") + 1
        cells = ["ORT_img/s"] + [f"{models[n][ort]:.0f}" if models[n].get(ort) else "-"
                                 for n in sorted(models)]
        rows = [r[:at] + (c,) + r[at:] for r, c in zip(rows, cells)]
        header = rows[0]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _cell(value) -> str:
    """A text cell of the table: no spaces (columns stay split by blanks), ``-`` when empty."""
    return "_".join(str(value).split()) if value else "-"
