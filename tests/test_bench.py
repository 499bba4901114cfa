"""``prunenet bench`` and :func:`prunenet.latency.throughput.throughput`: results, refusals, the command."""
import argparse
import json
import os

import pytest

from prunenet import PrunenetError
from prunenet.latency import throughput as bench
from prunenet.cli import bench as bench_command


def _bench(argv):
    parser = argparse.ArgumentParser(prog="prunenet")
    bench_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench"] + argv)
    return args.func(args)


def test_throughput_measures_each_network_with_its_spread(random_net):
    nets = {"a": random_net("cifar_resnet20_v1", 16), "b": random_net("cifar_resnet20_v2", 16)}
    out = bench.throughput(nets, (3, 16, 16), batch_size=2, repeats=3, warmup=1)
    assert set(out) == {"a", "b"}
    for r in out.values():
        assert r["throughput_img_s"] == pytest.approx(2 / (r["latency_ms"] / 1e3))
        assert 0 < r["latency_ms_min"] <= r["latency_ms"] <= r["latency_ms_max"]
        assert r["latency_ms_iqr"] >= 0 and r["batch_size"] == 2 and r["repeats"] == 3


@pytest.mark.parametrize("size", [0, -3])
def test_batch_size_below_one_is_refused(size, random_net, capsys):
    net = random_net("cifar_resnet20_v1", 16)
    with pytest.raises(PrunenetError, match=f"batch size {size} must be .*at least 1"):
        bench.throughput({"a": net}, (3, 16, 16), batch_size=size)
    with pytest.raises(SystemExit) as exit_:  # the command line's flag refuses it as it parses
        _bench(["--model", "cifar_resnet20_v1", "--batch-size", str(size)])
    assert exit_.value.code == 2 and f"--batch-size: {size} must be at least 1" in \
        capsys.readouterr().err


@pytest.mark.parametrize("gpus,words", [("7", "this machine has 0 GPU.s. for MXNet"),
                                        ("x", "must be comma-separated GPU ids"),
                                        ("0,1", "one device")])
def test_unknown_device_is_refused(gpus, words):
    with pytest.raises(PrunenetError, match=words):
        bench.device(gpus)
    with pytest.raises(PrunenetError, match=words):
        _bench(["--model", "cifar_resnet20_v1", "--gpus", gpus])


def test_bench_command_measures_models_and_shape_files_side_by_side(capsys):
    import gluoncv
    shapes = os.path.join(os.path.dirname(gluoncv.__file__), "model_zoo", "pruned_resnet",
                          "resnet18_v1b_2.6x.json")
    assert _bench(["--model", "resnet18_v1b", "--shapes", shapes, "--input-size", "32",
                   "--batch-size", "2", "--repeats", "2", "--warmup", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["batch_size"] == 2 and doc["input_shape"] == [3, 32, 32]
    full, pruned = doc["models"]["resnet18_v1b"], doc["models"]["resnet18_v1b:" +
                                                                 os.path.basename(shapes)]
    assert full["speedup"] == 1.0 and pruned["macs"] < full["macs"]
    assert pruned["throughput_img_s"] > 0

    assert _bench(["--model", "cifar_resnet20_v1", "--batch-size", "2", "--repeats", "2",
                   "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    assert "cifar_resnet20_v1" in text and "img/s" in text and "1.00x" in text


@pytest.mark.parametrize("argv,words", [
    ([], "at least one --model"),
    (["--model", "resnet18_v1b", "--model", "resnet34_v1b", "--shapes", "x.json"],
     "exactly one --model"),
    (["--zoo", "somewhere"], "needs --name"),
    (["--model", "resnet18_v1b", "--dtype", "float32", "--name", "no_such_model"],
     "no_such_model"),
])
def test_bench_command_refuses_what_it_cannot_measure(argv, words):
    with pytest.raises(PrunenetError, match=words):
        _bench(argv + ["--batch-size", "2"])


def _run_folders(tmp_path, names):
    """Run folders each holding a ``shapes.json`` (GluonCV's released pruned ResNet-50s)."""
    import gluoncv
    import shutil
    zoo = os.path.join(os.path.dirname(gluoncv.__file__), "model_zoo", "pruned_resnet")
    paths = []
    for name, source in names:
        folder = tmp_path / name
        folder.mkdir(parents=True)
        shutil.copy(os.path.join(zoo, source), folder / "shapes.json")
        paths.append(str(folder / "shapes.json"))
    return paths


def test_bench_keeps_every_run_named_by_its_folder(tmp_path, capsys):
    a, b = _run_folders(tmp_path, [("a", "resnet50_v1d_1.8x.json"),
                                   ("b", "resnet50_v1d_3.6x.json")])
    assert _bench(["--model", "resnet50_v1d", "--input-size", "32", "--batch-size", "2",
                   "--repeats", "3", "--max-repeats", "3", "--warmup", "1",
                   "--shapes", a, "--shapes", b]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    assert list(rows) == ["resnet50_v1d", "resnet50_v1d:a", "resnet50_v1d:b"]
    gmacs = [float(rows[k][5]) for k in rows]
    assert gmacs[0] > gmacs[1] > gmacs[2]  # 1.8x, then 3.6x fewer MACs (GluonCV's tags)
    assert "3 interleaved batches" in lines[0]


def test_bench_refuses_two_networks_that_would_share_a_row(tmp_path):
    a, b = _run_folders(tmp_path, [("x/run", "resnet50_v1d_1.8x.json"),
                                   ("y/run", "resnet50_v1d_3.6x.json")])
    common = ["--model", "resnet50_v1d", "--input-size", "32", "--batch-size", "2"]
    with pytest.raises(PrunenetError, match=r"both be named 'resnet50_v1d:run'.*--label"):
        _bench(common + ["--shapes", a, "--shapes", b])
    with pytest.raises(PrunenetError, match=r"both be named 'same'"):
        _bench(common + ["--shapes", a, "--shapes", b, "--label", "same", "--label", "same"])
    with pytest.raises(PrunenetError, match=r"3 --label for 2 --shapes"):
        _bench(common + ["--shapes", a, "--shapes", b] + ["--label", "l"] * 3)
    with pytest.raises(PrunenetError, match=r"both be named 'resnet50_v1d'.*--model"):
        _bench(common + ["--shapes", a, "--label", "resnet50_v1d"])


def test_labels_name_the_shape_files_rows():
    args = argparse.Namespace(model=["resnet50_v1d"], shapes=["r/a/shapes.json", "z/b.json",
                                                              "r/c/shapes.json"],
                              label=["mine"], name=[], zoo=None)
    assert bench_command._labels(args) == ["resnet50_v1d", "mine", "resnet50_v1d:b.json",
                                   "resnet50_v1d:c"]


def test_every_pruned_run_measures_its_speed_up_beside_its_macs_reduction(tmp_path):
    from prunenet.run.folder import prune_run
    lines = []
    report = prune_run("cifar_resnet20_v1", "l1", "flops", 0.4, str(tmp_path / "run"),
                       log=lines.append)
    check = report["speed_check"]
    assert check["device"] == "cpu" and check["batch_size"] == 16 and check["rounds"] >= 3
    assert check["macs_reduction"] == pytest.approx(report["macs_before"] / report["macs_after"])
    assert check["speedup"] > 0 and check["latency_ms_full"] > 0
    assert check["speedup"] == pytest.approx(check["latency_ms_full"] / check["latency_ms_pruned"],
                                             rel=0.5)  # a median of ratios, near theirs
    assert f"measured speed-up {check['speedup']:.2f}x" in lines[-1]
    assert f"for {check['macs_reduction']:.2f}x fewer MACs" in lines[-1]
    assert "speed_check_s" in report["timings"]
    skipped = prune_run("cifar_resnet20_v1", "l1", "flops", 0.4, str(tmp_path / "quick"),
                        log=lambda m: None, speed_check=False)
    assert "speed_check" not in skipped


def test_a_gain_well_below_the_macs_reduction_points_at_the_latency_objective(random_net):
    from prunenet.latency.throughput import speed_check, speed_line
    net = random_net("cifar_resnet20_v1", 16)
    # the same network as "pruned", said to have 3x fewer MACs: no gain where 3x was promised
    check = speed_check(net, net, (1, 3, 16, 16), 300, 100, batch_size=4, budget_s=1.0)
    assert check["macs_reduction"] == 3.0 and check["below_macs"]
    assert 0.5 < check["speedup"] < 2
    line = speed_line({"speed_check": check, "objective": "flops"})
    assert "well below what the MACs promise" in line and "--objective latency" in line
    fair = dict(check, speedup=2.9, below_macs=False)
    assert "well below" not in speed_line({"speed_check": fair, "objective": "flops"})


def test_the_api_keeps_a_timing_setting_it_is_given_and_refuses_a_bad_one():
    """Only a setting not given takes BenchConfig's default: a batch size of 0 handed to
    ``plot.measure_reference`` is refused by the measurement, not replaced by the default."""
    from prunenet import plot
    from prunenet.latency.settings import bench_settings
    assert bench_settings(0, None, 0) == (0, 10, 0)
    with pytest.raises(PrunenetError, match="batch size 0 must be"):
        plot.measure_reference(["cifar_resnet20_v1"], input_size=32, batch_size=0)
