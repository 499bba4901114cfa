"""The README's Python path as one whole, as a notebook user runs it: GCP on a gluon DataLoader,
fine-tune, save, publish to a zoo, load by name from the zoo, export to ONNX; and the API's
pruned network on every context it was given."""
import json
import os

import mxnet as mx
import numpy as np
from gluoncv.model_zoo import get_model
from mxnet import gluon

import prunenet
from prunenet.zoo import store as zoo
from prunenet.training.data import accuracy
from prunenet.zoo.export import export
from prunenet.zoo.pruned import load_pruned

SHAPE = (1, 3, 32, 32)


def images(n, seed, classes=4):
    """Learnable synthetic images: each class brightens its own quarter of the picture."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, classes, n)
    x = rng.normal(0, 1, (n,) + SHAPE[1:]).astype(np.float32)
    for i, c in enumerate(y):
        x[i, :, (c // 2) * 16:(c // 2 + 1) * 16, (c % 2) * 16:(c % 2 + 1) * 16] += 1.5
    return gluon.data.ArrayDataset(x, y.astype(np.float32))


def test_prune_finetune_save_publish_load_export_as_the_readme_shows(tmp_path):
    mx.random.seed(0)
    train = gluon.data.DataLoader(images(128, 0), batch_size=16, shuffle=True,
                                  last_batch="discard")
    test = gluon.data.DataLoader(images(64, 1), batch_size=32)
    net = get_model("resnet18_v1b", classes=4)
    net.initialize(mx.init.Xavier())
    gcp = prunenet.GCP(net, target=0.5, input_shape=SHAPE, steps=1, epochs_per_step=0.5,
                       reg=0.01)
    small = gcp.fit(train, val_data=test).prune()
    x = mx.nd.array(np.random.RandomState(3).normal(size=(4,) + SHAPE[1:]))
    selected = small(x).asnumpy()
    prunenet.finetune(small, train, epochs=2, lr=0.01)
    tuned = small(x).asnumpy()
    assert np.abs(tuned - selected).max() > 1e-3  # fine-tuning changed the network

    folder = gcp.save(str(tmp_path / "runs" / "r18_gcp"), data=test, dataset="synthetic")
    with open(os.path.join(folder, "report.json")) as f:
        text = f.read()
    report = json.loads(text)
    assert report["model"] == "resnet18_v1b" and report["dataset"] == "synthetic"
    fresh = accuracy(small, test, mx.cpu())
    assert (report["top1_after"], report["top5_after"]) == fresh
    for key in ("top1_before", "top1_selected", "reg_search", "reg", "classes"):
        assert key in report, key
    assert 0 <= report["top1_before"] <= 1 and 0 <= report["top1_selected"] <= 1
    assert report["speed_check"]["macs_reduction"] > 1.5
    assert str(tmp_path) not in text and os.getcwd() not in text  # nothing only we know

    from_folder = load_pruned(folder)
    assert np.abs(from_folder(x).asnumpy() - tuned).max() <= 1e-5 * max(1, np.abs(tuned).max())

    zoo_dir = str(tmp_path / "zoo")
    entry = zoo.publish(folder, zoo_dir, "r18_gcp", batch_size=8, repeats=2, warmup=1,
                        log=None)
    assert entry["base"] == "resnet18_v1b" and entry["top1"] == report["top1_after"]
    assert entry["throughput_img_s"] > 0
    with open(os.path.join(zoo_dir, "zoo.json")) as f:
        assert str(tmp_path) not in f.read()
    with open(os.path.join(zoo_dir, ".lock")) as f:
        assert f.read() == ""  # the served folder holds no pid or command line
    loaded = zoo.get_model("r18_gcp", pretrained=True, root=zoo_dir)
    out = loaded(x).asnumpy()
    assert np.abs(out - tuned).max() <= 1e-5 * max(1, np.abs(tuned).max())
    assert accuracy(loaded, test, mx.cpu())[0] == entry["top1"]

    written = export("r18_gcp", zoo_dir, "onnx", str(tmp_path / "deploy"))
    assert written["files"] == [str(tmp_path / "deploy" / "r18_gcp.onnx")]
    assert os.path.getsize(written["files"][0]) > 10000
    assert written["max_abs_diff"] is not None and written["max_abs_diff"] < 1e-4


def test_the_api_pruned_network_answers_on_every_context():
    devices = [mx.cpu(0), mx.cpu(1)]
    net = get_model("cifar_resnet20_v1", classes=4)
    net.initialize(mx.init.Xavier(), ctx=devices)
    train = gluon.data.DataLoader(images(32, 0), batch_size=16, last_batch="discard")
    x = np.random.RandomState(4).normal(size=(2,) + SHAPE[1:]).astype(np.float32)
    gcp = prunenet.GCP(net, target=0.6, input_shape=SHAPE, ctx=devices, steps=1,
                       epochs_per_step=0.5, reg=0.01)
    for small in (gcp.fit(train).prune(),
                  prunenet.prune(net, "l1", "flops", 0.6, input_shape=SHAPE, ctx=devices)):
        assert small.report["model"] == "cifar_resnet20_v1"
        for p in small.collect_params().values():
            assert set(p.list_ctx()) == set(devices), p.name
        outs = [small(mx.nd.array(x, ctx=c)) for c in devices]
        assert [o.context for o in outs] == devices
        assert np.abs(outs[0].asnumpy() - outs[1].asnumpy()).max() < 1e-5
    prunenet.finetune(small, train, epochs=0.5, ctx=devices, lr=0.01)  # trains on both
    outs = [small(mx.nd.array(x, ctx=c)).asnumpy() for c in devices]
    assert np.abs(outs[0] - outs[1]).max() < 1e-5
