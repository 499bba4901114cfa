"""Files: atomic writes, and GluonCV's pruned-ResNet pair (shape JSON + ``mx.nd.save`` params).

Every file is written under a temporary name in its target folder and renamed into place, so a
reader never sees a half-written file under its final name.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from typing import Dict, Iterator, List, Sequence

import numpy as np

from ..errors import PrunenetError

MAX_ARRAY_SIZE = 2 ** 31 - 1  # elements of one array in MXNet built without large-tensor support


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = ["atomic_path", "write_json", "read_json", "save_params", "load_params", "sha1_of",
           "read_shapes", "require_file", "staged_dir", "save_symbol"]


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no room: the write failed, not a read


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.
    A full disk (or a file size limit) met on the way is one line naming ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        try:
            yield tmp
            from ..failpoints import failpoint
            failpoint("write")  # a kill here leaves the temporary file behind
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as err:
            if err.errno not in _FULL:
                raise
            from .outputs import write_error  # name the file written, not the one read from
            raise write_error(err, path) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")


def read_json(path: str, what: str = "JSON file") -> object:
    """Read a JSON file, with an error that names the file when it is missing or malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise PrunenetError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise PrunenetError(f"{what} {path} is a folder; give the file") from None
    except OSError as err:
        raise PrunenetError(f"{what} {path} cannot be read ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PrunenetError(f"{what} {path} is not valid JSON ({err})") from None


def read_shapes(path: str) -> Dict[str, List[int]]:
    """Read a GluonCV pruned-ResNet shape file: parameter name -> list of positive ints."""
    doc = read_json(path, "shape file")
    if not isinstance(doc, dict) or not doc:
        raise PrunenetError(f"shape file {path} must be a JSON object mapping parameter names "
                            f"to shapes")
    for key, shape in doc.items():
        if not (isinstance(shape, list) and shape and
                all(isinstance(v, int) and not isinstance(v, bool) for v in shape)):
            raise PrunenetError(f"shape file {path}: {key} must map to a list of integers, "
                                f"not {json.dumps(shape)[:60]}")
        if min(shape) < 1:
            raise PrunenetError(f"shape file {path}: {key} has shape {json.dumps(shape)[:60]}; "
                                f"every size must be at least 1")
        if int(np.prod(shape, dtype=object)) > MAX_ARRAY_SIZE:
            raise PrunenetError(f"shape file {path}: {key} has shape {json.dumps(shape)[:60]}, "
                                f"more than the {MAX_ARRAY_SIZE} elements an MXNet array holds")
    return doc


def require_file(path: str, what: str) -> str:
    """``path`` if it is a file, else an error saying it is missing, a folder, or not a
    regular file (a device or a pipe)."""
    if os.path.isdir(path):
        raise PrunenetError(f"{what} {path} is a folder; give the file")
    if os.path.exists(path) and not os.path.isfile(path):
        raise PrunenetError(f"{what} {path} is not a regular file (a device or a pipe); give "
                            f"the file itself")
    if not os.path.isfile(path):
        raise PrunenetError(f"{what} {path} does not exist")
    return path


def save_params(path: str, params: Dict[str, np.ndarray]) -> None:
    """Write ``params`` with ``mx.nd.save`` (the format GluonCV's pruned ResNets load), atomically."""
    import mxnet as mx
    with atomic_path(path) as tmp:
        try:
            mx.nd.save(tmp, {k: mx.nd.array(v, dtype=v.dtype) for k, v in params.items()})
        except mx.base.MXNetError as err:  # dmlc's stream: a short write (disk full, too large)
            raise _mxnet_write_error(err, path) from None


def _mxnet_write_error(err, path: str) -> PrunenetError:
    """MXNet's failed write of ``path`` as one line (MXNet says only "Write incomplete")."""
    import errno
    reason = str(err).strip().splitlines()[-1][:120] if str(err).strip() else "write failed"
    from .outputs import write_error
    return write_error(OSError(errno.ENOSPC, f"MXNet: {reason}; the disk may be full"), path)


def save_symbol(path: str, symbol, shapes: Dict[str, tuple]) -> None:
    """Write an MXNet symbol's JSON, atomically, its variables' ``__shape__`` set to ``shapes``
    (the variables not in it lose theirs), so that shapes inferred from the data shape alone
    agree with the parameters saved beside it."""
    doc = json.loads(symbol.tojson())
    for node in doc["nodes"]:
        if node["op"] != "null":
            continue
        attrs = node.get("attrs", {})
        if node["name"] in shapes:
            attrs["__shape__"] = str(tuple(int(v) for v in shapes[node["name"]]))
        else:
            attrs.pop("__shape__", None)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2)


def load_params(path: str) -> Dict[str, np.ndarray]:
    """Read an ``mx.nd.save`` dict file into NumPy arrays."""
    import mxnet as mx
    require_file(path, "params file")
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError:
        raise PrunenetError(f"params file {path} is not an MXNet params file (corrupt or "
                            f"truncated?)") from None
    if not isinstance(loaded, dict):
        raise PrunenetError(f"params file {path} holds an unnamed list, not named parameters")
    return {k: v.asnumpy() for k, v in loaded.items()}


@contextlib.contextmanager
def staged_dir(out: str, overwrite: bool = False, flag: str = "--out", kind: str = "run",
               own: Sequence[str] = ()) -> Iterator[str]:
    """Yield a fresh staging folder beside ``out``; on success it is marked as prunenet's own
    ``kind`` folder and becomes ``out``.

    The rule of :mod:`prunenet.io.outputs` applies: ``out`` must not exist unless ``overwrite``,
    and then only a folder of prunenet's ``kind`` holding nothing but the entries ``own`` is
    replaced; its lock is held throughout, and checked again at the replacement. On failure
    nothing under ``out`` changes.
    """
    from .outputs import check_replace, check_target, exclusive, mark, remove_leftovers
    out = check_target(out, flag)
    check_replace(out, overwrite, flag, kind=kind, own=own)
    with exclusive(out, flag):
        parent = os.path.dirname(out)
        remove_leftovers(parent, os.path.basename(out))
        stage = tempfile.mkdtemp(prefix="." + os.path.basename(out) + ".", suffix=".partial",
                                 dir=parent)
        os.chmod(stage, 0o777 & ~_umask())
        try:
            yield stage
            mark(stage, kind)
            # again: a folder that appeared meanwhile, or a file put in it, is kept
            check_replace(out, overwrite, flag, kind=kind, own=own)
            _replace_dir(stage, out)
        finally:
            if os.path.exists(stage):
                shutil.rmtree(stage, ignore_errors=True)


def _replace_dir(stage: str, out: str) -> None:
    """Rename ``stage`` to ``out``, the old ``out`` removed only once the new one is in place
    (and with it the old folder an interrupted ``--overwrite`` of a trained run set aside)."""
    from .outputs import set_aside
    if os.path.exists(out):
        old = stage + ".old"
        os.replace(out, old)
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, out)
    shutil.rmtree(set_aside(out), ignore_errors=True)


def sha1_of(path: str) -> str:
    """The SHA-1 of a file's bytes, in hex."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
