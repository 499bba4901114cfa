"""The manual in docs/ builds with Sphinx, warnings as errors: a broken internal link or anchor
fails the build, the generated command-line reference carries every flag of the parser, and
the README's links into the repository and the manual lead somewhere."""
import html
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def _build(src, out):
    """``sphinx-build -W -b html src out`` as the README says, in a process of its own."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
                           "html", src, out], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("sphinxarg")
    pytest.importorskip("myst_parser")
    out = tmp_path_factory.mktemp("html")
    done = _build(DOCS, str(out))
    assert done.returncode == 0, done.stderr
    return out


def _options(parser):
    """Every option string of a parser and of its sub-commands, by command path."""
    import argparse
    found = {}

    def walk(p, path):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, path + (name,))
            else:
                found.setdefault(path, set()).update(action.option_strings)
    walk(parser, ())
    return found


def test_every_page_builds_and_every_flag_is_in_the_cli_reference(built):
    from prunenet.cli import build_parser
    for page in ("index", "getting-started", "cli", "api", "api-reference", "methods", "outputs",
                 "latency", "zoo", "distributed", "resuming", "bad-inputs", "design",
                 "development", "experiments", "results/index", "results/fashion-mnist"):
        assert (built / f"{page}.html").exists(), page
    with open(built / "cli.html") as f:
        text = html.unescape(re.sub(r"<[^>]+>", "", f.read()))
    options = _options(build_parser())
    assert len(options[("prune",)]) > 50  # the parser was walked, not an empty list
    for path, flags in options.items():
        for flag in flags:
            assert flag in text, f"{' '.join(path)} {flag} missing from the CLI reference"
    with open(built / "api-reference.html") as f:  # autodoc found the docstrings
        api = f.read()
    assert "prunenet.GCP" in api and "fit" in api and "prunenet.prune" in api


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    """A copy of the manual (the figures it shows linked beside it, so the copy builds clean)
    with a link to a missing page in one page and to a missing heading in another: one build
    fails naming both, each at its page."""
    pytest.importorskip("myst_parser")
    src = tmp_path / "docs"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("_build"))
    os.symlink(os.path.join(ROOT, "experiments"), tmp_path / "experiments")
    for page, broken in (("getting-started.md", "[gone](no-such-page.md)"),
                         ("resuming.md", "[gone](methods.md#no-such-heading)")):
        with open(src / page, "a") as f:
            f.write(f"\nSee {broken}.\n")
    done = _build(str(src), str(tmp_path / "html"))
    assert done.returncode != 0
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert warnings and all("no-such-" in w for w in warnings), done.stderr  # nothing else
    assert any("getting-started.md" in w and "no-such-page" in w for w in warnings), warnings
    assert any("resuming.md" in w and "no-such-heading" in w for w in warnings), warnings


def test_readme_links_lead_somewhere():
    """Every relative link of the README names a file of the repository; a link to a page
    heading names a heading of that page (as the manual's build checks its own links)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert len([link for link in links if link.startswith("docs/")]) > 10
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        assert os.path.exists(os.path.join(ROOT, path)), link
        if anchor:
            with open(os.path.join(ROOT, path)) as f:
                slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                         for h in re.findall(r"^#+ (.*)$", f.read(), re.M)}
            assert anchor in slugs, link
