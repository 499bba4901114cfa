"""Data-parallel training across processes through MXNet's parameter server (``dist_sync``,
``dist_sync_device``, started by ``mxnet/tools/launch.py``).

Each worker trains on its share of every global batch. Gradients are summed across workers
through the kvstore and every worker applies the same update itself (``update_on_kvstore=False``
in Gluon's terms), so the proximal step and its per-channel thresholds stay on the workers.
Whatever a worker decides alone — which channels to keep, whether its checks passed — is
settled by rank 0's answer, so the workers cannot drift apart or wait for one that has left.
BatchNorm's running statistics, which each worker gathers from its own images, are averaged at
the end of every training pass.

Every collective call here must be made by all workers in the same order; kvstore keys are named
by kind, position and shape (not by parameter names, which carry a per-process counter).
"""
from __future__ import annotations

import functools
import os
from typing import Dict, List, Sequence

import numpy as np

from ..errors import PrunenetError

__all__ = ["Workers", "KVSTORES", "LOCAL_KVSTORES", "WorkerFailed"]

LOCAL_KVSTORES = ("device", "local")
KVSTORES = LOCAL_KVSTORES + ("dist_sync", "dist_sync_device", "dist_device_sync")
_RUNNING = ("running_mean", "running_var")


class WorkerFailed(PrunenetError):
    """Another worker of a distributed run stopped; this one stops with it."""


class Workers:
    """The processes of one data-parallel run; a single process when ``kvstore`` is local."""

    def __init__(self, kvstore: str = "device") -> None:
        if kvstore not in KVSTORES:
            why = (" (asynchronous updates cannot keep the workers' masks equal)"
                   if "async" in kvstore else
                   " (MXNet 1.9.1 has no Horovod kvstore; use dist_sync_device)"
                   if kvstore == "horovod" else "")
            raise PrunenetError(f"--kvstore {kvstore!r} is not supported{why}; choose one of "
                                f"{', '.join(KVSTORES)}")
        self.kind = kvstore
        self.kv = None if kvstore in LOCAL_KVSTORES else _create(kvstore)
        self.rank = self.kv.rank if self.kv is not None else 0
        self.count = self.kv.num_workers if self.kv is not None else 1
        self._keys: set = set()

    @property
    def distributed(self) -> bool:
        return self.kv is not None

    def trainer(self, params, optimizer: str, options: dict):
        """A ``gluon.Trainer`` whose ``step(batch_size)`` sums gradients over the workers and
        applies the update of the global batch (``batch_size`` × workers) on each. Float16
        parameters are updated through float32 master copies (``multi_precision``, as GluonCV
        trains in float16)."""
        from mxnet import gluon
        values = params.values() if hasattr(params, "values") else params
        if any(np.dtype(p.dtype) == np.float16 for p in values):
            options = dict(options, multi_precision=True)
        if not self.distributed:  # one copy of the truth: each device applies the update
            return gluon.Trainer(params, optimizer, options, kvstore=self.kind,
                                 update_on_kvstore=False)
        return _worker_trainer()(params, optimizer, options, self)

    def agree(self, error: BaseException | None) -> None:
        """Raise ``error`` here if there is one, and on every other worker stop as well when
        any worker had one (a worker that left alone would leave the rest waiting for it)."""
        if self.distributed:
            failed = self._from_all("ok", [np.array([0.0 if error is None else 1.0],
                                                    np.float32)])[0]
            if error is None and failed[0] > 0:
                raise WorkerFailed(f"{int(failed[0])} other worker(s) of this distributed run "
                                   f"stopped with an error; see their logs")
        if error is not None:
            raise error

    def from_rank0(self, arrays: Sequence[np.ndarray], kind: str = "value") -> List[np.ndarray]:
        """Rank 0's values of ``arrays`` (same shapes on every worker), on every worker."""
        if not self.distributed:
            return [np.asarray(a) for a in arrays]
        mine = [np.asarray(a, dtype=np.float32) if self.rank == 0
                else np.zeros(np.shape(a), np.float32) for a in arrays]
        return [s.astype(np.asarray(a).dtype) for s, a in zip(self._from_all(kind, mine), arrays)]

    def rank0_selection(self, selection, cost):
        """Rank 0's ``selection`` (a :class:`prunenet.core.select.Selection`, its cost under
        ``cost``) on every worker: float rounding may differ between machines, the channels
        kept must not."""
        if not self.distributed:
            return selection
        import dataclasses
        from ..core.surgery import widths_of
        keep = [k > 0.5 for k in self.from_rank0([k.astype(np.float32) for k in selection.keep],
                                                 kind="keep")]
        return dataclasses.replace(selection, keep=keep, cost=cost.total(widths_of(keep)))

    def broadcast(self, params: Dict[str, object]) -> None:
        """Give every worker rank 0's values of ``params`` (name → Parameter)."""
        if not self.distributed:
            return
        items = sorted(params.items())
        # plain NumPy copies: oneDNN may hold a parameter in its own layout, which the kvstore
        # cannot read or write
        values = self.from_rank0([p.data(p.list_ctx()[0]).asnumpy() for _, p in items],
                                 kind="broadcast")
        import mxnet as mx
        for (_, p), value in zip(items, values):
            p.set_data(mx.nd.array(value, dtype=p.dtype))  # an NDArray: copied by an operator,
            # which writes oneDNN's layout too (a NumPy copy cannot)

    def allreduce_grads(self, params: Sequence[object]) -> None:
        """Sum each parameter's gradient over the workers and devices, in place."""
        live = [p for p in params if p.grad_req != "null"]
        if live:
            self._sum("grad", [p.list_grad() for p in live])

    def average_running_stats(self, block) -> None:
        """Average BatchNorm's running mean and variance of ``block`` over workers and devices."""
        if not self.distributed:
            from ..core.replicas import average_running_stats
            average_running_stats(block)
            return
        stats = [p for name, p in sorted(block.collect_params().items())
                 if name.endswith(_RUNNING)]
        if not stats:
            return
        self._sum("stat", [p.list_data() for p in stats])
        for p in stats:
            for array in p.list_data():
                array /= self.count * len(p.list_data())

    def output_folder(self, out: str) -> str:
        """Where this worker writes its run folder: ``out`` for rank 0, ``out.workerN`` else
        (so that workers on one machine, or on a shared file system, do not collide)."""
        return out if self.rank == 0 else f"{out}.worker{self.rank}"

    def _from_all(self, kind: str, arrays: List[np.ndarray]) -> List[np.ndarray]:
        """The sums over the workers of NumPy ``arrays``."""
        import mxnet as mx
        nds = [[mx.nd.array(a, dtype=np.float32)] for a in arrays]
        self._sum(kind, nds)
        return [n[0].asnumpy() for n in nds]

    def _sum(self, kind: str, arrays: List[List[object]]) -> None:
        """Each entry's arrays (one per device) replaced by their sum over devices and workers;
        keys are made on first use, all at once (each ``init`` is a barrier)."""
        import mxnet as mx
        keys = [f"{kind}:{i}:{'x'.join(map(str, a[0].shape))}:{a[0].dtype.__name__}"
                for i, a in enumerate(arrays)]
        new = [(k, a[0]) for k, a in zip(keys, arrays) if k not in self._keys]
        if new:
            self.kv.init([k for k, _ in new],
                         [mx.nd.zeros(a.shape, a.context, dtype=a.dtype) for _, a in new])
            self._keys.update(k for k, _ in new)
        self.kv.pushpull(keys, arrays)


def _create(kvstore: str):
    import mxnet as mx
    if os.environ.get("DMLC_ROLE") != "worker":
        raise PrunenetError(
            f"--kvstore {kvstore} runs as one worker of a parameter-server job, but DMLC_ROLE is "
            f"{os.environ.get('DMLC_ROLE')!r}, not 'worker'; start the job with MXNet's "
            f"launcher, e.g. python mxnet/tools/launch.py -n 2 --launcher ssh -H hosts "
            f"prunenet prune ... --kvstore {kvstore}")
    try:
        return mx.kv.create(kvstore)
    except Exception as err:  # MXNetError
        raise PrunenetError(f"--kvstore {kvstore}: cannot create it: "
                            f"{str(err).strip().splitlines()[-1] if str(err).strip() else err}"
                            ) from None


@functools.lru_cache(maxsize=None)
def _worker_trainer() -> type:
    from mxnet import gluon

    class WorkerTrainer(gluon.Trainer):
        """A trainer with no kvstore of its own: :class:`Workers` reduces its gradients, and
        a sum that is not finite stops every worker at the same step."""

        def __init__(self, params, optimizer: str, options: dict, workers: Workers) -> None:
            super().__init__(params, optimizer, options, kvstore=None)
            self._workers = workers

        def step(self, batch_size, ignore_stale_grad=False):
            import mxnet as mx
            from ..errors import NonFiniteError
            self._workers.allreduce_grads(self._params)
            grads = [p.list_grad()[0] for p in self._params if p.grad_req != "null"]
            if grads and not np.isfinite(mx.nd.add_n(*[g.norm() for g in grads]).asscalar()):
                raise NonFiniteError("the gradients summed over the workers became NaN or Inf; "
                                     "the learning rate is probably too high: try a smaller "
                                     "--lr")
            self.update(batch_size * self._workers.count, ignore_stale_grad)

    return WorkerTrainer
