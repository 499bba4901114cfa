"""The import paths of the modules that moved into folders still import, for one release, as
the module at the new path, with a DeprecationWarning naming it (CHANGELOG.md)."""
import importlib
import sys

import pytest

from prunenet._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_new_module_and_warns(old):
    new = importlib.import_module(MOVED[old])
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=MOVED[old].replace(".", r"\.")):
        module = importlib.import_module(old)
    assert module is new
    assert module.__spec__.name == MOVED[old]  # the new module keeps its own spec


def test_every_old_path_points_at_a_module_that_exists():
    for old, new in MOVED.items():
        assert importlib.util.find_spec(new) is not None, f"{old} -> {new}"


def test_old_names_in_user_code_still_work():
    """What a user's script of the last release wrote."""
    for old in ("prunenet.runs", "prunenet.methods.gcp", "prunenet.export"):
        sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning):
        from prunenet.runs import data_run  # noqa: F401
        from prunenet.methods.gcp import GCPConfig, DEFAULT_REG  # noqa: F401
        from prunenet.export import export  # noqa: F401
    import prunenet
    assert callable(prunenet.zoo.get_model) and callable(prunenet.zoo.publish)


def test_the_package_itself_uses_no_old_path():
    """Every module of the package imported in a fresh interpreter, and the command line's
    parsers built, with the old paths' warnings made errors: one means our own code still
    imports an old path (in this process the modules are imported already, and their imports
    would not run again)."""
    import subprocess
    code = ("import importlib, pkgutil, warnings\n"
            "warnings.filterwarnings('error', message='.* moved to prunenet\\.',"
            " category=DeprecationWarning)\n"
            "import prunenet\n"
            "for info in pkgutil.walk_packages(prunenet.__path__, 'prunenet.'):\n"
            "    if not info.name.endswith('__main__'):  # runs the command line\n"
            "        importlib.import_module(info.name)\n"
            "from prunenet.cli import build_parser\n"
            "build_parser()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_an_old_path_does_not_replace_a_public_name():
    """``prunenet.select`` is the selection function; importing the old module path of the
    same name (``prunenet.select``, now ``prunenet.core.select``) leaves it so."""
    import prunenet
    sys.modules.pop("prunenet.select", None)
    with pytest.warns(DeprecationWarning):
        importlib.import_module("prunenet.select")
    assert callable(prunenet.select) and prunenet.select.__name__ == "select"
