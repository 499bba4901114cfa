"""Data-parallel training across processes: MXNet's parameter server (``dist_sync``,
``dist_sync_device``, started by ``mxnet/tools/launch.py``) or Horovod.

Each worker trains on its share of every global batch. Gradients are summed across workers
through the kvstore and every worker applies the same update itself (``update_on_kvstore=False``
in Gluon's terms), so the proximal step and its per-channel thresholds stay on the workers and
the workers' parameters stay equal. BatchNorm's running statistics, which each worker gathers
from its own images, are averaged at the end of every training pass.
"""
from __future__ import annotations

import functools
import os
from typing import Dict, List, Sequence

from .errors import PrunenetError

__all__ = ["Workers", "KVSTORES", "LOCAL_KVSTORES"]

LOCAL_KVSTORES = ("device", "local")
KVSTORES = LOCAL_KVSTORES + ("dist_sync", "dist_sync_device", "dist_device_sync", "horovod")
_RUNNING = ("running_mean", "running_var")


class Workers:
    """The processes of one data-parallel run; a single process when ``kvstore`` is local."""

    def __init__(self, kvstore: str = "device") -> None:
        if kvstore not in KVSTORES:
            why = (" (asynchronous updates cannot keep the workers' masks equal)"
                   if "async" in kvstore else "")
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
        applies the update of the global batch (``batch_size`` × workers) on each."""
        from mxnet import gluon
        if not self.distributed:
            return gluon.Trainer(params, optimizer, options, kvstore=self.kind)
        return _worker_trainer()(params, optimizer, options, self)

    def broadcast(self, params: Dict[str, object]) -> None:
        """Give every worker rank 0's values of ``params`` (name → Parameter)."""
        if not self.distributed:
            return
        import mxnet as mx
        items = sorted(params.items())
        keys = [self._key("init", name, p.data(p.list_ctx()[0])) for name, p in items]
        if self._keys.intersection(keys):
            raise PrunenetError("Workers.broadcast: these parameters were broadcast before")
        # plain copies: oneDNN may hold a parameter in its own layout, which the kvstore
        # cannot read or write
        values = [mx.nd.array(p.data(p.list_ctx()[0]).asnumpy(), dtype=p.dtype)
                  for _, p in items]
        got = [mx.nd.zeros(v.shape, dtype=v.dtype) for v in values]
        if self.kind == "horovod":  # its kvstore has broadcast but no init/pull
            for key, value, out in zip(keys, values, got):
                self.kv.broadcast(key, value, out=out)
        else:
            self.kv.init(keys, values)  # rank 0's values; a barrier
            self.kv.pull(keys, out=got)
        self._keys.update(keys)
        for (_, p), value in zip(items, got):
            p.set_data(value)

    def allreduce_grads(self, params: Sequence[object]) -> None:
        """Sum each parameter's gradient over the workers and devices, in place."""
        live = [p for p in params if p.grad_req != "null"]
        if not live:
            return
        keys = self._ready("grad", live, [p.list_grad()[0] for p in live])
        self._sum(keys, [p.list_grad() for p in live])

    def average_running_stats(self, block) -> None:
        """Average BatchNorm's running mean and variance of ``block`` over workers and devices."""
        if not self.distributed:
            return
        stats = [p for name, p in sorted(block.collect_params().items())
                 if name.endswith(_RUNNING)]
        if not stats:
            return
        keys = self._ready("stat", stats, [p.list_data()[0] for p in stats])
        self._sum(keys, [p.list_data() for p in stats])
        for p in stats:
            for array in p.list_data():
                array /= self.count * len(p.list_data())

    def output_folder(self, out: str) -> str:
        """Where this worker writes its run folder: ``out`` for rank 0, ``out.workerN`` else
        (so that workers on one machine, or on a shared file system, do not collide)."""
        return out if self.rank == 0 else f"{out}.worker{self.rank}"

    def _key(self, kind: str, name: str, array) -> str:
        return f"{kind}:{name}:{'x'.join(map(str, array.shape))}"

    def _sum(self, keys: List[str], arrays: List[List[object]]) -> None:
        """Each key's arrays (one per device) replaced by their sum over devices and workers."""
        if self.kind != "horovod":
            self.kv.pushpull(keys, arrays)
            return
        for key, per_device in zip(keys, arrays):  # Horovod: one key a call, one device a rank
            self.kv.pushpull(key, per_device)

    def _ready(self, kind: str, params: List[object], zeros_like: List[object]) -> List[str]:
        """The kvstore keys of ``params``, made on first use (all at once: each ``init`` is a
        barrier across the workers; Horovod needs none)."""
        import mxnet as mx
        keys = [self._key(kind, p.name, z) for p, z in zip(params, zeros_like)]
        new = [(k, z) for k, z in zip(keys, zeros_like) if k not in self._keys]
        if new and self.kind == "horovod":
            self._keys.update(k for k, _ in new)
        elif new:
            self.kv.init([k for k, _ in new], [mx.nd.zeros(z.shape, z.context, dtype=z.dtype)
                                              for _, z in new])
            self._keys.update(k for k, _ in new)
        return keys


def _create(kvstore: str):
    import mxnet as mx
    if kvstore.startswith("dist") and os.environ.get("DMLC_ROLE") != "worker":
        raise PrunenetError(
            f"--kvstore {kvstore} runs as one worker of a parameter-server job, but DMLC_ROLE is "
            f"{os.environ.get('DMLC_ROLE')!r}, not 'worker'; start the job with MXNet's "
            f"launcher, e.g. python mxnet/tools/launch.py -n 2 --launcher ssh -H hosts "
            f"prunenet prune ... --kvstore {kvstore}")
    try:
        return mx.kv.create(kvstore)
    except Exception as err:  # MXNetError, or Horovod missing
        hint = " (pip install horovod, built with MXNet support)" if kvstore == "horovod" else ""
        raise PrunenetError(f"--kvstore {kvstore}: cannot create it{hint}: "
                            f"{str(err).strip().splitlines()[-1] if str(err).strip() else err}"
                            ) from None


@functools.lru_cache(maxsize=None)
def _worker_trainer() -> type:
    from mxnet import gluon

    class WorkerTrainer(gluon.Trainer):
        """A trainer with no kvstore of its own: :class:`Workers` reduces its gradients."""

        def __init__(self, params, optimizer: str, options: dict, workers: Workers) -> None:
            super().__init__(params, optimizer, options, kvstore=None)
            self._workers = workers

        def step(self, batch_size, ignore_stale_grad=False):
            self._workers.allreduce_grads(self._params)
            self.update(batch_size * self._workers.count, ignore_stale_grad)

    return WorkerTrainer
