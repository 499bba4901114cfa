"""The notebooks: committed without outputs, and each one executed (nbclient) on small
settings, against the committed results and a small run made here; any cell error fails."""
import glob
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
RESULTS = os.path.join(ROOT, "experiments", "results", "mobilenetv2_fashion_mnist")
FIGURE1 = os.path.join(ROOT, "experiments", "results", "fashion_mnist_figure1", "results.csv")
EXPECTED = {"accuracy_vs_throughput.ipynb", "pruning_patterns.ipynb",
            "fashion_mnist_walkthrough.ipynb", "python_api.ipynb"}


def test_committed_notebooks_have_no_outputs():
    paths = sorted(glob.glob(os.path.join(NOTEBOOKS, "*.ipynb")))
    assert EXPECTED <= {os.path.basename(p) for p in paths}
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for i, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, \
                    f"{os.path.basename(path)} cell {i} has outputs: strip them before committing"
        assert sum("parameters" in c.metadata.get("tags", []) for c in notebook.cells) == 1


def execute(name, tmp_path, **parameters):
    """Run ``notebooks/NAME`` in ``tmp_path`` with ``parameters`` set after its parameters cell
    (as papermill does); return the executed notebook. A cell error raises."""
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    where = next(i for i, c in enumerate(notebook.cells)
                 if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    notebook.cells.insert(where + 1, nbformat.v4.new_code_cell(source))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return notebook


def images(notebook):
    return sum(1 for c in notebook.cells if c.cell_type == "code"
               for o in c.outputs if "image/png" in o.get("data", {}))


def test_accuracy_vs_throughput(tmp_path):
    figure = str(tmp_path / "figures" / "tradeoff.png")
    notebook = execute("accuracy_vs_throughput.ipynb", tmp_path,
                       RESULTS=os.path.join(RESULTS, "results.csv"),
                       REFERENCE_MODELS="resnet18_v1b,resnet50_v1d_0.86", INPUT_SIZE=32,
                       REPEATS=2, WARMUP=1, OUT=figure, FIGURE1=FIGURE1)
    assert images(notebook) == 3  # the results with the references, V100's, Figure 1
    for suffix in (".png", "_v100.png", "_figure1.png"):
        assert os.path.exists(figure.replace(".png", suffix))


def test_pruning_patterns(tmp_path):
    notebook = execute("pruning_patterns.ipynb", tmp_path, MODEL="resnet18_v1b",
                       INPUT_SIZE=32, RUNS=str(tmp_path / "runs"),
                       GCP_RUN=os.path.join(RESULTS, "gcp"), FIGURES=str(tmp_path / "figures"))
    assert images(notebook) == 3
    assert len(os.listdir(tmp_path / "runs")) == 2


def test_fashion_mnist_walkthrough(tmp_path):
    settings = {"base_epochs": 2.0, "base_lr": 0.02, "train_limit": 1024, "val_limit": 256,
                "epochs_per_step": 0.25, "finetune_epochs": 0.25}
    notebook = execute("fashion_mnist_walkthrough.ipynb", tmp_path, SETTINGS=settings,
                       OUT=str(tmp_path / "run"), CACHE_DIR=str(tmp_path / "cache"),
                       FIGURES=str(tmp_path / "figures"))
    assert images(notebook) == 2
    assert os.path.exists(tmp_path / "run" / "shapes.json")
    table = notebook.cells[-2].outputs[0]["data"]["text/plain"]
    assert "GCP 0.5 FLOPs" in table and "CPU img/s" in table


def test_python_api(tmp_path):
    notebook = execute("python_api.ipynb", tmp_path, TRAIN_LIMIT=256, VAL_LIMIT=128,
                       BATCH_SIZE=64, BASE_EPOCHS=1, STEPS=1, EPOCHS_PER_STEP=0.25,
                       FINETUNE_EPOCHS=0.25, OUT=str(tmp_path / "run"))
    assert images(notebook) == 1
    assert os.path.exists(tmp_path / "run" / "report.json")
    cut = next(c for c in notebook.cells if "gcp.masked(x)" in c.source)
    words = cut.outputs[0]["text"].split()
    diff, scale = float(words[2]), float(words[7])
    assert scale > 1e-3 and diff <= 1e-4 * max(1.0, scale)
    assert "after fine-tuning" in notebook.cells[-1].outputs[0]["text"]
