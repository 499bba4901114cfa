"""Output paths: which ones a command may write or replace, and the lock that makes it the only
writer.

One rule for every command that writes (``prune``, ``experiment``, ``zoo``, ``plot``,
``export``): an empty path, ``.``, the home folder, the root, or a folder holding the working
directory is refused; an existing file is never taken for a folder (nor a folder for a file);
``--overwrite`` replaces only a folder prunenet wrote (it holds :data:`MARKER`, or a
``report.json``/``run.json`` of a run); and the writer holds an exclusive ``flock`` on
``.NAME.lock`` beside the target for as long as it writes, so a second writer stops at once with
a message naming the first.
"""
from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import shutil
import sys
import threading
from typing import Dict, Iterator, Optional, Sequence

from .errors import PrunenetError

__all__ = ["MARKER", "check_target", "is_ours", "check_replace", "exclusive", "hold_lock",
           "mark", "remove_leftovers", "LockedError", "write_error"]

MARKER = ".prunenet"  # in every folder prunenet makes: it may be replaced by --overwrite
_RUN_FILES = ("report.json", "run.json")
_held: Dict[tuple, list] = {}  # (lock file, thread) -> [open file, depth]: a thread may nest its locks


class LockedError(PrunenetError):
    """Another process is writing the same output."""


def _forbidden(path: str) -> Optional[str]:
    """Why ``path`` (absolute) must never be a run's output, or None."""
    home = os.path.realpath(os.path.expanduser("~"))
    real, cwd = os.path.realpath(path), os.path.realpath(os.getcwd())
    if real == os.path.sep:
        return "is the root folder"
    if real == home:
        return "is your home folder"
    if real == cwd:
        return "is the working directory"
    if cwd.startswith(real.rstrip(os.path.sep) + os.path.sep):
        return "holds the working directory"
    if home.startswith(real.rstrip(os.path.sep) + os.path.sep):
        return "holds your home folder"
    return None


def check_target(path: Optional[str], flag: str = "--out", kind: str = "folder") -> str:
    """``path`` made absolute, if a command may write a ``kind`` (``folder`` or ``file``)
    there; else a :class:`PrunenetError` saying why and what to give instead."""
    if path is None or not str(path).strip():
        raise PrunenetError(f"{flag} is empty; give the {kind} to write, e.g. {flag} runs/r1"
                            if kind == "folder" else
                            f"{flag} is empty; give the file to write, e.g. {flag} plot.png")
    full = os.path.abspath(os.path.expanduser(str(path)))
    why = _forbidden(full)
    if why:
        raise PrunenetError(f"{flag} {path} {why}; give a new folder for the output, e.g. "
                            f"{flag} runs/r1" if kind == "folder" else
                            f"{flag} {path} {why}; give a file name")
    if kind == "folder" and os.path.lexists(full) and not os.path.isdir(full):
        raise PrunenetError(f"{flag} {path} is a file, not a folder; give a folder (prunenet "
                            f"never replaces a file with its output)")
    if kind == "file" and os.path.isdir(full):
        raise PrunenetError(f"{flag} {path} is a folder; give a file name")
    parent = os.path.dirname(full)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise PrunenetError(f"{flag} {path}: {parent} is a file, so nothing can be written "
                            f"under it; give another {flag}")
    return full


def is_ours(folder: str) -> bool:
    """True when ``folder`` was written by prunenet: it holds :data:`MARKER`, or a run's
    ``report.json``/``run.json`` (a JSON object naming a model)."""
    if os.path.isfile(os.path.join(folder, MARKER)):
        return True
    for name in _RUN_FILES:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "model" in doc:
            return True
    return False


def check_replace(path: str, overwrite: bool, flag: str = "--out", hint: str = "") -> None:
    """Refuse to go on when the folder ``path`` exists and may not be replaced: without
    ``overwrite``, or when prunenet did not write it (an empty folder may be used)."""
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise PrunenetError(f"{flag} {path} is a file, not a folder; prunenet never replaces a "
                            f"file with its output: give another {flag}")
    if not overwrite:
        raise PrunenetError(f"output folder {path} already exists; choose another {flag} or "
                            f"pass --overwrite{hint}")
    if os.listdir(path) and not is_ours(path):
        raise PrunenetError(f"{flag} {path} holds files prunenet did not write (no report.json, "
                            f"run.json or {MARKER}); --overwrite replaces only prunenet's own "
                            f"output folders: give another {flag}")


def mark(folder: str) -> None:
    """Mark ``folder`` as prunenet's (see :func:`is_ours`)."""
    with open(os.path.join(folder, MARKER), "w") as f:
        f.write("written by prunenet; --overwrite may replace this folder\n")


def _lock_path(target: str) -> str:
    target = os.path.abspath(target)
    return os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".lock")


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read().strip()
    except OSError:
        text = ""
    return text or "another process"


@contextlib.contextmanager
def hold_lock(path: str, what: str, wait: bool = False, remove: bool = True,
              record: bool = True) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` for the body. Another holder makes this
    wait (``wait``) or raise :class:`LockedError` naming it (its pid and command line, written
    into the lock file unless ``record`` is off: an empty lock file, e.g. in a folder others
    are served). ``remove``: delete the lock file on release."""
    import fcntl
    path = os.path.abspath(path)
    key = (path, threading.get_ident())
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    while True:
        try:
            f = open(path, "a+")
        except OSError as err:
            raise write_error(err, path, what) from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.close()
            raise LockedError(f"{what} is being written by {_holder(path)} (lock {path}); wait "
                              f"for it to finish or choose another output") from None
        try:  # the file may have been removed by its last holder while we waited for it
            same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()
    f.seek(0)
    f.truncate()
    if record:
        f.write(f"pid {os.getpid()} ({' '.join(['prunenet'] + sys.argv[1:])})"[:500] + "\n")
    f.flush()
    _held[key] = [f, 0]
    try:
        yield
    finally:
        del _held[key]
        if remove:
            with contextlib.suppress(OSError):
                os.remove(path)
        f.close()  # releases the lock


@contextlib.contextmanager
def exclusive(target: str, flag: str = "--out") -> Iterator[str]:
    """Be the only prunenet process writing ``target`` for the body (a lock file beside it);
    yields ``target`` made absolute."""
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise write_error(err, parent, f"{flag} {target}") from None
    with hold_lock(_lock_path(target), f"{flag} {target}"):
        yield target


def remove_leftovers(folder: str, name: Optional[str] = None,
                     patterns: Sequence[str] = (".*.tmp",)) -> None:
    """Delete the temporary files a killed writer left in ``folder``: those matching
    ``patterns``, or (``name``) the staging folders ``.NAME.*.partial`` of a replaced folder.
    Call it holding the output's lock."""
    if name:
        patterns = [f".{name}.*.partial", f".{name}.*.partial.old"]
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if any(fnmatch.fnmatch(entry, p) for p in patterns):
            path = os.path.join(folder, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)


_ADVICE = {
    errno.ENOSPC: "free some space or choose another place",
    errno.EDQUOT: "free some space or choose another place",
    errno.EFBIG: "the file is larger than this system allows here; choose another place",
    errno.EROFS: "it is on a read-only file system; choose a writable place",
    errno.EACCES: "you may not write there; choose a writable place or fix its permissions",
    errno.EPERM: "you may not write there; choose a writable place or fix its permissions",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter one",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder; give a file name",
}


def write_error(err: OSError, path: Optional[str] = None, what: str = "",
                writing: bool = True) -> PrunenetError:
    """An ``OSError`` met while writing (or, ``writing=False``, while reading or writing), as
    one line naming the path and what to do."""
    path = path or err.filename or ""
    reason = err.strerror or str(err)
    advice = _ADVICE.get(err.errno, "check the path and try again")
    where = f"{what}: " if what and path not in what else ""
    if not writing:
        return PrunenetError(f"{where}{path}: {reason}; {advice}" if path else
                             f"{where}{reason} ({type(err).__name__}, e.g. at the standard "
                             f"output); {advice}")
    return PrunenetError(f"{where}cannot write {path} ({reason}): {advice}; what was written "
                         f"before is kept")
