"""The import paths of modules that moved into folders (0.2): each still imports, for one
release, as the module at its new path, with a ``DeprecationWarning`` naming that path
(CHANGELOG.md lists them)."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

__all__ = ["MOVED", "install"]

MOVED = {f"prunenet.{old}": f"prunenet.{new}" for old, new in {
    "graph": "core.graph",
    "costs": "core.costs",
    "select": "core.select",
    "surgery": "core.surgery",
    "replicas": "core.replicas",
    "wrapper": "gcp.masked",
    "optim": "gcp.prox",
    "tied": "gcp.streams",
    "methods.gcp": "gcp.schedule",
    "methods.slimming": "gcp.slimming",
    "methods.registry": "core.registry",
    "files": "io.files",
    "outputs": "io.outputs",
    "records": "io.records",
    "download": "io.download",
    "devices": "io.devices",
    "checkpoint": "io.checkpoint",
    "runtimes": "latency.runtimes",
    "bench": "latency.throughput",
    "timing": "latency.timing",
    "data": "training.data",
    "train": "training.train",
    "distributed": "training.distributed",
    "models": "training.models",
    "experiment.smoke": "training.smoke",
    "experiment.caltech": "training.caltech",
    "export": "zoo.export",
    "pruned": "zoo.pruned",
    "report": "run.report",
    "run_settings": "run.settings",
    "runs": "run.folder",
    "gcp_steps": "run.gcp_steps",
    "pipeline": "run.pipeline",
}.items()}


class _Alias(importlib.abc.Loader):
    """Loads an old path as the module at its new one."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {self.new}; import it from there (the old path "
                      f"goes in the next release)", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(self.new)
        self.spec = module.__spec__  # the import system sets the old one on it: put it back
        return module

    def exec_module(self, module) -> None:
        """The module at the new path is already executed; it keeps its own spec."""
        module.__spec__ = self.spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        new = MOVED.get(name)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(name, _Alias(new))


class _Package(types.ModuleType):
    """``prunenet`` itself: an old path imported (``prunenet.select``) does not replace the
    public name it shares (the function ``prunenet.select``), as Python's import would by
    setting the module on its parent."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and f"{self.__name__}.{name}" in MOVED and \
                not isinstance(getattr(self, name, value), types.ModuleType):
            return
        super().__setattr__(name, value)


def install() -> None:
    """Put the finder of the old paths first on ``sys.meta_path`` (once), and keep the
    package's public names from being replaced by an old path's module."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
    sys.modules["prunenet"].__class__ = _Package
