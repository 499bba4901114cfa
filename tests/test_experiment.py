"""The experiment kit: every committed config passes its dry run; one definition per code path
runs end to end in smoke mode (generated RecordIO / image folder, 32 px, random network); bad
configs and bad data are refused on one line before any training."""
import csv
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from prunenet import experiment as ex
from prunenet.cli import main
from prunenet.errors import PrunenetError
from prunenet.io.files import read_json
from prunenet.io.records import RESULTS_COLUMNS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "experiments", "configs", "*.json")))


def config(name):
    return os.path.join(ROOT, "experiments", "configs", name + ".json")


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def refused(capsys, argv):
    """Run the command line; return its one-line error (it must fail with exit 2)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prunenet: error: "), err
    return err


# -- dry runs ------------------------------------------------------------------------------------
def test_every_committed_config_passes_its_dry_run():
    assert len(CONFIGS) >= 11
    cache, seen = {}, set()
    for path in CONFIGS:
        exp = ex.load_config(path)
        result = ex.dry_run(exp, log=None, _cache=cache)
        assert [r["run"] for r in result] == [r.name for r in ex.runs_of(exp)]
        for r in result:
            if r["target"] is not None:
                assert r["macs"] <= r["target"] * r["macs_before"] + 1
                assert r["achieved"] > r["target"] - 0.01
        seen.add((exp.model, exp.method, exp.objective, exp.kind))
    for model in ("resnet18_v1b", "resnet50_v1d"):  # the paper's tables
        assert {(model, "gcp", "flops", "prune"), (model, "gcp", "params", "prune"),
                (model, "uniform", "flops", "prune")} <= seen
    assert {("resnet101_v1d", "gcp", "flops", "prune"), ("resnet101_v1d", "uniform", "flops",
            "prune"), ("resnet50_v1d", "gcp", "latency", "prune"),
            ("resnet50_v1d", "gcp", "flops", "transfer")} <= seen


def test_targets_reproduce_the_macs_of_gluoncvs_pruned_resnets():
    """α = the shipped model's MACs / the unpruned MACs (floored at 4 decimals), counted here."""
    import gluoncv
    from prunenet.core.costs import count
    from prunenet.io.files import read_shapes
    from prunenet.core.graph import trace
    from prunenet.training.models import input_shape, load_model
    from prunenet.zoo.store import gluoncv_pruned_models
    folder = os.path.join(os.path.dirname(gluoncv.__file__), "model_zoo", "pruned_resnet")
    targets = {m: ex.load_config(config(m + "_flops")).targets
               for m in ("resnet18_v1b", "resnet50_v1d", "resnet101_v1d")}
    full = {}
    for name, tag in gluoncv_pruned_models().items():
        model = name.rsplit("_", 1)[0]
        if model not in full:
            full[model] = count(trace(load_model(model), input_shape(model)))["macs"]
        path = os.path.join(folder, tag + ".json")
        macs = count(trace(load_model(model, shapes=read_shapes(path), shapes_source=path),
                           input_shape(model)))["macs"]
        alpha = int(macs / full[model] * 1e4) / 1e4
        assert alpha in targets[model], (name, alpha)
    assert min(targets["resnet50_v1d"]) == 0.0447  # resnet50_v1d_0.11: 22x fewer MACs


def test_dry_run_on_the_command_line(capsys):
    assert main(["experiment", config("resnet18_v1b_params"), "--dry-run",
                 "--only", "*-0.5"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("resnet18_v1b_params-0.5: ") and "GMACs" in out[0]


BAD = [
    ({"lr_typo": 0.1}, "key lr_typo is not a known key"),
    ({"steps": "3"}, "key steps must be a whole number"),
    ({"steps": True}, "key steps must be a whole number"),
    ({"reg": float("nan")}, "key reg must be a number"),
    ({"targets": [0.5, 1.0]}, "key targets holds 1.0, not a fraction"),
    ({"targets": [0]}, "key targets holds 0, not a fraction"),
    ({"targets": []}, "key targets is empty"),
    ({"targets": 0.5}, "key targets must be a list"),
    ({"model": "resnet50_v1x"}, "key model names no GluonCV model"),
    ({"method": "gcpp"}, "key method must be one of"),
    ({"objective": "latncy"}, "key objective must be one of"),
    ({"finetune": {"epochs": 1}}, "key finetune.lr is missing"),
    ({"finetune": {"epochs": 1, "lr": 0.1, "momentum": 0.9}}, "key finetune.momentum is not"),
    ({"data": {"dataset": "cifar", "data_dir": "x"}}, "key data.dataset must be one of"),
    ({"kvstore": "nccl"}, "key kvstore must be one of"),
    ({"gpus": "gpu0"}, "key gpus must be GPU ids"),
    ({"batch_size": 0}, "key batch_size must be at least 1"),
    ({"source": "resnet50_v1d_flops"}, "key source belongs to transfer configs"),
    ({"data": {"dataset": "imagenet", "data_dir": "x", "train_per_class": 60}},
     "key data.train_per_class belongs to transfer configs"),
    ({"data": {"dataset": "imagenet", "data_dir": "x", "num_workers": -1}},
     "key data.num_workers must be at least 0"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m.split(" ")[1] + str(i)
                                                     for i, (_, m) in enumerate(BAD)])
def test_bad_configs_are_refused_on_one_line_naming_file_and_key(tmp_path, capsys, change,
                                                                 message):
    with open(config("resnet18_v1b_flops")) as f:
        doc = json.load(f)
    doc.update(change)
    path = str(tmp_path / "bad.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    err = refused(capsys, ["experiment", path, "--dry-run"])
    assert f"experiment config {path}: {message}" in err, err


def test_config_files_that_are_not_configs(tmp_path, capsys):
    missing = str(tmp_path / "nope.json")
    assert "does not exist" in refused(capsys, ["experiment", missing, "--dry-run"])
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": ')
    assert "is not valid JSON" in refused(capsys, ["experiment", str(broken), "--dry-run"])
    twice = tmp_path / "twice.json"
    twice.write_text('{"name": "a", "name": "b"}')
    assert "key name is given twice" in refused(capsys, ["experiment", str(twice), "--dry-run"])
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert "must be a JSON object" in refused(capsys, ["experiment", str(listed), "--dry-run"])
    with open(config("caltech256_resnet50_v1d")) as f:
        doc = json.load(f)
    doc["targets"] = [0.42]
    other = tmp_path / "transfer.json"  # its source config is not beside it
    other.write_text(json.dumps(doc))
    assert "key source names experiment" in refused(capsys, ["experiment", str(other),
                                                             "--dry-run"])
    assert "matches no run" in refused(capsys, ["experiment", config("resnet18_v1b_flops"),
                                                "--dry-run", "--only", "nothing"])


# -- smoke runs ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A tiny ImageNet-style RecordIO pair (generated JPEGs, 4 classes) made here."""
    import mxnet as mx
    folder = ex.make_smoke_records(str(tmp_path_factory.mktemp("rec")))
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(folder, "train.idx"),
                                        os.path.join(folder, "train.rec"), "r")
    header, _ = mx.recordio.unpack(rec.read_idx(rec.keys[-1]))
    assert len(rec.keys) == 32 and header.label == 3.0
    rec.close()
    return folder


def smoke(name, out, data_dir=None, only="*-0.5"):
    argv = ["experiment", config(name), "--smoke", "--only", only, "--out", str(out)]
    return main(argv + (["--data-dir", data_dir] if data_dir else []))


def test_smoke_flops_resnet18_then_skip_and_table(records, tmp_path, capsys):
    out = tmp_path / "r18"
    assert smoke("resnet18_v1b_flops", out, records) == 0
    table = rows(out / "results.csv")
    assert [r["method"] for r in table] == ["unpruned", "gcp"]
    assert list(table[0]) == RESULTS_COLUMNS
    run = table[1]
    assert run["objective"] == "flops" and float(run["target"]) == 0.5
    assert float(run["achieved"]) <= 0.5 and run["dataset"] == "imagenet"
    assert float(run["throughput_img_s"]) > 0 and run["top5"] != ""
    assert os.path.exists(os.path.join(run["run_dir"], "steps.csv"))
    manifest = json.load(open(out / "zoo" / "zoo.json"))
    assert manifest["models"]["resnet18_v1b_flops-0.5"]["throughput_source"] == "run"
    capsys.readouterr()
    assert smoke("resnet18_v1b_flops", out, records) == 0  # finished: skipped
    assert "finished already" in capsys.readouterr().out
    assert len(rows(out / "results.csv")) == 2
    assert main(["experiment", "table", str(out / "results.csv")]) == 0
    text = capsys.readouterr().out
    assert "| unpruned |" in text and "| GCP-f | 0.5 |" in text and "# FLOPs" in text


def test_smoke_uniform_and_bottleneck_resnet50_share_a_table(records, tmp_path, capsys):
    uniform, gcp = tmp_path / "r50u", tmp_path / "r50p"
    assert smoke("resnet50_v1d_uniform", uniform, records) == 0
    assert smoke("resnet50_v1d_params", gcp, records) == 0
    table = rows(uniform / "results.csv")
    assert [(r["method"], r["objective"]) for r in table] == [("unpruned", ""),
                                                              ("uniform", "flops")]
    assert table[0]["run_dir"] == table[1]["run_dir"]  # the run that evaluated the unpruned net
    assert main(["experiment", "table", str(uniform / "results.csv"),
                 str(gcp / "results.csv")]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("| ")]
    assert [l.split("|")[1].strip() for l in lines[1:]] == ["unpruned", "Uniform", "GCP-p"]


def test_smoke_caltech_transfer_replaces_the_classifier(tmp_path):
    data = ex.make_smoke_folder(str(tmp_path / "caltech"))  # 3 classes x 62 images
    out = tmp_path / "results" / "caltech"
    assert smoke("caltech256_resnet50_v1d", out, data) == 0
    (row,) = rows(out / "results.csv")
    assert row["dataset"] == "caltech256" and row["method"] == "gcp"
    report = json.load(open(os.path.join(row["run_dir"], "report.json")))
    assert report["classes"] == 257 and report["settings"]["train_images"] == 180
    assert report["settings"]["val_images"] == 6
    assert "resnet50_v1d_flops-smoke" in report["source"]
    shapes = json.load(open(os.path.join(row["run_dir"], "shapes.json")))
    assert shapes["resnetv1d_dense0_weight"][0] == 257


def test_an_interrupted_run_is_resumed(records, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, os.path.join(ROOT, "experiments", "run.py"),
           config("resnet18_v1b_flops"), "--smoke", "--only", "*-0.3", "--out", str(out),
           "--data-dir", records]
    env = dict(os.environ, OMP_NUM_THREADS="1", PRUNENET_FAILPOINT="finetune:1")
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    run_dir = out / "runs" / "resnet18_v1b_flops-0.3"
    assert (run_dir / "run.json").exists() and not (run_dir / "report.json").exists()
    assert not (out / "results.csv").exists()
    env.pop("PRUNENET_FAILPOINT")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    assert [r["method"] for r in rows(out / "results.csv")] == ["unpruned", "gcp"]


def test_a_killed_transfer_continues_its_fine_tuning_to_the_same_network(tmp_path):
    """Caltech transfer is one long fine-tuning: killed after its first iteration, it resumes
    from its checkpoint and ends where an uninterrupted run ends (serial engine: bit for bit)."""
    from prunenet.io.files import load_params
    data = ex.make_smoke_folder(str(tmp_path / "caltech"))
    env = dict(os.environ, OMP_NUM_THREADS="1", MXNET_ENGINE_TYPE="NaiveEngine")

    def transfer(out, failpoint=None):
        cmd = [sys.executable, os.path.join(ROOT, "experiments", "run.py"),
               config("caltech256_resnet50_v1d"), "--smoke", "--only", "*-0.5", "--out",
               str(out), "--data-dir", data]
        run_env = dict(env, PRUNENET_FAILPOINT=failpoint) if failpoint else env
        return subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=300)

    whole = tmp_path / "results" / "whole"
    assert transfer(whole).returncode == 0
    out = tmp_path / "results" / "killed"
    killed = transfer(out, "finetune:1")
    assert killed.returncode == -9, killed.stderr[-2000:]
    (ckpt,) = glob.glob(str(out / "runs" / "*-0.5.checkpoint"))
    run_dir = ckpt[:-len(".checkpoint")]
    assert not os.path.exists(run_dir)  # written whole at the end, or not at all
    stale = str(tmp_path / "stale-checkpoint")
    shutil.copytree(ckpt, stale)
    done = transfer(out)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming the fine-tuning after iteration 1" in done.stdout
    assert not os.path.exists(run_dir + ".checkpoint")
    reports = [json.load(open(os.path.join(folder, "runs", os.path.basename(run_dir),
                                           "report.json"))) for folder in (whole, out)]
    assert reports[0]["top1_after"] == reports[1]["top1_after"]
    assert reports[0]["finetune_loss"] == reports[1]["finetune_loss"]
    a, b = (load_params(os.path.join(folder, "runs", os.path.basename(run_dir),
                                     "pruned.params")) for folder in (whole, out))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    # a checkpoint of other settings (here: another batch size) is not resumed
    shutil.copytree(stale, ckpt)
    saved = json.load(open(os.path.join(ckpt, "checkpoint.json")))
    saved["recipe"]["batch_size"] += 1
    with open(os.path.join(ckpt, "checkpoint.json"), "w") as f:
        json.dump(saved, f)
    shutil.rmtree(run_dir)
    again = transfer(out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "made with other settings; starting afresh" in again.stdout
    assert "resuming" not in again.stdout and not os.path.exists(ckpt)


# -- bad data: refused before any training -------------------------------------------------------
def test_missing_or_mismatched_records_are_refused_before_training(records, tmp_path, capsys):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(records, data)
    os.remove(data / "val.rec")
    out = tmp_path / "out"
    err = refused(capsys, ["experiment", config("resnet18_v1b_flops"), "--smoke", "--out",
                           str(out), "--data-dir", str(data)])
    assert "record file" in err and "val.rec does not exist" in err
    assert not (out / "runs").exists()
    shutil.copy(os.path.join(records, "val.rec"), data / "val.rec")
    lines = (data / "train.idx").read_text().splitlines()
    key, offset = lines[5].split("\t")
    lines[5] = f"{key}\t{int(offset) + 3}"
    (data / "train.idx").write_text("\n".join(lines) + "\n")
    err = refused(capsys, ["experiment", config("resnet18_v1b_flops"), "--smoke", "--out",
                           str(out), "--data-dir", str(data)])
    assert "does not match record file" in err and "where no record starts" in err
    assert not (out / "runs").exists()


def test_a_caltech_class_with_fewer_than_60_images_is_refused_before_training(tmp_path, capsys):
    data = ex.make_smoke_folder(str(tmp_path / "caltech"), classes=2, per_class=61)
    victim = sorted(os.listdir(data))[1]
    for name in sorted(os.listdir(os.path.join(data, victim)))[:2]:
        os.remove(os.path.join(data, victim, name))
    out = tmp_path / "out"
    err = refused(capsys, ["experiment", config("caltech256_resnet50_v1d"), "--smoke", "--out",
                           str(out), "--data-dir", data])
    assert f"class {victim} has 59 images, fewer than the 60 training images" in err
    assert not (out / "runs").exists()
    with pytest.raises(PrunenetError, match="does not exist"):
        ex.caltech_split(str(tmp_path / "none"), str(tmp_path / "split"))


def test_distributed_kvstore_outside_a_launched_job_or_for_a_transfer_is_refused(
        records, tmp_path, capsys, monkeypatch):
    """A parameter-server experiment runs as the workers of MXNet's launcher (the loopback job
    itself is tests/test_distributed.py); Caltech transfer and latency runs stay on one machine."""
    for key in [k for k in os.environ if k.startswith("DMLC_")]:
        monkeypatch.delenv(key)
    for name, words in [("resnet18_v1b_flops", ["DMLC_ROLE", "launch.py"]),
                        ("caltech256_resnet50_v1d", ["key kvstore 'dist_sync_device'",
                                                     "a transfer runs on one machine"]),
                        ("resnet101_v1d_latency", ["the latency objective runs on one machine"])]:
        with open(config(name)) as f:
            doc = json.load(f)
        doc["kvstore"] = "dist_sync_device"
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        if "source" in doc:  # a transfer's source experiment sits beside it
            shutil.copy(config(doc["source"]), tmp_path)
        assert main(["experiment", str(path), "--dry-run"]) == 0  # a valid config
        capsys.readouterr()
        out = tmp_path / f"{name}-out"
        err = refused(capsys, ["experiment", str(path), "--smoke", "--out", str(out),
                               "--data-dir", records])
        assert all(w in err for w in words), err
        assert not os.path.exists(os.path.join(out, "runs")), name


def test_results_table_of_a_file_that_is_not_results(tmp_path, capsys):
    assert "does not exist" in refused(capsys, ["experiment", "table", str(tmp_path / "x.csv")])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert "is not a prunenet results CSV" in refused(capsys, ["experiment", "table", str(bad)])
    assert "needs the results CSV" in refused(capsys, ["experiment", "table"])


@pytest.mark.slow  # about 80 s: run with -m slow
def test_smoke_latency_objective(records, tmp_path):
    """The latency objective measures a latency table (at batch 4 in smoke mode) on the CPU."""
    out = tmp_path / "lat"
    assert smoke("resnet50_v1d_latency", out, records) == 0
    (_, row) = rows(out / "results.csv")
    assert row["objective"] == "latency"
    report = json.load(open(os.path.join(row["run_dir"], "report.json")))
    assert report["latency_table"]["batch_size"] == 4 and report["latency_ms_measured"] > 0


def test_a_transfer_without_its_source_runs_is_refused_before_training(tmp_path, capsys):
    data = ex.make_smoke_folder(str(tmp_path / "caltech"), classes=2, per_class=60)
    out = tmp_path / "results" / "caltech"
    err = refused(capsys, ["experiment", config("caltech256_resnet50_v1d"), "--gpus", "",
                           "--out", str(out), "--data-dir", data])
    assert "needs the pruned network of experiment resnet50_v1d_flops at 0.5397" in err
    assert "run that experiment first" in err and not out.exists()


def test_prune_reads_imagenet_records_named_by_gluoncv_flags(records, tmp_path, capsys):
    """--rec-train/--rec-val (and their -idx) as in GluonCV's train_imagenet.py, files named
    freely; -j decoding threads; a half-given pair or another dataset is refused."""
    data = tmp_path / "elsewhere"
    data.mkdir()
    for split, name in (("train", "tr"), ("val", "va")):
        for ext in ("rec", "idx"):
            shutil.copy(os.path.join(records, f"{split}.{ext}"), data / f"{name}-{split}.{ext}")
    base = ["prune", "--model", "resnet18_v1b", "--method", "l1", "--target", "0.5",
            "--classes", "4", "--input-size", "32", "--batch-size", "8", "--no-progress"]
    out = tmp_path / "run"
    assert main(base + ["--rec-train", str(data / "tr-train.rec"),
                        "--rec-train-idx", str(data / "tr-train.idx"),
                        "--rec-val", str(data / "va-val.rec"), "-j", "1",
                        "--finetune-epochs", "0.25", "--out", str(out)]) == 0
    report = read_json(str(out / "report.json"))
    assert report["dataset"] == "imagenet" and report["settings"]["num_data_workers"] == 1
    assert report["settings"]["rec_val"].endswith("va-val.rec")
    assert 0 <= report["top1_after"] <= 1 and report["macs_after"] < report["macs_before"]
    capsys.readouterr()
    for extra, words in [
            (["--rec-train", str(data / "tr-train.rec")], "give --rec-train and --rec-val"),
            (["--rec-train", str(data / "tr-train.rec"), "--rec-val", str(data / "va-val.rec"),
              "--dataset", "synthetic"], "they go with --dataset imagenet, not synthetic"),
            (["--rec-train", str(data / "missing.rec"), "--rec-val", str(data / "va-val.rec")],
             "missing")]:
        err = refused(capsys, base + extra + ["--out", str(tmp_path / "no")])
        assert words in err, err
        assert not (tmp_path / "no").exists()
