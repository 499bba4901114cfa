"""The README's two commands are what CI runs, verbatim; the examples the README and the manual
say run as written do."""
import os
import re
import shlex

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


def _read(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


def _section(text, title):
    """The text under the heading ``title``, up to the next heading of any level."""
    start = text.index(f"\n{title}\n")
    following = re.search(r"\n#{1,6} ", text[start + len(title) + 2:])
    return text[start:start + len(title) + 2 + (following.start() if following else len(text))]


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_model_zoo_walk_through_runs_as_written(tmp_path):
    """The manual's model-zoo page's first two blocks, pasted into two shells (only the port differs):
    publish, ``python -m http.server``, list, pull and load by URL; the load works again once
    the server is stopped, and the table the page shows is what ``zoo list`` prints."""
    import shlex
    import socket
    import subprocess
    import sys
    import time
    section = _read("docs", "zoo.md")
    serve, client = [block.splitlines() for block in _bash_blocks(section)[:2]]
    assert serve[-1].startswith("python -m http.server 8000 ")
    port = str(_free_port())
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               PRUNENET_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    for var in ("PRUNENET_ZOO", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(var, None)

    def run(line):
        done = subprocess.run(line.replace("8000", port), shell=True, cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        return done

    for line in serve[:-1]:
        run(line)
    server = subprocess.Popen(shlex.split(serve[-1].replace("8000", port)), cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "no server"
                time.sleep(0.1)
        listed, pulled, loaded = (run(line) for line in client)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert "sha1-checked" in pulled.stdout and loaded.stdout.strip() == "(1, 10)"
    offline = run(client[-1])
    assert offline.stdout.strip() == "(1, 10)" and "using the manifest cached" in offline.stderr
    shown = re.search(r"`zoo list` printed.*?\n```\n(.*?)```", section, re.S).group(1)
    shown, printed = shown.strip().splitlines(), listed.stdout.strip().splitlines()
    assert shown[0] == printed[0] and len(shown) == len(printed) == 2
    speed = shown[0].split().index("img/s")
    assert [c for i, c in enumerate(shown[1].split()) if i != speed] == \
        [c for i, c in enumerate(printed[1].split()) if i != speed]


def _run_lines(block):
    import shlex
    from prunenet.cli import main
    for line in block.splitlines():
        args = shlex.split(line)
        assert args[0] == "prunenet", line
        assert main(args[1:]) == 0, line


def test_readme_examples_run_as_written(tmp_path, monkeypatch):
    """The README's Python example (GCP with the paper's defaults on a DataLoader) runs as
    written; its command-line example needs ImageNet, so it is parsed by the real parser and
    must be GCP with the paper's defaults."""
    from prunenet.cli import build_parser
    from prunenet.gcp.schedule import DEFAULT_REG
    text = _read("README.md")
    monkeypatch.chdir(tmp_path)
    section = _section(text, "## From Python")
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1 and "prunenet.GCP(" in blocks[0]
    exec(compile(blocks[0], "README.md", "exec"), {})
    for name in ("report.json", "shapes.json", "steps.csv"):
        assert os.path.exists(tmp_path / "runs" / "resnet18_gcp" / name), name
    prune, count = _bash_blocks(_section(text, "## Prune a network"))[0].splitlines()
    args = build_parser().parse_args(shlex.split(prune)[1:])
    defaults = build_parser().parse_args(["prune", "--model", "m", "--method", "gcp"])
    assert args.method == "gcp" and args.objective == "flops" and args.reg == DEFAULT_REG
    assert args.steps == defaults.steps and args.pretrained
    assert f"{defaults.steps} steps of regularize" in _section(text, "## Prune a network")
    assert shlex.split(count)[:2] == ["prunenet", "count"]
    build_parser().parse_args(shlex.split(count)[1:])


def test_manual_examples_run_as_written(tmp_path, monkeypatch, capsys):
    """docs/api.md's whole path from Python and docs/getting-started.md's first prune line."""
    monkeypatch.chdir(tmp_path)
    section = _section(_read("docs", "api.md"), "## From Python, a whole path")
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        exec(compile(block, "docs/api.md", "exec"), {})
    blocks = _bash_blocks(section)
    assert blocks and "--symbol small-symbol.json" in blocks[0]
    _run_lines(blocks[0])
    assert os.path.exists(tmp_path / "runs" / "resnet18_gcp" / "shapes.json")
    assert os.path.exists(tmp_path / "runs" / "small_l1" / "report.json")
    # the first prune line: --pretrained downloads GluonCV's weights, and the tests run offline,
    # so here it prunes seeded random weights instead (the only change)
    first = _bash_blocks(_read("docs", "getting-started.md"))[2]
    assert first.startswith("prunenet prune") and "--pretrained" in first
    _run_lines(first.replace(" --pretrained", ""))
    assert "resnet18_v1b (runs/resnet18_l1/shapes.json)" in capsys.readouterr().out
