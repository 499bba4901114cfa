"""The public Python API (prunenet.prune, prunenet.GCP, prunenet.finetune) and the command line on
a user's own exported network, with transfer to another class count — through public names
only. Every result's MACs are checked against ``prunenet count`` of the exported result."""
import argparse
import json
import os

import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo import get_model
from gluoncv.model_zoo.resnetv1b import ResNetV1b
from mxnet import gluon
from mxnet.gluon import nn

import prunenet
from prunenet.gcp.schedule import one_se_rule
from prunenet import plot
from prunenet.cli import main

SIZE = 32
SHAPE = (1, 3, SIZE, SIZE)


def randomise(net, seed=0):
    """Seeded weights, and BatchNorm γ (both signs), β, μ, σ² random (GluonCV's 1/0/0/1 hide
    slicing mistakes)."""
    net.initialize(mx.init.Xavier(), force_reinit=True)
    net(mx.nd.zeros(SHAPE))
    rng = np.random.RandomState(seed)
    for name, p in net.collect_params().items():
        s = p.shape
        value = {"_gamma": lambda: rng.uniform(0.5, 1.5, s) * rng.choice([-1, 1], s),
                 "_beta": lambda: rng.normal(0, 0.5, s),
                 "_running_mean": lambda: rng.normal(0, 0.5, s),
                 "_running_var": lambda: rng.uniform(0.5, 2.0, s)}
        for suffix, make in value.items():
            if name.endswith(suffix):
                p.set_data(mx.nd.array(make()))
    return net


class Residual(nn.HybridBlock):
    """A user's own network: a stem, one residual block (a tied stream) and a strided head."""

    def __init__(self, classes=10, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.stem = nn.HybridSequential()
            self.stem.add(nn.Conv2D(32, 3, padding=1, use_bias=False), nn.BatchNorm(),
                          nn.Activation("relu"))
            self.body = nn.HybridSequential()
            self.body.add(nn.Conv2D(32, 3, padding=1, use_bias=False), nn.BatchNorm(),
                          nn.Activation("relu"), nn.Conv2D(32, 3, padding=1, use_bias=False),
                          nn.BatchNorm())
            self.head = nn.HybridSequential()
            self.head.add(nn.Conv2D(64, 3, strides=2, padding=1, use_bias=False),
                          nn.BatchNorm(), nn.Activation("relu"), nn.GlobalAvgPool2D(),
                          nn.Dense(classes))

    def hybrid_forward(self, F, x):
        x = self.stem(x)
        return self.head(F.relu(x + self.body(x)))


def counted(block, tmp_path, tag):
    """``prunenet count --json`` of ``block`` exported as a symbol/params pair."""
    block.hybridize()
    block(mx.nd.zeros(SHAPE))
    prefix = str(tmp_path / tag)
    block.export(prefix)
    return count_pair(f"{prefix}-symbol.json", f"{prefix}-0000.params")


def count_pair(symbol, params, capsys=None):
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["count", "--symbol", symbol, "--params", params, "--input-size", str(SIZE),
                     "--json"]) == 0
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def check_result(small, net_before, tmp_path, tag, target=0.5):
    report = small.report
    assert report["achieved"] <= target
    assert report["macs_after"] < report["macs_before"]
    assert report["surgery_max_abs_diff"] < 1e-4
    assert counted(small, tmp_path, tag)["macs"] == report["macs_after"]
    assert report["macs_before"] == counted(net_before, tmp_path, tag + "-unpruned")["macs"]


def test_prune_resnet18_v1b_gives_a_smaller_gluoncv_resnet(tmp_path):
    net = randomise(get_model("resnet18_v1b", classes=10))
    before = {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}
    small = prunenet.prune(net, "l1", "flops", 0.5, input_shape=SHAPE)
    assert isinstance(small, ResNetV1b)
    assert all(np.array_equal(p.data().asnumpy(), before[k])  # the input is left as it was
               for k, p in net.collect_params().items())
    check_result(small, net, tmp_path, "r18")
    assert small.report["widths"]["resnetv1b_conv0_fwd"][0] <= 64


def test_prune_mobilenetv2_and_a_custom_residual_block(tmp_path):
    for tag, net, method in (("mbv2", get_model("mobilenetv2_1.0", classes=10), "uniform"),
                             ("custom", Residual(), "l1")):
        net = randomise(net)
        small = prunenet.prune(net, method, "params", 0.6, input_shape=SHAPE)
        assert isinstance(small, gluon.SymbolBlock) and small.report["objective"] == "params"
        assert small.report["params_after"] <= 0.6 * small.report["params_before"]
        check_result(small, net, tmp_path, tag, target=0.6)


def loader(n=64, batch=16, size=SIZE, classes=10, seed=0, shuffle=True):
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(n, 3, size, size)).astype(np.float32)
    y = rng.randint(0, classes, n).astype(np.float32)
    return gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), batch_size=batch,
                                 shuffle=shuffle, last_batch="discard")


def test_gcp_on_a_dataloader_prunes_a_custom_block_and_the_pruned_equals_the_masked(tmp_path):
    net = randomise(Residual())
    gcp = prunenet.GCP(net, target=0.5, input_shape=SHAPE, steps=2, reg=1e-3,
                       epochs_per_step=0.5, lr=0.01)
    assert "0/2 steps" in repr(gcp) and len(repr(gcp)) < 200
    graph = prunenet.trace(net, SHAPE)
    selection = prunenet.select(graph, prunenet.cost_model(graph, "flops"),
                                [np.arange(g.width, dtype=float) for g in graph.groups], 0.5)
    assert len(repr(selection)) < 100 + 12 * len(graph.groups) and "/32" in repr(selection)
    with pytest.raises(prunenet.PrunenetError, match="call fit"):
        gcp.prune()
    gcp.fit(loader(), val_data=loader(32, shuffle=False, seed=1))
    assert [r["phase"] for r in gcp.history] == ["regularize", "debias"] * 2
    assert all(0.0 <= r["top1"] <= 1.0 for r in gcp.history)
    assert [0.0 <= r["val_top1"] <= 1.0 for r in gcp.history if "val_top1" in r] == [True] * 2
    small = gcp.prune()
    x = mx.nd.array(np.random.RandomState(5).normal(size=(4,) + SHAPE[1:]))
    masked, pruned = gcp.masked(x).asnumpy(), small(x).asnumpy()
    assert np.abs(masked).max() > 1e-2  # a real signal, not zeros
    assert np.abs(masked - pruned).max() <= 1e-4 * max(1.0, np.abs(masked).max())
    check_result(small, randomise(Residual()), tmp_path, "gcp")
    folder = gcp.save(str(tmp_path / "run"))
    assert {"report.json", "steps.csv", "pruned-symbol.json", "pruned-0000.params"} <= \
        set(os.listdir(folder))
    with open(os.path.join(folder, "steps.csv")) as f:
        lines = f.read().strip().splitlines()
    assert len(lines) == 1 + len(gcp.history) and lines[0].endswith(",time_s,val_top1")
    curves = plot.curves_figure(folder)  # the held-out top-1 is a series of its own
    legend = [t.get_text() for t in curves.axes[1].get_legend().get_texts()]
    assert legend == ["training batches", "held-out data"]
    result = prunenet.finetune(small, loader(), epochs=1, lr=0.01, lr_mode="step",
                               hybridize=False)  # GluonCV's --lr-mode step, --mode imperative
    assert result["batches"] == 4 and np.isfinite(result["loss"])


def test_gcp_reads_an_mx_io_iterator_and_passes_schedule_options_through():
    net = randomise(Residual())
    rng = np.random.RandomState(0)
    it = mx.io.NDArrayIter(rng.normal(size=(32,) + SHAPE[1:]).astype(np.float32),
                           rng.randint(0, 10, 32).astype(np.float32), batch_size=16)
    gcp = prunenet.GCP(net, target=0.7, input_shape=SHAPE, steps=1, momentum=0.5, reg=0.01)
    assert gcp.config.momentum == 0.5
    assert gcp.fit(it).prune().report["achieved"] <= 0.7
    with pytest.raises(prunenet.PrunenetError, match="no option 'stpes'.*steps"):
        prunenet.GCP(randomise(Residual()), input_shape=SHAPE, stpes=2)


def test_gcp_auto_reg_scores_the_grid_on_heldout_batches():
    net = randomise(Residual())

    def batches(n, seed):
        r = np.random.RandomState(seed)
        return [(mx.nd.array(r.normal(size=(8,) + SHAPE[1:])), mx.nd.array(r.randint(0, 10, 8)))
                for _ in range(n)]
    gcp = prunenet.GCP(net, target=0.7, input_shape=SHAPE, steps=1, reg="auto",
                       shrink_grid=[1.0], search_fraction=0.5)
    with pytest.raises(prunenet.PrunenetError, match="heldout_data"):
        gcp.fit(batches(2, 0))  # a list cannot be split: one line says what to pass
    small = gcp.fit(batches(2, 0), heldout_data=batches(1, 5)).prune()
    assert gcp.search["grid"] == [0.0, 1.0] and len(gcp.search["per_image"][1]) == 8
    chosen = one_se_rule(gcp.search["per_image"], gcp.search["admissible"])[0]
    assert gcp.config.reg == gcp.search["regs"][chosen]
    assert small.report["achieved"] <= 0.7


def test_gcp_and_the_command_line_default_to_one_lambda_rule_read_from_one_place():
    """``prunenet.GCP()`` and ``prunenet prune`` resolve λ from the same place, ``DataRun.reg``'s
    field (tests/test_settings_one_source.py changes it there and sees both follow)."""
    import prunenet.gcp.schedule as schedule
    from prunenet.cli import build_parser
    from prunenet.options import default_of
    from prunenet.run.settings import DataRun
    args = build_parser().parse_args(["prune", "--model", "m", "--method", "gcp", "--target",
                                      "0.5", "--out", "x"])
    assert args.reg == default_of(DataRun, "reg") == schedule.DEFAULT_REG == \
        DataRun("m", "x", 0.5).reg == "auto"
    assert prunenet.GCP(randomise(Residual()), input_shape=SHAPE).auto


@pytest.mark.e2e  # a whole path: GCP with the λ search, trained
def test_gcp_auto_holds_out_of_a_dataloader_by_index():
    """Without heldout_data a DataLoader's dataset is split: the held-out images are disjoint
    from the trained ones, and together they are the whole dataset."""
    data = loader(n=200, batch=16)
    train, held = prunenet.api.hold_out_loader(data, 2048, seed=3)
    seen = [tuple(np.round(x.asnumpy().ravel()[:4], 5)) for x, _ in
            ((b[0][i], None) for b in train for i in range(len(b[0])))]
    kept = [tuple(np.round(x.asnumpy().ravel()[:4], 5)) for b in held for x in b[0]]
    assert len(kept) == 20 and len(set(kept) & set(seen)) == 0  # a tenth, never trained on
    train_all = gluon.data.DataLoader(train._dataset, batch_size=16)
    every = [tuple(np.round(x.asnumpy().ravel()[:4], 5)) for b in train_all for x in b[0]]
    assert sorted(every + kept) == sorted(tuple(np.round(x.ravel()[:4], 5))
                                          for x in data._dataset._data[0])
    gcp = prunenet.GCP(randomise(Residual()), target=0.7, input_shape=SHAPE, steps=1,
                       shrink_grid=[1.0], search_fraction=0.5)
    gcp.fit(data)
    assert len(gcp.search["per_image"][0]) == 20


def test_batches_that_do_not_fit_the_network_say_which_shape():
    gcp = prunenet.GCP(randomise(Residual()), target=0.5, input_shape=SHAPE, steps=1)
    with pytest.raises(prunenet.PrunenetError, match=r"batch 0 holds data of shape "
                                                     r"\(16, 3, 28, 28\).*\(1, 3, 32, 32\)"):
        gcp.fit(loader(size=28))


class Unknown(nn.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = nn.Conv2D(16, 3, padding=1)
            self.out = nn.Dense(10)

    def hybrid_forward(self, F, x):
        return self.out(F.LRN(self.conv(x), nsize=3, name="norm_lrn"))


def test_a_network_that_does_not_trace_names_the_op_and_node():
    net = Unknown()
    net.initialize()
    with pytest.raises(prunenet.UnsupportedOpError, match=r"unsupported op LRN \(node unknown\d+_norm_lrn\)"):
        prunenet.prune(net, "l1", target=0.5, input_shape=SHAPE, strict=True)

    class Plain(gluon.Block):
        def forward(self, x):
            return x
    with pytest.raises(prunenet.PrunenetError, match="not a gluon.HybridBlock"):
        prunenet.prune(Plain(), input_shape=SHAPE)
    with pytest.raises(prunenet.PrunenetError, match="prunenet.GCP"):
        prunenet.prune(net, "gcp", input_shape=SHAPE)


def exported(tmp_path, classes=10, seed=0):
    net = randomise(Residual(classes=classes, prefix="mine_"), seed)
    net.hybridize()
    net(mx.nd.zeros(SHAPE))
    prefix = str(tmp_path / f"net{classes}")
    net.export(prefix)
    return f"{prefix}-symbol.json", f"{prefix}-0000.params"


def teacher_params(tmp_path):
    teacher = randomise(get_model("cifar_resnet20_v1", classes=10))
    teacher.save_parameters(str(tmp_path / "teacher.params"))
    return str(tmp_path / "teacher.params")


@pytest.mark.e2e  # a whole path: a command (GCP trains)
@pytest.mark.parametrize("method", ["l1", "gcp"])
def test_cli_prunes_an_exported_symbol_params_pair(tmp_path, method):
    symbol, params = exported(tmp_path)
    out = tmp_path / "out"
    extra = ["--dataset", "synthetic", "--train-limit", "64", "--val-limit", "32",
             "--batch-size", "16", "--steps", "1", "--finetune-epochs", "0.25",
             "--no-progress", "--teacher", "cifar_resnet20_v1", "--teacher-params",
             teacher_params(tmp_path)] if method == "gcp" else []
    assert main(["prune", "--symbol", symbol, "--params", params, "--input-size", str(SIZE),
                 "--method", method, "--target", "0.5", "--out", str(out)] + extra) == 0
    with open(out / "report.json") as f:
        report = json.load(f)
    assert report["model"] == "net10" and report["achieved"] <= 0.5
    if method == "gcp":
        assert report["settings"]["teacher"] == "cifar_resnet20_v1"
    assert count_pair(str(out / "pruned-symbol.json"),
                      str(out / "pruned-0000.params"))["macs"] == report["macs_after"]
    assert count_pair(symbol, params)["macs"] == report["macs_before"]


def test_symbol_without_params_or_with_another_networks_params_names_the_parameter(
        tmp_path, capsys):
    symbol, params = exported(tmp_path)
    args = ["prune", "--symbol", symbol, "--input-size", str(SIZE), "--method", "l1",
            "--target", "0.5", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "needs --params" in capsys.readouterr().err
    other = get_model("cifar_resnet20_v1")
    other.initialize()
    other.hybridize()
    other(mx.nd.zeros(SHAPE))
    other.export(str(tmp_path / "other"))
    assert main(args + ["--params", str(tmp_path / "other-0000.params")]) == 2
    err = capsys.readouterr().err
    assert "has no mine_conv0_weight" in err and len(err.strip().splitlines()) == 1
    _, params2 = exported(tmp_path, classes=2)  # same layer names, another output width
    assert main(args + ["--params", params2]) == 2
    assert "mine_dense0_weight has shape (2, 64)" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def image_folder(root, classes=("cat", "dog"), per_class=8):
    import cv2
    rng = np.random.RandomState(0)
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            os.makedirs(os.path.join(root, split, name))
            for i in range(per_class):
                img = np.clip(rng.normal(60 + 120 * c, 30, (36, 36, 3)), 0, 255)
                cv2.imwrite(os.path.join(root, split, name, f"{i}.png"), img.astype(np.uint8))


@pytest.mark.e2e  # a whole path: a transfer run that trains
def test_transfer_from_a_10_class_params_file_to_a_2_class_folder(tmp_path):
    net = randomise(get_model("cifar_resnet20_v1", classes=10))
    net.save_parameters(str(tmp_path / "ten.params"))
    image_folder(str(tmp_path / "images"))
    out = tmp_path / "out"
    assert main(["prune", "--model", "cifar_resnet20_v1", "--params", str(tmp_path / "ten.params"),
                 "--classes", "2", "--dataset", "folder", "--data-dir", str(tmp_path / "images"),
                 "--input-size", str(SIZE), "--method", "gcp", "--target", "0.6", "--steps", "1",
                 "--batch-size", "8", "--finetune-epochs", "1", "-j", "0", "--no-progress",
                 "--out", str(out)]) == 0
    with open(out / "report.json") as f:
        report = json.load(f)
    assert report["transfer"]["from_classes"] == 10 and report["transfer"]["classes"] == 2
    assert [n.split("_", 1)[1] for n in report["transfer"]["replaced"]] == \
        ["dense0_weight", "dense0_bias"]
    with open(out / "log.txt") as f:
        assert "10-class output layer" in f.read()
    assert [r for r in report["widths"].values()][-1] == [2, 2]
    assert np.isfinite(report["top1_after"])
    assert count_pair(str(out / "pruned-symbol.json"),
                      str(out / "pruned-0000.params"))["macs"] == report["macs_after"]
    # data-free, the same transfer: every kept filter is the params file's own (not re-drawn)
    out = tmp_path / "l1"
    assert main(["prune", "--model", "cifar_resnet20_v1", "--params", str(tmp_path / "ten.params"),
                 "--classes", "2", "--method", "l1", "--target", "0.6", "--out", str(out)]) == 0
    with open(out / "report.json") as f:
        assert json.load(f)["transfer"]["from_classes"] == 10
    stored = next(v.asnumpy() for v in mx.nd.load(str(tmp_path / "ten.params")).values()
                  if v.ndim == 4 and v.shape[1] == 3)  # the stem's filters
    pruned = {k: v.asnumpy() for k, v in mx.nd.load(str(out / "pruned-0000.params")).items()}
    stem = next(v for k, v in pruned.items() if k.endswith("_conv0_weight"))
    assert 0 < len(stem) and all((row == stored).all(axis=(1, 2, 3)).any() for row in stem)


def test_gluoncv_flag_names_help_and_defaults(tmp_path, capsys):
    from prunenet.cli import build_parser
    from prunenet.training.train import learning_rate
    parser = build_parser()
    args = parser.parse_args(["prune", "--num-epochs", "2", "--save-dir", "x", "--wd", "0",
                              "--momentum", "0.5", "--mode", "imperative", "--lr-mode", "step"])
    assert (args.finetune_epochs, args.out, args.wd, args.momentum, args.mode, args.lr_mode) == \
        (2.0, "x", 0.0, 0.5, "imperative", "step")
    prune = parser._subparsers._group_actions[0].choices["prune"]
    for action in prune._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{action.option_strings} has no help"
        if action.default not in (None, False, argparse.SUPPRESS) and action.nargs != 0:
            assert "default" in action.help, f"{action.option_strings} names no default"
    step = learning_rate("step", 1.0, 100)
    assert [step(0), step(49), step(50), step(75)] == [1.0, 1.0, 0.1, pytest.approx(0.01)]
    with pytest.raises(SystemExit):
        main(["prune", "--model", "cifar_resnet20_v1", "--bogus"])
    assert "see prunenet prune --help" in capsys.readouterr().err
    assert main(["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--target", "0.5",
                 "--save-dir", str(tmp_path / "o")]) == 0
    assert "pruning randomly initialised weights" in capsys.readouterr().out
    assert main(["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--target", "0.5",
                 "--teacher-params", "t.params", "--out", str(tmp_path / "t")]) == 2
    assert "--teacher-params goes with --teacher MODEL" in capsys.readouterr().err
    assert os.path.exists(tmp_path / "o" / "report.json")


def test_transfer_in_the_api_replaces_the_output_layer_only():
    net = randomise(Residual())
    before = {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}
    transfer = prunenet.replace_classifier(net, 2, SHAPE)
    assert (transfer["from_classes"], transfer["classes"]) == (10, 2)
    after = {k: p.data().asnumpy() for k, p in net.collect_params().items()}
    assert sorted(after) == sorted(before)  # the same names
    assert {k for k in after if after[k].shape != before[k].shape} == set(transfer["replaced"])
    assert all(np.array_equal(after[k], before[k]) for k in after if k not in transfer["replaced"])
    assert net(mx.nd.zeros(SHAPE)).shape == (1, 2)
    # GCP(classes=...) does the same first, and reports it
    mbv2 = randomise(get_model("mobilenetv2_0.25", classes=10))
    small = prunenet.GCP(mbv2, target=0.7, input_shape=SHAPE, steps=1, classes=2).fit(
        loader(32, classes=2)).prune()
    assert small(mx.nd.zeros(SHAPE)).shape == (1, 2)
    assert small.report["transfer"]["from_classes"] == 10


def test_docs_name_every_public_name_and_the_docstring_examples_run():
    import doctest
    import prunenet.api
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "api.md")) as f:
        text = f.read()
    missing = [name for name in prunenet.__all__ if f"`{name}" not in text]
    assert not missing, missing
    result = doctest.testmod(prunenet.api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0


@pytest.mark.e2e  # a whole path: GCP trains, then save measures in ONNX Runtime
def test_the_api_measures_in_the_runtime_it_is_given(tmp_path):
    """``runtime=``: an unknown one is refused in one line naming the choices; with
    ``onnxruntime``, ``GCP.save``'s speed check is measured in ONNX Runtime, as the command
    line's ``--runtime onnxruntime`` does."""
    net = randomise(Residual())
    with pytest.raises(prunenet.PrunenetError, match="unknown runtime 'tensorrt': choose one "
                                                     "of mxnet, onnxruntime"):
        prunenet.prune(net, "l1", "flops", 0.5, input_shape=SHAPE, runtime="tensorrt")
    gcp = prunenet.GCP(net, target=0.6, input_shape=SHAPE, steps=1, reg=0.0,
                       epochs_per_step=0.5, lr=0.01, runtime="onnxruntime")
    gcp.fit(loader()).prune()
    with open(os.path.join(gcp.save(str(tmp_path / "run")), "report.json")) as f:
        speed = json.load(f)["speed_check"]
    assert speed["runtime"].startswith("onnxruntime") and speed["speedup"] > 0
