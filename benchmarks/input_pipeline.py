"""The ImageNet input pipeline: images per second decoded and augmented from a generated RecordIO
file at ``-j`` 1, 2 and all cores, prunenet's reader next to a bare ``mx.io.ImageRecordIter``
with GluonCV ``train_imagenet.py``'s settings, measured in one interleaved run.

prunenet's reader (:func:`prunenet.training.data.imagenet_record`) is that same iterator with the same
augmentation (random resized crop, mirror, colour jitter, PCA noise, mean/std), plus a copy of
each batch out of the iterator's reused buffers; the ratio ours/GluonCV at each thread count is
what that wrapper costs. Eight GPUs training ResNet-50 need on the order of 3000 images/s (a
third of GluonCV's published V100 inference throughput, times eight): set the figure at all
cores against that. The images are
generated noise (harder to decode than photographs of the same size), so the absolute figures
are pessimistic; on a busy machine only the ratios side by side mean anything.

Then, on two CPU contexts standing in for two GPUs, what splitting each batch straight from the
iterator's arrays onto the devices (``batches(..., ctx=[...])``) saves over copying it whole into
host memory first and splitting that (``split_and_load``, how prunenet fed the devices before):
the copy step alone, both ways on the same decoded batch many times over, and the whole pipeline
at all cores, both ways in turn. On GPUs the saving is a host copy of every batch; on CPU contexts
the device-0 share of the old path was a view, so it is smaller here.

Run from the repository root (a minute or two)::

    .venv/bin/python benchmarks/input_pipeline.py [--images 640] [--size 320] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

import prunenet  # noqa: F401  (sets OMP_NUM_THREADS before MXNet loads)
import mxnet as mx

from prunenet.training import data as datasets
from prunenet.experiment import make_smoke_records

MEAN, STD = (123.68, 116.779, 103.939), (58.393, 57.12, 57.375)


def gluoncv_iter(rec: str, idx: str, batch: int, threads: int, seed: int):
    """``mx.io.ImageRecordIter`` as GluonCV's ``train_imagenet.py`` builds its training one."""
    return mx.io.ImageRecordIter(
        path_imgrec=rec, path_imgidx=idx, preprocess_threads=threads, shuffle=True, seed=seed,
        batch_size=batch, data_shape=(3, 224, 224), mean_r=MEAN[0], mean_g=MEAN[1],
        mean_b=MEAN[2], std_r=STD[0], std_g=STD[1], std_b=STD[2], rand_mirror=True,
        random_resized_crop=True, max_aspect_ratio=4 / 3, min_aspect_ratio=3 / 4,
        max_random_area=1, min_random_area=0.08, brightness=0.4, saturation=0.4, contrast=0.4,
        pca_noise=0.1, verbose=False)


def _rate(arrivals) -> float:
    """Images per second between the first batch's arrival and the last's: the steady state,
    without the iterator's start-up and tear-down (once per epoch, negligible in ImageNet's)."""
    (t_first, _), (t_last, _) = arrivals[0], arrivals[-1]
    return sum(n for _, n in arrivals[1:]) / (t_last - t_first)


def epoch_gluoncv(rec, idx, batch, threads, seed) -> float:
    arrivals = []
    for b in gluoncv_iter(rec, idx, batch, threads, seed):
        b.data[0].wait_to_read()
        arrivals.append((time.perf_counter(), batch - b.pad))
    return _rate(arrivals)


def epoch_ours(rec, idx, batch, threads, seed) -> float:
    ds = datasets.imagenet_record(rec, idx, train=True, input_size=224, num_workers=threads,
                                  classes=4)
    arrivals = []
    for x, _ in ds.batches(batch, shuffle=True, seed=seed, drop_last=True):
        x.wait_to_read()
        arrivals.append((time.perf_counter(), x.shape[0]))
    return _rate(arrivals)


TWO = [mx.cpu(0), mx.cpu(1)]


def copy_host_then_split(data) -> list:
    """The batch copied whole into host memory, then split onto the devices."""
    return mx.gluon.utils.split_and_load(data.copyto(mx.cpu()), TWO, even_split=False)


def copy_straight(data) -> list:
    """Each device's share copied from the iterator's array straight to it."""
    step = data.shape[0] // len(TWO)
    return [data[i * step:(i + 1) * step if i < len(TWO) - 1 else data.shape[0]].copyto(c)
            for i, c in enumerate(TWO)]


def copy_seconds(split, data, repeats: int = 20) -> float:
    """Median seconds of one ``split`` of ``data`` (waited for)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for part in split(data):
            part.wait_to_read()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def epoch_split(rec, idx, batch, threads, seed, straight: bool) -> float:
    ds = datasets.imagenet_record(rec, idx, train=True, input_size=224, num_workers=threads,
                                  classes=4)
    arrivals = []
    if straight:
        for xs, _ in ds.batches(batch, shuffle=True, seed=seed, drop_last=True, ctx=TWO):
            for x in xs:
                x.wait_to_read()
            arrivals.append((time.perf_counter(), sum(x.shape[0] for x in xs)))
    else:
        for x, _ in ds.batches(batch, shuffle=True, seed=seed, drop_last=True):
            xs = mx.gluon.utils.split_and_load(x, TWO, even_split=False)
            for part in xs:
                part.wait_to_read()
            arrivals.append((time.perf_counter(), x.shape[0]))
    return _rate(arrivals)


def compare_splits(rec, idx, batch, rounds, cores) -> None:
    print(f"\nsplitting each batch onto 2 CPU contexts (busy machine: compare the ratios)")
    raw = next(iter(gluoncv_iter(rec, idx, batch, cores, 0))).data[0]
    old, new = [], []
    for r in range(max(rounds, 5)):  # taking turns to go first
        pair = [(old, copy_host_then_split), (new, copy_straight)]
        for results, split in (pair if r % 2 == 0 else pair[::-1]):
            results.append(copy_seconds(split, raw))
    ratios = np.array(new) / np.array(old)
    spread = (ratios.max() - ratios.min()) / np.median(ratios)
    print(f"copy step, one batch of {batch}: host copy then split {np.median(old) * 1e3:.2f} ms, "
          f"straight {np.median(new) * 1e3:.2f} ms; straight/host {np.median(ratios):.2f} "
          f"(spread {spread:.0%}{', noisy' if spread > 0.2 else ''})")
    old, new = [], []
    for r in range(rounds):
        pair = [(old, False), (new, True)]
        for results, straight in (pair if r % 2 == 0 else pair[::-1]):
            results.append(epoch_split(rec, idx, batch, cores, r, straight))
    ratios = np.array(new) / np.array(old)
    spread = (ratios.max() - ratios.min()) / np.median(ratios)
    print(f"whole pipeline at -j {cores}: host copy then split {np.median(old):.0f} images/s, "
          f"straight {np.median(new):.0f}; straight/host {np.median(ratios):.2f} "
          f"(spread {spread:.0%}{', noisy' if spread > 0.2 else ''})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=640)
    p.add_argument("--size", type=int, default=320, help="side of the generated JPEGs")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3, help="interleaved epochs of each")
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    threads = sorted({1, min(2, cores), cores})
    with tempfile.TemporaryDirectory() as folder:
        make_smoke_records(folder, classes=4, train_per_class=args.images // 4,
                           val_per_class=1, size=args.size)
        rec, idx = os.path.join(folder, "train.rec"), os.path.join(folder, "train.idx")
        print(f"{args.images} generated {args.size}x{args.size} JPEGs, batch {args.batch}, "
              f"{args.rounds} interleaved epochs each, {cores} cores; median images/s "
              f"(load average {os.getloadavg()[0]:.1f}: figures from a busy machine are noise, "
              f"compare the ratios)")
        print(f"{'-j':>4} {'prunenet':>10} {'GluonCV':>10} {'ours/GluonCV':>13} {'spread':>8}")
        for j in threads:
            ours, theirs = [], []
            for r in range(args.rounds):  # taking turns to go first
                pair = [(ours, epoch_ours), (theirs, epoch_gluoncv)]
                for results, epoch in (pair if r % 2 == 0 else pair[::-1]):
                    results.append(epoch(rec, idx, args.batch, j, r))
            ratios = np.array(ours) / np.array(theirs)
            spread = (ratios.max() - ratios.min()) / np.median(ratios)
            print(f"{j:>4} {np.median(ours):>10.0f} {np.median(theirs):>10.0f} "
                  f"{np.median(ratios):>13.2f} {spread:>7.0%}"
                  + ("  (noisy)" if spread > 0.2 else ""))
        compare_splits(rec, idx, args.batch, args.rounds, cores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
