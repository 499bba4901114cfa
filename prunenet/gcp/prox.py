"""Proximal-gradient SGD for a cost-weighted L1 penalty, registered with MXNet as ``proxsgd``.

After each ordinary SGD (momentum) step on the smooth loss, every regularised parameter is
soft-thresholded per channel: ``s ← sign(s)·max(|s| − lr·t, 0)`` with ``t = λ·c`` its channel's
cost-weighted threshold. A plain ``gluon.Trainer(params, 'proxsgd', {'thresholds': ...})`` drives it.

The thresholding is vectorised as MXNet's SGD is: the trainer hands over ``aggregate_num``
parameters at a time (``MXNET_OPTIMIZER_AGGREGATION_SIZE``, 4 by default; larger is slower here,
MXNet's multi-tensor kernels loop over the largest array) and the regularised ones among them
are thresholded with five engine ops however many they are: concatenate, clip to ±τ (τ = lr·t,
cached while the rate holds), split, and one ``multi_sgd_update`` that subtracts the clipped
values, since ``s − clip(s, −τ, τ)`` is the soft threshold, exactly zero where ``|s| ≤ τ``.

With ``keep_top=k`` the k largest |s| of every regularised parameter (one per channel group) are
exempt from the threshold, so no group is ever zeroed whole: a group with no live channel
would cut the network wherever nothing bypasses it (MobileNetV2's bottlenecks without a
residual), its output then constant, and every BatchNorm after it dividing by a zero batch
variance in the debias step.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

import mxnet as mx
import numpy as np

__all__ = ["ProxSGD", "zero_state_rows", "refresh_master_copies"]

_MAX_AGGREGATE = 45  # the most arrays one MXNet multi-tensor SGD op takes


@mx.optimizer.register
class ProxSGD(mx.optimizer.SGD):
    """SGD followed by per-channel soft-thresholding of the parameters named in ``thresholds``.

    ``thresholds``: parameter name -> NDArray (or array-like) of per-channel λ·c, same length as
    the parameter. Parameters not named are updated by plain SGD. ``keep_top``: how many of
    each parameter's largest entries the threshold spares (0: none).
    """

    def __init__(self, thresholds: Dict[str, object] | None = None, keep_top: int = 0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.keep_top = int(keep_top)
        self.set_thresholds(thresholds or {})

    def set_thresholds(self, thresholds: Dict[str, object]) -> None:
        """Replace the thresholds (e.g. after the cost weights were recomputed)."""
        self.thresholds = {name: _as_numpy(t) for name, t in thresholds.items()}
        # (names, context) -> (lrs, τ, -τ) for the latest learning rates
        self._tau: Dict[tuple, Tuple[tuple, mx.nd.NDArray, mx.nd.NDArray]] = {}

    def __getstate__(self):
        state = super().__getstate__()
        state["_tau"] = {}  # a cache of device arrays: rebuilt on use
        return state

    def update(self, index, weight, grad, state):
        super().update(index, weight, grad, state)
        self._prox(index, weight)

    def update_multi_precision(self, index, weight, grad, state):
        super().update_multi_precision(index, weight, grad, state)
        self._prox(index, weight, state)

    def _prox(self, index, weight, state=None) -> None:
        """Soft-threshold the regularised parameters among ``weight``: a float16 weight's
        float32 master copy (``multi_precision``), then the weight cast from it."""
        many = isinstance(index, (list, tuple))
        indices, weights = (index, weight) if many else ([index], [weight])
        states = (list(state) if state is not None else [None] * len(indices)) if many \
            else [state]
        chosen, casts = [], []
        for i, w, st in zip(indices, weights, states):
            if i not in self.param_dict or self.param_dict[i].name not in self.thresholds:
                continue
            master = _master_copy(w, st) if self.multi_precision else None
            chosen.append((i, w if master is None else master))
            if master is not None:
                casts.append((master, w))
        for start in range(0, len(chosen), _MAX_AGGREGATE):
            self._soft_threshold(chosen[start:start + _MAX_AGGREGATE])
        for master, w in casts:
            mx.nd.cast(master, dtype=w.dtype, out=w)

    def _thresholds_for(self, chosen) -> Tuple[mx.nd.NDArray, mx.nd.NDArray]:
        """τ = lr·t over the chosen parameters end to end, and −τ (cached while lr holds)."""
        names = tuple(self.param_dict[i].name for i, _ in chosen)
        ctx = chosen[0][1].context
        lrs = tuple(self._get_lrs([i for i, _ in chosen]))
        cached = self._tau.get((names, ctx))
        if cached is None or cached[0] != lrs:
            tau = np.concatenate([lr * self.thresholds[n] for n, lr in zip(names, lrs)])
            cached = (lrs, mx.nd.array(tau, ctx=ctx, dtype=chosen[0][1].dtype),
                      mx.nd.array(-tau, ctx=ctx, dtype=chosen[0][1].dtype))
            self._tau[(names, ctx)] = cached
        return cached[1], cached[2]

    def _soft_threshold(self, chosen) -> None:
        tau, neg_tau = self._thresholds_for(chosen)
        ws = [w for _, w in chosen]
        if len(ws) == 1 and not self.keep_top:
            w = ws[0]
            flat = w.reshape((-1,))
            flat -= mx.nd.minimum(mx.nd.maximum(flat, neg_tau), tau)
            return
        flat = mx.nd.concat(*[w.reshape((-1,)) for w in ws], dim=0)
        clipped = mx.nd.minimum(mx.nd.maximum(flat, neg_tau), tau)
        if self.keep_top:
            clipped = clipped * mx.nd.concat(*[self._subject(w) for w in ws], dim=0)
        if len(ws) == 1:
            parts = [clipped]
        else:
            offsets = np.cumsum([w.size for w in ws])[:-1]
            parts = mx.nd.split_v2(clipped, tuple(int(o) for o in offsets), axis=0)
            parts = parts if isinstance(parts, (list, tuple)) else [parts]
        args: List[mx.nd.NDArray] = []
        for w, d in zip(ws, parts):
            args += [w, d.reshape(w.shape)]
        mx.nd.multi_sgd_update(*args, lrs=(1.0,) * len(ws), wds=(0.0,) * len(ws),
                               rescale_grad=1.0, num_weights=len(ws), out=ws)


    def _subject(self, w: mx.nd.NDArray) -> mx.nd.NDArray:
        """1 where the threshold applies to ``w`` (flattened), 0 at its ``keep_top`` largest |w|."""
        mag = mx.nd.abs(w.reshape((-1,)))
        return 1 - mx.nd.topk(mag, k=min(self.keep_top, mag.size), ret_typ="mask")


def _master_copy(weight, state):
    """The float32 master copy that MXNet's multi-precision SGD keeps of a float16 ``weight``
    (the last element of its state), or None."""
    if weight.dtype != np.float16 or not isinstance(state, (list, tuple)) or not state:
        return None
    master = state[-1]
    return master if isinstance(master, mx.nd.NDArray) and master.dtype == np.float32 else None


def refresh_master_copies(trainer) -> None:
    """After ``set_data`` on float16 parameters (rescale, removal, resume), make each float32
    master copy of ``trainer`` take the new value wherever it no longer rounds to the weight,
    so the next step does not write the old values back."""
    for k, updater in enumerate(trainer._updaters):  # updater k updates each one's copy k
        for i, state in updater.states.items():
            weight = trainer._params[i].list_data()[k]
            master = _master_copy(weight, state)
            if master is None:
                continue
            fresh = weight.astype(np.float32)
            same = mx.nd.cast(master, dtype=weight.dtype) == weight
            master[:] = mx.nd.where(same, master, fresh)


def _as_numpy(t) -> np.ndarray:
    arr = t.asnumpy() if isinstance(t, mx.nd.NDArray) else np.asarray(t)
    return arr.astype(np.float32).ravel()


def zero_state_rows(trainer, names_rows: Iterable[tuple]) -> None:
    """Zero the optimizer state (momentum) of the given rows: ``(param name, bool mask of rows
    to zero)`` pairs, so removed channels are not pushed back by old momentum."""
    index = {p.name: i for i, p in enumerate(trainer._params)}
    for name, rows in names_rows:
        i = index.get(name)
        if i is None:
            continue
        for updater in trainer._updaters:
            state = updater.states.get(i)
            if isinstance(state, (list, tuple)) and state:  # multi-precision: (momentum, master)
                state = state[0]
            if isinstance(state, mx.nd.NDArray):
                arr = state.asnumpy()
                arr[np.asarray(rows, dtype=bool)] = 0
                state[:] = mx.nd.array(arr, ctx=state.context, dtype=arr.dtype)
