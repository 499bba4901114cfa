"""The devices a run uses: the contexts ``--gpus`` names (or CPU contexts standing in for GPUs),
and what a measurement on one depends on (its model name). Copies of a network over the
contexts are :mod:`prunenet.core.replicas`' job."""
from __future__ import annotations

import os

from ..core.replicas import context_list
from ..errors import PrunenetError

__all__ = ["contexts", "one_device", "CPU_CONTEXTS", "device_model", "check_training_dtype"]


CPU_CONTEXTS = "PRUNENET_CPU_CONTEXTS"  # N: run on mx.cpu(0) ... mx.cpu(N-1) when no --gpus


def contexts(gpus: str) -> list:
    """``--gpus 0,1`` as MXNet contexts; empty means the CPU (``cpu(0)`` ... ``cpu(N-1)`` with
    ``PRUNENET_CPU_CONTEXTS=N``: N CPU contexts standing in for N GPUs)."""
    import mxnet as mx
    ids = [g.strip() for g in (gpus or "").split(",") if g.strip()]
    if not ids:
        count = os.environ.get(CPU_CONTEXTS, "1").strip() or "1"
        if not count.isdigit() or int(count) < 1:
            raise PrunenetError(f"{CPU_CONTEXTS}={count!r} must be a whole number of CPU "
                                f"contexts (1 or more); unset it to run on one")
        return [mx.cpu(i) for i in range(int(count))]
    if not all(i.isdigit() for i in ids):
        raise PrunenetError(f"--gpus {gpus!r} must be comma-separated GPU ids (whole numbers "
                            f"from 0), e.g. 0,1")
    ctx = [mx.gpu(int(i)) for i in ids]
    available = mx.context.num_gpus()
    missing = [i for i in ids if int(i) >= available]
    if missing:
        raise PrunenetError(f"--gpus {gpus}: this machine has {available} GPU(s) for MXNet; "
                            f"omit --gpus to run on the CPU")
    return ctx

def one_device(gpus: str = ""):
    """The one context ``--gpus`` names, for a measurement: the CPU, or a single GPU id."""
    import mxnet as mx
    ids = [g for g in (gpus or "").split(",") if g.strip()]
    if not ids:
        return mx.cpu()
    if len(ids) > 1:
        raise PrunenetError(f"--gpus {gpus}: a measurement runs on one device; give one GPU id")
    return contexts(gpus)[0]


def check_training_dtype(dtype: str, ctx=None) -> None:
    """Refuse to train (and evaluate) in ``dtype`` on ``ctx`` when MXNet cannot: float16 on any
    CPU context (MXNet 1.9.1 has no float16 convolution or dense kernels for the CPU)."""
    cpus = [c for c in context_list(ctx) if c.device_type == "cpu"]
    if dtype == "float16" and cpus:
        raise PrunenetError(f"--dtype float16 trains and evaluates the network in float16, which "
                            f"needs a GPU context (MXNet 1.9.1 has no float16 convolution "
                            f"kernels for {cpus[0]}): train on GPUs with --gpus 0,1,..., or "
                            f"use --dtype float32")


def device_model(ctx) -> str:
    """What a latency measured on ``ctx`` depends on: ``cpu``, or the GPU's model name and
    driver version as ``nvidia-smi`` reports them (``gpuN`` when it cannot be asked), so that
    a table measured on one GPU model is never reused on another."""
    if ctx.device_type == "cpu":
        return "cpu"
    answer = _gpu_query(ctx.device_id)
    if not answer:
        return f"gpu{ctx.device_id}"
    name, _, driver = (part.strip() for part in answer.partition(","))
    return f"{name} (driver {driver})" if driver else name


def _gpu_query(index: int) -> str:
    """``nvidia-smi``'s "name, driver_version" line for GPU ``index``, or "" if unavailable."""
    import subprocess
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                               "--format=csv,noheader", f"--id={index}"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = done.stdout.strip().splitlines() if done.returncode == 0 else []
    return lines[0] if lines else ""
