"""Bad input, input by input: every row of docs/bad-inputs.md that no other test file covers.

Each case runs the real reader or ``prunenet.cli.main`` and expects one line, ``prunenet: error:``
and exit 2 (argparse's own refusals: ``SystemExit(2)``), never a traceback; nothing is written.
"""
import contextlib
import io
import json
import os
import shutil

import mxnet as mx
import numpy as np
import pytest

from prunenet.zoo import store as zoo
from prunenet.cli import main
from prunenet.errors import PrunenetError
from prunenet.io.files import load_params, read_json
from prunenet.latency import LatencyTable
from prunenet.run.folder import prune_run
from test_data import make_folder, no_download, record, write_fashion, write_idx  # noqa: F401
from test_zoo import _flip_byte

SHAPE_DIR = os.path.join(os.path.dirname(__import__("gluoncv").__file__), "model_zoo",
                         "pruned_resnet")
SHAPES = os.path.join(SHAPE_DIR, "resnet18_v1b_2.6x.json")  # 1000 classes
COUNT = ["count", "--model", "resnet18_v1b", "--input-size", "32", "--shapes"]
PRUNE = ["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--target", "0.5"]


def run(argv):
    """``prunenet ARGV`` in this process: (exit code, stderr); argparse's exit counts as a code."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(list(argv))
        except SystemExit as stop:
            code = stop.code
    return code, err.getvalue()


def one_line(err, *words):
    """``err`` is one line of ``prunenet...: error: ...`` holding ``words``; returns the line."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("prunenet") and ": error: " in lines[0], lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def refused(argv, *words, code=2):
    got, err = run(argv)
    assert got == code, (got, err)
    return one_line(err, *words)


def write(path, content):
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else json.dumps(content).encode())
    return str(path)


# ------------------------------------------------------------------ command-line flags

@pytest.mark.parametrize("extra,words", [
    (["--seed", "-1"], "--seed: -1 must be at least 0"),  # was MXNet's ValueError, a traceback
    (["--round-to", "0"], "--round-to: 0 must be at least 1"),
    (["--min-width", "-2"], "--min-width: -2 must be at least 1"),
    (["--input-size", "abc"], "--input-size: 'abc' is not a whole number"),
    (["--classes", "0"], "--classes: 0 must be at least 1"),
    (["--batch-size", "0"], "--batch-size: 0 must be at least 1"),
    (["--train-limit", "0"], "--train-limit: 0 must be at least 1"),
    (["--latency-batch-size", "0"], "--latency-batch-size: 0 must be at least 1"),
    (["--dtype", "int8"], "--dtype: invalid choice: 'int8'"),
    (["--lr", "nan"], "--lr: nan is not a finite number"),
    (["--reg", "inf"], "--reg: inf is not a finite number"),
    (["--finetune-lr", "0"], "--finetune-lr: 0 must be above 0"),
    (["--label-smoothing", "1"], "--label-smoothing: 1 must be at least 0 and below 1"),
    (["--debias-epochs", "-1"], "--debias-epochs: -1 must be at least 0"),
    (["--warmup-epochs", "-0.5"], "--warmup-epochs: -0.5 must be at least 0"),
    (["--finetune-epochs", "x"], "--finetune-epochs: 'x' is not a number"),
])
def test_prune_flags_the_parser_refuses(tmp_path, extra, words):
    out = tmp_path / "run"
    refused(PRUNE + extra + ["--out", str(out)], "prunenet prune: error: argument " + words)
    assert not out.exists()


def test_prune_settings_refused_before_any_work(tmp_path):
    out = str(tmp_path / "run")
    refused(PRUNE, "prune needs --out (or --resume DIR)")
    refused(PRUNE + ["--out", out, "--params", "x.params", "--pretrained"],
            "give --params or --pretrained, not both")
    for gpus, words in (("x", "--gpus 'x' must be comma-separated GPU ids"),
                        ("3", "--gpus 3: this machine has 0 GPU(s)")):  # were silently ignored
        refused(PRUNE + ["--out", out, "--gpus", gpus], words)
    refused(PRUNE + ["--out", out, "--dataset", "cifar"], "unknown dataset 'cifar'")
    assert not os.path.exists(out)


@pytest.fixture(scope="module")
def params_files(tmp_path_factory, random_net):
    """Files given as --params to cifar_resnet20_v1: right and wrong."""
    root = tmp_path_factory.mktemp("params")
    good = str(root / "r20.params")
    random_net("cifar_resnet20_v1", 32).save_parameters(good)
    mx.nd.save(str(root / "list.params"), [mx.nd.zeros(3)])
    mx.nd.save(str(root / "full.params"),
               {"cifarresnetv10_conv0_weight": mx.nd.zeros((16, 3, 3, 3))})
    write(root / "empty.params", b"")
    return root


@pytest.mark.parametrize("name,words", [
    ("missing.params", ["missing.params does not exist"]),  # was MXNet's dmlc-core message
    (".", ["is a folder; give the file"]),
    ("list.params", ["holds an unnamed list of arrays"]),  # was an AttributeError traceback
    ("full.params", ["does not fit cifar_resnet20_v1", "it has no conv0_weight;"]),
    ("empty.params", ["empty.params does not fit", "Invalid NDArray file format"]),
])
def test_params_files_that_are_not_a_save_parameters_file(params_files, tmp_path, name, words):
    out = tmp_path / "run"
    refused(PRUNE + ["--params", str(params_files / name), "--out", str(out)], *words)
    assert not out.exists()


def test_load_params_names_the_file(params_files):
    for name, words in (("empty.params", "is not an MXNet params file"),
                        ("list.params", "holds an unnamed list"), (".", "is a folder")):
        with pytest.raises(PrunenetError, match=words):
            load_params(str(params_files / name))


def test_count_bench_and_demo_flags(tmp_path, monkeypatch):
    refused(["count", "--model", "resnet50_v1d", "--input-size", "2"],
            "resnet50_v1d cannot run on input of shape (1, 3, 2, 2)", "MXNetError")
    refused(["count", "--model", "cifar_resnet20_v1", "--shapes", SHAPES],
            "--shapes takes GluonCV pruned-ResNet shape files")
    refused(COUNT + [SHAPES, "--classes", "10"], "is for 1000 classes, not --classes 10")
    refused(["bench", "--model", "cifar_resnet20_v1", "--warmup", "-1"],
            "argument --warmup: -1 must be at least 0")
    refused(["count"], "one of the arguments --model --symbol is required")

    monkeypatch.setattr("prunenet.training.data._download_fashion_mnist", no_download)
    afile = write(tmp_path / "afile", b"x")
    demo = ["demo", "--quick", "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    refused(demo + ["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")],
            "data folder", "nowhere does not exist")
    refused(demo + ["--gpus", "x", "--out", str(tmp_path / "d")], "--gpus 'x'")
    refused(demo + ["--out", afile], "--out", "is a file; give a folder")
    refused(["demo", "--cache-dir", afile], "--cache-dir", "is a file; give a folder")
    assert not (tmp_path / "d").exists() and not (tmp_path / "cache").exists()


# ------------------------------------------------------------------ shape files

def _shapes(**changes):
    doc = read_json(SHAPES)
    for key, value in changes.items():
        key = "resnetv1d_" + key
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return doc


@pytest.mark.parametrize("content,words", [
    (None, ["is a folder; give the file"]),  # was an IsADirectoryError traceback
    (b'{"resnetv1d_conv0_weight": [64, 3, 7, 7], "\xff": [1]}', ["not valid JSON", "utf-8"]),
    (json.dumps(_shapes())[:300].encode(), ["not valid JSON"]),
    (_shapes(layers1_conv0_weight=[0, 64, 3, 3]), ["[0, 64, 3, 3]", "at least 1"]),
    # a classifier of -3 classes was reported as "--classes -3", a flag nobody gave
    (_shapes(dense0_weight=[-3, 512]), ["dense0_weight has shape [-3, 512]", "at least 1"]),
    # was MXNet's allocation failure, a traceback
    (_shapes(dense0_weight=[10 ** 12, 512]), ["more than the 2147483647 elements"]),
    (_shapes(layers2_conv0_weight=None), ["missing resnetv1d_layers2_conv0_weight"]),
    (_shapes(layers9_conv0_weight=[8, 8, 1, 1]), ["unknown resnetv1d_layers9_conv0_weight"]),
    (_shapes(dense0_weight=None), ["has no resnetv1d_dense0_weight"]),
    (_shapes(layers1_conv0_weight=[4096, 64, 3, 3]), ["has shape [4096, 64, 3, 3]",
                                                       "the model's is [64"]),
    (_shapes(dense0_bias=[7]), ["layer widths of resnet18_v1b do not fit together"]),
])
def test_shape_files_refused_with_their_name(tmp_path, content, words):
    path = str(tmp_path) if content is None else write(tmp_path / "shapes.json", content)
    refused(COUNT + [path], path, *words)


# ------------------------------------------------------------------ the model zoo

@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    """A zoo with a GluonCV-format entry (resnet18_v1b) and a symbol-format one (ResNet-20)."""
    root = tmp_path_factory.mktemp("zoo")
    path = str(root / "zoo")
    for name, model in (("r18", "resnet18_v1b"), ("r20", "cifar_resnet20_v1")):
        run_dir = str(root / name)
        prune_run(model, "l1", "flops", 0.5, run_dir, input_size=32, classes=10,
                  command=["prunenet"], log=lambda message: None)
        zoo.publish(run_dir, path, name, bench=False, log=None)
    return path


@pytest.fixture()
def zoo_copy(zoo_dir, tmp_path):
    path = str(tmp_path / "zoo")
    shutil.copytree(zoo_dir, path)
    return path


def _edit_manifest(path, change):
    doc = read_json(os.path.join(path, "zoo.json"))
    change(doc)
    write(os.path.join(path, "zoo.json"), doc)


@pytest.mark.parametrize("model,role", [("r18", "params"), ("r18", "shapes"),
                                        ("r20", "params"), ("r20", "symbol")])
@pytest.mark.parametrize("damage", ["flipped byte", "missing"])
def test_verify_names_the_model_and_the_damaged_file(zoo_copy, model, role, damage):
    fname = read_json(os.path.join(zoo_copy, "zoo.json"))["models"][model]["files"][role]
    path = os.path.join(zoo_copy, fname)
    if damage == "missing":
        os.remove(path)
    else:
        _flip_byte(path)
    code, out = _verify(zoo_copy)
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1, out
    assert f"model {model}: file {path}" in failed[0]
    assert ("is missing" if damage == "missing" else "corrupt") in failed[0]
    other = {"r18": "r20", "r20": "r18"}[model]
    assert f"ok       {other}" in out.splitlines()


def _verify(path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["zoo", "verify", "--zoo", path])
    return code, out.getvalue()


def _entry_edit(**changes):
    def change(doc):
        doc["models"]["r18"].update(changes)
    return change


def _rename(doc):
    doc["models"]["../r18"] = doc["models"].pop("r18")


@pytest.mark.parametrize("change,words", [
    # manifest-wide: both commands refuse the zoo
    (lambda doc: doc.update(version=True), ["has version True", "not a prunenet zoo"]),
    (lambda doc: doc.update(version="1"), ["has version '1'"]),  # said "upgrade prunenet"
    (lambda doc: doc.pop("version"), ["has version None"]),
    (lambda doc: doc.update(version=2), ["has version 2", "upgrade prunenet"]),
    (lambda doc: doc.update(models=[]), ['has no "models" object']),
])
def test_manifests_refused_whole(zoo_copy, change, words):
    _edit_manifest(zoo_copy, change)
    for command in ("list", "verify"):
        refused(["zoo", command, "--zoo", zoo_copy], "zoo manifest", *words)


@pytest.mark.parametrize("change,words", [
    # one entry: zoo list refuses (it crashed on the last four kinds), zoo verify fails it
    (lambda doc: doc["models"].update(r18=5), ['entry r18 has no "files" and "sha1"']),
    (_entry_edit(format="tf"), ["model r18 has format 'tf'"]),
    (_entry_edit(files={"shapes": "../x.json", "params": "x.params"}),
     ["model r18 needs a plain file name"]),
    (_entry_edit(base=None), ["model r18 has base None"]),  # verify: KeyError traceback
    (_entry_edit(base=5), ["model r18 has base 5"]),  # verify: TypeError traceback
    (_entry_edit(target="half"), ["model r18 has target 'half', not a number"]),
    (_entry_edit(macs="lots"), ["model r18 has macs 'lots', not a number"]),
    (_entry_edit(input_shape=[1, 3]), ["model r18 has input_shape [1, 3]"]),
    (_rename, ["model name '../r18' is not valid"]),  # was accepted
])
def test_manifest_entries_refused(zoo_copy, change, words):
    _edit_manifest(zoo_copy, change)
    refused(["zoo", "list", "--zoo", zoo_copy], "zoo manifest", *words)
    code, out = _verify(zoo_copy)
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert code == 1 and len(failed) == 1 and words[0] in failed[0], out
    assert "ok       r20" in out.splitlines()


def test_entry_of_a_base_gluoncv_lacks(zoo_copy):
    _edit_manifest(zoo_copy, _entry_edit(base="resnet18"))
    code, out = _verify(zoo_copy)
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert code == 1 and len(failed) == 1, out
    assert failed[0].startswith("FAILED   model r18: unknown model 'resnet18'; did you mean")


def test_zoo_files_and_folders_given_wrong(zoo_copy, zoo_dir, tmp_path):
    _edit_manifest(zoo_copy, _entry_edit(input_shape=[1, 3]))
    out = tmp_path / "deploy"  # the export crashed in MXNet on this input shape
    refused(["zoo", "export", "r18", "--zoo", zoo_copy, "--format", "symbol", "--out", str(out)],
            "model r18 has input_shape [1, 3]")
    afile = write(tmp_path / "afile", b"x")
    refused(["zoo", "export", "r20", "--zoo", zoo_dir, "--format", "symbol", "--out", afile],
            "--out", "is a file")  # was FileExistsError after the model was loaded
    refused(["zoo", "publish", str(tmp_path), "--zoo", afile, "--name", "x", "--no-bench"],
            "--zoo", "is a file, not a zoo folder")  # was FileExistsError
    refused(["zoo", "publish", str(tmp_path), "--zoo", str(tmp_path / "z"), "--name", "a b"],
            "model name 'a b' is not valid")
    refused(["zoo", "export", "nope", "--zoo", zoo_dir, "--format", "onnx", "--out", str(out)],
            "model 'nope' is neither in the zoo")
    refused(["zoo", "verify", "--zoo", str(tmp_path / "none")], "no model zoo at")
    refused(["zoo", "export", "r20", "--zoo", zoo_dir, "--format", "tflite", "--out", str(out)],
            "prunenet zoo export: error: argument --format: invalid choice: 'tflite'")
    os.remove(os.path.join(zoo_copy, "zoo.json"))
    os.mkdir(os.path.join(zoo_copy, "zoo.json"))
    refused(["zoo", "list", "--zoo", zoo_copy], "zoo.json is a folder")  # IsADirectoryError
    assert not out.exists() and not (tmp_path / "z").exists()


# ------------------------------------------------------------------ datasets

def test_fashion_mnist_files_given_wrong(tmp_path, monkeypatch):
    monkeypatch.setattr("prunenet.training.data._download_fashion_mnist", no_download)
    from prunenet.training.data import fashion_mnist, read_idx
    labels = tmp_path / "labels"
    labels.mkdir()
    write_fashion(str(labels), n=4)
    write_idx(labels / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 12], np.uint8), gz=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    write_fashion(str(empty), n=0)
    afile = write(tmp_path / "afile", b"x")
    for call, words in [(lambda: fashion_mnist(data_dir=str(labels)), "labels run from 0 to 12"),
                        (lambda: fashion_mnist(data_dir=str(empty)), "need N>0 images"),
                        (lambda: fashion_mnist(data_dir=afile), "afile is a file"),
                        (lambda: read_idx(str(tmp_path)), "is a folder")]:
        with pytest.raises(PrunenetError, match=words) as err:
            call()
        assert "\n" not in str(err.value)


def test_image_folders_given_wrong(tmp_path):
    from prunenet.training.data import image_folder, load
    make_folder(str(tmp_path / "set" / "train"), ["cat"], per_class=1)
    make_folder(str(tmp_path / "set" / "val"), ["cat", "dog"], per_class=1)
    write(tmp_path / "set" / "val" / "cat" / "broken.jpg", b"not a jpeg")
    afile = write(tmp_path / "afile", b"x")
    for call, words in [
            (lambda: load("folder"), "needs --data-dir DIR"),
            (lambda: load("folder", str(tmp_path / "set"), train=False),
             "class folder 'dog' that the given classes lack"),
            (lambda: list(image_folder(str(tmp_path / "set" / "val"), train=False,
                                       input_size=8).batches(4)),
             "broken.jpg cannot be read"),
            (lambda: image_folder(afile), "afile is a file")]:
        with pytest.raises(PrunenetError, match=words):
            call()
    out = tmp_path / "run"
    refused(["prune", "--model", "resnet18_v1b", "--method", "gcp", "--target", "0.5",
             "--dataset", "folder", "--out", str(out)], "needs --data-dir DIR")
    assert not out.exists()


def test_record_files_given_wrong(record, tmp_path):  # noqa: F811 (the imported fixture)
    from prunenet.training.data import imagenet_record
    rec, idx = str(record / "train.rec"), str(record / "train.idx")
    raw = open(rec, "rb").read()
    short = write(tmp_path / "short.rec", raw[:-20])  # MXNet's reader aborted the process
    for rec_path, idx_path, kwargs, words in [
            (rec, write(tmp_path / "empty.idx", b"\n"), {}, "is empty"),
            (rec, write(tmp_path / "binary.idx", b"\xff\xfe\x00\x01\n"), {},
             "line 1 is not 'key<TAB>offset'"),  # was a UnicodeDecodeError traceback
            (short, idx, {}, "short.rec is truncated: record 12"),
            (rec, idx, {"rank": 2, "num_parts": 2}, "rank 2 must be in 0..1")]:
        with pytest.raises(PrunenetError, match=words) as err:
            imagenet_record(rec_path, idx_path, **kwargs)
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------ latency tables

def _table_doc():
    table = LatencyTable("cpu", 4)
    table.references = [1.5]
    table.units = {"conv/k3x3": {"8,8": 0.25, "8,16": 0.5}}
    table.networks = {"net": {"latency": 2.0, "widths": [8]}}
    return table.to_json()


def _open_table(path):
    return LatencyTable.open(str(path), batch_size=4, measure=False)


@pytest.mark.parametrize("change,words", [
    (dict(references_ms="12"), "references_ms is not a list"),  # was read as [1.0, 2.0]
    (dict(references_ms=[-1.0]), "not a positive number"),  # negatives, NaN: were accepted
    (dict(references_ms=[float("nan")]), "not a positive number"),
    (dict(references_ms=[]), "no references_ms to scale them by"),
    (dict(units={"conv/k3x3": {"8,8": -0.5}}), "unit 'conv/k3x3' needs"),
    (dict(units={"conv/k3x3": {"eight,8": 0.5}}), "unit 'conv/k3x3' needs"),
    (dict(networks={"net": {"widths": [8]}}), "network 'net' has no positive latency"),
    (dict(networks=[["net", 1]]), "networks is not a dict"),
    (dict(batch_size="4"), "batch_size '4' is not a whole number"),  # said "batch 4, not batch 4"
    (dict(units=None), "units is not a dict"),
])
def test_latency_tables_malformed(tmp_path, change, words):
    path = write(tmp_path / "table.json", dict(_table_doc(), **change))
    with pytest.raises(PrunenetError, match=words) as err:
        _open_table(path)
    assert str(err.value).startswith(f"latency table {path} is malformed")


def test_latency_tables_that_are_not_tables(tmp_path):
    assert _open_table(write(tmp_path / "good.json", _table_doc())).reference_ms == 1.5
    for content, words in [(b"\xff", "is not valid JSON"), (dict(_table_doc(), format="x"),
                                                            "is not a prunenet latency table")]:
        with pytest.raises(PrunenetError, match=words):
            _open_table(write(tmp_path / "bad.json", content))
    with pytest.raises(PrunenetError, match="is a folder"):
        _open_table(tmp_path)
    out = tmp_path / "run"
    refused(PRUNE + ["--objective", "latency", "--latency-table", str(tmp_path),
                     "--out", str(out)], "latency table", "is a folder")  # IsADirectoryError
    assert not out.exists()


def test_unreachable_target_refused_before_any_training(tmp_path):
    """GCP trains for minutes before it selects; an unreachable target is named at once."""
    import time
    out = tmp_path / "run"
    t0 = time.time()
    refused(["prune", "--model", "cifar_resnet20_v1", "--method", "gcp", "--target", "0.001",
             "--dataset", "synthetic", "--finetune-epochs", "0", "--out", str(out)],
            "smallest reachable cost fraction", "lower min_width")
    assert not out.exists()
    assert time.time() - t0 < 20  # nothing was trained or evaluated (a step takes minutes)


# ------------------------------------------------------------------ float16 on a CPU

@pytest.mark.parametrize("method,contexts", [("gcp", "1"), ("l1", "1"), ("gcp", "2")])
def test_dtype_float16_training_on_a_cpu_is_refused_before_any_work(tmp_path, monkeypatch,
                                                                     method, contexts):
    """A run that trains (GCP, or any method followed by fine-tuning on --dataset) cannot
    compute in float16 on CPU contexts: one line, before a network is loaded or a folder made."""
    import prunenet.training.models
    monkeypatch.setenv("PRUNENET_CPU_CONTEXTS", contexts)

    def no_loading(*args, **kwargs):
        raise AssertionError("a network was loaded before the dtype was refused")
    monkeypatch.setattr(prunenet.training.models, "load_network", no_loading)
    out = tmp_path / "run"
    refused(["prune", "--model", "cifar_resnet20_v1", "--method", method, "--target", "0.5",
             "--dataset", "synthetic", "--dtype", "float16", "--out", str(out)],
            "--dtype float16", "needs a GPU context", "cpu(0)", "--gpus", "--dtype float32")
    assert not out.exists() and os.listdir(tmp_path) == []


def test_dtype_float16_keeps_its_meaning_for_a_data_free_prune(tmp_path):
    """Without data nothing is trained: --dtype float16 is the dtype of a latency table only,
    and a FLOPs prune goes through on the CPU as before."""
    out = tmp_path / "run"
    code, err = run(PRUNE + ["--dtype", "float16", "--no-speed-check", "--out", str(out)])
    assert code == 0, err
    assert read_json(str(out / "report.json"))["achieved"] <= 0.5


# ------------------------------------------------------------------ one-pass data (issue 33)

ONE_PASS = r"""
import numpy as np, mxnet as mx
import prunenet
from gluoncv.model_zoo import get_model
from prunenet.training.train import BatchStream

def batches():
    rng = np.random.RandomState(0)
    for _ in range(4):
        yield (mx.nd.array(rng.normal(size=(8, 3, 32, 32))), mx.nd.array(rng.randint(0, 10, 8)))

net = get_model("cifar_resnet20_v1", classes=10)
net.initialize(mx.init.Xavier())
for steps in (2, 1):
    try:
        prunenet.GCP(net, target=0.5, input_shape=(1, 3, 32, 32), steps=steps).fit(batches())
        print("fit returned")
    except prunenet.PrunenetError as err:
        print("refused:", err)
# an iterable that counts 3 batches per epoch but gives them only once
once = [list(batches())[:3]]
stream = BatchStream(lambda epoch, start: once.pop() if once else [], index=0)
stream._len = 3
try:
    print("took", len(list(stream.take_batches(5))))
except prunenet.PrunenetError as err:
    print("refused:", err)
"""


def test_a_one_pass_iterable_is_refused_naming_what_to_pass(tmp_path):
    """Issue 33 (API12): ``GCP(...).fit(generator)`` spun for ever in ``take_batches`` (the
    generator was used up counting its batches); a pass that gives no batch looped too."""
    import subprocess
    import sys
    script = tmp_path / "one_pass.py"
    script.write_text(ONE_PASS)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 3, proc.stdout + proc.stderr[-2000:]
    for line in lines[:2]:
        assert line.startswith("refused: training data is a one-pass iterator (a generator)"), line
        assert "pass a gluon.data.DataLoader or a list of batches" in line
    assert lines[2].startswith("refused: the training data gave no batch in epoch 1"), lines[2]
    assert "gluon.data.DataLoader or a list of batches" in lines[2]


@pytest.mark.parametrize("option, value, words", [
    ("target", "0.5", "target '0.5' must be a number (the fraction of the cost to keep), not str"),
    ("target", True, "target True must be a number"),
    ("round_to", 2.5, "round_to 2.5 must be a whole number of channels, at least 1"),
    ("min_width", "8", "min_width '8' must be a whole number of channels, at least 1"),
])
def test_prune_options_of_the_wrong_type_are_refused_in_one_line(option, value, words, random_net):
    """Issue 33 (trial API18, API19): ``prune(net, target="0.5")`` gave a ``TypeError`` from a
    comparison in ``select.py``, ``round_to=2.5`` numpy's ``ufunc 'lcm'`` error; GCP takes the
    same checks (``GCPConfig.check``, then the cost)."""
    import prunenet
    net = random_net("cifar_resnet20_v1", 32)
    options = {"target": 0.5, option: value}
    with pytest.raises(PrunenetError) as err:
        prunenet.prune(net, "l1", input_shape=(1, 3, 32, 32), **options)
    assert str(err.value) == words or str(err.value).startswith(words), str(err.value)
    assert "\n" not in str(err.value)


def test_verify_notes_a_temporary_file_a_killed_publish_left(zoo_copy):
    """Issue 33 (trial K3): a publish killed mid-copy left ``.NAME.params.XXXX.tmp`` (7.4 MB) in
    the zoo, which a later publish kept and ``zoo verify`` did not mention (it is uploaded with
    the zoo); verify now notes it by name, and still passes the models."""
    left = os.path.join(zoo_copy, ".killed1-6c313009.params.e_5tq8z_.tmp")
    write(left, "half a params file")
    code, out = _verify(zoo_copy)
    assert code == 0, out
    notes = [line for line in out.splitlines() if left in line]
    assert len(notes) == 1 and "temporary file of a write that was killed" in notes[0], out
    assert "ok       r18" in out and "ok       r20" in out
