"""The kill-and-resume harness: run ``prunenet prune`` in a subprocess, SIGKILL it at a named
failpoint (:mod:`prunenet.failpoints`), check that nothing half-written is visible, resume it
with ``--resume`` and compare the result with an uninterrupted run: widths, every weight and
every row of ``steps.csv`` but its times, bit for bit.

Runs use MXNet's defaults (the threaded engine, oneDNN's kernels) at one OpenMP thread; two
uninterrupted runs are equal bit for bit there, and so must a killed-and-resumed run be (README,
"Killed runs and reproducibility"). ``engine`` asks for another engine (e.g. ``NaiveEngine``).
"""
import csv
import json
import os
import pickle
import signal
import subprocess
import sys

import numpy as np


def prune(out, args=None, failpoint=None, resume=False, timeout=600, engine=None,
          passes=None):
    """Run ``prunenet prune ARGS`` (or ``--resume out``) under MXNet's ``engine`` (None: its
    default); ``passes``: a file to which every failpoint passed is appended. Returns the exit
    code and stderr."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("MXNET_ENGINE_TYPE", "PRUNENET_FAILPOINT", "PRUNENET_FAILPOINT_LOG"):
        env.pop(name, None)
    if engine:
        env["MXNET_ENGINE_TYPE"] = engine
    if failpoint:
        env["PRUNENET_FAILPOINT"] = failpoint
    if passes:
        env["PRUNENET_FAILPOINT_LOG"] = str(passes)
    argv = ["--resume", str(out)] if resume else list(args) + ["--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "prunenet", "prune"] + argv, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stderr


def check_no_partial_files(folder):
    """Every file under its final name (temporary ones start with '.') is whole; the checkpoint
    names only files that exist."""
    import mxnet as mx
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if name.startswith("."):
                continue
            if name.endswith(".json"):
                with open(path) as f:
                    json.load(f)
            elif name.endswith(".params"):
                assert mx.nd.load(path), path
            elif name.endswith(".states"):
                with open(path, "rb") as f:
                    pickle.load(f)
            elif name.endswith(".csv"):
                with open(path) as f:
                    rows = list(csv.DictReader(f))
                assert all(None not in row for row in rows), path
    ckpt = os.path.join(folder, "checkpoint", "checkpoint.json")
    if os.path.exists(ckpt):
        with open(ckpt) as f:
            doc = json.load(f)
        for name in [doc["params"]] + list(doc.get("states", {}).values()):
            assert os.path.exists(os.path.join(folder, "checkpoint", name)), name


def rows(folder):
    """The rows of a finished run's ``steps.csv`` without their times."""
    with open(os.path.join(folder, "steps.csv")) as f:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(f)]


def final(folder):
    """(widths, {parameter: array}) of a finished run."""
    import mxnet as mx
    with open(os.path.join(folder, "report.json")) as f:
        report = json.load(f)
    params = {}
    for name in report["files"]:
        if name.endswith(".params"):
            params.update({k: v.asnumpy() for k, v in
                           mx.nd.load(os.path.join(folder, name)).items()})
    return report["widths"], params


def leftovers(folder):
    """Temporary files (``.*.tmp``) under ``folder``."""
    return [os.path.join(root, name) for root, _, files in os.walk(folder) for name in files
            if name.startswith(".") and name.endswith(".tmp")]


def kill_and_resume(tmp, failpoint, reference, args, engine=None,
                    leaves_temporary=False):
    """Kill a run of ``args`` at ``failpoint``, check what it left, resume it; it must end as
    ``reference`` (a finished run folder of the same ``args`` under the same ``engine``) did,
    weights and ``steps.csv`` bit for bit, with no temporary file left (``leaves_temporary``:
    the kill left one)."""
    out = os.path.join(str(tmp), failpoint.replace(":", "-"))
    code, err = prune(out, args, failpoint=failpoint, engine=engine)
    assert code == -signal.SIGKILL, f"{failpoint} was never reached (exit {code}): {err[-2000:]}"
    assert not os.path.exists(os.path.join(out, "report.json"))
    check_no_partial_files(out)
    assert bool(leftovers(out)) == leaves_temporary, leftovers(out)
    code, err = prune(out, resume=True, engine=engine)
    assert code == 0, err[-2000:]
    check_no_partial_files(out)
    assert not leftovers(out), leftovers(out)
    widths, params = final(out)
    ref_widths, ref_params = final(reference)
    assert widths == ref_widths
    assert sorted(params) == sorted(ref_params)
    for name, value in ref_params.items():
        np.testing.assert_array_equal(params[name], value, err_msg=f"{failpoint}: {name}")
    assert rows(out) == rows(reference), failpoint
