"""Proximal-gradient SGD for a cost-weighted L1 penalty, registered with MXNet as ``proxsgd``.

After each ordinary SGD (momentum) step on the smooth loss, every regularised parameter is
soft-thresholded per channel: ``s ← sign(s)·max(|s| − lr·t, 0)`` with ``t = λ·c`` its channel's
cost-weighted threshold. A plain ``gluon.Trainer(params, 'proxsgd', {'thresholds': ...})`` drives it.
"""
from __future__ import annotations

from typing import Dict, Iterable

import mxnet as mx

__all__ = ["ProxSGD", "zero_state_rows"]


@mx.optimizer.register
class ProxSGD(mx.optimizer.SGD):
    """SGD followed by per-channel soft-thresholding of the parameters named in ``thresholds``.

    ``thresholds``: parameter name -> NDArray (or array-like) of per-channel λ·c, same length as
    the parameter. Parameters not named are updated by plain SGD.
    """

    def __init__(self, thresholds: Dict[str, object] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.thresholds = {name: mx.nd.array(t) if not isinstance(t, mx.nd.NDArray) else t
                           for name, t in (thresholds or {}).items()}
        self._on_ctx: Dict[tuple, mx.nd.NDArray] = {}

    def set_thresholds(self, thresholds: Dict[str, object]) -> None:
        """Replace the thresholds (e.g. after the cost weights were recomputed)."""
        self.thresholds = {name: mx.nd.array(t) if not isinstance(t, mx.nd.NDArray) else t
                           for name, t in thresholds.items()}
        self._on_ctx.clear()

    def update(self, index, weight, grad, state):
        super().update(index, weight, grad, state)
        self._prox(index, weight)

    def update_multi_precision(self, index, weight, grad, state):
        super().update_multi_precision(index, weight, grad, state)
        self._prox(index, weight)

    def _prox(self, index, weight) -> None:
        indices = index if isinstance(index, (list, tuple)) else [index]
        weights = weight if isinstance(weight, (list, tuple)) else [weight]
        for i, w in zip(indices, weights):
            param = self.param_dict.get(i)
            if param is None or param.name not in self.thresholds:
                continue
            key = (param.name, w.context)
            t = self._on_ctx.get(key)
            if t is None:
                t = self._on_ctx[key] = self.thresholds[param.name].as_in_context(w.context)
            shrunk = mx.nd.maximum(mx.nd.abs(w) - self._get_lr(i) * t, 0)
            w[:] = mx.nd.sign(w) * shrunk


def zero_state_rows(trainer, names_rows: Iterable[tuple]) -> None:
    """Zero the optimizer state (momentum) of the given rows: ``(param name, bool mask of rows
    to zero)`` pairs, so removed channels are not pushed back by old momentum."""
    import numpy as np
    index = {p.name: i for i, p in enumerate(trainer._params)}
    for name, rows in names_rows:
        i = index.get(name)
        if i is None:
            continue
        for updater in trainer._updaters:
            state = updater.states.get(i)
            if isinstance(state, mx.nd.NDArray):
                arr = state.asnumpy()
                arr[np.asarray(rows, dtype=bool)] = 0
                state[:] = mx.nd.array(arr, ctx=state.context, dtype=arr.dtype)
