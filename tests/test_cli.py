"""The command line: counts, data-free pruning runs, and clear errors for bad input."""
import json
import os
import subprocess
import sys

import mxnet as mx
import pytest

from prunenet.cli import main
from prunenet.io.files import read_json
from prunenet.training.models import load_model

SHAPE_DIR = os.path.join(os.path.dirname(__import__("gluoncv").__file__), "model_zoo",
                         "pruned_resnet")


def run_cli(*args):
    """Run the installed console script; return (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "prunenet", *args], capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def _one_line_error(err, *words):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_count_json_is_one_object(independent_count):
    code, out, err = run_cli("count", "--model", "cifar_resnet20_v1", "--json")
    assert code == 0, err
    net = load_model("cifar_resnet20_v1")
    macs, params = independent_count(net(mx.sym.var("data")), (1, 3, 32, 32))
    assert json.loads(out) == {"macs": macs, "params": params}
    assert round(macs / 1e6, 1) == 40.8  # the figure usually quoted for ResNet-20 on CIFAR


def test_prune_writes_report_and_gluoncv_pair(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["prune", "--model", "resnet18_v1b", "--input-size", "64", "--classes", "10",
                 "--method", "l1", "--objective", "params", "--target", "0.6",
                 "--out", str(out)]) == 0
    report = read_json(str(out / "report.json"))
    for key in ("model", "method", "objective", "target", "achieved", "macs_before",
                "macs_after", "params_before", "params_after", "widths", "surgery_max_abs_diff"):
        assert key in report
    assert report["achieved"] <= 0.6 and report["params_after"] < report["params_before"]
    assert report["surgery_max_abs_diff"] < 1e-4
    assert sorted(os.listdir(out)) == [".prunenet", "pruned.params", "report.json", "shapes.json"]
    # the counted architecture of the shape file is what the report says
    assert main(["count", "--model", "resnet18_v1b", "--classes", "10", "--input-size", "64",
                 "--shapes", str(out / "shapes.json"), "--json"]) == 0
    counted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counted == {"macs": report["macs_after"], "params": report["params_after"]}


def test_prune_from_a_params_file(tmp_path):
    net = load_model("cifar_resnet20_v1", seed=4)
    net.save_parameters(str(tmp_path / "base.params"))
    out = tmp_path / "run"
    assert main(["prune", "--model", "cifar_resnet20_v1", "--params", str(tmp_path / "base.params"),
                 "--method", "uniform", "--target", "0.5", "--out", str(out)]) == 0
    report = read_json(str(out / "report.json"))
    assert report["format"] == "mxnet-symbol" and 0.4 < report["achieved"] <= 0.5
    from mxnet import gluon
    block = gluon.SymbolBlock.imports(str(out / "pruned-symbol.json"), ["data"],
                                      str(out / "pruned-0000.params"))
    assert block(mx.nd.zeros((1, 3, 32, 32))).shape == (1, 10)


@pytest.mark.parametrize("target", ["0", "1", "1.5", "-0.2", "half"])
def test_target_outside_0_1_is_refused(tmp_path, target):
    code, _, err = run_cli("prune", "--model", "resnet18_v1b", "--method", "l1", "--target",
                           target, "--out", str(tmp_path / "run"))
    assert code == 2
    _one_line_error(err, "--target", target)
    assert not os.path.exists(tmp_path / "run")


def test_unknown_model_objective_and_method(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["prune", "--model", "resnet50_v1x", "--method", "l1", "--target", "0.5",
                 "--out", out]) == 2
    _one_line_error(capsys.readouterr().err, "unknown model 'resnet50_v1x'", "resnet50_v1")
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", "--model", "resnet18_v1b", "--method", "l1", "--objective", "latncy",
              "--target", "0.5", "--out", out])
    assert exit_info.value.code == 2
    _one_line_error(capsys.readouterr().err, "--objective", "latncy", "flops")
    with pytest.raises(SystemExit):
        main(["prune", "--model", "resnet18_v1b", "--method", "magic", "--target", "0.5",
              "--out", out])
    _one_line_error(capsys.readouterr().err, "--method", "magic")
    assert not os.path.exists(out)


def test_shape_files_that_do_not_fit_the_model(tmp_path, capsys):
    foreign = os.path.join(SHAPE_DIR, "resnet50_v1d_1.8x.json")
    assert main(["count", "--model", "resnet18_v1b", "--shapes", foreign]) == 2
    _one_line_error(capsys.readouterr().err, "does not fit resnet18_v1b", foreign)

    shapes = read_json(os.path.join(SHAPE_DIR, "resnet18_v1b_2.6x.json"))
    bad_kernel = dict(shapes, resnetv1d_layers1_conv0_weight=[8, 8, 5, 5])
    inconsistent = dict(shapes, resnetv1d_layers1_conv1_weight=[8, 16, 3, 3])
    for doc, words in ((bad_kernel, ["layers1_conv0_weight", "[8, 8, 5, 5]"]),
                       (inconsistent, ["do not fit together", "shape file"]),
                       ({"resnetv1d_conv0_weight": "wide"}, ["list of integers"]),
                       ([], ["JSON object"])):
        path = tmp_path / "shapes.json"
        path.write_text(json.dumps(doc))
        assert main(["count", "--model", "resnet18_v1b", "--shapes", str(path)]) == 2
        _one_line_error(capsys.readouterr().err, *words)
    path.write_text("{not json")
    assert main(["count", "--model", "resnet18_v1b", "--shapes", str(path)]) == 2
    _one_line_error(capsys.readouterr().err, "not valid JSON")
    assert main(["count", "--model", "resnet18_v1b", "--shapes", str(tmp_path / "nope.json")]) == 2
    _one_line_error(capsys.readouterr().err, "does not exist")


def test_params_file_of_another_architecture(tmp_path, capsys):
    other = load_model("cifar_resnet20_v1")
    other.save_parameters(str(tmp_path / "r20.params"))
    out = str(tmp_path / "run")
    assert main(["prune", "--model", "cifar_resnet56_v1", "--params", str(tmp_path / "r20.params"),
                 "--method", "l1", "--target", "0.5", "--out", out]) == 2
    _one_line_error(capsys.readouterr().err, "does not fit cifar_resnet56_v1", "r20.params")
    # same architecture, another number of classes: transfer (the output layer is replaced,
    # and the run says so; issue 16), not a refusal
    assert main(["prune", "--model", "cifar_resnet20_v1", "--classes", "7", "--params",
                 str(tmp_path / "r20.params"), "--method", "l1", "--target", "0.5",
                 "--out", str(tmp_path / "transfer")]) == 0
    assert "10-class output layer" in capsys.readouterr().out
    (tmp_path / "junk.params").write_bytes(b"\x00" * 100)
    assert main(["prune", "--model", "cifar_resnet20_v1", "--params", str(tmp_path / "junk.params"),
                 "--method", "l1", "--target", "0.5", "--out", out]) == 2
    _one_line_error(capsys.readouterr().err, "junk.params")
    assert not os.path.exists(out)


def test_existing_output_is_left_alone_and_infeasible_target_named(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--target", "0.5"]
    assert main(args + ["--out", str(out)]) == 2
    _one_line_error(capsys.readouterr().err, "already exists", "--overwrite")
    assert os.listdir(out) == ["keep.txt"]
    fresh = tmp_path / "fresh"
    assert main(["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--target", "0.001",
                 "--out", str(fresh)]) == 2
    _one_line_error(capsys.readouterr().err, "smallest reachable cost fraction")
    assert not os.path.exists(fresh)
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []
    # --overwrite replaces only a folder prunenet wrote (issue 15: it used to delete keep.txt)
    assert main(args + ["--out", str(out), "--overwrite"]) == 2
    _one_line_error(capsys.readouterr().err, "prunenet did not write")
    assert os.listdir(out) == ["keep.txt"]
    assert main(args + ["--out", str(fresh)]) == 0
    before = os.stat(fresh / "report.json").st_mtime_ns
    assert main(args + ["--out", str(fresh), "--overwrite", "--seed", "1"]) == 0
    assert read_json(str(fresh / "report.json"))["seed"] == 1
    assert os.stat(fresh / "report.json").st_mtime_ns >= before


def test_report_records_what_reproduces_it(tmp_path):
    out = tmp_path / "run"
    assert main(["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--target", "0.5",
                 "--seed", "3", "--out", str(out)]) == 0
    report = read_json(str(out / "report.json"))
    env = report["environment"]
    from importlib import metadata
    assert env["mxnet"] == metadata.version("mxnet") and env["gluoncv"] == metadata.version("gluoncv")
    assert "MKLDNN" in env["mxnet_features"] or env["mxnet_features"]
    assert env["omp_num_threads"] and report["seed"] == 3
    assert report["command"][:2] == ["prunenet", "prune"]


def test_prune_help_starts_with_examples_and_groups_every_flag(capsys):
    from prunenet.cli import build_parser
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    text = capsys.readouterr().out
    head = text.split("\n\n")
    assert head[0].startswith("usage: prunenet prune (--model NAME | --symbol FILE)")
    assert "examples:\n  # data-free" in text.split("options:")[0]
    assert "attention" not in text  # the deprecated name is not offered
    prune = build_parser()._subparsers._group_actions[0].choices["prune"]
    titles = [g.title for g in prune._action_groups if g._group_actions]
    assert titles[1:] == ["network", "pruning", "output", "latency", "data", "gcp",
                          "fine-tuning", "devices and long runs",
                          "GluonCV's train_imagenet.py flags"]
    options = [a.dest for g in prune._action_groups if g.title == "options"
               for a in g._group_actions]
    assert options == ["help"]  # every flag is in a group saying what it applies to
    grouped = [a for g in prune._action_groups for a in g._group_actions]
    assert sorted(map(id, grouped)) == sorted(map(id, prune._actions))  # each once


def test_gluoncv_train_imagenet_flags_work_or_are_refused_naming_what_to_use(capsys):
    from prunenet.cli import build_parser
    parser = build_parser()
    args = parser.parse_args(["prune", "--use-pretrained", "--log-interval", "7", "--no-wd",
                              "--warmup-lr", "0", "--crop-ratio", "0.875"])
    assert args.pretrained is True and args.sync_every == 7
    assert not {"no_wd", "warmup_lr", "crop_ratio"} & set(vars(args))  # nothing else changes
    refused = {("--lr-decay", "0.1"): "use it (or --lr-mode cosine",
               ("--lr-decay-epoch", "40,60"): "--lr-mode step decays by 0.1 at 50% and 75%",
               ("--lr-decay-period", "10"): "--lr-mode step",
               ("--warmup-lr", "0.1"): "give --warmup-epochs alone",
               ("--crop-ratio", "0.9"): "other ratios are not supported",
               ("--last-gamma",): "prunenet prunes the weights of --params or --pretrained",
               ("--mixup",): "use --label-smoothing or --distill",
               ("--save-frequency", "10"): "every --checkpoint-every N iterations"}
    for flag, words in refused.items():
        with pytest.raises(SystemExit) as exit_:
            main(["prune", "--model", "cifar_resnet20_v1", *flag])
        assert exit_.value.code == 2
        _one_line_error(capsys.readouterr().err, f"argument {flag[0]}: ", words,
                        "see prunenet prune --help")
