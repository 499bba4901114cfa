"""Output paths: which ones a command may write or replace, and the lock that makes it the only
writer.

One rule for every command that writes (``prune``, ``experiment``, ``zoo``, ``plot``,
``export``): an empty path, ``.``, the home folder, the root, or a folder holding the working
directory is refused; an existing file is never taken for a folder (nor a folder for a file);
``--overwrite`` replaces only a folder that carries prunenet's mark :data:`MARKER` of the same
kind (a run folder of an older version without one: a run's ``report.json``/``run.json``) and
holds nothing but that kind's own files, so a user's file or a zoo inside is refused by name;
and the writer holds an exclusive lock (``portalocker``'s) on ``.NAME.lock`` beside the target
for as long as it writes, so a second writer stops at once with a message naming the first (a
zoo's writers wait their turn, for a bounded time, naming the one they wait for).
"""
from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import shutil
import sys
import tempfile
import threading
from typing import Dict, Iterator, Optional, Sequence

from ..errors import PrunenetError

__all__ = ["MARKER", "check_target", "read_mark", "kind_of", "foreign", "check_replace",
           "exclusive", "hold_lock", "lock_path", "lock_wait", "env_seconds", "mark", "set_aside",
           "remove_leftovers", "LockedError", "write_error"]

MARKER = ".prunenet"  # in every folder prunenet makes, naming its kind and what wrote it
_RUN_FILES = ("report.json", "run.json")
LOCK_WAIT = 120.0  # seconds a writer waits for another's lock, saying so, before it gives up
LOCK_WAIT_ENV = "PRUNENET_LOCK_WAIT"  # another number of seconds
_held: Dict[tuple, list] = {}  # (lock file, thread) -> [portalocker lock, depth]: a thread nests


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


def read_mark(folder: str) -> Optional[dict]:
    """What the :data:`MARKER` of ``folder`` says (``{"kind": ..., "written_by": ...}``; the
    text marker of older versions reads as ``{"kind": None}``), or None without one."""
    try:
        with open(os.path.join(folder, MARKER), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        doc = {"kind": None}  # written by prunenet before its marks named their kind
    return doc


def _legacy_run(folder: str) -> bool:
    """A run folder of a version that marked none: its ``report.json`` or ``run.json`` is a
    JSON object naming both a model and a method (as every run's does)."""
    for name in _RUN_FILES:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "model" in doc and "method" in doc:
            return True
    return False


def kind_of(folder: str) -> Optional[str]:
    """The kind of prunenet folder ``folder`` is (``run``, ``zoo``, ...) by its mark (``run``
    for a run folder of a version that marked none); ``""`` when its mark names no kind, None
    when it is not prunenet's."""
    doc = read_mark(folder)
    if doc is not None:
        return doc.get("kind") or ""
    return "run" if _legacy_run(folder) else None


def _temporary(entry: str) -> bool:
    """A temporary file a killed writer of prunenet's leaves (:func:`remove_leftovers`)."""
    return fnmatch.fnmatch(entry, ".*.tmp")


def foreign(folder: str, kind: str, own: Sequence[str]) -> Optional[str]:
    """Why ``folder`` is not wholly prunenet's own ``kind`` folder (``None`` when it is, or is
    empty): it must carry :data:`MARKER` naming ``kind`` (or no kind, as older versions wrote
    it) — or, for a run folder of a version that marked none, a run's ``report.json`` or
    ``run.json`` — and hold nothing but the entries ``own`` and temporary files."""
    entries = sorted(os.listdir(folder))
    if not entries:
        return None
    doc = read_mark(folder)
    if doc is None and not (kind == "run" and _legacy_run(folder)):
        return f"carries no {MARKER} mark (prunenet did not write it)"
    if doc is not None and doc.get("kind") not in (None, kind):
        return (f"is a prunenet {doc.get('kind')} folder, not a {kind} folder (prunenet did not "
                f"write it as one)")
    for entry in entries:
        if entry != MARKER and entry not in own and not _temporary(entry):
            path = os.path.join(folder, entry)
            what = ("a zoo " if os.path.isfile(os.path.join(path, "zoo.json")) else "") + \
                (entry + "/" if os.path.isdir(path) else entry)
            return f"holds {what}, which prunenet did not write as part of a {kind} folder"
    return None


def check_replace(path: str, overwrite: bool, flag: str = "--out", hint: str = "",
                  kind: str = "run", own: Sequence[str] = ()) -> None:
    """Refuse to go on when the folder ``path`` exists and may not be replaced: without
    ``overwrite``, or when it is not wholly prunenet's own ``kind`` folder holding only the
    entries ``own`` (:func:`foreign`; an empty folder may be used)."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path):
        target = "a folder" if os.path.isdir(path) else "a file"
        raise PrunenetError(f"{flag} {path} is a symbolic link (to {target}); prunenet never "
                            f"replaces a link with its output: give the folder it points to, "
                            f"or another {flag}")
    if not os.path.isdir(path):
        raise PrunenetError(f"{flag} {path} is a file, not a folder; prunenet never replaces a "
                            f"file with its output: give another {flag}")
    if not overwrite:
        raise PrunenetError(f"output folder {path} already exists; choose another {flag} or "
                            f"pass --overwrite{hint}")
    why = foreign(path, kind, own)
    if why:
        raise PrunenetError(f"{flag} {path} {why}; --overwrite replaces only a folder holding "
                            f"nothing but prunenet's own output: move that out of it, or give "
                            f"another {flag}")


def mark(folder: str, kind: str) -> None:
    """Mark ``folder`` as prunenet's own ``kind`` folder (``run``, ``experiment``, ``zoo``, ...;
    see :func:`foreign`), naming what wrote it."""
    from ..version import __version__
    doc = {"written_by": f"prunenet {__version__}", "kind": kind,
           "command": " ".join(["prunenet"] + sys.argv[1:])[:500],
           "note": "--overwrite may replace this folder while it holds only prunenet's files"}
    fd, tmp = tempfile.mkstemp(prefix=MARKER + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, os.path.join(folder, MARKER))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def set_aside(out: str) -> str:
    """Where the old ``out`` waits while an ``--overwrite`` builds its replacement in place:
    ``.NAME.replaced`` beside it (restored if the new one fails, deleted once it is whole)."""
    out = os.path.abspath(out)
    return os.path.join(os.path.dirname(out), "." + os.path.basename(out) + ".replaced")


def lock_path(target: str) -> str:
    """The lock file of ``target``: ``.NAME.lock`` beside it."""
    target = os.path.realpath(target)  # two names of one output (a symbolic link) share a lock
    return os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".lock")


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read().strip()
    except OSError:
        text = ""
    return text or "another process"


def env_seconds(name: str, default: float, what: str) -> float:
    """The number of seconds the environment variable ``name`` sets (``default`` unset), or a
    one-line error saying it should be ``what``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise PrunenetError(f"{name}={text} is not a positive number of seconds; set it to "
                            f"{what}, e.g. {default:g}")
    return seconds


def lock_wait() -> float:
    """How long a writer waits for another's lock: ``$PRUNENET_LOCK_WAIT`` seconds, else
    :data:`LOCK_WAIT`."""
    return env_seconds(LOCK_WAIT_ENV, LOCK_WAIT, "how long to wait for another writer's lock")


def _take(lock, path: str, what: str, wait):
    """Take ``lock`` (a ``portalocker`` lock on the file ``path``) at once; or, held by another,
    :class:`LockedError` naming it — or (``wait``) after saying once, on standard error, who
    holds it and for how long this waits, take it when it is let go within that time."""
    import portalocker
    try:
        return lock.acquire(timeout=0, fail_when_locked=True)
    except portalocker.AlreadyLocked:
        holder = _holder(path)
    if not wait:
        raise LockedError(f"{what} is being written by {holder} (lock {path}); wait for it to "
                          f"finish or choose another output")
    limit = lock_wait() if wait is True else float(wait)
    until = f"giving up after {limit:g} s" if limit != float("inf") else "until it is released"
    print(f"prunenet: waiting for {what}, held by {holder} (lock {path}); {until}",
          file=sys.stderr, flush=True)
    try:
        return lock.acquire(timeout=limit, check_interval=0.2, fail_when_locked=False)
    except portalocker.AlreadyLocked:
        raise LockedError(f"{what} is still held by {_holder(path)} after {limit:g} s (lock "
                          f"{path}); if that process is stopped (Ctrl-Z) or hung, end it; or "
                          f"wait longer (--wait, or {LOCK_WAIT_ENV}=SECONDS)") from None


@contextlib.contextmanager
def hold_lock(path: str, what: str, wait=False, remove: bool = True,
              clear: bool = False) -> Iterator[None]:
    """Hold an exclusive lock (``portalocker``: ``flock`` here) on the file ``path`` for the
    body. Another holder makes this raise :class:`LockedError` naming it (its pid and command
    line, written into the lock file) at once, or (``wait``) after saying who holds it and
    waiting for it to let go: ``True`` up to :func:`lock_wait` seconds, a number that many
    seconds (``math.inf``: without end). ``remove``: delete the lock file on release (a
    ``TemporaryFileLock``, which also retakes a file its last holder removed while this
    waited); ``clear``: empty it on release (a lock file kept in a folder others are served
    holds no pid or command line once released). One thread may nest its holds of one file."""
    import portalocker
    path = os.path.abspath(path)
    key = (path, threading.get_ident())
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    lock = portalocker.TemporaryFileLock(path) if remove else portalocker.Lock(path, "a")
    try:
        f = _take(lock, path, what, wait)
    except OSError as err:
        raise write_error(err, path, what) from None
    except portalocker.LockException as err:  # no holder: the lock itself failed
        cause = err.__cause__ if isinstance(err.__cause__, OSError) else OSError(str(err))
        raise write_error(cause, path, what) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} ({' '.join(['prunenet'] + sys.argv[1:])})"[:500] + "\n")
    f.flush()
    _held[key] = [lock, 0]
    try:
        yield
    finally:
        del _held[key]
        if clear and not remove:
            with contextlib.suppress(OSError):
                f.seek(0)
                f.truncate()
                f.flush()
        lock.release()  # a TemporaryFileLock removes its file before it lets go


@contextlib.contextmanager
def exclusive(target: str, flag: str = "--out") -> Iterator[str]:
    """Be the only prunenet process writing ``target`` for the body (a lock file beside it);
    yields ``target`` made absolute. The folders made to hold it are removed again when the
    body fails and they are empty."""
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    made, folder = [], parent  # the folders made for it, deepest first
    while not os.path.lexists(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    try:
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as err:
            raise write_error(err, parent, f"{flag} {target}") from None
        with hold_lock(lock_path(target), f"{flag} {target}"):
            yield target
    except BaseException:
        for folder in made:  # a failure leaves no empty folder behind (those still empty)
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


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
    errno.ENOLCK: "its file system cannot lock files; choose a place on a local disk",
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
