"""The output lock on portalocker (issue 30): what the two-writers tests of test_outputs.py do
not reach — one thread nesting its holds, a waiter taking over a lock file its holder removed,
and a file system that cannot lock, in one line."""
import errno
import os
import threading
import time

import pytest

from prunenet.errors import PrunenetError
from prunenet.io.outputs import LockedError, hold_lock


def _other_thread(path, wait):
    """Try ``path``'s lock from another thread (its own lock, as another process would take):
    what it got, and the time it took."""
    got = []

    def run():
        t0 = time.monotonic()
        try:
            with hold_lock(path, "--out x", wait=wait):
                got.append(("held", open(path).read(), time.monotonic() - t0))
        except LockedError as err:
            got.append(("refused", str(err), time.monotonic() - t0))
    thread = threading.Thread(target=run)
    thread.start()
    return thread, got


def test_one_thread_nests_its_holds_and_the_last_release_removes_the_file(tmp_path):
    path = str(tmp_path / ".run.lock")
    with hold_lock(path, "--out x"):
        with hold_lock(path, "--out x"):
            assert open(path).read().startswith(f"pid {os.getpid()} (prunenet")
        assert os.path.exists(path)  # the inner release let nothing go
        thread, got = _other_thread(path, wait=False)
        thread.join(60)
        assert got[0][0] == "refused" and f"being written by pid {os.getpid()}" in got[0][1]
    assert os.listdir(tmp_path) == []


def test_a_waiter_takes_the_lock_its_holder_removed_when_it_let_go(tmp_path):
    path = str(tmp_path / ".run.lock")
    with hold_lock(path, "--out x"):
        thread, got = _other_thread(path, wait=30)
        time.sleep(0.5)
        assert not got  # still waiting
    thread.join(60)
    assert got[0][0] == "held" and got[0][1].startswith(f"pid {os.getpid()} ")
    assert 0.4 < got[0][2] < 10
    assert os.listdir(tmp_path) == []  # the waiter's own file, removed in its turn


def test_a_file_system_that_cannot_lock_is_one_line(tmp_path, monkeypatch):
    import portalocker.portalocker as backend

    def no_locks(fd, flags):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    monkeypatch.setattr(backend, "LOCKER", no_locks)
    path = str(tmp_path / ".run.lock")
    with pytest.raises(PrunenetError) as err:
        with hold_lock(path, f"--out {tmp_path}/run"):
            pass
    line = str(err.value)
    assert "\n" not in line and path in line and os.strerror(errno.ENOLCK) in line
    assert "cannot lock files; choose a place on a local disk" in line
