"""``prunenet demo --quick``: the README's main job on a subset of Fashion-MNIST."""
import os

import pytest

from prunenet.data import FASHION_MNIST_DIRS
from prunenet.files import read_json

HAVE_DATA = any(os.path.exists(os.path.join(os.path.expanduser(d), "t10k-labels-idx1-ubyte.gz"))
                or os.path.exists(os.path.join(os.path.expanduser(d), "t10k-labels-idx1-ubyte"))
                for d in FASHION_MNIST_DIRS)


@pytest.mark.skipif(not HAVE_DATA, reason="Fashion-MNIST is not installed "
                                          "(apt-get install dataset-fashion-mnist)")
def test_quick_demo_trains_prunes_and_reuses_its_base(tmp_path):
    from prunenet.demo import run_demo
    messages = []
    first = run_demo(str(tmp_path / "demo"), quick=True, cache_dir=str(tmp_path / "cache"),
                     progress=False, log=messages.append)
    report = first["report"]
    assert report["achieved"] <= 0.5 and report["macs_after"] <= 0.5 * report["macs_before"]
    assert report["top1_before"] > 0.5  # far above chance (0.1) even on the subset
    assert report["top1_after"] > 0.5
    assert "GCP 0.5 FLOPs" in first["table"] and "CPU img/s" in first["table"]
    assert first["throughput"]["pruned"]["throughput_img_s"] > 0
    files = os.listdir(tmp_path / "demo")
    assert {"shapes.json", "pruned.params", "report.json", "steps.csv", "demo.json"} <= set(files)
    assert read_json(str(tmp_path / "demo" / "demo.json"))["quick"] is True
    # a second demo reuses the base; asked of train_base itself, which run_demo calls, so the
    # pruning is not run twice (it is most of this test's time)
    import mxnet as mx
    from prunenet.demo import QUICK, train_base
    messages.clear()
    _, top1 = train_base(QUICK, None, str(tmp_path / "cache"), [mx.cpu()], log=messages.append,
                         progress=False)
    assert any("using the cached base" in m for m in messages)
    assert not any("training the base" in m for m in messages)
    assert top1 == first["base_top1"]
