"""The README's two commands are what CI runs, verbatim."""
import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _bash_blocks(text):
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_ci_runs_the_readme_commands_verbatim():
    with open(os.path.join(ROOT, "README.md")) as f:
        setup, tests = _bash_blocks(f.read())[:2]
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    lines = setup.splitlines() + tests.splitlines()
    positions = [ci.index(line) for line in lines]  # each README line is in CI ...
    assert positions == sorted(positions)  # ... in the README's order
    assert "pip install" in setup and "prunenet demo" in setup and "pytest" in tests
