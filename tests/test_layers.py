"""The package's layers, lowest first. A module may import its own layer and those below, never
one above, and no two modules may import each other, directly or round a cycle — imports made
inside functions count as much as those at the top of a file.

The layers are listed once, in ``.importlinter`` (highest first, each named by the comment above
it); import-linter checks its contracts there (``test_the_import_contracts_are_kept``), and this
file reads the same list for what import-linter cannot express: that every module has a layer,
the layer of a package's ``__init__`` whose modules sit in lower layers (import-linter takes a
package with all its modules), and module-level cycles, a package's ``__init__`` included.
"""
import ast
import configparser
import os
import shutil
import subprocess
import sys

import prunenet

ROOT = os.path.dirname(prunenet.__file__)
CONTRACTS = os.path.join(os.path.dirname(ROOT), ".importlinter")
# the __init__ of a package whose modules sit in several layers -> its own layer ("package":
# prunenet/__init__, the public names, above every layer)
PACKAGE_INITS = {"methods": "methods", "gcp": "core", "": "package"}


def _read_layers():
    """[(name, [module, ...]), ...] lowest first, from the ``layers`` contract of
    ``.importlinter`` (the comment ``# name: ...`` above each line names its layer)."""
    names, lines = [], []
    with open(CONTRACTS, encoding="utf-8") as f:
        text = f.read()
    block = text.split("[importlinter:contract:layers]", 1)[1].split("\nlayers =\n", 1)[1]
    for line in block.splitlines():
        if not line.startswith((" ", "\t")):
            break
        line = line.strip()
        if line.startswith("#"):
            names.append(line[1:].split(":", 1)[0].strip())
        elif line:
            lines.append([m.strip() for m in line.split(":")])
    assert len(names) == len(lines), f"name every layer of {CONTRACTS} by a comment above it"
    return list(zip(names, lines))[::-1]


LAYERS = _read_layers() + [("package", [""])]
LAYER_NAMES = [name for name, _ in LAYERS]


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


def _layer_of():
    """Module name -> the index of its layer in :data:`LAYERS` (a package listed in a layer
    holds every module in it; :data:`PACKAGE_INITS` places the rest)."""
    out = {}
    for name in _modules():
        if name in PACKAGE_INITS:
            out[name] = LAYER_NAMES.index(PACKAGE_INITS[name])
            continue
        for i, (_, entries) in enumerate(LAYERS):
            if any(name == e or name.startswith(e + ".") for e in entries if e):
                out[name] = i
    return out


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _lint(root: str):
    """``lint-imports`` run on the package under ``root``: (exit code, its report)."""
    lint = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or \
        shutil.which("lint-imports")
    assert lint, "lint-imports is missing: pip install -e .[dev] (import-linter)"
    done = subprocess.run([lint, CONTRACTS, "--no-cache", "--no-logo"], cwd=root,
                          env=dict(os.environ, PYTHONPATH=root), capture_output=True,
                          text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_every_module_has_a_layer():
    unplaced = sorted(set(_modules()) - set(_layer_of()))
    assert not unplaced, f"give these modules a layer in {CONTRACTS}: {unplaced}"


def test_the_import_contracts_are_kept():
    """import-linter's contracts (``.importlinter``): the layers, no cycle between the modules
    or folders side by side, and a core that imports no dataset, file or command-line tool."""
    config = configparser.ConfigParser()
    config.read(CONTRACTS)
    contracts = [s for s in config.sections() if s.startswith("importlinter:contract:")]
    code, report = _lint(os.path.dirname(ROOT))
    assert code == 0 and f"{len(contracts)} kept, 0 broken" in report, report


def test_the_contracts_fail_on_an_upward_import_inside_a_function(tmp_path):
    """The contracts are not vacuous: a copy of the package whose core/costs.py imports the
    training loops inside a function breaks the layers, and importing tqdm breaks the core's."""
    shutil.copytree(ROOT, tmp_path / "prunenet", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "prunenet" / "core" / "costs.py", "a", encoding="utf-8") as f:
        f.write("\n\ndef _upward():\n    from ..training.train import finetune\n    import tqdm\n"
                "    return finetune, tqdm\n")
    code, report = _lint(str(tmp_path))
    assert code == 1, report
    assert "prunenet.core is not allowed to import prunenet.training" in report, report
    assert "prunenet.core.costs -> prunenet.training.train" in report, report
    assert "prunenet.core is not allowed to import tqdm" in report, report
    assert "prunenet.core.costs -> tqdm" in report, report


def test_the_core_contract_covers_the_core_and_base_layers():
    """The forbidden contract names its modules apart from the layers: the same ones."""
    config = configparser.ConfigParser()
    config.read(CONTRACTS)
    sources = config["importlinter:contract:core"]["source_modules"].split()
    layers = dict(LAYERS)
    assert sorted(sources) == sorted("prunenet." + m for m in layers["core"] + layers["base"])


def test_package_inits_import_no_layer_above_their_own():
    """What import-linter cannot see (it takes a package with all its modules): the layer of
    the __init__ of a package whose modules sit in several layers, importing or imported."""
    layer = _layer_of()
    upward = [f"{name or 'prunenet'} ({LAYER_NAMES[layer[name]]}) imports {dep} "
              f"({LAYER_NAMES[layer[dep]]})"
              for name, deps in sorted(_graph().items()) for dep in sorted(deps)
              if (name in PACKAGE_INITS or dep in PACKAGE_INITS)
              and layer.get(dep, -1) > layer.get(name, len(LAYERS))]
    assert not upward, "\n".join(upward)
    assert layer["gcp.schedule"] > layer["gcp.masked"]  # the package's modules in two layers


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
    assert "io.checkpoint" in _graph()["run.folder"]
    assert "gcp.schedule" in _graph()["run.folder"]


def test_the_readme_and_the_manual_draw_every_folder():
    """The README's Layout and docs/development.md name every folder of the package, and the
    manual every module in it."""
    repo = os.path.dirname(ROOT)
    readme = open(os.path.join(repo, "README.md"), encoding="utf-8").read()
    layout = readme.split("## Layout", 1)[1]
    manual = open(os.path.join(repo, "docs", "development.md"), encoding="utf-8").read()
    manual = manual.split("## Layout", 1)[1].split("## Development", 1)[0]
    folders = sorted(f for f in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, f,
                                                                                "__init__.py")))
    assert folders
    for folder in folders:
        assert f"{folder}/" in layout, f"README's Layout does not draw prunenet/{folder}/"
        assert f"{folder}/" in manual, f"docs/development.md does not draw prunenet/{folder}/"
    for name in _modules():
        leaf = name.rsplit(".", 1)[-1]
        if name and not leaf.startswith("__") and name not in folders \
                and not name.startswith("cli."):  # cli/: one module per command
            assert leaf in manual, f"docs/development.md's Layout does not name {name}"
