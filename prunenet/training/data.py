"""Datasets as iterables of ``(data, label)`` batches: Fashion-MNIST, synthetic, image folders
and ImageNet RecordIO. The only module of the package that knows datasets.

Every dataset serves an epoch with :meth:`Dataset.batches`: NDArray pairs of NCHW float32 images
and float32 labels. An epoch's order is drawn from ``(seed, epoch)`` alone (never from global
random state), so a resumed run sees the same batches; ``start`` resumes mid-epoch and
``fraction`` stops after the first part of the epoch (``fraction=0.25``: a quarter epoch).
"""
from __future__ import annotations

import contextlib
import gzip
import inspect
import io
import math
import os
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import PrunenetError

__all__ = ["Dataset", "ArrayDataset", "FolderDataset", "RecordDataset", "Batches", "read_idx",
           "fashion_mnist", "synthetic", "image_folder", "imagenet_record", "load", "DATASETS",
           "accuracy", "FASHION_MNIST_DIRS", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "Epochs"]

# Searched in this order when no data_dir is given (Debian's dataset-fashion-mnist, then MXNet's).
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist", "~/.mxnet/datasets/fashion-mnist")
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, of images scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_REC_DIR = "~/.mxnet/datasets/imagenet/rec"  # GluonCV's default
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
_RECORD_MAGIC = 0xCED7230A  # dmlc RecordIO: every record starts with this little-endian word
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --------------------------------------------------------------------------- batching

@dataclass(frozen=True)
class Batches:
    """Batches ``start .. stop - 1`` of one epoch of ``dataset``; iterable again and again."""

    dataset: "Dataset"
    batch_size: int
    shuffle: bool
    seed: int
    epoch: int
    start: int
    stop: int
    drop_last: bool
    ctx: Any = None
    part: int = 0  # this worker's share of each batch: rows part·b .. (part+1)·b - 1
    parts: int = 1  # of a global batch of parts·b (b = batch_size)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def index(self, order: np.ndarray, b: int) -> np.ndarray:
        """This part's rows of global batch ``b`` of the epoch order ``order``."""
        size = self.batch_size * self.parts
        rows = order[b * size:(b + 1) * size]
        return rows[self.part * self.batch_size:(self.part + 1) * self.batch_size]

    def __iter__(self) -> Iterator[tuple]:
        return self.dataset._iterate(self)


def _epoch_order(n: int, spec: Batches) -> np.ndarray:
    """The example indices of an epoch: a permutation drawn from ``(seed, epoch)`` alone."""
    if not spec.shuffle:
        return np.arange(n)
    return np.random.RandomState([spec.seed, spec.epoch]).permutation(n)


class Dataset:
    """``len()`` labelled images of ``image_shape`` (C, H, W) in ``classes`` classes.

    Also a Gluon dataset where the images are at hand (:class:`ArrayDataset`,
    :class:`FolderDataset`): ``dataset[i]`` is ``(image, label)`` — a float32 NumPy C×H×W image,
    prepared as :meth:`batches` prepares it, and a float32 label — so
    ``gluon.data.DataLoader(dataset, batch_size=64, shuffle=True)`` batches it as it batches
    Gluon's own datasets."""

    name: str = "dataset"
    classes: int = 0
    image_shape: tuple = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def num_batches(self, batch_size: int, drop_last: bool = False, parts: int = 1) -> int:
        """Batches in a whole epoch (the last one partial unless ``drop_last``), each of
        ``batch_size`` per part."""
        n, size = len(self), batch_size * parts
        return n // size if drop_last else -(-n // size)

    def batches(self, batch_size: int = 128, shuffle: bool = False, seed: int = 0,
                epoch: int = 0, start: int = 0, fraction: float = 1.0, drop_last: bool = False,
                ctx=None, part: int = 0, parts: int = 1) -> Batches:
        """Epoch ``epoch``'s batches from batch ``start`` up to the first ⌈fraction·n⌉ of its n.

        The order is a permutation drawn from ``(seed, epoch)`` when ``shuffle``, else the
        dataset's; ``drop_last`` leaves out a final partial batch (as training usually does).
        With ``parts`` > 1 (data-parallel workers), batches are global batches of
        ``parts × batch_size`` and this one yields share ``part`` of each. ``ctx``: where the
        batches go; a list of contexts makes each batch per-device lists ``([data...],
        [label...])``, every device's share copied straight to it.
        """
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise PrunenetError(f"batch size {batch_size!r} must be a whole number >= 1")
        for what, value in (("seed", seed), ("epoch", epoch), ("start", start)):
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise PrunenetError(f"{what} {value!r} must be a whole number >= 0")
        if not 0.0 < fraction <= 1.0:
            raise PrunenetError(f"fraction {fraction} of an epoch must be in (0, 1]")
        if not 0 <= part < parts:
            raise PrunenetError(f"part {part} must be in 0..{parts - 1} for {parts} parts")
        if parts > 1 and not drop_last:
            raise PrunenetError("batches split among workers must drop the last partial batch "
                                "(drop_last=True), or the workers would take unequal shares")
        n = self.num_batches(batch_size, drop_last, parts)
        if start > n:
            raise PrunenetError(f"start batch {start} is past the end of an epoch of {n} "
                                f"batches of {batch_size}")
        stop = min(n, math.ceil(round(fraction * n, 9)))
        return Batches(self, int(batch_size), bool(shuffle), int(seed), int(epoch), int(start),
                       max(stop, int(start)), bool(drop_last), ctx, int(part), int(parts))

    def _iterate(self, spec: Batches) -> Iterator[tuple]:
        raise NotImplementedError

    def __getitem__(self, index):
        raise PrunenetError(f"{type(self).__name__} is read in batches, not image by image: use "
                            f"its .batches(batch_size) where a gluon.data.DataLoader would go")

    def _index(self, index) -> int:
        """``index`` as a position in 0..len-1 (negative counts from the end, as lists do)."""
        n = len(self)
        if not isinstance(index, (int, np.integer)) or not -n <= index < n:
            raise IndexError(f"{self.name}: index {index!r} is outside 0..{n - 1}")
        return int(index) % n


def _nd_pair(data: np.ndarray, labels: np.ndarray, ctx) -> tuple:
    """A NumPy batch as float32 NDArrays on ``ctx``, or for a list of contexts as per-device
    lists (each device's share copied straight to it)."""
    import mxnet as mx
    if not isinstance(ctx, (list, tuple)):
        ctx = ctx or mx.cpu()
        return (mx.nd.array(data, ctx=ctx, dtype=np.float32),
                mx.nd.array(labels, ctx=ctx, dtype=np.float32))
    rows = _shares(len(data), len(ctx))
    return ([mx.nd.array(data[r], ctx=c, dtype=np.float32) for r, c in zip(rows, ctx)],
            [mx.nd.array(labels[r], ctx=c, dtype=np.float32) for r, c in zip(rows, ctx)])


def _shares(n: int, devices: int) -> List[slice]:
    """The rows of each device's share of a batch of ``n``, as ``gluon.utils.split_data``
    with ``even_split=False`` cuts it (fewer rows than devices: one row on each of the first)."""
    if n < devices:
        return [slice(i, i + 1) for i in range(n)]
    step = n // devices
    return [slice(i * step, (i + 1) * step if i < devices - 1 else n) for i in range(devices)]


class ArrayDataset(Dataset):
    """Images held in memory (N, C, H, W, any dtype), made float32 batch by batch and passed
    through ``transform`` (a function from a NumPy batch to a NumPy batch) when given."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: int,
                 transform: Optional[Callable] = None, name: str = "arrays") -> None:
        images, labels = np.asarray(images), np.asarray(labels).astype(np.int64).reshape(-1)
        if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
            raise PrunenetError(f"{name}: need N>0 images (N, C, H, W) and N labels, got images "
                                f"{images.shape} and {len(labels)} labels")
        if labels.min() < 0 or labels.max() >= classes:
            raise PrunenetError(f"{name}: labels run from {labels.min()} to {labels.max()}, "
                                f"outside 0..{classes - 1}")
        self.images, self.labels, self.classes, self.name = images, labels, int(classes), name
        self.transform = transform
        self.image_shape = tuple(self._prepare(np.arange(1)).shape[1:])

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "ArrayDataset":
        """The examples at ``index``, as a dataset of their own."""
        return ArrayDataset(self.images[index], self.labels[index], self.classes, self.transform,
                            self.name)

    def _prepare(self, index: np.ndarray):
        x = self.images[index].astype(np.float32)
        return self.transform(x) if self.transform is not None else x

    def __getitem__(self, index) -> tuple:
        i = self._index(index)
        return self._prepare(np.array([i]))[0], np.float32(self.labels[i])

    def _iterate(self, spec: Batches) -> Iterator[tuple]:
        order = _epoch_order(len(self), spec)
        for b in range(spec.start, spec.stop):
            index = spec.index(order, b)
            yield _nd_pair(self._prepare(index), self.labels[index], spec.ctx)


# --------------------------------------------------------------------------- Fashion-MNIST

def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (gzipped or not) into an array of the shape its header gives."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise PrunenetError(f"IDX file {path} does not exist") from None
    except IsADirectoryError:
        raise PrunenetError(f"IDX file {path} is a folder; give the file") from None
    except (OSError, EOFError, zlib.error) as err:
        raise PrunenetError(f"IDX file {path} is not a valid gzip file (corrupt or truncated?): "
                            f"{err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise PrunenetError(f"IDX file {path} has a bad magic number {raw[:4].hex() or 'none'} "
                            f"(expected 0000, a type code and the number of dimensions): not an "
                            f"IDX file, or corrupt")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise PrunenetError(f"IDX file {path} is truncated: its header is cut short")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise PrunenetError(f"IDX file {path} is truncated or corrupt: it holds "
                            f"{len(raw) - header} bytes of data, its header {dims} promises "
                            f"{expected}")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _fashion_files(train: bool) -> Tuple[str, str]:
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find_idx(folder: str, name: str) -> Optional[str]:
    for candidate in (name + ".gz", name):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _download_fashion_mnist(root: str, train: bool) -> None:
    """Let MXNet download one split into ``root`` (raises when it cannot)."""
    import mxnet as mx
    mx.gluon.data.vision.FashionMNIST(root=root, train=train)


class _Normalize:
    """Scale to [0, 1], normalise with ``mean``/``std``, resize to ``size``, repeat channels."""

    def __init__(self, mean: float, std: float, size: Optional[int], channels: int) -> None:
        self.mean, self.std, self.size, self.channels = mean, std, size, channels

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = (x / 255.0 - self.mean) / self.std
        if self.size is not None and x.shape[2:] != (self.size, self.size):
            import mxnet as mx
            x = mx.nd.contrib.BilinearResize2D(mx.nd.array(x), height=self.size,
                                               width=self.size).asnumpy()
        if self.channels != x.shape[1]:
            x = np.repeat(x, self.channels, axis=1)
        return x.astype(np.float32, copy=False)


def fashion_mnist(train: bool = True, data_dir: Optional[str] = None, limit: Optional[int] = None,
                  input_size: Optional[int] = None, channels: int = 1) -> ArrayDataset:
    """Fashion-MNIST's 60000 training or 10000 test images; optionally the first ``limit``,
    resized to ``input_size``, with ``channels`` 1 or 3.

    Normalisation (what the demo's cached base network and every Fashion-MNIST run here were
    trained on): pixels scaled to [0, 1], then ``(x - 0.2860) / 0.3530``
    (:data:`FASHION_MNIST_MEAN`, :data:`FASHION_MNIST_STD`: the training set's mean and standard
    deviation); 28×28 and one channel unless ``input_size``/``channels`` say otherwise (resized
    bilinearly, the channel repeated). Feed a network trained here images prepared the same way.

    Looks in ``data_dir`` if given, else in :data:`FASHION_MNIST_DIRS` (Debian's
    ``dataset-fashion-mnist`` files first, read without MXNet's checksums); then tries MXNet's
    download. The result is a Gluon dataset as well::

        train = gluon.data.DataLoader(data.fashion_mnist(train=True), batch_size=64,
                                      shuffle=True)
    """
    if channels not in (1, 3):
        raise PrunenetError(f"channels {channels} must be 1 or 3")
    if input_size is not None and input_size < 1:
        raise PrunenetError(f"input size {input_size} must be a positive number of pixels")
    if limit is not None and limit < 1:
        raise PrunenetError(f"limit {limit} must be at least 1")
    if data_dir is not None:
        data_dir = os.path.expanduser(data_dir)
        if not os.path.isdir(data_dir):
            raise PrunenetError(f"data folder {data_dir} " + (
                "is a file; give the folder that holds the IDX files"
                if os.path.exists(data_dir) else "does not exist"))
        folders = [data_dir]
    else:
        folders = [os.path.expanduser(d) for d in FASHION_MNIST_DIRS]
    names = _fashion_files(train)
    paths = _locate(folders, names)
    if paths is None:
        target = folders[0] if data_dir is not None else folders[-1]
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # MXNet prints every retry
                _download_fashion_mnist(target, train)
            paths = _locate([target], names)
            failure = "the files MXNet downloaded are not there"
        except Exception as err:  # any failure to download is reported, not raised
            text = " ".join(str(err).split())
            failure = type(err).__name__ + (f": {text[:100]}..." if len(text) > 100 else
                                             f": {text}" if text else "")
        if paths is None:
            where = f"in none of {', '.join(folders)}" if len(folders) > 1 else \
                f"not in {folders[0]}"
            raise PrunenetError(
                f"Fashion-MNIST ({names[0]}[.gz], {names[1]}[.gz]) is {where} and MXNet's "
                f"download failed ({failure}); install it with "
                f"`apt-get install dataset-fashion-mnist` or pass --data-dir with the IDX files")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise PrunenetError(f"Fashion-MNIST files {paths[0]} and {paths[1]} do not match: images "
                            f"{images.shape}, labels {labels.shape}")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return ArrayDataset(images[:, None], labels, 10,
                        _Normalize(FASHION_MNIST_MEAN, FASHION_MNIST_STD, input_size, channels),
                        name="fashion-mnist")


def _locate(folders: Sequence[str], names: Sequence[str]) -> Optional[List[str]]:
    for folder in folders:
        paths = [_find_idx(folder, name) for name in names]
        if all(paths):
            return paths
    return None


# --------------------------------------------------------------------------- synthetic

def synthetic(num_examples: int, classes: int, image_shape: Sequence[int] = (3, 32, 32),
              seed: int = 0, train: bool = True, noise: float = 1.0) -> ArrayDataset:
    """A deterministic, learnable dataset: each class has a smooth random pattern (a 4x4 grid
    upsampled, so per-channel means differ too); an image is its class's pattern plus Gaussian
    ``noise``. Train and test (``train=False``) share the patterns, not the examples."""
    if num_examples < 1 or classes < 2:
        raise PrunenetError(f"synthetic data needs at least 1 example and 2 classes, got "
                            f"{num_examples} and {classes}")
    c, h, w = (int(v) for v in image_shape)
    patterns = np.random.RandomState([seed, 0]).normal(size=(classes, c, 4, 4))
    patterns = patterns[:, :, np.arange(h) * 4 // h][:, :, :, np.arange(w) * 4 // w]
    rng = np.random.RandomState([seed, 1 if train else 2])
    labels = rng.permutation(np.arange(num_examples) % classes)
    images = patterns[labels] + noise * rng.normal(size=(num_examples, c, h, w))
    return ArrayDataset(images.astype(np.float32), labels, classes, name="synthetic")


# --------------------------------------------------------------------------- image folders

class FolderDataset(Dataset):
    """Images in class sub-folders, decoded batch by batch. Training: random-resized crop
    (area 0.08-1, aspect 3/4-4/3) and flip, drawn from ``(seed, epoch, image)``; else resize the
    shorter side to ``resize`` and center-crop. ImageNet mean/std normalisation."""

    def __init__(self, root: str, files: List[str], labels: List[int], synset: List[str],
                 train: bool, input_size: int, resize: int, num_workers: int) -> None:
        self.root, self.files, self.labels = root, files, np.asarray(labels, np.int64)
        self.synset, self.classes, self.name = synset, len(synset), "folder"
        self.train, self.input_size, self.resize = train, input_size, resize
        self.num_workers = num_workers
        self.image_shape = (3, input_size, input_size)

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, index: np.ndarray) -> "FolderDataset":
        """The images at ``index``, as a dataset of their own."""
        return FolderDataset(self.root, [self.files[i] for i in index], self.labels[index],
                             self.synset, self.train, self.input_size, self.resize,
                             self.num_workers)

    def evaluation_view(self) -> "FolderDataset":
        """The same images with the evaluation transform (resize and center crop)."""
        return FolderDataset(self.root, self.files, self.labels, self.synset, False,
                             self.input_size, self.resize, self.num_workers)

    def _load(self, index: int, spec: Batches) -> np.ndarray:
        import cv2
        path = self.files[index]
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise PrunenetError(f"image {path} cannot be read (corrupt, or not an image)")
        image = image[:, :, ::-1]  # BGR -> RGB
        s = self.input_size
        if self.train:
            rng = np.random.RandomState([spec.seed, spec.epoch, index])
            y, x, h, w = _random_crop_box(image.shape[0], image.shape[1], rng)
            image = cv2.resize(np.ascontiguousarray(image[y:y + h, x:x + w]), (s, s),
                               interpolation=cv2.INTER_LINEAR)
            if rng.rand() < 0.5:
                image = image[:, ::-1]
        else:
            h, w = image.shape[:2]
            scale = self.resize / min(h, w)
            nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
            image = cv2.resize(np.ascontiguousarray(image), (nw, nh),
                               interpolation=cv2.INTER_LINEAR)
            y, x = (nh - s) // 2, (nw - s) // 2
            image = image[y:y + s, x:x + s]
        image = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return image.transpose(2, 0, 1).astype(np.float32)

    def __getitem__(self, index) -> tuple:
        """Image ``index`` (training: the crop and flip of seed 0, epoch 0) and its label."""
        i = self._index(index)
        return self._load(i, self.batches(1)), np.float32(self.labels[i])

    def _iterate(self, spec: Batches) -> Iterator[tuple]:
        from concurrent.futures import ThreadPoolExecutor
        order = _epoch_order(len(self), spec)
        pool = ThreadPoolExecutor(self.num_workers) if self.num_workers > 0 else None
        load = lambda i: self._load(int(i), spec)  # noqa: E731
        try:
            for b in range(spec.start, spec.stop):
                index = spec.index(order, b)
                images = list(pool.map(load, index) if pool else map(load, index))
                yield _nd_pair(np.stack(images), self.labels[index], spec.ctx)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)


def _random_crop_box(height: int, width: int, rng: np.random.RandomState,
                     area=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> Tuple[int, int, int, int]:
    """(y, x, h, w) of a random crop of the given relative area and aspect ratio (10 tries,
    then the central crop of the nearest allowed ratio)."""
    for _ in range(10):
        target = rng.uniform(*area) * height * width
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h + 1), rng.randint(0, width - w + 1), h, w
    aspect = min(max(width / height, ratio[0]), ratio[1])
    w, h = (width, min(height, round(width / aspect))) if width / height <= aspect else \
        (min(width, round(height * aspect)), height)
    return (height - h) // 2, (width - w) // 2, h, w


def _cut_short(path: str) -> Optional[str]:
    """Why the JPEG or PNG file ``path`` would not decode whole (None when it would, or is of
    another format, left to the decoder): unreadable, or cut short. libjpeg decodes a truncated
    JPEG to gray fill with only a warning, so the file's end is looked at: a JPEG ends with its
    EOI marker, a PNG with its IEND chunk; a file without (or with data appended after them)
    is decoded in full by PIL, which refuses a truncated one."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, os.fstat(f.fileno()).st_size - 1024))
            tail = f.read()
    except OSError as err:
        return err.strerror or str(err)
    if head[:2] == b"\xff\xd8":
        ends = b"\xff\xd9" in tail
    elif head == b"\x89PNG\r\n\x1a\n":
        ends = b"IEND" in tail
    else:
        return None
    if ends:
        return None
    from PIL import Image, ImageFile
    tolerant = ImageFile.LOAD_TRUNCATED_IMAGES  # importing gluoncv.data sets it to True
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as err:  # noqa: BLE001 (PIL's errors of a damaged file vary)
        return str(err) or type(err).__name__
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
    return None


def _without_bad_images(root: str, files: List[str], labels: List[int],
                        max_bad: float) -> Tuple[List[str], List[int]]:
    """``files`` (and their ``labels``) without those that would not decode whole; refused when
    they are more than the fraction ``max_bad`` of the images, else skipped with a note."""
    bad = [(i, why) for i, why in enumerate(map(_cut_short, files)) if why]
    if not bad:
        return files, labels
    first = f"{files[bad[0][0]]}: {bad[0][1]}"
    if len(bad) > max_bad * len(files):
        raise PrunenetError(f"image folder {root}: {len(bad)} of {len(files)} images do not "
                            f"decode (first: {first}); replace or remove them, or allow a "
                            f"fraction of the images to be skipped with --max-bad-images")
    import sys
    print(f"prunenet: note: image folder {root}: skipping {len(bad)} of {len(files)} images "
          f"that do not decode (first: {first})", file=sys.stderr)
    skip = {i for i, _ in bad}
    return ([f for i, f in enumerate(files) if i not in skip],
            [c for i, c in enumerate(labels) if i not in skip])


def _class_folders(root: str) -> List[str]:
    """The class sub-folders of image folder ``root``, sorted; refused when it is none."""
    root = os.path.expanduser(root)
    if not os.path.isdir(root):
        raise PrunenetError(f"image folder {root} " + (
            "is a file; give the folder of class sub-folders" if os.path.exists(root)
            else "does not exist"))
    folders = sorted(d for d in os.listdir(root)
                     if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))
    if not folders:
        raise PrunenetError(f"image folder {root} has no class sub-folders; lay it out as "
                            f"{root}/<class>/<image>.jpg")
    return folders


def image_folder(root: str, train: bool = True, input_size: int = 224,
                 resize: Optional[int] = None, classes: Optional[Sequence[str]] = None,
                 num_workers: int = 0, max_bad_images: float = 0.0) -> FolderDataset:
    """The images of ``root/<class>/*`` (class index: position in ``classes``, default the sorted
    sub-folder names). Evaluation resizes the shorter side to ``resize`` (default
    input_size/0.875, i.e. 256 for 224) before center-cropping; ``num_workers`` decoding threads.
    JPEG and PNG files cut short are refused, or skipped while they are at most the fraction
    ``max_bad_images`` of the images."""
    root = os.path.expanduser(root)
    folders = _class_folders(root)
    synset = list(classes) if classes is not None else folders
    unknown = sorted(set(folders) - set(synset))
    if unknown:
        raise PrunenetError(f"image folder {root} has class folder {unknown[0]!r} that the "
                            f"given classes lack" + (f" (and {len(unknown) - 1} more)"
                                                        if len(unknown) > 1 else ""))
    label_of = {name: i for i, name in enumerate(synset)}
    files, labels = [], []
    for folder in folders:
        for name in sorted(os.listdir(os.path.join(root, folder))):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(root, folder, name))
                labels.append(label_of[folder])
    if not files:
        raise PrunenetError(f"image folder {root} has class folders but no images "
                            f"({', '.join(IMAGE_EXTENSIONS)})")
    if input_size < 1 or num_workers < 0 or not 0 <= max_bad_images < 1:
        raise PrunenetError(f"input size {input_size} must be >= 1, workers {num_workers} "
                            f">= 0 and max_bad_images {max_bad_images} in [0, 1)")
    files, labels = _without_bad_images(root, files, labels, max_bad_images)
    resize = resize or int(round(input_size / 0.875))
    return FolderDataset(root, files, labels, synset, train, input_size, max(resize, input_size),
                         num_workers)


# --------------------------------------------------------------------------- ImageNet RecordIO

_RECORD_MEAN, _RECORD_STD = (123.68, 116.779, 103.939), (58.393, 57.12, 57.375)  # GluonCV's


class RecordDataset(Dataset):
    """An indexed RecordIO file read by ``mx.io.ImageRecordIter`` with GluonCV's ImageNet
    augmentation. A fresh iterator serves each epoch, its shuffling and augmentation seeded from
    ``(seed, epoch)``. ``start`` decodes and skips the batches before it; the padding of the
    last batch is removed."""

    def __init__(self, rec_path: str, idx_path: str, count: int, train: bool, input_size: int,
                 resize: int, num_workers: int, rank: int, num_parts: int, classes: int) -> None:
        self.rec_path, self.idx_path, self.count = rec_path, idx_path, count
        self.train, self.input_size, self.resize = train, input_size, resize
        self.num_workers, self.rank, self.num_parts = num_workers, rank, num_parts
        self.classes, self.name = classes, "imagenet"
        self.image_shape = (3, input_size, input_size)
        # held out by :func:`holdout`: an image list flagging those records, skipped in training
        self.image_list: Optional[str] = None
        self.image_list_owner = None  # keeps a temporary image list alive (hold-out)
        self.held_out = 0

    def __len__(self) -> int:
        return self.count - self.held_out

    def num_batches(self, batch_size: int, drop_last: bool = False, parts: int = 1) -> int:
        if parts == 1:  # the iterator's batches over the whole file (held-out rows dropped)
            return self.count // batch_size if drop_last else -(-self.count // batch_size)
        # each worker reads its own part of the file; all take as many batches as the smallest
        return min(_part_sizes(self.count, parts)) // batch_size

    def iterator(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                 part: int = 0, parts: int = 1):
        """The ``mx.io.ImageRecordIter`` of GluonCV's ``train_imagenet.py`` for this file (for
        ``parts`` > 1, part ``part`` of it)."""
        import mxnet as mx
        if parts > 1 and self.num_parts > 1:
            raise PrunenetError(f"record file {self.rec_path} is already part {self.rank} of "
                                f"{self.num_parts}; open it whole to split it among workers")
        mean, std = _RECORD_MEAN, _RECORD_STD
        kwargs = dict(path_imgrec=self.rec_path, path_imgidx=self.idx_path,
                      preprocess_threads=max(1, self.num_workers), shuffle=shuffle, seed=seed,
                      seed_aug=seed, batch_size=batch_size,
                      data_shape=(3, self.input_size, self.input_size),
                      mean_r=mean[0], mean_g=mean[1], mean_b=mean[2],
                      std_r=std[0], std_g=std[1], std_b=std[2],
                      part_index=part if parts > 1 else self.rank,
                      num_parts=parts if parts > 1 else self.num_parts, verbose=False)
        if self.image_list is not None:  # each label beside its held-out flag
            kwargs.update(path_imglist=self.image_list, label_width=2)
        if self.train:
            kwargs.update(rand_mirror=True, random_resized_crop=True, max_aspect_ratio=4 / 3,
                          min_aspect_ratio=3 / 4, max_random_area=1, min_random_area=0.08,
                          brightness=0.4, saturation=0.4, contrast=0.4, pca_noise=0.1)
        else:
            kwargs.update(resize=self.resize)
        try:
            return mx.io.ImageRecordIter(**kwargs)
        except mx.base.MXNetError as err:
            raise PrunenetError(f"cannot read record file {self.rec_path}: "
                                f"{_mxnet_message(err)}") from None

    def _iterate(self, spec: Batches) -> Iterator[tuple]:
        import mxnet as mx
        if spec.start >= spec.stop:
            return
        seed = int(np.random.RandomState([spec.seed, spec.epoch]).randint(0, 2 ** 31 - 1))
        it = self.iterator(spec.batch_size, spec.shuffle, seed, spec.part, spec.parts)
        devices = spec.ctx if isinstance(spec.ctx, (list, tuple)) else [spec.ctx or mx.cpu()]
        try:
            for b, batch in enumerate(it):
                if b >= spec.stop:
                    break
                if b < spec.start:
                    continue
                n = spec.batch_size - batch.pad
                # copies: the iterator reuses its output arrays for later batches. Each
                # device's share is copied from them straight to it (asked for batches on a
                # list of devices), not first whole into host memory and split from there; the
                # iterator waits for those copies before it writes into the arrays again.
                data, label = batch.data[0], batch.label[0]
                if self.image_list is not None:  # the held-out records left out
                    flags = label[:n, 1].asnumpy()
                    rows = mx.nd.array(np.flatnonzero(flags == 0), dtype="int64")
                    n = int(rows.shape[0])
                    if n == 0:
                        continue
                    data, label = mx.nd.take(data, rows), mx.nd.take(label[:, 0], rows)
                rows = _shares(n, len(devices))
                xs = [data[r].copyto(c) for r, c in zip(rows, devices)]
                ys = [label[r].astype(np.float32, copy=False).copyto(c)
                      for r, c in zip(rows, devices)]
                yield (xs, ys) if isinstance(spec.ctx, (list, tuple)) else (xs[0], ys[0])
        finally:
            del it


def _mxnet_message(err: BaseException) -> str:
    """The message line of an MXNet error, without its traceback, time stamp and source line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = next((line for line in reversed(lines) if line.startswith("MXNetError:")),
                lines[-1] if lines else type(err).__name__)
    return re.sub(r"^MXNetError:\s*(\[[^\]]*\]\s*)?(\S+:\d+:\s*)?", "", text)[:300]


def _record_offsets(rec_path: str, idx_path: str) -> np.ndarray:
    """The record offsets of ``idx_path``, checked against ``rec_path``."""
    if not os.path.isfile(rec_path):
        raise PrunenetError(f"record file {rec_path} does not exist")
    if not os.path.isfile(idx_path):
        raise PrunenetError(f"index file {idx_path} does not exist; make it with MXNet's "
                            f"tools/rec2idx.py or im2rec.py")
    size = os.path.getsize(rec_path)
    with open(rec_path, "rb") as f:
        head = f.read(4)
    if len(head) < 4 or struct.unpack("<I", head)[0] != _RECORD_MAGIC:
        raise PrunenetError(f"record file {rec_path} is not a RecordIO file (no record at its "
                            f"start)")
    offsets = []
    with open(idx_path, "rb") as f:  # bytes: a binary file given as the index is an error
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                _, offset = (int(v) for v in fields)
            except ValueError:
                text = line.strip()[:60].decode("utf-8", "replace")
                raise PrunenetError(f"index file {idx_path} line {number} is not "
                                    f"'key<TAB>offset': {text!r}") from None
            offsets.append(offset)
    if not offsets:
        raise PrunenetError(f"index file {idx_path} is empty")
    offsets = np.asarray(offsets, np.int64)

    def mismatch(i: int, where: str) -> PrunenetError:
        return PrunenetError(f"index file {idx_path} does not match record file {rec_path} "
                             f"({size} bytes): entry {i + 1} points at byte {offsets[i]}, {where}; "
                             f"rebuild the index from this .rec (tools/rec2idx.py)")

    beyond = np.flatnonzero((offsets < 0) | (offsets + 8 > size))  # 8: a record's header
    if len(beyond):
        raise mismatch(beyond[0], "beyond the end of the file")
    sample = np.linspace(0, len(offsets) - 1, min(64, len(offsets))).astype(int)
    with open(rec_path, "rb") as f:  # records spread over the file, and the file's last one
        for i in np.union1d(sample, [np.argmax(offsets)]):
            f.seek(offsets[i])
            magic, length = struct.unpack("<II", f.read(8))
            if magic != _RECORD_MAGIC:
                raise mismatch(i, "where no record starts")
            if offsets[i] + 8 + (length & ((1 << 29) - 1)) > size:  # MXNet aborts on it
                raise PrunenetError(f"record file {rec_path} is truncated: record {i + 1} of "
                                    f"{idx_path} runs past its end ({size} bytes); copy or "
                                    f"pack it again")
    return offsets


_IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")  # OpenCV's


def _record_headers(rec_path: str, idx_path: str, offsets: np.ndarray):
    """Each record's (label, id, first bytes of its payload), read at ``offsets``."""
    with open(rec_path, "rb") as f:
        for i, offset in enumerate(offsets):
            f.seek(int(offset) + 8)
            head = f.read(24)
            if len(head) < 24:
                raise PrunenetError(f"record file {rec_path}: record {i + 1} (line {i + 1} of "
                                    f"{idx_path}) is cut short; pack the file again")
            flag, label, ident = struct.unpack("<IfQ", head[:16])
            if flag > 0:  # a label array; ImageRecordIter takes its first value
                label = struct.unpack("<f", f.read(4))[0]
                f.seek(4 * (flag - 1), 1)
            yield flag, label, ident, f.read(4)


def _check_records(rec_path: str, idx_path: str, offsets: np.ndarray, classes: int) -> None:
    """Refuse records whose label is not a class id in ``0..classes-1`` or whose payload is not
    an encoded image (MXNet trains on such labels silently, or fails inside OpenCV), naming the
    record."""
    for i, (flag, label, _, payload) in enumerate(_record_headers(rec_path, idx_path, offsets)):
        where = f"record file {rec_path}: record {i + 1} (line {i + 1} of {idx_path})"
        if flag > 1:  # ImageRecordIter (label_width 1) stops at it, after any evaluation
            raise PrunenetError(f"{where} has {flag} labels; a classifier is trained on one "
                                f"class id per image: pack the file again with one label "
                                f"per record")
        if not (np.isfinite(label) and label == int(label) and 0 <= label < classes):
            raise PrunenetError(f"{where} has label {label:g}, not a class id 0..{classes - 1}"
                                f" (--classes {classes}); give the right --classes or fix "
                                f"the labels")
        if not any(payload.startswith(m) for m in _IMAGE_MAGIC):
            raise PrunenetError(f"{where} holds no encoded image (it starts with "
                                f"{payload.hex() or 'nothing'}; JPEG, PNG, BMP, WebP or TIFF "
                                f"expected); pack the file again")


class _TemporaryListing:
    """An image list in a temporary folder of its own, removed with this object (when the last
    dataset reading it is collected, or when the interpreter exits): an ImageNet listing is tens
    of MB, written on every hold-out."""

    def __init__(self) -> None:
        import shutil
        import tempfile
        import weakref
        folder = tempfile.mkdtemp(prefix="prunenet-holdout-")
        self.path = os.path.join(folder, "train.lst")
        self._remove = weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)


def _hold_out_records(dataset: "RecordDataset", count: int, seed: int) -> tuple:
    """A record file split by its index: ``count`` records drawn at random across the whole
    file, decoded with the evaluation transform into memory, and the file's dataset marking
    them (an image list with a held-out flag beside each label) so that training skips them."""
    import copy
    import mxnet as mx
    if dataset.num_parts > 1:
        raise PrunenetError(f"record file {dataset.rec_path} is part {dataset.rank} of "
                            f"{dataset.num_parts}: hold out from the whole file, or give --reg "
                            f"a number")
    offsets = _record_offsets(dataset.rec_path, dataset.idx_path)
    headers = list(_record_headers(dataset.rec_path, dataset.idx_path, offsets))
    labels = np.array([h[1] for h in headers], dtype=np.float64)
    ids = np.array([h[2] for h in headers], dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise PrunenetError(f"record file {dataset.rec_path} repeats record ids, so training "
                            f"cannot skip held-out records by id; pack it again with im2rec.py, "
                            f"or give --reg a number")
    held, _ = holdout_rows(len(ids), count, seed)
    flags = np.zeros(len(ids), dtype=np.int64)
    flags[held] = 1
    listing = _TemporaryListing()
    with open(listing.path, "w") as f:
        f.writelines(f"{i}\t{lab:g}\t{flag}\tx\n" for i, lab, flag in zip(ids, labels, flags))
    train = copy.copy(dataset)
    train.image_list, train.held_out = listing.path, int(count)
    train.image_list_owner = listing  # shared by copies; the file goes with the last of them
    reader = open(dataset.rec_path, "rb")
    images = []
    with reader:
        for i in held:
            reader.seek(int(offsets[i]))
            _, length = struct.unpack("<II", reader.read(8))
            _, image = mx.recordio.unpack(reader.read(length & ((1 << 29) - 1)))
            img = mx.image.imdecode(image)  # RGB, as ImageRecordIter decodes
            img = mx.image.resize_short(img, dataset.resize)
            img, _ = mx.image.center_crop(img, (dataset.input_size, dataset.input_size))
            images.append(img.asnumpy().transpose(2, 0, 1))
    mean = np.array(_RECORD_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(_RECORD_STD, dtype=np.float32).reshape(1, 3, 1, 1)
    held_set = ArrayDataset(np.stack(images), labels[held], dataset.classes,
                            transform=lambda x: (x - mean) / std,
                            name=f"{dataset.name} held-out")
    held_set.drawn = train.drawn = (
        f"{count} of the {len(ids)} records of {os.path.basename(dataset.rec_path)} drawn at "
        f"random across the file through its index (seed {seed}); training skips them")
    return train, held_set


def _part_sizes(total: int, parts: int) -> List[int]:
    """How many records each part gets when dmlc's indexed RecordIO splitter divides ``total``."""
    step = -(-total // parts)
    return [max(0, min(step * (r + 1), total) - min(step * r, total)) for r in range(parts)]


def imagenet_record(rec_path: str, idx_path: Optional[str] = None, train: bool = True,
                    input_size: int = 224, resize: Optional[int] = None, num_workers: int = 4,
                    rank: int = 0, num_parts: int = 1, classes: int = 1000) -> RecordDataset:
    """ImageNet (or any image RecordIO) from ``rec_path`` and its index (default: the same name
    ending ``.idx``), part ``rank`` of ``num_parts``. Evaluation resizes the shorter side to
    ``resize`` (default input_size/0.875, 256 for 224) and center-crops."""
    rec_path = os.path.expanduser(rec_path)
    idx_path = os.path.expanduser(idx_path or os.path.splitext(rec_path)[0] + ".idx")
    if not 0 <= rank < num_parts:
        raise PrunenetError(f"rank {rank} must be in 0..{num_parts - 1} for {num_parts} parts")
    if input_size < 1 or num_workers < 0:
        raise PrunenetError(f"input size {input_size} must be >= 1 and workers {num_workers} "
                            f">= 0")
    offsets = _record_offsets(rec_path, idx_path)
    _check_records(rec_path, idx_path, offsets, classes)
    total = len(offsets)
    count = _part_sizes(total, num_parts)[rank]
    if count == 0:
        raise PrunenetError(f"record file {rec_path} has {total} records, none for part {rank} "
                            f"of {num_parts}")
    resize = max(resize or int(round(input_size / 0.875)), input_size)
    return RecordDataset(rec_path, idx_path, count, train, input_size, resize, num_workers,
                         rank, num_parts, classes)


# --------------------------------------------------------------------------- by name

def _load_fashion(data_dir, train, **options):
    return fashion_mnist(train, data_dir, **options)


def _load_synthetic(data_dir, train, num_examples=None, classes=10, image_shape=(3, 32, 32),
                    seed=0, noise=1.0):
    n = num_examples or (1024 if train else 256)
    return synthetic(n, classes, image_shape, seed, train, noise)


def _load_imagenet(data_dir, train, **options):
    folder = os.path.expanduser(data_dir or IMAGENET_REC_DIR)
    split = "train" if train else "val"
    return imagenet_record(os.path.join(folder, split + ".rec"),
                           os.path.join(folder, split + ".idx"), train, **options)


def _load_folder(data_dir, train, **options):
    if data_dir is None:
        raise PrunenetError("the folder dataset needs --data-dir DIR holding DIR/train/<class>/* "
                            "and DIR/val/<class>/*")
    root = os.path.join(os.path.expanduser(data_dir), "train" if train else "val")
    if not os.path.isdir(root):
        raise PrunenetError(f"image folder {root} does not exist; lay the images out as "
                            f"{data_dir}/train/<class>/* and {data_dir}/val/<class>/*")
    train_root = os.path.join(os.path.expanduser(data_dir), "train")
    if not train and "classes" not in options and os.path.isdir(train_root):
        options["classes"] = _class_folders(train_root)  # the training label order
    return image_folder(root, train, **options)


_BUILDERS = {"fashion-mnist": (_load_fashion, fashion_mnist),
             "synthetic": (_load_synthetic, _load_synthetic),
             "imagenet": (_load_imagenet, imagenet_record),
             "folder": (_load_folder, image_folder)}
DATASETS = tuple(_BUILDERS)


def load(name: str, data_dir: Optional[str] = None, train: bool = True, **options) -> Dataset:
    """Dataset ``name`` (one of :data:`DATASETS`), training or test split, from ``data_dir``
    (ImageNet: ``train.rec``/``train.idx``/``val.rec``/``val.idx``; folder: ``train/`` and
    ``val/`` of class folders). ``options`` go to the dataset's function above."""
    if name not in _BUILDERS:
        raise PrunenetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    builder, signature_of = _BUILDERS[name]
    allowed = [p for p in inspect.signature(signature_of).parameters
               if p not in ("train", "data_dir", "root", "rec_path", "idx_path")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise PrunenetError(f"dataset {name!r} takes no option {unknown[0]!r}; it takes "
                            f"{', '.join(allowed)}")
    return builder(data_dir, train, **options)


# --------------------------------------------------------------------------- evaluation

def holdout_rows(n: int, count: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """The rows of ``n`` held out (``count`` of them, drawn from ``seed``) and the rest, each in
    order: the one draw of every held-out split."""
    order = np.random.RandomState([seed, 7919]).permutation(n)
    return np.sort(order[:count]), np.sort(order[count:])


def holdout(dataset: Dataset, count: int, seed: int = 0) -> Tuple[Dataset, Dataset]:
    """``dataset`` split into (the rest, ``count`` held-out examples drawn from ``seed``), both
    as datasets; the held-out part is read as evaluation data (no augmentation).

    A RecordIO file is split through its index: the held-out records are drawn across the whole
    file and decoded into memory, and the training iterator skips them (:func:`_hold_out_records`).
    The held-out part says how it was drawn in its ``drawn`` attribute."""
    count = int(count)
    if not 0 < count < len(dataset):
        raise PrunenetError(f"cannot hold out {count} of the {len(dataset)} training images; "
                            f"hold out fewer")
    if isinstance(dataset, RecordDataset):
        return _hold_out_records(dataset, count, seed)
    if not hasattr(dataset, "subset"):
        raise PrunenetError(f"dataset {dataset.name} cannot hold out images for the λ search; "
                            f"give --reg a number")
    held, rest = holdout_rows(len(dataset), count, seed)
    held_set = dataset.subset(held)
    if hasattr(held_set, "evaluation_view"):
        held_set = held_set.evaluation_view()
    held_set.drawn = f"{count} of {len(dataset)} images drawn at random (seed {seed})"
    return dataset.subset(rest), held_set


def losses(net, batches, ctx=None) -> np.ndarray:
    """The softmax cross-entropy of ``net`` on every image of ``batches``, in inference mode
    and in order (float64)."""
    import mxnet as mx
    from ..core.replicas import compute_dtype
    from .train import split
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    parts, dtype = [], compute_dtype(net)
    with mx.autograd.pause(train_mode=False):
        for batch in batches:
            xs, ys = split(batch, ctxs, dtype)
            parts += [loss_fn(net(x).astype("float32", copy=False), y)
                      for x, y in zip(xs, ys)]  # read once, at the end
    if not parts:
        raise PrunenetError("no batches to measure the loss on")
    return np.concatenate([p.asnumpy() for p in parts]).astype(np.float64)


def mean_loss(net, batches, ctx=None) -> float:
    """The mean softmax cross-entropy of ``net`` over ``batches`` in inference mode."""
    return float(losses(net, batches, ctx).mean())


def accuracy(net, batches, ctx=None) -> Tuple[float, Optional[float]]:
    """Top-1 and top-5 accuracy of ``net`` over ``batches`` in inference mode (top-5 is None
    for fewer than 5 classes). ``ctx``: a context or a list of them to split batches over."""
    import mxnet as mx
    from ..core.replicas import compute_dtype
    from .train import split
    ctxs = ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
    correct1 = correct5 = total = 0
    classes, dtype = None, compute_dtype(net)
    with mx.autograd.pause(train_mode=False):
        for batch in batches:
            parts, _ = split(batch, ctxs, dtype)
            label = batch[1]
            outs = [net(x) for x in parts]  # every device at work before the host reads
            scores = (mx.nd.concat(*[o.as_in_context(mx.cpu()) for o in outs], dim=0)
                      if len(outs) > 1 else outs[0]).asnumpy().astype(np.float32)
            truth = np.concatenate([y.asnumpy().reshape(-1) for y in label]) \
                if isinstance(label, (list, tuple)) else label.asnumpy()
            truth = truth.astype(np.int64).reshape(-1)
            classes = scores.shape[1]
            ranked = np.argsort(-scores, axis=1, kind="stable")[:, :5]
            correct1 += int((ranked[:, 0] == truth).sum())
            correct5 += int((ranked == truth[:, None]).any(axis=1).sum())
            total += len(truth)
    if total == 0:
        raise PrunenetError("no batches to evaluate accuracy on")
    return correct1 / total, (correct5 / total if classes >= 5 else None)


class Epochs:
    """Any iterable of ``(data, label)`` batches — a ``gluon.data.DataLoader``, an ``mx.io``
    iterator, a list, :meth:`Dataset.batches` — as the epoch maker of a
    :class:`prunenet.training.train.BatchStream`: ``epochs(epoch, start)`` is one pass from batch
    ``start``. Each batch is checked against ``input_shape`` (NCHW; N may differ)."""

    def __init__(self, source, input_shape: Optional[Sequence[int]] = None,
                 what: str = "training data") -> None:
        import mxnet as mx
        if isinstance(source, (Dataset, mx.gluon.data.Dataset)):
            raise PrunenetError(f"{what} is a dataset of single examples ({type(source).__name__}), "
                                f"not batches: pass gluon.data.DataLoader(dataset, batch_size=64, "
                                f"shuffle=True)" + (" or dataset.batches(64, shuffle=True)"
                                                    if isinstance(source, Dataset) else ""))
        self.source, self.what = source, what
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        try:
            one_pass = iter(source) is source and not hasattr(source, "reset")
        except TypeError:
            raise PrunenetError(f"{what} is a {type(source).__name__}, not an iterable of "
                                f"(data, label) batches; pass a gluon.data.DataLoader or a list "
                                f"of batches") from None
        if one_pass:
            raise PrunenetError(f"{what} is a one-pass iterator (a {type(source).__name__}), "
                                f"but it is read more than once (to count its "
                                f"batches, and once per epoch); pass a gluon.data.DataLoader or "
                                f"a list of batches")
        self._len: Optional[int] = None

    def __len__(self) -> int:
        if self._len is None:
            try:
                self._len = len(self.source)
            except TypeError:  # an mx.io iterator: count one pass
                self._len = sum(1 for _ in self._pass())
        return self._len

    def _pass(self) -> Iterator:
        if hasattr(self.source, "reset"):
            self.source.reset()
        return iter(self.source)

    def pair(self, batch, index: int) -> tuple:
        """``batch`` as a checked pair of NDArrays: float32 NCHW data and a label vector."""
        import mxnet as mx
        if hasattr(batch, "data") and hasattr(batch, "label"):  # mx.io.DataBatch
            data, label = batch.data[0], batch.label[0]
        elif isinstance(batch, (tuple, list)) and len(batch) == 2:
            data, label = batch
        else:
            raise PrunenetError(f"{self.what}: batch {index} is a {type(batch).__name__}, not a "
                                f"(data, label) pair")
        data = data if isinstance(data, mx.nd.NDArray) else mx.nd.array(np.asarray(data))
        label = label if isinstance(label, mx.nd.NDArray) else mx.nd.array(np.asarray(label))
        want = self.input_shape
        if want is not None and (data.ndim != len(want) or tuple(data.shape[1:]) != want[1:]):
            raise PrunenetError(
                f"{self.what}: batch {index} holds data of shape {tuple(data.shape)}, but the "
                f"network was traced for input of shape {want} (examples of {want[1:]}); "
                f"resize the images or pass the matching input_shape")
        if label.size != data.shape[0]:
            raise PrunenetError(f"{self.what}: batch {index} has {data.shape[0]} examples but "
                                f"labels of shape {tuple(label.shape)}; give one class index per "
                                f"example")
        return data.astype("float32", copy=False), label.reshape((-1,)).astype("float32",
                                                                              copy=False)

    def __call__(self, epoch: int = 0, start: int = 0) -> "_Pass":
        return _Pass(self, start)


class _Pass:
    """One pass over an :class:`Epochs` source from batch ``start`` (``len``: the batches left)."""

    def __init__(self, epochs: Epochs, start: int) -> None:
        self.epochs, self.start = epochs, start

    def __len__(self) -> int:
        return max(0, len(self.epochs) - self.start)

    def __iter__(self) -> Iterator[tuple]:
        for i, batch in enumerate(self.epochs._pass()):
            if i >= self.start:
                yield self.epochs.pair(batch, i)
