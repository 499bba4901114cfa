"""The Fashion-MNIST study (experiments/fashion_mnist/study.py) end to end on its --quick
subset: a pruning cell with its fine-tuning budget, the state listing, the report."""
import csv
import json
import os

import pytest


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join(ROOT, "experiments", "fashion_mnist", "study.py")
FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="needs Debian's dataset-fashion-mnist")
def test_quick_study_runs_its_cells_and_reports_them(tmp_path, script_runner, fashion_base):
    out, cache = str(tmp_path / "study"), str(tmp_path / "cache")
    study = script_runner(STUDY, out, cache)
    fashion_base.copy_to(cache)  # the quick study's base, trained once for two tests

    listed = study("--list")
    assert "missing      resnet18-uniform-0.5-s0" in listed
    assert "missing      resnet18-gcp-0.5-s0" in listed
    assert "using the cached base" in study("--cells", "resnet18-uniform-*")
    listed = study("--list")
    assert "done         resnet18-uniform-0.5-s0" in listed
    table = study("--report")
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == {"uniform"}
    assert sorted(float(r["finetune_epochs"]) for r in rows) == [0.0, 0.25]
    selected = next(r for r in rows if float(r["finetune_epochs"]) == 0)
    tuned = next(r for r in rows if float(r["finetune_epochs"]) == 0.25)
    assert float(selected["achieved"]) <= 0.5
    # fine-tuning 0 is the selection with BatchNorm re-estimated, as the study measured it
    cell = os.path.join(out, "cells", "resnet18-uniform-0.5-s0")
    with open(os.path.join(cell, "recalibrated.json")) as f:
        recalibrated = json.load(f)
    assert float(selected["top1"]) == pytest.approx(recalibrated["top1"], abs=1e-12)
    assert selected["top1_selected"] == tuned["top1_selected"]
    # re-estimated statistics beat the stale ones of a network cut by naive uniform
    assert float(selected["top1"]) > float(selected["top1_selected"])
    assert float(tuned["top1"]) > float(selected["top1_selected"])  # fine-tuning recovers
    assert "| resnet18_v1b | 0.5 | 0.25 | uniform |" in table
    assert open(os.path.join(out, "table.md")).read().strip() == table.strip()
    assert os.path.getsize(os.path.join(out, "finetune_curves.png")) > 1000

    # a base trained anew (here: other bytes in the cache) is refused, not mixed into the cells
    [base] = [os.path.join(cache, f) for f in os.listdir(cache) if f.endswith(".params")]
    with open(base, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    err = study("--cells", "resnet18-gcp-*", returncode=2)
    assert "is not the base" in err and "another --out" in err and len(err.splitlines()) == 1
    assert "missing      resnet18-gcp-0.5-s0" in study("--list")
    # and so is a folder whose cells report different bases
    report_file = os.path.join(out, "cells", "resnet18-uniform-0.5-s0", "report.json")
    with open(report_file) as f:
        doc = json.load(f)
    doc["top1_before"] += 0.01
    with open(report_file, "w") as f:
        json.dump(doc, f)
    os.makedirs(os.path.join(out, "cells", "resnet18-gcp-0.5-s0"))
    with open(os.path.join(out, "cells", "resnet18-gcp-0.5-s0", "report.json"), "w") as f:
        json.dump(dict(doc, top1_before=doc["top1_before"] - 0.01), f)
    err = study("--report", returncode=2)
    assert "pruned from different bases" in err and len(err.splitlines()) == 1


def test_a_refused_cell_does_not_stop_the_cells_after_it(capsys):
    """An experiment runs for hours unattended: a cell refused with a PrunenetError is one line,
    the cells after it still run, and the exit status and last line say which were refused."""
    import argparse
    from prunenet.errors import PrunenetError
    from test_study_results import _experiment
    study = _experiment()
    ran = []

    def run_one(name, cell):
        if name == "b":
            raise PrunenetError("target 0.2 is below the smallest reachable cost fraction")
        ran.append(name)
    args = argparse.Namespace(list=False, report=False)
    todo = {"a": None, "b": None, "c": None}
    assert study.drive(args, todo, str, run_one, None, "study.py") == 2
    assert ran == ["a", "c"]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["study.py: b: target 0.2 is below the smallest reachable cost fraction",
                   "study.py: 1 of 3 cell(s) refused (b); the others ran"]
    assert study.drive(args, {"a": None, "c": None}, str, run_one, None, "study.py") == 0
    assert study.drive(args, {"b": None}, str, run_one, None, "study.py") == 2  # one line alone
    assert capsys.readouterr().err.strip().splitlines() == [err[0]]
