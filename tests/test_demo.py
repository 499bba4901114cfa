"""``prunenet demo --quick``: the README's main job on a subset of Fashion-MNIST."""
import os

import pytest

from prunenet.training.data import FASHION_MNIST_DIRS
from prunenet.io.files import read_json

HAVE_DATA = any(os.path.exists(os.path.join(os.path.expanduser(d), "t10k-labels-idx1-ubyte.gz"))
                or os.path.exists(os.path.join(os.path.expanduser(d), "t10k-labels-idx1-ubyte"))
                for d in FASHION_MNIST_DIRS)


@pytest.mark.skipif(not HAVE_DATA, reason="Fashion-MNIST is not installed "
                                          "(apt-get install dataset-fashion-mnist)")
def test_quick_demo_trains_prunes_and_reuses_its_base(tmp_path):
    import dataclasses
    from prunenet.demo import QUICK, run_demo
    # the quick demo on half its images (96 base iterations, λ 0 and one shrink level): the
    # same code path in half the time (the quick demo itself took 2 min beside another job)
    light = dataclasses.replace(QUICK, train_limit=4096, base_epochs=3.0, shrink_grid=(1.0,),
                                epochs_per_step=0.25, finetune_epochs=0.5)
    messages = []
    first = run_demo(str(tmp_path / "demo"), quick=True, cache_dir=str(tmp_path / "cache"),
                     progress=False, log=messages.append, config=light)
    report = first["report"]
    assert report["achieved"] <= 0.5 and report["macs_after"] <= 0.5 * report["macs_before"]
    assert report["top1_before"] > 0.5  # far above chance (0.1) even on the subset
    # 16 fine-tuning iterations on the subset's base (66 % in the second run): measured 0.37 and
    # 0.67 in two runs of the threaded engine, so the bound is "well above chance" (0.1), which a
    # broken cut would not reach
    assert report["top1_after"] > 0.25
    assert "GCP 0.5 FLOPs" in first["table"] and "CPU img/s" in first["table"]
    assert first["throughput"]["pruned"]["throughput_img_s"] > 0
    files = os.listdir(tmp_path / "demo")
    assert {"shapes.json", "pruned.params", "report.json", "steps.csv", "demo.json"} <= set(files)
    saved = read_json(str(tmp_path / "demo" / "demo.json"))
    assert saved["quick"] is True and saved["config"]["train_limit"] == 4096
    # a second demo reuses the base; asked of train_base itself, which run_demo calls, so the
    # pruning is not run twice (it is most of this test's time)
    import mxnet as mx
    from prunenet.demo import train_base
    messages.clear()
    _, top1 = train_base(light, None, str(tmp_path / "cache"), [mx.cpu()], log=messages.append,
                         progress=False)
    assert any("using the cached base" in m for m in messages)
    assert not any("training the base" in m for m in messages)
    assert top1 == first["base_top1"]
