"""Datasets: IDX parsing, Fashion-MNIST, synthetic data, image folders, ImageNet RecordIO,
deterministic epochs (seed, epoch, start, fraction), accuracy, and clear errors."""
import gzip
import os
import struct

import cv2
import mxnet as mx
import numpy as np
import pytest

from prunenet.training import data
from prunenet.training.data import (ArrayDataset, accuracy, fashion_mnist, image_folder, imagenet_record,
                           load, read_idx, synthetic)
from prunenet.errors import PrunenetError

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"
IDX_CODES = {np.dtype("uint8"): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def write_idx(path, array, gz=False):
    array = np.asarray(array)
    raw = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + \
        struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if gz else raw)
    return path


def write_fashion(folder, n=6, gz=True, train=True, seed=0):
    """Tiny Fashion-MNIST-format files; returns (images, labels)."""
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, (n, 28, 28)).astype(np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    prefix = "train" if train else "t10k"
    suffix = ".gz" if gz else ""
    write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte{suffix}"), images, gz)
    write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{suffix}"), labels, gz)
    return images, labels


def labels_of(batches):
    return [int(v) for _, y in batches for v in y.asnumpy()]


def no_download(root, train):
    raise OSError("no network in the test")


# ------------------------------------------------------------------ IDX and Fashion-MNIST

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    ints = np.array([-5, 7, 1 << 20], dtype=">i4")
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", images, gz)), images)
    got = read_idx(write_idx(tmp_path / "b", ints, gz))
    assert got.tolist() == [-5, 7, 1 << 20] and got.dtype.isnative


def test_fashion_mnist_from_a_folder_normalises(tmp_path):
    images, labels = write_fashion(str(tmp_path), n=6, gz=False)
    ds = fashion_mnist(train=True, data_dir=str(tmp_path))
    assert (len(ds), ds.classes, ds.image_shape) == (6, 10, (1, 28, 28))
    (x, y), = list(ds.batches(8))
    expected = (images[:, None] / 255.0 - 0.2860) / 0.3530
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert np.allclose(x.asnumpy(), expected, atol=1e-5)
    assert y.asnumpy().tolist() == labels.tolist()
    small = fashion_mnist(True, str(tmp_path), limit=4, input_size=32, channels=3)
    (x, y), = list(small.batches(8))
    assert x.shape == (4, 3, 32, 32) and small.image_shape == (3, 32, 32)
    assert np.array_equal(x[:, 0].asnumpy(), x[:, 2].asnumpy())
    # a resized constant image stays that constant
    assert np.isclose(float(x[0].mean().asscalar()), expected[0].mean(), atol=0.05)


def test_fashion_mnist_missing_folder_and_files(tmp_path, monkeypatch):
    with pytest.raises(PrunenetError, match="data folder .*nowhere does not exist"):
        fashion_mnist(data_dir=str(tmp_path / "nowhere"))
    monkeypatch.setattr(data, "_download_fashion_mnist", no_download)
    write_fashion(str(tmp_path), train=True)  # the test split is missing
    with pytest.raises(PrunenetError) as err:
        fashion_mnist(train=False, data_dir=str(tmp_path))
    message = str(err.value)
    assert str(tmp_path) in message and "apt-get install dataset-fashion-mnist" in message
    assert "no network in the test" in message and "\n" not in message


def test_fashion_mnist_search_order_then_download(tmp_path, monkeypatch):
    first, second = tmp_path / "debian", tmp_path / "mxnet"
    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (str(first), str(second)))
    monkeypatch.setattr(data, "_download_fashion_mnist", no_download)
    with pytest.raises(PrunenetError, match=f"{first}, {second} and MXNet's download failed"):
        fashion_mnist()

    def fake_download(root, train):  # MXNet's download writes the files into root
        os.makedirs(root, exist_ok=True)
        write_fashion(root, n=3, train=train)
    monkeypatch.setattr(data, "_download_fashion_mnist", fake_download)
    assert len(fashion_mnist()) == 3 and os.path.isdir(second) and not os.path.exists(first)
    os.makedirs(first)
    write_fashion(str(first), n=5)  # the first folder wins once it has the files
    assert len(fashion_mnist()) == 5


def test_corrupt_idx_files_are_named(tmp_path):
    good = write_idx(tmp_path / "good", np.zeros((4, 5, 5), np.uint8))
    raw = open(good, "rb").read()
    (tmp_path / "magic").write_bytes(b"\x08\x03" + raw[2:])
    (tmp_path / "short").write_bytes(raw[:-7])
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw)[:-10])
    (tmp_path / "tiny").write_bytes(raw[:6])
    for name, words in [("magic", "bad magic"), ("short", "truncated or corrupt"),
                        ("short.gz", "not a valid gzip"), ("tiny", "header is cut short")]:
        with pytest.raises(PrunenetError, match=words) as err:
            read_idx(str(tmp_path / name))
        assert str(tmp_path / name) in str(err.value)
    folder = tmp_path / "mismatch"
    folder.mkdir()
    write_fashion(str(folder), n=6)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8), gz=True)
    with pytest.raises(PrunenetError, match="do not match"):
        fashion_mnist(data_dir=str(folder))


@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    for train, n in ((True, 60000), (False, 10000)):
        ds = fashion_mnist(train=train)  # found in Debian's folder
        assert len(ds) == n and ds.images.shape == (n, 1, 28, 28) and ds.image_shape == (1, 28, 28)
        assert np.array_equal(np.bincount(ds.labels, minlength=10), np.full(10, n // 10))
        x, y = next(iter(ds.batches(2000, shuffle=True, seed=0)))
        assert 0 <= float(y.min().asscalar()) and float(y.max().asscalar()) <= 9
        assert abs(float(x.mean().asscalar())) < 0.05 and abs(x.asnumpy().std() - 1) < 0.05


# ------------------------------------------------------------------ synthetic data and epochs

def test_synthetic_is_deterministic_and_split():
    a, b = synthetic(64, 4, (3, 8, 8), seed=1), synthetic(64, 4, (3, 8, 8), seed=1)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, synthetic(64, 4, (3, 8, 8), seed=2).images)
    test = synthetic(64, 4, (3, 8, 8), seed=1, train=False)
    assert not np.array_equal(a.images, test.images)
    assert np.array_equal(np.bincount(a.labels), [16] * 4) and a.images.dtype == np.float32


def test_synthetic_is_learnable_by_class_means():
    train, test = synthetic(400, 5, (3, 8, 8), seed=0), synthetic(200, 5, (3, 8, 8), seed=0,
                                                                     train=False)
    means = np.stack([train.images[train.labels == c].mean(0) for c in range(5)])
    dist = ((test.images[:, None] - means[None]) ** 2).sum(axis=(2, 3, 4))
    assert (dist.argmin(1) == test.labels).mean() > 0.9  # chance: 0.2


def test_synthetic_is_learnable_by_a_few_sgd_steps():
    train = synthetic(512, 4, (3, 8, 8), seed=0)
    test = synthetic(256, 4, (3, 8, 8), seed=0, train=False)
    net = mx.gluon.nn.Dense(4)
    net.initialize(mx.init.Zero())  # all scores equal: class 0 for every example
    before, _ = accuracy(net, test.batches(128))
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.05})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    for epoch in range(2):
        for x, y in train.batches(64, shuffle=True, epoch=epoch):
            with mx.autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(64)
    after, top5 = accuracy(net, test.batches(128))
    assert before == 0.25 and after > 0.85 and top5 is None  # chance: 0.25


def test_epoch_order_comes_from_seed_and_epoch_only():
    ds = ArrayDataset(np.zeros((10, 1, 2, 2)), np.arange(10), 10)
    first = labels_of(ds.batches(3, shuffle=True, seed=7, epoch=2))
    np.random.seed(123)
    mx.random.seed(456)
    assert labels_of(ds.batches(3, shuffle=True, seed=7, epoch=2)) == first
    assert first == np.random.RandomState([7, 2]).permutation(10).tolist()
    assert labels_of(ds.batches(3, shuffle=True, seed=7, epoch=3)) != first
    assert labels_of(ds.batches(3, shuffle=True, seed=8, epoch=2)) != first
    assert labels_of(ds.batches(3)) == list(range(10))
    batches = ds.batches(3, shuffle=True, seed=7, epoch=2)
    assert labels_of(batches) == labels_of(batches)  # iterable again, same batches


def test_start_fraction_and_drop_last():
    ds = ArrayDataset(np.zeros((40, 1, 1, 1)), np.arange(40) % 10, 10)
    full = labels_of(ds.batches(4, shuffle=True, seed=1, epoch=5))
    resumed = ds.batches(4, shuffle=True, seed=1, epoch=5, start=3)
    assert len(resumed) == 7 and labels_of(resumed) == full[12:]
    quarter = ds.batches(4, shuffle=True, seed=1, epoch=5, fraction=0.25)
    assert len(quarter) == 3 and labels_of(quarter) == full[:12]  # ceil(0.25 * 10)
    assert len(ds.batches(4, fraction=0.3)) == 3  # not 4 from 0.3 * 10 = 3.0000000000000004
    assert len(ds.batches(4, fraction=0.25, start=2)) == 1
    assert len(ds.batches(4, fraction=0.25, start=5)) == 0
    odd = ArrayDataset(np.zeros((10, 1, 1, 1)), np.zeros(10), 1)
    assert [len(y) for _, y in odd.batches(4)] == [4, 4, 2]
    assert [len(y) for _, y in odd.batches(4, drop_last=True)] == [4, 4]
    for kwargs, words in [({"fraction": 0}, "fraction"), ({"fraction": 1.5}, "fraction"),
                          ({"start": 4}, "past the end"), ({"batch_size": 0}, "batch size"),
                          ({"epoch": -1}, "epoch")]:
        with pytest.raises(PrunenetError, match=words):
            odd.batches(**{"batch_size": 4, **kwargs})


# ------------------------------------------------------------------ accuracy

def test_accuracy_top1_top5_in_inference_mode():
    scores = np.array([[9, 1, 2, 3, 4, 5],    # class 0 top-1
                       [1, 9, 8, 7, 6, 5],    # class 4: 5th best
                       [1, 2, 3, 4, 5, 9],    # class 0: last
                       [5, 4, 3, 2, 1, 9]],   # class 1: 5th best of 6
                      np.float32)[:, :, None, None]
    ds = ArrayDataset(scores, [0, 4, 0, 1], 6)
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dropout(0.9), mx.gluon.nn.Flatten())
    net.initialize()
    with mx.autograd.train_mode():  # accuracy switches to inference: dropout is the identity
        assert accuracy(net, ds.batches(3)) == (0.25, 0.75)
    assert accuracy(net, ds.batches(4), ctx=[mx.cpu(0), mx.cpu(1)]) == (0.25, 0.75)
    three = ArrayDataset(scores[:, :3], [0, 1, 2, 2], 3)
    assert accuracy(net, three.batches(4)) == (0.75, None)
    with pytest.raises(PrunenetError, match="no batches"):
        accuracy(net, [])


# ------------------------------------------------------------------ image folders

def make_folder(root, classes, per_class=3, size=(20, 30), noise=False):
    rng = np.random.RandomState(0)
    for c, name in enumerate(classes):
        os.makedirs(os.path.join(root, name))
        for i in range(per_class):
            image = rng.randint(0, 256, size + (3,)) if noise else \
                np.full(size + (3,), (40 * c + 20, 100, 200))  # RGB
            cv2.imwrite(os.path.join(root, name, f"{i}.png"),
                        image.astype(np.uint8)[:, :, ::-1])  # cv2 writes BGR


def test_image_folder_eval_and_train(tmp_path):
    make_folder(str(tmp_path / "val"), ["a", "b"])
    ds = image_folder(str(tmp_path / "val"), train=False, input_size=16)
    assert (len(ds), ds.classes, ds.image_shape) == (6, 2, (3, 16, 16))
    (x, y), = list(ds.batches(8))
    assert x.shape == (6, 3, 16, 16) and y.asnumpy().tolist() == [0, 0, 0, 1, 1, 1]
    rgb = np.array([[20, 100, 200], [60, 100, 200]])[y.asnumpy().astype(int)]
    expected = (rgb / 255.0 - data.IMAGENET_MEAN) / data.IMAGENET_STD
    assert np.allclose(x.asnumpy().mean(axis=(2, 3)), expected, atol=1e-3)

    make_folder(str(tmp_path / "train"), ["a", "b"], per_class=4, noise=True)
    train = image_folder(str(tmp_path / "train"), train=True, input_size=12, num_workers=2)
    one = [x.asnumpy() for x, _ in train.batches(3, shuffle=True, seed=1, epoch=0)]
    again = [x.asnumpy() for x, _ in train.batches(3, shuffle=True, seed=1, epoch=0)]
    other = [x.asnumpy() for x, _ in train.batches(3, shuffle=True, seed=1, epoch=1)]
    assert one[0].shape == (3, 3, 12, 12) and len(one) == 3
    assert all(np.array_equal(p, q) for p, q in zip(one, again))
    assert not np.array_equal(np.concatenate(one), np.concatenate(other))


def test_image_folder_errors_and_load(tmp_path):
    with pytest.raises(PrunenetError, match="does not exist"):
        image_folder(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrunenetError, match="no class sub-folders"):
        image_folder(str(tmp_path / "empty"))
    (tmp_path / "noimages" / "cat").mkdir(parents=True)
    (tmp_path / "noimages" / "cat" / "notes.txt").write_text("x")
    with pytest.raises(PrunenetError, match="class folders but no images"):
        image_folder(str(tmp_path / "noimages"))
    make_folder(str(tmp_path / "set" / "train"), ["cat", "dog"], per_class=1)
    make_folder(str(tmp_path / "set" / "val"), ["dog"], per_class=2)
    val = load("folder", str(tmp_path / "set"), train=False, input_size=8)
    assert val.synset == ["cat", "dog"] and val.labels.tolist() == [1, 1]  # training order
    with pytest.raises(PrunenetError, match="noimages/val does not exist"):
        load("folder", str(tmp_path / "noimages"), train=False)


# ------------------------------------------------------------------ ImageNet RecordIO

COLORS = [(10 * i + 20, 200 - 10 * i, 100) for i in range(12)]  # RGB, label i


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """12 JPEG images of one colour each (label i: COLORS[i]) in train.rec + train.idx."""
    folder = tmp_path_factory.mktemp("rec")
    rec = mx.recordio.MXIndexedRecordIO(str(folder / "train.idx"), str(folder / "train.rec"), "w")
    for i, rgb in enumerate(COLORS):
        image = np.empty((40 + i, 48, 3), np.uint8)
        image[:] = rgb[::-1]  # pack_img takes OpenCV's BGR
        header = mx.recordio.IRHeader(0, float(i), i, 0)
        rec.write_idx(i, mx.recordio.pack_img(header, image, quality=95, img_fmt=".jpg"))
    rec.close()
    return folder


def test_record_round_trip(record):
    ds = imagenet_record(str(record / "train.rec"), train=False, input_size=32, num_workers=1,
                         classes=12)
    assert (len(ds), ds.image_shape) == (12, (3, 32, 32))
    batches = list(ds.batches(5))  # kept: must not be overwritten by later batches
    assert [len(y) for _, y in batches] == [5, 5, 2]  # the last batch's padding removed
    assert labels_of(batches) == list(range(12))
    assert labels_of(list(ds.batches(1))) == list(range(12))  # more batches than its buffers
    x = np.concatenate([b.asnumpy() for b, _ in batches])
    assert x.shape == (12, 3, 32, 32) and x.dtype == np.float32
    expected = (np.array(COLORS) - [123.68, 116.779, 103.939]) / [58.393, 57.12, 57.375]
    assert np.allclose(x.mean(axis=(2, 3)), expected, atol=0.1)


def test_record_holdout_is_drawn_across_the_file_and_never_trained_on(record):
    """On a generated RecordIO file (label i = record i), the held-out records and the ones
    training reads are disjoint and together the whole file, drawn across it (not its first
    records), and the held-out images are the records' own (their colour)."""
    from prunenet.training.data import holdout
    ds = imagenet_record(str(record / "train.rec"), train=True, input_size=24, num_workers=1,
                         classes=12)
    train, held = holdout(ds, 4, seed=2)
    held_labels = labels_of(list(held.batches(3)))
    assert len(held_labels) == 4 and held_labels != [0, 1, 2, 3]
    assert len(train) == 8 and "drawn at random across the file" in held.drawn
    for epoch in (0, 1):  # every epoch, shuffled: exactly the other 8
        trained = labels_of(list(train.batches(3, shuffle=True, seed=5, epoch=epoch)))
        assert sorted(trained + held_labels) == list(range(12))
    x = np.concatenate([b.asnumpy() for b, _ in held.batches(4)])
    expected = (np.array(COLORS)[sorted(held_labels)] - [123.68, 116.779, 103.939]) / \
        [58.393, 57.12, 57.375]
    assert np.allclose(x.mean(axis=(2, 3)), expected, atol=0.1)
    assert labels_of(list(ds.batches(4, shuffle=True, seed=5))) != []  # the file itself whole
    assert sorted(labels_of(list(ds.batches(4, shuffle=True, seed=5)))) == list(range(12))


def test_record_holdout_leaves_no_temporary_file_behind(record):
    """The image list a record hold-out writes (tens of MB on ImageNet) lives while a dataset
    reading it does, copies included, and is gone once the last of them is."""
    import copy
    import gc
    from prunenet.training.data import holdout
    ds = imagenet_record(str(record / "train.rec"), train=True, input_size=24, num_workers=1,
                         classes=12)
    train, held = holdout(ds, 4, seed=2)
    listing = train.image_list
    assert os.path.exists(listing)
    again = copy.copy(train)
    del train, held
    gc.collect()
    assert os.path.exists(listing) and len(labels_of(list(again.batches(4)))) == 8
    del again
    gc.collect()
    assert not os.path.exists(os.path.dirname(listing))


def test_record_epochs_parts_and_load(record):
    ds = imagenet_record(str(record / "train.rec"), train=True, input_size=24, num_workers=2)
    first = list(ds.batches(4, shuffle=True, seed=3, epoch=0))
    epoch0 = labels_of(first)
    assert sorted(epoch0) == list(range(12))
    again = list(ds.batches(4, shuffle=True, seed=3, epoch=0))
    assert labels_of(again) == epoch0  # and the same random crops, flips and colour jitter:
    assert all(np.array_equal(a.asnumpy(), b.asnumpy()) for (a, _), (b, _) in zip(first, again))
    assert labels_of(ds.batches(4, shuffle=True, seed=3, epoch=1)) != epoch0
    assert labels_of(ds.batches(4, shuffle=True, seed=3, epoch=0, start=1)) == epoch0[4:]
    assert labels_of(ds.batches(4, shuffle=True, seed=3, epoch=0, fraction=0.5)) == epoch0[:8]
    x, _ = next(iter(ds.batches(4, shuffle=True)))
    assert x.shape == (4, 3, 24, 24) and np.isfinite(x.asnumpy()).all()
    parts = [imagenet_record(str(record / "train.rec"), train=False, input_size=16, rank=r,
                             num_parts=2, num_workers=1) for r in range(2)]
    seen = [labels_of(p.batches(4)) for p in parts]
    assert [len(p) for p in parts] == [6, 6] and sorted(seen[0] + seen[1]) == list(range(12))
    val = load("imagenet", str(record), train=True, input_size=16, num_workers=1)
    assert len(val) == 12 and val.rec_path == str(record / "train.rec")


def test_record_errors_before_any_iterator(record, tmp_path):
    rec, idx = str(record / "train.rec"), str(record / "train.idx")
    with pytest.raises(PrunenetError, match="record file .*missing.rec does not exist"):
        imagenet_record(str(tmp_path / "missing.rec"), idx)
    with pytest.raises(PrunenetError, match="index file .*none.idx does not exist"):
        imagenet_record(rec, str(tmp_path / "none.idx"))
    lines = open(idx).read().splitlines()
    size = os.path.getsize(rec)
    for name, last, words in [("beyond", f"11\t{size + 100}", "beyond the end"),
                              ("shifted", f"11\t{int(lines[-1].split()[1]) + 3}",
                               "no record starts"),
                              ("garbage", "11 x", "is not 'key<TAB>offset'")]:
        bad = tmp_path / f"{name}.idx"
        bad.write_text("\n".join(lines[:-1] + [last]) + "\n")
        with pytest.raises(PrunenetError, match=words) as err:
            imagenet_record(rec, str(bad))
        assert str(bad) in str(err.value)
    small = imagenet_record(rec, idx, num_parts=6, rank=5, num_workers=1)  # 2 records
    with pytest.raises(PrunenetError, match="cannot read record file .*must be bigger than the"):
        list(small.batches(8))
    (tmp_path / "junk.rec").write_bytes(b"not a record file")
    with pytest.raises(PrunenetError, match="not a RecordIO file"):
        imagenet_record(str(tmp_path / "junk.rec"), idx)
    with pytest.raises(PrunenetError, match="val.rec does not exist"):
        load("imagenet", str(record), train=False)


# ------------------------------------------------------------------ by name

def test_load_by_name(tmp_path):
    with pytest.raises(PrunenetError) as err:
        load("cifar", str(tmp_path))
    assert "fashion-mnist, synthetic, imagenet, folder" in str(err.value)
    with pytest.raises(PrunenetError, match="takes no option 'size'"):
        load("synthetic", size=3)
    train = load("synthetic", classes=3, num_examples=30, image_shape=(1, 4, 4))
    test = load("synthetic", train=False, classes=3, num_examples=30, image_shape=(1, 4, 4))
    assert len(train) == 30 and train.classes == 3 and not np.array_equal(train.images,
                                                                          test.images)
    write_fashion(str(tmp_path), n=4, train=False)
    assert len(load("fashion-mnist", str(tmp_path), train=False, limit=2)) == 2


def test_record_file_split_among_workers_by_part(record):
    """Each worker reads its own part of a RecordIO file; all take the same number of batches,
    and together they cover distinct records."""
    from prunenet.training.data import imagenet_record
    whole = imagenet_record(str(record / "train.rec"), train=False, input_size=16,
                            num_workers=1)
    seen = []
    for part in range(2):
        spec = whole.batches(2, shuffle=False, drop_last=True, part=part, parts=2)
        assert len(spec) == 3  # 12 records: parts of 6, 3 batches of 2 each
        seen += [int(v) for _, label in spec for v in label.asnumpy()]
    assert sorted(seen) == list(range(12))
    with pytest.raises(PrunenetError, match="must drop the last partial batch"):
        whole.batches(2, part=0, parts=2)
    half = imagenet_record(str(record / "train.rec"), train=False, input_size=16, rank=1,
                           num_parts=2, num_workers=1)
    with pytest.raises(PrunenetError, match="already part 1 of 2"):
        list(half.batches(2, drop_last=True, part=0, parts=2))


def test_array_batches_split_among_workers_by_rows():
    from prunenet.training.data import ArrayDataset
    images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    data = ArrayDataset(images, np.zeros(10), classes=1)
    whole = [x.asnumpy().ravel().tolist() for x, _ in
             data.batches(4, shuffle=True, seed=3, drop_last=True)]
    parts = [[x.asnumpy().ravel().tolist() for x, _ in
              data.batches(2, shuffle=True, seed=3, drop_last=True, part=p, parts=2)]
             for p in range(2)]
    assert len(whole) == 2 and [a + b for a, b in zip(*parts)] == whole


def _joined(batches):
    """Per-device batches ``([x...], [y...])`` joined back into whole NumPy batches."""
    return [(np.concatenate([x.asnumpy() for x in xs]), np.concatenate([y.asnumpy() for y in ys]))
            for xs, ys in batches]


@pytest.mark.parametrize("kind", ["record", "arrays"])
def test_batches_asked_for_on_devices_come_split_straight_onto_them(record, kind):
    """With a list of contexts every batch is each device's share, on that device, cut as
    split_and_load cuts it; batches kept over an epoch are not overwritten by later ones (the
    record iterator reuses its arrays), and they equal the batches made on one context."""
    from prunenet.training.train import split
    two = [mx.cpu(0), mx.cpu(1)]
    ds = imagenet_record(str(record / "train.rec"), train=False, input_size=16, num_workers=1,
                         classes=12) if kind == "record" else data.synthetic(12, 12, (3, 16, 16), seed=0)
    for size, shares in ((5, [[2, 3], [2, 3], [1, 1]]), (1, [[1]] * 12)):
        split_here = list(ds.batches(size, ctx=two))  # all kept before any is read
        assert [[len(x) for x in xs] for xs, _ in split_here] == shares
        assert all([x.context for x in xs] == two[:len(xs)] and
                   [y.context for y in ys] == two[:len(ys)] for xs, ys in split_here)
        whole = [(x.asnumpy(), y.asnumpy()) for x, y in ds.batches(size)]
        for (x, y), (wx, wy) in zip(_joined(split_here), whole):
            np.testing.assert_array_equal(x, wx)
            np.testing.assert_array_equal(y, wy)
        if kind == "record":
            assert [int(v) for _, y in _joined(split_here) for v in y] == list(range(12))
    xs, ys = split(split_here[0], two, "float16")  # taken as they come, the data cast
    assert [x.dtype for x in xs] == [np.float16] and ys[0] is split_here[0][1][0]
    np.testing.assert_array_equal(xs[0].asnumpy(), split_here[0][0][0].asnumpy().astype(np.float16))


# ------------------------------------------------------------------ as Gluon datasets

def test_datasets_work_with_a_gluon_dataloader_and_fit_refuses_them_unbatched(tmp_path):
    from mxnet import gluon
    import prunenet
    train = fashion_mnist(train=True, limit=300)  # Debian's files, one call
    loader = gluon.data.DataLoader(train, batch_size=64, shuffle=False, last_batch="keep")
    batches = list(loader)
    assert [x.shape for x, _ in batches][0] == (64, 1, 28, 28) and len(batches) == 5
    ours = list(train.batches(64))
    for (x, y), (a, b) in zip(batches, ours):  # the same images, prepared the same way
        assert np.allclose(x.asnumpy(), a.asnumpy()) and np.array_equal(y.asnumpy(), b.asnumpy())
    image, label = train[-1]
    assert image.dtype == np.float32 and image.shape == (1, 28, 28) and label == train.labels[-1]
    with pytest.raises(IndexError):
        train[300]
    make_folder(str(tmp_path / "val"), ["a", "b"])
    folder = image_folder(str(tmp_path / "val"), train=False, input_size=16)
    (x, y), = list(gluon.data.DataLoader(folder, batch_size=8))
    (a, b), = list(folder.batches(8))
    assert np.allclose(x.asnumpy(), a.asnumpy()) and np.array_equal(y.asnumpy(), b.asnumpy())
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(32, 3), mx.gluon.nn.Conv2D(32, 3), mx.gluon.nn.GlobalAvgPool2D(),
            mx.gluon.nn.Dense(10))
    net.initialize()
    gcp = prunenet.GCP(net, target=0.7, input_shape=(1, 1, 28, 28), steps=1, reg=0.01)
    with pytest.raises(PrunenetError, match=r"single examples \(ArrayDataset\), not batches: "
                                            r"pass gluon.data.DataLoader"):
        gcp.fit(train)
