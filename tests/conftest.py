"""Shared fixtures — small, randomised GluonCV networks (never downloaded), MXNet's own count of
a symbol, the small GCP run's settings, the experiment scripts' runner, the Fashion-MNIST base
the quick demo and study share — and the tiers (markers ``unit``, ``e2e``, ``slow``). Tests
take these as fixtures and never import this file."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from prunenet.training.models import load_model, randomize_batchnorm  # noqa: E402


def random_net(name, input_size, seed=0, classes=None):
    """``name`` at seeded random weights, with BN γ (both signs), β, μ, σ² randomised."""
    net = load_model(name, classes=classes, seed=seed, input_size=input_size)
    randomize_batchnorm(net, seed=seed)
    return net


def conv_chain(convs, width, seed, classes=10, prefix="chain_"):
    """``convs`` × (3×3 conv of ``width`` channels, BatchNorm, ReLU), global pooling and a dense
    layer, initialised (Xavier) and shape-inferred for 8×8 images."""
    from mxnet import gluon
    mx.random.seed(seed)
    net = gluon.nn.HybridSequential(prefix=prefix)
    with net.name_scope():
        for _ in range(convs):
            net.add(gluon.nn.Conv2D(width, 3, padding=1, use_bias=False), gluon.nn.BatchNorm(),
                    gluon.nn.Activation("relu"))
        net.add(gluon.nn.GlobalAvgPool2D(), gluon.nn.Dense(classes))
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 8, 8)))
    return net


def independent_count(symbol, input_shape):
    """MACs and learnable params counted straight from MXNet's shape inference (not our graph)."""
    import json
    internals = symbol.get_internals()
    arg_shapes, out_shapes, _ = internals.infer_shape(data=input_shape)
    out = dict(zip(internals.list_outputs(), out_shapes))
    args = dict(zip(internals.list_arguments(), arg_shapes))
    nodes = json.loads(symbol.tojson())["nodes"]
    macs = 0
    for node in nodes:
        if node["op"] in ("Convolution", "FullyConnected"):
            weight = args[nodes[node["inputs"][1][0]]["name"]]
            hw = np.prod(out[node["name"] + "_output"][2:])  # 1 for a dense layer
            macs += int(np.prod(weight)) * int(hw)
    params = sum(int(np.prod(s)) for name, s in args.items() if name != "data")
    return macs, params


# The small GCP run the tests share: cifar_resnet20_v1 on 128 synthetic images (8 batches an
# epoch), 2 steps of half an epoch, fixed λ, half an epoch of fine-tuning. Each test states only
# what it changes; None leaves a setting out (to its default).
SMALL_GCP = dict(model="cifar_resnet20_v1", method="gcp", dataset="synthetic", target=0.6,
                 steps=2, reg=0.05, epochs_per_step=0.5, finetune_epochs=0.5, lr=0.02,
                 batch_size=16, train_limit=128, val_limit=32)


def _small_gcp(changes):
    settings = dict(SMALL_GCP, **changes)
    return {key: value for key, value in settings.items() if value is not None}


def small_gcp(**changes):
    """The small GCP run as ``DataRun`` keywords (no progress bar), ``changes`` applied."""
    return dict(_small_gcp(changes), progress=False)


def small_gcp_args(**changes):
    """The same run as ``prunenet prune`` flags."""
    flags = []
    for key, value in _small_gcp(changes).items():
        flags += ["--" + key.replace("_", "-"), str(value)]
    return flags + ["--no-progress"]


@pytest.fixture(autouse=True)
def _seed():
    mx.random.seed(0)
    np.random.seed(0)


# The test files of whole paths — commands run as processes, pipelines that train, notebooks,
# studies, distributed jobs, kill-and-resume — marked ``e2e``; every other test is ``unit``.
# ``pytest -m "not e2e"`` is the edit-test loop; the README's command runs both. Tests marked
# ``slow`` (the long kill/resume variant) run only when asked: ``pytest -m slow``.
E2E_FILES = {"test_demo.py", "test_study.py", "test_distributed.py", "test_notebooks.py",
             "test_kill_resume.py", "test_kill_resume_slow.py", "test_readme.py",
             "test_experiment.py", "test_gcp_run.py", "test_float16.py", "test_properties.py",
             "test_notebook_path.py", "test_resume_property.py", "test_figure1.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        e2e = item.path.name in E2E_FILES or item.get_closest_marker("e2e") is not None
        item.add_marker(pytest.mark.e2e if e2e else pytest.mark.unit)
    # the long variants (marker ``slow``) run only when the -m expression names them
    if "slow" not in (config.getoption("markexpr") or ""):
        slow = [item for item in items if item.get_closest_marker("slow") is not None]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if item.get_closest_marker("slow") is None]


def script_runner(script, out, cache, threads="2"):
    """A function that runs an experiment ``script`` in a subprocess on its ``--quick`` subset
    with ``out`` and ``cache`` as its folders, asserts its exit status (``returncode``) and
    returns its stdout (stderr when it is to fail)."""
    import subprocess
    import sys
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", threads))

    def run(*args, returncode=0):
        done = subprocess.run([sys.executable, script, "--quick", "--out", out, "--cache-dir",
                               cache] + list(args), env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == returncode, done.stderr[-3000:]
        return done.stdout if returncode == 0 else done.stderr
    return run


@pytest.fixture(scope="session")
def fashion_base(tmp_path_factory):
    """The Fashion-MNIST base the quick demo's test and the quick study share (ResNet-18, 2
    epochs on 4096 images, validated on 2000: the study's ``--quick`` base), trained once by
    ``train_base`` into a session folder: its ``config``, ``top1``, the ``messages`` of its
    training, and ``copy_to(folder)``, which puts it into a test's own cache folder."""
    import shutil
    from types import SimpleNamespace
    from prunenet.demo import DemoConfig, train_base
    config = DemoConfig(train_limit=4096, base_epochs=2.0, val_limit=2000)
    cache, messages = str(tmp_path_factory.mktemp("fashion_base")), []
    _, top1 = train_base(config, None, cache, [mx.cpu()], log=messages.append, progress=False)

    def copy_to(folder):
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(cache):
            shutil.copy2(os.path.join(cache, name), folder)
    return SimpleNamespace(config=config, top1=top1, messages=messages, copy_to=copy_to)


# The functions above as session fixtures of their own names: tests take them as fixtures and
# never import this file (benchmarks/ import the functions).
def _fixture(name, function):
    return pytest.fixture(name=name, scope="session")(lambda: function)


random_net_fixture = _fixture("random_net", random_net)
conv_chain_fixture = _fixture("conv_chain", conv_chain)
independent_count_fixture = _fixture("independent_count", independent_count)
small_gcp_fixture = _fixture("small_gcp", small_gcp)
small_gcp_args_fixture = _fixture("small_gcp_args", small_gcp_args)
script_runner_fixture = _fixture("script_runner", script_runner)
