"""``prunenet prune --method gcp`` end to end on synthetic data: outputs, resume, bad input."""
import csv
import os

import mxnet as mx
import numpy as np
import pytest

from prunenet.cli import main
from prunenet.io.files import read_json
from prunenet.gcp.schedule import GCPSchedule
from prunenet.run.folder import data_run
from prunenet.run.settings import DataRun
from prunenet.zoo.pruned import load_pruned

@pytest.fixture(scope="module")
def small_run(small_gcp):
    """``small_run(out, **changes)``: the small GCP run on resnet18_v1b, 3 steps, 256 images in
    batches of 32, target 0.5; its report."""
    small = small_gcp(model="resnet18_v1b", target=0.5, steps=3, batch_size=32,
                      train_limit=256, val_limit=64)

    def run(out, **kwargs):
        return data_run(DataRun(out=str(out), **dict(small, **kwargs)), log=None)
    return run


def test_data_run_writes_everything(tmp_path, small_run):
    report = small_run(tmp_path / "run")
    out = tmp_path / "run"
    assert 0.5 - report["granularity"] < report["achieved"] <= 0.5
    assert report["macs_after"] <= 0.5 * report["macs_before"]
    for key in ("top1_before", "top1_selected", "top1_after", "timings", "widths"):
        assert key in report
    assert report["surgery_max_abs_diff"] <= 1e-4 * 10
    with open(out / "steps.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "phase", "target", "achieved", "loss", "top1",
                             "zeroed_channels", "lr", "time_s"]
    assert [r["phase"] for r in rows] == ["regularize", "debias"] * 3 + ["surgery", "finetune"]
    assert float(rows[-1]["top1"]) == pytest.approx(report["top1_after"], abs=1e-5)
    assert "done:" in (out / "log.txt").read_text()
    net = load_pruned(str(out))  # the GluonCV pair loads back
    x = mx.nd.zeros((2, 3, 32, 32))
    assert net(x).shape == (2, 10)
    assert os.listdir(out / "checkpoint")


def test_resume_after_an_interruption_gives_the_same_network(tmp_path, monkeypatch, small_run):
    # with fine-tuning, in one process: its network is rebuilt from the surgery checkpoint in
    # both runs (issue #33: two fine-tunings in one process used to differ by up to 2.4e-5)
    whole = small_run(tmp_path / "whole")
    original = GCPSchedule.run_step
    calls = []

    def interrupted(self, t, stream, **kwargs):
        calls.append(t)
        if t == 2:
            raise KeyboardInterrupt  # killed during step 2, after step 1's checkpoint
        return original(self, t, stream, **kwargs)

    monkeypatch.setattr(GCPSchedule, "run_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        small_run(tmp_path / "cut")
    assert read_json(str(tmp_path / "cut" / "checkpoint" / "checkpoint.json"))["step"] == 1
    assert not (tmp_path / "cut" / "report.json").exists()
    monkeypatch.setattr(GCPSchedule, "run_step", original)
    resumed = data_run(DataRun(model="", out=str(tmp_path / "cut"), target=0.5), resume=True,
                      log=None)
    assert resumed["group_widths"] == whole["group_widths"]
    assert resumed["widths"] == whole["widths"]
    a = load_pruned(str(tmp_path / "whole")).collect_params()
    b = load_pruned(str(tmp_path / "cut")).collect_params()
    assert list(a.keys()) == list(b.keys())
    for (na, pa), (nb, pb) in zip(a.items(), b.items()):
        np.testing.assert_array_equal(pa.data().asnumpy(), pb.data().asnumpy(), err_msg=na)


def _err(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


BASE = ["prune", "--model", "resnet18_v1b", "--method", "gcp", "--target", "0.5",
        "--dataset", "synthetic", "--train-limit", "64", "--val-limit", "32", "--batch-size", "32",
        "--no-progress"]


@pytest.mark.parametrize("extra,words", [(["--reg", "-1"], "--reg"), (["--steps", "0"], "--steps"),
                                         (["--lr", "0"], "--lr")])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, capsys, extra, words):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as refused:  # by the parser: the settings' bounds (#30)
        main(BASE + extra + ["--out", str(out)])
    assert refused.value.code == 2
    assert words in _err(capsys)
    assert not out.exists()


def test_missing_dataset_and_images_that_do_not_fit(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["prune", "--model", "resnet18_v1b", "--method", "gcp", "--target", "0.5",
            "--out", str(out), "--no-progress"]
    assert main(args + ["--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in _err(capsys) and not out.exists()
    assert main(args + ["--dataset", "synthetic", "--input-size", "28"]) == 2  # 32x32 images
    assert "32x32" in _err(capsys) and not out.exists()
    # a base network trained for 3-channel images, given 1-channel Fashion-MNIST
    from prunenet.training.models import load_model
    load_model("resnet18_v1b", classes=10, input_size=28).save_parameters(str(tmp_path / "rgb.params"))
    assert main(args + ["--params", str(tmp_path / "rgb.params"), "--train-limit", "256"]) == 2
    assert "rgb.params" in _err(capsys)
    assert not (out / "report.json").exists()


def test_a_diverging_run_names_the_step_and_keeps_what_was_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(BASE + ["--lr", "1e30", "--reg", "0", "--out", str(out)]) == 2
    message = _err(capsys)
    assert "step 1/3" in message and "smaller --lr" in message
    assert (out / "run.json").exists() and not (out / "report.json").exists()


def test_too_few_images_for_one_batch(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(BASE + ["--batch-size", "128", "--out", str(out)]) == 2
    assert "no full batch of 128" in _err(capsys) and not out.exists()


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["prune", "--resume", str(tmp_path)]) == 2
    assert "run.json" in _err(capsys)


@pytest.mark.parametrize("method", ["uniform", "l1", "activation-vote"])
def test_data_free_methods_get_the_same_fine_tuning_and_outputs(tmp_path, method, small_run):
    report = small_run(tmp_path / method, method=method)
    assert report["method"] == method and 0.5 - report["granularity"] < report["achieved"] <= 0.5
    for key in ("top1_before", "top1_selected", "top1_after", "surgery_max_abs_diff"):
        assert key in report
    with open(tmp_path / method / "steps.csv") as f:
        assert [r["phase"] for r in csv.DictReader(f)] == ["surgery", "finetune"]
    assert load_pruned(str(tmp_path / method))(mx.nd.zeros((1, 3, 32, 32))).shape == (1, 10)


def test_cli_runs_a_data_free_method_with_a_dataset(tmp_path):
    out = tmp_path / "run"
    assert main(["prune", "--model", "resnet18_v1b", "--method", "uniform", "--target", "0.6",
                 "--dataset", "synthetic", "--train-limit", "64", "--val-limit", "32",
                 "--batch-size", "32", "--finetune-epochs", "0.5", "--no-progress",
                 "--out", str(out)]) == 0
    report = read_json(str(out / "report.json"))
    assert report["dataset"] == "synthetic" and "top1_after" in report


def test_a_checkpoint_of_non_finite_parameters_is_refused_and_the_last_good_one_kept(tmp_path):
    from prunenet.io.checkpoint import load_checkpoint, save_checkpoint
    from prunenet.training.train import NonFiniteError
    folder = str(tmp_path / "ckpt")
    save_checkpoint(folder, "good", {"w": np.ones(3, np.float32)}, step=1)
    with pytest.raises(NonFiniteError, match=r"w became NaN or Inf \(at checkpoint bad\)"):
        save_checkpoint(folder, "bad", {"w": np.array([1, np.nan, 2], np.float32)}, step=2)
    kept = load_checkpoint(folder)
    assert kept["step"] == 1 and np.array_equal(kept["arrays"]["w"], np.ones(3))


@pytest.mark.parametrize("content", ["[1, 2]", '{"steps": 3}', "{not json"])
def test_resume_of_a_damaged_run_file(tmp_path, capsys, content):
    (tmp_path / "run.json").write_text(content)
    assert main(["prune", "--resume", str(tmp_path)]) == 2
    assert "run.json" in _err(capsys)


def test_slimming_trains_every_weight_and_keeps_the_outputs_contract(tmp_path, small_run):
    from prunenet.gcp import slimming
    cfg = slimming.config(target=0.5)
    assert (cfg.bn_off, cfg.rescale, cfg.cost_weighted, cfg.train_weights) == \
        (False, False, False, True) and cfg.debias_epochs == 0
    report = small_run(tmp_path / "slim", method="slimming", steps=1, reg=0.05)
    assert report["method"] == "slimming"
    assert 0.5 - report["granularity"] < report["achieved"] <= 0.5
    assert report["surgery_max_abs_diff"] < 1e-4
    with open(tmp_path / "slim" / "steps.csv") as f:
        phases = [row["phase"] for row in csv.DictReader(f)]
    assert phases[:2] == ["regularize", "debias"] and "finetune" in phases


def test_slimming_regularize_step_moves_the_convolutions_and_gcp_does_not():
    from prunenet import cost_model, trace
    from prunenet.gcp import slimming
    from prunenet.gcp.schedule import GCPSchedule, GCPConfig
    from prunenet.training.models import load_model
    from prunenet.training.train import BatchStream
    from prunenet.gcp.masked import MaskedNetwork
    x = mx.nd.array(np.random.RandomState(0).normal(size=(8, 3, 16, 16)))
    y = mx.nd.array(np.arange(8) % 10)
    moved = {}
    for name, cfg in (("gcp", GCPConfig(target=0.7, steps=1, reg=0.01, debias_epochs=0)),
                      ("slimming", slimming.config(target=0.7, steps=1, reg=0.01))):
        net = load_model("cifar_resnet20_v1", seed=0, input_size=16)
        graph = trace(net, (1, 3, 16, 16))
        conv = next(layer.weight for layer in graph.layers.values() if layer.op == "Convolution")
        before = net.collect_params()[conv].data().asnumpy().copy()
        gcp = GCPSchedule(MaskedNetwork(net, graph), cost_model(graph, "flops"), cfg, [mx.cpu()],
                  progress=False)
        gcp.run_step(1, BatchStream(lambda e, s: [(x, y)] * (2 - s)))
        moved[name] = not np.array_equal(net.collect_params()[conv].data().asnumpy(), before)
    assert moved == {"gcp": False, "slimming": True}
