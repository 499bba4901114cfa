"""The package's layers, lowest first. A module may import its own layer and those below, never
one above, and no two modules may import each other, directly or round a cycle — imports made
inside functions count as much as those at the top of a file.

    base      errors, version, failpoints: what every module may use
    core      the channel graph, costs, selection, surgery, the masked network, the optimizer,
              copies of a network over its devices, and the methods that need no training;
              nothing of datasets, files, the command line or the machine
    machine   the devices of a run, files and their atomic writes, the run folder's records,
              downloads, timing on this machine
    measure   throughput, and the latency table and its cost model
    training  datasets, training loops, parameter-server workers, checkpoints, GluonCV models,
              an experiment's generated smoke data and its Caltech-256 split
    methods   the method table and the methods that train (GCP, slimming)
    formats   a pruned network built, checked, saved and loaded; the model zoo; export
    pipeline  what a run reports, the one pipeline (trace → cost → select → cut → check), a
              pruning run, the Python API, the demo, experiments, figures
    cli       the command line
    package   ``prunenet/__init__``: the public names
"""
import ast
import os

import prunenet

ROOT = os.path.dirname(prunenet.__file__)
DATA_FREE = ["activation_vote", "globalpru", "l1", "qcqp", "qcqp_exact", "random", "uniform",
             "wsp", "registry"]
LAYERS = [
    ("base", ["errors", "version", "failpoints"]),
    ("core", ["graph", "tied", "costs", "select", "surgery", "optim", "replicas", "wrapper"]
     + [f"methods.{m}" for m in DATA_FREE]),
    ("machine", ["devices", "timing", "outputs", "files", "records", "download"]),
    ("measure", ["runtimes", "bench", "latency", "latency.units", "latency.timer", "latency.table",
                 "latency.cost", "latency.blocks"]),
    ("training", ["data", "train", "distributed", "checkpoint", "models", "experiment.smoke",
                  "experiment.caltech"]),
    ("methods", ["methods", "methods.gcp", "methods.slimming"]),
    ("formats", ["pruned", "zoo", "export"]),
    ("pipeline", ["report", "pipeline", "run_settings", "gcp_steps", "runs", "api", "demo",
                  "experiment", "experiment.config", "experiment.dryrun", "experiment.settings",
                  "experiment.transfer", "experiment.run", "experiment.table", "plot"]),
    ("cli", ["cli", "cli.args", "cli.count", "cli.prune", "cli.demo", "cli.bench", "cli.plot",
             "cli.zoo", "cli.experiment", "cli.__main__", "__main__"]),
    ("package", [""]),
]
LAYER_OF = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}


def _modules():
    """Module name (relative to prunenet, "" for the package) -> file path."""
    out = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].replace(os.sep, ".")
                out["" if rel == "__init__" else rel.removesuffix(".__init__")] = \
                    os.path.join(folder, f)
    return out


def _imports(name: str, path: str, modules) -> set:
    """The prunenet modules that ``name`` imports anywhere in its file."""
    is_package = path.endswith("__init__.py")
    package = name.split(".") if is_package else name.split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module == "prunenet" or (node.module or "").startswith("prunenet."):
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:  # ``from . import x``: the submodule x, when there is one
                sub = ".".join(target + [alias.name])
                found.add(sub if sub in modules else ".".join(target))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "prunenet" or alias.name.startswith("prunenet."):
                    found.add(alias.name.partition(".")[2])
    return {m for m in found if m != name}


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer():
    unplaced = sorted(set(_modules()) - set(LAYER_OF))
    assert not unplaced, f"give these modules a layer in {__file__}: {unplaced}"


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{name or 'prunenet'} ({LAYERS[LAYER_OF[name]][0]}) imports {dep} "
              f"({LAYERS[LAYER_OF[dep]][0]})"
              for name, deps in sorted(_graph().items()) for dep in sorted(deps)
              if LAYER_OF.get(dep, -1) > LAYER_OF.get(name, len(LAYERS))]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = _graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(cycles)


def test_the_walk_sees_imports_inside_functions():
    """The check would pass vacuously if lazy imports were missed: runs.py imports the
    checkpoints only inside functions."""
    assert "checkpoint" in _graph()["runs"]
    assert "methods.gcp" in _graph()["runs"]
