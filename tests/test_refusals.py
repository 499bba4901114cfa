"""Bad input that gave a wrong result without a word, or a traceback: edited run and checkpoint
files, images that do not decode, labels outside the classes and non-finite inputs, shared
weights, dead channels, and the export, demo and API arguments of docs/bad-inputs.md's rows.

Each refusal is one line (``refused``/``one_line`` of test_bad_input); nothing is changed.
"""
import json
import os
import re
import shutil

import pytest

from test_bad_input import refused

RUN = ["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--target", "0.5",
       "--dataset", "synthetic", "--input-size", "32", "--train-limit", "64", "--val-limit",
       "32", "--batch-size", "16", "--finetune-epochs", "0.25", "--no-progress"]


def edit(path, change):
    """Apply ``change`` (a function of the parsed JSON) to the JSON file ``path``."""
    with open(path) as f:
        doc = json.load(f)
    change(doc)
    with open(path, "w") as f:
        json.dump(doc, f)


# ------------------------------------------------------------------ --resume of edited files

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished data-free run with fine-tuning (and so a fine-tuning checkpoint)."""
    out = str(tmp_path_factory.mktemp("resume") / "run")
    from prunenet.cli import main
    assert main(RUN + ["--out", out]) == 0
    return out


@pytest.fixture
def run_copy(finished, tmp_path):
    out = str(tmp_path / "run")
    shutil.copytree(finished, out)
    return out


def _refused_resume(out, *words):
    report = open(os.path.join(out, "report.json")).read()
    refused(["prune", "--resume", out], *words)
    assert open(os.path.join(out, "report.json")).read() == report  # nothing rewritten


@pytest.mark.parametrize("key,value,words", [
    ("target", 0.3, "run.json has target 0.3, but the run was started with 0.5"),  # was exit 0
    ("batch_size", 0, "run.json has batch_size 0, but the run was started with 16"),
    ("lr", -1, "run.json has lr -1, but the run was started with 0.01"),
    ("steps", "three", 'run.json has steps "three", not a whole number'),  # was copied along
    ("target", None, "run.json has target null, not a finite number"),
])
def test_resume_refuses_run_json_edited_against_the_run(run_copy, key, value, words):
    edit(os.path.join(run_copy, "run.json"), lambda d: d.update({key: value}))
    _refused_resume(run_copy, words, "--resume")


@pytest.mark.parametrize("key,value,words", [
    ("target", 0.3, "run.json has target 0.3, but its checkpoint was made for 0.5"),
    ("batch_size", 0, "--batch-size >= 1"),  # was a ZeroDivisionError traceback
    ("lr", -1, "--lr -1 must be positive"),
])
def test_resume_refuses_run_json_edited_in_a_run_older_than_its_copy(run_copy, key, value,
                                                                      words):
    os.remove(os.path.join(run_copy, "checkpoint", "started.json"))  # a run of older prunenet
    edit(os.path.join(run_copy, "run.json"), lambda d: d.update({key: value}))
    _refused_resume(run_copy, words, "--resume")


def test_resume_still_takes_what_does_not_change_the_result(run_copy):
    from prunenet.cli import main
    edit(os.path.join(run_copy, "run.json"), lambda d: d.update(num_data_workers=1,
                                                                 checkpoint_every=7))
    assert main(["prune", "--resume", run_copy]) == 0


@pytest.mark.parametrize("change,words", [
    (lambda d: d.update(stage="quantize"), "has stage 'quantize', not one a run writes"),
    (lambda d: d.update(stage="gcp"), "lacks states"),  # was a KeyError traceback
    (lambda d: d.pop("selection"), "lacks selection"),  # was a KeyError traceback
    (lambda d: d.update(finetune=[]), "lacks finetune"),
])
def test_resume_refuses_a_checkpoint_a_run_does_not_write(run_copy, change, words):
    edit(os.path.join(run_copy, "checkpoint", "checkpoint.json"), change)
    _refused_resume(run_copy, "checkpoint.json " + words, "start it again")


def test_resume_of_a_finished_run_without_its_checkpoints_keeps_the_results(run_copy):
    shutil.rmtree(os.path.join(run_copy, "checkpoint"))  # was a silent run from scratch
    _refused_resume(run_copy, "the run has finished (report.json)", "nothing to resume")


# ------------------------------------------------------------------ images that do not decode

def jpeg_folder(root, per_class=4, cut=None):
    """``root/{train,val}/{a,b}/N.jpg``; ``cut(i, data)`` gives image i's bytes as written."""
    import cv2
    import numpy as np
    rng = np.random.RandomState(0)
    i = 0
    for split in ("train", "val"):
        for name in ("a", "b"):
            os.makedirs(os.path.join(root, split, name))
            for n in range(per_class):
                ok, data = cv2.imencode(".jpg", rng.randint(0, 256, (40, 40, 3)).astype("uint8"))
                data = data.tobytes()
                with open(os.path.join(root, split, name, f"{n}.jpg"), "wb") as f:
                    f.write(cut(i, data) if cut else data)
                i += 1
    return root


def test_a_folder_of_truncated_jpegs_is_refused_naming_the_first(tmp_path):
    # libjpeg decodes a truncated JPEG to gray fill with a warning naming no file: the run
    # trained on gray images and exited 0
    root = jpeg_folder(str(tmp_path / "set"), cut=lambda i, data: data[:len(data) // 3])
    out = str(tmp_path / "run")
    refused(["prune", "--model", "cifar_resnet20_v1", "--method", "gcp", "--target", "0.5",
             "--dataset", "folder", "--data-dir", root, "--input-size", "32", "--out", out],
            "train: 8 of 8 images do not decode", "(first: " + os.path.join(root, "train", "a",
                                                                          "0.jpg"),
            "image file is truncated", "--max-bad-images")
    assert not os.path.exists(out)


def test_a_fraction_of_bad_images_is_skipped_when_allowed(tmp_path, capsys):
    from prunenet.training.data import image_folder
    from prunenet.errors import PrunenetError
    cuts = {1: lambda d: d[:-2],  # only the end marker missing
            5: lambda d: d[:int(len(d) * 0.9)]}
    root = jpeg_folder(str(tmp_path / "set"), cut=lambda i, d: cuts.get(i, lambda d: d)(d))
    appended = os.path.join(root, "train", "b", "3.jpg")  # data after the end: still whole
    with open(appended, "ab") as f:
        f.write(b"\0" * 2000)
    os.symlink(os.path.join(root, "nowhere.jpg"), os.path.join(root, "train", "b", "zz.jpg"))
    train = os.path.join(root, "train")
    with pytest.raises(PrunenetError, match=r"3 of 9 images do not decode \(first: .*1\.jpg: "
                                            r"image file is truncated"):
        image_folder(train, max_bad_images=0.2)
    capsys.readouterr()
    kept = image_folder(train, max_bad_images=0.34)
    assert len(kept) == 6 and appended in kept.files
    assert not {os.path.join(root, "train", "a", f"{n}.jpg") for n in (1,)} & set(kept.files)
    note = capsys.readouterr().err
    assert "skipping 3 of 9 images that do not decode" in note and note.count("\n") == 1
    assert len(image_folder(os.path.join(root, "val"))) == 8  # a whole folder passes


# ------------------------------------------------------------------ labels and non-finite inputs

def _batches(label=None, image=None, n=4, batch=8):
    """``n`` batches of normal images and labels 0..9, with the first batch's ``label`` (all)
    or ``image`` (all pixels) values replaced."""
    import numpy as np
    rng = np.random.RandomState(0)
    out = []
    for b in range(n):
        x = rng.normal(size=(batch, 3, 32, 32)).astype(np.float32)
        y = rng.randint(0, 10, batch).astype(np.float32)
        if b == 0 and label is not None:
            y[:] = label
        if b == 0 and image is not None:
            x[:] = image
        out.append((x, y))
    return out


def _snapshot(net):
    return {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}


@pytest.mark.parametrize("label", [50, -1, 2.5])
def test_gcp_fit_refuses_labels_outside_the_classes(label):
    import prunenet
    from prunenet.errors import PrunenetError
    from test_api import Residual, randomise
    gcp = prunenet.GCP(randomise(Residual()), target=0.5, input_shape=(1, 3, 32, 32), steps=1,
                       reg=1e-3)
    with pytest.raises(PrunenetError, match=rf"step 1/1 regularize: the first batch has label "
                                            rf"{label:g}, not a class index 0\.\.9 of the "
                                            rf"network's 10 outputs"):
        gcp.fit(_batches(label=label))  # trained and pruned without a word
    with pytest.raises(PrunenetError, match="has run 0 of its 1 steps"):
        gcp.prune()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_finetune_refuses_non_finite_images_and_keeps_the_weights(value):
    import numpy as np
    import prunenet
    from prunenet.errors import PrunenetError
    from test_api import Residual, randomise
    net = randomise(Residual())
    before = _snapshot(net)
    with pytest.raises(PrunenetError, match="the first batch's images hold NaN or Inf"):
        prunenet.finetune(net, _batches(image=value), epochs=1, lr=0.01)
    after = _snapshot(net)  # were: 9 parameters NaN, a normal-looking result
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_a_cli_run_checks_its_first_batch_too(monkeypatch, tmp_path):
    # the datasets check their labels when opened; the first-batch check is the same one place
    import numpy as np
    from prunenet.training import data
    real = data.synthetic

    def noisy(*args, **kwargs):
        ds = real(*args, **kwargs)
        ds.images[:] = np.nan
        return ds
    monkeypatch.setattr(data, "synthetic", noisy)
    out = str(tmp_path / "run")
    refused(RUN + ["--out", out], "fine-tuning: the first batch's images hold NaN or Inf")


# ------------------------------------------------------------------ the demo's cached base

@pytest.mark.parametrize("meta,params,words", [
    ({"epochs": 2}, None, "records no top-1 (a fraction in [0, 1]; it holds null)"),
    ({"top1": "high"}, None, 'records no top-1 (a fraction in [0, 1]; it holds "high")'),
    ({"top1": 0.9}, b"\x12" * 100, "the cached base network is damaged: params file"),
])
def test_a_damaged_demo_cache_is_named_with_what_to_delete(tmp_path, meta, params, words):
    from prunenet.cli import main  # noqa: F401 (refused runs it)
    from prunenet.demo import QUICK
    cache = tmp_path / "cache"
    cache.mkdir()
    key = QUICK.base_key()
    if params is None:
        import mxnet as mx
        mx.nd.save(str(cache / (key + ".params")), {"w": mx.nd.zeros(2)})
    else:
        (cache / (key + ".params")).write_bytes(params)
    (cache / (key + ".json")).write_text(json.dumps(meta))
    out = str(tmp_path / "demo")  # DM1/DM2 were a KeyError and a ValueError traceback
    refused(["demo", "--quick", "--no-progress", "--cache-dir", str(cache), "--out", out],
            words, "to train the base again")
    assert not os.path.exists(out) and len(os.listdir(cache)) == 2


# ------------------------------------------------------------------ zoo export

from test_bad_input import zoo_dir  # noqa: E402,F401 (a fixture)


def test_zoo_export_on_a_full_disk_is_one_line_and_leaves_no_folder(zoo_dir, tmp_path,  # noqa: F811
                                                                     monkeypatch):
    import mxnet as mx

    def full(self, path, epoch=0, remove_amp_cast=True):  # MXNet's own words on a full disk
        with open(path + "-symbol.json", "w") as f:
            f.write("{")
        raise mx.base.MXNetError("[10:00:00] src/io/local_filesys.cc:38: Check failed: "
                                 "std::fwrite(ptr, 1, size, fp_) == size: FileStream.Write "
                                 "incomplete\nStack trace:\n  [bt] (0) libmxnet.so")
    monkeypatch.setattr(mx.gluon.HybridBlock, "export", full)
    out = str(tmp_path / "exp")  # was a traceback, and an empty exp/ left
    refused(["zoo", "export", "r20", "--zoo", zoo_dir, "--format", "symbol", "--out", out],
            "cannot write the export of r20 into", "FileStream.Write incomplete",
            "free some space")
    assert not os.path.exists(out)
    os.makedirs(out)  # a folder the user made is kept, even empty
    refused(["zoo", "export", "r20", "--zoo", zoo_dir, "--format", "symbol", "--out", out],
            "cannot write the export")
    assert os.listdir(out) == []


def test_zoo_export_refuses_an_input_too_large_before_allocating(zoo_dir, tmp_path):  # noqa: F811
    out = str(tmp_path / "exp")  # was a 149 GiB allocation's traceback
    refused(["zoo", "export", "r20", "--zoo", zoo_dir, "--format", "symbol", "--input-size",
             "100000", "--out", out], "input of shape (2, 3, 100000, 100000) needs tensors of "
                                      "up to", "give a smaller --input-size")
    assert not os.path.exists(out)


# ------------------------------------------------------------------ GCP(...) arguments

@pytest.mark.parametrize("options,words", [
    ({"ctx": "twice"}, "ctx=[cpu(0), cpu(0)] must be one MXNet context or a list of distinct"),
    ({"ctx": []}, "ctx=[] must be one MXNet context"),  # was an IndexError at fit
    ({"ctx": ["cpu"]}, "ctx=['cpu'] must be one MXNet context"),
    ({"lr": float("nan")}, "--lr nan must be positive"),  # was MXNet's multi_sgd_mom_update
    ({"epochs_per_step": float("inf")}, "--epochs-per-step must be positive"),
])
def test_gcp_refuses_contexts_and_rates_it_cannot_train_with(options, words):
    import mxnet as mx
    import prunenet
    from prunenet.errors import PrunenetError
    from test_api import Residual, randomise
    if options.get("ctx") == "twice":  # was an AssertionError of gluon's Trainer at fit
        options = {"ctx": [mx.cpu(0), mx.cpu(0)]}
    with pytest.raises(PrunenetError, match=re.escape(words)) as refusal:
        prunenet.GCP(randomise(Residual()), target=0.5, input_shape=(1, 3, 32, 32), steps=1,
                     reg=1e-3, **options)
    assert "\n" not in str(refusal.value)


# ------------------------------------------------------------------ shared weights

def shared_net(tail=True):
    """conv0, then conv1 and conv2 reading one weight (Gluon's ``params=``), then (``tail``)
    a strided conv3 and conv4 whose channels nothing shares; BN + ReLU after each, a dense."""
    import mxnet as mx
    from mxnet.gluon import nn

    class Shared(nn.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.body = nn.HybridSequential()
                conv1 = nn.Conv2D(16, 3, padding=1)
                self.body.add(nn.Conv2D(16, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"),
                              conv1, nn.BatchNorm(), nn.Activation("relu"),
                              nn.Conv2D(16, 3, padding=1, params=conv1.params), nn.BatchNorm(),
                              nn.Activation("relu"))
                if tail:
                    self.body.add(nn.Conv2D(32, 3, padding=1, strides=2), nn.BatchNorm(),
                                  nn.Activation("relu"), nn.Conv2D(32, 3, padding=1),
                                  nn.BatchNorm(), nn.Activation("relu"))
                self.body.add(nn.GlobalAvgPool2D(), nn.Dense(10))

        def hybrid_forward(self, F, x):
            return self.body(x)
    net = Shared(prefix="sh_")
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 32, 32)))
    return net


def _exported(net, prefix):
    import mxnet as mx
    net.hybridize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.export(prefix)
    values = mx.nd.load(prefix + "-0000.params")
    return [prefix + "-symbol.json", prefix + "-0000.params"], \
        sum(v.size for k, v in values.items() if k.startswith("arg:"))


def _counted(pair):
    from test_api import count_pair
    return count_pair(*pair)


def test_shared_weights_are_counted_once_and_their_channels_kept(tmp_path, capsys):
    from prunenet.cli import main
    pair, stored = _exported(shared_net(), str(tmp_path / "shared"))
    assert _counted(pair)["params"] == stored  # was 2320 more: the shared conv counted twice
    out = str(tmp_path / "run")  # was a traceback: the shared weight cut for one reader only
    capsys.readouterr()
    assert main(["prune", "--symbol", pair[0], "--params", pair[1], "--method", "l1",
                 "--target", "0.9", "--input-size", "32", "--out", out]) == 0
    share = "layers sh_conv0_fwd and sh_conv2_fwd share parameter sh_conv0_weight"
    assert f"note: 3 channel group(s) kept whole: {share}\n" in capsys.readouterr().out
    with open(os.path.join(out, "report.json")) as f:
        assert json.load(f)["kept_whole"] == [share]
    pruned, stored = _exported_pair(out)
    assert _counted(pruned)["params"] == stored < _counted(pair)["params"]
    import mxnet as mx
    shapes = {k: v.shape for k, v in mx.nd.load(pruned[1]).items()}
    assert shapes["arg:sh_conv0_weight"] == (16, 16, 3, 3)  # shared (made first): whole
    assert shapes["arg:sh_conv3_weight"][0] < 32  # the rest pruned


def _exported_pair(run_dir):
    import mxnet as mx
    pair = [os.path.join(run_dir, "pruned-symbol.json"), os.path.join(run_dir,
                                                                      "pruned-0000.params")]
    return pair, sum(v.size for k, v in mx.nd.load(pair[1]).items() if k.startswith("arg:"))


def test_a_network_whose_every_group_touches_a_shared_weight_is_refused(tmp_path):
    pair, _ = _exported(shared_net(tail=False), str(tmp_path / "shared"))
    out = str(tmp_path / "run")
    refused(["prune", "--symbol", pair[0], "--params", pair[1], "--method", "l1", "--target",
             "0.5", "--input-size", "32", "--out", out],
            "no channel of the network can be removed", "share parameter sh_conv0_weight")
    assert not os.path.exists(out)


def test_the_python_api_prunes_a_block_with_a_shared_weight():
    import mxnet as mx
    import numpy as np
    import prunenet
    net = shared_net()
    x = mx.nd.array(np.random.RandomState(0).normal(size=(2, 3, 32, 32)))
    small = prunenet.prune(net, method="l1", target=0.9, input_shape=(1, 3, 32, 32))
    assert small(x).shape == (2, 10)  # was an MXNetError: Shape inconsistent
    assert small.report["surgery_max_abs_diff"] < 1e-4 and small.report["achieved"] <= 0.9


@pytest.mark.parametrize("flags", [["--min-width", "100000"],
                                   ["--min-width", "64", "--round-to", "64"]])
def test_a_min_width_no_group_exceeds_is_named(tmp_path, flags):
    out = str(tmp_path / "run")  # the sentence ended "it cannot be pruned by"
    refused(["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--target", "0.5",
             "--out", out] + flags, f"no channel can be removed at min_width {flags[1]} "
                                    f"(--min-width): the widest prunable group has 64 channels")
    assert not os.path.exists(out)


# ------------------------------------------------------------------ unclear rows of the trial

def test_a_one_class_folder_is_refused(tmp_path):
    root = jpeg_folder(str(tmp_path / "set"))
    for split in ("train", "val"):
        shutil.rmtree(os.path.join(root, split, "b"))
    out = str(tmp_path / "run")  # was pruned with zero loss and no word
    refused(["prune", "--model", "cifar_resnet20_v1", "--method", "gcp", "--target", "0.5",
             "--dataset", "folder", "--data-dir", root, "--input-size", "32", "--out", out],
            "the training set of dataset folder has 1 class", "give at least two classes")
    assert not os.path.exists(out)


def test_a_damaged_teacher_file_is_refused_before_any_training(tmp_path):
    bad = tmp_path / "teacher.params"
    bad.write_bytes(b"\x12" * 5000)
    out = str(tmp_path / "run")  # was found only after selection and surgery (or GCP's steps)
    refused(RUN + ["--teacher", "cifar_resnet20_v1", "--teacher-params", str(bad), "--out", out],
            f"params file {bad} is not an MXNet params file")
    assert not os.path.exists(out)


def test_resume_with_another_teacher_file_says_how_to_move_it(run_copy, tmp_path):
    other = str(tmp_path / "teacher.params")
    refused(["prune", "--resume", run_copy, "--teacher-params", other],
            "drop --teacher-params", "write its new place as teacher_params in")


def test_a_group_an_unknown_op_freezes_is_noted(tmp_path, capsys):
    import mxnet as mx
    from mxnet.gluon import nn
    from prunenet.cli import main

    class Lrn(nn.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.conv0 = nn.Conv2D(32, 3, padding=1)
                self.conv1 = nn.Conv2D(16, 3, padding=1)
                self.out = nn.Dense(10)

        def hybrid_forward(self, F, x):
            return self.out(F.LRN(self.conv1(F.relu(self.conv0(x))), nsize=3, name="norm_lrn"))
    net = Lrn(prefix="lrn_")
    net.initialize(mx.init.Xavier())
    pair, _ = _exported(net, str(tmp_path / "lrn"))
    out = str(tmp_path / "run")
    capsys.readouterr()
    assert main(["prune", "--symbol", pair[0], "--params", pair[1], "--method", "l1",
                 "--target", "0.7", "--input-size", "32", "--out", out]) == 0
    note = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and "LRN" in note[0], note  # was no word at all
    with open(os.path.join(out, "report.json")) as f:
        assert any("LRN" in reason for reason in json.load(f)["kept_whole"])


def test_count_takes_the_image_channels_of_a_shape_file(tmp_path, capsys):
    from prunenet.cli import main
    from test_bad_input import SHAPES
    with open(SHAPES) as f:
        doc = json.load(f)
    doc["resnetv1d_conv0_weight"][1] = 1  # as prunenet's own Fashion-MNIST runs write them
    gray = str(tmp_path / "gray.json")
    with open(gray, "w") as f:
        json.dump(doc, f)
    counts = []
    for shapes in (SHAPES, gray):  # was: cannot run on input of shape (1, 3, 224, 224) ...
        assert main(["count", "--model", "resnet18_v1b", "--shapes", shapes, "--input-size",
                     "28", "--json"]) == 0
        counts.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    stem = 8 * 7 * 7 * 14 * 14  # the stem's MACs per input channel at 28 pixels (stride 2)
    assert counts[0]["macs"] - counts[1]["macs"] == 2 * stem
    assert counts[0]["params"] - counts[1]["params"] == 2 * 8 * 7 * 7


@pytest.mark.parametrize("labels,error", [([3.0], None), ([1.0, 2.0], "has 2 labels")])
def test_a_record_of_several_labels_is_refused_when_opened(tmp_path, labels, error):
    import mxnet as mx
    import numpy as np
    from prunenet.training.data import imagenet_record
    from prunenet.errors import PrunenetError
    rec = mx.recordio.MXIndexedRecordIO(str(tmp_path / "t.idx"), str(tmp_path / "t.rec"), "w")
    for i in range(4):
        header = mx.recordio.IRHeader(0, np.array(labels, np.float32), i, 0)  # flag: the count
        rec.write_idx(i, mx.recordio.pack_img(header, np.full((8, 8, 3), 9, np.uint8),
                                              img_fmt=".jpg"))
    rec.close()
    open_it = lambda: imagenet_record(str(tmp_path / "t.rec"), train=False,  # noqa: E731
                                      input_size=8, num_workers=1, classes=4)
    if error is None:  # a label array of one is one class id
        assert [int(v) for _, y in open_it().batches(4) for v in y.asnumpy()] == [3] * 4
    else:  # was MXNet's label_width check, after the evaluation before pruning
        with pytest.raises(PrunenetError, match=r"record 1 \(line 1 of .*t\.idx\) has 2 labels"):
            open_it()


@pytest.mark.parametrize("kind,words", [
    ("empty", "has no input named data (it holds no operators)"),  # was: needs --params
    ("image", "has no input named data (its arguments start with 'image')"),  # was: params lack
])
def test_a_symbol_without_an_input_named_data_is_named(tmp_path, kind, words):
    import mxnet as mx
    path = str(tmp_path / f"{kind}-symbol.json")
    if kind == "empty":
        with open(path, "w") as f:
            json.dump({"nodes": [], "arg_nodes": [], "heads": []}, f)
    else:
        mx.sym.Convolution(mx.sym.var("image"), num_filter=4, kernel=(3, 3), name="c").save(path)
    for extra in ([], ["--params", path]):
        refused(["count", "--symbol", path, "--input-size", "32"] + extra, words,
                "export the network with HybridBlock.export")


def test_a_symbol_with_a_second_input_is_named(tmp_path):
    """Issue 33 (trial Y05): a symbol taking ``data`` and ``extra`` was refused as if ``extra``
    were a parameter ("needs --params", then "params file ... has no extra")."""
    import mxnet as mx
    path = str(tmp_path / "twoin-symbol.json")
    convs = [mx.sym.Convolution(mx.sym.var(name), num_filter=8, kernel=(3, 3), pad=(1, 1),
                                name=f"c{i}") for i, name in enumerate(("data", "extra"))]
    (convs[0] + convs[1]).save(path)
    params = str(tmp_path / "twoin-0000.params")
    mx.nd.save(params, {f"arg:c{i}_{part}": mx.nd.ones(shape) for i in range(2)
                        for part, shape in (("weight", (8, 3, 3, 3)), ("bias", (8,)))})
    for extra in ([], ["--params", params]):
        refused(["count", "--symbol", path, "--input-size", "32"] + extra,
                f"symbol file {path} takes a second input, extra, besides data",
                "export a network that takes the images alone")


def test_a_symbol_with_a_cycle_names_the_symbol_file(tmp_path):
    """Issue 33 (trial Y01): a graph whose first operator reads the last (a cycle) was blamed on
    --input-size alone; the line now names the symbol file too (and the check for a second
    input, which runs MXNet's partial shape inference first, lets it through to this line)."""
    import mxnet as mx
    conv = mx.sym.Convolution(mx.sym.var("data") + mx.sym.var("x"), num_filter=3,
                              kernel=(3, 3), pad=(1, 1), name="c")
    doc = json.loads(mx.sym.relu(conv, name="r").tojson())
    names = [node["name"] for node in doc["nodes"]]
    plus = next(i for i, node in enumerate(doc["nodes"]) if node["op"] == "elemwise_add")
    doc["nodes"][plus]["inputs"][1] = [names.index("r"), 0, 0]  # data + r: the cycle
    path, params = str(tmp_path / "cycle-symbol.json"), str(tmp_path / "cycle-0000.params")
    with open(path, "w") as f:
        json.dump(doc, f)
    mx.nd.save(params, {"arg:c_weight": mx.nd.ones((3, 3, 3, 3)), "arg:c_bias": mx.nd.zeros(3)})
    refused(["count", "--symbol", path, "--params", params, "--input-size", "32"],
            f"{path} cannot run on input of shape (1, 3, 32, 32)", "or the symbol file")


def test_teacher_files_are_named_by_their_own_flag(tmp_path, monkeypatch, random_net):
    import gluoncv.model_zoo.model_store as store

    def offline(name, root=None):
        raise OSError("no internet")
    monkeypatch.setattr(store, "get_model_file", offline)
    out = str(tmp_path / "run")  # was: "pass --params FILE", the student's flag
    refused(RUN + ["--teacher", "cifar_resnet20_v1", "--out", out],
            "pretrained weights for cifar_resnet20_v1", "without internet pass --teacher-params")
    assert not os.path.exists(out)
    other = str(tmp_path / "r20.params")
    random_net("cifar_resnet20_v1", 32, classes=10).save_parameters(other)
    refused(RUN + ["--teacher", "cifar_resnet56_v1", "--teacher-params", other, "--out", out],
            f"params file {other} does not fit cifar_resnet56_v1 with 10 classes: it has no ",
            "; pass the save_parameters file of this model")  # was MXNet's text, cut mid-word


def test_zoo_publish_refuses_a_report_whose_target_was_edited(finished, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(finished, run_dir)
    edit(os.path.join(run_dir, "report.json"), lambda d: d.update(target=0.3))
    zoo_dir = str(tmp_path / "zoo")  # was published and listed at target 0.3, half the MACs
    refused(["zoo", "publish", run_dir, "--zoo", zoo_dir, "--name", "edited", "--no-bench"],
            "report.json says the network keeps 0.49", "above its target 0.3", "was edited")
    assert not os.path.exists(os.path.join(zoo_dir, "zoo.json"))
