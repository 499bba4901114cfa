"""The model zoo: publish -> list -> load round trips, GluonCV compatibility both ways, exports,
and clear errors that change nothing in the zoo."""
import hashlib
import json
import os
import shutil
import sys
import threading
import time

import mxnet as mx
import numpy as np
import pytest

from prunenet.zoo import store as zoo
from prunenet.cli import zoo as zoo_command
from prunenet.cli.args import Parser as _Parser
from prunenet.errors import PrunenetError
from prunenet.io.files import read_json
from prunenet.run.folder import prune_run
from prunenet.zoo.pruned import load_pruned

NAME = "resnet18_v1b_0.5_flops"
SIZE = 64
GLUONCV_SEVEN = {
    "resnet18_v1b_0.89": "resnet18_v1b_2.6x", "resnet50_v1d_0.86": "resnet50_v1d_1.8x",
    "resnet50_v1d_0.48": "resnet50_v1d_3.6x", "resnet50_v1d_0.37": "resnet50_v1d_5.9x",
    "resnet50_v1d_0.11": "resnet50_v1d_8.8x", "resnet101_v1d_0.76": "resnet101_v1d_1.9x",
    "resnet101_v1d_0.73": "resnet101_v1d_2.2x"}


def cli(*argv):
    """``prunenet ARGV`` with only the zoo command wired, errors handled as ``cli.main`` does."""
    parser = _Parser(prog="prunenet")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True
    zoo_command.add_parser(sub)
    args = parser.parse_args(list(argv))
    try:
        return args.func(args)
    except PrunenetError as err:
        print(f"prunenet: error: {err}", file=sys.stderr)
        return 2


def sha1(path):
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def snapshot(folder):
    """Every file in ``folder`` (hidden ones too) and the hash of its bytes."""
    return {f: sha1(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}


def probe(batch=2, seed=1):
    return mx.nd.array(np.random.RandomState(seed).normal(size=(batch, 3, SIZE, SIZE)))


def one_line(err, *words):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, random_net):
    """Two finished data-free runs of resnet18_v1b (10 classes, 64x64) with randomised BN."""
    root = tmp_path_factory.mktemp("runs")
    base = str(root / "base.params")
    random_net("resnet18_v1b", SIZE, seed=3, classes=10).save_parameters(base)
    out = {}
    for key, target in (("a", 0.5), ("b", 0.7)):
        out[key] = str(root / key)
        prune_run("resnet18_v1b", "l1", "flops", target, out[key], params=base, input_size=SIZE,
                  classes=10, command=["prunenet", "prune", key], log=lambda message: None)
    return out


@pytest.fixture()
def published(runs, tmp_path):
    """A zoo holding run a as NAME (not benchmarked)."""
    path = str(tmp_path / "zoo")
    zoo.publish(runs["a"], path, NAME, bench=False, log=None)
    return path


def test_publish_list_get_model_round_trip(runs, tmp_path, capsys):
    path = str(tmp_path / "zoo")
    assert cli("zoo", "publish", runs["a"], "--zoo", path, "--name", NAME,
               "--batch-size", "2", "--repeats", "2") == 0
    report = read_json(os.path.join(runs["a"], "report.json"))
    entry = read_json(os.path.join(path, "zoo.json"))["models"][NAME]
    assert entry["format"] == "gluoncv-pruned-resnet" and entry["base"] == "resnet18_v1b"
    assert (entry["objective"], entry["target"], entry["macs"], entry["params"]) == \
        ("flops", 0.5, report["macs_after"], report["params_after"])
    assert entry["command"] == ["prunenet", "prune", "a"] and entry["top1"] is None
    assert entry["throughput_img_s"] > 0 and entry["batch_size"] == 2
    assert entry["device"] == "cpu(0)" and entry["throughput_source"] == "publish"
    # the run's own speed check travels with it: speed-up beside MACs, with device and batch
    assert entry["speed_check"] == report["speed_check"]
    assert entry["speed_check"]["device"] == "cpu" and entry["speed_check"]["batch_size"] == 16
    # GluonCV's model-store names, byte copies of the run's files
    for role, src in (("shapes", "shapes.json"), ("params", "pruned.params")):
        digest = sha1(os.path.join(runs["a"], src))
        ext = ".json" if role == "shapes" else ".params"
        assert entry["files"][role] == f"{NAME}-{digest[:8]}{ext}"
        assert entry["sha1"][role] == digest == sha1(os.path.join(path, entry["files"][role]))
    assert sorted(os.listdir(path)) == sorted([".lock", ".prunenet", "zoo.json",
                                               *entry["files"].values()])

    capsys.readouterr()
    assert cli("zoo", "list", "--zoo", path) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:6] == ["name", "base", "objective", "target", "MACs", "params"]
    assert row.split()[:6] == [NAME, "resnet18_v1b", "flops", "0.5",
                               f"{report['macs_after'] / 1e6:.1f}M",
                               f"{report['params_after'] / 1e6:.1f}M"]

    x = probe()
    net = zoo.get_model(NAME, pretrained=True, root=path)
    assert np.array_equal(net(x).asnumpy(), load_pruned(runs["a"])(x).asnumpy())
    fresh = zoo.get_model(NAME, pretrained=False, root=path)
    ours = {k: v.shape for k, v in net.collect_params().items()}
    theirs = {k: v.shape for k, v in fresh.collect_params().items()}
    assert list(ours.values()) == list(theirs.values())
    assert not np.array_equal(fresh(x).asnumpy(), net(x).asnumpy())


def test_publish_measures_in_both_runtimes_and_list_shows_them(runs, tmp_path, capsys):
    """``zoo publish --runtime both``: the throughput in MXNet and in ONNX Runtime, timed in
    one interleaved run, recorded side by side and listed side by side."""
    path = str(tmp_path / "zoo")
    assert cli("zoo", "publish", runs["b"], "--zoo", path, "--name", NAME, "--runtime", "both",
               "--batch-size", "2", "--repeats", "2") == 0
    entry = read_json(os.path.join(path, "zoo.json"))["models"][NAME]
    assert entry["throughput_img_s"] > 0 and entry["throughput_img_s_onnxruntime"] > 0
    capsys.readouterr()
    assert cli("zoo", "list", "--zoo", path) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    at = header.split().index("ORT_img/s")
    assert row.split()[at] == f"{entry['throughput_img_s_onnxruntime']:.0f}"


def test_gluoncv_prune_gluon_block_loads_what_we_publish(published):
    from gluoncv.model_zoo import get_model
    from gluoncv.model_zoo.pruned_resnet.resnetv1b_pruned import prune_gluon_block
    entry = read_json(os.path.join(published, "zoo.json"))["models"][NAME]
    net = get_model("resnet18_v1b", classes=10)
    with open(os.path.join(published, entry["files"]["shapes"])) as f:
        shapes = json.load(f)
    prune_gluon_block(net, net.name, shapes,
                      params=mx.nd.load(os.path.join(published, entry["files"]["params"])),
                      pretrained=True, ctx=mx.cpu())
    x = probe()
    ours = zoo.get_model(NAME, pretrained=True, root=published)
    assert np.array_equal(net(x).asnumpy(), ours(x).asnumpy())


def test_gluoncv_shipped_models_load_through_ours(tmp_path, monkeypatch):
    from gluoncv.model_zoo import get_model, model_store
    assert zoo.gluoncv_pruned_models() == GLUONCV_SEVEN
    monkeypatch.setenv("HOME", str(tmp_path))  # no real ~/.mxnet/models in the way
    monkeypatch.delenv("MXNET_HOME", raising=False)
    x = mx.nd.array(np.random.RandomState(0).normal(size=(1, 3, 32, 32)))
    for name in ("resnet18_v1b_0.89", "resnet50_v1d_0.11"):
        ours = zoo.get_model(name)  # pretrained=False: the shipped shape file, random weights
        theirs = get_model(name)
        theirs.initialize()
        theirs(x)
        assert [p.shape for p in ours.collect_params().values()] == \
            [tuple(p.shape) for p in theirs.collect_params().values()]

    # weights: GluonCV's file name and hash check (the hash patched: nothing is downloaded)
    root = tmp_path / "models"
    root.mkdir()
    name, tag = "resnet18_v1b_0.89", "resnet18_v1b_2.6x"
    with pytest.raises(PrunenetError, match=rf"{tag}-{model_store.short_hash(tag)}\.params is "
                                            rf"not in {root}"):
        zoo.get_model(name, pretrained=True, root=str(root))
    source = zoo.get_model(name)
    weights = {p.name.replace(source.prefix, "resnetv1d_"): p.data()
               for p in source.collect_params().values()}
    tmp = str(root / "weights.tmp")
    mx.nd.save(tmp, weights)
    digest = sha1(tmp)
    monkeypatch.setitem(model_store._model_sha1, tag, digest)
    target = root / f"{tag}-{digest[:8]}.params"
    os.replace(tmp, target)
    ours = zoo.get_model(name, pretrained=True, root=str(root))
    theirs = get_model(name, pretrained=True, root=str(root))
    assert np.array_equal(ours(x).asnumpy(), theirs(x).asnumpy())
    assert np.array_equal(ours(x).asnumpy(), source(x).asnumpy())
    monkeypatch.setitem(model_store._model_sha1, tag, digest[:8] + "0" * 32)
    with pytest.raises(PrunenetError, match=rf"{target}.*corrupt"):
        zoo.get_model(name, pretrained=True, root=str(root))


def test_exports_match_mxnet(published, tmp_path, capsys):
    import onnx
    import onnxruntime
    out = str(tmp_path / "deploy")
    assert cli("zoo", "export", NAME, "--zoo", published, "--format", "onnx", "--out", out) == 0
    assert cli("zoo", "export", NAME, "--zoo", published, "--format", "symbol",
               "--out", out) == 0
    assert sorted(os.listdir(out)) == [f"{NAME}-0000.params", f"{NAME}-symbol.json",
                                       f"{NAME}.onnx"]
    x = probe(batch=3)  # not the exported batch size: the batch axis is dynamic
    expected = zoo.get_model(NAME, pretrained=True, root=published)(x).asnumpy()
    onnx.checker.check_model(onnx.load(os.path.join(out, f"{NAME}.onnx")))
    session = onnxruntime.InferenceSession(os.path.join(out, f"{NAME}.onnx"),
                                           providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["data"]
    got = session.run(None, {"data": x.asnumpy()})[0]
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4
    block = mx.gluon.SymbolBlock.imports(os.path.join(out, f"{NAME}-symbol.json"), ["data"],
                                         os.path.join(out, f"{NAME}-0000.params"))
    assert np.allclose(block(x).asnumpy(), expected, rtol=0, atol=1e-5)
    before = snapshot(out)
    capsys.readouterr()
    assert cli("zoo", "export", NAME, "--zoo", published, "--format", "onnx", "--out", out) == 2
    one_line(capsys.readouterr().err, f"{NAME}.onnx already exists", "--overwrite")
    assert snapshot(out) == before


def _flip_byte(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def _entry(path):
    return read_json(os.path.join(path, "zoo.json"))["models"][NAME]


def _edit_entry(path, **changes):
    doc = read_json(os.path.join(path, "zoo.json"))
    for key, value in changes.items():
        doc["models"][NAME][key].update(value)
    with open(os.path.join(path, "zoo.json"), "w") as f:
        json.dump(doc, f)


def _bad_zoo(kind, zoo_path, runs):
    """Damage the zoo in one way; return (the file the error must name, words it must say)."""
    entry = _entry(zoo_path)
    params = os.path.join(zoo_path, entry["files"]["params"])
    if kind == "flipped byte":
        _flip_byte(params)
        return params, ["sha1", "corrupt"]
    if kind == "tampered hash":
        good = entry["sha1"]["params"]
        _edit_entry(zoo_path, sha1={"params": good[:-1] + ("0" if good[-1] != "0" else "1")})
        return params, ["sha1", "corrupt"]
    if kind == "hash not the file name's":
        _edit_entry(zoo_path, sha1={"params": "0" * 40})
        return params, ["not the hash in its file name"]
    if kind == "missing file":
        os.remove(params)
        return params, ["missing"]
    if kind == "shape mismatch":  # another model's weights, hash intact
        other = str(os.path.join(os.path.dirname(zoo_path), "other"))
        theirs = zoo.publish(runs["b"], other, "other", bench=False, log=None)
        fname = theirs["files"]["params"]
        shutil.copyfile(os.path.join(other, fname), os.path.join(zoo_path, fname))
        _edit_entry(zoo_path, files={"params": fname}, sha1={"params": theirs["sha1"]["params"]})
        return os.path.join(zoo_path, fname), ["does not match shape file"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["flipped byte", "tampered hash", "hash not the file name's",
                                  "missing file", "shape mismatch"])
def test_damaged_zoo_gives_clear_errors_and_changes_nothing(kind, published, runs, capsys):
    named, words = _bad_zoo(kind, published, runs)
    before = snapshot(published)
    with pytest.raises(PrunenetError) as err:
        zoo.get_model(NAME, pretrained=True, root=published)
    message = str(err.value)
    assert named in message and "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    capsys.readouterr()
    assert cli("zoo", "verify", "--zoo", published) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and NAME in failed[0] and named in failed[0], out
    assert snapshot(published) == before


def test_verify_passes_a_sound_zoo_and_notes_stray_files(published, capsys):
    assert cli("zoo", "verify", "--zoo", published) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"ok       {NAME}"
    with open(os.path.join(published, "stray-12345678.params"), "w") as f:
        f.write("x")
    result = zoo.verify(published)
    assert result.ok == [NAME] and not result.problems
    assert len(result.notes) == 1 and "stray-12345678.params" in result.notes[0]


def test_publishing_twice_refuses_unless_overwrite(published, runs, capsys):
    before = snapshot(published)
    assert cli("zoo", "publish", runs["b"], "--zoo", published, "--name", NAME,
               "--no-bench") == 2
    one_line(capsys.readouterr().err, NAME, "already in the zoo", "--overwrite")
    assert snapshot(published) == before
    old = _entry(published)
    zoo.publish(runs["b"], published, NAME, overwrite=True, bench=False, log=None)
    new = _entry(published)
    assert new["target"] == 0.7 and new["files"] != old["files"]
    assert sorted(os.listdir(published)) == sorted([".lock", ".prunenet", "zoo.json",
                                                    *new["files"].values()])
    x = probe()
    assert np.array_equal(zoo.get_model(NAME, pretrained=True, root=published)(x).asnumpy(),
                          load_pruned(runs["b"])(x).asnumpy())


@pytest.mark.parametrize("where", ["manifest", "params copy"])
def test_interrupted_publish_leaves_the_zoo_as_it_was(where, published, runs, monkeypatch):
    import prunenet.io.files
    before = snapshot(published)
    if where == "manifest":
        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt
        monkeypatch.setattr(prunenet.io.files, "write_json", interrupted)
    else:
        copy = shutil.copyfile
        calls = []

        def interrupted(src, dst, **kwargs):  # the shape file lands, the weights do not
            calls.append(src)
            if len(calls) > 1:
                raise KeyboardInterrupt
            return copy(src, dst, **kwargs)
        monkeypatch.setattr(zoo.shutil, "copyfile", interrupted)
    for name, overwrite in (("another", False), (NAME, True)):
        with pytest.raises(KeyboardInterrupt):
            zoo.publish(runs["b"], published, name, overwrite=overwrite, bench=False, log=None)
        assert snapshot(published) == before
    monkeypatch.undo()
    assert zoo.verify(published).ok == [NAME]


def test_concurrent_manifest_edits_all_land(tmp_path):
    path = str(tmp_path / "zoo")

    def add(i):
        with zoo.edit_manifest(path) as doc:
            time.sleep(0.02)  # without the lock, the others' edits would be lost
            doc["models"][f"m{i}"] = {"i": i}

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(zoo.read_manifest(path)["models"]) == [f"m{i}" for i in range(8)]
    assert not [f for f in os.listdir(path) if f.endswith(".tmp")]


def test_bad_input_is_refused_clearly(runs, published, tmp_path, capsys):
    fresh = str(tmp_path / "new")
    for bad in ("../up", "a b", "", "-x"):
        with pytest.raises(PrunenetError, match="not valid"):
            zoo.publish(runs["a"], fresh, bad, bench=False, log=None)
    with pytest.raises(PrunenetError, match="GluonCV's own"):
        zoo.publish(runs["a"], fresh, "resnet50_v1d_0.86", bench=False, log=None)
    with pytest.raises(PrunenetError, match="run report .*report.json does not exist"):
        zoo.publish(str(tmp_path), fresh, "x", bench=False, log=None)
    symbol_run = tmp_path / "symbol_run"
    symbol_run.mkdir()
    with open(symbol_run / "report.json", "w") as f:
        json.dump({"model": "cifar_resnet20_v1", "format": "mxnet-symbol"}, f)
    with pytest.raises(PrunenetError, match="has no pruned-symbol.json"):
        zoo.publish(str(symbol_run), fresh, "x", bench=False, log=None)
    assert not os.path.exists(fresh)
    assert cli("zoo", "list", "--zoo", fresh) == 2
    one_line(capsys.readouterr().err, "no model zoo", fresh)
    with pytest.raises(PrunenetError, match=r"neither in the zoo .*\(resnet18_v1b_0.5_flops\)"):
        zoo.get_model("resnet18_v1b_0.4_flops", root=published)


def test_a_throughput_held_by_the_run_is_kept(runs, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(runs["a"], run)
    report = read_json(os.path.join(run, "report.json"))
    report.update(throughput_img_s=1234.5, batch_size=64, device="gpu(0)", top1_after=0.9,
                  top5_after=0.99)
    with open(os.path.join(run, "report.json"), "w") as f:
        json.dump(report, f)
    entry = zoo.publish(run, str(tmp_path / "zoo"), NAME, batch_size=1, repeats=1, log=None)
    assert (entry["throughput_img_s"], entry["batch_size"], entry["device"]) == \
        (1234.5, 64, "gpu(0)")
    assert entry["throughput_source"] == "run" and (entry["top1"], entry["top5"]) == (0.9, 0.99)


def test_republishing_repairs_a_corrupt_file(published, runs):
    _flip_byte(os.path.join(published, _entry(published)["files"]["params"]))
    assert zoo.verify(published).problems
    zoo.publish(runs["a"], published, NAME, overwrite=True, bench=False, log=None)
    assert zoo.verify(published).ok == [NAME]
    x = probe()
    assert np.array_equal(zoo.get_model(NAME, pretrained=True, root=published)(x).asnumpy(),
                          load_pruned(runs["a"])(x).asnumpy())


def test_other_networks_are_stored_as_symbol_and_params(tmp_path, capsys):
    """A network outside the ResNetV1b family: the same manifest, hash checks and exports."""
    from prunenet.cli import main
    run = tmp_path / "mbv2"
    assert main(["prune", "--model", "mobilenetv2_1.0", "--input-size", "32", "--classes", "10",
                 "--method", "l1", "--target", "0.6", "--out", str(run)]) == 0
    path = str(tmp_path / "zoo")
    entry = zoo.publish(str(run), path, "mobilenetv2_0.6_flops", batch_size=2, repeats=1,
                        log=None)
    assert entry["format"] == zoo.SYMBOL_FORMAT and entry["classes"] == 10
    assert set(entry["files"]) == {"symbol", "params"}
    for role, fname in entry["files"].items():
        assert sha1(os.path.join(path, fname)) == entry["sha1"][role]
    x = mx.nd.array(np.random.RandomState(0).normal(size=(2, 3, 32, 32)))
    ours = zoo.get_model("mobilenetv2_0.6_flops", pretrained=True, root=path)
    assert np.array_equal(ours(x).asnumpy(), load_pruned(str(run))(x).asnumpy())
    assert zoo.verify(path).ok == ["mobilenetv2_0.6_flops"]
    out = tmp_path / "deploy"
    assert cli("zoo", "export", "mobilenetv2_0.6_flops", "--zoo", path, "--format", "onnx",
               "--out", str(out)) == 0
    assert os.path.exists(out / "mobilenetv2_0.6_flops.onnx")
    before = snapshot(path)
    _flip_byte(os.path.join(path, entry["files"]["symbol"]))
    problems = zoo.verify(path).problems
    assert len(problems) == 1 and entry["files"]["symbol"] in problems[0]
    with pytest.raises(PrunenetError, match="sha1"):
        zoo.get_model("mobilenetv2_0.6_flops", pretrained=True, root=path)
    assert snapshot(path).keys() == before.keys()
