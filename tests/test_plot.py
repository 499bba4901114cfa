"""``prunenet plot``: every figure is written as a PNG (checked: size, not blank) and an SVG;
bad results and run files are refused in one line naming the file and the column."""
import csv
import json
import os
import shutil

import numpy as np
import pytest

from prunenet import plot
from prunenet.io import records
from prunenet.cli import main

ROOT = os.path.join(os.path.dirname(__file__), "..")
RESULTS = os.path.join(ROOT, "experiments", "results", "mobilenetv2_fashion_mnist", "results.csv")
GCP_RUN = os.path.join(ROOT, "experiments", "results", "mobilenetv2_fashion_mnist", "gcp")
SHARED_REFERENCE = os.path.join(ROOT, "..", "shared", "reference", "gluoncv_resnet_zoo.csv")
CHEAP = ["--input-size", "32", "--repeats", "2", "--warmup", "1",
         "--reference-models", "resnet18_v1b,resnet18_v1b_0.89"]


def check_png(path, min_width=400, min_height=250, svg=False):
    """The PNG opens, is at least this large and is not blank; the SVG beside it was written
    when asked for (``svg``), and only then."""
    from matplotlib.image import imread
    image = imread(path)
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height, (width, height)
    gray = image[..., :3].mean(axis=2)
    assert gray.var() > 1e-3, "the figure is blank"
    assert (gray < 0.9).mean() > 0.01, "almost nothing is drawn"
    beside = os.path.splitext(path)[0] + ".svg"
    assert os.path.getsize(beside) > 1000 if svg else not os.path.exists(beside)


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def test_tradeoff_with_references_measured_here(tmp_path, capsys):
    out = str(tmp_path / "tradeoff.png")
    code, stdout, err = run_cli(["plot", "tradeoff", RESULTS, "--out", out] + CHEAP, capsys)
    assert code == 0, err
    assert "measuring resnet18_v1b (32 px" in stdout
    check_png(out)


@pytest.mark.parametrize("reference", ["v100", "none"])
def test_tradeoff_with_published_v100_figures_or_none(tmp_path, capsys, reference):
    out = str(tmp_path / "tradeoff.png")
    code, stdout, err = run_cli(["plot", "tradeoff", RESULTS, "--reference", reference,
                                 "--out", out], capsys)
    assert code == 0, err
    assert "measuring" not in stdout  # nothing is timed
    check_png(out)


def test_v100_figures_get_their_own_panel():
    points = plot.result_points(RESULTS)
    fig = plot.tradeoff_figure(points, plot.reference_table(), v100=True)
    local, v100 = fig.axes
    assert "V100" in v100.get_xlabel() and "V100" not in local.get_xlabel()
    local_labels = {t.get_text() for t in local.texts}
    assert not any(t.startswith("resnet") for t in local_labels)  # never mixed


def test_tradeoff_of_a_zoo(tmp_path, capsys):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    models = {"r18_half": {"method": "gcp", "objective": "flops", "target": 0.5, "top1": 0.9,
                           "throughput_img_s": 3000.0, "batch_size": 64, "device": "cpu(0)",
                           "dataset": "fashion-mnist"},
              "r18_third": {"method": "l1", "objective": "params", "target": 0.3, "top1": 0.85,
                            "throughput_img_s": 4000.0, "batch_size": 64, "device": "cpu(0)",
                            "dataset": "fashion-mnist"},
              "no_figures": {"method": "l1", "top1": None}}
    (zoo / "zoo.json").write_text(json.dumps({"version": 1, "models": models}))
    points = plot.read_points(str(zoo))
    assert [p["model"] for p in points] == ["r18_half", "r18_third"]
    assert points[0]["top1"] == pytest.approx(90.0) and points[0]["device"] == "cpu"
    out = str(tmp_path / "zoo.png")
    code, _, err = run_cli(["plot", "tradeoff", str(zoo), "--out", out] + CHEAP, capsys)
    assert code == 0, err
    check_png(out)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "zoo.json").write_text(json.dumps({"version": 1, "models": {
        "no_figures": models["no_figures"]}}))
    err = _one_line_error(["plot", "tradeoff", str(bare), "--reference", "none"], capsys)
    assert f"zoo manifest {bare / 'zoo.json'} has no model with both 'top1'" in err


def test_tradeoff_draws_the_onnx_runtime_throughput_when_asked(tmp_path, capsys):
    """``--runtime onnxruntime``: a zoo's ``throughput_img_s_onnxruntime`` (and a results CSV's
    column of that name) are the x axis, and the axis says so; a source without them is
    refused in one line."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    models = {"a": {"method": "gcp", "objective": "flops", "target": 0.5, "top1": 0.9,
                    "throughput_img_s": 3000.0, "throughput_img_s_onnxruntime": 4500.0,
                    "batch_size": 64, "device": "cpu(0)", "dataset": "fashion-mnist"},
              "b": {"method": "l1", "objective": "flops", "target": 0.3, "top1": 0.85,
                    "throughput_img_s": 4000.0, "batch_size": 64, "device": "cpu(0)",
                    "dataset": "fashion-mnist"}}
    (zoo / "zoo.json").write_text(json.dumps({"version": 1, "models": models}))
    points = plot.read_points(str(zoo), runtime="onnxruntime")
    assert [(p["model"], p["throughput_img_s"]) for p in points] == [("a", 4500.0)]
    assert [p["throughput_img_s"] for p in plot.read_points(str(zoo))] == [3000.0, 4000.0]
    out = str(tmp_path / "ort.png")
    code, _, err = run_cli(["plot", "tradeoff", str(zoo), "--runtime", "onnxruntime",
                            "--reference", "none", "--out", out], capsys)
    assert code == 0, err
    check_png(out)
    fig = plot.tradeoff(str(zoo), reference="none", runtime="onnxruntime")
    assert "ONNX Runtime" in fig.axes[0].get_xlabel()
    csv_path = write_csv(tmp_path / "r.csv", SCHEMA + ["throughput_img_s_onnxruntime"],
                         [["m", "gcp", "flops", "0.5", "0.49", "1", "1", "0.9", "", "100",
                           "16", "cpu", "fashion-mnist", "0", "run", "250"]])
    assert [p["throughput_img_s"] for p in plot.read_points(csv_path,
                                                            runtime="onnxruntime")] == [250.0]
    err = _one_line_error(["plot", "tradeoff", RESULTS, "--runtime", "onnxruntime",
                           "--reference", "none"], capsys)
    assert "has no column 'throughput_img_s_onnxruntime'" in err


def _labels_fit(fig, ax):
    """The axes' labels: inside the axes, none overlapping another; returns their count."""
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    frame = ax.get_window_extent(renderer)
    for i, a in enumerate(boxes):
        assert frame.x0 <= a.x0 and a.x1 <= frame.x1 and frame.y0 <= a.y0 and a.y1 <= frame.y1
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    return len(boxes)


def test_datasets_get_separate_panels_and_labels_do_not_overlap():
    """Fashion-MNIST top-1 never shares an axis with GluonCV's ImageNet top-1 (issue 16)."""
    points = plot.result_points(RESULTS)
    reference = plot.reference_table()
    measured = {r["model"]: {"throughput_img_s": r["throughput_img_s"] / 5} for r in reference}
    fig = plot.tradeoff_figure(points, reference, measured)
    fashion, imagenet = fig.axes
    assert "Fashion-MNIST" in fashion.get_ylabel() and "ImageNet" in imagenet.get_ylabel()
    renderer = fig.canvas.get_renderer()
    top1 = {ax: sorted(y for c in ax.collections for _, y in c.get_offsets()) for ax in fig.axes}
    assert top1[fashion] == sorted(p["top1"] for p in points)
    assert top1[imagenet] == sorted(r["top1"] for r in reference)
    assert _labels_fit(fig, fashion) == len(points)  # three points: each labelled
    assert _labels_fit(fig, imagenet) == 0  # eleven: named by the legend
    legend = fig.legends[0]
    assert legend.get_window_extent(renderer).y1 < fashion.get_window_extent(renderer).y0
    assert {t.get_text() for t in legend.get_texts()} >= {
        "GluonCV ResNets (timed here, 224 px)", "GluonCV pruned ResNets (timed here, 224 px)"}
    width, height = fig.get_size_inches()
    assert width == pytest.approx(2 * 3.4) and height < 4  # a column per panel
    assert min(t.get_fontsize() for t in fashion.get_xticklabels()) >= 7


def test_a_crowded_plot_names_its_points_by_the_legend():
    """The Fashion-MNIST study: 28 points, many of them close together."""
    study = os.path.join(ROOT, "experiments", "results", "fashion_mnist_first_rules", "results.csv")
    points = plot.result_points(study)
    fig = plot.tradeoff_figure(points, [])
    assert len(points) > plot.LABEL_LIMIT and len(fig.axes) == 1
    assert _labels_fit(fig, fig.axes[0]) == 0
    families = {t.get_text() for t in fig.legends[0].get_texts()}
    assert families == {plot._family_of(p) for p in points}


def test_pareto_front():
    pts = [(100, 70), (200, 75), (300, 72), (400, 60), (150, 65), (400, 59)]
    assert plot.pareto_front(pts) == [(200, 75), (300, 72), (400, 60)]


def test_widths_of_several_runs(tmp_path, capsys):
    from prunenet.run.folder import prune_run
    runs = []
    for objective in ("flops", "params"):
        runs.append(str(tmp_path / objective))
        prune_run("cifar_resnet20_v1", "l1", objective, 0.5, runs[-1], log=lambda m: None)
    out = str(tmp_path / "widths.png")
    code, _, err = run_cli(["plot", "widths"] + runs + ["--out", out], capsys)
    assert code == 0, err
    check_png(out)
    labels = [t.get_text() for t in plot.widths_figure(runs).axes[0].get_legend().get_texts()]
    assert labels[0].startswith("cifar_resnet20_v1 l1 flops α=0.5")
    assert labels[1].startswith("cifar_resnet20_v1 l1 params α=0.5")
    # networks that differ are drawn by layer index
    code, _, err = run_cli(["plot", "widths", runs[0], GCP_RUN, "--out", out, "--overwrite"],
                           capsys)
    assert code == 0, err
    check_png(out)


def test_plot_replaces_no_file_and_writes_only_what_it_is_asked_for(tmp_path, capsys):
    """Issue 33 (P05, P06): ``--out photo.png`` replaced the user's photo.png without
    --overwrite, and ``--out diagram.png`` replaced diagram.svg, never named."""
    photo, diagram = tmp_path / "photo.png", tmp_path / "diagram.svg"
    photo.write_bytes(b"the user's photo")
    diagram.write_text("the user's diagram")
    err = _one_line_error(["plot", "curves", GCP_RUN, "--out", str(photo)], capsys)
    assert f"{photo} already exists" in err and "--overwrite" in err
    assert photo.read_bytes() == b"the user's photo"
    code, stdout, err = run_cli(["plot", "curves", GCP_RUN, "--out", str(tmp_path / "diagram.png")],
                                capsys)
    assert code == 0, err
    assert (tmp_path / "diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert diagram.read_text() == "the user's diagram"
    assert "diagram.svg" not in stdout
    # --svg asks for the SVG too: then an existing one is refused like --out's own file
    other = tmp_path / "other.svg"
    other.write_text("the user's other diagram")
    err = _one_line_error(["plot", "curves", GCP_RUN, "--out", str(tmp_path / "other.png"),
                           "--svg"], capsys)
    assert f"{other} already exists" in err
    assert other.read_text() == "the user's other diagram"
    assert not os.path.exists(tmp_path / "other.png")
    os.remove(other)
    # an .svg --out is written as SVG, alone; --overwrite replaces the file named
    code, _, err = run_cli(["plot", "curves", GCP_RUN, "--out", str(diagram), "--overwrite"],
                           capsys)
    assert code == 0, err
    assert diagram.read_text().lstrip().startswith("<?xml")
    assert not os.path.exists(tmp_path / "diagram.png.svg")
    assert sorted(os.listdir(tmp_path)) == ["diagram.png", "diagram.svg", "photo.png"]


def test_curves_of_a_gcp_run(tmp_path, capsys):
    out = str(tmp_path / "curves.png")
    code, _, err = run_cli(["plot", "curves", GCP_RUN, "--out", out, "--svg"], capsys)
    assert code == 0, err
    check_png(out, svg=True)
    fig = plot.curves_figure(GCP_RUN)
    assert [ax.get_ylabel() for ax in fig.axes[:4]] == [
        "training loss", "top-1 accuracy (%)", "cost fraction kept", "zeroed channels"]
    # training-batch and held-out top-1 are separate, labelled series (issue 16)
    train, held = fig.axes[1].get_lines()
    assert (train.get_label(), held.get_label()) == ("training batches", "held-out data")
    with open(os.path.join(GCP_RUN, "steps.csv")) as f:
        rows = list(csv.DictReader(f))
    assert list(held.get_ydata()) == pytest.approx(
        [100 * float(r["top1"]) for r in rows if r["phase"] in ("surgery", "finetune")])
    assert len(train.get_ydata()) == sum(r["phase"] in ("regularize", "debias") for r in rows)
    kept, target = fig.axes[2].get_lines()
    assert target.get_label() == "target" and target.get_zorder() > kept.get_zorder()
    assert list(target.get_ydata()) == pytest.approx([float(r["target"]) for r in rows])


def _one_line_error(argv, capsys):
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("prunenet: error: ")
    return err


SCHEMA = list(records.RESULTS_COLUMNS)
ROW = ["r18", "gcp", "flops", "0.5", "0.5", "1", "1", "0.9", "", "100", "64", "cpu",
       "fashion-mnist", "0", ""]


BAD_RESULTS = [
    ("missing column", [c for c in SCHEMA if c != "throughput_img_s"], [ROW[:9] + ROW[10:]],
     "has no column 'throughput_img_s'"),
    ("missing top1", [c for c in SCHEMA if c != "top1"], [ROW[:7] + ROW[8:]],
     "has no column 'top1'"),
    ("no rows", SCHEMA, [], "has no rows"),
    ("not a number", SCHEMA, [ROW[:7] + ["high"] + ROW[8:]], "line 2: column 'top1' holds 'high'"),
    ("no figures", SCHEMA, [ROW[:7] + [""] + ROW[8:]],
     "has no row with both 'top1' and 'throughput_img_s'"),
    ("zero throughput", SCHEMA, [ROW[:9] + ["0"] + ROW[10:]],
     "column 'throughput_img_s' holds '0'"),
]


@pytest.mark.parametrize("case,header,rows,expected", BAD_RESULTS,
                         ids=[case[0] for case in BAD_RESULTS])
def test_bad_results_files_are_refused_in_one_line(tmp_path, capsys, case, header, rows,
                                                   expected):
    path = write_csv(tmp_path / "results.csv", header, rows)
    err = _one_line_error(["plot", "tradeoff", path, "--reference", "none", "--out",
                           str(tmp_path / "x.png")], capsys)
    assert f"results file {path}" in err and expected in err
    assert not os.path.exists(tmp_path / "x.png")


def test_results_files_that_are_not_csv_files(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "is empty" in _one_line_error(["plot", "tradeoff", str(empty), "--reference",
                                          "none"], capsys)
    assert "does not exist" in _one_line_error(["plot", "tradeoff", str(tmp_path / "nope.csv"),
                                                "--reference", "none"], capsys)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00model")
    assert "is not UTF-8 text" in _one_line_error(["plot", "tradeoff", str(binary),
                                                   "--reference", "none"], capsys)


def test_reference_settings_refused(tmp_path, capsys):
    err = _one_line_error(["plot", "tradeoff", RESULTS, "--reference-models", "resnet18",
                           "--out", str(tmp_path / "x.png")], capsys)
    assert "reference model 'resnet18' is not one of GluonCV's" in err
    gpu = write_csv(tmp_path / "gpu.csv", SCHEMA, [ROW[:11] + ["gpu0"] + ROW[12:]])
    err = _one_line_error(["plot", "tradeoff", gpu, "--reference", "local", "--out",
                           str(tmp_path / "x.png")], capsys)
    assert "measured on gpu0, the references would be measured on cpu" in err
    mixed = write_csv(tmp_path / "mixed.csv", SCHEMA, [ROW, ROW[:11] + ["gpu0"] + ROW[12:]])
    assert "mixes throughput measured on cpu and gpu0" in _one_line_error(
        ["plot", "tradeoff", mixed, "--reference", "none"], capsys)
    assert "give a file name ending in .png or .svg" in _one_line_error(
        ["plot", "tradeoff", RESULTS, "--reference", "none", "--out", str(tmp_path / "x.jpg")],
        capsys)


def test_bad_run_folders_are_refused_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(GCP_RUN, run, ignore=shutil.ignore_patterns("checkpoint", "*.params"))
    steps = run / "steps.csv"
    header, *rows = steps.read_text().splitlines()
    steps.write_text(header.replace(",zeroed_channels", "") + "\n")
    err = _one_line_error(["plot", "curves", str(run)], capsys)
    assert f"steps file {steps}" in err and "has no column 'zeroed_channels'" in err
    steps.write_text(header + "\n")
    assert "has no rows" in _one_line_error(["plot", "curves", str(run)], capsys)
    report = json.loads((run / "report.json").read_text())
    del report["widths"]
    (run / "report.json").write_text(json.dumps(report))
    err = _one_line_error(["plot", "widths", str(run)], capsys)
    assert f"run report {run / 'report.json'} has no 'widths'" in err
    assert "does not exist" in _one_line_error(["plot", "widths", str(tmp_path / "no")], capsys)


def test_reference_data_is_gluoncvs_published_table():
    rows = plot.reference_table()
    assert len(rows) == 11
    assert {r["kind"] for r in rows} == {"standard", "pruned"}
    from prunenet.zoo.store import gluoncv_pruned_models
    assert {r["model"] for r in rows if r["kind"] == "pruned"} == set(gluoncv_pruned_models())
    if os.path.exists(SHARED_REFERENCE):
        with open(SHARED_REFERENCE) as f:
            shared = {r["model"]: r for r in csv.DictReader(f)}
        for r in rows:
            assert r["top1"] == pytest.approx(float(shared[r["model"]]["top1"]))
            assert r["throughput_img_s"] == pytest.approx(
                float(shared[r["model"]]["throughput_img_s"]))


def test_reference_architectures_are_built_without_weights():
    measured = plot.measure_reference(["resnet18_v1b", "resnet50_v1d_0.11"], input_size=32,
                                      batch_size=4, repeats=1, warmup=0)
    assert set(measured) == {"resnet18_v1b", "resnet50_v1d_0.11"}
    assert all(np.isfinite(m["throughput_img_s"]) and m["throughput_img_s"] > 0
               for m in measured.values())


def test_tradeoff_draws_the_imagenet_references_only_for_imagenet_results(tmp_path, capsys):
    import time
    out = str(tmp_path / "tradeoff.png")
    t0 = time.time()
    code, stdout, err = run_cli(["plot", "tradeoff", RESULTS, "--out", out], capsys)
    assert code == 0, err
    assert time.time() - t0 < 30 and "measuring" not in stdout  # was > 10 min: eleven ResNets
    assert "has no ImageNet results: GluonCV's ImageNet ResNets are left out" in stdout
    check_png(out)
    # ImageNet rows get them by default: here, rows timed on a GPU, which the references
    # would be measured beside, so the command stops before timing anything
    imagenet = write_csv(tmp_path / "imagenet.csv", SCHEMA,
                         [ROW[:11] + ["gpu0", "imagenet"] + ROW[13:]])
    assert "measured on gpu0, the references would be measured on cpu" in _one_line_error(
        ["plot", "tradeoff", imagenet, "--out", str(tmp_path / "imagenet.png")], capsys)
    fashion = write_csv(tmp_path / "fashion.csv", SCHEMA, [ROW[:11] + ["gpu0"] + ROW[12:]])
    code, stdout, err = run_cli(["plot", "tradeoff", fashion, "--out",
                                 str(tmp_path / "fashion.png")], capsys)
    assert code == 0, err


def test_widths_of_two_identical_runs_stay_visible(tmp_path):
    from prunenet.run.folder import prune_run
    runs = [str(tmp_path / "a"), str(tmp_path / "b")]
    for run in runs:
        prune_run("cifar_resnet20_v1", "l1", "flops", 0.5, run, log=lambda m: None,
                  speed_check=False)
    first, second = plot.widths_figure(runs).axes[0].get_lines()
    assert list(first.get_ydata()) == list(second.get_ydata())  # the same widths...
    assert first.get_linestyle() != second.get_linestyle()  # ...drawn apart
    gap = np.array(second.get_xdata()) - np.array(first.get_xdata())
    assert np.all(gap > 0.05) and np.all(gap < 0.5)


def test_an_all_zero_zeroed_channels_panel_says_why(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(GCP_RUN, run)
    with open(run / "steps.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["zeroed_channels"] = "0" if row["zeroed_channels"] else ""
    with open(run / "steps.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    panel = plot.curves_figure(str(run)).axes[3]
    assert panel.get_ylabel() == "zeroed channels"
    assert any("no scale reached exactly 0" in t.get_text() for t in panel.texts)
    assert not plot.curves_figure(GCP_RUN).axes[3].texts  # 7 and 73 zeroed: nothing to say


def _seeded_results(path):
    """A results CSV of three seeds: two standard networks and a pruned one at four targets."""
    rows = []
    for seed in range(3):
        for name, speed, top1 in (("small", 900, 0.80), ("tiny", 1800, 0.70)):
            rows.append(dict(model=name, method="standard", top1=top1 + 0.01 * seed,
                             throughput_img_s=speed + seed, seed=seed))
        for i, target in enumerate((0.2, 0.35, 0.5, 0.7)):
            rows.append(dict(model="big", method="gcp", objective="latency", target=target,
                             top1=0.9 - 0.05 * i + 0.02 * seed,
                             throughput_img_s=500 * (i + 1) + 10 * seed, seed=seed))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=records.RESULTS_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(dict(r, batch_size=64, device="cpu", dataset="fashion-mnist")
                         for r in rows)
    return str(path)


def test_seeds_averaged_the_front_over_all_and_standard_networks_named(tmp_path):
    path = _seeded_results(tmp_path / "results.csv")
    each = plot.result_points(path)
    assert len(each) == 18 > plot.LABEL_LIMIT
    fig = plot.tradeoff_figure(each, [], front="all")
    ax = fig.axes[0]
    named = [t.get_text() for t in ax.texts]  # crowded: the standard networks named only
    assert named and set(named) <= {"small", "tiny"}
    assert "Pareto front" in {t.get_text() for t in fig.legends[0].get_texts()}
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    front = plot.pareto_front([(p["throughput_img_s"], p["top1"]) for p in each])
    assert len(dashed) == 1 and list(dashed[0].get_xdata()) == [x for x, _ in front]
    assert not [t for t in plot.tradeoff_figure(each, []).legends[0].get_texts()
                if t.get_text() == "Pareto front"]  # the default: each family's front only
    mean = plot.result_points(path, mean_over_seeds=True)
    assert len(mean) == 6
    small = next(p for p in mean if p["model"] == "small")
    assert small["top1"] == pytest.approx(81.0) and small["top1_std"] == pytest.approx(1.0)
    assert small["throughput_img_s"] == pytest.approx(901) and small["seeds"] == 3
    fig = plot.tradeoff_figure(mean, [], front="all")
    assert {t.get_text() for t in fig.axes[0].texts} >= {"small", "tiny"}  # few: all named
    with pytest.raises(records.PrunenetError, match="front 'best'"):
        plot.tradeoff_figure(mean, [], front="best")


def test_a_figure_pair_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """Issue 33 (trial FD3, K5): the PNG was replaced before the SVG was written, so a full disk
    (or a kill) at the SVG left the new PNG beside the old SVG, and the error named no file;
    now both are written first and replaced together, and the line names the SVG."""
    import errno
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    from prunenet.errors import PrunenetError
    out = tmp_path / "c.png"
    old = {out: b"old png", tmp_path / "c.svg": b"old svg"}
    for path, content in old.items():
        path.write_bytes(content)
    fig = pyplot.figure()
    fig.gca().plot([0, 1], [1, 0])
    draw = fig.savefig

    def savefig(target, format, **options):
        if format == "svg":  # the disk fills up at the SVG
            raise OSError(errno.ENOSPC, "No space left on device")
        draw(target, format=format, **options)
    monkeypatch.setattr(fig, "savefig", savefig)
    with pytest.raises(PrunenetError) as err:
        plot.save_figure(fig, str(out), svg=True, overwrite=True)
    pyplot.close(fig)
    assert str(err.value).startswith(f"cannot write {tmp_path / 'c.svg'} (No space left on "
                                     f"device)"), str(err.value)
    assert {path: path.read_bytes() for path in old} == old  # the old pair, matched
    assert sorted(os.listdir(tmp_path)) == ["c.png", "c.svg"]  # no temporary file
