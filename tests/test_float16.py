"""Float16 training, checked on the CPU (where MXNet computes no float16 network): the optimizer
step on NDArrays (the proximal step thresholds the float32 master copy that multi-precision SGD
keeps, and the float16 weight is cast from it, so channels reach exactly zero and stay there),
and the float16 networks, views and trainers a run builds (their dtypes, not their outputs)."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

import prunenet.gcp.prox  # noqa: F401  (registers 'proxsgd')
from prunenet.gcp.prox import refresh_master_copies, zero_state_rows

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


# -- float16 networks (built and checked on the CPU; they compute only on a GPU) ---------------

def _batchnorm_params(graph):
    """The names of every BatchNorm's γ, β and running statistics, from the traced graph."""
    return {name for n in graph.norms.values()
            for name in (n.gamma, n.beta, n.running_mean, n.running_var)}


def _nets():
    """A GluonCV ResNet, the same as a SymbolBlock, and a chain whose first convolution has no
    BatchNorm after it (its group is masked by multiplying the feature map)."""
    from prunenet.training.models import load_model
    resnet = load_model("resnet18_v1b", classes=10, seed=0, input_size=32)
    symbol = gluon.SymbolBlock(resnet(mx.sym.var("data")), [mx.sym.var("data")],
                               params=resnet.collect_params())
    chain = gluon.nn.HybridSequential(prefix="nobn_")
    with chain.name_scope():
        chain.add(gluon.nn.Conv2D(16, 3, padding=1), gluon.nn.Activation("relu"),
                  gluon.nn.Conv2D(16, 3, padding=1, use_bias=False), gluon.nn.BatchNorm(),
                  gluon.nn.Activation("relu"), gluon.nn.GlobalAvgPool2D(), gluon.nn.Dense(10))
    chain.initialize(mx.init.Xavier())
    chain(mx.nd.zeros((1, 3, 32, 32)))
    return {"resnet": resnet, "symbol": symbol, "chain": chain}


@pytest.mark.parametrize("kind", ["resnet", "symbol", "chain"])
def test_the_cast_helper_keeps_exactly_the_batchnorm_parameters_in_float32(kind):
    from prunenet.core.replicas import cast, compute_dtype
    from prunenet.core.graph import trace
    net = _nets()[kind]
    graph = trace(net, (1, 3, 32, 32))
    mx.nd.waitall()  # load_model's writes: a read right after it can see a weight half-written
    before = {n: p.data().asnumpy() for n, p in net.collect_params().items()}
    assert compute_dtype(cast(net, "float16")) == "float16"
    norms = _batchnorm_params(graph)
    params = dict(net.collect_params().items())
    assert norms and norms < set(params)
    for name, p in params.items():
        want = np.float32 if name in norms else np.float16
        assert np.dtype(p.dtype) == want and p.data().dtype == want, (name, p.dtype)
        np.testing.assert_array_equal(p.data().asnumpy(), before[name].astype(want))
    from prunenet.core.replicas import host_copy
    saved = host_copy(net)  # saves and checkpoints stay float32, loadable by a float32 network
    assert {v.dtype for v in saved.values()} == {np.dtype(np.float32)}


@pytest.mark.parametrize("kind", ["resnet", "chain"])
def test_the_masked_views_of_a_float16_network_type_check_with_float32_masks(kind):
    """Both GCP views of a float16 network infer, from float16 data alone, exactly the dtype
    each parameter has: masks float32 (beside BatchNorm's γ), and a mask that multiplies a
    float16 feature map cast to it in the view."""
    from prunenet.core.replicas import cast
    from prunenet.core.graph import trace
    from prunenet.gcp.masked import DEBIAS, REGULARIZE, MaskedNetwork
    net = _nets()[kind]
    graph = trace(net, (1, 3, 32, 32))  # traced in float32: the views must not keep its dtypes
    wrapper = MaskedNetwork(cast(net, "float16"), graph)
    params = dict(wrapper.params.items())
    params.update({p.name: p for p in wrapper.mask_params.values()})
    assert wrapper.mask_params and all(np.dtype(p.dtype) == np.float32
                                       for p in wrapper.mask_params.values())
    for phase in (REGULARIZE, DEBIAS):
        symbol = wrapper._masked_symbol(use_global_stats=phase == REGULARIZE)
        args, outs, aux = symbol.infer_type(data=np.float16)
        inferred = dict(zip(symbol.list_arguments(), args))
        inferred.update(zip(symbol.list_auxiliary_states(), aux))
        inferred.pop("data")
        assert set(inferred) == set(params)
        assert {n: np.dtype(t) for n, t in inferred.items()} == \
            {n: np.dtype(p.dtype) for n, p in params.items()}
        assert outs == [np.float16]
    casts = [n for n in symbol.get_internals().list_outputs() if n.endswith("_float16_output")]
    assert bool(casts) == (kind == "chain")  # only the chain masks a feature map


def test_the_trainers_of_a_float16_run_update_through_float32_master_copies(monkeypatch):
    """GCP's two trainers and fine-tuning's: multi_precision on for a float16 network, off for
    a float32 one; a step leaves each float16 weight its float32 master copy."""
    from prunenet.training import train
    from prunenet.core.costs import cost_model
    from prunenet.core.replicas import cast
    from prunenet.core.graph import trace
    from prunenet.gcp.schedule import GCPSchedule, GCPConfig
    from prunenet.gcp.masked import MaskedNetwork
    built = {}
    for dtype in ("float32", "float16"):
        net = _nets()["resnet"]
        graph = trace(net, (1, 3, 32, 32))
        gcp = GCPSchedule(MaskedNetwork(cast(net, dtype), graph), cost_model(graph, "flops"),
                  GCPConfig(target=0.5), [mx.cpu()], progress=False)

        def capture(block, trainer, *args, **kwargs):
            built["finetune"] = trainer
            return {}
        monkeypatch.setattr(train, "run_batches", capture)
        stream = train.BatchStream(lambda e, s: [None] * 4)
        train.finetune(_nets()["chain"] if dtype == "float32" else cast(_nets()["chain"], dtype),
                       stream, train.FinetuneConfig(hybridize=False), [mx.cpu()],
                       progress=False)
        trainers = {"regularize": gcp.reg_trainer, "debias": gcp.debias_trainer,
                    "finetune": built["finetune"]}
        for what, trainer in trainers.items():
            assert trainer._optimizer.multi_precision == (dtype == "float16"), (what, dtype)
    trainer = gcp.reg_trainer  # float16: one step with given gradients
    halves = [p for p in trainer._params if np.dtype(p.dtype) == np.float16]
    assert halves  # the classifier's weight and bias
    for p in trainer._params:
        p.grad()[:] = 0.01
        p.data()._fresh_grad = True  # as a backward pass leaves it
    trainer.step(1)
    for i, p in enumerate(trainer._params):
        state = trainer._updaters[0].states[i]
        if np.dtype(p.dtype) == np.float16:
            master = state[-1]
            assert master.dtype == np.float32
            np.testing.assert_array_equal(master.asnumpy().astype(np.float16), p.data().asnumpy())
        else:
            assert not isinstance(state, (list, tuple))  # float32: no second copy
