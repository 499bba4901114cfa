"""Downloads over HTTP(S) with the standard library's ``urllib``.

A file is downloaded under a temporary name beside its target, checked (length, size, SHA-1,
and whatever the caller checks), and only then renamed: a file under its final name is whole.
Every failure is one :class:`PrunenetError` line naming the URL. A download has a deadline as
a whole (:data:`DEADLINE`, ``$PRUNENET_DOWNLOAD_DEADLINE``), besides the limit on each silence
(:data:`TIMEOUT`): a server that trickles bytes is given up on, not waited on for hours.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
from typing import Callable, Optional

from ..errors import PrunenetError

__all__ = ["is_url", "has_scheme", "fetch", "Unreachable", "TIMEOUT", "DEADLINE"]

TIMEOUT = 60.0  # seconds the server may stay silent (connecting, or between two reads)
DEADLINE = 1800.0  # seconds one whole download may take
DEADLINE_ENV = "PRUNENET_DOWNLOAD_DEADLINE"  # another number of seconds
_CHUNK = 1 << 20
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class Unreachable(PrunenetError):
    """The server could not be reached at all (nothing was downloaded); ``reason`` says why."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


def is_url(text) -> bool:
    """True for an ``http://`` or ``https://`` address."""
    return isinstance(text, str) and text.lower().startswith(("http://", "https://"))


def has_scheme(text) -> bool:
    """True for anything written as ``scheme://...`` (a URL, whether or not we can fetch it)."""
    return isinstance(text, str) and bool(_SCHEME.match(text))


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None) or err
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"no answer within {TIMEOUT:g} s"
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return " ".join(str(text).split())[:200]


def deadline() -> float:
    """Seconds one whole download may take: ``$PRUNENET_DOWNLOAD_DEADLINE``, else
    :data:`DEADLINE`."""
    from .outputs import env_seconds
    return env_seconds(DEADLINE_ENV, DEADLINE, "how long one download may take")


def _read_by(response, until: float, timeout: float) -> bytes:
    """The next bytes ``response`` has (what one read gets, not a whole chunk), waiting at most
    until the monotonic time ``until`` (and ``timeout`` for one read)."""
    left = until - time.monotonic()
    if left <= 0:
        raise _Late()
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(min(timeout, left))
    try:
        return response.read1(_CHUNK)
    except (socket.timeout, TimeoutError):
        if time.monotonic() >= until:
            raise _Late() from None
        raise


class _Late(Exception):
    """The whole download's deadline passed."""


def _open(url: str, what: str, timeout: float, hint_404: str):
    from ..version import __version__
    request = urllib.request.Request(url, headers={"User-Agent": f"prunenet/{__version__}"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        hint = (hint_404 if err.code in (403, 404, 410) else
                "it redirects in a loop or nowhere, which waiting does not mend: check the URL "
                "or tell the server's owner" if 300 <= err.code < 400 else "try again later")
        raise PrunenetError(f"cannot download {what} {url}: the server answered HTTP {err.code} "
                            f"{' '.join(str(err.reason).split())}; {hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
        reason = _reason(err)
        raise Unreachable(f"cannot download {what} {url}: the server is unreachable "
                          f"({reason}); check the URL and your network", reason) from None


def fetch(url: str, path: str, sha1: Optional[str] = None, size: Optional[int] = None,
          what: str = "file", check: Optional[Callable[[str], None]] = None,
          hint_404: str = "the server does not have this file", timeout: Optional[float] = None,
          log: Optional[Callable[[str], None]] = None) -> str:
    """Download ``url`` to ``path`` atomically and return ``path``; refuse (keeping nothing) a
    download cut short, of another ``size``, of another ``sha1``, or that ``check(tmp)`` raises
    on. An existing ``path`` is replaced only by a download that passed."""
    from .files import atomic_path
    timeout = TIMEOUT if timeout is None else timeout
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise PrunenetError(f"cannot download into {folder}: {err.strerror or err}; give a "
                            f"folder you can write (for a zoo: set PRUNENET_CACHE)") from None
    if log:
        log(f"downloading {url} to {path}")
    limit = deadline()
    until = time.monotonic() + limit
    with atomic_path(path) as tmp:
        digest, got, expected = hashlib.sha1(), 0, None
        with _open(url, what, timeout, hint_404) as response, open(tmp, "wb") as f:
            length = response.headers.get("Content-Length", "")
            expected = int(length) if length.strip().isdigit() else None
            try:
                for chunk in iter(lambda: _read_by(response, until, timeout), b""):
                    f.write(chunk)
                    digest.update(chunk)
                    got += len(chunk)
            except _Late:
                raise PrunenetError(_cut_short(
                    what, url, got, expected or size,
                    f"not done within the {limit:g} s a download may take",
                    f"try again later, or allow longer with {DEADLINE_ENV}=SECONDS")) from None
            except (OSError, http.client.HTTPException) as err:
                raise PrunenetError(_cut_short(what, url, got, expected or size,
                                               _reason(err))) from None
        if expected is not None and got != expected:
            raise PrunenetError(_cut_short(what, url, got, expected, "the connection closed"))
        if size is not None and got != size:
            raise PrunenetError(f"downloaded {what} {url} is {got} bytes, not the {size} the "
                                f"manifest records: the file on the server is incomplete or was "
                                f"changed; it was discarded: upload the published zoo again")
        if sha1 is not None and digest.hexdigest() != sha1.lower():
            raise PrunenetError(f"downloaded {what} {url} has sha1 {digest.hexdigest()[:8]}..., "
                                f"not the {sha1.lower()[:8]}... the manifest records: the file "
                                f"on the server is corrupt or was changed; it was discarded "
                                f"(files cached before are kept): upload the published zoo "
                                f"again")
        if check is not None:
            check(tmp)
    return path


def _cut_short(what: str, url: str, got: int, total: Optional[int], reason: str,
               advice: str = "try again") -> str:
    of = f" of {total}" if total is not None else ""
    return (f"download of {what} {url} was cut short after {got}{of} bytes ({reason}); "
            f"nothing was kept: {advice}")
