"""The study results committed in experiments/results: the manual's results pages show each
folder's table as its table.md has it, the README's headline rows are rows of it, and table.md is
what the study's (or figure1's) report makes of results.csv."""
import csv
import importlib.util
import json
import glob
import os
import sys

import pytest


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "experiments", "results")
STUDIES = ("fashion_mnist_epoch", "fashion_mnist", "fashion_mnist_first_base",
           "fashion_mnist_seed_papers")


def _experiment(name="study"):
    """``experiments/fashion_mnist/NAME.py`` as a module (its folder importable while it loads:
    figure1 imports study)."""
    folder = os.path.join(ROOT, "experiments", "fashion_mnist")
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def _tables(*paths):
    """Every Markdown table of the files, each as its list of lines."""
    lines = []
    for path in paths:
        with open(path) as f:
            lines += f.read().splitlines() + [""]
    tables, current = [], []
    for line in lines + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def _csv_rows(path):
    """results.csv read back with the types the report computed them in."""
    numbers = ("target", "achieved", "macs", "params", "top1", "finetune_epochs")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in numbers:
            row[key] = float(row[key])
        row["seed"] = int(row["seed"])
        row["reg"] = float(row["reg"]) if row["reg"] else ""
    return rows


@pytest.mark.parametrize("study", [s for s in STUDIES
                                   if os.path.exists(os.path.join(RESULTS, s, "table.md"))])
def test_manual_shows_the_committed_table_and_the_table_is_the_csv(study):
    folder = os.path.join(RESULTS, study)
    with open(os.path.join(folder, "table.md")) as f:
        table = f.read().splitlines()
    pages = glob.glob(os.path.join(ROOT, "docs", "results", "*.md"))
    assert table in _tables(*pages), f"docs/results/ does not show {study}/table.md as it is"
    remade = _experiment()._table(_csv_rows(os.path.join(folder, "results.csv")))
    assert remade == table
    cells = {row["run_dir"] for row in _csv_rows(os.path.join(folder, "results.csv"))}
    for cell in cells:  # every row has its cell's report committed beside it
        assert os.path.exists(os.path.join(folder, cell, "report.json")), cell


def test_readme_headline_rows_are_rows_of_the_study_it_links():
    """The README's results table: its header and every row as the linked table.md has them."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    study = "experiments/results/fashion_mnist_epoch"
    assert f"]({study}/table.md)" in readme and f"]({study}/results.csv)" in readme
    with open(os.path.join(ROOT, study, "table.md")) as f:
        table = f.read().splitlines()
    assert _tables(os.path.join(ROOT, "README.md"))[0][0] == table[0]  # the first table
    _readme_shows_rows_of(table)


def test_readme_speed_rows_are_the_committed_benchmark_rows():
    """The README's ONNX Runtime table: its header and every row as ``benchmarks/onnx_latency.py``
    renders the rows it committed (``benchmarks/onnx_latency*.json``)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import onnx_latency
    finally:
        sys.path.pop(0)
    rows = []
    for path in sorted(glob.glob(os.path.join(ROOT, "benchmarks", "onnx_latency*.json"))):
        with open(path) as f:
            rows += json.load(f)
    rendered = onnx_latency.table(rows).splitlines()
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert "benchmarks/onnx_latency.py" in readme
    _readme_shows_rows_of(rendered)


def _readme_shows_rows_of(table):
    """The README has one table with ``table``'s header, and each of its rows is one of
    ``table``'s."""
    shown = [t for t in _tables(os.path.join(ROOT, "README.md")) if t[0] == table[0]]
    assert len(shown) == 1 and shown[0][:2] == table[:2] and len(shown[0]) > 3
    for row in shown[0][2:]:
        assert row in table, row


def test_paired_p_is_left_out_when_every_seed_differs_alike():
    row = dict(model="m", target=0.5, finetune_epochs=0.0, objective="flops", achieved=0.5,
               macs=1e6, reg="")
    rows = [dict(row, method="uniform", seed=s, top1=t) for s, t in enumerate((0.1, 0.2, 0.3))]
    rows += [dict(row, method="same", seed=s, top1=t + 0.05) for s, t in enumerate((0.1, 0.2, 0.3))]
    rows += [dict(row, method="varied", seed=s, top1=t) for s, t in enumerate((0.2, 0.2, 0.5))]
    lines = {line.split(" | ")[3]: line for line in _experiment()._table(rows)[2:]}
    assert "+5.00 pt over 3 |" in lines["same"] and "p =" not in lines["same"]
    assert "p = " in lines["varied"]


@pytest.mark.parametrize("study", [s for s in os.listdir(RESULTS)
                                   if os.path.exists(os.path.join(RESULTS, s, "results.csv"))])
def test_the_tradeoff_figure_draws_from_a_study_csv_in_seconds(study, tmp_path):
    """``prunenet plot tradeoff`` on a Fashion-MNIST study's CSV: drawn from the cells'
    measured throughput, with no ImageNet reference network timed (that took over 10 minutes)."""
    import time
    from prunenet.cli import main
    path = os.path.join(RESULTS, study, "results.csv")
    with open(path) as f:
        measured = [r for r in csv.DictReader(f) if r["throughput_img_s"]]
    if not measured:
        pytest.skip(f"{study}'s cells predate measured throughput in results.csv")
    t0 = time.time()
    assert main(["plot", "tradeoff", path, "--out", str(tmp_path / "tradeoff.png")]) == 0
    assert (tmp_path / "tradeoff.png").stat().st_size > 10_000
    assert time.time() - t0 < 60


def test_streams_table_reads_each_cell_and_the_authors_shape_file():
    """streams.md's rows: every ResNet-18 cell's stream and inner widths as its report gives
    them, and the authors' resnet18_v1b_0.89 as GluonCV's shape file gives it."""
    import gluoncv
    study = _experiment()
    out = os.path.join(RESULTS, "fashion_mnist_epoch")
    names = sorted(os.listdir(os.path.join(out, "cells")))
    lines = study._streams_table(out, names)
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[2:] for line in lines[2:]}
    shapes = json.load(open(os.path.join(os.path.dirname(gluoncv.__file__), "model_zoo",
                                         "pruned_resnet", "resnet18_v1b_2.6x.json")))
    authors = rows["resnet18_v1b_0.89 (GluonCV, ImageNet)"]
    for k in range(1, 5):
        stream, inner = authors[k - 1].rstrip(" |").split(" · ")
        assert int(stream) == shapes[f"resnetv1d_layers{k}_conv1_weight"][0]
        assert inner == ", ".join(str(shapes[f"resnetv1d_layers{k}_conv{m}_weight"][0])
                                  for m in (0, 2))
    checked = 0
    for name in names:
        path = os.path.join(out, "cells", name, "report.json")
        if not name.startswith("resnet18-") or not os.path.exists(path):
            continue  # the table is ResNet-18's (its streams beside the authors')
        widths = json.load(open(path))["widths"]
        stream = rows[name][3].rstrip(" |").split(" · ")[0]
        assert int(stream) == widths["resnetv1b_layers4_conv1_fwd"][0], name
        checked += 1
    assert checked >= 1


FIGURE1 = os.path.join(RESULTS, "fashion_mnist_figure1")


@pytest.mark.skipif(not os.path.exists(os.path.join(FIGURE1, "table.md")),
                    reason="figure1.py --report has not been run")
def test_figure1_table_is_its_csv_and_the_readme_and_manual_show_it():
    with open(os.path.join(FIGURE1, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # the types the report computed them in
        row["top1"], row["seed"] = float(row["top1"]), int(row["seed"])
        row["target"] = float(row["target"]) if row["target"] else ""
    with open(os.path.join(FIGURE1, "table.md")) as f:
        table = f.read().splitlines()
    assert _experiment("figure1").table(rows) == table
    for row in rows:  # every row has its cell's report (pruned) or result (standard) beside it
        kind = "result" if row["method"] == "standard" else "report"
        assert os.path.exists(os.path.join(FIGURE1, row["run_dir"], f"{kind}.json")), row
    pages = glob.glob(os.path.join(ROOT, "docs", "results", "*.md"))
    assert table in _tables(*pages), "docs/results/ does not show fashion_mnist_figure1/table.md"
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert "experiments/results/fashion_mnist_figure1/figure1.png" in readme
    _readme_shows_rows_of(table)
