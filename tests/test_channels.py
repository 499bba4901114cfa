"""Input channels everywhere: a one-channel run folder (as the demo's, 28 px Fashion-MNIST) is
counted and benchmarked as the README shows it, a one-channel exported pair is read as one, and
channels that disagree with a file are refused naming the channels."""
import contextlib
import io
import json
import os

import mxnet as mx
import pytest
from gluoncv.model_zoo import get_model

from prunenet.cli import main

SIZE = 28


def run(*args):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(list(args)) == 0
    return buf.getvalue()


def last_json(text):
    start = text.index("{")
    return json.loads(text[start:])


@pytest.fixture(scope="module")
def one_channel(tmp_path_factory):
    """A one-channel resnet18_v1b's params, its exported pair, and a run folder pruned from it."""
    tmp = tmp_path_factory.mktemp("one_channel")
    net = get_model("resnet18_v1b", classes=10)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 1, SIZE, SIZE)))
    net.save_parameters(str(tmp / "gray.params"))
    net.hybridize()
    net(mx.nd.zeros((1, 1, SIZE, SIZE)))
    net.export(str(tmp / "gray"))
    out = str(tmp / "demo")
    run("prune", "--model", "resnet18_v1b", "--params", str(tmp / "gray.params"), "--classes",
        "10", "--input-size", str(SIZE), "--method", "l1", "--target", "0.5", "--no-speed-check",
        "--out", out)
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    return tmp, out, report


def test_count_and_bench_a_one_channel_run_folder(one_channel):
    tmp, out, report = one_channel
    assert report["input_shape"] == [1, 1, SIZE, SIZE]  # read from the params file
    shapes = os.path.join(out, "shapes.json")
    counted = last_json(run("count", "--model", "resnet18_v1b", "--shapes", shapes,
                            "--input-size", str(SIZE), "--json"))
    assert counted["macs"] == report["macs_after"]
    full = last_json(run("count", "--model", "resnet18_v1b", "--classes", "10", "--channels",
                         "1", "--input-size", str(SIZE), "--json"))
    assert full["macs"] == report["macs_before"]
    bench = last_json(run("bench", "--model", "resnet18_v1b", "--shapes", shapes,
                          "--input-size", str(SIZE), "--batch-size", "2", "--repeats", "2",
                          "--warmup", "1", "--json"))
    assert bench["input_shape"] == [1, SIZE, SIZE]
    rows = list(bench["models"].values())
    assert [r["macs"] for r in rows][1] == report["macs_after"] and rows[0]["macs"] > \
        rows[1]["macs"]


def test_a_one_channel_exported_pair_is_read_as_one(one_channel):
    tmp, _, report = one_channel
    symbol, params = str(tmp / "gray-symbol.json"), str(tmp / "gray-0000.params")
    counted = last_json(run("count", "--symbol", symbol, "--params", params, "--input-size",
                            str(SIZE), "--json"))
    assert counted["macs"] == report["macs_before"]


def test_channels_that_disagree_with_a_file_are_refused_naming_them(one_channel, capsys):
    tmp, out, _ = one_channel

    def refused(*args):
        capsys.readouterr()
        assert main(list(args)) == 2
        return capsys.readouterr().err.strip().splitlines()[-1]
    shapes = os.path.join(out, "shapes.json")
    assert "shapes.json is for 1-channel input, not 3 channels; give --channels 1" in refused(
        "count", "--model", "resnet18_v1b", "--shapes", shapes, "--channels", "3",
        "--input-size", str(SIZE))
    assert "is for 1-channel input, not 3 channels; give --channels 1" in refused(
        "count", "--symbol", str(tmp / "gray-symbol.json"), "--params",
        str(tmp / "gray-0000.params"), "--channels", "3", "--input-size", str(SIZE))
    zoo = str(tmp / "zoo")
    run("zoo", "publish", out, "--zoo", zoo, "--name", "gray", "--no-bench")
    assert "different input channels (resnet18_v1b 3, gray 1)" in refused(
        "bench", "--model", "resnet18_v1b", "--zoo", zoo, "--name", "gray", "--input-size",
        str(SIZE), "--batch-size", "2")
