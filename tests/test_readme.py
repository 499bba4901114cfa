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


def _section(text, title):
    """The README's text under the heading ``title``, up to the next heading of any level."""
    start = text.index(f"\n{title}\n")
    following = re.search(r"\n#{1,6} ", text[start + len(title) + 2:])
    return text[start:start + len(title) + 2 + (following.start() if following else len(text))]


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_model_zoo_walk_through_runs_as_written(tmp_path):
    """The "Model zoo" section's two blocks, pasted into two shells (only the port differs):
    publish, ``python -m http.server``, list, pull and load by URL; the load works again once
    the server is stopped, and the table the README shows is what ``zoo list`` prints."""
    import shlex
    import socket
    import subprocess
    import sys
    import time
    with open(os.path.join(ROOT, "README.md")) as f:
        section = _section(f.read(), "### Model zoo")
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
