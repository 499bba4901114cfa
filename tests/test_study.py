"""The Fashion-MNIST baselines study (experiments/fashion_mnist/study.py) end to end on its
--quick subset: a pruning cell, the trained-as-long cell, the report."""
import csv
import os
import subprocess
import sys

import pytest


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join(ROOT, "experiments", "fashion_mnist", "study.py")
FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="needs Debian's dataset-fashion-mnist")
def test_quick_study_runs_its_cells_and_reports_them(tmp_path):
    out, cache = str(tmp_path / "study"), str(tmp_path / "cache")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))

    def study(*args):
        done = subprocess.run([sys.executable, STUDY, "--quick", "--out", out, "--cache-dir",
                               cache] + list(args), env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    listed = study("--list")
    assert "missing      uniform-0.25-s0" in listed and "resnet18-trained-6.5ep-s0" in listed
    study("--cells", "uniform-0.25-s0")
    study("--cells", "resnet18-trained-*")
    listed = study("--list")
    assert "done         uniform-0.25-s0" in listed
    assert "done         resnet18-trained-6.5ep-s0" in listed
    table = study("--report")
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == {"uniform", "unpruned"}
    pruned = next(r for r in rows if r["method"] == "uniform")
    trained = next(r for r in rows if r["method"] == "unpruned")
    assert float(pruned["achieved"]) <= 0.25 and int(pruned["macs"]) < int(trained["macs"])
    for r in rows:
        assert 0.1 < float(r["top1"]) <= 1 and float(r["throughput_img_s"]) > 0
    assert "| resnet18_v1b | uniform | 0.25 |" in table
    assert open(os.path.join(out, "table.md")).read().strip() == table.strip()
