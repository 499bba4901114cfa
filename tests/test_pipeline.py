"""One pipeline: every entry point prunes through :class:`prunenet.run.pipeline.Pipeline`, and the
package has one class named GCP.

A spy on ``Pipeline.cut`` records each call and, once the real cut has run, stops the entry
point (what comes after the cut — fine-tuning, benchmarks — is not what is tested here)."""
import importlib
import inspect
import json
import os
import pkgutil
import warnings

import mxnet as mx
import numpy as np
import pytest

import prunenet
from prunenet.cli import main
from prunenet.errors import PrunenetError
from prunenet.run.pipeline import Pipeline

TINY_GCP = ["--dataset", "synthetic", "--steps", "1", "--reg", "0.01", "--epochs-per-step",
            "0.05", "--finetune-epochs", "0.05", "--batch-size", "16", "--train-limit", "64",
            "--val-limit", "16", "--no-progress"]


class Cut(Exception):
    """Raised by the spy after the real cut: the entry point went through the pipeline."""


@pytest.fixture
def cuts(monkeypatch):
    """The methods of the pipelines whose ``cut`` was called, in order."""
    seen = []
    real = Pipeline.cut

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        seen.append(self.method)
        raise Cut(self.method)
    monkeypatch.setattr(Pipeline, "cut", spy)
    return seen


def _resnet20():
    from gluoncv.model_zoo import get_model
    net = get_model("cifar_resnet20_v1", classes=10)
    net.initialize()
    return net


def _loader(n=64):
    rng = np.random.RandomState(0)
    images = mx.gluon.data.ArrayDataset(mx.nd.array(rng.normal(size=(n, 3, 32, 32))),
                                        mx.nd.array(np.arange(n) % 2))
    return mx.gluon.data.DataLoader(images, batch_size=16)


def test_prunenet_prune_cuts_through_the_pipeline(cuts):
    with pytest.raises(Cut):
        prunenet.prune(_resnet20(), "l1", "flops", 0.5, input_shape=(1, 3, 32, 32))
    assert cuts == ["l1"]


def test_prunenet_gcp_cuts_through_the_pipeline(cuts):
    gcp = prunenet.GCP(_resnet20(), target=0.7, input_shape=(1, 3, 32, 32), steps=1, reg=0.01,
                       epochs_per_step=0.25)
    gcp.fit(_loader())
    assert cuts == []  # fit trains; the cut is prune's
    with pytest.raises(Cut):
        gcp.prune()
    assert cuts == ["gcp"]


def test_prunenet_prune_refuses_gcp_in_one_line_naming_the_one_way():
    with pytest.raises(PrunenetError) as err:
        prunenet.prune(_resnet20(), method="gcp", input_shape=(1, 3, 32, 32), data=_loader())
    assert "prunenet.GCP(net, ...).fit(train_data).prune()" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method,extra", [("l1", []), ("gcp", TINY_GCP)])
def test_the_command_line_cuts_through_the_pipeline(tmp_path, cuts, method, extra):
    argv = ["prune", "--model", "cifar_resnet20_v1", "--method", method, "--input-size", "32",
            "--target", "0.5", "--out", str(tmp_path / "run")] + extra
    with pytest.raises(Cut):
        main(argv)
    assert cuts == [method]


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist/"
                                       "t10k-labels-idx1-ubyte.gz"),
                    reason="Fashion-MNIST is not installed")
def test_the_demo_cuts_through_the_pipeline(tmp_path, cuts):
    from prunenet.demo import DemoConfig, run_demo
    tiny = DemoConfig(base_epochs=0.25, steps=1, reg=0.01, epochs_per_step=0.1,
                      finetune_epochs=0.1, batch_size=32, train_limit=256, val_limit=32)
    with pytest.raises(Cut):
        run_demo(str(tmp_path / "demo"), cache_dir=str(tmp_path / "cache"), progress=False,
                 log=lambda m: None, config=tiny)
    assert cuts == ["gcp"]


def test_an_experiment_cuts_through_the_pipeline(tmp_path, cuts):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "experiments", "configs", "resnet18_v1b_uniform.json")) as f:
        config = json.load(f)
    config.update(name="one_uniform", targets=[0.5])
    path = tmp_path / "one.json"
    path.write_text(json.dumps(config))
    with pytest.raises(Cut):
        main(["experiment", str(path), "--smoke", "--out", str(tmp_path / "exp")])
    assert cuts == ["uniform"]


def _classes_named(name):
    """(module, class) of every class called ``name`` defined in a module of prunenet."""
    found = []
    for info in pkgutil.walk_packages(prunenet.__path__, "prunenet."):
        if info.name.endswith("__main__"):  # runs the command line when imported
            continue
        module = importlib.import_module(info.name)
        for attr, value in vars(module).items():  # not getattr: no deprecated alias
            if inspect.isclass(value) and value.__name__ == name and \
                    value.__module__ == module.__name__:
                found.append((module.__name__, attr))
    return found


def test_one_class_is_named_gcp():
    assert _classes_named("GCP") == [("prunenet.api", "GCP")]
    assert prunenet.GCP.__module__ == "prunenet.api"


def test_the_schedules_old_name_still_imports_with_a_warning():
    from prunenet.gcp import schedule as gcp
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from prunenet.gcp.schedule import GCP
    assert GCP is gcp.GCPSchedule
    assert any(issubclass(w.category, DeprecationWarning) and "GCPSchedule" in str(w.message)
               for w in caught)
