"""The Figure 1 experiment (experiments/fashion_mnist/figure1.py) end to end on its --quick
subset: the cell listing, a pruned cell and a standard network, the report (both runtimes timed,
results.csv, table, figure) and its refusal of cells pruned from different bases."""
import csv
import json
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(ROOT, "experiments", "fashion_mnist")
SCRIPT = os.path.join(FOLDER, "figure1.py")
FASHION = "/usr/share/datasets/fashion-mnist"
PRUNED, STANDARD = "resnet18_v1b-gcp-0.5-s0", "mobilenetv2_0.5-standard-s0"


def _figure1_module():
    from test_study_results import _experiment
    return _experiment("figure1")


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="needs Debian's dataset-fashion-mnist")
def test_quick_figure1_runs_reports_and_refuses_a_second_base(tmp_path, script_runner):
    out, cache = str(tmp_path / "fig1"), str(tmp_path / "cache")
    figure1 = script_runner(SCRIPT, out, cache, threads="1")

    listed = figure1("--list")
    assert f"missing      {PRUNED}" in listed and f"missing      {STANDARD}" in listed
    figure1()
    assert f"done         {PRUNED}" in figure1("--list")
    figure1("--report")
    cells = os.path.join(out, "cells")
    report = json.load(open(os.path.join(cells, PRUNED, "report.json")))
    result = json.load(open(os.path.join(cells, STANDARD, "result.json")))
    with open(os.path.join(out, "results.csv"), newline="") as f:
        rows = {os.path.basename(r["run_dir"]): r for r in csv.DictReader(f)}
    assert set(rows) == {PRUNED, STANDARD}
    assert float(rows[PRUNED]["top1"]) == pytest.approx(report["top1_after"])
    assert float(rows[PRUNED]["macs"]) == report["macs_after"]
    assert float(rows[STANDARD]["top1"]) == pytest.approx(result["top1"])
    assert rows[STANDARD]["method"] == "standard" and rows[PRUNED]["method"] == "gcp"
    speeds = json.load(open(os.path.join(out, "throughput.json")))
    from prunenet.latency.runtimes import throughput_field
    figure = throughput_field(_figure1_module().PRUNING["runtime"])  # the pruning's runtime
    for name, row in rows.items():  # both runtimes, both batches
        for key in ("throughput_b1_mxnet", "throughput_b64_mxnet", "throughput_b1_onnxruntime",
                    "throughput_b64_onnxruntime"):
            measured = speeds["rows"][name][key]
            assert float(row[key]) == pytest.approx(measured) and measured > 0
        for runtime in ("mxnet", "onnxruntime"):  # the schema's columns: batch 64
            assert row[throughput_field(runtime)] == row[f"throughput_b64_{runtime}"]
    table = open(os.path.join(out, "table.md")).read()
    assert f"| {STANDARD.split('-')[0]} | standard |" in table
    gain = 100 * (float(rows[PRUNED]["top1"]) - float(rows[STANDARD]["top1"]))
    line = next(l for l in table.splitlines() if l.startswith("| resnet18_v1b | gcp | 0.5 |"))
    assert line.endswith(f"| mobilenetv2_0.5 | {gain:+.2f} pt |")  # the nearest in speed
    svg = open(os.path.join(out, "figure1.svg")).read()
    from prunenet.plot import pareto_front
    front = pareto_front([(float(r[figure]), float(r["top1"])) for r in rows.values()])
    assert "mobilenetv2_0.5" in svg and "ONNX Runtime" in svg  # the standard network named
    assert ("Pareto front" in svg) == (len(front) > 1)  # the front over all, where it is a line
    stamp = os.path.getmtime(os.path.join(out, "throughput.json"))
    figure1("--report")  # the same networks: not timed again
    assert os.path.getmtime(os.path.join(out, "throughput.json")) == stamp

    # a cell of a second base: refused when run (bases.json) and when reported (top-1 before)
    base = json.load(open(os.path.join(out, "bases.json")))["resnet18_v1b"]["params"]
    shutil.move(os.path.join(cells, PRUNED), str(tmp_path / "kept"))
    with open(os.path.join(cache, base), "ab") as f:
        f.write(b"\0")  # the cached base is now other weights, as if trained anew
    assert "is not the base" in figure1("--cells", PRUNED, returncode=2)
    assert not os.path.exists(os.path.join(cells, PRUNED))
    shutil.move(str(tmp_path / "kept"), os.path.join(cells, PRUNED))
    other = os.path.join(cells, PRUNED.replace("-s0", "-s1"))
    shutil.copytree(os.path.join(cells, PRUNED), other)
    report["top1_before"] += 0.01
    json.dump(report, open(os.path.join(other, "report.json"), "w"))
    module = _figure1_module()
    plan = module.Plan(quick=True)
    plan.seeds = (0, 1)
    import mxnet as mx
    from prunenet.errors import PrunenetError
    with pytest.raises(PrunenetError, match="different bases"):
        module.report(plan, out, mx.cpu())


def test_the_lambda0_ablation_runs_gcp_without_the_regulariser_and_is_paired_in_the_table():
    """``gcp-lambda0`` cells prune with prunenet's GCP at λ = 0 and GCP's fine-tuning budget; the
    table pairs each GCP row with them by seed, and their own rows with uniform."""
    module = _figure1_module()
    plan = module.Plan(quick=False)
    names = [n for n in plan.cells() if "-gcp-lambda0-" in n]
    assert len(names) == len(module.ABLATION_TARGETS) * len(module.SEEDS)
    gcp, ablation = plan.pruning_settings("gcp"), plan.pruning_settings("gcp-lambda0")
    assert ablation == dict(gcp, reg=0.0) and gcp["reg"] == "auto" and ablation["method"] == "gcp"
    assert plan.pruning_settings("uniform")["finetune_epochs"] > gcp["finetune_epochs"]

    def row(method, seed, top1, target=0.25):
        speed = {f"throughput_b{b}_{rt}": 100.0 for rt in module.RUNTIMES
                 for b in module.BENCH_BATCHES}
        return dict(speed, model="resnet50_v1b", method=method, target=target, seed=seed,
                    top1=top1, achieved=target - 0.01 * seed, objective="latency",
                    runtime="onnxruntime",
                    throughput_img_s=100.0, throughput_img_s_onnxruntime=100.0)
    rows = [row("gcp", 0, 0.80), row("gcp", 1, 0.82), row("gcp-lambda0", 0, 0.77),
            row("gcp-lambda0", 1, 0.78), row("uniform", 0, 0.83), row("uniform", 1, 0.84)]
    lines = module.table(rows)
    assert lines[0].endswith("| vs gcp-lambda0 (paired) |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    by_method = {line.split(" | ")[1]: line for line in lines[2:]}
    from scipy import stats
    p = stats.ttest_rel([0.80, 0.82], [0.77, 0.78]).pvalue
    assert by_method["gcp"].endswith(f"| +3.50 pt over 2, p = {p:.2g} |")  # (3 + 4) / 2
    assert "| -6.00 pt over 2 |" in by_method["gcp-lambda0"]  # against uniform, no spread: no p
    assert by_method["uniform"].split("|")[-2].strip() == ""  # not GCP: no ablation to pair
    assert by_method["gcp"].split(" | ")[3] == "0.240–0.250"  # where the two seeds landed
    without = [r for r in rows if r["method"] != "gcp-lambda0"]
    assert "vs gcp-lambda0" not in module.table(without)[0]
