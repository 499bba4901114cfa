"""Float16 training's optimizer step, on NDArrays (MXNet trains no float16 network on a CPU):
the proximal step thresholds the float32 master copy that multi-precision SGD keeps, and the
float16 weight is cast from it, so channels reach exactly zero and stay there."""
import mxnet as mx
import numpy as np
from mxnet import gluon

import prunenet.optim  # noqa: F401  (registers 'proxsgd')
from prunenet.optim import refresh_master_copies, zero_state_rows

LR, MOMENTUM = 0.1, 0.9


def _param(values):
    p = gluon.Parameter("s", shape=(len(values),), dtype="float16")
    p.initialize(ctx=mx.cpu())
    p.set_data(mx.nd.array(values, dtype="float16"))
    return p


def _backward(p, coefficients):
    """Gradient ``coefficients`` for ``p``, through autograd (the loss Σ c·s)."""
    from mxnet import autograd
    c = mx.nd.array(coefficients, dtype="float16")
    with autograd.record():
        loss = (p.data() * c).sum()
    loss.backward()


def _reference(s, grads, tau):
    """SGD with momentum (MXNet's form: m = μm − lr·g; s += m), then soft-thresholding by
    lr·τ, in float64."""
    s, m = np.asarray(s, np.float64), np.zeros(len(s))
    for g in grads:
        m = MOMENTUM * m - LR * g
        s = s + m
        s = np.sign(s) * np.maximum(np.abs(s) - LR * tau, 0)
    return s


def test_the_proximal_step_thresholds_the_float32_master_copy():
    start = np.array([0.8, -0.6, 0.05, -0.04, 1.5, 0.3])
    tau = np.array([0.5, 0.5, 0.5, 0.5, 0.0, 2.0], np.float32)
    p = _param(start)
    opt = mx.optimizer.create("proxsgd", learning_rate=LR, momentum=MOMENTUM,
                              multi_precision=True, thresholds={"s": tau}, param_dict={0: p})
    weight = p.data()
    state = opt.create_state_multi_precision(0, weight)
    rng = np.random.RandomState(0)
    grads = [rng.normal(0, 0.3, 6).astype(np.float16) for _ in range(6)]
    for g in grads:
        opt.update_multi_precision(0, weight, mx.nd.array(g, dtype="float16"), state)
    master = state[1].asnumpy()
    expected = _reference(start.astype(np.float16), [g.astype(np.float64) for g in grads], tau)
    np.testing.assert_allclose(master, expected, atol=2e-3)  # float16 gradients and start
    assert master.dtype == np.float32 and weight.dtype == np.float16
    np.testing.assert_array_equal(weight.asnumpy(), master.astype(np.float16))
    zero = expected == 0
    assert zero.any() and not zero.all()
    assert (master[zero] == 0).all() and (weight.asnumpy()[zero] == 0).all()


def test_values_set_from_outside_survive_the_next_float16_step():
    """Removal writes zeros into the float16 weight; without refreshing the master copies the
    next step would write the old values back."""
    results = {}
    for refresh in (False, True):
        p = _param([0.8, -0.6, 0.4, 1.5])
        p.grad_req = "write"
        trainer = gluon.Trainer([p], "proxsgd", {
            "learning_rate": LR, "momentum": MOMENTUM, "multi_precision": True,
            "thresholds": {"s": np.zeros(4, np.float32)}}, kvstore=None)
        _backward(p, [0.5, -0.5, 0.5, -0.5])
        trainer.step(1)
        removed = np.array([True, False, True, False])
        value = p.data().asnumpy()
        value[removed] = 0
        p.set_data(mx.nd.array(value, dtype="float16"))
        zero_state_rows(trainer, [("s", removed)])
        if refresh:
            refresh_master_copies(trainer)
        _backward(p, [0.0, 0.0, 0.0, 0.0])
        trainer.step(1)
        results[refresh] = p.data().asnumpy()[removed]
    assert np.abs(results[False]).max() > 0.1  # the stale master copy came back
    np.testing.assert_array_equal(results[True], 0.0)
