"""Data-parallel runs on several devices, with two CPU contexts standing in for two GPUs
(``PRUNENET_CPU_CONTEXTS=2``): every network on every device, one copy of the truth for the
weights, BatchNorm statistics averaged over the devices, and few host synchronisations."""
import glob
import os

import mxnet as mx
import numpy as np
import pytest

from prunenet.training import data as datasets
from prunenet.io import devices
from prunenet.core import replicas
from prunenet.core.costs import cost_model
from prunenet.errors import PrunenetError
from prunenet.io.files import load_params, read_json
from prunenet.core.graph import trace
from prunenet.gcp.schedule import GCPSchedule, GCPConfig
from prunenet.training.models import load_model, randomize_batchnorm
from prunenet.io.devices import CPU_CONTEXTS, contexts
from prunenet.run.folder import data_run
from prunenet.run.settings import DataRun
from prunenet.zoo.pruned import load_pruned
from prunenet.training.train import BatchStream, FinetuneConfig, finetune
from prunenet.gcp.masked import DEBIAS, REGULARIZE, MaskedNetwork

TWO = [mx.cpu(0), mx.cpu(1)]


@pytest.fixture
def two_contexts(monkeypatch):
    monkeypatch.setenv(CPU_CONTEXTS, "2")
    assert contexts("") == TWO


@pytest.fixture(scope="module")
def small_run(small_gcp):
    """``small_run(out, **changes)``: the small GCP run on resnet18_v1b at lr 0.16 (2 devices x
    16: 32 a batch), target 0.5; its report."""
    small = small_gcp(model="resnet18_v1b", target=0.5, lr=0.16)

    def run(out, **kwargs):
        return data_run(DataRun(out=str(out), **dict(small, **kwargs)), log=None)
    return run


def _gcp(ctx, reg=0.05, epochs=1.0, **kwargs):
    net = load_model("resnet18_v1b", classes=10, seed=0, input_size=32, ctx=ctx)
    randomize_batchnorm(net, seed=1)
    graph = trace(net, (1, 3, 32, 32))
    wrapper = MaskedNetwork(net, graph, ctx)
    config = GCPConfig(target=0.5, steps=2, reg=reg, epochs_per_step=epochs, lr=0.05)
    gcp = GCPSchedule(wrapper, cost_model(graph, "flops"), config, ctx, progress=False, **kwargs)
    train = datasets.synthetic(128, 10, seed=0)
    stream = BatchStream(lambda e, s: train.batches(32, shuffle=True, seed=0, epoch=e, start=s,
                                                    drop_last=True))
    return gcp, stream


def _scales(wrapper):
    """Every regularised scale (masks and BN γ) on every device, by name."""
    names = [wrapper.scale_name(g.index) for g in wrapper.graph.prunable_groups]
    return {n: [a.asnumpy() for a in wrapper._param(n).list_data()] for n in names}


class _Stop(Exception):
    pass


def _after_regularize(ctx):
    """The scales after step 1's regularize phase (4 batches) on ``ctx``, and the ones before."""
    gcp, stream = _gcp(ctx)
    gcp.wrapper.rescale()  # what run_step does first; done here to see the scales before
    gcp.config.rescale = False
    before = _scales(gcp.wrapper)
    seen = {}

    def on_progress(state):
        if state["phase"] == DEBIAS:  # regularize and select are done
            seen.update(_scales(gcp.wrapper))
            raise _Stop
    with pytest.raises(_Stop):
        gcp.run_step(1, stream, on_progress=on_progress)
    return before, seen, gcp.wrapper.keep


def test_every_network_of_a_run_lives_on_every_device():
    net = load_model("resnet18_v1b", classes=10, input_size=32, ctx=TWO)
    assert all(p.list_ctx() == TWO for p in net.collect_params().values())
    replicas.place(net, [mx.cpu(0)])
    assert all(p.list_ctx() == [mx.cpu(0)] for p in net.collect_params().values())


def test_averaging_the_statistics_midway_changes_nothing_at_the_end():
    """Each device's running statistics are a moving average of its own batches, so averaging
    them over the devices after any batch (a checkpoint) gives what averaging once at the end
    gives; here with a static_alloc network, whose writes to them are asynchronous."""
    from mxnet import autograd
    rng = np.random.RandomState(0)
    batches = [[mx.nd.array(rng.normal(i + 3 * k, 1, (4, 3, 32, 32)), ctx=c)
                for i, c in enumerate(TWO)] for k in range(2)]
    ends = []
    for midway in (False, True):
        net = load_model("resnet18_v1b", classes=10, input_size=32, ctx=TWO)
        net.hybridize(static_alloc=True, static_shape=True)
        for k, xs in enumerate(batches):
            with autograd.record():
                outs = [net(x) for x in xs]
            for o in outs:
                o.backward()
            if midway and k == 0:
                replicas.average_running_stats(net)
        replicas.average_running_stats(net)
        ends.append({n: [a.asnumpy() for a in p.list_data()]
                     for n, p in net.collect_params().items() if n.endswith("running_var")})
    for name, (a, b) in ends[0].items():
        np.testing.assert_array_equal(a, b)  # averaged: the devices agree
        assert np.abs(a - 1).max() > 0.1  # moved from the initial 1
        np.testing.assert_allclose(ends[1][name][0], a, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_regularize_step_on_two_devices_equals_one_device_fed_the_same_batches():
    """BatchNorm on running statistics makes every image's gradient independent of the others,
    so two devices with half a batch each must reach one device's values (float32 summation
    order aside) — and the selection made from them."""
    start1, one, keep1 = _after_regularize([mx.cpu(0)])
    start2, two, keep2 = _after_regularize(TWO)
    assert [k.sum() for k in keep1] == [k.sum() for k in keep2]
    moved = max(float(np.abs(one[n][0] - start1[n][0]).max()) for n in one)
    assert moved > 1e-3  # the phase trained
    for name in one:
        np.testing.assert_array_equal(start1[name][0], start2[name][0])
        a, b = two[name]
        np.testing.assert_array_equal(a, b)  # both devices hold the same values
        np.testing.assert_allclose(a, one[name][0], rtol=0, atol=2e-5 * max(moved, 1.0),
                                   err_msg=name)


def test_removed_channels_stay_exactly_zero_on_every_device_through_later_steps():
    gcp, stream = _gcp(TWO, reg=0.5, epochs=0.5)
    gcp.run_step(1, stream)
    w = gcp.wrapper
    removed = {w.scale_name(g.index): ~w.keep[g.index] for g in w.graph.prunable_groups
               if not w.keep[g.index].all()}
    assert removed
    worst = []

    def on_progress(state):
        for name, rows in removed.items():
            for copy in w._param(name).list_data():
                worst.append(float(np.abs(copy.asnumpy()[rows]).max()))
    gcp.run_step(2, stream, on_progress=on_progress)
    assert len(worst) > 4 * len(removed)  # checked after every batch of both phases
    assert max(worst) == 0.0


@pytest.fixture(scope="module")
def whole(tmp_path_factory, small_run):
    """A GCP run (2 steps, distilled fine-tuning) on two devices, with the per-device running
    statistics seen by every averaging."""
    calls = []
    original = replicas.average_running_stats

    def recording(params):
        mx.nd.waitall()
        calls.append({n: np.stack([a.asnumpy() for a in p.list_data()])
                      for n, p in replicas._items(params)
                      if n.endswith(replicas.RUNNING_STATS) and p._data is not None})
        original(params)
    out = tmp_path_factory.mktemp("devices") / "whole"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CPU_CONTEXTS, "2")
        mp.setattr(replicas, "average_running_stats", recording)
        report = small_run(out, distill=True)
    return report, calls, out


@pytest.mark.e2e  # a whole path: a GCP run that trains
def test_gcp_and_distilled_finetuning_on_two_devices_save_the_devices_average_statistics(whole):
    """Each device normalises its own share of a batch in the debias and fine-tuning phases,
    so the devices' running statistics differ; what is saved is their average."""
    report, calls, out = whole
    assert [r["phase"] for r in _steps(out)] == \
        ["regularize", "debias"] * 2 + ["surgery", "finetune"]
    assert report["settings"]["distill"] and 0.5 - report["granularity"] < report["achieved"] <= 0.5
    saved = load_params(str(out / "pruned.params"))
    differing = [c for c in calls if c and max(float(np.abs(v[0] - v[1]).max())
                                               for v in c.values()) > 1e-4]
    assert len(differing) >= 3  # two debias phases and the fine-tuning
    last = differing[-1]  # the end of fine-tuning, before the network is saved
    for name, copies in last.items():
        key = "resnetv1d_" + name.split("_", 1)[1]
        assert saved[key].shape == copies.shape[1:]  # the pruned network's statistics
        np.testing.assert_allclose(saved[key], copies.mean(axis=0), rtol=1e-6, atol=1e-6,
                                   err_msg=name)


def _steps(folder):
    import csv
    with open(os.path.join(folder, "steps.csv")) as f:
        return list(csv.DictReader(f))


@pytest.mark.e2e  # a whole path: GCP runs that train
def test_first_step_widths_on_two_devices_match_one_device(tmp_path, two_contexts, monkeypatch,
                                                           small_run):
    """The widths chosen after a regularize phase (BatchNorm on running statistics) do not
    depend on how the batch is split; later steps follow debias phases, which normalise each
    device's share alone and so may differ."""
    settings = dict(steps=1, finetune_epochs=0.0, epochs_per_step=1.0)
    two = small_run(tmp_path / "two", **settings)  # 16 images on each of 2 devices
    monkeypatch.setenv(CPU_CONTEXTS, "1")
    one = small_run(tmp_path / "one", batch_size=32, **settings)  # the same 32 on one
    assert two["group_widths"] == one["group_widths"]
    assert _steps(tmp_path / "two")[0]["lr"] == _steps(tmp_path / "one")[0]["lr"] == "0.02"
    assert two["achieved"] < 0.6


@pytest.mark.e2e  # a whole path: a GCP run, interrupted and resumed
def test_resume_on_two_devices_gives_the_uninterrupted_network(whole, tmp_path, two_contexts,
                                                                monkeypatch, small_run):
    report, _, folder = whole
    original = GCPSchedule.run_step

    def interrupted(self, t, stream, **kwargs):
        if t == 2:
            raise KeyboardInterrupt
        return original(self, t, stream, **kwargs)
    monkeypatch.setattr(GCPSchedule, "run_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        small_run(tmp_path / "cut", distill=True)
    monkeypatch.setattr(GCPSchedule, "run_step", original)
    resumed = data_run(DataRun(model="", out=str(tmp_path / "cut"), target=0.5), resume=True,
                       log=None)
    assert resumed["group_widths"] == report["group_widths"]
    a = load_pruned(str(folder), ctx=TWO).collect_params()
    b = load_pruned(str(tmp_path / "cut"), ctx=TWO).collect_params()
    for (na, pa), (nb, pb) in zip(a.items(), b.items()):
        assert pa.list_ctx() == TWO
        np.testing.assert_allclose(pa.data(mx.cpu(1)).asnumpy(), pb.data(mx.cpu(1)).asnumpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=na)


@pytest.mark.e2e  # a whole path: a transfer run that trains
def test_a_transfer_run_on_two_devices(tmp_path, two_contexts):
    from prunenet import experiment as ex
    from prunenet.cli import main
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = ex.make_smoke_folder(str(tmp_path / "caltech"))
    out = tmp_path / "results" / "caltech"
    assert main(["experiment", os.path.join(root, "experiments", "configs",
                                            "caltech256_resnet50_v1d.json"),
                 "--smoke", "--only", "*-0.5", "--out", str(out), "--data-dir", data]) == 0
    (report,) = [read_json(p) for p in glob.glob(str(out / "runs" / "*" / "report.json"))
                 if read_json(p).get("dataset") == "caltech256" and read_json(p)["target"]]
    assert report["classes"] == 257 and np.isfinite(report["top1_after"])


class _SyncCounter:
    """Counts the host's waits for the devices: ``asnumpy`` (``asscalar`` goes through it),
    ``wait_to_read`` and ``waitall``."""

    def __init__(self, monkeypatch):
        self.count = 0
        for owner, name in ((mx.nd.NDArray, "asnumpy"), (mx.nd.NDArray, "wait_to_read"),
                            (mx.nd, "waitall")):
            monkeypatch.setattr(owner, name, self._counting(getattr(owner, name)))

    def _counting(self, fn):
        def wrapped(*args, **kwargs):
            self.count += 1
            return fn(*args, **kwargs)
        return wrapped


def _per_batch(marks):
    """Host syncs between consecutive batches: marks are (batch done, count) pairs."""
    return [b[1] - a[1] for a, b in zip(marks, marks[1:]) if b[0] == a[0] + 1]


def test_training_loops_wait_for_the_devices_once_per_sync_every_batches(monkeypatch):
    ctx, every = TWO, 3
    gcp, stream = _gcp(ctx, epochs=1.0, sync_every=every)  # 4 batches per phase
    counter = _SyncCounter(monkeypatch)
    marks = {REGULARIZE: [], DEBIAS: []}
    gcp.run_step(1, stream, on_progress=lambda s: marks[s["phase"]].append(
        (s["done"], counter.count)))
    ft_marks = []
    net = gcp.wrapper.block(DEBIAS)
    finetune(net, stream, FinetuneConfig(epochs=1.0), ctx, progress=False, sync_every=every,
             on_batch=lambda trainer, done, sums: ft_marks.append((done, counter.count)))
    for what, m in (("regularize", marks[REGULARIZE]), ("debias", marks[DEBIAS]),
                    ("finetune", ft_marks)):
        syncs = _per_batch(m)
        assert len(syncs) >= 3, what
        assert max(syncs) <= 1, (what, syncs)
        batches = len(syncs)
        assert sum(syncs) <= -(-batches // every), (what, syncs)


def test_latency_tables_are_keyed_by_the_gpu_model(monkeypatch, tmp_path):
    """A table measured on one GPU model is not reused on another: its key and default file
    name carry the model and driver that nvidia-smi reports (here, as it would answer)."""
    from prunenet.latency import LatencyTable, default_table_path
    answers = {0: "Tesla V100-SXM2-16GB, 470.57.02", 1: "NVIDIA A100-SXM4-40GB, 470.57.02"}
    monkeypatch.setattr(devices, "_gpu_query", lambda i: answers.get(i, ""))
    v100, a100 = devices.device_model(mx.gpu(0)), devices.device_model(mx.gpu(1))
    assert v100 == "Tesla V100-SXM2-16GB (driver 470.57.02)"
    assert os.path.basename(default_table_path(v100, 64, "float16")) == \
        "latency-Tesla-V100-SXM2-16GB-driver-470.57.02-b64-float16.json"
    assert default_table_path(v100, 64) != default_table_path(a100, 64)
    assert devices.device_model(mx.gpu(2)) == "gpu2"  # nvidia-smi could not say
    assert devices.device_model(mx.cpu()) == "cpu"
    table = LatencyTable(v100, 64, "float16")
    table.references = [1.0]
    path = table.save(str(tmp_path / "table.json"))
    with pytest.raises(PrunenetError, match="is for Tesla V100.*not NVIDIA A100"):
        LatencyTable(a100, 64, "float16")._load(path)


def test_batch_size_is_per_device_and_old_run_folders_keep_their_meaning(tmp_path):
    from prunenet.io.files import write_json
    from prunenet.run.settings import saved_run
    new = DataRun(model="resnet50_v1d", out="x", target=0.5, batch_size=32, lr=0.01)
    assert new.images_per_batch(8) == 256 and new.lr_factor(8) == 1.0
    assert new.lr_factor(8, workers=2) == 2.0 and new.lr_factor(1) == 0.125
    old = {"model": "resnet50_v1d", "target": 0.5, "batch_size": 256, "lr": 0.01, "gpus": "0,1"}
    write_json(str(tmp_path / "run.json"), old)  # a run folder made before
    run = saved_run(str(tmp_path))
    assert run.batch_per == "process"
    assert run.images_per_batch(8) == 256 and run.lr_factor(8, workers=2) == 1.0
    write_json(str(tmp_path / "run.json"), dict(old, batch_per="device", batch_size=32))
    assert saved_run(str(tmp_path)).images_per_batch(8) == 256


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_a_bad_cpu_context_count_is_refused_on_one_line(monkeypatch, capsys, tmp_path, value):
    from prunenet.cli import main
    monkeypatch.setenv(CPU_CONTEXTS, value)
    out = tmp_path / "run"
    assert main(["prune", "--model", "resnet18_v1b", "--method", "gcp", "--target", "0.5",
                 "--dataset", "synthetic", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{CPU_CONTEXTS}={value!r}" in err[0] and "unset it" in err[0]
    assert not out.exists()


def test_sync_every_below_1_is_refused(capsys, tmp_path):
    from prunenet.cli import main
    from prunenet.training.train import run_batches
    with pytest.raises(SystemExit) as stop:
        main(["prune", "--model", "resnet18_v1b", "--method", "gcp", "--target", "0.5",
              "--dataset", "synthetic", "--sync-every", "0", "--out", str(tmp_path / "r")])
    assert stop.value.code == 2
    assert "argument --sync-every: 0 must be at least 1" in capsys.readouterr().err
    with pytest.raises(PrunenetError, match="--sync-every 0 must be at least 1"):
        run_batches(None, None, [], [mx.cpu()], sync_every=0)


def test_experiment_configs_set_the_decoding_threads(tmp_path):
    import json
    from prunenet import experiment as ex
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "experiments", "configs", "resnet50_v1d_flops.json")
    doc = json.load(open(path))
    assert ex.decoders(ex.load_config(path)) == os.cpu_count()  # default: the machine's cores
    doc["data"]["num_workers"] = 12
    mine = tmp_path / "resnet50_v1d_flops.json"
    mine.write_text(json.dumps(doc))
    assert ex.decoders(ex.load_config(str(mine))) == 12
